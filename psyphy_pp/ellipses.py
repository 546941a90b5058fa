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

*When an ellipse is ok.* :func:`fit_ellipses` sets ``ok`` False, with a short
``reason``, for a reference where

* fewer than half of the directions reached the target inside the box (or
  fewer than the ``D (D + 1) / 2`` needed to fix an ellipse):
  ``"6/16 directions reached the target (need 8)"``; the points seen then lie
  on one side of the reference and the ellipse is an extrapolation;
* the least-squares conic is not an ellipse (not positive definite, or not
  finite): ``"conic not an ellipse"``;
* a half-axis is longer than the model box ``[-1, 1]^D`` is wide, i.e. > 2
  model units: ``"half-axis 4.1 > box width 2 (model units)"``. The limit is
  the box width, not its diagonal ``2 sqrt(D)``: a threshold distance longer
  than the whole stimulus range along an axis is an extrapolation of the fit,
  not a measurement, and for ``D <= 3`` an ellipse with a half-axis > 2 (a
  diameter > 4 > ``2 sqrt(D)``) cannot lie inside the box wherever it is
  centred.

The first of these that applies is the reason; ``reason`` is ``""`` exactly
where ``ok`` is True. Reasons stay in model units when the ellipses are mapped
to user units (:meth:`Ellipses.to_user`); only the half-axis reason carries a
number with a unit, and it says so.
"""

from __future__ import annotations

__all__ = ["Ellipses", "fit_ellipses"]

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from psyphy_pp._typing import ArrayLike
from psyphy_pp.normalization import Normalization

#: Width of the model box ``[-1, 1]^D``: the largest half-axis an ok ellipse may have.
_BOX_WIDTH = 2.0

#: Reason of a not-ok ellipse whose constructor was given no reason.
_DEFAULT_REASON = "fit failed"


def _reason_kind(reason: str) -> str:
    """The kind of a reason, without its numbers (for counts in reprs)."""
    if "directions reached the target" in reason:
        return "too few directions reached the target"
    if reason.startswith("half-axis"):
        return "half-axis larger than the box"
    return reason


@dataclass(frozen=True, repr=False)
class Ellipses:
    """Ellipses (ellipsoids) ``{y : (y - centre)^T M^-1 (y - centre) = 1}``, one per reference.

    Leading axes ``(*S, R)``: optional sample axes, then references.

    Attributes:
        centre: Centres, shape ``(*S, R, D)``.
        matrix: Shape matrices ``M``, shape ``(*S, R, D, D)``.
        axes: Half-axis lengths in decreasing order, shape ``(*S, R, D)``.
        rotation: Principal directions as columns, matching ``axes``, shape
            ``(*S, R, D, D)``.
        ok: True where the ellipse is a trustworthy summary of the threshold
            points, shape ``(*S, R)``; see the module docstring for when
            :func:`fit_ellipses` sets it False. Where no ellipse could be fitted
            (too few points, or the conic was not an ellipse) the entry holds
            the circle (sphere) through the mean threshold distance, centred on
            the reference: a placeholder, never NaN. Where the fit is an
            ellipse but not ok (too few directions, or too large), the entry
            holds that fitted ellipse.
        reason: Why an entry is not ok, one short string per entry, shape
            ``(*S, R)``: ``""`` exactly where ``ok`` is True. Default: ``""``
            where ``ok``, else ``"fit failed"``.

    Raises:
        ValueError: If ``ok`` or ``reason`` do not have shape ``(*S, R)``, or
            ``reason`` is not ``""`` exactly where ``ok`` is True.

    Examples:
        >>> t = 2 * np.pi * np.arange(16) / 16
        >>> circle = np.stack([np.cos(t), np.sin(t)], -1)
        >>> fit_ellipses(np.zeros((3, 2)), [0.1 * circle, 4.1 * circle, 0.1 * circle],
        ...              mask=[t >= 0, t >= 0, t < 2])
        Ellipses(3 references, input_dim 2, point estimate
          half-axes 0.1 to 4.1
          ok 1/3 references
          not ok: 1 half-axis larger than the box, 1 too few directions reached the target)
    """

    centre: np.ndarray
    matrix: np.ndarray
    axes: np.ndarray
    rotation: np.ndarray
    ok: np.ndarray
    reason: np.ndarray = None  # type: ignore[assignment]  # filled in by __post_init__

    def __post_init__(self) -> None:
        shape = np.shape(self.centre)[:-1]
        ok = np.asarray(self.ok, bool)
        if ok.shape != shape:
            raise ValueError(f"ok must have shape {shape}, got {ok.shape}")
        if self.reason is None:
            reason = np.where(ok, "", _DEFAULT_REASON)
        else:
            reason = np.asarray(self.reason, str)
            if reason.shape != shape:
                raise ValueError(f"reason must have shape {shape}, got {reason.shape}")
            if np.any((reason == "") != ok):
                raise ValueError('reason must be "" exactly where ok is True')
        object.__setattr__(self, "ok", ok)
        object.__setattr__(self, "reason", reason)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Leading sample axes (empty for a point estimate)."""
        return tuple(np.shape(self.centre)[:-2])

    def reason_counts(self) -> dict[str, int]:
        """How many entries are not ok, by kind of reason (numbers left out), most common first.

        Examples:
            >>> e = Ellipses.from_matrix(np.zeros((3, 2)), np.eye(2) * [[[1.0]], [[9.0]], [[16.0]]],
            ...                          ok=[True, False, False],
            ...                          reason=["", "half-axis 3 > box width 2 (model units)",
            ...                                  "half-axis 4 > box width 2 (model units)"])
            >>> e.reason_counts()
            {'half-axis larger than the box': 2}
        """
        counts = Counter(_reason_kind(str(r)) for r in self.reason[~self.ok].ravel())
        return dict(counts.most_common())

    def __repr__(self) -> str:
        n_ref, d = self.centre.shape[-2:] if self.centre.ndim >= 2 else (0, self.centre.shape[-1])
        kind = (f"posterior draws {self.sample_shape}" if self.sample_shape
                else "point estimate")
        lines = [f"Ellipses({n_ref} references, input_dim {d}, {kind}"]
        if self.axes.size:
            lines.append(f"  half-axes {self.axes.min():.4g} to {self.axes.max():.4g}")
        lines += ["  " + part for part in self.ok_summary().split("; ")]
        return "\n".join(lines) + ")"

    def ok_summary(self) -> str:
        """One line: how many entries are ok, and the :meth:`reason_counts` of the others.

        Examples:
            >>> Ellipses.from_matrix(np.zeros((2, 2)), np.stack([np.eye(2)] * 2),
            ...                      ok=[True, False]).ok_summary()
            'ok 1/2 references; not ok: 1 fit failed'
        """
        n, n_ok = self.ok.size, int(self.ok.sum())
        what = "draws x references" if self.sample_shape else "references"
        text = f"ok {n_ok}/{n} {what}"
        counts = self.reason_counts()
        if counts:
            text += "; not ok: " + ", ".join(f"{c} {kind}" for kind, c in counts.items())
        return text

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
    def from_matrix(cls, centre: Any, matrix: Any, ok: Any = None, reason: Any = None) -> Ellipses:
        """Build from centres and shape matrices (axes by ``numpy.linalg.eigh``).

        ``ok`` defaults to all True; ``reason`` as in the class docstring.
        """
        centre = np.asarray(centre, np.float64)
        matrix = np.asarray(matrix, np.float64)
        matrix = 0.5 * (matrix + np.swapaxes(matrix, -1, -2))
        w, V = np.linalg.eigh(matrix)
        axes = np.sqrt(np.clip(w[..., ::-1], 0.0, None))
        ok = np.ones(centre.shape[:-1], bool) if ok is None else np.asarray(ok, bool)
        return cls(centre, matrix, axes, V[..., ::-1], ok, reason)

    def to_user(self, normalization: Normalization) -> Ellipses:
        """The same ellipses in the user's units of ``normalization``.

        ``ok`` and ``reason`` are kept: they were decided in model units, and the
        half-axis reason says so.
        """
        return Ellipses.from_matrix(
            normalization.to_user(self.centre), normalization.covariance_to_user(self.matrix),
            self.ok, self.reason,
        )


