"""Coordinates of the weights with the rotation gauge fixed, for sampling.

``Sigma(x) = U(x) U(x)^T`` and the prior of the weights do not change when every
block ``W[i1..iD]`` (``D x (D+E)``) is multiplied on the right by one common
orthogonal ``(D+E) x (D+E)`` matrix ``Q``. The posterior of ``W`` is therefore
spread evenly along those rotations, and a sampler spends part of every
trajectory moving along them without moving ``Sigma``.

The *fixed* gauge removes them. Rotate ``W`` so that the constant block
``W[0..0] = L Q`` (its LQ decomposition) becomes ``[L | 0]``: ``L`` is
``D x D`` lower triangular with a positive diagonal. The sampler then moves

* ``(L_ii / s0)^2`` (site :data:`SITE_GAUGE_DIAG`, a Chi-square with
  ``D + E - i`` degrees of freedom for row ``i = 0, ..., D-1``),
* ``L_ij`` below the diagonal (site :data:`SITE_GAUGE_OFFDIAG`, ``N(0, s0^2)``),
* every other block, rotated by the same ``Q`` (site :data:`SITE_GAUGE_REST`,
  the prior of ``W`` unchanged, since it is invariant under ``Q``),

where ``s0`` is the prior standard deviation of the constant block. The first
two are the Bartlett decomposition of ``W[0..0] W[0..0]^T``, a Wishart matrix,
so this is the prior of ``W`` with ``Q`` integrated out: the posterior of
``Sigma`` is exactly that of the plain weights. The log density of these
coordinates (NUTS's ``lp``) is not that of ``W``, so ``lp`` of a fixed-gauge run
cannot be compared with a free one. With ``E = 0`` nothing is left of
the symmetry; with ``E >= 1`` the rotations of the last ``E`` columns of the
other blocks (a sign flip for ``E = 1``) remain.

:func:`weights_from_coords` builds ``W`` from these coordinates and
:func:`coords_from_weights` finds the coordinates of a given ``W`` (e.g. a MAP
to start a chain from). :meth:`psyphy_pp.WPPM.numpyro_model` samples them with
``gauge="fixed"``; ``psyphy_pp.fit_nuts(..., gauge="fixed")`` uses it.
"""

from __future__ import annotations

__all__ = [
    "GAUGES",
    "SITE_GAUGE_DIAG",
    "SITE_GAUGE_OFFDIAG",
    "SITE_GAUGE_REST",
    "coords_priors",
    "weights_from_coords",
    "coords_from_weights",
]

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from psyphy_pp._typing import Array, ArrayLike

if TYPE_CHECKING:  # the model imports this module
    from psyphy_pp.model import WPPM

#: Accepted values of ``gauge``: ``"free"`` samples ``W`` itself, ``"fixed"`` the
#: coordinates of this module.
GAUGES = ("free", "fixed")
#: ``(L_ii / s0)^2``, shape ``(D,)``.
SITE_GAUGE_DIAG = "W_gauge_diag"
#: ``L_ij`` for ``i > j`` (``numpy.tril_indices(D, -1)`` order), shape ``(D (D-1) / 2,)``.
SITE_GAUGE_OFFDIAG = "W_gauge_offdiag"
#: Every block but the constant one, rotated, shape ``((K+1)^D - 1, D, D+E)``.
SITE_GAUGE_REST = "W_gauge_rest"


def _sizes(model: WPPM) -> tuple[int, int, int]:
    """``(D, D + E, number of blocks)``."""
    D = model.input_dim
    return D, D + model.extra_dims, (model.basis_degree + 1) ** D


def _block_std(model: WPPM) -> tuple[float, np.ndarray]:
    """Prior sd ``s0`` of the constant block and that of the other blocks ``(B - 1, D, M)``.

    The construction needs one prior sd per block (the prior is then invariant
    under the rotations); :meth:`~psyphy_pp.WPPM.prior_std` has that form.
    """
    D, M, B = _sizes(model)
    std = np.asarray(model.prior_std(), np.float64).reshape(B, D, M)
    if not np.all(std == std[:, :1, :1]):
        raise ValueError("model.prior_std() must be constant within each block W[i1..iD] "
                         "for the fixed gauge, got different values within a block")
    return float(std[0, 0, 0]), std[1:]


