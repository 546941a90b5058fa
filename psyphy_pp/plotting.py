"""Matplotlib figures: covariance and threshold ellipse fields, psychometric and loss curves.

Functions draw on a given ``Axes`` (or a new figure) and return the figure;
nothing here calls ``plt.show``. matplotlib is imported lazily.
"""

from __future__ import annotations

__all__ = [
    "plot_ellipse_field",
    "plot_losses",
    "plot_fit_comparison",
    "THRESHOLD_SCALE_2D",
    "plot_threshold_field",
    "display_scale",
    "plot_psychometric_curves",
    "plot_posterior_ellipses",
    "plot_trace",
    "plot_rank",
    "plot_calibration",
]

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from psyphy_pp._typing import ArrayLike, Params
from psyphy_pp.model import WPPM

if TYPE_CHECKING:
    from psyphy_pp.diagnostics import FitComparison
    from psyphy_pp.goodness import GoodnessOfFit

#: For isotropic noise, the 2/3-correct oddity threshold lies ~2.554 sigma away (2D).
THRESHOLD_SCALE_2D = 2.554


def plot_ellipse_field(
    model: WPPM,
    params: Params,
    points: ArrayLike,
    *,
    ax: Any = None,
    scale: float = THRESHOLD_SCALE_2D,
    **ellipse_kwargs: Any,
) -> Any:
    """Draw ``scale``-sigma ellipses of ``Sigma(x)`` at 2D ``points``.

    With the default ``scale`` the ellipses approximate the 2/3-correct
    oddity thresholds.

    Args:
        model: A 2D :class:`~psyphy_pp.WPPM`.
        params: ``{"W": W}``.
        points: Centres, shape ``(G, 2)``.
        ax: Axes to draw on (a new figure if None).
        scale: Ellipse radius in units of the noise standard deviation.
        **ellipse_kwargs: Passed to ``matplotlib.patches.Ellipse``
            (e.g. ``edgecolor``, ``linestyle``, ``label``).

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    from psyphy_pp.ellipses import Ellipses

    if model.input_dim != 2:
        raise ValueError(f"plot_ellipse_field needs input_dim == 2, got {model.input_dim}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    points = np.asarray(points, np.float64)
    ellipses = Ellipses.from_matrix(points, np.asarray(model.covariance(params, points), np.float64))
    radii, angles = ellipses.axes, np.degrees(ellipses.angle)
    style = dict(facecolor="none", edgecolor="k", linewidth=1.0) | ellipse_kwargs
    label = style.pop("label", None)
    for i, (p, r, a) in enumerate(zip(points, radii, angles)):
        ax.add_patch(Ellipse(p, 2 * scale * r[0], 2 * scale * r[1], angle=a,
                             label=label if i == 0 else None, **style))
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("stimulus dimension 1")
    ax.set_ylabel("stimulus dimension 2")
    return ax.figure


def plot_losses(
    results: Sequence[Any], *, labels: Sequence[str] | None = None, ax: Any = None
) -> Any:
    """Loss curves of MAP fits (anything with ``.losses``) on one axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    labels = labels or [getattr(r, "method", f"fit {i}") for i, r in enumerate(results)]
    for r, label in zip(results, labels):
        ax.plot(np.asarray(r.losses), label=label, alpha=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative log posterior per trial)")
    ax.legend()
    return ax.figure


