"""`gradatim pretrain`'s checkpoint: the vision tower's patch side is a setting, and the saved
folder loads back (``load_model``) with the image-token count that patch gives, as a real base
model's folder would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gradatim.datasets import phantom
from gradatim.train.models import load_model, tiny_model
from gradatim.train.pretrain import PretrainSettings, pretrain_tiny
from gradatim.train.tokenizer import train_bpe


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom.generate(tmp_path_factory.mktemp("pretrain"), n=12, size=(96, 96))


@pytest.mark.parametrize(("patch", "tokens"), [(16, 16), (8, 64)])
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_the_saved_base_has_the_image_tokens_of_its_patch(
    manifest: Path, tmp_path: Path, patch: int, tokens: int
) -> None:
    settings = PretrainSettings(patch=patch, hidden=32, grounding_steps=2, steps=1, batch_size=2)
    out = pretrain_tiny([manifest], tmp_path / "base", settings)
    bundle = load_model(out)
    assert bundle.num_image_tokens == tokens == (64 // patch) ** 2
    assert bundle.image_size == (64, 64)
    config = json.loads((out / "config.json").read_text())
    assert config["vision_config"]["patch_size"] == patch
    assert json.loads((out / "processor_config.json").read_text())["patch_size"] == patch
    assert len(json.loads((out / "pretrain.json").read_text())["losses"]) == 3
    ids = torch.tensor([[bundle.image_token_id] * tokens + [bundle.tokenizer.bos_token_id]])
    with torch.no_grad():
        logits = bundle.model(input_ids=ids, pixel_values=torch.zeros(1, 3, 64, 64)).logits
    assert logits.shape == (1, tokens + 1, len(bundle.tokenizer))


def test_a_patch_that_does_not_divide_the_image_is_refused() -> None:
    tok = train_bpe(["a chest radiograph", "Ground the phrase:"], vocab_size=300)
    with pytest.raises(ValueError, match=r"patch must divide image_size \(64 px\), not 12"):
        tiny_model("llava", tok, image_size=64, patch=12)
