"""DICOM memory bombs: small files whose headers make a decoder or the DICOM parser allocate far
more than the file and the limits allow. Each attack file is built here and decoded in a child
process under a 2 GiB address-space cap (RLIMIT_AS), so an allocation that aborts the process is a
failed test, not a crash of the suite; each must end in the documented exception naming the file,
within 5 s and with a small peak resident memory.

- JPEG-LS: the frame header (SOF55) declares 65535 x 65535 x 3 at 16 bits (25.8 GB) or 255
  components (2.19 TB) inside a 64 x 64 DICOM; CharLS's binding allocates the whole output before
  anything else. JPEG (SOF0) inside DICOM the same way.
- RLE: a segment count of 4227858432 in the RLE header (16.9 GB of offsets), and a PackBits
  segment that expands 64-fold (32 MiB to 2 GiB).
- The parser: 1.5 GiB lengths in the places where the parser reads lengths that a hand-written
  walk of the file missed (inside an undefined-length element of any VR, which the parser reads as
  a sequence; inside an implicit-VR sequence of defined length; a data set whose first element has
  no VR; a file meta group shorter than its elements; pydicom-data's SC_rgb_jpeg.dcm, 1.2 GB
  resident), and a multi-valued string of 48 M empty values (1.3 GB resident).
- A JPEG-LS frame whose last scan has no end marker (CharLS spun 4 s on the fuzzer's 33 bytes).
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.encaps import encapsulate, generate_frames

from conftest import dicom_file

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

CAP = 2 << 30  # the address-space cap of every child
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
            b"UV"}  # fmt: skip

# decode each file in a child under the address-space cap: per file the exception and the time it
# took; then the child's peak resident memory (MB)
CHILD = textwrap.dedent(f"""
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({CAP}, {CAP}))
    import gradatim as ga
    for path in sys.argv[1:]:
        start = time.perf_counter()
        try:
            ga.image.decode(path)
            result = "decoded | -"
        except Exception as e:
            result = f"{{type(e).__name__}} | {{e}}"
        print(time.perf_counter() - start, result.replace("\\n", " "), flush=True)
    print(int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0]) / 1024)
