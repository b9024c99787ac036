"""MedCLM's Easy / Medium / Hard stage curriculum (paper 001; the rules of MedCLM's released
scheduler, github.com/ksyint/PROGRESSIVE at commit a7cca74 (the repository's later HEAD differs),
computed in ``rust/core/src/curriculum/stages.rs``).

- Easy: the box overlay is drawn on the image; Medium: no overlay, the batch carries a box mask
  for the attention KL loss; Hard: answer only, no box information.
- Epoch ``e < easy_warmup_epochs``: Easy only.
- ``e < hard_transition_epoch``: Medium with probability
  ``p_med = ramp(e) * sigmoid((gap_d - gamma) / tau)``, else Easy, where
  ``ramp(e) = min(1, (e - easy_warmup_epochs) / ramp_kappa)`` (0 up to the warm-up's end) and
  ``gap_d = (m_easy_d - m_med_d) / (m_easy_d + 1e-8)`` from the per-domain loss EMAs.
- Later: Hard with probability ``lambda_H`` (the hard budget), else as above.
- After each epoch (:meth:`StageScheduler.update`): EMAs ``m <- (1 - ema_rate) m + ema_rate x``
  (the released code's convention: ``ema_rate`` weights the new value); the global EMA joins a
  history; ``lambda_H`` grows by ``hard_step_up`` (up to ``hard_budget_max``) when the loss has
  plateaued (every ``|delta| <= epsilon_plat`` over the last ``plateau_patience`` EMA values) and
  the median gap over domains is ``>= gamma_h``; otherwise it shrinks by the factor
  ``1 - hard_step_down`` when the last EMA rose by ``>= delta_rise``.

Every constant is a parameter; the defaults are MedCLM's released configuration
(commit a7cca74). The stage of a
sample is a pure function of ``(seed, epoch, sample id)`` and the scheduler state, so it does not
depend on worker count or order.

Domains. The released code groups samples by ``f"{lesion_class}_{modality}"``
(``CurriculumDataset.domain_map``), where ``lesion_class`` is the detection annotation's class
and ``modality`` is what the released data generator infers from the image path
(``_infer_modality``: ``xray``, ``ct``, ``mri`` or ``unknown``). :func:`medclm_domain` builds
that key from a manifest record: the class is the first box's ``phrase`` (the converters write a
detection class there; ``"none"`` without a box or phrase) and the modality is inferred from
``image`` by the released rule, or given. gradatim's training loop groups by data *source*
unless ``[curriculum].domains = "lesion_modality"`` (docs/curriculum.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core
from gradatim.errors import InvalidArgumentError

__all__ = [
    "STAGES",
    "EASY",
    "MEDIUM",
    "HARD",
    "DEFAULTS",
    "DOMAIN_RULES",
    "StageScheduler",
    "infer_modality",
    "lesion_class",
    "medclm_domain",
    "record_domains",
]

STAGES = tuple(_core.STAGE_CODES)  # ("easy", "medium", "hard"), codes defined in the core
EASY, MEDIUM, HARD = (int(_core.STAGE_CODES[name]) for name in ("easy", "medium", "hard"))

#: MedCLM's released constants, defined once in the core (``StageParams::default``).
DEFAULTS: dict[str, Any] = dict(_core.STAGE_DEFAULTS)


#: How samples are grouped into the scheduler's domains: gradatim's data sources, or MedCLM's
#: released ``lesion_class + "_" + modality``.
DOMAIN_RULES = ("source", "lesion_modality")


def infer_modality(image: str) -> str:
    """MedCLM's released modality of an image path (``_infer_modality`` of
    ``auto_rationale/data_generator.py``, a7cca74): substrings of the lower-cased path, in order
    ``xray``/``radiograph`` -> ``xray``, ``ct`` -> ``ct``, ``mri``/``mr`` -> ``mri``, else
    ``unknown`` (a plain substring test: ``ct`` also matches inside words)."""
    path = str(image).lower()
    if "xray" in path or "radiograph" in path:
        return "xray"
    if "ct" in path:
        return "ct"
    if "mri" in path or "mr" in path:
        return "mri"
    return "unknown"


def lesion_class(record: Mapping[str, Any]) -> str:
    """A record's lesion class: its first box's ``phrase`` (``"none"`` without a box or with an
    empty phrase). MedCLM's records hold one lesion box each; with several, the first decides."""
    boxes = record.get("boxes") or []
    phrase = boxes[0].get("phrase") if boxes else None
    return str(phrase) if phrase else "none"


def medclm_domain(record: Mapping[str, Any], modality: str | None = None) -> str:
    """MedCLM's released domain of a record, ``f"{lesion_class}_{modality}"``
    (``CurriculumDataset``, a7cca74); ``modality`` ``None``: :func:`infer_modality` of the
    record's ``image``."""
    mod = modality if modality is not None else infer_modality(str(record.get("image", "")))
    return f"{lesion_class(record)}_{mod}"


