"""Experimental designs: where to put references and comparisons."""

from __future__ import annotations

__all__ = ["grid_points", "grid_design", "box_distances", "edge_distance", "probe_design"]

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp import _linalg
from psyphy_pp._typing import Params, PRNGKey
from psyphy_pp._validation import check_positive
from psyphy_pp.model import WPPM


def grid_points(grid_size: int, input_dim: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """A regular ``grid_size ** input_dim`` grid on ``[low, high]^D``, shape ``(G, D)``.

    The first coordinate varies slowest.
    """
    check_positive("grid_size", grid_size, integer=True)
    axes = [np.linspace(low, high, grid_size)] * input_dim
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, input_dim)


def grid_design(
    model: WPPM,
    truth: Params,
    *,
    grid_size: int = 5,
    trials_per_ref: int = 400,
    mahalanobis_radius: float = 2.8,
    key: PRNGKey,
) -> tuple[np.ndarray, np.ndarray]:
    """References on a grid, comparisons at a fixed Mahalanobis radius of the truth.

    Each reference ``r`` gets ``trials_per_ref`` comparisons
    ``clip(r + radius * chol(Sigma_truth(r)) @ e, -1, 1)`` with ``e`` a uniformly
    random unit direction (DESIGN.md section 3, P-std).

    Args:
        model: The model whose ``covariance`` defines the truth's field.
        truth: Ground-truth parameters ``{"W": W}``.
        grid_size: Points per axis of the reference grid on ``[-1, 1]^D``.
        trials_per_ref: Trials at each reference.
        mahalanobis_radius: Distance of comparisons in units of the truth's noise.
        key: PRNG key for the directions.

    Returns:
        ``(refs, comparisons)``, each of shape ``(grid_size**D * trials_per_ref, D)``.
    """
    check_positive("trials_per_ref", trials_per_ref, integer=True)
    check_positive("mahalanobis_radius", mahalanobis_radius)
    grid = grid_points(grid_size, model.input_dim)
    refs = np.repeat(grid, trials_per_ref, axis=0)
    L = _linalg.cholesky(model.covariance(truth, refs))
    e = jax.random.normal(key, refs.shape, L.dtype)
    e = e / jnp.linalg.norm(e, axis=-1, keepdims=True)
    comps = refs + mahalanobis_radius * np.asarray(jnp.einsum("nij,nj->ni", L, e))
    return refs, np.clip(comps, -1.0, 1.0)


def edge_distance(points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance from points to the edge of ``[-1, 1]^D`` along directions, row by row.

    Args:
        points: Points inside the box, shape ``(..., D)``.
        dirs: Unit directions, broadcastable against ``points``.

    Returns:
        The distances, shape of the broadcast without the last axis (0 where a
        point sits on the edge and its direction points out).

    Examples:
        >>> edge_distance(np.array([[0.5, 0.0]]), np.array([[1.0, 0.0]])).tolist()
        [0.5]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        lim = np.where(dirs > 0, (1.0 - points) / dirs,
                       np.where(dirs < 0, (-1.0 - points) / dirs, np.inf))
    return np.clip(lim.min(axis=-1), 0.0, None)


def box_distances(refs: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance from each reference to the edge of ``[-1, 1]^D`` along each direction.

    Args:
        refs: References, shape ``(R, D)``.
        dirs: Unit directions, shape ``(K, D)``.

    Returns:
        Array of shape ``(R, K)`` (0 where a reference sits on the edge and the
        direction points out).

    Examples:
        >>> box_distances(np.zeros((1, 2)), np.array([[1.0, 0.0], [0.6, 0.8]])).round(3)
        array([[1.  , 1.25]])
    """
    return edge_distance(refs[:, None, :], dirs[None])


def probe_design(refs: np.ndarray, directions: np.ndarray, levels: np.ndarray,
                 repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Probe trials by the method of constant stimuli along given directions.

    Every reference is paired with every direction (a probe); each probe gets
    comparisons at each distance in ``levels``, ``repeats`` times. Simulate
    responses with :func:`~psyphy_pp.simulate`, compare with a fit by
    :func:`~psyphy_pp.validate`.

    Args:
        refs: References in model units, shape ``(R, D)``.
        directions: Directions, shape ``(K, D)`` (normalised here).
        levels: Positive distances in model units: shape ``(L,)`` for all
            probes, or ``(R, K, L)`` per probe.
        repeats: Trials per level.

    Returns:
        ``(refs, comparisons)``, each of shape ``(R * K * L * repeats, D)``,
        ordered by reference, direction, level, repeat.

    Raises:
        ValueError: For bad shapes, non-positive levels, or a comparison
            outside ``[-1, 1]^D`` (nothing is clipped).

    Examples:
        >>> r, c = probe_design(np.zeros((1, 2)), [[1.0, 0.0]], [0.1, 0.2], repeats=2)
        >>> c.tolist()
        [[0.1, 0.0], [0.1, 0.0], [0.2, 0.0], [0.2, 0.0]]
    """
    refs = np.asarray(refs, np.float64)
    if refs.ndim != 2:
        raise ValueError(f"refs must have shape (R, D), got {refs.shape}")
    R, D = refs.shape
    dirs = np.asarray(directions, np.float64)
    if dirs.ndim != 2 or dirs.shape[1] != D or len(dirs) == 0:
        raise ValueError(f"directions must have shape (K, {D}), got {dirs.shape}")
    norms = np.linalg.norm(dirs, axis=1)
    if not np.all(np.isfinite(norms) & (norms > 0)):
        raise ValueError("directions must be finite and non-zero")
    dirs = dirs / norms[:, None]
    K = len(dirs)
    lev = np.asarray(levels, np.float64)
    if lev.ndim == 1:
        lev = np.broadcast_to(lev, (R, K, lev.size))
    if lev.ndim != 3 or lev.shape[:2] != (R, K) or lev.shape[2] == 0:
        raise ValueError(f"levels must have shape (L,) or ({R}, {K}, L), got "
                         f"{np.asarray(levels).shape}")
    if not np.all(np.isfinite(lev) & (lev > 0)):
        raise ValueError("levels must be positive, finite distances")
    check_positive("repeats", repeats, integer=True)
    reach = box_distances(refs, dirs)  # (R, K)
    out = lev.max(axis=2) > reach + 1e-12
    if np.any(out):
        i, k = map(int, np.argwhere(out)[0])
        raise ValueError(
            f"levels leave the box [-1, 1]^{D}: reference {refs[i].tolist()} in direction "
            f"{dirs[k].round(4).tolist()} reaches the edge at distance {reach[i, k]:.4g}, the "
            f"largest level is {lev[i, k].max():.4g} ({int(out.sum())} probes affected)")
    comps = refs[:, None, None, :] + lev[..., None] * dirs[None, :, None, :]  # (R, K, L, D)
    comps = np.repeat(comps[:, :, :, None, :], repeats, axis=3).reshape(-1, D)
    r_out = np.broadcast_to(refs[:, None, None, None, :], (R, K, lev.shape[2], repeats, D))
    # the levels were checked against the box: the clip only removes rounding
    return np.ascontiguousarray(r_out.reshape(-1, D)), np.clip(comps, -1.0, 1.0)
