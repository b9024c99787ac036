"""A damaged pre-decoded cache never gives wrong samples silently, nor a panic: each damage is
built in the test from a real cache (edited ``index.bin`` fields, at their offsets, with and
without the entry's checksum recomputed; flipped shard bytes; an older format version) and the
documented outcome is asserted: an error naming the cache file and the entry when the cache is
opened, or a fallback to decoding that is counted in ``cache_read_failures()`` and gives the
decoder's pixels and boxes (an error naming the shard, the byte range and the entry with
``cache_fallback=False``). A cache in an object store serving shifted ranges is in
``test_cache_remote.py``."""

from __future__ import annotations

import json
import shutil
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradatim as ga
from gradatim.data.cache import build_cache
from gradatim.errors import DecodeError, InvalidArgumentError

sys.path.insert(0, str(Path(__file__).parent))
import test_cache  # noqa: E402

# the cache tests' manifest: 20 phantom JPEGs (decoded at 1/2) and four 16-bit PNGs
manifest = test_cache.manifest
_dataset = test_cache._dataset

# one index.bin entry (docs/cache.md): field name, struct code, byte offset
FIELDS = [
    ("key", "Q", 0), ("shard", "I", 8), ("flags", "I", 12), ("offset", "Q", 16),
    ("len", "Q", 24), ("width", "I", 32), ("height", "I", 36), ("channels", "I", 40),
    ("denom", "I", 44), ("source_size", "Q", 48), ("source_mtime_ns", "q", 56),
    ("source_hash", "Q", 64), ("pixels_crc", "I", 72),
]  # fmt: skip
ENTRY = 80
SEALED = 76  # the entry's own CRC-32 covers its first 76 bytes
PRESENT, WIDE = 1, 2


def entry(index: bytes, i: int) -> dict[str, int]:
    """Entry ``i`` of an index, as a dict of its fields."""
    b = index[i * ENTRY : (i + 1) * ENTRY]
    return {name: struct.unpack_from("<" + code, b, at)[0] for name, code, at in FIELDS}


def edit(folder: Path, i: int, reseal: bool = True, **fields: int) -> None:
    """Set ``fields`` of entry ``i`` of ``folder``'s index; ``reseal``: recompute the entry's
    CRC-32 (as a writer with a bug would), else leave it (damage on disk)."""
    path = folder / "index.bin"
    index = bytearray(path.read_bytes())
    at = {name: (code, off) for name, code, off in FIELDS}
    base = i * ENTRY
    for name, value in fields.items():
        code, off = at[name]
        struct.pack_into("<" + code, index, base + off, value)
    if reseal:
        crc = zlib.crc32(bytes(index[base : base + SEALED]))
        struct.pack_into("<I", index, base + SEALED, crc)
    path.write_bytes(bytes(index))


