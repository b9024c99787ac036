"""Under CI=true a skipped test fails the run unless it needs a GPU (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SKIPPING = """
import pytest

def test_needs_a_missing_package():
    pytest.skip("somepackage is not installed")

def test_needs_cuda():
    pytest.skip("needs CUDA")

def test_passes():
    assert True
"""


def run(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    shutil.copy(Path(__file__).parent / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    if ci:
        env["CI"] = "true"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_skips.py"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_skip_fails_ci_unless_it_needs_a_gpu(tmp_path: Path) -> None:
    local = run(tmp_path, ci=False)
    assert local.returncode == 0, local.stdout
    ci = run(tmp_path, ci=True)
    assert ci.returncode == 1, ci.stdout
    assert "test_needs_a_missing_package" in ci.stdout and "somepackage" in ci.stdout
    assert "test_skips.py::test_needs_cuda" not in ci.stdout.split("without a GPU reason")[-1]
