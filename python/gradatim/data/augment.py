"""Augmentation as plain data, run per sample in Rust (``rust/core/src/data/augment.rs``).

An :class:`Augment` is a serialisable description (JSON via :meth:`Augment.to_dict`); the random
parameters of each sample are drawn from ``(seed, epoch, sample index)``, so results do not depend
on thread count. Two pipelines run a recipe (``pipeline``):

- ``"fast"``: the work happens at the output size: reduced decode, crop + area resize, then CLAHE
  and a bilinear affine warp on the small image.
- ``"cure"``: albumentations 2.0.8 as CURE's code composes it: full-resolution decode (16-bit
  min-maxed to 8), CLAHE on CIELAB L at full resolution, random resized crop with a cubic resize,
  cubic affine warp, cubic resize to the output size; boxes clipped after each step. Its pixels
  equal albumentations' (on OpenCV 5.0 without IPP); it costs more (docs/image.md).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gradatim import _core

__all__ = ["Augment"]


def _default(part: str) -> Any:
    """A fresh copy of the core's default for ``part`` (``AugmentConfig::default`` in
    ``rust/core/src/data/augment.rs``, exported as ``_core.AUGMENT_DEFAULTS``)."""
    return copy.deepcopy(_core.AUGMENT_DEFAULTS[part])


@dataclass(frozen=True)
class Augment:
    """What to do to each training image. Each part is a dict of parameters, or ``None`` (off).

    ``Augment()`` is the core's default augmentation (``_core.AUGMENT_DEFAULTS``): CLAHE clip 2.0
    on 8x8 tiles and an affine of +-10 degrees, scale 0.95-1.05, +-5 % translation, both always;
    no crop, flip or evaluation branch; boxes dropped below 25 % visibility; the fast pipeline.

    - ``clahe``: ``{"clip_limit": 2.0, "tile_grid": (8, 8), "p": 1.0}``; ``clip_limit`` may be a
      range ``(low, high)``, drawn uniformly per sample
    - ``affine``: ``{"rotate": 10.0, "scale": (0.95, 1.05), "keep_ratio": True, "translate": 0.05,
      "shear": 0.0, "p": 1.0}`` - rotation and shear in +- degrees, translation in +- fraction of
      the size; ``keep_ratio=False`` draws the x and y scale independently
    - ``crop``: random resized crop ``{"scale": (0.9, 1.0), "ratio": (0.75, 1.333), "p": 0.3}``
      (the ratio is relative to the image's aspect in the fast pipeline, absolute in ``"cure"``)
    - ``flip``: ``{"p": 0.5}`` - never applied to laterality-sensitive samples; when applied,
      "left"/"right" are swapped in the text
    - ``eval``: ``{"p": 0.3, "clahe": {...}}`` - with probability ``p`` a sample takes the
      test pipeline instead (only that CLAHE; no crop, affine or flip), as CURE does
    - ``min_visible``: a box keeping less than this fraction of its area is dropped (in
      ``"cure"``: albumentations' ``min_visibility``, checked after each step)
    - ``pipeline``: ``"fast"`` or ``"cure"`` (module docs)
    """

    clahe: dict[str, Any] | None = field(default_factory=lambda: _default("clahe"))
    affine: dict[str, Any] | None = field(default_factory=lambda: _default("affine"))
    crop: dict[str, Any] | None = field(default_factory=lambda: _default("crop"))
    flip: dict[str, Any] | None = field(default_factory=lambda: _default("flip"))
    eval: dict[str, Any] | None = field(default_factory=lambda: _default("eval"))
    min_visible: float = float(_core.AUGMENT_DEFAULTS["min_visible"])
    pipeline: str = str(_core.AUGMENT_DEFAULTS["pipeline"])

    @classmethod
    def none(cls) -> Augment:
        """No augmentation: decode, resize, normalise."""
        return cls(clahe=None, affine=None, crop=None, flip=None)

    @classmethod
    def cure_train(cls) -> Augment:
        """CURE's training augmentation exactly as its public code runs it (albumentations 2.0.8,
        ``vlm_research_kit/data/transforms_factory.py`` with its training configs): 30 % of the
        images take the test pipeline (CLAHE, clip drawn uniformly in [1, 4], always); the others
        CLAHE (clip in [1, 4], 8x8 tiles, p 0.5), random resized crop (scale 0.9-1.0, aspect
        3/4-4/3, p 0.3), affine (x and y scale drawn independently in 0.9-1.1, translate +-10 %,
        rotate +-15 deg, p 0.5), no flip; CLAHE at full resolution, cubic resampling, boxes kept
        while any part is visible. The ``"cure"`` pipeline: slower than :meth:`fast_train`."""
        return cls(
            clahe={"clip_limit": (1.0, 4.0), "tile_grid": (8, 8), "p": 0.5},
            crop={"scale": (0.9, 1.0), "ratio": (0.75, 4.0 / 3.0), "p": 0.3},
            affine={
                "rotate": 15.0,
                "scale": (0.9, 1.1),
                "keep_ratio": False,
                "translate": 0.1,
                "p": 0.5,
            },
            flip=None,
            eval={"p": 0.3, "clahe": {"clip_limit": (1.0, 4.0), "tile_grid": (8, 8), "p": 1.0}},
            min_visible=0.0,
            pipeline="cure",
        )

    @classmethod
    def fast_train(cls) -> Augment:
        """CURE's training recipe (:meth:`cure_train`'s parameters) in the fast pipeline, the one
        ``cure_train`` used before it ran CURE's code exactly: at the output size (reduced decode,
        crop and area resize, then CLAHE on the grey values and a bilinear warp; the crop's aspect
        relative to the image's), boxes kept while any part is visible (``min_visible`` 1e-6).
        Several times faster than :meth:`cure_train`, not pixel-equal to CURE."""
        exact = cls.cure_train()
        return cls(
            clahe=exact.clahe,
            crop=exact.crop,
            affine=exact.affine,
            flip=None,
            eval=exact.eval,
            min_visible=1e-6,
            pipeline="fast",
        )

    @classmethod
    def strong_train(cls) -> Augment:
        """gradatim's stronger preset (its former ``cure_train``): CLAHE clip 4.0 (p 0.5), the
        same crop and affine, every image augmented, boxes dropped below 25 % visibility."""
        return cls(
            clahe={"clip_limit": 4.0, "tile_grid": (8, 8), "p": 0.5},
            crop={"scale": (0.9, 1.0), "p": 0.3},
            affine={"rotate": 15.0, "scale": (0.9, 1.1), "translate": 0.1, "p": 0.5},
            flip=None,
        )

    @classmethod
    def cure_eval(cls) -> Augment:
        """CURE's evaluation recipe as its code runs it: CLAHE clip 3.0, always, at full
        resolution, then a cubic resize; nothing random (the ``"cure"`` pipeline)."""
        return cls(
            clahe={"clip_limit": 3.0, "tile_grid": (8, 8), "p": 1.0},
            affine=None,
            pipeline="cure",
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Augment:
        """Inverse of :meth:`to_dict`; missing parts are off, unknown keys are an error."""
        unknown = set(d) - {"clahe", "affine", "crop", "flip", "eval", "min_visible", "pipeline"}
        if unknown:
            from gradatim.errors import InvalidArgumentError

            raise InvalidArgumentError(f"augment: unknown parts {sorted(unknown)}")
        return cls(
            clahe=d.get("clahe"),
            affine=d.get("affine"),
            crop=d.get("crop"),
            flip=d.get("flip"),
            eval=d.get("eval"),
            min_visible=float(d.get("min_visible", _core.AUGMENT_DEFAULTS["min_visible"])),
            pipeline=str(d.get("pipeline", _core.AUGMENT_DEFAULTS["pipeline"])),
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (for configuration files; the core validates the dict
        when a data set is made)."""
        return json.dumps(self.to_dict())
