"""DICOM pixels a radiograph pipeline can trust, against pydicom (the oracle) on pydicom-data's
real files: YBR_FULL and YBR_FULL_422 converted to RGB, PALETTE COLOR through its lookup tables,
invalid bit depths refused, 12-bit data on one intensity scale with 8-bit JPEGs in the loader,
12-bit JPEG Extended refused as unsupported, and every pixel-data error keeping its cause."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut

import gradatim as ga
from gradatim.errors import DecodeError, UnsupportedFormatError


def _file(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
    assert path is not None, name
    return str(path)


@pytest.mark.parametrize(
    "name", ["SC_ybr_full_uncompressed.dcm", "SC_ybr_full_422_uncompressed.dcm"]
)
def test_native_ybr_becomes_rgb_as_pydicom(name: str) -> None:
    ds = pydicom.dcmread(_file(name))
    assert ds.PhotometricInterpretation.startswith("YBR_FULL")
    ref = ds.pixel_array  # pydicom converts YBR_FULL(_422) to RGB
    got = ga.image.decode(_file(name))
    assert got.shape == ref.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "examples_palette.dcm"])
def test_palette_colour_goes_through_its_lookup_tables(name: str) -> None:
    ds = pydicom.dcmread(_file(name))
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    indices = ds.pixel_array if int(ds.get("NumberOfFrames", 1)) == 1 else ds.pixel_array[0]
    ref = apply_color_lut(indices, ds)
    got = ga.image.decode(_file(name))
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert np.array_equal(got, ref)


def test_palette_of_a_big_endian_file_equals_its_little_endian_twin() -> None:
    # pydicom's apply_color_lut reads a big-endian file's table bytes as little endian; the
    # twins hold the same image, so gradatim's two results must be equal
    be, le = ga.image.decode(_file("OBXXXX1A_expb.dcm")), ga.image.decode(_file("OBXXXX1A.dcm"))
    assert np.array_equal(be, le)


def test_bits_stored_beyond_bits_allocated_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_file("emri_small.dcm"))
    ds.BitsStored = 20  # BitsAllocated is 16
    path = tmp_path / "bad_bits.dcm"
    ds.save_as(path)
    with pytest.raises(DecodeError, match="BitsStored 20 does not fit BitsAllocated 16"):
        ga.image.decode(path)


def test_twelve_bit_data_shares_the_jpeg_intensity_scale(tmp_path: Path) -> None:
    path = _file("emri_small.dcm")
    ds = pydicom.dcmread(path)
    assert ds.BitsStored == 12 and ds.PixelRepresentation == 0
    stored = ga.image.decode(path)
    assert np.array_equal(stored, ds.pixel_array[0])  # the default: pydicom's (first frame)
    full = ga.image.decode(path, full_range=True)
    want = np.minimum(np.round(stored.astype(np.float64) * 65535 / 4095), 65535)
    assert np.array_equal(full, want.astype(np.uint16))
    # the loader always stretches: its uint8 output spans what an 8-bit JPEG would
    record = {"id": "a", "image": path, "source": "s", "task": "report", "split": "train",
              "text": "Normal."}  # fmt: skip
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(record) + "\n")
    loader_ds = ga.ManifestDataset(
        manifest, image_size=(ds.Columns, ds.Rows), output="uint8", allow_outside_root=True
    )
    px = loader_ds.load_batch([0])["pixel_values"][0, 0].numpy()
    expected = np.round(full.astype(np.float64) * 255 / 65535)
    assert np.abs(px.astype(int) - expected.astype(int)).max() <= 1
    assert px.max() > 4 * (int(stored.max()) * 255 / 65535)  # not stuck at 0-6 % of the range


def test_twelve_bit_jpeg_extended_is_unsupported_and_says_so() -> None:
    with pytest.raises(UnsupportedFormatError, match="12-bit JPEG"):
        ga.image.decode(_file("JPGExtended.dcm"))


def test_pixel_data_errors_keep_their_cause() -> None:
    with pytest.raises(DecodeError) as e:
        ga.image.decode(_file("SC_rgb_rle_32bit.dcm"))
    assert "Could not decode pixel data: BitsAllocated other than 8 or 16" in str(e.value)
