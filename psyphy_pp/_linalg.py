"""Closed-form algebra on batches of small (D x D) matrices.

XLA's CPU runtime can deadlock when a jitted program calls batched LAPACK
kernels (``jnp.linalg.cholesky``, ``solve``, ...) on many tiny matrices, and
those kernels are slow on tiny matrices anyway. The functions here unroll the
algorithms over the (static) matrix size with Python loops, so that the traced
program is plain elementwise arithmetic over the batch axes. They are generic
in D; in practice D is 1, 2 or 3.
"""

from __future__ import annotations

__all__ = ["cholesky", "solve_lower", "solve_lower_matrix", "logdet_from_cholesky"]

import jax.numpy as jnp

from psyphy_pp._typing import Array


def cholesky(S: Array) -> Array:
    """Lower Cholesky factor of symmetric positive-definite matrices.

    Args:
        S: Matrices of shape ``(..., D, D)``; only the lower triangle is read.

    Returns:
        ``L`` of shape ``(..., D, D)`` with ``L @ L.T == S``.
    """
    d = S.shape[-1]
    L = [[None] * d for _ in range(d)]
    zero = jnp.zeros_like(S[..., 0, 0])
    for j in range(d):
        diag = S[..., j, j] - sum((L[j][k] ** 2 for k in range(j)), zero)
        L[j][j] = jnp.sqrt(diag)
        for i in range(j + 1, d):
            off = S[..., i, j] - sum((L[i][k] * L[j][k] for k in range(j)), zero)
            L[i][j] = off / L[j][j]
    rows = [
        jnp.stack([L[i][j] if j <= i else zero for j in range(d)], axis=-1)
        for i in range(d)
    ]
    return jnp.stack(rows, axis=-2)


def solve_lower(L: Array, b: Array) -> Array:
    """Solve ``L x = b`` for lower-triangular ``L`` by forward substitution.

    Args:
        L: Lower-triangular matrices, shape ``(..., D, D)``.
        b: Right-hand sides, shape ``(..., D)`` (broadcast against ``L``).

    Returns:
        ``x`` of shape ``(..., D)``.
    """
    d = L.shape[-1]
    x = []
    for i in range(d):
        acc = b[..., i]
        for k in range(i):
            acc = acc - L[..., i, k] * x[k]
        x.append(acc / L[..., i, i])
    return jnp.stack(x, axis=-1)


def solve_lower_matrix(L: Array, B: Array) -> Array:
    """Solve ``L X = B`` column by column for lower-triangular ``L``.

    Args:
        L: Lower-triangular matrices, shape ``(..., D, D)``.
        B: Right-hand side matrices, shape ``(..., D, K)``.

    Returns:
        ``X = L^{-1} B`` of shape ``(..., D, K)``.
    """
    Lb = L[..., None, :, :]
    cols = jnp.swapaxes(B, -1, -2)  # (..., K, D)
    return jnp.swapaxes(solve_lower(Lb, cols), -1, -2)


def logdet_from_cholesky(L: Array) -> Array:
    """``log det(L L^T)`` from a Cholesky factor, shape ``(...)``."""
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