def record_domains(
    records: Sequence[Mapping[str, Any]], rule: str = "source", modality: str | None = None
) -> list[str]:
    """Each record's stage-scheduler domain: its ``source`` (gradatim's grouping) or MedCLM's
    ``lesion_modality`` (:func:`medclm_domain`)."""
    if rule == "source":
        return [str(r["source"]) for r in records]
    if rule == "lesion_modality":
        return [medclm_domain(r, modality) for r in records]
    raise InvalidArgumentError(f"domains must be one of {', '.join(DOMAIN_RULES)}, not {rule!r}")


class StageScheduler:
    """Decides per sample and epoch between Easy, Medium and Hard (MedCLM).

    Args:
        domains: the domain names (MedCLM's released code: ``lesion_class + "_" + modality``,
            :func:`medclm_domain`; gradatim's training loop: data sources unless configured
            otherwise); losses are tracked per domain. Unknown domains passed to :meth:`update`
            are added.
        seed: seed of the per-sample stage draws.
        easy_warmup_epochs, hard_transition_epoch, ramp_kappa, gamma, tau, gamma_h, epsilon_plat,
        plateau_patience, delta_rise, hard_step_up, hard_step_down, hard_budget_max,
        hard_budget_init, ema_rate, ema_init_easy, ema_init_medium, ema_init_global: the
            constants of the rules in the module docstring; ``None`` takes MedCLM's released
            value (:data:`DEFAULTS`, defined once in the core).
    """

    def __init__(
        self,
        domains: Sequence[Hashable] = ("default",),
        *,
        seed: int = 0,
        easy_warmup_epochs: int | None = None,
        hard_transition_epoch: int | None = None,
        ramp_kappa: float | None = None,
        gamma: float | None = None,
        tau: float | None = None,
        gamma_h: float | None = None,
        epsilon_plat: float | None = None,
        plateau_patience: int | None = None,
        delta_rise: float | None = None,
        hard_step_up: float | None = None,
        hard_step_down: float | None = None,
        hard_budget_max: float | None = None,
        hard_budget_init: float | None = None,
        ema_rate: float | None = None,
        ema_init_easy: float | None = None,
        ema_init_medium: float | None = None,
        ema_init_global: float | None = None,
    ) -> None:
        names = list(domains)
        if not names or len(set(names)) != len(names):
            raise InvalidArgumentError("domains: expected unique, non-empty domain names")
        self._domains = names
        self._index = {d: i for i, d in enumerate(names)}
        self._seed = int(seed) % (1 << 64)
        given = {
            "easy_warmup_epochs": easy_warmup_epochs,
            "hard_transition_epoch": hard_transition_epoch,
            "ramp_kappa": ramp_kappa,
            "gamma": gamma,
            "tau": tau,
            "gamma_h": gamma_h,
            "epsilon_plat": epsilon_plat,
            "plateau_patience": plateau_patience,
            "delta_rise": delta_rise,
            "hard_step_up": hard_step_up,
            "hard_step_down": hard_step_down,
            "hard_budget_max": hard_budget_max,
            "hard_budget_init": hard_budget_init,
            "ema_rate": ema_rate,
            "ema_init_easy": ema_init_easy,
            "ema_init_medium": ema_init_medium,
            "ema_init_global": ema_init_global,
        }
        self._params = {
            key: type(DEFAULTS[key])(DEFAULTS[key] if value is None else value)
            for key, value in given.items()
        }
        for key in ("easy_warmup_epochs", "hard_transition_epoch", "plateau_patience"):
            if self._params[key] < 0:
                raise InvalidArgumentError(f"{key}: must be >= 0")
        self._core = _core.StageScheduler(len(names), self._seed, **self._params)
        self._generation = getattr(self, "_generation", -1) + 1

    @property
    def generation(self) -> int:
        """Counts the changes of the decisions (:meth:`update`, :meth:`load_state_dict`): a
        ``gradatim.DataLoader`` rebuilds its batches in flight when it moves, so an update
        reaches every batch delivered after it, whatever the loader prefetched."""
        return self._generation

    # -- domains ---------------------------------------------------------------------------------
    @property
    def domains(self) -> list[Hashable]:
        return list(self._domains)

    @property
    def params(self) -> dict[str, Any]:
        """Every constant in use."""
        return dict(self._params)

    def _domain_id(self, domain: Hashable, add: bool = False) -> int:
        if domain in self._index:
            return self._index[domain]
        if add:
            self._index[domain] = len(self._domains)
            self._domains.append(domain)
            self._core.ensure_domains(len(self._domains))
            return self._index[domain]
        raise InvalidArgumentError(f"domain: unknown domain {domain!r} (known: {self._domains})")

    # -- decisions -------------------------------------------------------------------------------
    def assign(
        self, sample_ids: ArrayLike, epoch: int, domains: Sequence[Hashable] | None = None
    ) -> NDArray[np.uint8]:
        """Stage codes (0 Easy, 1 Medium, 2 Hard) of samples ``sample_ids`` (stable ids, e.g.
        dataset indices) at ``epoch``; ``domains`` gives each sample's domain (default: the first
        domain for all)."""
        ids = np.ascontiguousarray(sample_ids, dtype=np.int64).ravel()
        if domains is None:
            dom = np.zeros(ids.shape[0], dtype=np.int64)
        else:
            dom = np.fromiter((self._domain_id(d) for d in domains), dtype=np.int64)
        return self._core.assign(ids, dom, int(epoch))

    def stage(self, sample_id: int, epoch: int, domain: Hashable | None = None) -> str:
        """``"easy"``, ``"medium"`` or ``"hard"`` for one sample."""
        doms = None if domain is None else [domain]
        return STAGES[int(self.assign([sample_id], epoch, doms)[0])]

    def medium_probability(self, domain: Hashable, epoch: int) -> float:
        """``p_med = ramp(epoch) * sigmoid((gap - gamma) / tau)`` for ``domain``."""
        return float(self._core.medium_probability(self._domain_id(domain), int(epoch)))

    def gap(self, domain: Hashable) -> float:
        """The normalised easy-vs-medium loss gap of ``domain``."""
        return float(self._core.gap(self._domain_id(domain)))

    def ramp(self, epoch: int) -> float:
        return float(self._core.ramp(int(epoch)))

    @property
    def median_gap(self) -> float:
        return float(self._core.median_gap())

    @property
    def hard_budget(self) -> float:
        """``lambda_H``: the probability of Hard once ``epoch >= hard_transition_epoch``."""
        return float(self._core.get_state()["hard_budget"])

    @property
    def plateau(self) -> bool:
        """Whether the last ``plateau_patience`` global EMA values moved by ``<= epsilon_plat``."""
        return bool(self._core.plateau())

    @property
    def loss_rising(self) -> bool:
        return bool(self._core.loss_rising())

    # -- learning signal -------------------------------------------------------------------------
    def update(
        self,
        losses: Mapping[Hashable, Mapping[str, float]],
        *,
        epoch: int,
        global_loss: float | None = None,
    ) -> None:
        """End of ``epoch``: ``losses[domain]`` holds the epoch's mean ``"easy"`` and/or
        ``"medium"`` loss (other keys, e.g. ``"hard"``, only count for the global loss).
        ``global_loss`` defaults to the mean of every value given (the released code's rule)."""
        for d in losses:
            self._domain_id(d, add=True)
        n = len(self._domains)
        easy: list[float | None] = [None] * n
        medium: list[float | None] = [None] * n
        values: list[float] = []
        for d, entry in losses.items():
            k = self._index[d]
            for key, v in entry.items():
                x = float(v)
                values.append(x)
                if key == "easy":
                    easy[k] = x
                elif key == "medium":
                    medium[k] = x
        if global_loss is None and values:
            global_loss = float(np.mean(values))
        self._core.update(
            int(epoch), easy, medium, None if global_loss is None else float(global_loss)
        )
        self._generation += 1

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: parameters, domains, EMAs, EMA history and hard budget."""
        s = self._core.get_state()
        return {
            "version": 1,
            "kind": "StageScheduler",
            "seed": self._seed,
            "params": dict(self._params),
            "domains": list(self._domains),
            "epoch": int(s["epoch"]),
            "ema_easy": list(s["ema_easy"]),
            "ema_medium": list(s["ema_medium"]),
            "ema_global": float(s["ema_global"]),
            "history": list(s["history"]),
            "hard_budget": float(s["hard_budget"]),
        }

    def __getstate__(self) -> dict[str, Any]:
        # copies and spawned workers rebuild the scheduler from its JSON-able state
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (parameters and domains included)."""
        if state.get("kind") != "StageScheduler" or state.get("version") != 1:
            raise InvalidArgumentError("state: not a StageScheduler state_dict")
        params = {**DEFAULTS, **dict(state["params"])}
        self.__init__(state["domains"], seed=int(state["seed"]), **params)  # type: ignore[misc]
        self._core.set_state(
            {
                "epoch": int(state["epoch"]),
                "ema_easy": [float(x) for x in state["ema_easy"]],
                "ema_medium": [float(x) for x in state["ema_medium"]],
                "ema_global": float(state["ema_global"]),
                "history": [float(x) for x in state["history"]],
                "hard_budget": float(state["hard_budget"]),
            }
        )
