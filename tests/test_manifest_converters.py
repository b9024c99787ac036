"""Dataset converters on the hand-written synthetic fixtures (tests/fixtures/manifest/), their
error messages, and the ``gradatim manifest`` command line."""

from __future__ import annotations

import gzip
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradatim import cli, image
from gradatim.errors import ManifestError
from gradatim.manifest import (
    Conversion,
    chest_imagenome,
    iu_xray,
    mimic_cxr,
    ms_cxr,
    nih,
    padchest_gr,
    read_manifest,
    sample_classes,
    validate_record,
    vindr,
)

FIX = Path(__file__).parent / "fixtures" / "manifest"


def _by_id(records: list[dict]) -> dict[str, dict]:
    for r in records:
        assert validate_record(r) == r
    return {r["id"]: r for r in records}


# IU X-ray


def test_iu_xray_folder_and_archive_agree(tmp_path: Path) -> None:
    folder = iu_xray.convert(FIX / "iu-xray")
    archive = tmp_path / "reports.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(FIX / "iu-xray", arcname="ecgen-radiology")
    packed = iu_xray.convert(archive)
    assert packed.records == folder.records
    recs = _by_id(folder.records)
    assert sorted(recs) == [
        "iu-xray/CXR9001_IM-0001-1001",
        "iu-xray/CXR9001_IM-0001-2001",
        "iu-xray/CXR9002_IM-0002-1001",
    ]
    first = recs["iu-xray/CXR9001_IM-0001-1001"]
    assert first["image"] == "images/CXR9001_IM-0001-1001.png"
    assert first["text"] == (
        "Synthetic sentence one about the heart. Synthetic sentence two about the lungs. "
        "Synthetic impression."
    )
    assert first["labels"] == {"No Finding": 1}  # MeSH major "normal"
    assert recs["iu-xray/CXR9002_IM-0002-1001"]["text"] == "Synthetic impression only."
    assert recs["iu-xray/CXR9002_IM-0002-1001"]["labels"] == {}
    assert folder.inputs == 4
    assert folder.skipped == {"no findings or impression": 1, "no images": 1}


def test_iu_xray_labels_csv_and_split(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("uId,Cardiomegaly,No Finding\nCXR9002,1.0,0.0\n", encoding="utf-8")
    conv = iu_xray.convert(FIX / "iu-xray", labels_csv=labels, split="hash:0,0,1")
    recs = _by_id(conv.records)
    assert recs["iu-xray/CXR9002_IM-0002-1001"]["labels"] == {"No Finding": 0, "Cardiomegaly": 1}
    assert {r["split"] for r in conv.records} == {"test"}


def test_iu_xray_bad_xml_names_the_file(tmp_path: Path) -> None:
    shutil.copytree(FIX / "iu-xray", tmp_path / "x")
    (tmp_path / "x" / "5.xml").write_text("<eCitation><uId id='CXR5'/>", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"5\.xml.*invalid XML"):
        iu_xray.convert(tmp_path / "x")
    conv = iu_xray.convert(tmp_path / "x", on_error="skip")
    assert len(conv.records) == 3 and conv.skipped["invalid record"] == 1


# VinDr-CXR


def test_vindr_fixture() -> None:
    recs = _by_id(vindr.convert(FIX / "vindr-cxr" / "annotations.csv").records)
    a = recs["vindr-cxr/synthetic-vindr-0001"]
    assert a["image"] == "train/synthetic-vindr-0001.dicom" and a["task"] == "phrase_grounding"
    assert [b["box"] for b in a["boxes"]] == [
        [700.0, 1300.0, 1650.0, 1800.0],
        [702.5, 1310.0, 1640.0, 1790.25],
        [300.0, 400.0, 360.0, 455.0],
        [1050.0, 700.0, 1300.0, 960.0],
    ]
    assert [b["phrase"] for b in a["boxes"]] == [
        "Cardiomegaly",
        "Cardiomegaly",
        "Nodule/Mass",
        "Aortic enlargement",
    ]
    assert a["text"] == "Cardiomegaly; Nodule/Mass; Aortic enlargement"
    assert sample_classes(a["labels"]) == ["Cardiomegaly", "Lung Lesion"]
    assert a["labels"]["No Finding"] == 0 and a["labels"]["Pneumothorax"] == 0
    normal = recs["vindr-cxr/synthetic-vindr-0002"]
    assert normal["boxes"] == [] and normal["labels"]["No Finding"] == 1
    assert normal["text"] == "No finding"
    # one radiologist says "No finding", another marks an effusion: the image has a finding
    mixed = recs["vindr-cxr/synthetic-vindr-0003"]
    assert mixed["labels"]["No Finding"] == 0 and mixed["labels"]["Pleural Effusion"] == 1
    no_normal = vindr.convert(FIX / "vindr-cxr" / "annotations.csv", include_normal=False)
    assert len(no_normal.records) == 2


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("synthetic-vindr-0009,Cardiomegaly,3,R1,10,20,abc,40", "x_max"),
        ("synthetic-vindr-0009,Cardiomegaly,3,R1,10,20,,40", "x_max"),
        ("synthetic-vindr-0009,Cardiomegaly,3,R1,50,20,10,40", "x_max"),
        ("synthetic-vindr-0009,Cardiomegaly,3,R1,10,60,30,40", "y_max"),
        ("synthetic-vindr-0009,No finding,14,R1,1,2,3,4", "x_min"),
        ("synthetic-vindr-0009,,3,R1,1,2,3,4", "class_name"),
    ],
)
def test_vindr_bad_rows(tmp_path: Path, row: str, field: str) -> None:
    src = (FIX / "vindr-cxr" / "annotations.csv").read_text(encoding="utf-8")
    bad = tmp_path / "annotations.csv.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        f.write(src + row + "\n")
    with pytest.raises(ManifestError) as info:
        vindr.convert(bad)
    assert (info.value.row, info.value.field) == (10, field)
    assert str(info.value).startswith(f"{bad} line 10, field {field!r}: ")
    conv = vindr.convert(bad, on_error="skip")
    assert len(conv.records) == 3 and sum(conv.skipped.values()) == 1


