"""Phantom chest X-ray studies: SYNTHETIC, deterministic, made up from scratch.

Nothing here is a patient, a radiograph or a real report. The images are drawn from geometric
primitives (a body ellipse, two darker lungs, a brighter mediastinum and heart, faint rib arcs,
the spine, clavicles, diaphragm, noise); "findings" are drawn as lesions at anatomical positions
(nodule, consolidation, hazy opacity, plate-like atelectasis, pleural effusion at the
costophrenic angle, apical pneumothorax, cardiomegaly = an enlarged heart, an endotracheal tube);
each study gets a templated report (findings + impression, with the side), boxes around its
lesions with the phrase and the Chest ImaGenome anatomy name, and CheXpert-style labels that
agree with the report. They are the embedded default data of ``make demo`` and of the tests: a
loader, a curriculum or a box-aware text target can be exercised end to end without any dataset
licence, and every box is known exactly.

Layout: the patient's right is on the image's left, as on a PA radiograph. Boxes are
``[x1, y1, x2, y2]`` in pixel-edge coordinates of the written image: a pixel ``(x, y)`` covers
``[x, x + 1) x [y, y + 1)``, and every pixel a lesion changed lies inside its box.

The synthetic patient varies: body and lung position and size, heart size and position, and
how the patient is placed in the field: a turn of up to +-7 degrees (``ROTATION``) and a
magnification of 1 +- 0.10 (``ZOOM``) about the image centre, then a shift of up to +-6 % of
each side (``SHIFT``), so an anatomical region's box cannot be guessed from its name; findings
vary in position, size and intensity (0.6x-1.2x per study), so grounding one needs the pixels.

Sources imitate a multi-dataset setting: ``phantom-a`` (base size, report + VQA records),
``phantom-b`` (1.25x size, higher contrast, phrase grounding + grounded report), ``phantom-c``
(0.875x size, lower contrast and more noise, findings at 0.6x intensity and 0.8x size: the hard
source; anatomy-grounded report over all 29 regions + report). ``generate`` also writes
``truth.jsonl``, each record's true difficulty (``record_difficulty``: from the contrast-to-noise
ratio and size of the findings it is about), to check difficulty estimates against. Every study
depends only on ``(seed, index)`` (and its source and size), so ``n=10`` is a prefix of
``n=1000`` and a study is the same whatever else is generated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradatim import cli_paths
from gradatim import image as gimage
from gradatim.manifest.anatomy import ANATOMY_REGIONS
from gradatim.manifest.classes import CHEXPERT_LABELS, NO_FINDING, SUPPORT_DEVICES
from gradatim.manifest.common import make_box, make_record, validate_record

__all__ = [
    "SOURCES",
    "FINDING_KINDS",
    "Style",
    "Finding",
    "Study",
    "make_study",
    "render",
    "lesion_masks",
    "study_records",
    "record_difficulty",
    "ROTATION",
    "SHIFT",
    "ZOOM",
    "TRUTH",
    "generate",
    "add_parser",
]


@dataclass(frozen=True)
class Style:
    """How a phantom source looks and which tasks it provides. ``lesion_gain`` scales every
    lesion's intensity change and ``lesion_size`` the parenchymal lesions' extent: the harder
    source has fainter, smaller findings (``truth.jsonl`` gives each record's difficulty)."""

    scale: float
    contrast: float
    gamma: float
    noise: float
    tasks: tuple[str, ...]
    lesion_gain: float = 1.0
    lesion_size: float = 1.0


SOURCES: dict[str, Style] = {
    "phantom-a": Style(1.0, 1.0, 1.0, 5.0, ("report", "vqa")),
    "phantom-b": Style(1.25, 1.25, 0.9, 3.5, ("phrase_grounding", "grounded_report")),
    "phantom-c": Style(0.875, 0.8, 1.15, 8.0, ("anatomy_grounded_report", "report"), 0.6, 0.8),
}
"""The phantom sources: size scale, contrast, gamma, noise (grey levels), tasks, and lesion gain
and size (phantom-c: the hard one, fainter and smaller findings under more noise)."""

#: The patient's rotation about the image centre, degrees (uniform in +-ROTATION).
ROTATION = 7.0

#: How far the patient sits from the centre of the field (each axis uniform in +-SHIFT, a
#: fraction of the image side) and how large they appear (uniform in 1 +- ZOOM): positioning
#: and magnification as they vary between real radiographs.
SHIFT = 0.06
ZOOM = 0.10

#: The side table ``generate`` writes beside the manifest: ``{"id", "source", "task",
#: "difficulty"}`` per record, the generator's true difficulty (:func:`record_difficulty`).
TRUTH = "truth.jsonl"

FINDING_KINDS: dict[str, str] = {
    "device": SUPPORT_DEVICES,
    "nodule": "Lung Lesion",
    "consolidation": "Consolidation",
    "opacity": "Lung Opacity",
    "atelectasis": "Atelectasis",
    "effusion": "Pleural Effusion",
    "pneumothorax": "Pneumothorax",
    "cardiomegaly": "Cardiomegaly",
}
"""Finding kinds the phantom draws -> the CheXpert label each one sets."""

_PARENCHYMA = ("nodule", "consolidation", "opacity", "atelectasis")


@dataclass
class Finding:
    """One drawn finding: its kind, side/zone, certainty, anatomy and text, and its lesion.

    ``window`` is ``(y0, y1, x0, x1)`` in image pixels and ``effect`` the intensity change over
    it (0 outside the lesion); ``box`` encloses the nonzero effect exactly.
    """

    kind: str
    side: str | None
    zone: str | None
    uncertain: bool
    anatomy: str
    sentence: str
    phrase: str
    window: tuple[int, int, int, int]
    effect: np.ndarray = field(repr=False)
    box: list[float]
    difficulty: float = 0.0


@dataclass
class Study:
    """One phantom study: geometry, findings, text, labels and region boxes."""

    index: int
    seed: int
    source: str
    split: str
    width: int
    height: int
    geometry: dict[str, float]
    findings: list[Finding]
    findings_text: str
    impression: str
    labels: dict[str, int | None]
    regions: dict[str, list[float]]
    vqa: tuple[str, str, list[int]]
    angle: float = 0.0
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)

    @property
    def report(self) -> str:
        """Findings and impression joined, as the manifest's ``text`` of a report."""
        return f"{self.findings_text} {self.impression}"