""")


def _decode_capped(*paths: Path) -> list[tuple[str, str, float]]:
    """(exception class, message, seconds) of decoding each of ``paths`` in one capped child. An
    abort (SIGABRT from a failed allocation) fails the test with the child's stderr, so does a
    Rust panic reaching Python (pyo3's PanicException is no ``Exception``: the child dies of it),
    and so does a peak resident memory above 600 MB."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"the child died (exit {out.returncode}): {out.stderr[-2000:]}"
    *lines, peak = out.stdout.strip().split("\n")
    assert float(peak) < 600, f"peak RSS {float(peak):.0f} MB"
    results = []
    for line in lines:
        seconds, _, rest = line.partition(" ")
        kind, _, message = rest.partition(" | ")
        results.append((kind, message, float(seconds)))
    assert len(results) == len(paths)
    return results


def _assert_refused(path: Path, kind: str, pattern: str) -> None:
    [(got, message, seconds)] = _decode_capped(path)
    assert got == kind, f"{got}: {message}"
    assert str(path) in message, message
    assert re.search(pattern, message), message
    assert seconds < 5.0, f"{seconds:.1f} s"


# --- building DICOM files by hand --------------------------------------------------------------


def _element(group: int, element: int, vr: bytes | None, value: bytes, length: int | None = None,
             big: bool = False) -> bytes:  # fmt: skip
    """One data element: explicit VR when ``vr`` is given, implicit VR otherwise; ``length``
    overrides the declared length (the value's bytes are written as given)."""
    n = len(value) if length is None else length
    e = ">" if big else "<"
    tag = struct.pack(f"{e}HH", group, element)
    if vr is None:
        return tag + struct.pack(f"{e}I", n) + value
    if vr in LONG_VRS or not vr.isalpha():
        return tag + vr + b"\0\0" + struct.pack(f"{e}I", n) + value
    return tag + vr + struct.pack(f"{e}H", n) + value


def _uid(text: str) -> bytes:
    b = text.encode()
    return b + b"\0" * (len(b) % 2)


def _meta(syntax: str, group_length: int | None = None) -> bytes:
    """Preamble, "DICM" and a file meta group naming ``syntax`` (``group_length`` overrides the
    group's declared length)."""
    body = (
        _element(2, 0x0001, b"OB", b"\0\1")
        + _element(2, 0x0002, b"UI", _uid("1.2.840.10008.5.1.4.1.1.7"))
        + _element(2, 0x0003, b"UI", _uid("1.2.3.4"))
        + _element(2, 0x0010, b"UI", _uid(syntax))
        + _element(2, 0x0012, b"UI", _uid("1.2.3.5"))
    )
    n = len(body) if group_length is None else group_length
    return b"\0" * 128 + b"DICM" + _element(2, 0x0000, b"UL", struct.pack("<I", n)) + body


def _image_header(rows: int, cols: int, bits: int = 8, samples: int = 1,
                  vr: bool = True) -> bytes:  # fmt: skip
    """Image Pixel module elements (explicit VR, or implicit with ``vr=False``)."""
    us = b"US" if vr else None
    cs = b"CS" if vr else None
    return (
        _element(0x28, 0x0002, us, struct.pack("<H", samples))
        + _element(0x28, 0x0004, cs, b"MONOCHROME2 " if samples == 1 else b"RGB ")
        + _element(0x28, 0x0010, us, struct.pack("<H", rows))
        + _element(0x28, 0x0011, us, struct.pack("<H", cols))
        + _element(0x28, 0x0100, us, struct.pack("<H", bits))
        + _element(0x28, 0x0101, us, struct.pack("<H", bits))
        + _element(0x28, 0x0102, us, struct.pack("<H", bits - 1))
        + _element(0x28, 0x0103, us, struct.pack("<H", 0))
    )


def _encapsulated(fragments: list[bytes]) -> bytes:
    """(7FE0,0010) OB of undefined length: an empty offset table, the fragments, a delimiter."""
    out = _element(0x7FE0, 0x0010, b"OB", b"", 0xFFFFFFFF)
    out += b"\xfe\xff\x00\xe0" + struct.pack("<I", 0)
    for f in fragments:
        f += b"\0" * (len(f) % 2)
        out += b"\xfe\xff\x00\xe0" + struct.pack("<I", len(f)) + f
    return out + b"\xfe\xff\xdd\xe0" + struct.pack("<I", 0)


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _read(name: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(dicom_file(name))


def _first_frame_patched(tmp: Path, name: str, patch: Callable[[bytes], bytes]) -> Path:
    """A copy of pydicom-data's ``name`` with its first frame's codestream changed (every other
    frame kept)."""
    ds = _read(name)
    n = int(ds.get("NumberOfFrames", 1))
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    frames[0] = patch(frames[0])
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].is_undefined_length = True
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / f"patched_{name}"
    ds.save_as(out)
    return out


def _segment(codestream: bytes, marker: int) -> tuple[int, int]:
    """Start and end of the first marker segment ``FF marker`` of a JPEG / JPEG-LS codestream."""
    at = codestream.index(bytes([0xFF, marker]), 2)
    return at, at + 2 + struct.unpack(">H", codestream[at + 2 : at + 4])[0]


def _sof(marker: int, bits: int, rows: int, cols: int, components: int) -> bytes:
    specs = b"".join(bytes([c + 1, 0x11, 0]) for c in range(components))
    body = struct.pack(">BHHB", bits, rows, cols, components) + specs
    return bytes([0xFF, marker]) + struct.pack(">H", 2 + len(body)) + body


def _with_sof(marker: int, bits: int, rows: int, cols: int, components: int):  # noqa: ANN202
    def patch(cs: bytes) -> bytes:
        start, end = _segment(cs, marker)
        return cs[:start] + _sof(marker, bits, rows, cols, components) + cs[end:]

    return patch


# --- JPEG-LS and JPEG frame headers -----------------------------------------------------------


def test_jpeg_ls_frame_header_bombs_are_refused_from_their_headers(tmp_path: Path) -> None:
    """The 42 KB JPEG-LS DICOM (64 x 64, 10 frames) whose first frame's SOF55 declares
    65535 x 65535 x 3 at 16 bits (CharLS's binding would allocate 25.8 GB at once), or 255
    components (2.19 TB)."""
    for components in (3, 255):
        path = _first_frame_patched(
            tmp_path / str(components),
            "emri_small_jpeg_ls_lossless.dcm",
            _with_sof(0xF7, 16, 65535, 65535, components),
        )
        assert path.stat().st_size < 50_000
        _assert_refused(path, "ImageTooLargeError", r"65535x65535 = 4294836225 pixels exceeds")


def test_jpeg_ls_frame_header_must_agree_with_the_dicom_header(tmp_path: Path) -> None:
    cases = [
        ("emri_small_jpeg_ls_lossless.dcm", (16, 64, 65, 1),
         r"JPEG-LS: the frame is 65x64 but Columns x Rows is 64x64"),
        ("emri_small_jpeg_ls_lossless.dcm", (16, 64, 64, 3),
         r"JPEG-LS: the frame has 3 components for SamplesPerPixel 1"),
        ("JPEGLSNearLossless_08.dcm", (16, 45, 10, 1),
         r"JPEG-LS: the frame has 16 bits per sample, more than BitsAllocated 8"),
    ]  # fmt: skip
    paths = [
        _first_frame_patched(tmp_path / str(k), name, _with_sof(0xF7, *sof))
        for k, (name, sof, _) in enumerate(cases)
    ]
    for path, (_, _, pattern), (got, message, _) in zip(
        paths, cases, _decode_capped(*paths), strict=True
    ):
        assert got == "DecodeError" and str(path) in message, message
        assert re.search(pattern, message), message


def test_a_jpeg_ls_scan_without_an_end_marker_is_refused_at_once(tmp_path: Path) -> None:
    """The fuzzer's 33-byte JPEG-LS frame (10 x 50, 16 bits, near-lossless): its scan data runs
    to the end of the fragment (its padding byte included) without a marker, and CharLS's bit
    reader counted past the end for 4 s, whatever the image size."""
    frame = bytes.fromhex("ffd8fff7000b100032000a01011100ffffda0008010100020000400008010100d9")
    head = _meta(JPEG_LS_LOSSLESS) + _image_header(50, 10, bits=16)
    path = _write(tmp_path, "jls_no_eoi.dcm", head + _encapsulated([frame]))
    [(got, message, seconds)] = _decode_capped(path)
    assert got == "DecodeError" and "the last scan has no end marker (EOI)" in message, message
    assert seconds < 0.5, f"{seconds:.1f} s"
    # the same frame ended by EOI goes to CharLS, which refuses its scan at once
    path = _write(tmp_path, "jls_eoi.dcm", head + _encapsulated([frame + b"\xff\xd9"]))
    [(got, message, seconds)] = _decode_capped(path)
    assert got == "DecodeError" and "JPEG-LS" in message and seconds < 0.5, (message, seconds)


def test_jpeg_frame_header_bomb_in_dicom_is_refused(tmp_path: Path) -> None:
    """JPEG baseline inside DICOM: an SOF0 of 65535 x 65535 x 3 in a 100 x 100 file (the JPEG
    decoder would allocate 4 GiB at once), and one a column short."""
    big = _first_frame_patched(
        tmp_path / "big", "SC_rgb_jpeg_dcmtk.dcm", _with_sof(0xC0, 8, 65535, 65535, 3)
    )
    _assert_refused(big, "ImageTooLargeError", r"65535x65535")
    odd = _first_frame_patched(
        tmp_path / "odd", "SC_rgb_jpeg_dcmtk.dcm", _with_sof(0xC0, 8, 100, 99, 3)
    )
    _assert_refused(odd, "DecodeError", r"JPEG: the frame is 99x100 but Columns x Rows is 100x100")


# --- RLE ---------------------------------------------------------------------------------------


def test_rle_segment_count_bomb_is_refused(tmp_path: Path) -> None:
    """MR_small_RLE.dcm with its RLE header's segment count set to 4227858432: the RLE decoder
    would allocate 16.9 GB of segment offsets."""
    data = dicom_file("MR_small_RLE.dcm").read_bytes()
    pixel_data = data.index(b"\xe0\x7f\x10\x00")
    table = pixel_data + 12  # the Basic Offset Table item
    header = table + 8 + int.from_bytes(data[table + 4 : table + 8], "little") + 8
    forged = data[:header] + struct.pack("<I", 0xFC000000) + data[header + 4 :]
    path = _write(tmp_path, "rle_count.dcm", forged)
    _assert_refused(
        path, "DecodeError", r"DICOM RLE: the header declares 4227858432 segments \(at most 15\)"
    )


def test_rle_segment_expanding_past_its_plane_is_refused(tmp_path: Path) -> None:
    """A 64 x 64 8-bit RLE frame whose one segment is 32 MiB of two-byte runs of 128 bytes:
    the RLE decoder would expand it to 2 GiB before taking the 4096 bytes it needs."""
    segment = b"\x81\x00" * (16 << 20)
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    data = _meta(RLE_LOSSLESS) + _image_header(64, 64) + _encapsulated([header + segment])
    path = _write(tmp_path, "rle_runs.dcm", data)
    _assert_refused(
        path,
        "DecodeError",
        r"DICOM RLE: segment 0 decodes to more than 8320 bytes \(its plane holds 4096\)",
    )


# --- the DICOM parser --------------------------------------------------------------------------

HUGE = 0x60000000  # 1.5 GiB: under the cap, so a parser that allocates it makes it resident


def test_a_value_inside_an_undefined_length_element_is_bounded(tmp_path: Path) -> None:
    """An OB element of undefined length that is not Pixel Data: the parser reads it as a
    sequence, so the item and the 1.5 GiB value inside it are parsed."""
    data = (
        _meta(EXPLICIT_LE)
        + _image_header(8, 8)
        + _element(0x0009, 0x1010, b"OB", b"", 0xFFFFFFFF)
        + b"\xfe\xff\x00\xe0" + struct.pack("<I", 0xFFFFFFFF)
        + _element(0x0009, 0x1011, b"OB", b"\0" * 16, HUGE)
    )  # fmt: skip
    path = _write(tmp_path, "undefined_ob.dcm", data)
    _assert_refused(path, "DecodeError", r"\(0009,1011\) declares 1610612736 bytes but only 16")


def test_a_value_inside_an_implicit_vr_sequence_is_bounded(tmp_path: Path) -> None:
    """Implicit VR: (0008,1115) is a sequence by the dictionary; its defined length is honest,
    the element inside its item declares 1.5 GiB."""
    inner = _element(0x0008, 0x1150, None, b"\0" * 8, HUGE)
    item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)) + inner
    data = (
        _meta(IMPLICIT_LE)
        + _image_header(8, 8, vr=False)
        + _element(0x0008, 0x1115, None, item)
        + _element(0x7FE0, 0x0010, None, b"\0" * 64)
    )
    path = _write(tmp_path, "implicit_sq.dcm", data)
    _assert_refused(path, "DecodeError", r"\(0008,1150\) declares 1610612736 bytes")


