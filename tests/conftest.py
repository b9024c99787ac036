"""Shared fixtures: real images that no one here made, found where their packages install them.

- ``pydicom-data`` (PyPI): RG1_UNCR.dcm, a PA chest radiograph (16-bit, MONOCHROME1), and twins.
- Debian ``libjxl-testdata``: JPEG variants (progressive, 4:2:0/4:2:2/4:4:4, grey).
- Debian ``plasma-workspace-wallpapers``: large real JPEG photos.

A test that needs a missing package is skipped with the reason; ``make test`` installs all three.
Under ``CI=true`` a skipped test fails the run unless its reason is on the allow-list below (only
what needs a GPU), and hypothesis runs derandomised (the ``ci`` profile: the same examples every
run, so a bit-exactness property cannot flake); ``make stress`` explores with many more examples.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile(
    "stress", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") == "true" else None
)
if _PROFILE:
    settings.load_profile(_PROFILE)

# Skips CI accepts: tests that need hardware a CI runner does not have.
SKIP_ALLOWED_IN_CI = ("needs CUDA", "needs a GPU")
_skipped: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = (
            str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        )
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true":
        return
    bad = [(n, r) for n, r in _skipped if not any(a in r for a in SKIP_ALLOWED_IN_CI)]
    if bad:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI=true: {len(bad)} test(s) skipped without a GPU reason:", red=True
            )
            for nodeid, reason in bad:
                reporter.write_line(f"  {nodeid}: {reason}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


LIBJXL_DIR = "/usr/share/libjxl-testdata/jxl/flower"
WALLPAPER_GLOB = "/usr/share/wallpapers/*/contents/images/*.jpg"


def dicom_file(name: str) -> Path:
    """Path of a pydicom-data file, or skip."""
    data = pytest.importorskip("pydicom.data", reason="pydicom-data is not installed")
    try:
        return Path(data.get_testdata_file(name))
    except Exception as exc:  # pragma: no cover - depends on the installation
        pytest.skip(f"pydicom-data file {name} unavailable: {exc}")


def libjxl_jpegs() -> list[str]:
    """The JPEG variants of libjxl-testdata (empty when the package is missing)."""
    return sorted(glob.glob(f"{LIBJXL_DIR}/*.jpg"))


def wallpaper_jpegs() -> list[str]:
    """Large real photos (empty when the package is missing)."""
    return sorted(glob.glob(WALLPAPER_GLOB))


@pytest.fixture(scope="session")
def radiograph_path() -> Path:
    return dicom_file("RG1_UNCR.dcm")


@pytest.fixture(scope="session")
def radiograph_u16(radiograph_path: Path) -> np.ndarray:
    """The real radiograph as gradatim decodes it (uint16, 1955 rows x 1841 columns)."""
    from gradatim import image

    return image.decode(radiograph_path)


@pytest.fixture(scope="session")
def radiograph_u8(radiograph_u16: np.ndarray) -> np.ndarray:
    """An 8-bit version: the stored range stretched to 0..255."""
    lo, hi = int(radiograph_u16.min()), int(radiograph_u16.max())
    return ((radiograph_u16.astype(np.float64) - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)


@pytest.fixture(scope="session")
def libjxl() -> list[str]:
    files = libjxl_jpegs()
    if not files:
        pytest.skip(f"Debian libjxl-testdata is not installed ({LIBJXL_DIR} missing)")
    return files


@pytest.fixture(scope="session")
def wallpapers() -> list[str]:
    files = wallpaper_jpegs()
    if not files:
        pytest.skip("Debian plasma-workspace-wallpapers is not installed")
    return files


@pytest.fixture(scope="session")
def manifest(tmp_path_factory: pytest.TempPathFactory, radiograph_u16: np.ndarray) -> Path:
    """24 real-radiograph crops (JPEG q90, odd sizes, and 16-bit PNG), with boxes and tasks: the
    loader tests' manifest."""
    from gradatim.image import encode_jpeg, encode_png

    root = tmp_path_factory.mktemp("cxr")
    rng = np.random.default_rng(0)
    tasks = ["report", "phrase_grounding", "grounded_report", "anatomy_grounded_report"]
    records = []
    for i in range(24):
        h, w = int(rng.integers(300, 420)), int(rng.integers(280, 400))
        y, x = int(rng.integers(0, 1955 - 2 * h)), int(rng.integers(0, 1841 - 2 * w))
        crop16 = np.ascontiguousarray(radiograph_u16[y : y + 2 * h : 2, x : x + 2 * w : 2])
        if i % 4 == 3:
            name, data = f"img{i}.png", encode_png(crop16)
        else:
            name, data = f"img{i}.jpg", encode_jpeg((crop16 >> 7).astype(np.uint8), 90)
        (root / name).write_bytes(data)
        bx = [float(w * 0.2), float(h * 0.3), float(w * 0.6), float(h * 0.8)]
        records.append(
            {
                "id": f"s{i}",
                "image": name,
                "source": ["alpha", "beta"][i % 2],
                "task": tasks[i % 4],
                "split": "train",
                "text": "Small left effusion. No pneumothorax.",
                "boxes": [{"box": bx, "phrase": "left effusion", "anatomy": "left lung"}],
                "labels": {"Pleural Effusion": 1},
            }
        )
    path = root / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    return path
