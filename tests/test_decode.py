"""Decoders against oracles: OpenCV's libjpeg-turbo / libpng paths and pydicom, on real files."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import gradatim as ga
from conftest import dicom_file, libjxl_jpegs
from gradatim import image


def cv_rgb(path: str | Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --- JPEG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", libjxl_jpegs() or ["<missing>"], ids=lambda p: Path(p).name)
def test_jpeg_variants_equal_opencv(path: str, libjxl: list[str]) -> None:
    """Baseline, progressive, 4:2:0/4:2:2/4:4:4/4:4:0, grey, non-interleaved: bit-exact."""
    ours = image.decode(path)
    cv_any = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if cv_any.ndim == 2:
        np.testing.assert_array_equal(ours, cv_any)
    else:
        np.testing.assert_array_equal(ours, cv_rgb(path))
    np.testing.assert_array_equal(
        image.decode(path, mode="gray"), cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    )


@pytest.mark.parametrize(
    "denom,flag",
    [
        (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
        (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
        (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    ],
)
def test_reduced_decode_equals_opencv_reduced(denom: int, flag: int, wallpapers: list[str]) -> None:
    path = wallpapers[0]
    full = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    h, w = full.shape
    target = (-(-w // denom), -(-h // denom))  # the smallest size this scale still covers
    ours = image.decode(path, reduce_to=target, mode="gray")
    np.testing.assert_array_equal(ours, cv2.imread(path, flag))


def test_reduced_decode_stays_at_least_target(wallpapers: list[str]) -> None:
    """The smallest of 1/2, 1/4, 1/8 that still covers the target; full size when none does."""
    path = wallpapers[-1]
    h, w = cv2.imread(path, cv2.IMREAD_GRAYSCALE).shape
    for target in [(512, 512), (w // 3, h // 3), (w, h), (w + 10, h + 10), (1, 1), (w // 2, 9)]:
        out = image.decode(path, reduce_to=target, mode="gray")
        fits = [d for d in (8, 4, 2) if -(-w // d) >= target[0] and -(-h // d) >= target[1]]
        d = fits[0] if fits else 1
        assert out.shape == (-(-h // d), -(-w // d)), (target, out.shape)


def test_colour_modes(libjxl: list[str]) -> None:
    path = next(p for p in libjxl if p.endswith("q85_444.jpg"))
    rgb = image.decode(path, mode="rgb")
    assert rgb.shape[2] == 3
    grey_path = next(p for p in libjxl if p.endswith("gray.jpg"))
    rgb_from_grey = image.decode(grey_path, mode="rgb")
    grey = image.decode(grey_path)
    assert grey.ndim == 2
    for c in range(3):
        np.testing.assert_array_equal(rgb_from_grey[..., c], grey)


def test_bytes_and_path_agree(libjxl: list[str]) -> None:
    path = libjxl[0]
    np.testing.assert_array_equal(image.decode(Path(path).read_bytes()), image.decode(path))
    np.testing.assert_array_equal(
        image.decode(memoryview(Path(path).read_bytes())), image.decode(Path(path))
    )


# --- PNG --------------------------------------------------------------------------------------


def test_png_8_and_16_bit_equal_opencv(tmp_path: Path, radiograph_u16: np.ndarray) -> None:
    crop16 = radiograph_u16[100:611, 200:913]  # odd size
    crop8 = (crop16 >> 7).astype(np.uint8)
    rgb8 = np.dstack([crop8, crop8[::-1], crop8[:, ::-1]])
    for name, arr in [("g16.png", crop16), ("g8.png", crop8), ("rgb8.png", rgb8)]:
        path = tmp_path / name
        cv2.imwrite(str(path), arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
        ours = image.decode(path)
        assert ours.dtype == arr.dtype
        np.testing.assert_array_equal(ours, arr)
    rgb16 = np.dstack([crop16, crop16 // 2, crop16 // 3])
    cv2.imwrite(str(tmp_path / "rgb16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(image.decode(tmp_path / "rgb16.png"), rgb16)


def test_png_palette_and_alpha_match_pillow(tmp_path: Path, radiograph_u8: np.ndarray) -> None:
    pil = pytest.importorskip("PIL.Image")
    crop = radiograph_u8[:301, :257]
    pil.fromarray(crop).convert("P").save(tmp_path / "p.png")
    expect = np.asarray(pil.open(tmp_path / "p.png").convert("RGB"))
    np.testing.assert_array_equal(image.decode(tmp_path / "p.png"), expect)
    la = np.dstack([crop, np.full_like(crop, 128)])
    pil.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(image.decode(tmp_path / "la.png"), crop)


# --- DICOM ------------------------------------------------------------------------------------


def pydicom_reference(path: Path) -> np.ndarray:
    """Stored values, MONOCHROME1 inverted over the stored range, rescale applied (pydicom)."""
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(path)
    v = ds.pixel_array.astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        v = (2**ds.BitsStored - 1) - v
    v = v * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    return v.round().astype(np.uint16)


def test_dicom_monochrome1_equals_pydicom(radiograph_path: Path) -> None:
    ours = image.decode(radiograph_path)
    assert ours.dtype == np.uint16 and ours.shape == (1955, 1841)
    np.testing.assert_array_equal(ours, pydicom_reference(radiograph_path))
    # MONOCHROME1 was inverted: lungs (air, low attenuation) are now dark
    h, w = ours.shape
    assert ours[h // 2, w // 4] < ours[h - 50, w // 2]


def test_dicom_jpeg2000_lossless_twin_is_identical(radiograph_path: Path) -> None:
    np.testing.assert_array_equal(
        image.decode(dicom_file("RG1_J2KR.dcm")), image.decode(radiograph_path)
    )


def test_dicom_jpeg2000_lossy_matches_its_uncompressed_twin() -> None:
    lossy = image.decode(dicom_file("RG1_J2KI.dcm")).astype(np.int32)
    reference = image.decode(dicom_file("RG1_UNCI.dcm")).astype(np.int32)
    assert np.abs(lossy - reference).max() <= 1


# --- bad input --------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF) is patched to declare another size."""
    files = libjxl_jpegs()
    if not files:
        return b""
    data = bytearray(Path(files[0]).read_bytes())
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    "data,error,words",
    [
        (b"", ga.DecodeError, ["empty"]),
        (b"GIF89a" + b"\0" * 64, ga.UnsupportedFormatError, ["unsupported", "format"]),
        (b"\xff\xd8\xff\xe0" + b"\x13" * 300, ga.DecodeError, ["JPEG"]),
        (png_header_only(100_000, 100_000), ga.ImageTooLargeError, ["100000x100000", "limit"]),
        (jpeg_claiming(65_000, 65_000), ga.ImageTooLargeError, ["65000x65000", "limit"]),
        (png_header_only(64, 64), ga.DecodeError, ["PNG"]),
    ],
    ids=["empty", "gif", "corrupt-jpeg", "huge-png", "huge-jpeg", "png-no-data"],
)
def test_bad_bytes_raise_clear_errors(data: bytes, error: type, words: list[str]) -> None:
    if error is ga.ImageTooLargeError and not data:
        pytest.skip("Debian libjxl-testdata is not installed")
    with pytest.raises(error) as info:
        image.decode(data)
    message = str(info.value)
    assert "<bytes>" in message
    for word in words:
        assert word in message


