"""Chebyshev polynomial basis and its tensor products over the stimulus box.

The WPPM expands its weight field in products of Chebyshev polynomials
:math:`T_0 \\dots T_K` of degree up to ``K = basis_degree``, one factor per
stimulus dimension:

.. math:: \\phi_{i_1 \\dots i_D}(x) = T_{i_1}(x_1) \\cdots T_{i_D}(x_D).

Everything here is generic in the stimulus dimension ``D``, read from the last
axis of ``x``.
"""

from __future__ import annotations

__all__ = ["chebyshev", "tensor_basis"]

import jax.numpy as jnp

from psyphy_pp._typing import Array, ArrayLike


def chebyshev(x: ArrayLike, degree: int) -> Array:
    """Chebyshev polynomials of the first kind, ``T_0(x) .. T_degree(x)``.

    Args:
        x: Points of any shape, expected in ``[-1, 1]``.
        degree: Highest polynomial degree ``K >= 0``.

    Returns:
        Array of shape ``x.shape + (degree + 1,)``.

    Examples:
        >>> chebyshev(jnp.array([0.5]), 2).tolist()
        [[1.0, 0.5, -0.5]]
    """
    x = jnp.asarray(x)
    terms = [jnp.ones_like(x), x][: degree + 1]
    for _ in range(2, degree + 1):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return jnp.stack(terms, axis=-1)


def tensor_basis(x: ArrayLike, degree: int) -> Array:
    """Tensor-product Chebyshev basis, flattened over the basis axes.

    The flat index is row-major over ``(i_1, ..., i_D)``, so the first basis
    index (which goes with ``x[..., 0]``) varies slowest; this matches
    ``W.reshape(-1, D, D + E)`` for weights of shape ``(K+1,)*D + (D, D+E)``.

    Args:
        x: Stimuli of shape ``(..., D)``.
        degree: Highest polynomial degree ``K`` per dimension.

    Returns:
        Array of shape ``(..., (K + 1) ** D)``.
    """
    T = chebyshev(x, degree)  # (..., D, K+1)
    phi = T[..., 0, :]
    for d in range(1, T.shape[-2]):
        phi = (phi[..., :, None] * T[..., d, None, :]).reshape(*T.shape[:-2], -1)
    return phi