def test_a_data_set_without_vrs_under_an_explicit_syntax_is_bounded(tmp_path: Path) -> None:
    """The data set is written in implicit VR, the meta group says explicit: the parser reads the
    first element's "VR" as unknown and takes the 4 bytes after it as a 1.5 GiB length."""
    data = (
        _meta(EXPLICIT_LE)
        + _element(0x0008, 0x0005, None, struct.pack("<I", HUGE))
        + _image_header(8, 8, vr=False)
        + _element(0x7FE0, 0x0010, None, b"\0" * 64)
    )
    path = _write(tmp_path, "no_vr.dcm", data)
    _assert_refused(path, "DecodeError", r"\(0008,0005\) declares 1610612736 bytes")


def test_a_file_meta_group_shorter_than_its_elements_is_bounded(tmp_path: Path) -> None:
    """The meta group's length ends it before (0002,0012); the parser reads that element in the
    data set's implicit VR, where "UI" and its 2-byte length make a 1.6 GB length."""
    meta = _meta(IMPLICIT_LE)
    uid_at = meta.index(b"\x02\x00\x12\x00")
    short = uid_at - (132 + 12)  # the group's elements up to (0002,0012), excluded
    value = b"1" * 0x6000  # "UI", 0x6000: read as the 4-byte length 0x60004955
    meta = _meta(IMPLICIT_LE, group_length=short)[:uid_at] + _element(2, 0x0012, b"UI", value)
    data = meta + _image_header(8, 8, vr=False) + _element(0x7FE0, 0x0010, None, b"\0" * 64)
    path = _write(tmp_path, "short_meta.dcm", data)
    _assert_refused(path, "DecodeError", r"\(0002,0012\) declares 1610631509 bytes")


