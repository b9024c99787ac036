"""DICOM JPEG 2000 and JPEG-LS against their oracles, on pydicom-data's real files.

JPEG 2000 at full size equals pydicom's pixel_array; at a reduced resolution (``reduce_to``) it
equals OpenJPEG's own reduced decode (Pillow's JPEG 2000 plugin, ``im.reduce = k``) of the
codestream pydicom extracts from the encapsulated Pixel Data, with the same post-processing
(MONOCHROME1 inversion, rescale). JPEG-LS equals pydicom's pixel_array (through pyjpegls/CharLS).
Malformed codestreams are refused with errors naming the file."""

from __future__ import annotations

import json
import struct
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_fragmented_frames

import gradatim as ga
from conftest import dicom_file
from gradatim.errors import DecodeError, ImageTooLargeError, UnsupportedFormatError

# unsigned (gradatim refuses data whose declared range goes below 0), grey and colour, lossless
# and lossy, one multi-frame file
J2K_FILES = [
    "RG1_J2KR.dcm",
    "RG1_J2KI.dcm",
    "RG3_J2KR.dcm",
    "RG3_J2KI.dcm",
    "MR2_J2KR.dcm",
    "MR2_J2KI.dcm",
    "US1_J2KR.dcm",
    "US1_J2KI.dcm",
    "examples_jpeg2k.dcm",
    "SC_rgb_gdcm_KY.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
]


def _read(name: str) -> tuple[Path, pydicom.Dataset]:
    path = dicom_file(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return path, pydicom.dcmread(path)


def _codestream(ds: pydicom.Dataset) -> bytes:
    """The first frame's JPEG 2000 codestream, from the encapsulated Pixel Data."""
    frames = generate_fragmented_frames(
        ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))
    )
    return b"".join(next(frames))


