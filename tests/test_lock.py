"""The locks (README, "Locked versions"): every requirement of `requirements/*.in` is pinned with
`==` and hashes in its lock, the demo and test locks agree, the environment running the tests is
the test lock, the Makefile installs from the locks, and the ranges `pyproject.toml` gives users
admit the locked versions."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")


def read_in(path: Path) -> list[Requirement]:
    """The requirements of an .in file, following `-r` includes."""
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            out += read_in(path.parent / line[3:].strip())
        else:
            out.append(Requirement(line))
    return out


def read_lock(path: Path) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) of a lock written by `uv pip compile`."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = canonicalize_name(m.group(1))
            pins[current] = (Version(m.group(2)), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


LOCKS = ["demo", "test", "bootstrap", "nodeps", "opencv-next"]


@pytest.mark.parametrize("name", LOCKS)
def test_every_requirement_is_pinned_with_hashes(name: str) -> None:
    pins = read_lock(REQ / f"{name}.lock")
    assert pins, f"{name}.lock is empty"
    for req in read_in(REQ / f"{name}.in"):
        key = canonicalize_name(req.name)
        assert key in pins, f"{req.name} (from {name}.in) is not in {name}.lock"
        version, hashes = pins[key]
        assert version in req.specifier, f"{name}.lock pins {req.name}=={version}, not {req}"
        assert hashes >= 1, f"{name}.lock has no hash for {req.name}"
    assert all(h >= 1 for _, h in pins.values()), f"a pin of {name}.lock has no hash"


def test_demo_lock_agrees_with_test_lock() -> None:
    demo, test = read_lock(REQ / "demo.lock"), read_lock(REQ / "test.lock")
    assert demo.keys() <= test.keys()
    assert {k: demo[k][0] for k in demo} == {k: test[k][0] for k in demo}


def test_this_environment_is_the_test_lock() -> None:
    """`make test` synced the running interpreter's environment to the lock: every locked
    distribution is installed at exactly its pinned version."""
    wrong = {}
    for name, (version, _) in read_lock(REQ / "test.lock").items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (str(version), str(installed))
    assert not wrong, f"installed versions differ from test.lock (locked, installed): {wrong}"


def test_the_makefile_installs_from_the_locks() -> None:
    make = (ROOT / "Makefile").read_text()
    for target, lock in [("deps-demo", "demo.lock"), ("deps-test", "test.lock")]:
        body = make.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert f"requirements/{lock}" in body and "$(UV_SYNC)" in body, target
    assert "--require-hashes" in make.split("UV_SYNC :=", 1)[1].split("\n", 1)[0]
    assert not re.search(r"pip install[^\n]*-r requirements/\w+\.in", make)


def test_pyproject_ranges_admit_the_locked_versions() -> None:
    """Users get ranges; the locked (tested) versions must lie inside them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for group in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in group]
    pins = read_lock(REQ / "test.lock")
    checked = 0
    for req in reqs:
        key = canonicalize_name(req.name)
        if key in pins:
            assert pins[key][0] in req.specifier, f"locked {req.name}=={pins[key][0]} vs {req}"
            checked += 1
    assert checked >= 10