def _size(size: Sequence[int], style: Style) -> tuple[int, int]:
    w = max(64, int(round(size[0] * style.scale / 8)) * 8)
    h = max(64, int(round(size[1] * style.scale / 8)) * 8)
    return w, h


def _geometry(rng: np.random.Generator) -> dict[str, float]:
    """The synthetic patient: body position, lung and heart size and position, and how the
    whole patient sits (``dy``: the chest's vertical offset). Wide enough that the anatomy's
    boxes cannot be guessed from the region's name alone (grounding needs the image)."""
    j = rng.uniform(-1.0, 1.0, size=12)
    lung_cy = 0.47 + 0.035 * j[1]
    body_cx = 0.5 + 0.035 * j[0]
    return {
        "body_cx": body_cx,
        "dy": lung_cy - 0.47,
        "lung_cy": lung_cy,
        "lung_ax": 0.145 + 0.018 * j[2],
        "lung_ay": 0.285 + 0.03 * j[3],
        "lung_dx": 0.19 + 0.015 * j[4],
        "heart_cx": body_cx + 0.035 + 0.015 * j[5],
        "heart_cy": lung_cy + 0.17 + 0.015 * j[6],
        "heart_ax": 0.125 + 0.012 * j[7],
        "heart_ay": 0.105 + 0.01 * j[8],
        "rib_phase": float(rng.uniform(0, 1)),
        "brightness": 0.02 * j[9],
        "lesion_gain": 0.6 + 0.6 * (j[10] + 1) / 2,  # this study's lesions: 0.6x-1.2x
    }


def _lung_box(g: dict[str, float], side: str) -> tuple[float, float, float, float]:
    """Normalised lung ellipse bounds (patient right = image left)."""
    cx = g["body_cx"] + (-g["lung_dx"] if side == "right" else g["lung_dx"])
    return (
        cx - g["lung_ax"],
        g["lung_cy"] - g["lung_ay"],
        cx + g["lung_ax"],
        g["lung_cy"] + g["lung_ay"],
    )


def _regions(
    g: dict[str, float], w: int, h: int, heart: tuple[float, float, float, float]
) -> dict[str, list[float]]:
    """The 29 Chest ImaGenome regions as pixel boxes, from the study's geometry."""
    r: dict[str, tuple[float, float, float, float]] = {}
    for side in ("right", "left"):
        x1, y1, x2, y2 = _lung_box(g, side)
        lw, lh = x2 - x1, y2 - y1
        lateral_lo = side == "right"  # the right lung's lateral edge is the image's left
        r[f"{side} lung"] = (x1, y1, x2, y2)
        for k, zone in enumerate(("upper", "mid", "lower")):
            r[f"{side} {zone} lung zone"] = (x1, y1 + k * lh / 3, x2, y1 + (k + 1) * lh / 3)
        r[f"{side} apical zone"] = (x1 + 0.15 * lw, y1, x2 - 0.15 * lw, y1 + 0.16 * lh)
        if lateral_lo:
            r[f"{side} hilar structures"] = (x2 - 0.4 * lw, y1 + 0.36 * lh, x2, y1 + 0.6 * lh)
            r[f"{side} costophrenic angle"] = (x1, y2 - 0.16 * lh, x1 + 0.35 * lw, y2)
        else:
            r[f"{side} hilar structures"] = (x1, y1 + 0.36 * lh, x1 + 0.4 * lw, y1 + 0.6 * lh)
            r[f"{side} costophrenic angle"] = (x2 - 0.35 * lw, y2 - 0.16 * lh, x2, y2)
        r[f"{side} hemidiaphragm"] = (x1, y2 - 0.07 * lh, x2, y2 + 0.05 * lh)
    c, dy = g["body_cx"], g.get("dy", 0.0)
    hx1, hy1, hx2, hy2 = heart
    r["trachea"] = (c - 0.025, 0.05 + dy, c + 0.025, 0.31 + dy)
    r["carina"] = (c - 0.035, 0.29 + dy, c + 0.035, 0.35 + dy)
    r["spine"] = (c - 0.04, 0.0, c + 0.04, 1.0)
    r["right clavicle"] = (c - 0.36, 0.11 + dy, c - 0.03, 0.2 + dy)
    r["left clavicle"] = (c + 0.03, 0.11 + dy, c + 0.36, 0.2 + dy)
    r["aortic arch"] = (c + 0.02, 0.25 + dy, c + 0.11, 0.34 + dy)
    r["upper mediastinum"] = (c - 0.08, 0.12 + dy, c + 0.08, 0.36 + dy)
    r["mediastinum"] = (c - 0.09, 0.12 + dy, max(c + 0.09, hx2), min(0.86 + dy, hy2))
    r["svc"] = (c - 0.075, 0.2 + dy, c - 0.025, 0.46 + dy)
    r["cardiac silhouette"] = heart
    r["cavoatrial junction"] = (c - 0.075, 0.44 + dy, c - 0.025, 0.52 + dy)
    r["right atrium"] = (hx1, 0.5 * (hy1 + hy2) - 0.07, hx1 + 0.35 * (hx2 - hx1), hy2 - 0.01)
    r["abdomen"] = (0.1, max(r["right hemidiaphragm"][3], r["left hemidiaphragm"][3]), 0.9, 1.0)
    out = {}
    for name in ANATOMY_REGIONS:
        x1, y1, x2, y2 = r[name]
        bx1 = min(max(math.floor(x1 * w), 0), w - 1)
        by1 = min(max(math.floor(y1 * h), 0), h - 1)
        bx2 = max(min(math.ceil(x2 * w), w), bx1 + 1)
        by2 = max(min(math.ceil(y2 * h), h), by1 + 1)
        out[name] = [float(bx1), float(by1), float(bx2), float(by2)]
    return out


