"""The base install (numpy alone) runs ``gradatim phantom``, ``manifest validate``, ``manifest
pack`` and ``cache build``; ``gradatim --help`` lists every command without importing them; a
command that needs an extra says in one line which one to install. Each command runs in a fresh
Python in which torch, transformers, peft, faiss and matplotlib cannot be imported (``None`` in
``sys.modules``), on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradatim.cli import COMMANDS, build_parser

BLOCKED = ("torch", "transformers", "peft", "faiss", "matplotlib")

# Runs `gradatim ARGS...` with the BLOCKED modules unimportable; exits 97 if one of them (or a
# submodule) got into sys.modules all the same.
_RUN = """
import os, sys
blocked = sys.argv[1].split(",")
for name in blocked:
    sys.modules[name] = None
from gradatim.cli import main
try:
    code = main(sys.argv[2:])
finally:
    leaked = [k for k, v in sys.modules.items() if k.split(".")[0] in blocked and v is not None]
    if leaked:
        print("imported:", leaked, file=sys.stderr)
        sys.stderr.flush()
        os._exit(97)
raise SystemExit(code)
"""


def gradatim(
    *args: str | Path, cwd: Path, blocked: tuple[str, ...] = BLOCKED
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", _RUN, ",".join(blocked), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom data set written by ``gradatim phantom`` without torch; its manifest."""
    out = tmp_path_factory.mktemp("phantom")
    stdout = ok(gradatim("phantom", out, "--n", "6", "--size", "64", "--seed", "3", cwd=out))
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert stdout.startswith(
        f"wrote 6 synthetic phantom images, {len(lines)} manifest records: {manifest}"
    )
    assert len(sorted(out.glob("images/*/*.jpg"))) == 6
    assert len(lines) >= 6
    return manifest


def _summary(stdout: str, path: Path, n: int) -> list[str]:
    """``manifest validate``'s lines for one manifest, checked; without the path line."""
    lines = stdout.splitlines()
    assert lines[0] == f"{path}: {n} valid records"
    keys = [line.split(":")[0].strip() for line in lines[1:]]
    assert keys == ["source", "task", "split", "classes", "boxes"], lines
    return lines[1:]


def test_help_lists_every_command_without_importing_one(tmp_path: Path) -> None:
    stdout = ok(gradatim("--help", cwd=tmp_path))
    words = " ".join(stdout.split())
    for cmd in COMMANDS:
        assert f" {cmd.name} {' '.join(cmd.help.split())}" in words, cmd.name
    assert {c.name for c in COMMANDS} >= {"manifest", "phantom", "cache", "train", "difficulty"}


