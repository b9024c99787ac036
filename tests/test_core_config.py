"""What the core owns crosses as named, typed values: the augmentation defaults
(``_core.AUGMENT_DEFAULTS`` behind ``Augment()``), the data set's configuration (a dict of named
options, read by serde in the core with the core's defaults, ``ManifestDataset``'s keywords taking
their defaults from it) and a stage scheduler's state (a dict with named keys).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradatim as ga
from gradatim import _core
from gradatim.curriculum.stages import StageScheduler
from gradatim.errors import InvalidArgumentError

RECORDS = [
    {"id": "a", "image": "a.png", "source": "s", "task": "phrase_grounding", "split": "train",
     "text": "t", "boxes": [{"box": [0, 0, 2, 2]}, {"box": [1, 1, 3, 3]}, {"box": [0, 0, 1, 1]}]},
    {"id": "b", "image": "b.png", "source": "s", "task": "vqa", "split": "train", "text": ""},
]  # fmt: skip


def test_augment_defaults_are_the_cores_field_by_field() -> None:
    # the documented default (docs/loader.md), written out by hand
    assert _core.AUGMENT_DEFAULTS == {
        "clahe": {"clip_limit": 2.0, "tile_grid": [8, 8], "p": 1.0},
        "affine": {"rotate": 10.0, "scale": [0.95, 1.05], "keep_ratio": True, "translate": 0.05,
                   "shear": 0.0, "p": 1.0},
        "crop": None,
        "flip": None,
        "eval": None,
        "min_visible": 0.25,
        "pipeline": "fast",
    }  # fmt: skip
    names = [f.name for f in dataclasses.fields(ga.Augment)]
    assert names == list(_core.AUGMENT_DEFAULTS)
    default = ga.Augment()
    for name in names:
        assert getattr(default, name) == _core.AUGMENT_DEFAULTS[name], name
    # each instance gets its own copy: changing one cannot change the defaults
    assert default.clahe is not _core.AUGMENT_DEFAULTS["clahe"]
    assert default.clahe is not ga.Augment().clahe


def test_augment_makes_exactly_the_cores_default_config(tmp_path: Path) -> None:
    def core_config(augment: Any) -> dict[str, Any]:
        return ga.ManifestDataset(RECORDS, root=tmp_path, augment=augment)._core.augment

    assert core_config(ga.Augment()) == _core.AUGMENT_DEFAULTS
    assert core_config(ga.Augment().to_dict()) == _core.AUGMENT_DEFAULTS
    off = core_config(None)
    assert [off[k] for k in ("clahe", "affine", "crop", "flip", "eval")] == [None] * 5
    # a part given partially: the core fills the rest with that part's own defaults
    partial = core_config(ga.Augment(affine={"rotate": 5}, clahe=None))
    assert partial["affine"] == {"rotate": 5.0, "scale": [1.0, 1.0], "keep_ratio": True,
                                 "translate": 0.0, "shear": 0.0, "p": 1.0}  # fmt: skip
    cure = core_config(ga.Augment.cure_train())
    assert cure["clahe"]["clip_limit"] == [1.0, 4.0] and cure["eval"]["p"] == 0.3
    assert cure["pipeline"] == "cure" and cure["affine"]["keep_ratio"] is False
    assert core_config(ga.Augment.fast_train())["pipeline"] == "fast"


def test_dataset_config_is_parsed_and_checked_by_the_core(tmp_path: Path) -> None:
    ds = ga.ManifestDataset(RECORDS, root=tmp_path)
    assert ds._core.max_boxes == 3  # the largest box count, derived by the core
    no_boxes = ga.ManifestDataset(RECORDS[1:], root=tmp_path)
    assert no_boxes._core.max_boxes == 1  # at least one slot
    for kwargs, message in [
        ({"output": "float16"}, "output must be 'float32' or 'uint8'"),
        ({"on_error": "ignore"}, "on_error must be 'raise' or 'skip'"),
        ({"box_format": "yolo"}, "box_format must be 'cure', 'maira2', 'loc' or 'xyxy'"),
        ({"mask_padding": "wrap"}, "mask_padding must be 'reflect' or 'zero'"),
        ({"mask_cells": "half"}, "mask_cells must be 'truncate', 'whole' or 'fraction'"),
        ({"mask_empty": "none"}, "mask_empty must be 'image' or 'zeros'"),
        ({"image_size": (0, 8)}, "image_size must be positive"),
        ({"augment": {"clahe": {"p": 2.0}}}, r"augment.clahe.p must be in \[0, 1\]"),
        ({"augment": {"affine": {"rotate": float("nan")}}}, "augment.affine.rotate"),
        ({"templates": {"nope": "x"}}, "templates: unknown field"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            ga.ManifestDataset(RECORDS, root=tmp_path, **kwargs)
    good = ds._core
    config: dict[str, Any] = {
        "root": str(tmp_path), "allow_outside_root": False, "image_size": (8, 8),
        "channels": 1, "output": "uint8", "mean": [0.0], "std": [1.0], "augment": {},
        "box_format": "xyxy", "templates": {"preset": "gradatim"}, "on_error": "skip",
        "max_pixels": 1 << 20, "max_bytes": 1 << 30, "mask_grid": (4, 4), "mask_sigma": 0.0,
        "mask_kernel": None,
        "mask_padding": "zero", "mask_cells": "fraction", "mask_empty": "zeros",
        "overlay_thickness": 1,
    }  # fmt: skip
    direct = _core.Dataset(RECORDS, None, "record", config)
    assert len(direct) == len(good) == 2 and direct.record(1)["id"] == "b"
    # a missing option takes the core's default; an unknown or ill-typed one is named
    del config["overlay_thickness"]
    assert _core.Dataset(RECORDS, None, "record", config).config["overlay_thickness"] == 3
    for bad, message in [
        ({"overlay_thicknes": 3}, "unknown field `overlay_thicknes`"),
        ({"overlay_thickness": "3"}, 'overlay_thickness: invalid type: string "3"'),
        ({"mask_grid": (4, -1)}, "mask_grid\\[1\\]: invalid value: integer `-1`"),
        ({"mean": "x"}, "mean: a number, or one number per channel"),
        ({"augment": {"clahe": {"p": None}}}, "augment.clahe.p: invalid type: null"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message) as caught:
            _core.Dataset(RECORDS, None, "record", {**config, **bad})
        assert "\n" not in str(caught.value)


def test_manifest_dataset_defaults_are_the_cores() -> None:
    # every option the core reads is a ManifestDataset keyword whose default is the core's
    defaults = _core.dataset_config_defaults()
    params = inspect.signature(ga.ManifestDataset).parameters
    for name, value in defaults.items():
        given = params[name].default
        assert (list(given) if isinstance(given, tuple) else given) == value, name
    # the defaults by hand (docs/loader.md): the core cannot change them silently
    assert defaults == {
        "root": None, "allow_outside_root": False, "image_size": [512, 512], "channels": 1,
        "output": "float32", "mean": None, "std": None, "augment": None, "box_format": "cure",
        "templates": None, "on_error": "raise", "max_pixels": 1 << 28, "max_bytes": 1 << 30,
        "mask_grid": [24, 24], "mask_sigma": 3.0, "mask_kernel": 9, "mask_padding": "reflect",
        "mask_cells": "truncate", "mask_empty": "image", "overlay_thickness": 3,
    }  # fmt: skip
    defaults["channels"] = 3  # a new dict each call
    assert _core.dataset_config_defaults()["channels"] == 1


def test_manifest_dataset_options_reach_the_core(tmp_path: Path) -> None:
    ds = ga.ManifestDataset(RECORDS, root=tmp_path)
    read = ds._core.config
    assert read["mean"] == [0.0] and read["std"] == [1.0]  # per channel, from the defaults
    assert read["templates"]["grounded_style"] == "cure"
    assert {k: read[k] for k in ("image_size", "mask_grid", "overlay_thickness")} == {
        "image_size": [512, 512], "mask_grid": [24, 24], "overlay_thickness": 3,
    }  # fmt: skip
    assert (ds.image_size, ds.channels, ds.output, ds.box_format) == (
        (512, 512), 1, "float32", "cure",
    )  # fmt: skip
    rgb = ga.ManifestDataset(RECORDS, root=tmp_path, channels=3, mean=np.float32(0.5),
                             std=np.array([0.1, 0.2, 0.3]), image_size=(np.int64(16), 8),
                             templates="gradatim", mask_kernel=None)  # fmt: skip
    read = rgb._core.config
    assert read["mean"] == [0.5] * 3 and read["std"] == pytest.approx([0.1, 0.2, 0.3])
    assert read["image_size"] == [16, 8] and rgb.image_size == (16, 8)
    assert read["templates"]["grounded_style"] == "gradatim" and read["mask_kernel"] is None
    for kwargs, message in [
        ({"channels": 2}, "channels must be 1 or 3, got 2"),
        ({"channels": 3, "mean": [0.1, 0.2]}, "mean has 2 values for 3 channels"),
        ({"image_size": (8.5, 8)}, r"image_size\[0\]: invalid type: floating point `8.5`"),
        ({"overlay_thickness": "3"}, "overlay_thickness: invalid type: string"),
        ({"templates": 3}, "templates: a preset name"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            ga.ManifestDataset(RECORDS, root=tmp_path, **kwargs)


def test_stage_state_is_a_dict_with_named_keys() -> None:
    s = StageScheduler(["a", "b"], seed=3)
    s.update({"a": {"easy": 1.0, "medium": 2.0}, "b": {"easy": 0.5}}, epoch=0)
    state = s._core.get_state()
    assert list(state) == ["epoch", "ema_easy", "ema_medium", "ema_global", "history",
                           "hard_budget"]  # fmt: skip
    assert state["epoch"] == 0 and len(state["ema_easy"]) == 2
    assert s.hard_budget == state["hard_budget"]
    state["hard_budget"] = 0.125
    s._core.set_state(state)
    assert s.hard_budget == 0.125 and s._core.get_state() == state
    del state["history"]
    with pytest.raises((KeyError, TypeError), match="history"):
        s._core.set_state(state)  # type: ignore[typeddict-item]
