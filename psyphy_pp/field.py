"""The Wishart-process covariance field Sigma(x) and its prior.

.. math::

    U(x) = \\sum_{i_1 \\dots i_D} W_{i_1 \\dots i_D} \\, \\phi_{i_1 \\dots i_D}(x),
    \\qquad \\Sigma(x) = U(x) U(x)^\\top + \\epsilon I,

with ``W`` of shape ``(K+1,)*D + (D, D+E)`` and every entry of
``W[i_1..i_D]`` independent ``Normal(0, s * r ** (i_1 + ... + i_D))``
(``s = variance_scale``, ``r = decay_rate``).
"""

from __future__ import annotations

__all__ = ["prior_variances", "weights_shape", "field_U", "covariance"]

import jax.numpy as jnp
import numpy as np

from psyphy_pp._typing import Array, ArrayLike
from psyphy_pp.basis import tensor_basis


def weights_shape(input_dim: int, basis_degree: int, extra_dims: int) -> tuple[int, ...]:
    """Shape of ``W``: ``(K+1,) * D + (D, D + E)``."""
    return (basis_degree + 1,) * input_dim + (input_dim, input_dim + extra_dims)


def prior_variances(
    input_dim: int, basis_degree: int, variance_scale: float, decay_rate: float
) -> np.ndarray:
    """Prior variance of ``W[i_1..i_D]``, ``variance_scale * decay_rate ** sum(i)``.

    Returns:
        Array of shape ``(K+1,) * D`` (broadcast it against the trailing
        ``(D, D+E)`` axes of ``W``).
    """
    idx = np.indices((basis_degree + 1,) * input_dim).sum(axis=0)
    return variance_scale * decay_rate ** idx.astype(np.float64)


def field_U(W: ArrayLike, x: ArrayLike) -> Array:
    """``U(x)``, the ``D x (D+E)`` square root of the noise covariance.

    Args:
        W: Weights, shape ``(K+1,) * D + (D, D + E)``.
        x: Stimuli, shape ``(..., D)``.

    Returns:
        Array of shape ``(..., D, D + E)``.
    """
    W = jnp.asarray(W)
    x = jnp.asarray(x)
    d = x.shape[-1]
    phi = tensor_basis(x, W.shape[0] - 1)
    return jnp.einsum("...b,bij->...ij", phi, W.reshape(-1, d, W.shape[-1]))


def covariance(W: ArrayLike, x: ArrayLike, diag_term: float) -> Array:
    """``Sigma(x) = U(x) U(x)^T + diag_term * I``, shape ``(..., D, D)``."""
    U = field_U(W, x)
    d = U.shape[-2]
    return jnp.einsum("...ik,...jk->...ij", U, U) + diag_term * jnp.eye(d, dtype=U.dtype)