def coords_priors(model: WPPM) -> dict[str, dist.Distribution]:
    """The prior of each fixed-gauge site, in sampling order (empty sites left out).

    Args:
        model: The :class:`~psyphy_pp.WPPM`.

    Returns:
        ``{site name: NumPyro distribution}``: :data:`SITE_GAUGE_DIAG` always,
        :data:`SITE_GAUGE_OFFDIAG` when ``input_dim > 1`` and
        :data:`SITE_GAUGE_REST` when ``basis_degree > 0``.

    Examples:
        >>> import psyphy_pp as pp
        >>> sorted(coords_priors(pp.WPPM(input_dim=2, basis_degree=1)))
        ['W_gauge_diag', 'W_gauge_offdiag', 'W_gauge_rest']
    """
    D, M, B = _sizes(model)
    s0, std_rest = _block_std(model)
    dtype = jnp.result_type(float)
    out: dict[str, dist.Distribution] = {
        SITE_GAUGE_DIAG: dist.Chi2(jnp.asarray(M - np.arange(D), dtype)).to_event(1)}
    if D > 1:
        n_off = D * (D - 1) // 2
        out[SITE_GAUGE_OFFDIAG] = dist.Normal(jnp.zeros(n_off, dtype), s0).to_event(1)
    if B > 1:
        scale = jnp.asarray(std_rest, dtype)
        out[SITE_GAUGE_REST] = dist.Normal(jnp.zeros_like(scale), scale).to_event(3)
    return out


def weights_from_coords(model: WPPM, coords: dict[str, ArrayLike]) -> Array:
    """The weights ``W`` (shape ``model.weights_shape``) of fixed-gauge coordinates.

    Args:
        model: The :class:`~psyphy_pp.WPPM`.
        coords: A value for every site of :func:`coords_priors`, unbatched.

    Returns:
        ``W`` with constant block ``[L | 0]``.
    """
    D, M, B = _sizes(model)
    s0, _ = _block_std(model)
    diag = jnp.asarray(coords[SITE_GAUGE_DIAG])
    L = jnp.diag(s0 * jnp.sqrt(diag))
    if D > 1:
        rows, cols = np.tril_indices(D, -1)
        L = L.at[rows, cols].set(jnp.asarray(coords[SITE_GAUGE_OFFDIAG]))
    block0 = jnp.concatenate([L, jnp.zeros((D, M - D), L.dtype)], axis=1)[None]
    if B > 1:
        block0 = jnp.concatenate([block0, jnp.asarray(coords[SITE_GAUGE_REST], L.dtype)])
    return block0.reshape(model.weights_shape)


def coords_from_weights(model: WPPM, W: ArrayLike) -> dict[str, np.ndarray]:
    """The fixed-gauge coordinates of ``W`` rotated into the gauge (float64).

    ``W`` is multiplied on the right by the orthogonal ``Q`` of the QR
    decomposition of ``W[0..0]^T`` (signs chosen for a positive diagonal of ``L``),
    so :func:`weights_from_coords` of the result has the same ``Sigma(x)`` as ``W``.

    Args:
        model: The :class:`~psyphy_pp.WPPM`.
        W: Weights of shape ``model.weights_shape``.

    Returns:
        The coordinates, keyed by site name.

    Raises:
        ValueError: If ``W`` does not have shape ``model.weights_shape``, or its
            constant block is (numerically) of rank below ``D``, where the gauge
            is not defined.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(input_dim=2, basis_degree=1)
        >>> W = model.sample_prior(jax.random.PRNGKey(0))["W"]
        >>> W2 = weights_from_coords(model, coords_from_weights(model, W))
        >>> x = jax.numpy.zeros((1, 2))
        >>> bool(jax.numpy.allclose(model.covariance({"W": W2}, x),
        ...                         model.covariance({"W": W}, x), atol=1e-6))
        True
    """
    D, M, B = _sizes(model)
    s0, _ = _block_std(model)
    W = np.asarray(W, np.float64)
    model.weights({"W": jnp.asarray(W)})  # checks the shape
    flat = W.reshape(B, D, M)
    Q, R = np.linalg.qr(flat[0].T, mode="complete")  # W0^T = Q R, Q: (M, M)
    d = np.diag(R[:D])
    if not np.all(np.abs(d) > 1e-8 * max(s0, float(np.max(np.abs(flat[0]), initial=0.0)))):
        raise ValueError(
            "W: the constant block W[0, ..., 0] must have rank input_dim "
            f"({D}) to fix the gauge, got singular values "
            f"{np.linalg.svd(flat[0], compute_uv=False)!r}; use gauge='free'")
    Q[:, :D] *= np.sign(d)
    rotated = flat @ Q
    L = rotated[0, :, :D]
    out = {SITE_GAUGE_DIAG: (np.diag(L) / s0) ** 2}
    if D > 1:
        out[SITE_GAUGE_OFFDIAG] = L[np.tril_indices(D, -1)]
    if B > 1:
        out[SITE_GAUGE_REST] = rotated[1:]
    return out
