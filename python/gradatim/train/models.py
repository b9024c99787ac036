"""The vision-language model, its tokenizer and what the data side needs from them.

A model is a local Hugging Face checkpoint (``local_files_only=True``: nothing is downloaded) or a
named tiny architecture built from a config with random weights (``tiny-llava``,
``tiny-paligemma``, ``tiny-gemma3``) for tests and the demo. Either way gradatim reads the image
size, mean and std from the model's image processor, so ``ManifestDataset`` produces the model's
pixels directly (no second resize, no processor pass over pixels), and it expands the image
placeholder into the family's image tokens itself.

LoRA follows CURE's defaults: r 16, alpha 32, dropout 0.05, every linear layer, optional
``modules_to_save`` (e.g. ``lm_head``, ``embed_tokens``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradatim.errors import GradatimError

__all__ = [
    "ModelError",
    "FAMILIES",
    "TINY",
    "ModelBundle",
    "LoraSettings",
    "tiny_model",
    "tiny_patch",
    "load_model",
    "apply_lora",
]

FAMILIES = ("llava", "paligemma", "gemma3")
TINY = {f"tiny-{f}": f for f in FAMILIES}


class ModelError(GradatimError, ValueError):
    """A local model folder gradatim cannot train: not a Hugging Face checkpoint, an unsupported
    model type, an inconsistent config, a tokenizer without the prompt format its family needs.
    The message names the folder and the file (``config.json``, the tokenizer's)."""


@dataclass
class ModelBundle:
    """A model with what the data side and the loss need from it."""

    model: torch.nn.Module
    tokenizer: Any
    family: str
    image_token_id: int
    num_image_tokens: int
    image_size: tuple[int, int]  # (width, height)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    boi_token_id: int | None = None  # Gemma 3: image tokens are wrapped in begin/end markers
    eoi_token_id: int | None = None

    @property
    def patch_grid(self) -> tuple[int, int]:
        """``(w, h)`` of the image tokens' grid (square), for MedCLM's Medium-stage box mask."""
        side = max(1, round(self.num_image_tokens**0.5))
        return (side, side)


@dataclass
class LoraSettings:
    """CURE's defaults."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] = field(default_factory=list)


def tiny_patch(image_size: int) -> int:
    """The tiny vision towers' patch side: 8 pixels up to 64 px images, then ``image_size / 8``
    (an 8 x 8 grid of image tokens: a larger image shows small findings without a longer
    sequence)."""
    return max(8, image_size // 8)


def tiny_model(
    family: str,
    tokenizer: Any,
    *,
    image_size: int = 32,
    hidden: int = 64,
    seed: int = 0,
    patch: int | None = None,
) -> ModelBundle:
    """A randomly initialised model of ``family`` built from a small config; ``patch``: the
    vision tower's patch side in pixels (default :func:`tiny_patch`; it must divide
    ``image_size``)."""
    from transformers import (
        CLIPVisionConfig,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        GemmaConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        SiglipVisionConfig,
    )

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    vocab = len(tokenizer)
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<image>", "<start_of_image>", "<end_of_image>")
    }
    patch = tiny_patch(image_size) if patch is None else patch
    if patch <= 0 or image_size % patch:
        raise ValueError(f"patch must divide image_size ({image_size} px), not {patch}")
    grid = (image_size // patch) ** 2
    small = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
             "num_attention_heads": 2}  # fmt: skip
    text = {**small, "vocab_size": vocab, "num_key_value_heads": 1, "head_dim": hidden // 2,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}  # fmt: skip
    torch.manual_seed(seed)
    boi = eoi = None
    if family == "llava":
        cfg = LlavaConfig(
            vision_config=CLIPVisionConfig(**small, image_size=image_size, patch_size=patch),
            text_config=LlamaConfig(**text, max_position_embeddings=1024),
            image_token_index=ids["<image>"],
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
            image_seq_length=grid,
        )
        model: torch.nn.Module = LlavaForConditionalGeneration(cfg)
        n = grid
    elif family == "paligemma":
        vision = SiglipVisionConfig(**small, image_size=image_size, patch_size=patch)
        cfg = PaliGemmaConfig(
            vision_config=vision,
            text_config=GemmaConfig(**text),
            image_token_index=ids["<image>"],
            projection_dim=hidden,
        )
        model = PaliGemmaForConditionalGeneration(cfg)
        n = grid
    else:
        n = 4
        cfg = Gemma3Config(
            vision_config=SiglipVisionConfig(**small, image_size=image_size, patch_size=patch),
            text_config=Gemma3TextConfig(**text, sliding_window=256),
            mm_tokens_per_image=n,
            image_token_index=ids["<image>"],
            boi_token_index=ids["<start_of_image>"],
            eoi_token_index=ids["<end_of_image>"],
        )
        model = Gemma3ForConditionalGeneration(cfg)
        boi, eoi = ids["<start_of_image>"], ids["<end_of_image>"]
    return ModelBundle(
        model=model,
        tokenizer=tokenizer,
        family=family,
        image_token_id=ids["<image>"],
        num_image_tokens=n,
        image_size=(image_size, image_size),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        boi_token_id=boi,
        eoi_token_id=eoi,
    )


def load_model(path: str | Path, *, dtype: torch.dtype | None = None) -> ModelBundle:
    """A local checkpoint (never downloaded) of a supported family."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model path {path} is not a folder with a Hugging Face checkpoint")
    file = path / "config.json"
    if not file.is_file():
        raise ModelError(f"{path}: no config.json (not a Hugging Face checkpoint folder)")
    try:  # the model type first, before transformers loads anything
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{file}: not valid JSON ({e})") from None
    family = raw.get("model_type") if isinstance(raw, dict) else None
    if family not in FAMILIES:
        raise ModelError(
            f"{file}: model_type: {family!r} is not supported (one of {', '.join(FAMILIES)})"
        )
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"{file}: {first}") from None
    if family == "llava":
        _check_llava_tokens(config, path)
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"{path}: cannot load its processor and tokenizer ({first})") from None
    tok = getattr(processor, "tokenizer", None)
    if tok is None or getattr(processor, "image_processor", None) is None:
        raise ModelError(f"{path}: its processor has no tokenizer or no image processor")
    if family != "paligemma" and not getattr(tok, "chat_template", None):
        template = getattr(processor, "chat_template", None)
        if not template:  # LLaVA and Gemma 3 prompts are chat turns (PaliGemma: task prefixes)
            raise ModelError(
                f"{path}: tokenizer_config.json: chat_template: the tokenizer has no chat "
                f"template, and {family} prompts are chat turns (add the model's template)"
            )
        tok.chat_template = template
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, dtype=dtype)
    image = processor.image_processor
    size = image.size
    w = int(size.get("width", size.get("shortest_edge", 0)))
    h = int(size.get("height", size.get("shortest_edge", 0)))
    image_token = getattr(config, "image_token_index", None) or config.image_token_id
    if family == "gemma3":
        n = int(config.mm_tokens_per_image)
        boi, eoi = int(config.boi_token_index), int(config.eoi_token_index)
    else:
        n = int(getattr(config, "image_seq_length", 0) or config.text_config.num_image_tokens)
        boi = eoi = None
    return ModelBundle(
        model=model,
        tokenizer=tok,
        family=family,
        image_token_id=int(image_token),
        num_image_tokens=n,
        image_size=(w, h),
        mean=tuple(float(v) for v in image.image_mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in image.image_std),  # type: ignore[arg-type]
        boi_token_id=boi,
        eoi_token_id=eoi,
    )


