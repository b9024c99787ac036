"""RRGCL's overall learning difficulty (paper 002, Section 3.2.4, Eq. 10).

``dif(i) = alpha (dif1(i) - mu1) / sigma1 + beta (dif2(i) - mu2) / sigma2`` with ``(mu, sigma)`` the
mean and standard deviation over the training set, ``alpha = 0.6``, ``beta = 0.4``.

Decisions:
- ``sigma`` is the population standard deviation (``ddof=0``, NumPy's default): the z-scores are
  a property of the given set, not an estimate for a larger population; ``ddof=1`` is available.
- A constant score (``sigma = 0``) carries no ranking information: its z-scores are 0 (not NaN).
- Sign of ITAS: ``dif2 = T(v_i, t_i)`` is larger for a better aligned pair, which the paper calls
  easier, yet Eq. 10 adds ``+beta z(dif2)``. gradatim follows Eq. 10 as written (so the defaults
  reproduce the paper); pass ``beta=-0.4`` to count alignment as ease. Any finite ``alpha`` and
  ``beta`` are accepted.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim.errors import InvalidArgumentError

__all__ = ["zscore", "combine"]


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


def combine(
    dif1: ArrayLike, dif2: ArrayLike, alpha: float = 0.6, beta: float = 0.4, *, ddof: int = 0
) -> NDArray[np.float64]:
    """Overall difficulty ``dif = alpha z(dif1) + beta z(dif2)`` (RRGCL Eq. 10).

    Args:
        dif1: VNS-Gap per sample (:func:`gradatim.difficulty.vns_gap`).
        dif2: ITAS per sample (:func:`gradatim.difficulty.itas`).
        alpha, beta: weights (paper: 0.6 and 0.4). See the module docstring on ITAS' sign.
        ddof: delta degrees of freedom of the standard deviation (0: population).

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
    return float(alpha) * zscore(a, ddof) + float(beta) * zscore(b, ddof)
