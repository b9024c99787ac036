"""gradatim's MedCLM support against MedCLM's released code (github.com/ksyint/PROGRESSIVE at
commit a7cca74), each rule checked against a transcription of that code written out here (never
against gradatim's own output):

- the Medium-stage mask: ``_create_soft_mask`` and ``_parse_bbox_string`` of
  ``integrated_cot/src/training/attn_loss.py``, with torchvision's ``GaussianBlur`` (its tensor
  kernel transcribed, torchvision not being a dependency);
- the domains: ``CurriculumDataset.domain_map`` (``integrated_cot/src/data/curriculum_dataset.py``)
  over the ``modality`` the released generator writes (``_infer_modality`` of
  ``auto_rationale/data_generator.py``);
- the attention term: ``compute_attention_mask_loss`` (``attn_loss.py``; defined, never called in
  the released training), on a tiny real LLaVA with a CLIP vision tower built from a config;
- the Hard stage: ``collate_fn``'s choice of ``image_path3``, ``question3``, ``answer3`` and the
  ``Answer: {answer}`` target.

gradatim's own rules, kept as options, are checked beside them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the released code's name
from hypothesis import given, settings
from hypothesis import strategies as st

import gradatim as ga
from gradatim.curriculum import StageScheduler
from gradatim.curriculum.stages import record_domains
from gradatim.data import box_mask
from gradatim.errors import InvalidArgumentError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


# -- ksyint/PROGRESSIVE a7cca74, transcribed ---------------------------------------------------


def released_parse_bbox_string(bbox_str_list: list[str], normalized: bool = True) -> torch.Tensor:
    """``attn_loss._parse_bbox_string`` (device argument dropped)."""
    bboxes = []
    for bbox_str in bbox_str_list:
        if not bbox_str:
            bboxes.append([0, 0, 1, 1])
            continue
        try:
            coords = [float(c) for c in re.findall(r"([0-9.]+)", bbox_str)]
            bboxes.append(coords)
        except Exception:  # noqa: BLE001 - as released
            bboxes.append([0, 0, 1, 1])
    return torch.tensor(bboxes, dtype=torch.float32)


def torchvision_gaussian_blur(img: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """``torchvision.transforms.GaussianBlur(kernel_size, sigma)`` on a float ``[B, C, H, W]``
    tensor (``_functional_tensor.gaussian_blur``: ``_get_gaussian_kernel1d`` per axis, their outer
    product, reflect padding of ``kernel_size // 2``, a depthwise ``conv2d``)."""
    ksize_half = (kernel_size - 1) * 0.5
    x = torch.linspace(-ksize_half, ksize_half, steps=kernel_size, dtype=img.dtype)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    kernel1d = pdf / pdf.sum()
    kernel2d = kernel1d[:, None] * kernel1d[None, :]
    kernel = kernel2d.expand(img.shape[-3], 1, kernel_size, kernel_size)
    pad = [kernel_size // 2] * 4
    return F.conv2d(F.pad(img, pad, mode="reflect"), kernel, groups=img.shape[-3])


def released_create_soft_mask(
    bbox_str_list: list[str], target_size: tuple[int, int], kernel_size: int = 9, sigma: float = 3.0
) -> torch.Tensor:
    """``attn_loss._create_soft_mask``."""
    B = len(bbox_str_list)  # noqa: N806 - the released names
    H_grid, W_grid = target_size  # noqa: N806
    bboxes_norm = released_parse_bbox_string(bbox_str_list, normalized=True)
    x1 = (bboxes_norm[:, 0] * W_grid).clamp(0, W_grid - 1).long()
    y1 = (bboxes_norm[:, 1] * H_grid).clamp(0, H_grid - 1).long()
    x2 = (bboxes_norm[:, 2] * W_grid).clamp(1, W_grid).long()
    y2 = (bboxes_norm[:, 3] * H_grid).clamp(1, H_grid).long()
    masks = torch.zeros(B, H_grid, W_grid)
    for i in range(B):
        if torch.any(bboxes_norm[i] != 0) or torch.all(bboxes_norm[i] != 1):
            masks[i, y1[i] : y2[i], x1[i] : x2[i]] = 1.0
    soft_masks = torchvision_gaussian_blur(masks.unsqueeze(1), kernel_size, sigma).squeeze(1)
    mask_sum = soft_masks.view(B, -1).sum(dim=1) + 1e-8
    soft_masks = soft_masks.view(B, -1) / mask_sum.unsqueeze(1)
    return soft_masks.view(B, H_grid, W_grid)


def released_compute_attention_mask_loss(
    outputs: Any, batch: dict[str, Any], grid_size: tuple[int, int] = (24, 24)
) -> torch.Tensor:
    """``attn_loss.compute_attention_mask_loss``."""
    B = outputs.logits.shape[0]  # noqa: N806
    mB = released_create_soft_mask(batch["bboxes"], target_size=grid_size)  # noqa: N806
    vision_attentions = outputs.vision_attentions[-1]
    attn_map = vision_attentions.mean(dim=1)
    cls_to_patch_attn = attn_map[:, 0, 1:]
    if cls_to_patch_attn.shape[1] != grid_size[0] * grid_size[1]:
        num_patches = cls_to_patch_attn.shape[1]
        grid_h = int(num_patches**0.5)
        grid_w = num_patches // grid_h
        grid_size_actual = (grid_h, grid_w)
        mB = released_create_soft_mask(batch["bboxes"], target_size=grid_size_actual)  # noqa: N806
    else:
        grid_size_actual = grid_size
    cls_to_patch_attn = cls_to_patch_attn.view(B, *grid_size_actual)
    attn_prob = F.softmax(cls_to_patch_attn.view(B, -1), dim=1)
    attn_log_prob = (attn_prob + 1e-8).log().view(B, -1)
    mB_prob = mB.view(B, -1)  # noqa: N806
    return F.kl_div(attn_log_prob, mB_prob, reduction="batchmean")


def released_infer_modality(image_path: str) -> str:
    """``auto_rationale/data_generator._infer_modality``."""
    path_lower = image_path.lower()
    if "xray" in path_lower or "radiograph" in path_lower:
        return "xray"
    elif "ct" in path_lower:
        return "ct"
    elif "mri" in path_lower or "mr" in path_lower:
        return "mri"
    else:
        return "unknown"


class ReleasedCurriculumDataset:
    """``curriculum_dataset.CurriculumDataset`` over a list of items (no JSON file)."""

    def __init__(self, data: list[dict[str, Any]]) -> None:
        self.data = data
        self.domain_map: dict[str, list[int]] = {}
        for idx, item in enumerate(self.data):
            lesion_class = item["lesion_class"]
            modality = item["modality"]
            domain = f"{lesion_class}_{modality}"
            if domain not in self.domain_map:
                self.domain_map[domain] = []
            self.domain_map[domain].append(idx)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.data[idx]
        return {**item, "domains": f"{item['lesion_class']}_{item['modality']}"}

    def get_domains(self) -> list[str]:
        return list(self.domain_map.keys())


def released_collate_choice(item: dict[str, Any], stage: str) -> tuple[str, str, str, str]:
    """``curriculum_dataset.collate_fn``'s per-item choice: image, bbox, question and the
    assistant's content, by stage."""
    if stage == "easy":
        image_path, bbox, cot = item["image_path"], item["bbox"], item["cot"]
        answer, question = item["answer"], item["question"]
    elif stage == "medium":
        image_path, bbox, cot = item["image_path2"], item["bbox"], item["cot2"]
        answer, question = item["answer2"], item["question2"]
    elif stage == "hard":
        image_path, bbox, cot = item["image_path3"], "", ""
        answer, question = item["answer3"], item["question3"]
    if stage == "hard":
        assistant_content = f"Answer: {answer}"
    else:
        assistant_content = f"Reasoning: {cot}\n\nAnswer: {answer}"
    return image_path, bbox, question, assistant_content


# -- 6. the Medium mask ------------------------------------------------------------------------


def released_box_string(box: list[float]) -> str:
    """A box as the released generator writes it (``f"[{x1:.4f}, ...]"``)."""
    return "[" + ", ".join(f"{v:.4f}" for v in box) + "]"


def four_decimals(box: list[float]) -> list[float]:
    """The box the released code reads back from its string."""
    return [float(f"{v:.4f}") for v in box]


_coord = st.integers(0, 10_000).map(lambda k: k / 10_000)


@st.composite
def boxes(draw: st.DrawFn) -> list[float]:
    x1, x2 = sorted(draw(st.lists(_coord, min_size=2, max_size=2, unique=True)))
    y1, y2 = sorted(draw(st.lists(_coord, min_size=2, max_size=2, unique=True)))
    return [x1, y1, x2, y2]


@settings(max_examples=200, deadline=None)
@given(box=boxes(), grid=st.sampled_from([(24, 24), (9, 9), (16, 12), (25, 25)]))
def test_the_mask_follows_the_released_soft_mask(box: list[float], grid: tuple[int, int]) -> None:
    gw, gh = grid
    box = four_decimals(box)
    want = released_create_soft_mask([released_box_string(box)], (gh, gw))[0].numpy()
    got = box_mask([box], grid=(gw, gh))
    assert got.shape == (gh, gw)
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_the_released_rule_by_hand_cases_and_gradatims_option() -> None:
    # the end edge truncated: x 0.30..0.55 on 4 columns marks column 1, not columns 1 and 2
    for box, released_cells, touched_cells in [
        ([0.30, 0.0, 0.55, 0.2], [1], [1, 2]),
        # a box inside one interior cell: no cell as released, that cell as gradatim
        ([0.30, 0.30, 0.45, 0.45], [], [5]),
        # inside the first cell: the end's clamp to >= 1 keeps it, as released
        ([0.05, 0.05, 0.2, 0.2], [0], [0]),
    ]:
        want = released_create_soft_mask([released_box_string(box)], (4, 4), kernel_size=1)
        assert np.flatnonzero(want[0].numpy()).tolist() == released_cells
        got = box_mask([box], grid=(4, 4), kernel=1, sigma=1.0)
        assert np.flatnonzero(got).tolist() == released_cells
        ours = box_mask([box], grid=(4, 4), sigma=0.0, cells="whole")
        assert np.flatnonzero(ours).tolist() == touched_cells
    # inside one cell the mask is all zero after the blur too (the term is then 0)
    inner = [0.51, 0.51, 0.52, 0.52]
    assert not released_create_soft_mask([released_box_string(inner)], (24, 24)).any()
    assert not box_mask([inner]).any()


def test_no_box_is_the_whole_image_as_released_or_zeros_as_gradatim() -> None:
    want = released_create_soft_mask([""], (24, 24))[0].numpy()
    np.testing.assert_allclose(box_mask([]), want, atol=1e-9)
    np.testing.assert_allclose(want, np.full((24, 24), 1 / 576), atol=1e-9)  # uniform
    assert not box_mask([], empty="zeros").any()


def _write_image(path: Path, size: tuple[int, int], value: int) -> None:
    w, h = size
    img = np.full((h, w), value, np.uint8)
    img[h // 4 : h // 2, w // 3 : w // 2] = 255 - value  # something to tell images apart
    assert cv2.imwrite(str(path), img)


def test_the_loaders_medium_mask_is_the_released_one(tmp_path: Path) -> None:
    """Through the loader: no augmentation, the image at its own size, boxes in whole pixels
    on a 100 x 100 image, so the normalised boxes are exactly the released strings' values."""
    _write_image(tmp_path / "a.png", (100, 100), 40)
    pixel_boxes = [
        [[30, 10, 55, 40]],  # edges inside cells: truncated end
        [[41, 41, 43, 43]],  # inside one cell (cells are 4 px): no cell
        [],  # no box: the whole image
        [[0, 0, 3, 2]],  # inside the first cell: kept by the clamp
        [[12, 60, 100, 100]],  # to the far edge
    ]
    records = [
        {"id": f"r{k}", "image": "a.png", "source": "s", "task": "vqa", "split": "train",
         "text": "yes", "prompt": "Is there a lesion?",
         "boxes": [{"box": b, "phrase": "nodule"} for b in bs]}
        for k, bs in enumerate(pixel_boxes)
    ]  # fmt: skip
    ds = ga.ManifestDataset(records, root=tmp_path, image_size=(100, 100), stages="medium",
                            mask_grid=(25, 25))  # fmt: skip
    batch = ds.load_batch(list(range(len(records))))
    strings = [released_box_string([v / 100 for v in bs[0]]) if bs else "" for bs in pixel_boxes]
    want = released_create_soft_mask(strings, (25, 25)).numpy()
    np.testing.assert_allclose(batch["box_mask"].numpy(), want, atol=1e-7)
    assert not batch["box_mask"][1].any()
    # gradatim's rule, as an option: the touched cell of sample 1, zeros for sample 2
    ours = ga.ManifestDataset(records, root=tmp_path, image_size=(100, 100), stages="medium",
                              mask_grid=(25, 25), mask_cells="whole",
                              mask_empty="zeros")  # fmt: skip
    mask = ours.load_batch([1, 2])["box_mask"]
    assert mask[0].argmax().item() == 10 * 25 + 10 and not mask[1].any()


# -- 7. domains --------------------------------------------------------------------------------

RELEASED_ITEMS = [
    ("/data/xray/nodule/1.png", "nodule"),
    ("/data/xray/nodule/2.png", "nodule"),
    ("/data/CT_scans/liver/3.png", "mass"),
    ("/data/brain_mri/4.png", "tumor"),
    ("/data/MR/5.png", "tumor"),
    ("/data/chest/6.png", "nodule"),  # no modality in the path: unknown
    ("/home/projects/chest/7.png", "effusion"),  # "ct" inside "projects": the released rule says ct
    ("/data/radiographs/8.png", "effusion"),
]


def test_domains_are_the_released_lesion_class_and_modality(tmp_path: Path) -> None:
    items = [
        {"image_path": p, "lesion_class": c, "modality": released_infer_modality(p)}
        for p, c in RELEASED_ITEMS
    ]
    released = ReleasedCurriculumDataset(items)
    want = [released[i]["domains"] for i in range(len(items))]
    assert want[5] == "nodule_unknown" and want[6] == "effusion_ct"  # the rule's own quirks
    records = [
        {"id": f"r{i}", "image": p, "source": "vindr", "task": "vqa", "split": "train",
         "text": "yes", "boxes": [{"box": [1, 1, 5, 5], "phrase": c}]}
        for i, (p, c) in enumerate(RELEASED_ITEMS)
    ]  # fmt: skip
    assert record_domains(records, "lesion_modality") == want
    assert list(dict.fromkeys(record_domains(records, "lesion_modality"))) == (
        released.get_domains()
    )
    ds = ga.ManifestDataset(records, root=tmp_path, allow_outside_root=True,
                            domains="lesion_modality")  # fmt: skip
    assert ds.domain_column() == want
    # gradatim's grouping: the source; a fixed modality when the paths do not carry one
    assert ga.ManifestDataset(records, root=tmp_path, allow_outside_root=True).domain_column() == [
        "vindr"
    ] * len(records)
    fixed = ga.ManifestDataset(records, root=tmp_path, allow_outside_root=True,
                               domains="lesion_modality", modality="xray")  # fmt: skip
    assert fixed.domain_column() == [f"{c}_xray" for _, c in RELEASED_ITEMS]


def test_the_scheduler_draws_per_released_domain(tmp_path: Path) -> None:
    _write_image(tmp_path / "a.png", (32, 32), 60)
    records = [
        {"id": f"r{i}", "image": "a.png", "source": "vindr", "task": "vqa", "split": "train",
         "text": "yes", "boxes": [{"box": [1, 1, 5, 5], "phrase": ["nodule", "mass"][i % 2]}]}
        for i in range(6)
    ]  # fmt: skip
    scheduler = StageScheduler(["nodule_xray", "mass_xray"], easy_warmup_epochs=0, ramp_kappa=1)
    ds = ga.ManifestDataset(records, root=tmp_path, image_size=(32, 32), stages=scheduler,
                            domains="lesion_modality", modality="xray")  # fmt: skip
    assert ds.sample_domains([0, 1]) == ["nodule_xray", "mass_xray"]
    ds.load_batch([0, 1, 2])  # every sample's domain is one of the scheduler's
    by_source = ga.ManifestDataset(records, root=tmp_path, image_size=(32, 32), stages=scheduler)
    with pytest.raises(InvalidArgumentError, match=r"sample 0 \(id 'r0'\) has source 'vindr'"):
        by_source.load_batch([0])


def test_the_training_loop_groups_by_the_configured_domains(manifest: Path, tmp_path: Path) -> None:
    from test_train_loop import write_run

    from gradatim.train.config import load_config
    from gradatim.train.data import build_loader, source_records
    from gradatim.train.loop import build_model

    config = write_run(tmp_path, manifest, steps=1)
    medclm = '\n[curriculum]\nkind = "medclm"\ndomains = "lesion_modality"\n'
    config.write_text(config.read_text() + medclm + 'mask_cells = "whole"\nmask_empty = "zeros"\n')
    cfg = load_config(config)
    records = source_records(cfg)
    loader, _ = build_loader(cfg, build_model(cfg, records), records)
    items = [
        {"lesion_class": r["boxes"][0]["phrase"], "modality": released_infer_modality(r["image"])}
        for r in records
    ]
    released = ReleasedCurriculumDataset(items)
    assert loader.dataset.stages.domains == released.get_domains()
    assert loader.dataset.domain_column() == [released[i]["domains"] for i in range(len(items))]
    assert (loader.dataset._config["mask_cells"], loader.dataset._config["mask_empty"]) == (
        "whole",
        "zeros",
    )
    # the default: the sources, which are not MedCLM's domains
    config.write_text(config.read_text().replace('domains = "lesion_modality"\n', ""))
    cfg = load_config(config)
    loader, _ = build_loader(cfg, build_model(cfg, records), records)
    assert loader.dataset.stages.domains == ["alpha", "beta"]


# -- 8. the attention term ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from gradatim.train.tokenizer import train_bpe

    return train_bpe(["Is there a nodule? Reasoning: a nodule. Answer: yes"], vocab_size=300)


def test_the_vision_cls_term_is_the_released_compute_attention_mask_loss(tokenizer: Any) -> None:
    from gradatim.train.attention import VisionAttention, vision_cls_kl
    from gradatim.train.models import tiny_model
    from gradatim.train.text import encode_batch

    bundle = tiny_model("llava", tokenizer, image_size=64)  # CLIP tower: CLS + 8 x 8 patches
    model = bundle.model.eval()
    model.set_attn_implementation("eager")
    torch.manual_seed(0)
    pixels = torch.randn(3, 3, 64, 64)
    enc = encode_batch(bundle, ["Is there a nodule?"] * 3, ["Answer: yes"] * 3)
    enc.pop("labels")
    boxes_ = [[0.1, 0.2, 0.6, 0.7], [0.55, 0.05, 0.95, 0.45], None]  # the last: no box
    strings = [released_box_string(b) if b else "" for b in boxes_]
    # released: the vision tower's own attentions, asked for directly
    with torch.no_grad():
        tower = model.model.vision_tower(pixels, output_attentions=True)
        logits = model(pixel_values=pixels, **enc).logits
    outputs = SimpleNamespace(logits=logits, vision_attentions=tower.attentions)
    want = released_compute_attention_mask_loss(outputs, {"bboxes": strings})
    # gradatim: captured in the full model's forward, the loader's mask, per sample then the mean
    mask = torch.stack([torch.from_numpy(box_mask([b] if b else [], grid=(8, 8))) for b in boxes_])
    with torch.no_grad(), VisionAttention(model) as seen:
        model(pixel_values=pixels, **enc)
    assert seen.weights is not None and seen.weights.shape == (3, 2, 65, 65)
    per = vision_cls_kl(seen.weights, mask, torch.tensor([1, 1, 1]))
    assert float(per.mean()) == pytest.approx(float(want), rel=1e-5)
    assert float(want) > 0
    # not Medium: 0
    assert vision_cls_kl(seen.weights, mask, torch.tensor([0, 2, 1]))[:2].tolist() == [0.0, 0.0]


def test_the_vision_cls_term_trains_the_vision_towers_adapters(tokenizer: Any) -> None:
    from gradatim.train.attention import VisionAttention, vision_cls_kl
    from gradatim.train.models import LoraSettings, apply_lora, tiny_model
    from gradatim.train.text import encode_batch

    bundle = tiny_model("llava", tokenizer, image_size=64)
    bundle.model.set_attn_implementation("eager")
    model = apply_lora(bundle.model, LoraSettings(dropout=0.0))
    enc = encode_batch(bundle, ["Is there a nodule?"] * 2, ["Answer: yes"] * 2)
    enc.pop("labels")
    mask = torch.from_numpy(box_mask([[0.1, 0.1, 0.5, 0.5]], grid=(8, 8)))[None].repeat(2, 1, 1)
    with VisionAttention(model) as seen:
        model(pixel_values=torch.randn(2, 3, 64, 64), **enc)
    assert seen.weights is not None
    vision_cls_kl(seen.weights, mask, torch.tensor([1, 1])).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    tower = [g for n, g in grads.items() if "vision_tower" in n and "lora_B" in n]
    assert tower and any(g.abs().sum() > 0 for g in tower)


def test_a_tower_without_cls_is_refused(tokenizer: Any) -> None:
    from gradatim.train.attention import VisionAttention, vision_cls_kl
    from gradatim.train.models import tiny_model
    from gradatim.train.text import encode_batch

    bundle = tiny_model("paligemma", tokenizer, image_size=64)  # SigLIP: patches only
    model = bundle.model.eval()
    model.set_attn_implementation("eager")
    enc = encode_batch(bundle, ["Is there a nodule?"], ["Answer: yes"])
    enc.pop("labels")
    with torch.no_grad(), VisionAttention(model) as seen:
        model(pixel_values=torch.randn(1, 3, 64, 64), **enc)
    assert seen.weights is not None
    with pytest.raises(ValueError, match="no CLS token"):
        vision_cls_kl(seen.weights, torch.from_numpy(box_mask([], grid=(8, 8)))[None],
                      torch.tensor([1]))  # fmt: skip


def test_the_released_form_in_the_training_loop(manifest: Path, tmp_path: Path) -> None:
    from test_train_attention import _medium_run
    from test_train_loop import adapter

    from gradatim.train.config import load_config
    from gradatim.train.loop import train

    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir()
    off.mkdir()
    config = _medium_run(on, manifest, 0.5)
    form = 'attention_kl = 0.5\nattention_form = "vision_cls"'
    config.write_text(config.read_text().replace("attention_kl = 0.5", form))
    train(load_config(config))
    train(load_config(_medium_run(off, manifest, 0.0)))
    log = [json.loads(x) for x in (on / "out" / "log.jsonl").read_text().splitlines()]
    assert all(r["attention_kl"] > 0 for r in log)
    a, b = adapter(on / "out", 2), adapter(off / "out", 2)
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert any("vision_tower" in k for k in changed)  # the term reached the vision tower


# -- 9. the Hard stage's image -----------------------------------------------------------------


def test_the_hard_stage_reads_the_partner_as_released_image_path3(tmp_path: Path) -> None:
    for name, value in (("plain.png", 40), ("boxed.png", 90), ("other.png", 200)):
        _write_image(tmp_path / name, (64, 48), value)
    item = {
        "image_path": str(tmp_path / "boxed.png"), "image_path2": str(tmp_path / "plain.png"),
        "image_path3": str(tmp_path / "other.png"), "bbox": "[0.1000, 0.2000, 0.5000, 0.6000]",
        "question": "Where is the nodule?", "question2": "Where is the nodule?",
        "question3": "Is there a nodule?", "cot": "A nodule in the [0.1000, 0.2000, 0.5000, "
        "0.6000] region.", "cot2": "A nodule in the [0.1000, 0.2000, 0.5000, 0.6000] region.",
        "answer": "Right upper lobe.", "answer2": "Right upper lobe.", "answer3": "Yes.",
    }  # fmt: skip
    # the item as gradatim records: the sample (image_path2: gradatim draws the Easy overlay
    # itself) and, for the Hard stage, a record with image_path3, question3 and answer3
    sample = {"id": "r", "image": "plain.png", "source": "vindr", "task": "vqa", "split": "train",
              "text": item["answer"], "prompt": item["question"], "answer": item["answer"],
              "rationale": item["cot"], "hard_id": "h",
              "boxes": [{"box": [6.4, 9.6, 32, 28.8], "phrase": "nodule"}]}  # fmt: skip
    partner = {"id": "h", "image": "other.png", "source": "vindr", "task": "vqa",
               "split": "train", "text": item["answer3"], "prompt": item["question3"],
               "answer": item["answer3"]}  # fmt: skip
    records = [sample, partner]

    def load(stage: str, recs: list[dict[str, Any]] = records) -> dict[str, Any]:
        ds = ga.ManifestDataset(recs, root=tmp_path, image_size=(64, 48), stages=stage,
                                output="uint8")  # fmt: skip
        return ds.load_batch([0])

    for stage in ("medium", "hard"):
        image_path, _, question, content = released_collate_choice(item, stage)
        batch = load(stage)
        assert (batch["prompt"][0], batch["target"][0]) == (question, content), stage
        pixels = cv2.imread(image_path, cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(batch["pixel_values"][0, 0].numpy(), pixels), stage
    hard = load("hard")
    assert (hard["id"], hard["index"].tolist()) == (["h"], [1])  # the record read
    # the Easy stage: the sample's own image, with the box drawn on it
    easy = load("easy")
    assert easy["prompt"][0] == released_collate_choice(item, "easy")[2]
    # without a partner the Hard stage keeps the sample's own image (gradatim's earlier choice)
    alone = load("hard", [{k: v for k, v in sample.items() if k != "hard_id"}, partner])
    assert np.array_equal(
        alone["pixel_values"][0, 0].numpy(), cv2.imread(str(tmp_path / "plain.png"), 0)
    )
    assert alone["target"][0] == f"Answer: {item['answer']}"


def test_a_missing_or_foreign_partner_is_an_error(tmp_path: Path) -> None:
    _write_image(tmp_path / "a.png", (32, 32), 60)
    base = {"image": "a.png", "source": "vindr", "task": "vqa", "split": "train", "text": "yes",
            "answer": "yes"}  # fmt: skip
    dangling = [{**base, "id": "r", "hard_id": "gone"}]
    ds = ga.ManifestDataset(dangling, root=tmp_path, image_size=(32, 32), stages="hard")
    with pytest.raises(Exception, match='hard_id "gone" names no record of this data set'):
        ds.load_batch([0])
    ga.ManifestDataset(dangling, root=tmp_path, image_size=(32, 32), stages="medium").load_batch(
        [0]
    )  # only a Hard-stage draw needs the partner
    foreign = [
        {**base, "id": "r", "hard_id": "h", "boxes": [{"box": [1, 1, 5, 5], "phrase": "nodule"}]},
        {**base, "id": "h", "boxes": [{"box": [1, 1, 5, 5], "phrase": "mass"}]},
    ]
    ds = ga.ManifestDataset(foreign, root=tmp_path, image_size=(32, 32),
                            stages=StageScheduler(["nodule_xray", "mass_xray"]),
                            domains="lesion_modality", modality="xray")  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="same domain"):
        ds.load_batch([0])


def test_hard_id_round_trips_through_every_manifest_form(tmp_path: Path) -> None:
    from gradatim.manifest import pack_manifest, read_manifest, write_manifest

    recs = [
        {"id": "r", "image": "a.png", "source": "s", "task": "vqa", "split": "train",
         "text": "yes", "answer": "yes", "hard_id": "h"},
        {"id": "h", "image": "b.png", "source": "s", "task": "vqa", "split": "train",
         "text": "no", "answer": "no"},
    ]  # fmt: skip
    for suffix in (".jsonl", ".parquet"):
        back = read_manifest(write_manifest(recs, tmp_path / f"m{suffix}"))
        assert [r.get("hard_id") for r in back] == ["h", None]
        assert "hard_id" not in back[1]  # written only when set
    assert pack_manifest(tmp_path / "m.jsonl", tmp_path / "m.arrow") == 2
    ds = ga.ManifestDataset(tmp_path / "m.arrow", image_size=(8, 8))
    assert ds.column("hard_id") == ["h", None] and ds.record(0)["hard_id"] == "h"