def test_truncated_files_name_the_file(tmp_path: Path, libjxl: list[str]) -> None:
    for src in [p for p in libjxl if "progr" in p or p.endswith("444.jpg")]:
        data = Path(src).read_bytes()
        cut = tmp_path / Path(src).name
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ga.DecodeError, match=str(cut).replace(".", r"\.")):
            image.decode(cut)


def test_truncated_png_and_dicom(tmp_path: Path, radiograph_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "x.png"), np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ga.DecodeError, match="cut.png"):
        image.decode(tmp_path / "cut.png")
    dcm = radiograph_path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(dcm[: len(dcm) // 2])
    with pytest.raises(ga.DecodeError, match="cut.dcm"):
        image.decode(tmp_path / "cut.dcm")


def test_max_pixels_is_configurable(libjxl: list[str]) -> None:
    path = libjxl[0]
    h, w = image.decode(path, mode="gray").shape
    with pytest.raises(ga.ImageTooLargeError, match="max_pixels"):
        image.decode(path, max_pixels=h * w - 1)
    assert image.decode(path, max_pixels=h * w).shape[:2] == (h, w)


def test_missing_file_is_a_file_not_found_error_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError) as info:
        image.decode(missing)
    assert info.value.filename == str(missing)


def test_errors_pickle_and_keep_their_message() -> None:
    with pytest.raises(ga.DecodeError) as info:
        image.decode(b"")
    clone = pickle.loads(pickle.dumps(info.value))  # noqa: S301 - round-trip of our own object
    assert type(clone) is ga.DecodeError and str(clone) == str(info.value)
    assert isinstance(clone, ValueError)
    unsupported = ga.UnsupportedFormatError("x")
    assert isinstance(unsupported, NotImplementedError) and isinstance(unsupported, ValueError)