def test_vindr_missing_column(tmp_path: Path) -> None:
    bad = tmp_path / "a.csv"
    bad.write_text("image_id,class_name,x_min,y_min,x_max\nx,No finding,,,\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"a\.csv line 1, field 'y_max': missing column"):
        vindr.convert(bad)


# NIH ChestX-ray14


def test_nih_fixture_with_and_without_data_entry() -> None:
    d = FIX / "nih-cxr"
    full = _by_id(
        nih.convert(
            d / "BBox_List_2017.csv",
            data_entry=d / "Data_Entry_2017.csv",
            test_list=d / "test_list.txt",
        ).records
    )
    a = full["nih-cxr/90000001_000.png"]
    assert a["image"] == "images/90000001_000.png" and a["split"] == "train"
    assert [b["box"] for b in a["boxes"]] == [
        [200.5, 500.25, 280.5, 575.75],
        [700.0, 650.0, 850.0, 850.0],
    ]
    assert sample_classes(a["labels"]) == ["Atelectasis", "Pleural Effusion"]
    assert a["labels"]["Edema"] == 0  # the data-entry labels are exhaustive
    b = full["nih-cxr/90000002_001.png"]
    assert b["split"] == "test" and b["labels"]["Lung Opacity"] == 1
    boxes_only = _by_id(nih.convert(d / "BBox_List_2017.csv").records)
    assert boxes_only["nih-cxr/90000001_000.png"]["labels"] == {
        "Atelectasis": 1,
        "Pleural Effusion": 1,
    }


def test_nih_rejects_boxes_outside_the_image(tmp_path: Path) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n1_0.png,Mass,1000,10,30,30\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ManifestError, match=r"b\.csv line 2, field 'Bbox \[x,y,w,h\]': box .* leaves"
    ):
        nih.convert(bad)
    bad.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n1_0.png,Mass,10,10,0,30\n", encoding="utf-8"
    )
    with pytest.raises(ManifestError, match="field 'w'"):
        nih.convert(bad)


# MIMIC-CXR-JPG


def _mimic(**kw: object) -> Conversion:
    d = FIX / "mimic-cxr"
    return mimic_cxr.convert(
        d / "mimic-cxr-2.0.0-metadata.csv",
        kw.pop("reports", d),  # type: ignore[arg-type]
        split_csv=d / "mimic-cxr-2.0.0-split.csv",
        labels_csv=d / "mimic-cxr-2.0.0-chexpert.csv",
        **kw,  # type: ignore[arg-type]
    )


