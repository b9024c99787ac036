"""RRGCL's overall learning difficulty (paper 002, Section 3.2.4, Eq. 10).

``dif(i) = alpha z(dif1(i)) - beta z(dif2(i))`` with ``z(x) = (x - mu) / sigma`` over the training
set, ``alpha = 0.6``, ``beta = 0.4`` (the printed values).

Decisions:
- ``sigma`` is the population standard deviation (``ddof=0``, NumPy's default): the z-scores are
  a property of the given set, not an estimate for a larger population; ``ddof=1`` is available.
- A constant score (``sigma = 0``) carries no ranking information: its z-scores are 0 (not NaN).
- Sign of ITAS: ``dif2 = T(v_i, t_i)`` is larger for a better aligned pair, which Section 3.2
  calls *easier*; Eq. 10 as printed adds ``+beta z(dif2)`` with ``beta > 0``, which would make a
  well-aligned pair *harder* and partly cancel VNS-Gap (a mis-paired report then looks easier than
  under VNS-Gap alone). gradatim follows the stated intent by default (``itas_sign="intent"``:
  ``- beta z(dif2)``); ``itas_sign="literal"`` keeps Eq. 10 exactly as printed. Any finite
  ``alpha`` and ``beta`` are accepted.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim.errors import InvalidArgumentError

__all__ = ["ITAS_SIGNS", "zscore", "combine"]


def _vector(x: ArrayLike, name: str) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InvalidArgumentError(f"combine: {name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise InvalidArgumentError(f"combine: {name} is empty")
    bad = ~np.isfinite(a)
    if bad.any():
        raise InvalidArgumentError(
            f"combine: {name}[{int(np.argmax(bad))}] is not finite ({a[np.argmax(bad)]})"
        )
    return a


def zscore(x: ArrayLike, ddof: int = 0) -> NDArray[np.float64]:
    """``(x - mean) / std`` over all of ``x`` (float64; ``std`` with ``ddof``, default 0); a
    constant vector gives zeros. The normalisation of RRGCL Eq. 10."""
    a = _vector(x, "x")
    if a.size - ddof <= 0:
        raise InvalidArgumentError(f"zscore: ddof={ddof} needs more than {ddof} values")
    mu = a.mean()
    sigma = a.std(ddof=ddof)
    if not sigma > 0:
        return np.zeros_like(a)
    return (a - mu) / sigma


ITAS_SIGNS = ("intent", "literal")


def combine(
    dif1: ArrayLike,
    dif2: ArrayLike,
    alpha: float = 0.6,
    beta: float = 0.4,
    *,
    ddof: int = 0,
    itas_sign: str = "intent",
) -> NDArray[np.float64]:
    """Overall difficulty ``dif = alpha z(dif1) - beta z(dif2)`` (RRGCL Eq. 10, with the sign of
    ITAS per Section 3.2: stronger alignment is easier).

    Args:
        dif1: VNS-Gap per sample (:func:`gradatim.difficulty.vns_gap`).
        dif2: ITAS per sample (:func:`gradatim.difficulty.itas`).
        alpha, beta: weights (paper: 0.6 and 0.4).
        ddof: delta degrees of freedom of the standard deviation (0: population).
        itas_sign: ``"intent"`` (default, ``- beta z(dif2)``) or ``"literal"`` (Eq. 10 as
            printed, ``+ beta z(dif2)``); see the module docstring.

    Returns:
        ``(N,)`` float64 ``dif``.
    """
    a = _vector(dif1, "dif1")
    b = _vector(dif2, "dif2")
    if a.shape != b.shape:
        raise InvalidArgumentError(
            f"combine: mismatched N: dif1 has {a.size} values, dif2 has {b.size}"
        )
    for name, w in (("alpha", alpha), ("beta", beta)):
        if not np.isfinite(w):
            raise InvalidArgumentError(f"combine: {name} must be finite, got {w!r}")
    if itas_sign not in ITAS_SIGNS:
        raise InvalidArgumentError(
            f"combine: itas_sign must be intent or literal, not {itas_sign!r}"
        )
    sign = -1.0 if itas_sign == "intent" else 1.0
    return float(alpha) * zscore(a, ddof) + sign * float(beta) * zscore(b, ddof)
