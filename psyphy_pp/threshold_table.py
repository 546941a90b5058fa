"""The result table of :func:`~psyphy_pp.thresholds`: threshold distances, points and ellipses.

A :class:`Thresholds` holds the threshold distance along each direction at each
reference point (with optional leading sample axes for posterior draws), whether
the target was reached inside the box, and the :class:`~psyphy_pp.Ellipses`
fitted through the threshold points. It summarises posterior draws (credible
bands, the median), maps everything to the user's units of a
:class:`~psyphy_pp.Normalization`, and writes one row per reference (or per
reference and direction) as a table or CSV file.

Each reference's row says whether its ellipse can be trusted: ``ellipse_ok`` is
0, and ``ellipse_reason`` says why, when fewer than half of the directions
reached the target inside the box, when the least-squares conic is not an
ellipse, or when a half-axis is longer than the model box is wide (2 model
units); see :mod:`psyphy_pp.ellipses`. The reasons are decided in model units
and keep their wording in user units (the half-axis reason says "model units").
"""

from __future__ import annotations

__all__ = ["DEFAULT_TARGET", "Thresholds"]

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from psyphy_pp._csv import write_columns
from psyphy_pp.ellipses import Ellipses, fit_ellipses
from psyphy_pp.normalization import Normalization

#: The usual oddity criterion: halfway between chance (1/3) and certainty.
DEFAULT_TARGET = 2.0 / 3.0


