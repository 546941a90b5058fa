r"""Ellipses (ellipsoids in 3D) through threshold points: the least-squares conic

An :class:`Ellipses` holds ellipses ``{y : (y - centre)^T M^{-1} (y - centre) = 1}``,
one per reference point (with optional leading sample axes for posterior
draws), with their half-axes and principal directions. :func:`fit_ellipses`
fits them to the threshold points that :func:`~psyphy_pp.thresholds` finds.

The ellipse (ellipsoid in 3D) through the threshold points of a reference is a
least-squares conic: with ``x = point - r``, the coefficients of
``x^T A x + b^T x = 1`` minimise the algebraic residual over the reached
directions (``b = 0``, centre ``r``, when some direction did not reach the
target). Then the centre is ``r - A^{-1} b / 2`` and the shape matrix
``M = (1 + c^T A c) A^{-1}`` (``c`` the centre offset), so that the ellipse is
``{y : (y - centre)^T M^{-1} (y - centre) = 1}``; half-axes are the square roots
of the eigenvalues of ``M``. This is exact for points on an ellipse and allows
the small asymmetry between ``e`` and ``-e`` that a varying field causes. The fit
is done in numpy float64 outside ``jit``.
"""

from __future__ import annotations

__all__ = ["Ellipses", "fit_ellipses"]

from dataclasses import dataclass
from typing import Any

import numpy as np

from psyphy_pp._typing import ArrayLike
from psyphy_pp.normalization import Normalization


@dataclass(frozen=True)
class Ellipses:
    """Ellipses (ellipsoids) ``{y : (y - centre)^T M^-1 (y - centre) = 1}``, one per reference.

    Leading axes ``(*S, R)``: optional sample axes, then references.

    Attributes:
        centre: Centres, shape ``(*S, R, D)``.
        matrix: Shape matrices ``M``, shape ``(*S, R, D, D)``.
        axes: Half-axis lengths in decreasing order, shape ``(*S, R, D)``.
        rotation: Principal directions as columns, matching ``axes``, shape
            ``(*S, R, D, D)``.
        ok: False where the fit was not possible (fewer reached directions than
            coefficients, or the conic was not an ellipse); those entries hold the
            circle (sphere) through the mean threshold distance, centred on the
            reference: a placeholder, never NaN.
    """

    centre: np.ndarray
    matrix: np.ndarray
    axes: np.ndarray
    rotation: np.ndarray
    ok: np.ndarray

    @property
    def angle(self) -> np.ndarray:
        """Angle of the major axis from the first stimulus axis, radians in ``(-pi/2, pi/2]``, 2D only."""
        if self.centre.shape[-1] != 2:
            raise ValueError(f"angle needs input_dim 2, got {self.centre.shape[-1]}")
        v = self.rotation[..., :, 0]
        a = np.arctan2(v[..., 1], v[..., 0])
        a = np.where(a > np.pi / 2, a - np.pi, a)
        return np.where(a <= -np.pi / 2, a + np.pi, a)

    @classmethod
    def from_matrix(cls, centre: Any, matrix: Any, ok: Any = None) -> Ellipses:
        """Build from centres and shape matrices (axes by ``numpy.linalg.eigh``)."""
        centre = np.asarray(centre, np.float64)
        matrix = np.asarray(matrix, np.float64)
        matrix = 0.5 * (matrix + np.swapaxes(matrix, -1, -2))
        w, V = np.linalg.eigh(matrix)
        axes = np.sqrt(np.clip(w[..., ::-1], 0.0, None))
        ok = np.ones(centre.shape[:-1], bool) if ok is None else np.asarray(ok, bool)
        return cls(centre, matrix, axes, V[..., ::-1], ok)

    def to_user(self, normalization: Normalization) -> Ellipses:
        """The same ellipses in the user's units of ``normalization``."""
        return Ellipses.from_matrix(
            normalization.to_user(self.centre), normalization.covariance_to_user(self.matrix),
            self.ok,
        )