def test_mimic_fixture(tmp_path: Path) -> None:
    conv = _mimic()
    recs = _by_id(conv.records)
    assert list(recs) == [
        "mimic-cxr/synthetic-0001-a",
        "mimic-cxr/synthetic-0001-b",
        "mimic-cxr/synthetic-0002-a",
    ]
    a = recs["mimic-cxr/synthetic-0001-a"]
    assert a["image"] == "files/p10/p10000001/s50000001/synthetic-0001-a.jpg"
    assert a["text"] == (
        "Synthetic findings sentence one. Synthetic findings sentence two continues on the next "
        "line. Synthetic impression."
    )
    assert a["labels"] == {"No Finding": 1} and a["split"] == "train"
    b = recs["mimic-cxr/synthetic-0002-a"]
    assert b["text"] == "Synthetic combined section text."  # NOTIFICATION excluded
    assert b["split"] == "validate"
    assert b["labels"] == {
        "Cardiomegaly": -1,
        "Pneumothorax": 0,
        "Pleural Effusion": 1,
        "Support Devices": 1,
    }
    assert sample_classes(b["labels"]) == ["Pleural Effusion"]
    assert conv.skipped == {"no findings or impression": 1, "no report file": 1}
    assert conv.inputs == 5
    # the zip of the reports gives the same records
    z = tmp_path / "mimic-cxr-reports.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in (FIX / "mimic-cxr" / "files").rglob("*.txt"):
            zf.write(f, f.relative_to(FIX / "mimic-cxr").as_posix())
    assert _mimic(reports=z).records == conv.records
    frontal = _mimic(views=["pa", "AP"])
    assert [r["id"] for r in frontal.records] == [
        "mimic-cxr/synthetic-0001-a",
        "mimic-cxr/synthetic-0002-a",
    ]
    assert frontal.skipped["view not selected"] == 1


def test_mimic_report_sections() -> None:
    rep = "FINAL REPORT\n INDICATION: x.\n FINDINGS: one\n two.\n IMPRESSION:  three.\n"
    assert mimic_cxr.report_sections(rep) == {"findings": "one two.", "impression": "three."}
    assert mimic_cxr.report_sections("IMPRESSION: only.") == {"impression": "only."}
    assert mimic_cxr.report_sections("no headings at all") == {}