def plot_calibration(gof: GoodnessOfFit, *, ax: Any = None) -> Any:
    """Observed against predicted proportion correct, from :func:`~psyphy_pp.goodness_of_fit`.

    Black: bins of predicted P(correct), with the binomial intervals of the
    observed proportion; grey: the reference groups (red where the interval
    misses the prediction). The diagonal is a perfect fit; the title gives the
    deviance test.

    Args:
        gof: A :class:`~psyphy_pp.GoodnessOfFit`.
        ax: Axes to draw on (default: a new figure).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    ref = gof.by_reference
    for miss, colour, label in ((False, "0.6", "reference groups"), (True, "tab:red", "misses")):
        sel = ref.outside == miss
        if sel.any():
            ax.errorbar(ref.predicted[sel], ref.observed[sel],
                        yerr=[ref.observed[sel] - ref.lower[sel], ref.upper[sel] - ref.observed[sel]],
                        fmt="o", ms=3, color=colour, alpha=0.6, lw=0.8,
                        label=f"{label} ({gof.grouping})" if not miss else
                        f"{int(sel.sum())} reference groups missing the prediction")
    b = gof.by_bin
    ax.errorbar(b.predicted, b.observed, yerr=[b.observed - b.lower, b.upper - b.observed],
                fmt="s", ms=5, color="k", capsize=3, label="bins of predicted P(correct)")
    ax.plot([1 / 3, 1], [1 / 3, 1], color="0.3", ls="--", lw=1)
    ax.set_xlim(0.3, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("predicted P(correct)")
    ax.set_ylabel(f"observed proportion correct ({gof.level:.0%} interval)")
    ax.set_title(f"deviance {gof.deviance:.1f} over {gof.num_cells} cells, "
                 f"p = {gof.p_value:.3g}\n({gof.method})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return ax.figure


def plot_fit_comparison(comparison: FitComparison) -> Any:
    """Loss traces, per-step loss difference and the field difference on the grid.

    The figure of :meth:`psyphy_pp.FitComparison.plot`: the two loss traces, their
    relative per-step difference against ``loss_rtol``, and the relative
    Frobenius difference of ``Sigma`` at each grid point (a scatter over the
    plane in 2D, a histogram otherwise).

    Args:
        comparison: The report of :func:`~psyphy_pp.compare_fits`.

    Returns:
        A matplotlib ``Figure`` with three panels.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for trace, label in zip(comparison.losses, comparison.labels):
        if trace is not None:
            ax.plot(trace, label=label, alpha=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per trial)")
    ax.set_title("loss traces")
    if any(t is not None for t in comparison.losses):
        ax.legend()
    ax = axes[1]
    floor = 1e-12
    if comparison.loss_diff is not None:
        # loss_diff is set only when both fits have a loss trace.
        loss_b = comparison.losses[1]
        rel = np.abs(comparison.loss_diff) / np.maximum(np.abs(loss_b), 1e-300)  # type: ignore[arg-type]
        ax.semilogy(np.maximum(rel, floor), color="k", label="relative difference")
        ax.axhline(comparison.loss_rtol, color="tab:red", linestyle="--", label="tolerance")
        ax.set_ylim(floor / 2, max(10 * comparison.loss_rtol, 2 * float(np.max(rel))))
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no common loss trace", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel(f"|a - b| / |b| (exact zeros shown at {floor:g})")
    ax.set_title(f"per-step loss difference, a = {comparison.labels[0]}, b = {comparison.labels[1]}")
    ax = axes[2]
    if comparison.grid.shape[1] == 2:
        sc = ax.scatter(comparison.grid[:, 0], comparison.grid[:, 1], c=comparison.relative_frobenius,
                        cmap="viridis", s=60, vmin=0.0,
                        vmax=max(float(np.max(comparison.relative_frobenius)), comparison.sigma_rtol))
        fig.colorbar(sc, ax=ax, label="relative Frobenius difference of Sigma")
        ax.set_aspect("equal")
        ax.set_xlabel("stimulus dimension 1")
        ax.set_ylabel("stimulus dimension 2")
    else:
        ax.hist(comparison.relative_frobenius, bins=30, color="0.4")
        ax.set_xlabel("relative Frobenius difference of Sigma")
        ax.set_ylabel("grid points")
    ax.set_title(f"Sigma field: {'agree' if comparison.agree else 'disagree'}")
    fig.tight_layout()
    return fig


def _box_limits(normalization: Any, d: int) -> list[tuple[float, float]]:
    """Axis limits of the stimulus box (model or user units), padded by 5%."""
    if normalization is None:
        return [(-1.1, 1.1)] * d
    out = []
    for lo, hi in zip(normalization.low, normalization.high):
        pad = 0.05 * (hi - lo)
        out.append((lo - pad, hi + pad))
    return out


