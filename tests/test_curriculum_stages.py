"""MedCLM's stage scheduler: warm-up, medium probability from the loss gap, hard budget on
plateaus and rises, every constant a parameter, determinism, and state round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gradatim.curriculum import StageScheduler
from gradatim.curriculum.stages import EASY, HARD, MEDIUM


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_warmup_is_easy_only():
    s = StageScheduler(["d"], easy_warmup_epochs=3)
    s.update({"d": {"easy": 1.0, "medium": 0.1}}, epoch=0)
    ids = np.arange(2000)
    for epoch in range(4):  # epochs 0-2: warm-up; epoch 3: ramp is still 0
        assert (s.assign(ids, epoch) == EASY).all()
    assert s.stage(5, 0) == "easy"


def test_ema_and_medium_probability_by_hand():
    s = StageScheduler(["d"], ema_rate=0.9)
    s.update({"d": {"easy": 2.0, "medium": 1.0}}, epoch=5)
    # m = 0.1 * init + 0.9 * loss
    easy, med = 0.1 * 1e-3 + 0.9 * 2.0, 0.1 * 1e-3 + 0.9 * 1.0
    assert s.gap("d") == pytest.approx((easy - med) / (easy + 1e-8), abs=1e-15)
    # epoch 7: ramp = (7 - 4) / 10 = 0.3
    expect = 0.3 * sigmoid((s.gap("d") - 0.5) / 0.1)
    assert s.medium_probability("d", 7) == pytest.approx(expect, abs=1e-15)
    st = s.assign(np.arange(50_000), 7)
    assert abs((st == MEDIUM).mean() - expect) < 0.01
    assert not (st == HARD).any()  # before hard_transition_epoch
    # the global EMA follows the mean of every value given
    assert s.state_dict()["history"] == [pytest.approx(0.1 * 1e-4 + 0.9 * 1.5, abs=1e-15)]


def test_hard_budget_grows_on_plateau_and_shrinks_on_rise():
    s = StageScheduler(["a", "b"], ema_rate=1.0, gamma_h=0.2, plateau_patience=3)
    losses = {"a": {"easy": 1.0, "medium": 0.5}, "b": {"easy": 1.0, "medium": 0.6}}
    s.update(losses, epoch=0, global_loss=1.0)
    s.update(losses, epoch=1, global_loss=1.005)
    assert s.hard_budget == 0.0  # two EMA values: no plateau yet with q = 3
    s.update(losses, epoch=2, global_loss=1.0)
    assert s.plateau and s.hard_budget == pytest.approx(0.05)
    for e in range(3, 12):
        s.update(losses, epoch=e, global_loss=1.0)
    assert s.hard_budget == pytest.approx(0.3)  # capped at hard_budget_max
    s.update(losses, epoch=12, global_loss=1.2)  # rise >= delta_rise (0.05)
    assert s.loss_rising and s.hard_budget == pytest.approx(0.27)
    st = s.assign(np.arange(40_000), 25, domains=["a", "b"] * 20_000)
    assert abs((st == HARD).mean() - 0.27) < 0.01
    # gamma_h gates the growth: a median gap below it blocks it
    t = StageScheduler(["a"], ema_rate=1.0, gamma_h=0.9, plateau_patience=2)
    for e in range(6):
        t.update({"a": {"easy": 1.0, "medium": 0.5}}, epoch=e, global_loss=1.0)
    assert t.plateau and t.hard_budget == 0.0


def test_assignments_are_per_sample_deterministic():
    s = StageScheduler(["a", "b"], seed=3, ema_rate=1.0)
    s.update({"a": {"easy": 1.0, "medium": 0.3}, "b": {"easy": 1.0, "medium": 0.9}}, epoch=0)
    x = s.assign([4, 9, 17], 12, ["a", "b", "a"])
    y = s.assign([17, 4], 12, ["a", "a"])
    assert x[0] == y[1] and x[2] == y[0]
    other = StageScheduler(["a", "b"], seed=4, ema_rate=1.0)
    other.update({"a": {"easy": 1.0, "medium": 0.3}, "b": {"easy": 1.0, "medium": 0.9}}, epoch=0)
    ids = np.arange(5000)
    assert (s.assign(ids, 12) != other.assign(ids, 12)).any()


def test_state_round_trip_and_new_domains():
    s = StageScheduler(["a"], seed=8, hard_transition_epoch=6, ema_rate=0.5, gamma_h=0.0)
    for e in range(8):
        s.update({"a": {"easy": 1.0, "medium": 0.2}, "new": {"easy": 0.5}}, epoch=e)
    assert s.domains == ["a", "new"]
    state = json.loads(json.dumps(s.state_dict()))
    r = StageScheduler()
    r.load_state_dict(state)
    assert r.params == s.params and r.domains == s.domains
    ids = np.arange(3000)
    doms = ["a", "new"] * 1500
    assert (r.assign(ids, 9, doms) == s.assign(ids, 9, doms)).all()
    s.update({"a": {"easy": 0.9}}, epoch=8)
    r.update({"a": {"easy": 0.9}}, epoch=8)
    assert r.state_dict() == s.state_dict()


def test_errors():
    s = StageScheduler(["a"])
    with pytest.raises(ValueError, match="unknown domain"):
        s.assign([1], 5, ["zz"])
    with pytest.raises(ValueError, match="tau"):
        StageScheduler(tau=0.0)
    with pytest.raises(ValueError, match="finite"):
        s.update({"a": {"easy": float("nan")}}, epoch=1)
    with pytest.raises(ValueError, match="unique"):
        StageScheduler(["a", "a"])


def test_defaults_are_medclms_released_constants_from_one_home():
    """The constants of MedCLM's released configuration (ksyint/PROGRESSIVE, commit a7cca74),
    listed here by hand, are the scheduler's defaults; they are defined once, in the core, and
    the Python front (signature defaults None) takes them from there."""
    released = {
        "easy_warmup_epochs": 4, "hard_transition_epoch": 19, "ramp_kappa": 10.0, "gamma": 0.5,
        "tau": 0.1, "gamma_h": 0.6, "epsilon_plat": 0.01, "plateau_patience": 5,
        "delta_rise": 0.05, "hard_step_up": 0.05, "hard_step_down": 0.1,
        "hard_budget_max": 0.3, "hard_budget_init": 0.0, "ema_rate": 0.9,
        "ema_init_easy": 1e-3, "ema_init_medium": 1e-3, "ema_init_global": 1e-4,
    }  # fmt: skip
    assert StageScheduler(["d"]).params == released
    assert StageScheduler(["d"], gamma=0.7).params["gamma"] == 0.7
    from gradatim import _core
    from gradatim.curriculum.stages import EASY, HARD, MEDIUM, STAGES

    assert dict(_core.STAGE_DEFAULTS) == released
    assert (STAGES, EASY, MEDIUM, HARD) == (("easy", "medium", "hard"), 0, 1, 2)
