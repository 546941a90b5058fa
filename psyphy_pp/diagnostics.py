"""Recovery metrics, posterior summaries of ``Sigma(x)`` and fit comparisons.

* :func:`bures_wasserstein`, :func:`relative_frobenius` and
  :func:`recovery_error` compare a fitted field ``Sigma(x)`` with a reference
  (usually the ground truth of a simulation) at a set of points, as in
  DESIGN.md section 3 (numpy, float64).
* :func:`posterior_sigma` summarises the posterior of ``Sigma(x)`` (mean and
  credible interval) at the reference points or on a grid.
* :func:`compare_fits` reports whether two fits agree (e.g. SVI against the
  hand-written loop), built on their ArviZ InferenceData.

``W`` is not identifiable: right-multiplying every ``W[i1..iD]`` by one common
orthogonal matrix leaves ``Sigma``, the likelihood and the prior unchanged. Judge
convergence and agreement by ``Sigma``, P(correct) of held-out trials or the
log density, not by raw ``W`` entries.
"""

from __future__ import annotations

__all__ = [
    "bures_wasserstein",
    "relative_frobenius",
    "recovery_error",
    "SigmaSummary",
    "posterior_sigma",
    "SigmaConvergence",
    "sigma_convergence",
    "RHAT_MAX",
    "ESS_MIN",
    "FitComparison",
    "compare_fits",
    "align_gauge",
]

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from psyphy_pp._typing import ArrayLike, Params
from psyphy_pp._validation import check_positive
from psyphy_pp.model import WPPM
from psyphy_pp.plotting import plot_fit_comparison