def test_a_real_file_without_vrs_is_refused_before_the_parser_fills_1_gb() -> None:
    """pydicom-data's SC_rgb_jpeg.dcm is written in implicit VR under an explicit transfer syntax
    (pydicom detects it, dicom-rs does not): the parser takes (0008,0008)'s value as the 4-byte
    length 1230128452 and fills that much memory before it fails; refused first."""
    path = dicom_file("SC_rgb_jpeg.dcm")
    _assert_refused(path, "DecodeError", r"\(0008,0008\) declares 1230128452 bytes")


def test_a_string_of_millions_of_values_is_bounded(tmp_path: Path) -> None:
    """An unlimited-characters (UC) value of 48 M backslashes: 48 M empty strings to the parser
    (24 bytes each, 1.1 GB), from a 48 MB file."""
    data = (
        _meta(EXPLICIT_LE)
        + _element(0x0018, 0x9937, b"UC", b"\\" * (48 << 20))
        + _image_header(8, 8)
        + _element(0x7FE0, 0x0010, b"OB", b"\0" * 64)
    )
    path = _write(tmp_path, "many_values.dcm", data)
    _assert_refused(path, "DecodeError", r"\(0018,9937\) holds 50331649 values")


# --- the attacks' twins decode -----------------------------------------------------------------


def test_the_untouched_files_decode(tmp_path: Path) -> None:
    """What the attacks were built from decodes under the same cap (the checks refuse the attack,
    not the format)."""
    names = ("emri_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm")
    ok = _write(tmp_path, "ok.dcm", _meta(EXPLICIT_LE) + _image_header(8, 8)
                + _element(0x7FE0, 0x0010, b"OB", bytes(range(64))))  # fmt: skip
    got = _decode_capped(*map(dicom_file, names), ok)
    assert [g[0] for g in got] == ["decoded", "decoded", "UnsupportedFormatError", "decoded"], got
    assert "value range -32768..32767" in got[2][1]  # MR_small_RLE is signed: refused as before
