"""A fixed tiny case the model can only solve by reading the image: four images, each a bright
square at a different place on a dark background, one prompt ("Ground the phrase: square"), four
different boxes. A tiny LLaVA trained on them (the loop's own encoding, label mask and loss) must
then generate each image's box from the image, and not from a blank image. A label mask shifted
by one token, a target whose box text does not round-trip, or image tokens that do not reach the
model all make it fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gradatim as ga
from gradatim.data import parse_boxes
from gradatim.evaluate.iou import union_iou
from gradatim.train.loss import per_sample_loss
from gradatim.train.models import tiny_model
from gradatim.train.text import encode_batch
from gradatim.train.tokenizer import train_bpe
from gradatim.train.validation import generate_rows

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

BOXES = [[4, 4, 20, 20], [44, 4, 60, 20], [4, 44, 20, 60], [44, 44, 60, 60]]


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("squares")
    lines = []
    for k, (x1, y1, x2, y2) in enumerate(BOXES):
        img = np.full((64, 64), 30, np.uint8)
        img[y1:y2, x1:x2] = 220
        (root / f"{k}.png").write_bytes(ga.image.encode_png(img))
        record = {"id": f"sq/{k}", "image": f"{k}.png", "source": "squares",
                  "task": "phrase_grounding", "split": "train", "text": "square",
                  "boxes": [{"box": [x1, y1, x2, y2], "phrase": "square"}]}  # fmt: skip
        lines.append(json.dumps(record))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / "manifest.jsonl"


def _train(manifest: Path, shift: int = 0, steps: int = 300) -> tuple[Any, Any, Any]:
    tok = train_bpe(["square: [0.19,0.19,0.25,0.25] [0.81,0.81]", "Ground the phrase:"], 300)
    bundle = tiny_model("llava", tok, image_size=32, hidden=64, seed=0)
    ds = ga.ManifestDataset(manifest, image_size=bundle.image_size, channels=3,
                            mean=bundle.mean, std=bundle.std)  # fmt: skip
    batch = ds.load_batch(list(range(len(BOXES))), epoch=0, seed=0)
    enc = encode_batch(bundle, batch["prompt"], batch["target"])
    labels = enc.pop("labels")
    if shift:  # a label mask off by one token: the bug this test exists to catch
        labels = torch.roll(labels, shifts=shift, dims=1)
    model = bundle.model
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        loss = per_sample_loss(model(pixel_values=batch["pixel_values"], **enc).logits, labels)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    return bundle, model, ds


def _ious(bundle: Any, model: Any, ds: Any, blank: bool = False) -> list[float]:
    rows = generate_rows(model, bundle, ds, list(range(len(ds))), batch_size=4,
                         max_new_tokens=24, blank_images=blank)  # fmt: skip
    return [
        union_iou(parse_boxes(r["prediction"], "cure").tolist(), r["reference_boxes"]) for r in rows
    ]


def test_a_tiny_model_learns_to_ground_from_the_image(squares: Path) -> None:
    bundle, model, ds = _train(squares)
    ious = _ious(bundle, model, ds)
    assert min(ious) > 0.7, ious  # every image's own box, from the same prompt
    blank = _ious(bundle, model, ds, blank=True)
    assert np.mean(blank) < 0.5, blank  # one prompt, four answers: only the image tells


def test_a_label_mask_shifted_by_one_token_does_not_learn(squares: Path) -> None:
    bundle, model, ds = _train(squares, shift=1)
    assert np.mean(_ious(bundle, model, ds)) < 0.5