def fit_ellipses(
    refs: ArrayLike,
    points: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    fit_centre: bool = True,
) -> Ellipses:
    """Least-squares ellipses (ellipsoids) through threshold points.

    Fits ``x^T A x + b^T x = 1`` with ``x = point - ref`` (``b = 0`` when
    ``fit_centre`` is False) to the points where ``mask`` is True; see the module
    docstring. The centre is fitted only when every point of a reference is used
    (a conic through points on one side of the reference leaves its centre poorly
    determined); otherwise, or when the full fit is not an ellipse, the centred
    fit (``b = 0``) is used. When even that is impossible (fewer points than
    ``D (D + 1) / 2``) or not an ellipse, the result is a placeholder circle
    through the mean distance with ``ok`` False.

    Args:
        refs: Reference points, shape ``(*S, R, D)`` (or ``(R, D)``, broadcast).
        points: Threshold points, shape ``(*S, R, K, D)``.
        mask: Which points to use, shape ``(*S, R, K)`` (default: all).
        fit_centre: Let the centre differ from the reference.

    Returns:
        :class:`Ellipses` with leading shape ``(*S, R)``.

    Examples:
        >>> t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        >>> pts = np.stack([0.3 * np.cos(t), 0.1 * np.sin(t)], -1)[None]
        >>> e = fit_ellipses(np.zeros((1, 2)), pts)
        >>> e.axes.round(6).tolist(), bool(e.ok[0])
        ([[0.3, 0.1]], True)
    """
    points = np.asarray(points, np.float64)
    d = points.shape[-1]
    refs = np.broadcast_to(np.asarray(refs, np.float64), points.shape[:-2] + (d,))
    x = points - refs[..., None, :]
    w = np.ones(points.shape[:-1]) if mask is None else np.asarray(mask, np.float64)
    w = np.broadcast_to(w, points.shape[:-1])
    iu = np.triu_indices(d)
    quad = x[..., iu[0]] * x[..., iu[1]] * np.where(iu[0] == iu[1], 1.0, 2.0)
    n_quad = quad.shape[-1]
    feats = np.concatenate([quad, x], axis=-1) if fit_centre else quad
    n_used = w.sum(-1)

    def solve(F: np.ndarray) -> np.ndarray:
        G = np.einsum("...ki,...k,...kj->...ij", F, w, F)
        h = np.einsum("...ki,...k->...i", F, w)
        return np.einsum("...ij,...j->...i", np.linalg.pinv(G), h)

    def to_ellipse(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        A = np.zeros(theta.shape[:-1] + (d, d))
        A[..., iu[0], iu[1]] = theta[..., :n_quad]
        A[..., iu[1], iu[0]] = theta[..., :n_quad]
        evals = np.linalg.eigvalsh(A)
        pd = evals[..., 0] > 0
        A_safe = np.where(pd[..., None, None], A, np.eye(d))
        Ainv = np.linalg.inv(A_safe)
        if theta.shape[-1] > n_quad:
            c = -0.5 * np.einsum("...ij,...j->...i", Ainv, theta[..., n_quad:])
        else:
            c = np.zeros(theta.shape[:-1] + (d,))
        k = 1.0 + np.einsum("...i,...ij,...j->...", c, A_safe, c)
        return c, k[..., None, None] * Ainv, pd & (k > 0)

    c_full, M_full, ok_full = to_ellipse(solve(feats))
    # The centre is only well determined by points all round the reference.
    ok_full &= (n_used >= feats.shape[-1]) & (n_used == w.shape[-1]) & fit_centre
    c_cent, M_cent, ok_cent = to_ellipse(solve(quad))
    ok_cent &= n_used >= n_quad
    dist = np.linalg.norm(x, axis=-1)
    mean_r = np.where(n_used > 0, (dist * w).sum(-1) / np.maximum(n_used, 1), dist.mean(-1))
    M_circ = mean_r[..., None, None] ** 2 * np.eye(d)
    use_full = ok_full[..., None, None]
    use_cent = (~ok_full & ok_cent)[..., None, None]
    M = np.where(use_full, M_full, np.where(use_cent, M_cent, M_circ))
    c = np.where(use_full[..., 0], c_full, np.where(use_cent[..., 0], c_cent, 0.0))
    return Ellipses.from_matrix(refs + c, M, ok_full | ok_cent)
