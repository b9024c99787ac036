"""RRGCL's learning difficulty measurer end to end (paper 002, Section 3.2, Eq. 1-10).

embeddings -> ``dif1`` (VNS-Gap, Eq. 1-4) and ``dif2`` (ITAS, Eq. 5-9) -> ``dif`` (Eq. 10) ->
per-class difficulty ``difC`` -> a result file + a JSON summary. The command line
(``gradatim difficulty``) is a thin layer over :func:`compute_difficulty`. VNS-Gap and ITAS may
take different visual embeddings (``itas_visual``): RRGCL's VNS-Gap uses a CheXpert-trained
ResNet101 and its ITAS a 5-layer ResNet (Section 4.2); the text embeddings are shared (Clinical
BERT for both there).

Under ``torchrun`` (``distributed=True``) VNS-Gap is sharded over the ranks; ITAS (a small network
trained sequentially) runs on rank 0 only, which also writes; the other ranks return ``None``
right after the VNS-Gap reduction (no barrier after it, so no collective time-out while rank 0
trains).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim.difficulty import distributed as dist
from gradatim.difficulty.class_difficulty import ClassDifficulty, class_difficulty
from gradatim.difficulty.combine import combine
from gradatim.difficulty.io import summary_path, write_difficulty, write_summary
from gradatim.errors import InvalidArgumentError

__all__ = ["DifficultyResult", "compute_difficulty"]


@dataclass
class DifficultyResult:
    """Per-sample and per-class difficulty of a training set."""

    ids: list[str]
    dif1: NDArray[np.float64]
    dif2: NDArray[np.float64]
    dif: NDArray[np.float64]
    classes: list[list[str]]
    class_difficulty: ClassDifficulty
    mi_history: list[float] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON summary: N, settings (encoders, k, block, ...), timings, MI per epoch,
        statistics of the scores and the per-class difficulty with the class ordering."""

        def stats(x: np.ndarray) -> dict[str, float]:
            return {
                "mean": float(x.mean()),
                "std": float(x.std()),
                "min": float(x.min()),
                "max": float(x.max()),
            }

        cd = self.class_difficulty
        return {
            "N": len(self.ids),
            "settings": self.settings,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "itas_mi_per_epoch": [round(m, 6) for m in self.mi_history],
            "dif1": stats(self.dif1),
            "dif2": stats(self.dif2),
            "dif": stats(self.dif),
            "class_ordering": cd.ordering(),
            "class_difficulty": {
                c: {"difficulty": cd[c], "mean_dif": cd.raw[c], "size": cd.sizes[c]} for c in cd
            },
        }

    def write(
        self, out: str | os.PathLike[str], summary: str | os.PathLike[str] | None = None
    ) -> tuple[Path, Path]:
        """Write the result (``.parquet`` or ``.safetensors``) and the JSON summary (default:
        beside it, ``.json``). Returns both paths."""
        p = write_difficulty(out, self.ids, self.dif1, self.dif2, self.dif, self.classes)
        s = write_summary(summary if summary is not None else summary_path(out), self.summary())
        return p, s