def _axis_labels(normalization: Any, d: int) -> list[str]:
    if normalization is None:
        return [f"stimulus dimension {j + 1}" for j in range(d)]
    return normalization.axis_labels()


def _ring_path(centre: np.ndarray, dirs: np.ndarray, inner: np.ndarray, outer: np.ndarray) -> Any:
    """A closed ring between two star-shaped polygons around ``centre``."""
    from matplotlib.path import Path

    order = np.argsort(np.arctan2(dirs[:, 1], dirs[:, 0]))
    out_pts = centre + outer[order, None] * dirs[order]
    in_pts = (centre + inner[order, None] * dirs[order])[::-1]
    verts = np.concatenate([out_pts, out_pts[:1], in_pts, in_pts[:1]])
    n_out, n_in = len(out_pts), len(in_pts)
    codes = ([Path.MOVETO] + [Path.LINETO] * (n_out - 1) + [Path.CLOSEPOLY]
             + [Path.MOVETO] + [Path.LINETO] * (n_in - 1) + [Path.CLOSEPOLY])
    return Path(verts, codes)


def display_scale(thresholds: Any, fill: float = 0.45) -> float:
    """A drawing scale at which neighbouring threshold ellipses do not overlap.

    The scale is the largest "nice" number (1, 2 or 5 times a power of ten) at
    which the reached threshold points of 90% of the references stay within
    ``fill`` times the distance to the nearest other reference, measured
    relative to the stimulus box along each axis. It may be above 1 (small
    thresholds, drawn enlarged) or below 1.

    Args:
        thresholds: :class:`~psyphy_pp.Thresholds` (a posterior is judged by its medians).
        fill: Fraction of the nearest-neighbour distance an ellipse may reach.

    Returns:
        The scale (1.0 with fewer than two references or nothing reached).
    """
    th = thresholds.median() if thresholds.sample_shape else thresholds
    refs = np.asarray(th.refs, np.float64)
    if refs.shape[0] < 2:
        return 1.0
    size = np.asarray([hi - lo for lo, hi in _box_limits(th.normalization, refs.shape[1])])
    r = refs / size
    dist = np.linalg.norm(r[:, None] - r[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    spacing = dist.min(axis=1)
    reach = np.linalg.norm(th.distances[..., None] * th.directions / size, axis=-1)
    reach = np.where(th.reached, reach, 0.0).max(axis=1)  # (R,)
    ok = reach > 0
    if not ok.any():
        return 1.0
    raw = float(np.quantile(fill * spacing[ok] / reach[ok], 0.1))
    exponent = np.floor(np.log10(raw))
    mantissa = raw / 10**exponent
    nice = max(m for m in (1.0, 2.0, 5.0) if m <= mantissa + 1e-12)
    return float(nice * 10**exponent)


def _scale_about(refs: np.ndarray, pts: np.ndarray, scale: float) -> np.ndarray:
    """Points ``pts`` (``(R, ..., D)``) moved towards their reference by ``scale``."""
    shape = (refs.shape[0],) + (1,) * (pts.ndim - 2) + (refs.shape[1],)
    r = refs.reshape(shape)
    return r + scale * (pts - r)


def plot_threshold_field(
    thresholds: Any,
    *,
    truth: Any = None,
    ax: Any = None,
    prob: float = 0.9,
    show_points: bool = True,
    color: str = "k",
    truth_color: str = "tab:red",
    band_color: str = "tab:blue",
    label: str | None = None,
    truth_label: str = "truth",
    scale: float | str = "auto",
) -> Any:
    """Threshold ellipses over the stimulus plane: fit, truth and posterior band (2D).

    For a point estimate, each reference gets its fitted ellipse and (with
    ``show_points``) its threshold points; directions where the target was not
    reached inside the box are marked with a grey ``x`` at the box edge. For
    posterior draws, each reference gets the ``prob`` credible band of the
    threshold distance along every direction (a shaded ring) and the ellipse
    through the median thresholds. The units are those of ``thresholds``
    (see :meth:`~psyphy_pp.Thresholds.to_user`).

    Every ellipse, band and threshold point is drawn ``scale`` times its size
    about its reference point (the title says so when the scale is not 1), so
    that neighbouring references stay apart; the reference points themselves
    and the axes are not scaled.

    Args:
        thresholds: :class:`~psyphy_pp.Thresholds` (2D), with or without sample axes.
        truth: Optional ground-truth :class:`~psyphy_pp.Thresholds`, drawn dashed.
        ax: Axes to draw on (a new figure if None).
        prob: Mass of the credible band.
        show_points: Draw the threshold points of a point estimate.
        color: Colour of the fitted ellipses.
        truth_color: Colour of the truth's ellipses.
        band_color: Colour of the credible band.
        label: Legend label of the fit (default ``"fit"`` or ``"posterior median"``).
        truth_label: Legend label of the truth.
        scale: Drawing scale of the ellipses: ``"auto"`` (:func:`display_scale`,
            so that neighbours do not overlap) or a positive number (1: true size).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: If the thresholds are not 2D, or ``scale`` is neither
            ``"auto"`` nor a positive number.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse, PathPatch

    if thresholds.input_dim != 2:
        raise ValueError(f"plot_threshold_field needs input_dim 2, got {thresholds.input_dim}")
    if scale == "auto":
        scale = display_scale(thresholds)
    elif isinstance(scale, str) or not (isinstance(scale, (int, float)) and scale > 0
                                        and np.isfinite(scale)):
        raise ValueError(f"scale must be 'auto' or a positive number, got {scale!r}")
    scale = float(scale)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    posterior = bool(thresholds.sample_shape)
    point = thresholds.median() if posterior else thresholds
    label = label or ("posterior median" if posterior else "fit")

    def draw_ellipses(th: Any, edgecolor: str, lab: str, **style: Any) -> None:
        e = th.ellipses
        angles = np.degrees(e.angle)
        centres = _scale_about(th.refs, e.centre, scale)
        for i in range(e.centre.shape[0]):
            ax.add_patch(Ellipse(centres[i], 2 * scale * e.axes[i, 0], 2 * scale * e.axes[i, 1],
                                 angle=angles[i], facecolor="none", edgecolor=edgecolor,
                                 label=lab if i == 0 else None, **style))

    if posterior:
        lo, _, hi = thresholds.band(prob)
        for i in range(thresholds.refs.shape[0]):
            path = _ring_path(thresholds.refs[i], thresholds.directions, scale * lo[i],
                              scale * hi[i])
            ax.add_patch(PathPatch(path, facecolor=band_color, edgecolor="none", alpha=0.35,
                                   label=f"{prob:.0%} credible band" if i == 0 else None))
    draw_ellipses(point, color, label, linewidth=1.2)
    if show_points and not posterior:
        pts = _scale_about(point.refs, point.points, scale).reshape(-1, 2)
        reached = point.reached.reshape(-1)
        ax.plot(pts[reached, 0], pts[reached, 1], ".", color=color, markersize=3)
        if (~reached).any():
            ax.plot(pts[~reached, 0], pts[~reached, 1], "x", color="0.5", markersize=4,
                    label="target not reached in the box")
    if truth is not None:
        truth_point = truth.median() if truth.sample_shape else truth
        draw_ellipses(truth_point, truth_color, truth_label, linestyle="--", linewidth=1.2)
    ax.plot(thresholds.refs[:, 0], thresholds.refs[:, 1], "+", color="0.3", markersize=5)
    (x0, x1), (y0, y1) = _box_limits(thresholds.normalization, 2)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    if thresholds.normalization is None:
        ax.set_aspect("equal")
    xl, yl = _axis_labels(thresholds.normalization, 2)
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    drawn = "" if scale == 1 else f"\n(ellipses drawn at {scale:g}x their size about each reference)"
    ax.set_title(f"thresholds at P(correct) = {thresholds.target:.3g}{drawn}")
    ax.legend(loc="upper right", fontsize="small")
    return ax.figure


def plot_psychometric_curves(
    model: WPPM,
    params: Params,
    refs: ArrayLike,
    directions: ArrayLike,
    *,
    distances: ArrayLike | None = None,
    target: float = 2.0 / 3.0,
    normalization: Any = None,
    prob: float = 0.9,
    task: Any = None,
    axes: Any = None,
) -> Any:
    """Psychometric functions: P(correct) against distance along chosen directions.

    One panel per reference, one curve per direction; for posterior draws
    (``params["W"]`` with leading sample axes) the curve is the median and the
    shaded area the ``prob`` credible band. A dashed line marks the target; a
    curve crosses it at the threshold. Each curve stops where the comparison
    would leave the stimulus box.

    Args:
        model: The model.
        params: ``{"W": W}``, optionally with leading sample axes.
        refs: References in model units, shape ``(R, D)``.
        directions: Directions in model units, shape ``(K, D)``.
        distances: Distances in model units, shape ``(G,)`` (default: 61 points
            up to about twice the largest isotropic threshold at ``refs``).
        target: The threshold criterion to mark.
        normalization: Show distances in the user's units of this
            :class:`~psyphy_pp.Normalization` (distance ``s |diag(scale) e|``).
        prob: Mass of the credible band.
        task: Deterministic likelihood (default:
            :func:`~psyphy_pp.thresholds.threshold_task` of the model's).
        axes: A sequence of ``R`` axes to draw on (a new figure if None).

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    from psyphy_pp.designs import box_distances
    from psyphy_pp.thresholds import psychometric_curves

    refs = np.asarray(refs, np.float64)
    dirs = np.asarray(directions, np.float64)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    W, sample_shape = model.weight_samples(params)
    if distances is None:
        W0 = W.reshape((-1,) + model.weights_shape)[0]
        S = np.asarray(model.covariance({"W": W0}, refs), np.float64)
        sigma = np.sqrt(np.max(np.linalg.eigvalsh(S)))
        distances = np.linspace(0.0, min(2.0, 2.0 * THRESHOLD_SCALE_2D * sigma), 61)
    s = np.asarray(distances, np.float64)
    p = psychometric_curves(model, params, refs, dirs, s, task=task)  # (*S, R, K, G)
    if sample_shape:
        axes_s = tuple(range(len(sample_shape)))
        lo, med, hi = np.quantile(p, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=axes_s)
    else:
        lo = med = hi = p
    if axes is None:
        _, axes = plt.subplots(1, len(refs), figsize=(4 * len(refs), 3.6), squeeze=False,
                               sharey=True)
        axes = axes[0]
    inside = s <= box_distances(refs, dirs)[..., None] + 1e-12  # (R, K, G)
    scale = np.ones(dirs.shape[1]) if normalization is None else normalization.scale
    stretch = np.linalg.norm(dirs * scale, axis=1)
    units = "model units" if normalization is None else "user units"
    ref_shown = refs if normalization is None else normalization.to_user(refs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ax in enumerate(axes):
        for k in range(dirs.shape[0]):
            c = colors[k % len(colors)]
            x = s * stretch[k]
            if dirs.shape[1] == 2:
                name = f"{np.degrees(np.arctan2(dirs[k, 1], dirs[k, 0])):.0f}°"
            else:
                name = "(" + ", ".join(f"{v:.2f}" for v in dirs[k]) + ")"
            keep = inside[i, k]  # stop where the comparison leaves the box
            ax.plot(x[keep], med[i, k][keep], color=c, label=f"direction {name}")
            if sample_shape:
                ax.fill_between(x[keep], lo[i, k][keep], hi[i, k][keep], color=c, alpha=0.25,
                                linewidth=0)
        ax.axhline(target, color="0.4", linestyle="--", linewidth=1)
        ax.axhline(1.0 / 3.0, color="0.7", linestyle=":", linewidth=1)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel(f"distance from the reference ({units})")
        ax.set_title("reference (" + ", ".join(f"{v:.3g}" for v in ref_shown[i]) + ")")
    axes[0].set_ylabel("P(correct)")
    axes[0].legend(fontsize="small", loc="lower right")
    return axes[0].figure


def plot_posterior_ellipses(
    fit: Any,
    points: ArrayLike | None = None,
    *,
    prob: float = 0.9,
    truth: Params | None = None,
    ax: Any = None,
    scale: float = THRESHOLD_SCALE_2D,
    num_directions: int = 90,
    color: str = "k",
    band_color: str = "tab:blue",
    truth_color: str = "tab:red",
) -> Any:
    """Ellipses of the posterior-mean ``Sigma(x)`` with posterior ellipse bands (2D).

    Along every direction ``e`` from a point ``x``, the ellipse of ``Sigma``
    reaches ``scale / sqrt(e^T Sigma^-1 e)``. The shaded ring spans the
    equal-tailed ``prob`` credible interval of that radius over the posterior
    draws, direction by direction; the solid curve is the ellipse of the
    posterior mean of ``Sigma``. With the default ``scale`` the ellipses
    approximate the 2/3-correct oddity thresholds. A MAP fit (one draw) gives
    a ring of zero width.

    Args:
        fit: A :class:`~psyphy_pp.NutsResult`, a :class:`~psyphy_pp.MapResult`
            or an InferenceData from :func:`~psyphy_pp.to_arviz` (2D model).
        points: Centres, shape ``(P, 2)``; default: the data's reference points.
        prob: Mass of the band.
        truth: Optional ground-truth ``{"W": W}``, drawn dashed.
        ax: Axes to draw on (a new figure if None).
        scale: Ellipse radius in units of the noise standard deviation.
        num_directions: Directions per ellipse.
        color: Colour of the posterior-mean ellipses.
        band_color: Colour of the credible band.
        truth_color: Colour of the truth's ellipses.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: If the model is not 2D.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import PathPatch

    from psyphy_pp import field as _field
    from psyphy_pp.arviz_io import sigma_draws, weights_and_field

    _, diag_term, input_dim, ref_points = weights_and_field(fit)
    if input_dim != 2:
        raise ValueError(f"plot_posterior_ellipses needs input_dim == 2, got {input_dim}")
    points = ref_points if points is None else np.asarray(points, np.float64)
    S = sigma_draws(fit, points).astype(np.float64)
    S = S.reshape((-1,) + S.shape[2:])  # (draws, P, 2, 2)
    t = np.linspace(0.0, 2 * np.pi, num_directions, endpoint=False)
    dirs = np.stack([np.cos(t), np.sin(t)], axis=-1)  # (K, 2)

    def radii(sig: np.ndarray) -> np.ndarray:  # (..., 2, 2) -> (..., K)
        q = np.einsum("kd,...de,ke->...k", dirs, np.linalg.inv(sig), dirs)
        return scale / np.sqrt(q)

    r = radii(S)  # (draws, P, K)
    lo, hi = np.quantile(r, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    r_mean = radii(S.mean(axis=0))
    r_truth = None
    if truth is not None:
        T = _field.covariance(np.asarray(truth["W"]), points, diag_term)
        r_truth = radii(np.asarray(T, np.float64))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    closed = np.concatenate([dirs, dirs[:1]])
    for i, p in enumerate(points):
        ax.add_patch(PathPatch(_ring_path(p, dirs, lo[i], hi[i]), facecolor=band_color,
                               edgecolor="none", alpha=0.35,
                               label=f"{prob:.0%} posterior band" if i == 0 else None))
        curve = p + np.concatenate([r_mean[i], r_mean[i, :1]])[:, None] * closed
        ax.plot(curve[:, 0], curve[:, 1], color=color, linewidth=1.0,
                label="posterior mean of Sigma" if i == 0 else None)
        if r_truth is not None:
            curve = p + np.concatenate([r_truth[i], r_truth[i, :1]])[:, None] * closed
            ax.plot(curve[:, 0], curve[:, 1], color=truth_color, linestyle="--",
                    linewidth=1.0, label="truth" if i == 0 else None)
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("stimulus dimension 1")
    ax.set_ylabel("stimulus dimension 2")
    ax.legend(loc="upper right", fontsize="small")
    return ax.figure


def _entries_dataset(fit: Any, var_name: str, num_entries: int, entries: Any) -> Any:
    """A Dataset with a handful of scalar entries of ``var_name`` along a dim ``entry``."""
    import xarray as xr

    from psyphy_pp.arviz_io import to_arviz

    idata = to_arviz(fit)
    if var_name not in idata.posterior:
        raise ValueError(
            f"var_name must be one of {list(idata.posterior.data_vars)}, got {var_name!r}"
        )
    da = idata.posterior[var_name]
    shape = da.shape[2:]
    if entries is None:
        idx = list(np.ndindex(*shape))
        if var_name == "Sigma":  # Sigma is symmetric: skip the lower triangle
            idx = [i for i in idx if i[-2] <= i[-1]]
        else:  # lowest total basis degree first: the best-determined weights
            idx.sort(key=lambda i: (sum(i[:-2]), i))
        entries = idx[:num_entries]
    entries = [tuple(int(v) for v in e) for e in entries]
    for e in entries:
        if len(e) != len(shape) or any(not 0 <= v < n for v, n in zip(e, shape)):
            raise ValueError(f"entry {e} is not an index of {var_name} with shape {shape}")
    values = np.stack([da.values[(slice(None), slice(None)) + e] for e in entries], axis=-1)
    labels = [f"{var_name}[{','.join(map(str, e))}]" for e in entries]
    return xr.Dataset(
        {var_name: (("chain", "draw", "entry"), values)},
        coords={"chain": da["chain"].values, "draw": da["draw"].values, "entry": labels},
    )


def plot_trace(
    fit: Any, *, var_name: str = "W", num_entries: int = 4, entries: Any = None
) -> Any:
    """ArviZ trace plot (density and draws by chain) of a handful of entries.

    ``W`` is not identifiable: a common right rotation of every ``W[i1..iD]``
    changes neither likelihood nor prior, so chains may wander along those
    rotations and raw ``W`` traces can look unconverged while ``Sigma`` is
    fine. Use ``var_name="Sigma"`` (the reference points' covariances) to
    judge convergence.

    Args:
        fit: A :class:`~psyphy_pp.NutsResult` or its InferenceData.
        var_name: ``"W"`` or ``"Sigma"``.
        num_entries: How many entries (the lowest-degree ``W`` entries, or the
            first upper-triangle ``Sigma`` entries) when ``entries`` is None.
        entries: Explicit index tuples into the variable (without chain, draw).

    Returns:
        The matplotlib ``Figure``.
    """
    from psyphy_pp._optional import import_arviz

    az = import_arviz()
    ds = _entries_dataset(fit, var_name, num_entries, entries)
    axes = az.plot_trace(ds, var_names=[var_name], compact=False)
    fig = np.asarray(axes).ravel()[0].figure
    fig.tight_layout()
    return fig


def plot_rank(
    fit: Any, *, var_name: str = "W", num_entries: int = 4, entries: Any = None
) -> Any:
    """ArviZ rank plots (rank histograms by chain) of a handful of entries.

    Well-mixed chains give flat, overlapping rank histograms. As for
    :func:`plot_trace`, ``W`` is not identifiable; prefer ``var_name="Sigma"``
    to judge convergence.

    Args:
        fit: A :class:`~psyphy_pp.NutsResult` or its InferenceData.
        var_name: ``"W"`` or ``"Sigma"``.
        num_entries: How many entries when ``entries`` is None.
        entries: Explicit index tuples into the variable (without chain, draw).

    Returns:
        The matplotlib ``Figure``.
    """
    from psyphy_pp._optional import import_arviz

    az = import_arviz()
    ds = _entries_dataset(fit, var_name, num_entries, entries)
    n = ds.sizes["entry"]
    cols = min(n, 2)
    rows = -(-n // cols)
    axes = az.plot_rank(ds, var_names=[var_name], grid=(rows, cols),
                        figsize=(6 * cols, 3 * rows))
    fig = np.asarray(axes).ravel()[0].figure
    fig.tight_layout()
    return fig