def _check_llava_tokens(config: Any, path: Path) -> None:
    """A LLaVA config's ``image_seq_length`` (the prompt's image tokens) must be the number of
    features its vision tower gives: ``(image_size / patch_size)^2``, plus the CLS token with
    ``vision_feature_select_strategy = "full"``; otherwise every forward pass fails."""
    vision = config.vision_config
    size, patch = int(vision.image_size), int(vision.patch_size)
    grid = (size // patch) ** 2 + (1 if config.vision_feature_select_strategy == "full" else 0)
    given = int(getattr(config, "image_seq_length", grid))
    if given != grid:
        raise ModelError(
            f"{path / 'config.json'}: image_seq_length: {given}, but its vision tower gives "
            f"{grid} image features ({size} px images, {patch} px patches, "
            f"vision_feature_select_strategy {config.vision_feature_select_strategy!r})"
        )


def apply_lora(model: torch.nn.Module, lora: LoraSettings) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters (peft): only adapters (and ``modules_to_save``) train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=list(lora.modules_to_save) or None,
    )
    with warnings.catch_warnings():  # transformers deprecation notice raised inside peft
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        return get_peft_model(model, config)


def lora_parameters(
    model: torch.nn.Module,
) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """``(adapters, saved_modules)``: the trainable LoRA matrices, and the other trainable
    parameters (``modules_to_save`` copies), which take the plain summed gradient."""
    adapters, others = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (adapters if "lora_" in name else others).append(p)
    return adapters, others


def texts_of(
    records: Iterable[dict[str, Any]], keys: Sequence[str] = ("text", "prompt")
) -> Iterable[str]:
    """The texts a tiny tokenizer is trained on, record by record. Records that read their
    fields as columns (``column(name)``: the training loop's records, from the core) are read
    column by column, in the same order, without building a record."""
    column = getattr(records, "column", None)
    if column is not None:
        for values in zip(*(column(k) for k in keys), strict=True):
            yield from (str(v) for v in values if v)
        return
    for r in records:
        for k in keys:
            if r.get(k):
                yield str(r[k])