def compute_difficulty(
    visual: ArrayLike,
    text: ArrayLike,
    *,
    itas_visual: ArrayLike | None = None,
    ids: Sequence[str] | None = None,
    classes: Sequence[Sequence[str]] | None = None,
    k: int | None = None,
    block: int | None = None,
    device: Any = "auto",
    index: str = "auto",
    alpha: float = 0.6,
    beta: float = 0.4,
    ddof: int = 0,
    itas_sign: str = "intent",
    mine: dict[str, Any] | None = None,
    distributed: bool = False,
    progress: bool = False,
    settings: dict[str, Any] | None = None,
) -> DifficultyResult | None:
    """``dif1`` (Eq. 1-4), ``dif2`` (Eq. 5-9), ``dif`` (Eq. 10) and ``difC`` of the embeddings.

    Args:
        visual, text: ``(N, dv)`` and ``(N, dt)`` embeddings of the same samples.
        itas_visual: ``(N, dv')`` visual embeddings for ITAS from its own encoder (default:
            ``visual``, VNS-Gap's); ITAS pairs them with ``text``.
        ids: sample ids (default ``"0"``, ``"1"``, ...).
        classes: per sample, its class names (default: every sample ``"unlabeled"``).
        k, block, device, index: see :func:`gradatim.difficulty.vns_gap`.
        alpha, beta, ddof, itas_sign: see :func:`gradatim.difficulty.combine`.
        mine: keyword arguments of :func:`gradatim.difficulty.fit_mine` (epochs, seed, ...).
        distributed: shard VNS-Gap over the ``torch.distributed`` ranks; only rank 0 gets a result.
        progress: progress bars.
        settings: extra facts for the summary (encoders, input files).

    Returns:
        A :class:`DifficultyResult` (``None`` on ranks other than 0 when distributed).
    """
    from gradatim.difficulty.itas import fit_mine
    from gradatim.difficulty.vns_gap import resolve_device, vns_gap

    n = len(visual)  # type: ignore[arg-type]
    itas_v = visual if itas_visual is None else itas_visual
    if len(itas_v) != n:  # type: ignore[arg-type]
        raise InvalidArgumentError(
            f"compute_difficulty: {len(itas_v)} ITAS visual rows for {n} samples"  # type: ignore[arg-type]
        )
    ids_ = [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]
    if len(ids_) != n:
        raise InvalidArgumentError(f"compute_difficulty: {len(ids_)} ids for {n} samples")
    if len(set(ids_)) != n:
        raise InvalidArgumentError("compute_difficulty: ids must be unique")
    cls = [list(c) for c in classes] if classes is not None else [["unlabeled"]] * n
    if len(cls) != n:
        raise InvalidArgumentError(f"compute_difficulty: {len(cls)} class lists for {n} samples")
    dev = resolve_device(device)
    rank, world = dist.rank_and_world() if distributed else (0, 1)
    mine_kw = dict(mine or {})
    mine_kw.setdefault("device", dev)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    dif1 = vns_gap(
        visual,
        text,
        block=block,
        k=k,
        device=dev,
        index=index,
        distributed=distributed,
        progress=progress and rank == 0,
    )
    timings["vns_gap"] = time.perf_counter() - t0
    if rank != 0:
        return None
    t0 = time.perf_counter()
    fit = fit_mine(itas_v, text, progress=progress, **mine_kw)
    timings["itas"] = time.perf_counter() - t0
    dif = combine(dif1, fit.scores, alpha, beta, ddof=ddof, itas_sign=itas_sign)
    cd = class_difficulty(dif, cls)
    from gradatim.difficulty.vns_gap import DEFAULT_BLOCK_CPU, DEFAULT_BLOCK_CUDA

    used_block = block or (DEFAULT_BLOCK_CUDA if dev.startswith("cuda") else DEFAULT_BLOCK_CPU)
    info: dict[str, Any] = {
        "visual_dim": int(np.shape(visual)[1]),
        "itas_visual_dim": int(np.shape(itas_v)[1]),
        "text_dim": int(np.shape(text)[1]),
        "vns_gap": {"k": k, "block": int(used_block), "index": index if k else None},
        "device": dev,
        "world_size": world,
        "alpha": alpha,
        "beta": beta,
        "itas_sign": itas_sign,
        "zscore_ddof": ddof,
        "mine": {key: v for key, v in mine_kw.items() if key != "on_epoch"},
    }
    info.update(settings or {})
    result = DifficultyResult(
        ids=ids_,
        dif1=dif1,
        dif2=fit.scores,
        dif=dif,
        classes=cls,
        class_difficulty=cd,
        mi_history=fit.mi_history,
        settings=info,
        timings=timings,
    )
    return result