def fit_ellipses(
    refs: ArrayLike,
    points: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    fit_centre: bool = True,
    check_box: bool = True,
) -> Ellipses:
    """Least-squares ellipses (ellipsoids) through threshold points.

    Fits ``x^T A x + b^T x = 1`` with ``x = point - ref`` (``b = 0`` when
    ``fit_centre`` is False) to the points where ``mask`` is True; see the module
    docstring. The centre is fitted only when every point of a reference is used
    (a conic through points on one side of the reference leaves its centre poorly
    determined); otherwise, or when the full fit is not an ellipse, the centred
    fit (``b = 0``) is used. When even that is impossible (fewer points than
    ``D (D + 1) / 2``) or not an ellipse, the result is a placeholder circle
    through the mean distance. Points that are not finite are not used.

    ``ok`` is False, with a ``reason``, where fewer than half of the points are
    used (``mask`` marks the directions that reached the target), where no
    ellipse could be fitted, or (``check_box``) where a half-axis is longer than
    the model box is wide (2); see the module docstring.

    Args:
        refs: Reference points, shape ``(*S, R, D)`` (or ``(R, D)``, broadcast).
        points: Threshold points, shape ``(*S, R, K, D)``.
        mask: Which points to use: the directions that reached the target,
            shape ``(*S, R, K)`` (default: all).
        fit_centre: Let the centre differ from the reference.
        check_box: Flag half-axes longer than the box width 2. The points must
            then be in model units; pass False for points in other units.

    Returns:
        :class:`Ellipses` with leading shape ``(*S, R)``.

    Raises:
        ValueError: If ``points`` has fewer than 3 axes.

    Examples:
        >>> t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        >>> pts = np.stack([0.3 * np.cos(t), 0.1 * np.sin(t)], -1)[None]
        >>> e = fit_ellipses(np.zeros((1, 2)), pts)
        >>> e.axes.round(6).tolist(), bool(e.ok[0]), str(e.reason[0])
        ([[0.3, 0.1]], True, '')
        >>> e = fit_ellipses(np.zeros((1, 2)), pts, mask=[[1, 1, 1, 0, 0, 0, 0, 0]])
        >>> bool(e.ok[0]), str(e.reason[0])
        (False, '3/8 directions reached the target (need 4)')
        >>> e = fit_ellipses(np.zeros((1, 2)), 15 * pts)
        >>> bool(e.ok[0]), str(e.reason[0])
        (False, 'half-axis 4.5 > box width 2 (model units)')
    """
    points = np.asarray(points, np.float64)
    if points.ndim < 3:
        raise ValueError(f"points must have shape (*S, R, K, D), got {points.shape}")
    k, d = points.shape[-2:]
    refs = np.broadcast_to(np.asarray(refs, np.float64), points.shape[:-2] + (d,))
    x = points - refs[..., None, :]
    used = np.ones(points.shape[:-1], bool) if mask is None else np.asarray(mask, bool)
    finite = np.all(np.isfinite(x), axis=-1)
    used = np.broadcast_to(used, points.shape[:-1]) & finite
    x = np.where(finite[..., None], x, 0.0)
    w = used.astype(np.float64)
    iu = np.triu_indices(d)
    quad = x[..., iu[0]] * x[..., iu[1]] * np.where(iu[0] == iu[1], 1.0, 2.0)
    n_quad = quad.shape[-1]
    feats = np.concatenate([quad, x], axis=-1) if fit_centre else quad
    n_used = used.sum(-1)

    def solve(F: np.ndarray) -> np.ndarray:
        G = np.einsum("...ki,...k,...kj->...ij", F, w, F)
        h = np.einsum("...ki,...k->...i", F, w)
        return np.einsum("...ij,...j->...i", np.linalg.pinv(G), h)

    def to_ellipse(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        A = np.zeros(theta.shape[:-1] + (d, d))
        A[..., iu[0], iu[1]] = theta[..., :n_quad]
        A[..., iu[1], iu[0]] = theta[..., :n_quad]
        finite = np.all(np.isfinite(theta), axis=-1)
        A = np.where(finite[..., None, None], A, np.eye(d))
        evals = np.linalg.eigvalsh(A)
        pd = finite & (evals[..., 0] > 0)
        A_safe = np.where(pd[..., None, None], A, np.eye(d))
        Ainv = np.linalg.inv(A_safe)
        if theta.shape[-1] > n_quad:
            b = np.where(pd[..., None], theta[..., n_quad:], 0.0)
            c = -0.5 * np.einsum("...ij,...j->...i", Ainv, b)
        else:
            c = np.zeros(theta.shape[:-1] + (d,))
        level = 1.0 + np.einsum("...i,...ij,...j->...", c, A_safe, c)
        M = level[..., None, None] * Ainv
        ok = pd & (level > 0) & np.all(np.isfinite(M), axis=(-2, -1)) & np.all(np.isfinite(c), axis=-1)
        return c, M, ok

    c_full, M_full, ok_full = to_ellipse(solve(feats))
    # The centre is only well determined by points all round the reference.
    ok_full &= (n_used >= feats.shape[-1]) & (n_used == k) & fit_centre
    c_cent, M_cent, ok_cent = to_ellipse(solve(quad))
    ok_cent &= n_used >= n_quad
    dist = np.linalg.norm(x, axis=-1)
    mean_r = np.where(n_used > 0, (dist * w).sum(-1) / np.maximum(n_used, 1), dist.mean(-1))
    M_circ = mean_r[..., None, None] ** 2 * np.eye(d)
    use_full = ok_full[..., None, None]
    use_cent = (~ok_full & ok_cent)[..., None, None]
    M = np.where(use_full, M_full, np.where(use_cent, M_cent, M_circ))
    c = np.where(use_full[..., 0], c_full, np.where(use_cent[..., 0], c_cent, 0.0))

    # Why an entry is not ok: the first that applies of too few directions, no
    # ellipse, a half-axis wider than the box (module docstring).
    fitted = ok_full | ok_cent
    need = max((k + 1) // 2, n_quad)
    enough = n_used >= need
    largest = np.sqrt(np.clip(np.linalg.eigvalsh(M)[..., -1], 0.0, None))
    too_big = fitted & (largest > _BOX_WIDTH) if check_box else np.zeros_like(fitted)
    ok = enough & fitted & ~too_big
    reason = np.full(ok.size, "", dtype=object)
    flat_n, flat_big = n_used.ravel(), largest.ravel()
    for i in np.flatnonzero(~enough):
        reason[i] = f"{flat_n[i]}/{k} directions reached the target (need {need})"
    for i in np.flatnonzero(enough & ~fitted):
        reason[i] = "conic not an ellipse"
    for i in np.flatnonzero(enough & fitted & too_big):
        size = f"{flat_big[i]:.3g}"
        if float(size) <= _BOX_WIDTH:  # e.g. 2.0004: show enough digits to be > 2
            size = f"{flat_big[i]:.8g}"
        reason[i] = f"half-axis {size} > box width {_BOX_WIDTH:g} (model units)"
    reason = reason.astype(str).reshape(ok.shape)
    return Ellipses.from_matrix(refs + c, M, ok, reason)
