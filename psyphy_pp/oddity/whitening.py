"""The whitening every oddity estimator starts from.

A trial shows the reference ``r`` twice and the comparison ``c`` once. With
``u = z0 - z1 ~ N(0, 2 S0)`` and ``v = (z0 + z1)/2 - z2 ~ N(delta, S0/2 + S1)``
(independent, ``delta = r - c``), distances are measured in the metric of
``Sbar = (2/3) S0 + (1/3) S1 = L L^T``. Whitening by ``L`` gives

* ``u' = L^{-1} u = Ma n`` with ``Ma = L^{-1} chol(2 S0)`` and ``n ~ N(0, I)``;
* ``v' = L^{-1} v = mu + K m`` with ``K = L^{-1} chol(S0/2 + S1)``,
  ``mu = L^{-1} delta`` and ``m ~ N(0, I)``;

and the answer is correct iff ``(3/4)|u'|^2 + |<u', v'>| < |v'|^2``. The Monte
Carlo estimator draws ``n`` and ``m``; the 2D and 3D quadratures integrate over
them. All algebra is closed-form on batches (:mod:`psyphy_pp._linalg`); no LAPACK
(DESIGN.md section 5).
"""

from __future__ import annotations

__all__ = ["Whitened", "whiten"]

import math
from typing import NamedTuple

from psyphy_pp._linalg import cholesky, solve_lower, solve_lower_matrix
from psyphy_pp._typing import Array


class Whitened(NamedTuple):
    """The factors of one whitening; every field has the batch axes of the inputs.

    Each estimator reads the fields it needs; under ``jit`` XLA drops the rest.
    """

    #: ``chol(Sbar)``, shape ``(..., D, D)``.
    L: Array
    #: ``chol(S0)``, shape ``(..., D, D)``.
    L0: Array
    #: ``chol(S0/2 + S1)``, shape ``(..., D, D)``.
    LB: Array
    #: ``L^{-1} chol(2 S0)``, lower triangular: ``u' = Ma n``.
    Ma: Array
    #: ``L^{-1} chol(S0/2 + S1)``, lower triangular: ``v' = mu + K m``.
    K: Array
    #: ``L^{-1} delta``, shape ``(..., D)``: the mean of ``v'``.
    mu: Array


def whiten(S0: Array, S1: Array, delta: Array) -> Whitened:
    """Whiten an oddity trial by the Cholesky factor of ``Sbar``.

    Args:
        S0: Noise covariance at the reference, shape ``(..., D, D)``.
        S1: Noise covariance at the comparison, shape ``(..., D, D)``.
        delta: ``r - c``, shape ``(..., D)``.

    Returns:
        A :class:`Whitened`.

    Examples:
        >>> import jax.numpy as jnp
        >>> w = whiten(jnp.eye(2), jnp.eye(2), jnp.array([1.0, 0.0]))
        >>> [round(float(x), 4) for x in w.mu]   # L = I, so mu = delta
        [1.0, 0.0]
        >>> round(float(w.Ma[0, 0]), 4)           # sqrt(2)
        1.4142
    """
    L = cholesky((2.0 * S0 + S1) / 3.0)
    L0 = cholesky(S0)
    LB = cholesky(0.5 * S0 + S1)
    Ma = solve_lower_matrix(L, math.sqrt(2.0) * L0)
    K = solve_lower_matrix(L, LB)
    return Whitened(L, L0, LB, Ma, K, solve_lower(L, delta))