def _as_gradatim(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values as gradatim returns them: MONOCHROME1 inverted over the stored range, then
    the Modality LUT's rescale."""
    v = stored.astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        v = (2**ds.BitsStored - 1) - v
    v = v * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    return np.round(v)


def _openjpeg_reduced(codestream: bytes, k: int) -> np.ndarray:
    """OpenJPEG's decode skipping `k` wavelet levels, through Pillow, as stored values."""
    im = Image.open(BytesIO(codestream))
    w, h = im.size
    p = 1 << k
    want = (-(-w // p), -(-h // p))  # OpenJPEG's size: ceil(w / 2^k) (T.800 B.5)
    im.reduce = k
    # Pillow sizes its output by rounding, (w + 2^(k-1)) // 2^k, and refuses the decoded tile
    # ('broken data stream') where that is one pixel short of OpenJPEG's ceiling (RG1 at 1/4):
    # give it the nominal size that rounds to the ceiling
    im._size = (want[0] * p - p // 2, want[1] * p - p // 2)
    im.load()
    assert im.size == want
    a = np.asarray(im)
    if a.dtype == np.uint16:
        # Pillow scales a component of precision P < 16 bits up to 16 bits (v << (16 - P))
        precision = (codestream[42] & 0x7F) + 1  # SIZ's Ssiz of the first component
        a = a >> (16 - precision)
    return a


@pytest.mark.parametrize("name", J2K_FILES)
def test_full_decode_equals_pydicom(name: str) -> None:
    path, ds = _read(name)
    ref = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1)) > 1:
        ref = ref[0]
    got = ga.image.decode(path)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, _as_gradatim(ds, ref))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("name", J2K_FILES)
def test_reduced_decode_equals_openjpeg_reduced(name: str, k: int) -> None:
    path, ds = _read(name)
    p = 1 << k
    target = (-(-ds.Columns // p), -(-ds.Rows // p))  # the smallest size 1/2^k still covers
    got = ga.image.decode(path, reduce_to=target)
    ref = _as_gradatim(ds, _openjpeg_reduced(_codestream(ds), k))
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)
    # one pixel more than 1/2^k gives in either direction: the next finer level
    finer = ga.image.decode(path, reduce_to=(target[0] + 1, target[1]))
    assert finer.shape[:2] == (-(-ds.Rows // (p // 2)), -(-ds.Columns // (p // 2)))


def test_reduce_to_512_on_the_radiograph_decodes_at_half_size() -> None:
    """RG1 is 1841 x 1955: 1/4 (461 x 489) does not cover 512 x 512, 1/2 does."""
    path, ds = _read("RG1_J2KR.dcm")
    got = ga.image.decode(path, reduce_to=(512, 512))
    assert got.shape == (978, 921) and got.dtype == np.uint16
    np.testing.assert_array_equal(got, _as_gradatim(ds, _openjpeg_reduced(_codestream(ds), 1)))
    # a target above the full size, or none: full size
    assert ga.image.decode(path, reduce_to=(4000, 10)).shape == (1955, 1841)
    # far below: as deep as the codestream's 5 decomposition levels allow (1/32)
    assert ga.image.decode(path, reduce_to=(8, 8)).shape == (62, 58)


def _loader_pixels(tmp_path: Path, image: Path) -> np.ndarray:
    record = {"id": "a", "image": str(image), "source": "s", "task": "report", "split": "train",
              "text": "Normal."}  # fmt: skip
    manifest = tmp_path / f"{image.stem}.jsonl"
    manifest.write_text(json.dumps(record) + "\n")
    ds = ga.ManifestDataset(
        manifest, image_size=(128, 128), output="uint8", allow_outside_root=True
    )
    return ds.load_batch([0])["pixel_values"][0, 0].numpy().astype(np.int32)


def test_loader_on_reduced_j2k_matches_its_uncompressed_twin(tmp_path: Path) -> None:
    """The loader decodes RG3_J2KR at 1/8 (its wavelet low-pass, centred on every 8th source
    pixel rather than on 8 x 8 blocks) and resizes; its uncompressed twin is decoded at full size
    and resized: the same image, on the same intensity scale, up to the filters' difference."""
    j2k = _loader_pixels(tmp_path, dicom_file("RG3_J2KR.dcm"))
    native = _loader_pixels(tmp_path, dicom_file("RG3_UNCR.dcm"))
    assert j2k.shape == native.shape == (128, 128)
    diff = np.abs(j2k - native)
    assert diff.mean() < 3 and abs((j2k - native).mean()) < 0.5, diff.mean()
    assert np.corrcoef(j2k.ravel(), native.ravel())[0, 1] > 0.99


def test_codestream_size_is_checked_before_decoding() -> None:
    # pydicom's file whose codestream was cut by an embedded sequence delimiter: its SIZ now
    # declares 3722445056 x 1024 pixels; refused from the header, as Pillow refuses it
    path, _ = _read("JPEG2000-embedded-sequence-delimiter.dcm")
    with pytest.raises(ImageTooLargeError, match="3722445056x1024") as e:
        ga.image.decode(path)
    assert str(path) in str(e.value)


def _patched(tmp_path: Path, name: str, patch) -> Path:
    """A copy of a single-fragment-per-frame J2K file with its first frame's codestream changed."""
    from pydicom.encaps import encapsulate

    _, ds = _read(name)
    ds.PixelData = encapsulate([patch(_codestream(ds))])
    ds["PixelData"].is_undefined_length = True
    ds.NumberOfFrames = 1
    out = tmp_path / f"patched_{name}"
    ds.save_as(out)
    return out


def test_codestream_disagreeing_with_the_header_is_refused(tmp_path: Path) -> None:
    def shrink(cs: bytes) -> bytes:  # SIZ: Xsiz 1841 -> 1000
        return cs[:8] + struct.pack(">I", 1000) + cs[12:]

    path = _patched(tmp_path, "RG1_J2KI.dcm", shrink)
    with pytest.raises(
        DecodeError, match="codestream is 1000x1955 but Columns x Rows is 1841x1955"
    ):
        ga.image.decode(path)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_codestream_is_an_error_naming_the_file(tmp_path: Path, cut: float) -> None:
    path = _patched(tmp_path, "MR2_J2KR.dcm", lambda cs: cs[: int(len(cs) * cut)])
    for reduce_to in (None, (128, 128)):
        try:
            got = ga.image.decode(path, reduce_to=reduce_to)
        except DecodeError as e:
            assert str(path) in str(e)
        else:  # OpenJPEG decodes what arrived of a progressive stream; never a crash
            assert got.ndim == 2


# --- JPEG-LS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "JPEGLSNearLossless_08.dcm",
        "JPEGLSNearLossless_16.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "SC_rgb_jls_lossy_sample.dcm",
    ],
)
def test_jpeg_ls_equals_pydicom(name: str) -> None:
    path, ds = _read(name)
    ref = ds.pixel_array  # pydicom through pyjpegls (CharLS)
    if int(ds.get("NumberOfFrames", 1)) > 1:
        ref = ref[0]
    got = ga.image.decode(path)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def test_signed_jpeg_ls_is_refused_as_its_native_twin() -> None:
    for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"):
        with pytest.raises(UnsupportedFormatError, match="value range -32768..32767"):
            ga.image.decode(dicom_file(name))


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203"])
def test_htj2k_syntaxes_take_the_same_path(tmp_path: Path, uid: str) -> None:
    """An HTJ2K transfer syntax routes to the same decoder (a Part 1 codestream is valid HTJ2K;
    no HT-coded file is at hand, so HT block decoding itself is OpenJPEG's, untested here)."""
    path, ds = _read("MR2_J2KR.dcm")
    ds.file_meta.TransferSyntaxUID = uid
    out = tmp_path / "ht.dcm"
    ds.save_as(out)
    for reduce_to in (None, (256, 256)):
        np.testing.assert_array_equal(
            ga.image.decode(out, reduce_to=reduce_to), ga.image.decode(path, reduce_to=reduce_to)
        )
    assert ga.image.decode(out, reduce_to=(256, 256)).shape == (256, 256)


@pytest.mark.parametrize("where", ["top", "shared", "per-frame"])
def test_rescale_is_found_where_dicom_pixeldata_finds_it(tmp_path: Path, where: str) -> None:
    """The JPEG 2000 path reads Rescale Slope/Intercept itself: it must equal what the native
    path (dicom-pixeldata) applies to the same pixels, wherever the values sit."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    _, j2k = _read("MR2_J2KR.dcm")
    native = j2k.copy()
    native.decompress()  # pydicom through Pillow: the same stored values, uncompressed
    paths = []
    for ds, tag in ((j2k, "j2k"), (native, "native")):
        for kw in ("RescaleSlope", "RescaleIntercept"):
            if kw in ds:
                del ds[kw]
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = "2", "5"
        if where == "top":
            ds.RescaleSlope, ds.RescaleIntercept = "2", "5"
        else:
            group = Dataset()
            group.PixelValueTransformationSequence = Sequence([transform])
            if where == "shared":
                ds.SharedFunctionalGroupsSequence = Sequence([group])
            else:
                ds.PerFrameFunctionalGroupsSequence = Sequence([group])
        paths.append(tmp_path / f"{tag}.dcm")
        ds.save_as(paths[-1])
    got, want = ga.image.decode(paths[0]), ga.image.decode(paths[1])
    np.testing.assert_array_equal(got, want)
    assert native.PhotometricInterpretation == "MONOCHROME2"
    np.testing.assert_array_equal(got, native.pixel_array.astype(np.int64) * 2 + 5)