def test_mimic_bad_ids_and_labels(tmp_path: Path) -> None:
    d = FIX / "mimic-cxr"
    meta = tmp_path / "meta.csv"
    meta.write_text(
        (d / "mimic-cxr-2.0.0-metadata.csv")
        .read_text(encoding="utf-8")
        .replace("10000002", "1000x002", 1),
        encoding="utf-8",
    )
    with pytest.raises(ManifestError, match=r"meta\.csv line 4, field 'subject_id'"):
        mimic_cxr.convert(meta, d)
    lab = tmp_path / "chexpert.csv"
    lab.write_text("subject_id,study_id,Edema\n1,2,0.5\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"chexpert\.csv line 2, field 'Edema'"):
        mimic_cxr.convert(d / "mimic-cxr-2.0.0-metadata.csv", d, labels_csv=lab)


# MS-CXR


def test_ms_cxr_fixture() -> None:
    d = FIX / "ms-cxr"
    conv = ms_cxr.convert(
        d / "MS_CXR_Local_Alignment_v1.1.0.csv",
        image_ext=".jpg",
        labels_csv=FIX / "mimic-cxr" / "mimic-cxr-2.0.0-chexpert.csv",
    )
    recs = _by_id(conv.records)
    assert list(recs) == [
        "ms-cxr/synthetic-ms-0001/0",
        "ms-cxr/synthetic-ms-0001/1",
        "ms-cxr/synthetic-ms-0002/0",
    ]
    a = recs["ms-cxr/synthetic-ms-0001/0"]
    assert a["image"] == "files/p10/p10000001/s50000001/synthetic-ms-0001.jpg"
    assert a["text"] == "synthetic right lower lobe opacity" and a["split"] == "train"
    assert [b["box"] for b in a["boxes"]] == [
        [120.0, 1800.0, 720.0, 2300.0],
        [850.0, 1900.0, 1150.0, 2300.0],
    ]
    # the radiologist's category overrides the study's "No Finding" from the labeller
    assert a["labels"] == {"No Finding": 0, "Pneumonia": 1}
    c = recs["ms-cxr/synthetic-ms-0002/0"]
    assert c["split"] == "validate" and c["boxes"][0]["box"] == [1700.0, 300.0, 2200.0, 750.5]
    assert c["labels"]["Pneumothorax"] == 1 and c["labels"]["Pleural Effusion"] == 1
    assert conv.inputs == 4


def test_ms_cxr_box_outside_image(tmp_path: Path) -> None:
    bad = tmp_path / "ms.csv"
    bad.write_text(
        "dicom_id,label_text,x,y,w,h,image_width,image_height\nd1,p,2500,10,100,10,2544,3056\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ManifestError, match=r"ms\.csv line 2, field 'x': box .* leaves the 2544x3056"
    ):
        ms_cxr.convert(bad)
    assert ms_cxr.convert(bad, on_error="skip").records == []


# PadChest-GR


def test_padchest_gr_fixture() -> None:
    d = FIX / "padchest-gr"
    conv = padchest_gr.convert(
        d / "grounded_reports_synthetic.json",
        master_table=d / "master_table.csv",
        image_sizes=d / "image_sizes.csv",
        on_error="skip",
    )
    recs = _by_id(conv.records)
    a = recs["padchest-gr/synthetic-image-0001"]
    assert a["task"] == "grounded_report" and a["split"] == "train"
    assert a["text"] == (
        "Synthetic cardiomegaly sentence. Synthetic right effusion sentence. "
        "Synthetic calcified granuloma sentence. Synthetic no pneumothorax sentence."
    )
    # normalised -> pixels of the 2000 x 2500 image; first reader only
    assert [b["box"] for b in a["boxes"]] == [
        [600.0, 1125.0, 1500.0, 2000.0],
        [100.0, 1750.0, 500.0, 2250.0],
        [120.0, 1500.0, 400.0, 1750.0],
        [1200.0, 500.0, 1300.0, 625.0],
    ]
    assert a["boxes"][1]["phrase"] == "Synthetic right effusion sentence."
    for b in a["boxes"]:
        assert b["phrase"] in a["text"]
    assert a["labels"] == {"No Finding": 0, "Cardiomegaly": 1, "Pleural Effusion": 1}
    normal = recs["padchest-gr/synthetic-image-0002"]
    assert normal["split"] == "validate" and normal["boxes"] == []
    assert normal["labels"] == {"No Finding": 1}
    # the third study's size is unknown: its normalised boxes cannot become pixels
    assert "padchest-gr/synthetic-image-0003" not in recs
    assert conv.skipped == {"invalid ImageID": 1}
    with pytest.raises(ManifestError, match=r"entry 3, field 'ImageID': image size unknown"):
        padchest_gr.convert(
            d / "grounded_reports_synthetic.json", image_sizes=d / "image_sizes.csv"
        )


def test_padchest_gr_options(tmp_path: Path) -> None:
    d = FIX / "padchest-gr"
    (tmp_path / "imgs").mkdir()
    png = image.encode_png(np.zeros((1024, 800), np.uint8))
    (tmp_path / "imgs" / "synthetic-image-0003.png").write_bytes(png)
    assert padchest_gr.png_size(tmp_path / "imgs" / "synthetic-image-0003.png") == (800, 1024)
    conv = padchest_gr.convert(
        d / "grounded_reports_synthetic.json",
        image_sizes=d / "image_sizes.csv",
        root=tmp_path,
        image_dir="imgs",
        language="es",
        reader="both",
    )
    recs = _by_id(conv.records)
    c = recs["padchest-gr/synthetic-image-0003"]
    assert c["image"] == "imgs/synthetic-image-0003.png"
    assert c["boxes"][0]["box"] == [400.0, 512.0, 450.0, 576.0]  # from the PNG header's size
    assert c["text"] == "Frase sintetica de nodulo." and c["labels"]["Lung Lesion"] == 1
    a = recs["padchest-gr/synthetic-image-0001"]
    assert len(a["boxes"]) == 5  # both readers
    assert all(r["split"] == "train" for r in conv.records)  # no master table
    pixels = _pixel_json(tmp_path)
    with pytest.raises(ManifestError, match=r"findings\[0\]\.boxes\[0\]'.*box_units='pixel'"):
        padchest_gr.convert(pixels, image_sizes=d / "image_sizes.csv")
    pix = padchest_gr.convert(pixels, box_units="pixel")
    assert pix.records[0]["boxes"][0]["box"] == [300.0, 450.0, 750.0, 800.0]


def _pixel_json(tmp_path: Path) -> Path:
    """A copy of the fixture JSON with the boxes in pixels (x 1000)."""
    data = json.loads((FIX / "padchest-gr" / "grounded_reports_synthetic.json").read_text())
    for study in data:
        for f in study["findings"]:
            for key in ("boxes", "extra_boxes"):
                f[key] = [[v * 1000 for v in b] for b in f.get(key, [])]
    out = tmp_path / "pixels.json"
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def test_chexpert_label_mapping_of_padchest() -> None:
    assert padchest_gr.chexpert_label("rib fracture") == "Fracture"
    assert padchest_gr.chexpert_label("costophrenic angle blunting") == "Pleural Effusion"
    assert padchest_gr.chexpert_label("NSG tube") == "Support Devices"
    assert padchest_gr.chexpert_label("mass") == "Lung Lesion"
    assert padchest_gr.chexpert_label("calcified granuloma") is None
    assert padchest_gr.chexpert_label("aortic elongation") is None


# Chest ImaGenome


def test_chest_imagenome_fixture(tmp_path: Path) -> None:
    d = FIX / "chest-imagenome"
    conv = chest_imagenome.convert(
        d, splits=d / "splits.csv", labels_csv=FIX / "mimic-cxr" / "mimic-cxr-2.0.0-chexpert.csv"
    )
    recs = _by_id(conv.records)
    a = recs["chest-imagenome/synthetic-ci-0001"]
    assert a["task"] == "anatomy_grounded_report" and a["split"] == "validate"
    assert a["image"] == "files/p10/p10000001/s50000001/synthetic-ci-0001.jpg"
    # 29-region filter drops "left cardiac silhouette", the zero-width CP angle is dropped
    assert [(b["anatomy"], b["box"], b["phrase"]) for b in a["boxes"]] == [
        ("right lung", [400.0, 300.0, 1050.0, 1700.0], "Synthetic right basilar opacity sentence."),
        ("left lung", [1200.5, 310.0, 1850.0, 1690.25], ""),
        (
            "cardiac silhouette",
            [800.0, 1000.0, 1500.0, 1600.0],
            "Synthetic mildly enlarged heart sentence.",
        ),
    ]
    assert a["text"] == (
        "Synthetic right basilar opacity sentence. Synthetic no pneumothorax sentence. "
        "Synthetic mildly enlarged heart sentence."
    )
    assert a["labels"] == {"No Finding": 1}
    assert recs["chest-imagenome/synthetic-ci-0002"]["split"] == "train"
    assert conv.notes["degenerate region box dropped"] == 1
    every = _by_id(chest_imagenome.convert(d, all_regions=True, descriptions="all").records)
    boxes = every["chest-imagenome/synthetic-ci-0001"]["boxes"]
    assert [b["anatomy"] for b in boxes] == [
        "right lung",
        "left lung",
        "cardiac silhouette",
        "left cardiac silhouette",
    ]
    assert boxes[1]["phrase"] == "Synthetic no pneumothorax sentence."
    # a zip of the graphs gives the same records
    z = tmp_path / "graphs.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(d.glob("*_SceneGraph.json")):
            zf.write(f, f"scene_graph/{f.name}")
    assert chest_imagenome.convert(z).records == chest_imagenome.convert(d).records


def test_chest_imagenome_bad_graph(tmp_path: Path) -> None:
    src = (FIX / "chest-imagenome" / "synthetic-ci-0002_SceneGraph.json").read_text()
    (tmp_path / "bad_SceneGraph.json").write_text(
        src.replace('"original_x2": 1240', '"original_x2": "x"')
    )
    with pytest.raises(
        ManifestError, match=r"bad_SceneGraph\.json, field 'objects\[0\]\.original_x2'"
    ):
        chest_imagenome.convert(tmp_path)


# the command line


def test_cli_converts_and_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = FIX / "mimic-cxr"
    out = tmp_path / "mimic.parquet"
    rc = cli.main(
        [
            "manifest",
            "from-mimic-cxr",
            str(d / "mimic-cxr-2.0.0-metadata.csv"),
            str(d),
            "--split-csv",
            str(d / "mimic-cxr-2.0.0-split.csv"),
            "--labels",
            str(d / "mimic-cxr-2.0.0-chexpert.csv"),
            "-o",
            str(out),
        ]
    )
    assert rc == 0 and len(read_manifest(out)) == 3
    rc = cli.main(
        [
            "manifest",
            "from-vindr",
            str(FIX / "vindr-cxr" / "annotations.csv"),
            "-o",
            str(tmp_path / "v.jsonl"),
            "--split",
            "hash:0,1,0",
        ]
    )
    assert rc == 0 and {r["split"] for r in read_manifest(tmp_path / "v.jsonl")} == {"validate"}
    assert cli.main(["manifest", "validate", str(out), str(tmp_path / "v.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "3 valid records" in printed and "task: phrase_grounding 3" in printed
    assert "Synthetic" not in printed and "synthetic-" not in printed  # counts only


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "a.csv"
    bad.write_text("image_id,class_name,x_min,y_min,x_max,y_max\nx,Cardiomegaly,1,2,0,4\n")
    rc = cli.main(["manifest", "from-vindr", str(bad), "-o", str(tmp_path / "o.jsonl")])
    assert rc == 2
    assert "a.csv line 2, field 'x_max'" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
