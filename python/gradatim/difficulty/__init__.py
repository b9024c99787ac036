"""RRGCL's learning difficulty, pre-computed (paper 002, Section 3.2; docs/difficulty.md).

- :func:`vns_gap`: ``dif1``, Eq. 1-4, exact and blocked (FAISS k-NN variant with ``k=``);
- :func:`itas` / :func:`fit_mine`: ``dif2``, Eq. 5-9, a MINE statistics network;
- :func:`combine`: ``dif``, Eq. 10; :func:`class_difficulty`: ``difC`` per class;
- :func:`compute_difficulty`: all of it, with :class:`DifficultyResult` to write the Parquet +
  JSON that ``RRGCLScheduler.from_file`` reads (:func:`read_difficulty`);
- encoders in :mod:`gradatim.difficulty.embed`; the CLI is ``gradatim difficulty``.

The functions share their module names (``gradatim.difficulty.vns_gap`` is the function here);
reach a module itself with ``importlib.import_module("gradatim.difficulty.vns_gap")``.
"""

from __future__ import annotations

from gradatim.difficulty.class_difficulty import ClassDifficulty, class_difficulty
from gradatim.difficulty.combine import combine, zscore
from gradatim.difficulty.io import (
    load_embeddings,
    read_difficulty,
    read_difficulty_table,
    save_embeddings,
    write_difficulty,
)
from gradatim.difficulty.itas import MINEResult, fit_mine, itas
from gradatim.difficulty.pipeline import DifficultyResult, compute_difficulty
from gradatim.difficulty.vns_gap import vns_gap

__all__ = [
    "vns_gap",
    "itas",
    "fit_mine",
    "MINEResult",
    "combine",
    "zscore",
    "class_difficulty",
    "ClassDifficulty",
    "compute_difficulty",
    "DifficultyResult",
    "load_embeddings",
    "save_embeddings",
    "write_difficulty",
    "read_difficulty",
    "read_difficulty_table",
]
