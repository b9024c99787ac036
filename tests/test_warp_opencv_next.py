"""gradatim's warp against the OpenCV release after the locked oracle (5.1), installed beside the
test environment by `make deps-test` (target/oracles/opencv-next, from
requirements/opencv-next.lock) and run in a child process, so both versions are checked in one
run: gradatim equals the locked 5.0 bit for bit (tests/test_warp.py) and differs from 5.1 exactly
as docs/image.md ("Which OpenCV") says (`opencv_warp_rules.assert_documented_difference`).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from opencv_warp_rules import assert_documented_difference

from gradatim import image

ORACLE = Path(__file__).resolve().parents[1] / "target" / "oracles" / "opencv-next"

# Runs under the next OpenCV: warps every case of the input archive, writes the results.
CHILD = """
import sys
import cv2
import numpy as np
cv2.setNumThreads(1)
cases = np.load(sys.argv[1], allow_pickle=False)
out = {"version": np.array(cv2.__version__)}
for name in cases.files:
    if name.startswith("img_"):
        key = name[4:]
        w, h = (int(v) for v in cases["size_" + key])
        out[key] = cv2.warpAffine(cases[name], cases["m_" + key], (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
np.savez(sys.argv[2], **out)
"""


def cases(u8: np.ndarray, u16: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, tuple]]:
    """Grey 8- and 16-bit, 3- and 4-channel 8-bit views of the real radiograph, each warped by
    a CURE-range rotation/scale/shift to three sizes (one a multiple of 16, two with a tail)."""
    rng = np.random.default_rng(5)
    images = {
        "u8": u8,
        "u16": u16,
        "rgb": np.dstack([u8, u8[::-1], u8[:, ::-1]]),
        "rgba": np.dstack([u8, u8[::-1], u8[:, ::-1], u8]),
    }
    out = {}
    for name, img in images.items():
        sh, sw = img.shape[:2]
        for dw, dh in [(512, 512), (333, 517), (1841, 1955)]:
            angle = math.radians(rng.uniform(-15, 15))
            scale = rng.uniform(0.9, 1.1)
            c, s = math.cos(angle) * scale, math.sin(angle) * scale
            a = np.array([[c, -s], [s, c]])
            centre = np.array([sw / 2, sh / 2])
            shift = centre - a @ centre + rng.uniform(-0.1, 0.1, 2) * (sw, sh)
            m = np.diag([dw / sw, dh / sh]) @ np.hstack([a, shift[:, None]])
            out[f"{name}_{dw}x{dh}"] = (img, m, (dw, dh))
    return out


@pytest.fixture(scope="module")
def next_opencv(tmp_path_factory, radiograph_u8, radiograph_u16):
    if not (ORACLE / "cv2").is_dir():
        pytest.fail(f"{ORACLE} is missing: `make deps-test` installs it (opencv-next.lock)")
    work = tmp_path_factory.mktemp("opencv_next")
    all_cases = cases(radiograph_u8, radiograph_u16)
    arrays = {}
    for key, (img, m, size) in all_cases.items():
        arrays[f"img_{key}"], arrays[f"m_{key}"] = img, m
        arrays[f"size_{key}"] = np.array(size)
    np.savez(work / "in.npz", **arrays)
    env = {**os.environ, "PYTHONPATH": str(ORACLE)}
    subprocess.run(
        [sys.executable, "-c", CHILD, str(work / "in.npz"), str(work / "out.npz")],
        check=True,
        env=env,
        timeout=300,
    )
    return all_cases, np.load(work / "out.npz", allow_pickle=False)


def test_the_next_opencv_is_the_one_documented(next_opencv) -> None:
    _, results = next_opencv
    assert str(results["version"]).startswith("5.1."), str(results["version"])


@pytest.mark.parametrize("kind", ["u8", "rgb", "rgba", "u16"])
def test_warp_differs_from_opencv_51_only_as_documented(next_opencv, kind: str) -> None:
    all_cases, results = next_opencv
    differing = 0
    for key, (img, m, size) in all_cases.items():
        if not key.startswith(kind + "_"):
            continue
        ours, _, _ = image.warp_affine(img, m, size)
        ref = results[key]
        assert ours.shape == ref.shape and ours.dtype == ref.dtype
        assert_documented_difference(img, m, size, ours, ref)
        differing += int((ours != ref).sum())
    # the difference is real (if 5.1 ever stopped differing, the docs would be wrong)
    assert differing > 0
