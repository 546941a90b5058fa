"""Quadrature node rules shared by the 2D and 3D oddity quadratures (numpy, cached)."""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def legendre_rule(n: int, lo: float = 0.0, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on ``[lo, hi]``."""
    x, w = np.polynomial.legendre.leggauss(n)
    return lo + 0.5 * (hi - lo) * (x + 1.0), 0.5 * (hi - lo) * w


@cache
def hermite_rule(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss-Hermite rule for ``N(0, I_dim)``: nodes ``(n**dim, dim)``, weights."""
    x, w = np.polynomial.hermite.hermgauss(n)
    grids = np.meshgrid(*([np.sqrt(2.0) * x] * dim), indexing="ij")
    wgrids = np.meshgrid(*([w / np.sqrt(np.pi)] * dim), indexing="ij")
    return np.stack(grids, -1).reshape(-1, dim), np.prod(wgrids, axis=0).reshape(-1)