@pytest.fixture(scope="module")
def built(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of the manifest on one thread: one shard, images in manifest order."""
    out = tmp_path_factory.mktemp("damage") / "cache"
    build_cache(_dataset(manifest), out, threads=1, progress=False)
    return out


@pytest.fixture
def copy(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built cache, to damage."""
    return Path(shutil.copytree(built, tmp_path / "cache"))


@pytest.fixture(scope="module")
def decoded(manifest: Path) -> ga.ManifestDataset:
    return _dataset(manifest)


def _index(folder: Path) -> bytes:
    return (folder / "index.bin").read_bytes()


def _same_sample(a: dict[str, Any], b: dict[str, Any]) -> None:
    np.testing.assert_array_equal(a["pixel_values"].numpy(), b["pixel_values"].numpy())
    np.testing.assert_array_equal(a["boxes"].numpy(), b["boxes"].numpy())
    assert int(a["box_count"]) == int(b["box_count"])


def _with_boxes(decoded: ga.ManifestDataset, folder: Path) -> int:
    """A record with boxes, whose image was decoded at 1/2 (a JPEG)."""
    index = _index(folder)
    for i in range(len(decoded)):
        if entry(index, i)["denom"] == 2 and int(decoded[i]["box_count"]) > 0:
            return i
    raise AssertionError("the manifest has no JPEG record with boxes")


def _open_fails(manifest: Path, folder: Path, i: int, match: str) -> None:
    """Opening the cache raises a DecodeError naming index.bin and entry ``i``."""
    with pytest.raises(DecodeError, match=match) as e:
        _dataset(manifest, cache=folder)
    text = str(e.value)
    assert str(folder / "index.bin") in text and f"entry {i} (record {i}" in text, text
    assert "build it again" in text


def _falls_back(
    manifest: Path, decoded: ga.ManifestDataset, folder: Path, i: int, damaged: int = 1
) -> None:
    """Record ``i`` read through the cache: with ``cache_fallback`` the decoder's sample, counted
    (``damaged`` failed reads); without, a DecodeError naming the shard and the entry."""
    ds = _dataset(manifest, cache=folder)
    _same_sample(ds[i], decoded[i])
    count, first = ds.cache_read_failures()
    assert count == damaged and first is not None, (count, first)
    assert "shard-000.bin" in first and f"cache entry {i}," in first and "checksum" in first
    strict = _dataset(manifest, cache=folder, cache_fallback=False)
    with pytest.raises(DecodeError, match=rf"shard-000\.bin: bytes \d+\.\.\d+ \(cache entry {i},"):
        strict[i]


def _damage_is_real(manifest: Path, folder: Path, i: int) -> None:
    """Record ``i`` read from the cache with the checksum turned off (``verify=False``, for
    measuring only) differs from the decoder's: the damage would reach the sample unchecked."""
    core = _dataset(manifest)._core
    plain = core.batch([i], 0, 5)
    unchecked = core.with_cache(str(folder), True, False).batch([i], 0, 5)
    assert not (
        np.array_equal(plain["pixel_values"], unchecked["pixel_values"])
        and np.array_equal(plain["boxes"], unchecked["boxes"])
    )


def test_an_intact_cache_reads_with_no_fallback(
    manifest: Path, decoded: ga.ManifestDataset, built: Path
) -> None:
    ds = _dataset(manifest, cache=built, cache_fallback=False)
    for i in range(len(ds)):
        _same_sample(ds[i], decoded[i])
    assert ds.cache_read_failures() == (0, None)


def test_channels_that_disagree_with_the_width_are_refused_at_open(
    manifest: Path, decoded: ga.ManifestDataset, copy: Path
) -> None:
    # the same bytes seen as two channels of half the width: the per-channel normalisation of
    # a grey data set would index a second channel (a panic before the checks)
    i = _with_boxes(decoded, copy)
    e = entry(_index(copy), i)
    edit(copy, i, channels=2, width=e["width"] // 2)
    _open_fails(manifest, copy, i, "2 channels in a cache of gray images")
    edit(copy, i, reseal=False, channels=1)  # damage on disk: the entry's checksum
    _open_fails(manifest, copy, i, "its checksum does not match its bytes")


def test_an_edited_denominator_is_refused_or_falls_back(
    manifest: Path, decoded: ga.ManifestDataset, copy: Path
) -> None:
    i = _with_boxes(decoded, copy)
    edit(copy, i, reseal=False, denom=6)  # the boxes would be scaled by 3, the pixels unchanged
    _open_fails(manifest, copy, i, "its checksum does not match")
    edit(copy, i, denom=6)
    _open_fails(manifest, copy, i, "scale denominator 6")
    # a power of two the decode target allows: only the pixels' checksum (which covers the
    # scale) tells; the image is decoded instead, boxes and pixels the decoder's
    edit(copy, i, denom=4)
    _damage_is_real(manifest, copy, i)
    _falls_back(manifest, decoded, copy, i)


def test_swapped_offsets_are_refused_or_fall_back(
    manifest: Path, decoded: ga.ManifestDataset, copy: Path
) -> None:
    index = _index(copy)
    entries = [entry(index, i) for i in range(len(decoded))]
    # two records of other images whose pixels have the same length
    i, j = next(
        (i, j)
        for i in range(len(entries))
        for j in range(i + 1, len(entries))
        if entries[i]["len"] == entries[j]["len"]
        and entries[i]["pixels_crc"] != entries[j]["pixels_crc"]
        and entries[i]["flags"] == entries[j]["flags"] == PRESENT
    )
    a, b = entries[i]["offset"], entries[j]["offset"]
    edit(copy, i, reseal=False, offset=b)
    edit(copy, j, reseal=False, offset=a)
    _open_fails(manifest, copy, i, "its checksum does not match")
    edit(copy, i, offset=b)
    edit(copy, j, offset=a)
    _damage_is_real(manifest, copy, i)
    ds = _dataset(manifest, cache=copy)
    _same_sample(ds[i], decoded[i])
    _same_sample(ds[j], decoded[j])
    assert ds.cache_read_failures()[0] == 2


def test_an_unaligned_or_overlapping_offset_is_refused_at_open(
    manifest: Path, decoded: ga.ManifestDataset, copy: Path
) -> None:
    index = _index(copy)
    e = entry(index, 3)
    edit(copy, 3, offset=e["offset"] + 1)
    _open_fails(manifest, copy, 3, "not 64-byte aligned")
    edit(copy, 3, offset=e["offset"] + 64)  # aligned, into entry 4's bytes
    _open_fails(manifest, copy, 4, "overlap entry 3's")


def test_a_set_wide_flag_is_refused_or_falls_back(
    manifest: Path, decoded: ga.ManifestDataset, copy: Path
) -> None:
    i = _with_boxes(decoded, copy)
    e = entry(_index(copy), i)
    edit(copy, i, flags=PRESENT | WIDE)  # twice the bytes the entry holds
    _open_fails(manifest, copy, i, r"bytes for \d+x\d+x1 uint16")
    # the same bytes as uint16 of half the width: a consistent entry, but not these pixels'
    assert e["width"] // 2 < 68  # under the decode target (68 x 51) at 1/2: refused for that
    edit(copy, i, flags=PRESENT | WIDE, width=e["width"] // 2)
    _open_fails(manifest, copy, i, "scale denominator 2 for")
    edit(copy, i, flags=PRESENT | WIDE, width=e["width"] // 2, denom=1)
    _damage_is_real(manifest, copy, i)
    _falls_back(manifest, decoded, copy, i)


def test_flipped_shard_bytes_fall_back_counted_with_the_decoders_pixels(
    manifest: Path, decoded: ga.ManifestDataset, copy: Path
) -> None:
    index = _index(copy)
    i = _with_boxes(decoded, copy)
    e = entry(index, i)
    shard = copy / "shard-000.bin"
    data = bytearray(shard.read_bytes())
    mid = e["offset"] + e["len"] // 2
    data[mid : mid + 32] = bytes(v ^ 0xFF for v in data[mid : mid + 32])  # 32 pixels inverted
    shard.write_bytes(bytes(data))
    _damage_is_real(manifest, copy, i)
    _falls_back(manifest, decoded, copy, i)
    # through the loader, two threads: the batches of decoding, the damaged image counted once
    cached = _dataset(manifest, cache=copy)
    for workers in (0, 2):
        a = ga.DataLoader(decoded, batch_size=5, num_workers=workers,
                          generator=torch.Generator().manual_seed(3))  # fmt: skip
        b = ga.DataLoader(cached, batch_size=5, num_workers=workers,
                          generator=torch.Generator().manual_seed(3))  # fmt: skip
        for x, y in zip(a, b, strict=True):
            assert x["id"] == y["id"]
            np.testing.assert_array_equal(x["pixel_values"].numpy(), y["pixel_values"].numpy())
            np.testing.assert_array_equal(x["boxes"].numpy(), y["boxes"].numpy())
    assert cached.cache_read_failures()[0] == 2  # one read per epoch


def test_a_cache_of_the_previous_format_version_is_refused_saying_so(
    manifest: Path, copy: Path
) -> None:
    head = json.loads((copy / "cache.json").read_text())
    assert head["version"] == 2
    head["version"] = 1
    (copy / "cache.json").write_text(json.dumps(head))
    want = "holds a gradatim cache of format version 1, this gradatim reads version 2"
    with pytest.raises(InvalidArgumentError, match=want) as e:
        _dataset(manifest, cache=copy)
    assert str(copy) in str(e.value) and "cache build" in str(e.value)
    with pytest.raises(InvalidArgumentError, match=want):  # a build into it does not overwrite it
        build_cache(_dataset(manifest), copy, progress=False)


# every field of one entry, any value: opening refuses it naming the entry, or each read is the
# decoder's sample (a fallback counted when the cached one differed), or the read raises naming
# the file (another record's entry, a changed source file) - never another sample, never a panic
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from([name for name, _, _ in FIELDS]),
    value=st.one_of(
        st.sampled_from([0, 1, 2, 3, 4, 8, 63, 64, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)
    ),
    which=st.integers(0, 23),
    reseal=st.booleans(),
)
def test_any_edited_entry_field_is_refused_or_read_right(
    manifest: Path,
    decoded: ga.ManifestDataset,
    built: Path,
    tmp_path_factory: pytest.TempPathFactory,
    field: str,
    value: int,
    which: int,
    reseal: bool,
) -> None:
    folder = Path(shutil.copytree(built, tmp_path_factory.mktemp("edited") / "cache"))
    i = which % len(decoded)
    if field == "source_mtime_ns":
        value -= 2**31
    edit(folder, i, reseal=reseal, **{field: value})
    try:
        ds = _dataset(manifest, cache=folder)
    except DecodeError as e:
        assert str(folder / "index.bin") in str(e) and "entry " in str(e)
        return
    for k in {i, (i + 1) % len(decoded)}:
        try:
            got = ds[k]
        except DecodeError as e:  # another record's entry, a changed source: named
            assert k == i and str(e), e
            continue
        _same_sample(got, decoded[k])
