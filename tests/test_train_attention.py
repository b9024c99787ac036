"""MedCLM's Medium-stage attention KL term: the formula against a NumPy transcription of its
definition and hand cases, and the term in the training loop with eager attention (on, its
gradient reaching the adapters) and without (off, with a warning that says why)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_train_loop import adapter, write_run

from gradatim.train.attention import MEDIUM, attention_kl
from gradatim.train.config import load_config
from gradatim.train.loop import train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

IMAGE = 7


def _oracle(attn, ids, labels, mask, stage) -> np.ndarray:  # noqa: ANN001
    """KL(p || a) per sample, written out with loops from the module's definition."""
    out = np.zeros(len(ids))
    for b in range(len(ids)):
        p = mask[b].reshape(-1).astype(np.float64)
        if stage[b] != MEDIUM or p.sum() <= 0:
            continue
        a_last = attn[-1][b].mean(0)  # heads
        image = [t for t in range(len(ids[b])) if ids[b][t] == IMAGE]
        queries = [t for t in range(len(ids[b]) - 1) if labels[b][t + 1] != -100]
        if not queries:
            continue
        a = np.array([np.mean([a_last[q][k] for q in queries]) for k in image], dtype=np.float64)
        a = np.maximum(a / max(a.sum(), 1e-8), 1e-8)
        p = p / p.sum()
        out[b] = sum(p[i] * (np.log(p[i]) - np.log(a[i])) for i in range(len(p)) if p[i] > 0)
    return out


@settings(max_examples=30, deadline=None)
@given(data=st.data(), batch=st.integers(1, 4), grid=st.sampled_from([(2, 2), (3, 2)]))
def test_attention_kl_matches_its_definition(
    data: st.DataObject, batch: int, grid: tuple[int, int]
) -> None:
    gw, gh = grid
    n_img = gw * gh
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    length = n_img + 6
    ids = np.full((batch, length), 3)
    ids[:, 1 : 1 + n_img] = IMAGE
    labels = np.full((batch, length), -100)
    for b in range(batch):
        start = int(rng.integers(n_img + 1, length))
        labels[b, start:] = 5
    attn = rng.random((2, batch, 2, length, length))
    attn /= attn.sum(-1, keepdims=True)
    mask = rng.random((batch, gh, gw)) * (rng.random((batch, gh, gw)) > 0.4)
    stage = rng.integers(0, 3, batch)
    got = attention_kl(
        tuple(torch.tensor(a) for a in attn), torch.tensor(ids), torch.tensor(labels), IMAGE,
        torch.tensor(mask, dtype=torch.float32), torch.tensor(stage),
    )  # fmt: skip
    np.testing.assert_allclose(got.numpy(), _oracle(attn, ids, labels, mask, stage), rtol=1e-5)


def test_attention_kl_hand_cases() -> None:
    ids = torch.tensor([[IMAGE] * 4 + [1, 2, 3]])
    labels = torch.tensor([[-100] * 5 + [2, 3]])
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    medium = torch.tensor([MEDIUM])
    uniform = torch.full((1, 1, 7, 7), 1 / 7)
    # uniform attention, all mass of the mask in one of 4 cells: KL = log 4
    kl = attention_kl((uniform,), ids, labels, IMAGE, mask, medium)
    assert float(kl[0]) == pytest.approx(np.log(4), rel=1e-6)
    # attention exactly on the box cell: KL = 0
    focused = torch.zeros((1, 1, 7, 7))
    focused[..., 0] = 1.0
    assert float(attention_kl((focused,), ids, labels, IMAGE, mask, medium)[0]) == pytest.approx(
        0.0, abs=1e-6
    )
    # not Medium, or no box: 0
    assert float(attention_kl((uniform,), ids, labels, IMAGE, mask, torch.tensor([0]))[0]) == 0
    assert float(attention_kl((uniform,), ids, labels, IMAGE, 0 * mask, medium)[0]) == 0
    with pytest.raises(ValueError, match="4 image tokens but the box mask"):
        attention_kl((uniform,), ids, labels, IMAGE, torch.ones((1, 3, 3)), medium)


def _medium_run(tmp: Path, manifest: Path, kl: float, attn: str = "auto") -> Path:
    config = write_run(tmp, manifest, steps=2, checkpoint_every=2)
    model = f'name = "tiny-llava"\nattn_implementation = "{attn}"'
    text = config.read_text().replace('name = "tiny-llava"', model)
    curriculum = f'\n[curriculum]\nkind = "medclm"\nstage = "medium"\nattention_kl = {kl}\n'
    config.write_text(text + curriculum)
    return config


def test_attention_kl_in_the_loop_reaches_the_adapters(manifest: Path, tmp_path: Path) -> None:
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir()
    off.mkdir()
    train(load_config(_medium_run(on, manifest, 0.5)))
    train(load_config(_medium_run(off, manifest, 0.0)))
    log = [json.loads(x) for x in (on / "out" / "log.jsonl").read_text().splitlines()]
    assert all(r["attention_kl"] > 0 for r in log)  # every sample is Medium here
    assert all("attention_kl" not in json.loads(x)
               for x in (off / "out" / "log.jsonl").read_text().splitlines())  # fmt: skip
    a, b = adapter(on / "out", 2), adapter(off / "out", 2)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the term changed the update


def test_attention_kl_without_attention_weights_is_off_with_a_warning(
    manifest: Path, tmp_path: Path
) -> None:
    with pytest.warns(UserWarning, match=r'attention KL term is off.*attn_implementation = "sdpa"'):
        train(load_config(_medium_run(tmp_path, manifest, 0.5, attn="sdpa")))
    log = [json.loads(x) for x in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all("attention_kl" not in r for r in log)