def _grid(window: tuple[int, int, int, int], w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    y0, y1, x0, x1 = window
    ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) / h)[:, None]
    xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5) / w)[None, :]
    return ys, xs


def _window(box: Sequence[float], w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return (
        max(0, math.floor(y1 * h)),
        min(h, math.ceil(y2 * h)),
        max(0, math.floor(x1 * w)),
        min(w, math.ceil(x2 * w)),
    )


def _soft_ellipse(
    ys: np.ndarray, xs: np.ndarray, cx: float, cy: float, ax: float, ay: float, soft: float
) -> np.ndarray:
    r = np.sqrt(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2)
    return np.clip((1.0 - r) / soft, 0.0, 1.0)


def _in_lung(g: dict[str, float], side: str, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = _lung_box(g, side)
    return _soft_ellipse(ys, xs, (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2, 0.08)


def _heart_box(g: dict[str, float], enlarged: bool) -> tuple[float, float, float, float]:
    ax, ay = g["heart_ax"], g["heart_ay"]
    cx = g["heart_cx"]
    if enlarged:
        ax, ay, cx = ax * 1.38, ay * 1.15, cx - 0.01
    return (cx - ax, g["heart_cy"] - ay, cx + ax, g["heart_cy"] + ay)


def _heart_effect(
    g: dict[str, float], w: int, h: int, enlarged: bool
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    x1, y1, x2, y2 = _heart_box(g, enlarged)
    win = _window((x1, y1, x2, y2), w, h)
    ys, xs = _grid(win, w, h)
    alpha = _soft_ellipse(ys, xs, (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2, 0.12)
    return win, (0.14 * alpha).astype(np.float32)


def _trim(
    window: tuple[int, int, int, int], effect: np.ndarray, threshold: float = 2.0 / 255
) -> tuple[tuple[int, int, int, int], np.ndarray, list[float]]:
    """Zero the faint fringe (|effect| < threshold), crop to the rest, return the exact box."""
    effect = np.where(np.abs(effect) >= threshold, effect, 0.0).astype(np.float32)
    rows = np.flatnonzero(effect.any(axis=1))
    cols = np.flatnonzero(effect.any(axis=0))
    if rows.size == 0:
        raise RuntimeError("phantom lesion vanished")  # parameters keep lesions visible
    y0, _, x0, _ = window
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    cropped = np.ascontiguousarray(effect[r0:r1, c0:c1])
    win = (y0 + r0, y0 + r1, x0 + c0, x0 + c1)
    return win, cropped, [float(x0 + c0), float(y0 + r0), float(x0 + c1), float(y0 + r1)]


_SIZE_WORDS = ("small", "moderate")


def _lesion(
    kind: str,
    side: str | None,
    zone: str | None,
    g: dict[str, float],
    w: int,
    h: int,
    rng: np.random.Generator,
    grow: float = 1.0,
) -> tuple[str, tuple[int, int, int, int], np.ndarray, str]:
    """Draw one lesion (parenchymal lesions ``grow`` times their usual extent); returns
    (anatomy, window, effect, size word)."""
    if kind == "cardiomegaly":
        win, eff = _heart_effect(g, w, h, enlarged=True)
        return "cardiac silhouette", win, eff, ""
    if kind == "device":
        c = g["body_cx"] + float(rng.uniform(-0.004, 0.004))
        tip = 0.26 + g.get("dy", 0.0) + float(rng.uniform(-0.02, 0.02))
        win = _window((c - 0.01, 0.0, c + 0.01, tip), w, h)
        ys, xs = _grid(win, w, h)
        half = 1.6 / w
        line = np.clip(1.0 - np.abs(xs - c) / half, 0.0, 1.0) * np.ones_like(ys)
        return "trachea", win, (0.45 * line).astype(np.float32), ""
    assert side is not None
    lx1, ly1, lx2, ly2 = _lung_box(g, side)
    lw, lh = lx2 - lx1, ly2 - ly1
    lcx = (lx1 + lx2) / 2
    if kind == "effusion":
        big = rng.random() < 0.4
        level = ly2 - lh * (0.3 if big else 0.17)
        win = _window((lx1, level - 0.06 * lh, lx2, ly2), w, h)
        ys, xs = _grid(win, w, h)
        # Meniscus: the fluid climbs the lateral chest wall.
        lateral = lx1 if side == "right" else lx2
        rise = 0.08 * lh * np.clip(1.0 - np.abs(xs - lateral) / lw, 0.0, 1.0) ** 2
        fluid = np.clip((ys - (level - rise)) / (0.015 * lh), 0.0, 1.0)
        eff = 0.3 * fluid * np.clip(_in_lung(g, side, ys, xs) * 1.6, 0.0, 1.0)
        return f"{side} costophrenic angle", win, eff, _SIZE_WORDS[int(big)]
    if kind == "pneumothorax":
        lateral = lx1 if side == "right" else lx2
        cx = lateral + (0.28 if side == "right" else -0.28) * lw
        cy, ax, ay = ly1 + 0.16 * lh, 0.34 * lw, 0.2 * lh
        win = _window((cx - ax, cy - ay, cx + ax, cy + ay), w, h)
        ys, xs = _grid(win, w, h)
        pocket = _soft_ellipse(ys, xs, cx, cy, ax, ay, 0.15) * np.clip(
            _in_lung(g, side, ys, xs) * 2, 0, 1
        )
        rim = np.clip(1.0 - np.abs(pocket - 0.5) / 0.18, 0.0, 1.0)
        eff = -0.09 * pocket + 0.1 * rim * (pocket > 0)
        return f"{side} apical zone", win, eff, "small"
    assert zone is not None
    k = ("upper", "mid", "lower").index(zone)
    zy1, zy2 = ly1 + k * lh / 3, ly1 + (k + 1) * lh / 3
    # A point well inside the lung within the zone.
    for _ in range(20):
        px = float(rng.uniform(lcx - 0.55 * lw / 2, lcx + 0.55 * lw / 2))
        py = float(rng.uniform(zy1 + 0.2 * (zy2 - zy1), zy2 - 0.2 * (zy2 - zy1)))
        if ((px - lcx) / (lw / 2)) ** 2 + ((py - (ly1 + ly2) / 2) / (lh / 2)) ** 2 < 0.55:
            break
    anatomy = f"{side} {zone} lung zone"
    if kind == "nodule":
        rad = float(rng.uniform(0.012, 0.026)) * grow
        win = _window(
            (px - rad * 1.3, py - rad * 1.3 * w / h, px + rad * 1.3, py + rad * 1.3 * w / h), w, h
        )
        ys, xs = _grid(win, w, h)
        eff = 0.28 * _soft_ellipse(ys, xs, px, py, rad, rad * w / h, 0.3)
        return anatomy, win, eff, "small" if rad < 0.019 * grow else "1.5 cm"
    if kind == "atelectasis":
        bw, bh = 0.38 * lw * grow, 0.02
        tilt = float(rng.uniform(-0.15, 0.15))
        win = _window((px - bw, py - bh - abs(tilt) * bw, px + bw, py + bh + abs(tilt) * bw), w, h)
        ys, xs = _grid(win, w, h)
        band = np.clip(1.0 - np.abs(ys - py - tilt * (xs - px)) / (0.35 * bh), 0.0, 1.0)
        band = band * np.clip(1.0 - np.abs(xs - px) / bw, 0.0, 1.0) ** 0.5
        return anatomy, win, 0.2 * band, ""
    # consolidation (dense, lobulated) or opacity (faint, hazy): a few overlapping blobs
    n = 4 if kind == "consolidation" else 2
    centres = [
        (px + float(rng.uniform(-0.04, 0.04)), py + float(rng.uniform(-0.035, 0.035)))
        for _ in range(n)
    ]
    radii = [
        (float(rng.uniform(0.03, 0.055)) * grow, float(rng.uniform(0.025, 0.045)) * grow)
        for _ in range(n)
    ]
    bx1 = min(cx - ax for (cx, _), (ax, _) in zip(centres, radii, strict=True))
    bx2 = max(cx + ax for (cx, _), (ax, _) in zip(centres, radii, strict=True))
    by1 = min(cy - ay for (_, cy), (_, ay) in zip(centres, radii, strict=True))
    by2 = max(cy + ay for (_, cy), (_, ay) in zip(centres, radii, strict=True))
    win = _window((bx1, by1, bx2, by2), w, h)
    ys, xs = _grid(win, w, h)
    alpha = np.zeros((win[1] - win[0], win[3] - win[2]), np.float32)
    for (cx, cy), (ax, ay) in zip(centres, radii, strict=True):
        np.maximum(
            alpha,
            _soft_ellipse(ys, xs, cx, cy, ax, ay, 0.6 if kind == "opacity" else 0.3),
            out=alpha,
        )
    alpha *= np.clip(_in_lung(g, side, ys, xs) * 1.5, 0.0, 1.0)
    return anatomy, win, (0.22 if kind == "consolidation" else 0.12) * alpha, ""


_NOUNS = {
    "nodule": "nodule",
    "consolidation": "consolidation",
    "opacity": "opacity",
    "atelectasis": "atelectasis",
    "effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
}


def _sentence(
    kind: str, side: str | None, zone: str | None, size: str, uncertain: bool
) -> tuple[str, str]:
    """The report sentence and the short grounding phrase of one finding."""
    where = f"the {side} {zone} lung zone"
    if kind == "device":
        return "An endotracheal tube is in place.", "endotracheal tube"
    if kind == "cardiomegaly":
        certain, hedged, phrase = "The heart is enlarged.", "cardiomegaly", "enlarged heart"
    elif kind == "effusion":
        phrase = f"{side} pleural effusion"
        certain = hedged = f"{size} {side} pleural effusion"
        certain = f"{certain[0].upper()}{certain[1:]}."
    elif kind == "pneumothorax":
        phrase = f"{side} apical pneumothorax"
        hedged = f"small {side} apical pneumothorax"
        certain = f"Small {side} apical pneumothorax."
    elif kind == "nodule":
        phrase = f"{side} {zone} lung zone nodule"
        hedged = f"{size} nodule in {where}"
        certain = f"There is a {size} nodule in {where}."
    elif kind == "consolidation":
        phrase = f"{side} {zone} lung zone consolidation"
        hedged = f"consolidation in {where}"
        certain = f"Consolidation in {where}."
    elif kind == "opacity":
        phrase = f"{side} {zone} lung zone opacity"
        hedged = f"hazy opacity in {where}"
        certain = f"There is a hazy opacity in {where}."
    else:
        phrase = f"{side} {zone} lung zone atelectasis"
        hedged = f"plate-like atelectasis in {where}"
        certain = f"Plate-like atelectasis in {where}."
    return (f"Possible {hedged}." if uncertain else certain), phrase


def make_study(
    index: int, *, seed: int = 0, size: Sequence[int] = (512, 512), source: str = "phantom-a"
) -> Study:
    """The phantom study number ``index`` of source ``source`` (deterministic in
    ``(seed, index)``; ``size`` is the base ``(width, height)``, scaled per source)."""
    if source not in SOURCES:
        raise ValueError(f"unknown phantom source {source!r} (known: {', '.join(SOURCES)})")
    style = SOURCES[source]
    w, h = _size(size, style)
    rng = np.random.default_rng([seed, index])
    g = _geometry(rng)
    angle = float(rng.uniform(-ROTATION, ROTATION))
    zoom = float(rng.uniform(1.0 - ZOOM, 1.0 + ZOOM))
    shift = (float(rng.uniform(-SHIFT, SHIFT)), float(rng.uniform(-SHIFT, SHIFT)))
    turn = _pose(angle, zoom, shift, w, h)
    u = rng.random()
    split = "train" if u < 0.8 else ("validate" if u < 0.9 else "test")
    k = int(rng.choice(4, p=[0.3, 0.35, 0.25, 0.1]))
    kinds = [str(x) for x in rng.choice(list(FINDING_KINDS), size=k, replace=False)]
    order = list(FINDING_KINDS)
    kinds.sort(key=order.index)
    findings: list[Finding] = []
    for kind in kinds:
        side = (
            str(rng.choice(["right", "left"])) if kind not in ("device", "cardiomegaly") else None
        )
        zone = str(rng.choice(["upper", "mid", "lower"])) if kind in _PARENCHYMA else None
        if kind == "atelectasis":
            zone = "lower"
        uncertain = kind != "device" and rng.random() < 0.12
        grow = style.lesion_size if kind in _PARENCHYMA else 1.0
        anatomy, win, effect, size_word = _lesion(kind, side, zone, g, w, h, rng, grow)
        if kind not in ("device", "cardiomegaly"):  # devices and the heart are not faint
            effect = effect * np.float32(style.lesion_gain * g["lesion_gain"])
        win, effect, _ = _trim(win, effect)
        box = _rotated_extent(win, effect, turn, w, h)
        sentence, phrase = _sentence(kind, side, zone, size_word, uncertain)
        finding = Finding(kind, side, zone, uncertain, anatomy, sentence, phrase, win, effect, box)
        finding.difficulty = _finding_difficulty(finding, style, w, h)
        findings.append(finding)
    present = {f.kind for f in findings}
    negatives = []
    if "cardiomegaly" not in present:
        negatives.append("The heart size is normal.")
    if not present & set(_PARENCHYMA):
        negatives.append("The lungs are clear.")
    if "effusion" not in present and "pneumothorax" not in present:
        negatives.append("No pleural effusion or pneumothorax.")
    elif "effusion" not in present:
        negatives.append("No pleural effusion.")
    elif "pneumothorax" not in present:
        negatives.append("No pneumothorax.")
    findings_text = " ".join([f.sentence for f in findings] + negatives)
    pathologic = [f for f in findings if f.kind != "device"]
    if pathologic:
        impression = " ".join(
            f"Possible {f.phrase}." if f.uncertain else f"{f.phrase[0].upper()}{f.phrase[1:]}."
            for f in pathologic
        )
    else:
        impression = "No acute cardiopulmonary process."
    labels: dict[str, int | None] = {name: 0 for name in CHEXPERT_LABELS}
    for f in findings:
        label = FINDING_KINDS[f.kind]
        labels[label] = -1 if f.uncertain and labels[label] != 1 else 1
    labels[NO_FINDING] = 0 if pathologic else 1
    heart = _heart_box(g, "cardiomegaly" in present)
    regions = _rotated_regions(_regions(g, w, h, heart), turn, w, h)
    vqa = _vqa(findings, rng)
    return Study(
        index,
        seed,
        source,
        split,
        w,
        h,
        g,
        findings,
        findings_text,
        impression,
        labels,
        regions,
        vqa,
        angle,
        zoom,
        shift,
    )


def _pose(angle: float, zoom: float, shift: tuple[float, float], w: int, h: int) -> np.ndarray:
    """The forward matrix that places the drawn patient: turned by ``angle`` degrees and scaled
    by ``zoom`` about the image centre, then moved by ``shift`` (fractions of the sides)."""
    return gimage.centred_affine(angle, zoom, 0.0, shift[0] * w, shift[1] * h, w / 2, h / 2)


def _pose_of(study: Study) -> np.ndarray:
    return _pose(study.angle, study.zoom, study.shift, study.width, study.height)


def _turn(img: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """``img`` (uint16, full size) turned with the study's matrix (bilinear, 0 outside)."""
    h, w = img.shape
    return gimage.warp_affine(img, turn, (w, h))[0]


def _full_mask(window: tuple[int, int, int, int], effect: np.ndarray, w: int, h: int) -> np.ndarray:
    y0, y1, x0, x1 = window
    canvas = np.zeros((h, w), np.uint16)
    canvas[y0:y1, x0:x1] = np.where(effect != 0, 65535, 0)
    return canvas


def _rotated_extent(
    window: tuple[int, int, int, int], effect: np.ndarray, turn: np.ndarray, w: int, h: int
) -> list[float]:
    """The exact box of the pixels a lesion changes once the patient is turned: the extent of
    its support mask warped with the image's own matrix and interpolation."""
    mask = _turn(_full_mask(window, effect, w, h), turn) > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise RuntimeError("phantom lesion turned out of the image")  # parameters prevent it
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def _rotated_regions(
    regions: dict[str, list[float]], turn: np.ndarray, w: int, h: int
) -> dict[str, list[float]]:
    """Anatomical regions after the turn: each box's turned corners enclosed, clipped to the
    image and rounded outwards to whole pixels."""
    out = {}
    for name, (x1, y1, x2, y2) in regions.items():
        corners = np.array([[x1, y1, 1.0], [x2, y1, 1.0], [x1, y2, 1.0], [x2, y2, 1.0]])
        xs, ys = (corners @ turn.T).T
        bx1 = min(max(math.floor(xs.min()), 0), w - 1)
        by1 = min(max(math.floor(ys.min()), 0), h - 1)
        bx2 = max(min(math.ceil(xs.max()), w), bx1 + 1)
        by2 = max(min(math.ceil(ys.max()), h), by1 + 1)
        out[name] = [float(bx1), float(by1), float(bx2), float(by2)]
    return out


def _finding_difficulty(f: Finding, style: Style, w: int, h: int) -> float:
    """How hard a finding is to see: ``1 / (1 + CNR x size)``, with CNR the lesion's peak
    intensity change in grey levels (after the source's contrast) over the source's noise, and
    size the square root of its box's area over the image's. In (0, 1]; larger is harder."""
    cnr = float(np.abs(f.effect).max()) * 255.0 * style.contrast / style.noise
    x1, y1, x2, y2 = f.box
    size = math.sqrt((x2 - x1) * (y2 - y1) / (w * h))
    return 1.0 / (1.0 + cnr * size)


_QUESTIONS = {
    "device": "Is there an endotracheal tube?",
    "nodule": "Is there a lung nodule?",
    "consolidation": "Is there consolidation?",
    "opacity": "Is there a lung opacity?",
    "atelectasis": "Is there atelectasis?",
    "effusion": "Is there a pleural effusion?",
    "pneumothorax": "Is there a pneumothorax?",
    "cardiomegaly": "Is the heart enlarged?",
}


def _vqa(findings: list[Finding], rng: np.random.Generator) -> tuple[str, str, list[int]]:
    """A question about the study, its answer and the indices of the findings it grounds."""
    certain = [i for i, f in enumerate(findings) if not f.uncertain]
    if certain and rng.random() < 0.6:
        i = int(rng.choice(certain))
        f = findings[i]
        if f.side is not None and rng.random() < 0.5:
            return f"On which side is the {_NOUNS[f.kind]}?", f"The {f.side} side.", [i]
        return _QUESTIONS[f.kind], f"Yes. {f.sentence}", [i]
    absent = [k for k in FINDING_KINDS if k not in {f.kind for f in findings}]
    kind = str(rng.choice(absent))
    return _QUESTIONS[kind], "No.", []


def _base(study: Study) -> np.ndarray:
    """The anatomy without heart and lesions, drawn at 1/4 size and upsampled (float32 0..1)."""
    g = study.geometry
    w, h = study.width, study.height
    lw, lh = max(16, w // 4), max(16, h // 4)
    ys = ((np.arange(lh, dtype=np.float32) + 0.5) / lh)[:, None]
    xs = ((np.arange(lw, dtype=np.float32) + 0.5) / lw)[None, :]
    c, dy = g["body_cx"], g.get("dy", 0.0)
    img = np.full((lh, lw), 0.04, np.float32)
    body = _soft_ellipse(ys, xs, c, 0.56 + dy, 0.43, 0.5, 0.06)
    img += 0.5 * body
    lungs = _in_lung(g, "right", ys, xs) + _in_lung(g, "left", ys, xs)
    img -= 0.3 * lungs
    # Ribs: faint arcs, bright bands that bow downwards from the spine.
    arc = ys - 0.9 * (xs - c) ** 2 + 0.004 * g["rib_phase"]
    ribs = np.clip(np.cos(2 * np.pi * (arc / 0.062 + g["rib_phase"])) - 0.55, 0.0, None)
    img += 0.16 * ribs * lungs
    # Mediastinum and spine, trachea (air: darker), clavicles, diaphragm/abdomen.
    band = (ys > 0.1 + dy) * (ys < 0.85 + dy)
    img += 0.12 * np.clip(1.0 - np.abs(xs - c) / 0.085, 0.0, 1.0) * band
    vert = 0.5 + 0.5 * np.cos(2 * np.pi * ys / 0.045)
    img += (0.1 + 0.04 * vert) * np.clip(1.0 - np.abs(xs - c) / 0.04, 0.0, 1.0)
    img -= (
        0.1 * np.clip(1.0 - np.abs(xs - c) / 0.018, 0.0, 1.0) * (ys > 0.05 + dy) * (ys < 0.31 + dy)
    )
    for sgn in (-1.0, 1.0):
        clav = ys - (0.15 + dy + 0.12 * np.abs(xs - c) * 0.9 - 0.03)
        img += (
            0.12
            * np.clip(1.0 - np.abs(clav) / 0.012, 0.0, 1.0)
            * (np.abs(xs - c) > 0.03)
            * (np.abs(xs - c) < 0.36)
            * ((xs - c) * sgn > 0)
        )
    dome = g["lung_cy"] + g["lung_ay"] - 0.05 + 3.0 * (np.abs(xs - c) - g["lung_dx"]) ** 2
    img += 0.12 * np.clip((ys - dome) / 0.02, 0.0, 1.0) * body
    img += g["brightness"]
    low = (np.clip(img, 0.0, 1.0) * 65535.0).astype(np.uint16)
    up = gimage.resize(low, (w, h), "bilinear")
    return up.astype(np.float32) * np.float32(1.0 / 65535.0)


_NOISE_PAD = 64


def _noise_tile(seed: int, source: str, w: int, h: int, sigma: float) -> np.ndarray:
    rng = np.random.default_rng([seed, 1 + list(SOURCES).index(source), w, h])
    return rng.standard_normal((h + _NOISE_PAD, w + _NOISE_PAD), dtype=np.float32) * np.float32(
        sigma / 255.0
    )


def _lut(style: Style) -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    out = np.clip((v - 0.5) * style.contrast + 0.5, 0.0, 1.0) ** style.gamma
    return np.round(out * 255.0).astype(np.uint8)


_LUTS: dict[str, np.ndarray] = {name: _lut(style) for name, style in SOURCES.items()}
_NOISE: dict[tuple[int, str, int, int], np.ndarray] = {}
_NOISE_LOCK = threading.Lock()


def _noise(seed: int, source: str, w: int, h: int) -> np.ndarray:
    """The source's noise tile (computed once per seed, source and size)."""
    key = (seed, source, w, h)
    with _NOISE_LOCK:
        tile = _NOISE.get(key)
        if tile is None:
            if len(_NOISE) > 16:
                _NOISE.clear()
            tile = _NOISE[key] = _noise_tile(seed, source, w, h, SOURCES[source].noise)
        return tile


def render(study: Study, *, lesions: bool = True) -> np.ndarray:
    """The study's image, ``uint8`` HxW. ``lesions=False`` draws the same image without its
    findings (normal-sized heart), which the tests use to locate the changed pixels."""
    w, h = study.width, study.height
    img = _base(study)
    enlarged = lesions and any(f.kind == "cardiomegaly" for f in study.findings)
    if not enlarged:
        (y0, y1, x0, x1), eff = _heart_effect(study.geometry, w, h, enlarged=False)
        img[y0:y1, x0:x1] += eff
    if lesions:
        for f in study.findings:
            y0, y1, x0, x1 = f.window
            img[y0:y1, x0:x1] += f.effect
    np.clip(img, 0.0, 1.0, out=img)
    if (study.angle, study.zoom, study.shift) != (0.0, 1.0, (0.0, 0.0)):
        # the patient placed: the drawing moves, not the noise
        u16 = (img * 65535.0 + 0.5).astype(np.uint16)
        turned = _turn(u16, _pose_of(study))
        img = turned.astype(np.float32) * np.float32(1.0 / 65535.0)
    tile = _noise(study.seed, study.source, w, h)
    oy = (study.index * 7919) % _NOISE_PAD
    ox = (study.index * 104729) % _NOISE_PAD
    img += tile[oy : oy + h, ox : ox + w]
    np.clip(img, 0.0, 1.0, out=img)
    img *= 255.0
    u8 = (img + 0.5).astype(np.uint8)
    return _LUTS[study.source][u8]


def lesion_masks(study: Study) -> list[np.ndarray]:
    """For each finding, a full-size boolean mask of the pixels its lesion changes (after the
    patient's turn)."""
    turn = _pose_of(study)
    return [
        _turn(_full_mask(f.window, f.effect, study.width, study.height), turn) > 0
        for f in study.findings
    ]


def record_difficulty(study: Study, record_id: str) -> float:
    """The true difficulty of one of the study's records: its grounded finding's (phrase
    grounding), the mean of the findings its answer grounds (VQA) or of all its findings
    (reports); 0 for a study without findings (nothing to see)."""
    parts = record_id.split("/")
    task = parts[2]
    if task == "phrase_grounding":
        chosen = [study.findings[int(parts[3])]]
    elif task == "vqa":
        chosen = [study.findings[i] for i in study.vqa[2]]
    else:
        chosen = study.findings
    return float(np.mean([f.difficulty for f in chosen])) if chosen else 0.0


def study_records(study: Study, image: str) -> list[dict[str, Any]]:
    """The manifest records of one study (its source's tasks), ``image`` being its path."""
    style = SOURCES[study.source]
    base = f"{study.source}/{study.index:06d}"
    common: dict[str, Any] = {
        "image": image,
        "source": study.source,
        "split": study.split,
        "labels": study.labels,
    }
    sentence_boxes = [make_box(f.box, f.sentence, f.anatomy) for f in study.findings]
    out: list[dict[str, Any]] = []
    for task in style.tasks:
        if task in ("report", "grounded_report"):
            # The same record; the task decides how the loader renders its target text.
            out.append(
                make_record(
                    id=f"{base}/{task}",
                    task=task,
                    text=study.report,
                    boxes=sentence_boxes,
                    **common,
                )
            )
        elif task == "phrase_grounding":
            for k, f in enumerate(study.findings):
                out.append(
                    make_record(
                        id=f"{base}/phrase_grounding/{k}",
                        task=task,
                        text=f.phrase,
                        boxes=[make_box(f.box, f.phrase, f.anatomy)],
                        **common,
                    )
                )
        elif task == "anatomy_grounded_report":
            described: dict[str, list[str]] = {}
            for f in study.findings:
                described.setdefault(f.anatomy, []).append(f.sentence)
            boxes = [
                make_box(b, " ".join(described.get(name, [])), name)
                for name, b in study.regions.items()
            ]
            out.append(
                make_record(
                    id=f"{base}/anatomy_grounded_report",
                    task=task,
                    text=study.report,
                    boxes=boxes,
                    **common,
                )
            )
        elif task == "vqa":
            q, a, idx = study.vqa
            boxes = [
                make_box(study.findings[i].box, study.findings[i].phrase, study.findings[i].anatomy)
                for i in idx
            ]
            out.append(
                make_record(id=f"{base}/vqa", task=task, text=a, prompt=q, boxes=boxes, **common)
            )
    return [validate_record(r, f"<phantom study {study.index}>") for r in out]


def generate(
    out_dir: str | Path,
    n: int = 200,
    *,
    seed: int = 0,
    size: Sequence[int] = (512, 512),
    image_format: str = "jpeg",
    sources: Sequence[str] = tuple(SOURCES),
    quality: int = 92,
) -> Path:
    """Write ``n`` SYNTHETIC phantom studies (images + ``manifest.jsonl``) under ``out_dir``.

    Study ``i`` belongs to ``sources[i % len(sources)]``; its image is
    ``images/<source>/<i:06d>.jpg`` (or ``.png``) relative to ``out_dir``, the manifest root.
    Returns the manifest's path. Same arguments, same bytes.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if image_format not in ("jpeg", "png"):
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    if len(size) != 2 or min(size) < 64:
        raise ValueError(f"size must be (width, height) >= 64, got {size!r}")
    if not sources:
        raise ValueError("sources must not be empty")
    for s in sources:
        if s not in SOURCES:
            raise ValueError(f"unknown phantom source {s!r} (known: {', '.join(SOURCES)})")
    root = Path(out_dir)
    ext = ".jpg" if image_format == "jpeg" else ".png"
    for s in set(sources):
        (root / "images" / s).mkdir(parents=True, exist_ok=True)
    for s in set(sources):  # build the shared noise tiles before the threads start
        _noise(seed, s, *_size(size, SOURCES[s]))

    def one(i: int) -> tuple[list[str], list[str]]:
        """Draw, encode and write study ``i``; return its manifest and truth lines."""
        study = make_study(i, seed=seed, size=size, source=sources[i % len(sources)])
        rel = f"images/{study.source}/{i:06d}{ext}"
        img = render(study)
        if image_format == "jpeg":
            (root / rel).write_bytes(gimage.encode_jpeg(img, quality))
        else:
            (root / rel).write_bytes(gimage.encode_png(img))
        records = study_records(study, rel)
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        truth = [
            json.dumps({"id": r["id"], "source": r["source"], "task": r["task"],
                        "difficulty": round(record_difficulty(study, r["id"]), 6)})
            for r in records
        ]  # fmt: skip
        return lines, truth

    # Studies are independent and each depends only on (seed, index): threads change the speed
    # (NumPy and the Rust encoders release the GIL), never the bytes; map() keeps the order.
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        chunks = list(pool.map(one, range(n)))
    lines = [line for chunk, _ in chunks for line in chunk]
    truth = [line for _, chunk in chunks for line in chunk]
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    # the generator's own difficulty per record, a side table keyed by id (the manifest admits
    # no extra fields): what `gradatim difficulty` estimates is compared with it
    (root / TRUTH).write_text("".join(line + "\n" for line in truth), encoding="utf-8")
    return manifest


def _main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    path = generate(
        args.out_dir,
        args.n,
        seed=args.seed,
        size=(args.size, args.size),
        image_format=args.format,
        sources=args.sources,
    )
    with open(path, encoding="utf-8") as f:
        count = sum(1 for _ in f)
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} synthetic phantom images, {count} manifest records: {path} ({dt:.1f} s)")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``gradatim phantom OUT_DIR --n N``."""
    p = sub.add_parser("phantom", help="write synthetic phantom chest X-ray studies + a manifest")
    p.add_argument("out_dir", type=Path, help="folder to write images/ and manifest.jsonl into")
    p.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="base side length (default 512)")
    p.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    p.set_defaults(func=_main)
    cli_paths.declare(p, output_dirs=["out_dir"])