def _sqrtm_psd(A: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(A)
    return (V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(V, -1, -2)


def bures_wasserstein(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    """Bures-Wasserstein distance between SPD matrices, shape ``(...)``.

    .. math:: d(A, B)^2 = \\operatorname{tr} A + \\operatorname{tr} B
        - 2 \\operatorname{tr} (A^{1/2} B A^{1/2})^{1/2}

    It is the 2-Wasserstein distance between ``N(0, A)`` and ``N(0, B)``, so it
    is in the units of the stimulus (a standard deviation).
    """
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    rA = _sqrtm_psd(A)
    cross = np.trace(_sqrtm_psd(rA @ B @ rA), axis1=-2, axis2=-1)
    d2 = np.trace(A, axis1=-2, axis2=-1) + np.trace(B, axis1=-2, axis2=-1) - 2 * cross
    return np.sqrt(np.clip(d2, 0.0, None))


def relative_frobenius(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    """``||A - B||_F / ||B||_F`` for matrices of shape ``(..., D, D)``."""
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    return np.linalg.norm(A - B, axis=(-2, -1)) / np.linalg.norm(B, axis=(-2, -1))


def recovery_error(
    model: WPPM, params: Params, truth: Params, points: ArrayLike
) -> dict[str, float]:
    """Mean Bures-Wasserstein and relative Frobenius error of ``Sigma`` at ``points``.

    Args:
        model: The model (its ``diag_term`` applies to both fields).
        params: Fitted parameters.
        truth: Reference parameters.
        points: Stimuli of shape ``(G, D)``.

    Returns:
        ``{"bures_wasserstein": ..., "relative_frobenius": ...}`` (means over points).
    """
    S = np.asarray(model.covariance(params, points), np.float64)
    T = np.asarray(model.covariance(truth, points), np.float64)
    return {
        "bures_wasserstein": float(np.mean(bures_wasserstein(S, T))),
        "relative_frobenius": float(np.mean(relative_frobenius(S, T))),
    }


@dataclass(frozen=True, eq=False)
class SigmaSummary:
    """Posterior summary of the covariance field ``Sigma(x)`` at a set of points.

    Attributes:
        points: The stimuli, shape ``(P, D)``.
        mean: Posterior mean of ``Sigma``, shape ``(P, D, D)``.
        lower: Lower end of the equal-tailed credible interval, entry by entry.
        upper: Upper end of the credible interval, shape ``(P, D, D)``.
        prob: Mass of the credible interval (e.g. 0.9).
        num_draws: Number of posterior draws summarised (1 for a MAP fit, whose
            interval collapses to the point).
    """

    points: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    prob: float
    num_draws: int

    def contains(self, sigma: ArrayLike) -> np.ndarray:
        """Whether each entry of ``sigma`` (shape ``(P, D, D)``) lies in its interval."""
        s = np.asarray(sigma, np.float64)
        return (s >= self.lower) & (s <= self.upper)

    def __repr__(self) -> str:
        width = np.mean(self.upper - self.lower)
        return (
            f"SigmaSummary(points={self.points.shape[0]}, input_dim={self.points.shape[1]}, "
            f"prob={self.prob}, num_draws={self.num_draws}, mean interval width={width:.3g})"
        )


def posterior_sigma(fit: Any, points: ArrayLike | None = None, *, prob: float = 0.9) -> SigmaSummary:
    """Posterior mean and equal-tailed credible interval of ``Sigma(x)``.

    ``Sigma`` is identifiable where ``W`` is not (``W`` can be rotated on the
    right by any common orthogonal matrix without changing ``Sigma``), so this
    is the summary to read, and to check convergence on.

    Args:
        fit: A :class:`~psyphy_pp.NutsResult`, a :class:`~psyphy_pp.MapResult`
            or an InferenceData from :func:`~psyphy_pp.to_arviz`.
        points: Stimuli of shape ``(P, D)``; default: the data's distinct
            reference points (required for a fit without data). For a grid use
            e.g. ``pp.designs.grid_points(12, 2)``.
        prob: Mass of the interval, in (0, 1).

    Returns:
        A :class:`SigmaSummary`.

    Raises:
        ValueError: If ``prob`` is not in (0, 1) or ``points`` has the wrong shape.

    Examples:
        >>> import psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> data = pp.TrialData([[0.0, 0.0], [0.5, 0.5]], [[0.1, 0.0], [0.5, 0.6]], [1, 0])
        >>> fit = pp.fit_map(model, data, num_steps=3, progress_bar=False)
        >>> posterior_sigma(fit).mean.shape
        (2, 2, 2)
    """
    if not (isinstance(prob, (float, int)) and not isinstance(prob, bool) and 0 < prob < 1):
        raise ValueError(f"prob must be a number in (0, 1), got {prob!r}")
    points, S = _sigma_at(fit, points)
    S = S.reshape((-1,) + S.shape[2:])
    lower, upper = np.quantile(S, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return SigmaSummary(points=points, mean=S.mean(axis=0), lower=lower, upper=upper,
                        prob=float(prob), num_draws=S.shape[0])


def _sigma_at(fit: Any, points: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """``(points, Sigma draws)`` in float64; ``points`` default to the data's references."""
    from psyphy_pp.arviz_io import sigma_draws, weights_and_field

    if points is None:
        points = weights_and_field(fit)[3]
    points = np.asarray(points, np.float64)
    return points, np.asarray(sigma_draws(fit, points), np.float64)


#: :func:`sigma_convergence`'s standard: every entry of ``Sigma`` has ``r_hat``
#: below ``RHAT_MAX`` and a bulk effective sample size of at least ``ESS_MIN``
#: (Vehtari et al. 2021, the values ArviZ's documentation recommends).
RHAT_MAX = 1.01
#: See :data:`RHAT_MAX`.
ESS_MIN = 400


class SigmaConvergence(NamedTuple):
    """Convergence of ``Sigma`` in a sampled posterior: :func:`sigma_convergence`'s report."""

    #: Largest rank-normalised split ``r_hat`` over the entries of ``Sigma``.
    max_rhat: float
    #: Smallest bulk effective sample size over the entries of ``Sigma``.
    min_ess_bulk: float

    @property
    def converged(self) -> bool:
        """``max_rhat < RHAT_MAX`` and ``min_ess_bulk >= ESS_MIN``."""
        return self.max_rhat < RHAT_MAX and self.min_ess_bulk >= ESS_MIN


def sigma_convergence(fit: Any, points: ArrayLike | None = None) -> SigmaConvergence:
    """``r_hat`` and ``ess_bulk`` of ``Sigma(x)`` over chains of posterior draws (ArviZ).

    ``W`` is not identifiable, so convergence is judged on ``Sigma``, the
    quantity the thresholds come from (see :func:`posterior_sigma`).

    Args:
        fit: A :class:`~psyphy_pp.NutsResult` (several chains make ``r_hat``
            meaningful) or an InferenceData from :func:`~psyphy_pp.to_arviz`.
        points: Stimuli of shape ``(P, D)``; default: the data's distinct
            reference points (required for a fit without data).

    Returns:
        A :class:`SigmaConvergence`; its ``converged`` applies :data:`RHAT_MAX`
        and :data:`ESS_MIN`.

    Examples:
        >>> import psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=0, extra_dims=0)
        >>> data = pp.TrialData([[0.0, 0.0]] * 4, [[0.2, 0.0]] * 4, [1, 1, 0, 1])
        >>> post = pp.fit_nuts(model, data, num_warmup=20, num_samples=20, progress_bar=False,
        ...                    task=pp.Oddity(method="mc", fixed_noise=True, num_samples=16))
        >>> conv = sigma_convergence(post)
        >>> conv.converged   # 2 x 20 draws cannot reach 400 effective draws
        False
    """
    import arviz as az

    data = az.convert_to_dataset({"Sigma": _sigma_at(fit, points)[1]})
    return SigmaConvergence(max_rhat=float(az.rhat(data)["Sigma"].max()),
                            min_ess_bulk=float(az.ess(data, method="bulk")["Sigma"].min()))


@dataclass(frozen=True, eq=False, repr=False)
class FitComparison:
    """How closely two fits agree: the report of :func:`compare_fits`.

    Attributes:
        labels: Names of the two fits (their inference methods).
        loss_diff: Per-step loss difference ``a - b`` (None unless both fits
            have loss traces of the same length).
        max_rel_loss_diff: ``max_t |a_t - b_t| / |b_t|`` (None without loss traces).
        max_abs_W_diff: ``max |W_a - W_b|`` over entries (posterior means for samples).
        rel_W_diff: ``max_abs_W_diff / max |W_b|``.
        rel_W_diff_aligned: The same after rotating ``W_a`` by the common
            orthogonal matrix that brings it closest to ``W_b``
            (:func:`align_gauge`): the part of the difference that changes
            ``Sigma``. ``W_rtol`` applies to it.
        grid: The grid on which the fields are compared, shape ``(G, D)``.
        bures_wasserstein: Bures-Wasserstein distance between the two ``Sigma``
            (posterior means for samples) at each grid point, shape ``(G,)``.
        relative_frobenius: ``||Sigma_a - Sigma_b||_F / ||Sigma_b||_F`` per grid point.
        loss_rtol: Tolerance on ``max_rel_loss_diff``.
        W_rtol: Tolerance on ``rel_W_diff``.
        sigma_rtol: Tolerance on the largest ``relative_frobenius``.
        agree: True when every available measure is within its tolerance.
        losses: The two loss traces (None where a fit has none), for :meth:`plot`.
    """

    labels: tuple[str, str]
    loss_diff: np.ndarray | None
    max_rel_loss_diff: float | None
    max_abs_W_diff: float
    rel_W_diff: float
    grid: np.ndarray
    bures_wasserstein: np.ndarray
    relative_frobenius: np.ndarray
    loss_rtol: float
    W_rtol: float
    sigma_rtol: float
    agree: bool
    losses: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
    rel_W_diff_aligned: float = float("nan")

    def __repr__(self) -> str:
        a, b = self.labels

        def mark(ok: bool) -> str:
            return "ok" if ok else "DIFFERENT"

        lines = [f"FitComparison({a} vs {b}): {'AGREE' if self.agree else 'DISAGREE'}"]
        if self.max_rel_loss_diff is None:
            lines.append("  loss:  no common per-step loss trace (not compared)")
        else:
            lines.append(
                f"  loss:  max relative per-step difference {self.max_rel_loss_diff:.3g} "
                f"over {len(self.loss_diff)} steps (tolerance {self.loss_rtol:g}) "
                f"{mark(self.max_rel_loss_diff <= self.loss_rtol)}"
            )
        lines.append(
            f"  W:     max abs difference {self.max_abs_W_diff:.3g}, relative "
            f"{self.rel_W_diff:.3g}; after aligning the rotation gauge "
            f"{self.rel_W_diff_aligned:.3g} (tolerance {self.W_rtol:g}) "
            f"{mark(self.rel_W_diff_aligned <= self.W_rtol)}"
        )
        rf = float(np.max(self.relative_frobenius))
        lines.append(
            f"  Sigma on {self.grid.shape[0]} grid points: max relative Frobenius {rf:.3g} "
            f"(tolerance {self.sigma_rtol:g}) {mark(rf <= self.sigma_rtol)}, "
            f"Bures-Wasserstein mean {float(np.mean(self.bures_wasserstein)):.3g}, "
            f"max {float(np.max(self.bures_wasserstein)):.3g}"
        )
        return "\n".join(lines)

    def plot(self) -> Any:
        """Loss traces, per-step loss difference and the field difference on the grid.

        Drawn by :func:`psyphy_pp.plotting.plot_fit_comparison`.

        Returns:
            A matplotlib ``Figure`` with three panels.
        """
        return plot_fit_comparison(self)


def compare_fits(
    a: Any,
    b: Any,
    *,
    grid_size: int = 12,
    loss_rtol: float = 1e-4,
    W_rtol: float = 1e-3,
    sigma_rtol: float = 1e-3,
) -> FitComparison:
    """Compare two fits of the same model, e.g. :func:`~psyphy_pp.fit_map` against
    :func:`~psyphy_pp.fit_map_scratch`, through their InferenceData.

    Both fits are converted with :func:`~psyphy_pp.to_arviz`. The report has
    the per-step difference of the loss traces (``sample_stats.loss``), the
    largest absolute and relative difference of ``W``, and the difference of
    the ``Sigma`` fields on a ``grid_size ** D`` grid over ``[-1, 1]^D``
    (Bures-Wasserstein distance and relative Frobenius error per point). The
    fits *agree* when every available measure is within its tolerance. The
    default tolerances suit two MAP loops run with the same seed and a
    deterministic (or smooth, e.g. bandwidth 0.1) likelihood, which agree to
    about ``1e-6`` in float32; with the default Monte Carlo bandwidth 0.01 the
    objective is rough and float32 rounding makes the loops part after 10-20
    steps, so they will (correctly) be reported as different.

    For posterior samples the means over draws are compared. ``W`` is not
    identifiable (a common right rotation of every ``W[i1..iD]`` leaves
    ``Sigma`` unchanged), so its posterior mean is not meaningful: compare
    posteriors with ``W_rtol=float("inf")`` and a ``sigma_rtol`` that allows
    for Monte Carlo error.

    Args:
        a: First fit (a result of any fitter, or its InferenceData).
        b: Second fit; relative differences are relative to ``b``.
        grid_size: Grid points per axis for the field comparison.
        loss_rtol: Tolerance on the largest relative per-step loss difference.
        W_rtol: Tolerance on ``max |W_a - W_b| / max |W_b|``.
        sigma_rtol: Tolerance on the largest relative Frobenius difference of ``Sigma``.

    Returns:
        A :class:`FitComparison` (readable ``repr``, ``.plot()``).

    Raises:
        ValueError: If the fits have different ``W`` shapes, or a tolerance is not positive.
    """
    from psyphy_pp.arviz_io import sigma_draws, to_arviz, weights_and_field

    for name, value in [("loss_rtol", loss_rtol), ("W_rtol", W_rtol), ("sigma_rtol", sigma_rtol)]:
        if not (isinstance(value, (float, int)) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"{name} must be a positive number (inf allowed), got {value!r}")
    check_positive("grid_size", grid_size, integer=True)
    shape_a, shape_b = (weights_and_field(f)[0].shape[2:] for f in (a, b))
    if shape_a != shape_b:
        raise ValueError(
            f"the fits have different W shapes {shape_a} and {shape_b}; "
            "compare fits of the same model"
        )
    ia, ib = to_arviz(a), to_arviz(b)
    Wa = np.asarray(ia.posterior["W"].values, np.float64)
    Wb = np.asarray(ib.posterior["W"].values, np.float64)
    Wa, Wb = Wa.mean(axis=(0, 1)), Wb.mean(axis=(0, 1))
    max_abs_W = float(np.max(np.abs(Wa - Wb)))
    W_scale = max(float(np.max(np.abs(Wb))), np.finfo(float).tiny)
    rel_W = max_abs_W / W_scale
    rel_W_aligned = float(np.max(np.abs(align_gauge(Wa, Wb) - Wb))) / W_scale

    def loss_of(idata: Any) -> np.ndarray | None:
        ss = getattr(idata, "sample_stats", None)
        if ss is None or "loss" not in ss:
            return None
        return np.asarray(ss["loss"].values, np.float64).reshape(-1)

    la, lb = loss_of(ia), loss_of(ib)
    if la is not None and lb is not None and la.shape == lb.shape:
        loss_diff = la - lb
        max_rel_loss = float(np.max(np.abs(loss_diff) / np.maximum(np.abs(lb), 1e-300)))
    else:
        loss_diff, max_rel_loss = None, None

    from psyphy_pp.designs import grid_points

    grid = grid_points(grid_size, int(ia.posterior.attrs["input_dim"]))
    Sa = sigma_draws(ia, grid).astype(np.float64).mean(axis=(0, 1))
    Sb = sigma_draws(ib, grid).astype(np.float64).mean(axis=(0, 1))
    bw = bures_wasserstein(Sa, Sb)
    rf = relative_frobenius(Sa, Sb)
    agree = rel_W_aligned <= W_rtol and float(np.max(rf)) <= sigma_rtol
    if max_rel_loss is not None:
        agree = agree and max_rel_loss <= loss_rtol
    labels = (str(ia.posterior.attrs.get("inference_method", "a")),
              str(ib.posterior.attrs.get("inference_method", "b")))
    if labels[0] == labels[1]:
        labels = (labels[0] + " (a)", labels[1] + " (b)")
    return FitComparison(
        labels=labels, loss_diff=loss_diff, max_rel_loss_diff=max_rel_loss,
        max_abs_W_diff=max_abs_W, rel_W_diff=rel_W, grid=grid, bures_wasserstein=bw,
        relative_frobenius=rf, loss_rtol=float(loss_rtol), W_rtol=float(W_rtol),
        sigma_rtol=float(sigma_rtol), agree=bool(agree), losses=(la, lb),
        rel_W_diff_aligned=rel_W_aligned,
    )


def align_gauge(W: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """``W`` rotated into the gauge of ``reference``.

    ``Sigma(x) = U(x) U(x)^T`` and the prior do not change when every block
    ``W[i1..iD]`` (a ``D x (D+E)`` matrix) is multiplied on the right by the
    same orthogonal ``Q``. This returns ``W Q`` for the ``Q`` that minimises
    ``||W Q - reference||_F`` (orthogonal Procrustes, from the SVD of a
    ``(D+E) x (D+E)`` matrix), so that two fits of one field can be compared
    entry by entry.

    Args:
        W: Weights, shape ``(..., D, D+E)``.
        reference: Weights of the same shape.

    Returns:
        The rotated ``W`` (float64).

    Examples:
        >>> W = np.random.default_rng(0).normal(size=(3, 3, 2, 3))
        >>> Q = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
        >>> bool(np.allclose(align_gauge(W @ Q, W), W))
        True
    """
    A = np.asarray(W, np.float64)
    B = np.asarray(reference, np.float64)
    if A.shape != B.shape:
        raise ValueError(f"reference must have the shape of W {A.shape}, got {B.shape}")
    k = A.shape[-1]
    u, _, vt = np.linalg.svd(A.reshape(-1, k).T @ B.reshape(-1, k))
    return A @ (u @ vt)