def test_building_the_parser_never_tries_torch(tmp_path: Path) -> None:
    # A finder that refuses and records every try to import a blocked module (pyarrow too), even
    # one caught by an `except ImportError`.
    code = f"""
import json, sys
blocked = {(*BLOCKED, "pyarrow")!r}
tried = []
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            tried.append(name)
            raise ModuleNotFoundError(f"no module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Refuse())
import gradatim.cli as cli
cli.build_parser([])
bare = sorted(c.module for c in cli.COMMANDS if c.module in sys.modules)
cli.build_parser(["manifest", "phantom", "cache"])
loaded = sorted(k for k in sys.modules if k.split(".")[0] in blocked)
print(json.dumps({{"tried": tried, "bare": bare, "loaded": loaded}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {"tried": [], "bare": [], "loaded": []}


def test_manifest_validate_without_torch(phantom: Path) -> None:
    n = len(phantom.read_text(encoding="utf-8").splitlines())
    lines = _summary(ok(gradatim("manifest", "validate", phantom, cwd=phantom.parent)), phantom, n)
    records = [json.loads(line) for line in phantom.read_text(encoding="utf-8").splitlines()]
    sources = sorted({r["source"] for r in records})
    assert lines[0] == "  source: " + ", ".join(
        f"{s} {sum(r['source'] == s for r in records)}" for s in sources
    )
    assert lines[-1] == f"  boxes: {sum(len(r['boxes']) for r in records)}"


def test_manifest_validate_rejects_a_bad_manifest_without_torch(phantom: Path) -> None:
    bad = phantom.with_name("bad.jsonl")
    first = json.loads(phantom.read_text(encoding="utf-8").splitlines()[0])
    del first["image"]
    bad.write_text(json.dumps(first) + "\n", encoding="utf-8")
    result = gradatim("manifest", "validate", bad, cwd=phantom.parent)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("gradatim manifest validate: error: ") and "image" in line


def test_manifest_pack_without_torch(phantom: Path, tmp_path: Path) -> None:
    n = len(phantom.read_text(encoding="utf-8").splitlines())
    packed = phantom.with_name("packed.arrow")
    stdout = ok(gradatim("manifest", "pack", phantom, "-o", packed, cwd=tmp_path))
    assert stdout.strip() == f"packed {n} records into {packed}"
    assert packed.stat().st_size > 0
    both = ok(gradatim("manifest", "validate", phantom, packed, cwd=tmp_path))
    lines = both.splitlines()
    assert _summary("\n".join(lines[:6]), phantom, n) == _summary("\n".join(lines[6:]), packed, n)


def test_cache_build_without_torch(phantom: Path, tmp_path: Path) -> None:
    n = len(phantom.read_text(encoding="utf-8").splitlines())
    cache, report = tmp_path / "cache", tmp_path / "report.json"
    argv = ["cache", "build", phantom, "-o", cache, "--size", "64", "--quiet", "--report", report]
    result = gradatim(*argv, cwd=tmp_path)
    ok(result)
    assert f"cache {cache}: {n} records ({n} decoded now, 0 failed)" in result.stderr
    built = json.loads(report.read_text())
    assert (built["records"], built["decoded"], built["failed"]) == (n, n, [])
    assert (cache / "cache.json").is_file() and sorted(cache.glob("shard-*.bin"))
    # The cache built without torch is the loader's: the same pixels as decoding (here, with it).
    from gradatim.data import ManifestDataset

    plain = ManifestDataset(phantom, image_size=(64, 64))
    cached = ManifestDataset(phantom, image_size=(64, 64), cache=cache, cache_fallback=False)
    idx = list(range(n))
    np.testing.assert_array_equal(
        cached.load_batch(idx)["pixel_values"].numpy(),
        plain.load_batch(idx)["pixel_values"].numpy(),
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["train", "{config}"],
            "gradatim train: needs torch, transformers and peft: pip install 'gradatim[train]'",
        ),
        (
            ["difficulty", "--manifest", "{manifest}", "--out", "{tmp}/d.parquet"],
            "gradatim difficulty: needs torch: pip install 'gradatim[difficulty]'",
        ),
        (
            ["plot", "schedule", "--class-difficulty", "0.2", "0.5", "-o", "{tmp}/s.png"],
            "gradatim plot schedule: needs matplotlib: pip install 'gradatim[difficulty]'",
        ),
        (
            ["demo", "--phantom", "4", "--size", "64", "--out", "{tmp}/demo.png"],
            "gradatim demo: needs torch: pip install 'gradatim[train]'",
        ),
        (["bench", "{manifest}"], "gradatim bench: needs torch: pip install torch"),
    ],
    ids=["train", "difficulty", "plot", "demo", "bench"],
)
def test_a_missing_extra_is_one_line(
    argv: list[str], line: str, phantom: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'[data]\nmanifest = "{phantom}"\n')
    fill = {"config": config, "manifest": phantom, "tmp": tmp_path}
    result = gradatim(*[a.format(**fill) for a in argv], cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [line]
    assert "Traceback" not in result.stderr


def test_parquet_without_pyarrow_names_it(tmp_path: Path) -> None:
    from gradatim.manifest.common import read_manifest, write_manifest

    ok(gradatim("phantom", tmp_path, "--n", "1", "--size", "64", cwd=tmp_path))
    parquet = write_manifest(read_manifest(tmp_path / "manifest.jsonl"), tmp_path / "m.parquet")
    result = gradatim("manifest", "validate", parquet, cwd=tmp_path, blocked=("pyarrow",))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gradatim manifest validate: needs pyarrow: pip install pyarrow"
    ]
    ok(gradatim("manifest", "validate", parquet, cwd=tmp_path, blocked=BLOCKED))


def test_the_command_table_matches_the_modules() -> None:
    # Every command's name, order and help line in COMMANDS is what its add_parser registers.
    assert build_parser([]).format_help() == build_parser().format_help()