@dataclass(frozen=True, repr=False)
class Thresholds:
    """Threshold distances and points along fixed directions, with fitted ellipses.

    Leading axes ``(*S, R, K)``: optional sample axes (posterior draws), then
    references, then directions.

    Attributes:
        refs: Reference points, shape ``(R, D)``.
        directions: Unit directions, shape ``(K, D)``, the same at every reference.
        distances: Threshold distances ``s``, shape ``(*S, R, K)``. Where
            ``reached`` is False this is the distance to the box edge (a lower
            bound for the threshold), not NaN.
        reached: True where P(correct) reaches the target inside the box.
        monotone: True where P(correct) rose monotonically (within
            ``monotone_tol``) on the search grid.
        max_distances: Distance from each reference to the box edge along each
            direction, shape ``(R, K)``.
        ellipses: The fitted :class:`Ellipses`, leading shape ``(*S, R)``.
        target: The target P(correct).
        normalization: The units: None for model units, or the
            :class:`~psyphy_pp.Normalization` whose user units these are.
    """

    refs: np.ndarray
    directions: np.ndarray
    distances: np.ndarray
    reached: np.ndarray
    monotone: np.ndarray
    max_distances: np.ndarray
    ellipses: Ellipses
    target: float = DEFAULT_TARGET
    normalization: Normalization | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Leading sample axes (empty for a point estimate)."""
        return self.distances.shape[:-2]

    @property
    def points(self) -> np.ndarray:
        """Threshold points ``refs + distances * directions``, shape ``(*S, R, K, D)``."""
        return self.refs[:, None, :] + self.distances[..., None] * self.directions

    @property
    def input_dim(self) -> int:
        """Stimulus dimension ``D``."""
        return self.refs.shape[-1]

    def __repr__(self) -> str:
        (r, k), d = self.distances.shape[-2:], self.input_dim
        kind = (f"posterior draws {self.sample_shape}" if self.sample_shape
                else "point estimate")
        if self.normalization is None:
            units = "model units"
        else:
            names = self.normalization.names
            units = "user units" + (f" ({', '.join(names)})" if names else "")
        reached = float(self.reached.mean()) if self.reached.size else 0.0
        lines = [
            f"Thresholds({r} references x {k} directions, input_dim {d}, "
            f"target P(correct) {self.target:.4g}",
            f"  {kind}, {units}",
            f"  reached inside the box: {reached:.1%} of thresholds",
        ]
        lines += [f"  {part}" for part in ("ellipses " + self.ellipses.ok_summary()).split("; ")]
        return "\n".join(lines) + ")"

    def _sample_axes(self) -> tuple[int, ...]:
        if not self.sample_shape:
            raise ValueError(
                "these thresholds have no sample axes (a point estimate); pass params with "
                "posterior draws, e.g. {'W': samples['W']} of shape (chains, draws, ...)"
            )
        return tuple(range(len(self.sample_shape)))

    def band(self, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Equal-tailed credible band of each threshold distance over the draws.

        Args:
            prob: Probability mass inside the band, in ``(0, 1)``.

        Returns:
            ``(lower, median, upper)`` distances, each of shape ``(R, K)``.

        Raises:
            ValueError: If there are no sample axes, or ``prob`` is not in ``(0, 1)``.
        """
        if not 0.0 < prob < 1.0:
            raise ValueError(f"prob must be in (0, 1), got {prob!r}")
        axes = self._sample_axes()
        q = np.quantile(self.distances, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=axes)
        return q[0], q[1], q[2]

    def fraction_reached(self) -> np.ndarray:
        """Fraction of draws in which each threshold was reached, shape ``(R, K)``."""
        if not self.sample_shape:
            return self.reached.astype(np.float64)
        return self.reached.mean(axis=self._sample_axes())

    def median(self) -> Thresholds:
        """Point summary of posterior thresholds: median distance per direction.

        Its ellipses are fitted to the median points; ``reached`` is True where
        the threshold was reached in at least half of the draws. The fit (and
        its ``ok`` check) is made in model units, also for thresholds in user
        units.
        """
        _, med, _ = self.band(0.5)
        reached = self.fraction_reached() >= 0.5
        monotone = self.monotone.all(axis=self._sample_axes())
        pts = self.refs[:, None, :] + med[..., None] * self.directions
        norm = self.normalization
        if norm is None:
            ell = fit_ellipses(self.refs, pts, mask=reached)
        else:  # the conic fit is affine-equivariant; the box check needs model units
            ell = fit_ellipses(norm.to_model(self.refs), norm.to_model(pts),
                               mask=reached).to_user(norm)
        return dataclasses.replace(self, distances=med, reached=reached, monotone=monotone,
                                   ellipses=ell)

    def to_user(self, normalization: Normalization | None) -> Thresholds:
        """The thresholds in the user's units of ``normalization``.

        Points and ellipses are mapped by the affine normalisation; a direction
        ``e`` becomes ``diag(scale) e / |diag(scale) e|`` and a distance ``s``
        becomes ``s |diag(scale) e|``. ``None`` returns ``self`` unchanged.

        Raises:
            ValueError: If the thresholds are already in user units.
        """
        if normalization is None:
            return self
        if self.normalization is not None:
            raise ValueError("these thresholds are already in user units")
        if normalization.input_dim != self.input_dim:
            raise ValueError(
                f"normalization must have input_dim {self.input_dim}, got {normalization.input_dim}"
            )
        stretched = self.directions * normalization.scale
        length = np.linalg.norm(stretched, axis=-1)
        return Thresholds(
            refs=normalization.to_user(self.refs),
            directions=stretched / length[..., None],
            distances=self.distances * length,
            reached=self.reached,
            monotone=self.monotone,
            max_distances=self.max_distances * length,
            ellipses=self.ellipses.to_user(normalization),
            target=self.target,
            normalization=normalization,
        )

    def table(self, prob: float = 0.9) -> dict[str, np.ndarray]:
        """One row per reference: the ellipse summary as named columns.

        Columns: ``ref_j``, ``centre_j``, ``axis_j`` (half-axis lengths, major
        first), ``angle_deg`` (2D only; major axis from the first stimulus axis),
        ``axisdir_i_j`` (component ``j`` of principal direction ``i``, D != 2),
        ``num_reached`` (directions reaching the target), ``monotone``,
        ``ellipse_ok`` (1 where the ellipse can be trusted) and
        ``ellipse_reason`` (``""`` where ok, else why not, e.g.
        ``"4/16 directions reached the target (need 8)"``; see
        :mod:`psyphy_pp.ellipses`); for posterior draws the point columns
        describe the ellipse through the median thresholds, and
        ``axis_j_lower`` / ``axis_j_upper`` give the ``prob`` credible band of
        each half-axis over the per-draw ellipses.
        """
        point = self.median() if self.sample_shape else self
        e = point.ellipses
        d = self.input_dim
        cols: dict[str, np.ndarray] = {}
        for j in range(d):
            cols[f"ref_{j}"] = self.refs[:, j]
        for j in range(d):
            cols[f"centre_{j}"] = e.centre[:, j]
        for j in range(d):
            cols[f"axis_{j}"] = e.axes[:, j]
        if d == 2:
            cols["angle_deg"] = np.degrees(e.angle)
        else:
            for i in range(d):
                for j in range(d):
                    cols[f"axisdir_{i}_{j}"] = e.rotation[:, j, i]
        if self.sample_shape:
            axes = self._sample_axes()
            lo, hi = np.quantile(self.ellipses.axes, [(1 - prob) / 2, (1 + prob) / 2], axis=axes)
            for j in range(d):
                cols[f"axis_{j}_lower"] = lo[:, j]
                cols[f"axis_{j}_upper"] = hi[:, j]
        cols["num_reached"] = point.reached.sum(-1).astype(np.int64)
        cols["monotone"] = point.monotone.all(-1).astype(np.int64)
        cols["ellipse_ok"] = e.ok.astype(np.int64)
        cols["ellipse_reason"] = e.reason
        return cols

    def points_table(self, prob: float = 0.9) -> dict[str, np.ndarray]:
        """One row per (reference, direction): ``ref_j``, ``dir_j``, ``distance``,
        ``point_j``, ``reached``, ``monotone`` (and ``distance_lower`` /
        ``distance_upper`` for posterior draws, the ``prob`` credible band)."""
        point = self.median() if self.sample_shape else self
        r, (k, d) = self.refs.shape[0], self.directions.shape
        cols: dict[str, np.ndarray] = {}
        for j in range(d):
            cols[f"ref_{j}"] = np.repeat(self.refs[:, j], k)
        for j in range(d):
            cols[f"dir_{j}"] = np.tile(self.directions[:, j], r)
        cols["distance"] = point.distances.reshape(-1)
        if self.sample_shape:
            lo, _, hi = self.band(prob)
            cols["distance_lower"] = lo.reshape(-1)
            cols["distance_upper"] = hi.reshape(-1)
        pts = point.points.reshape(-1, d)
        for j in range(d):
            cols[f"point_{j}"] = pts[:, j]
        cols["reached"] = point.reached.reshape(-1).astype(np.int64)
        cols["monotone"] = point.monotone.reshape(-1).astype(np.int64)
        return cols

    def to_csv(self, path: str | os.PathLike, *, points: bool = False, prob: float = 0.9,
               overwrite: bool = False) -> None:
        """Write :meth:`table` (or :meth:`points_table` if ``points``) as CSV, full precision.

        Args:
            path: The CSV file to write.
            points: Write one row per (reference, direction) instead of per reference.
            prob: Probability mass of the credible bands (posterior draws only).
            overwrite: Replace ``path`` if it exists.

        Raises:
            FileExistsError: If ``path`` exists and ``overwrite`` is False.
        """
        write_columns(path, self.points_table(prob) if points else self.table(prob),
                      overwrite=overwrite)
