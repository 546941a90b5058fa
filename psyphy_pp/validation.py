r"""Validation on held-out probe trials: measured against predicted thresholds.

The WPPM's authors validate each observer's field with probe psychometric
functions: at a set of references, comparisons at fixed distances along one
direction each (the method of constant stimuli), measured with trials the fit
never saw. :func:`~psyphy_pp.designs.probe_design` lays such trials out;
:func:`validate` compares them with a fit:

1. Each probe (a reference and a direction) gets a Weibull psychometric
   function with guess rate 1/3,

   .. math:: P(s) = \tfrac13 + \tfrac23\Big(1 - \exp\big(-c\,(s/t)^{\beta}\big)\Big),
       \qquad c = -\log\big(1 - \tfrac32 (p^\ast - \tfrac13)\big),

   parameterised so that ``t`` is the threshold at the target ``p*`` (2/3 by
   default, where ``c = log 2``), with a free slope ``beta``. It is fitted by
   maximum likelihood over ``(log t, log beta)``: a grid search, then
   :data:`NEWTON_STEPS` Newton steps with step halving (exact derivatives by
   JAX). The interval of ``t`` is a Wald interval on ``log t`` from the inverse
   Hessian.
2. The fit's own threshold in the same direction from the same reference
   (:func:`~psyphy_pp.thresholds`), with its credible band for a posterior.
3. The summary, as in the paper: the slope of a regression through the origin
   of predicted on measured thresholds (1 is perfect) and their correlation;
   and the mean log-likelihood per probe trial of the fit, against a constant
   observer at the probes' proportion correct.
"""

from __future__ import annotations

__all__ = ["Validation", "validate", "fit_weibull", "NEWTON_STEPS"]

import math
from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp._stats import normal_quantile
from psyphy_pp._typing import ArrayLike
from psyphy_pp.data import TrialData
from psyphy_pp.model import SITE_W
from psyphy_pp.normalization import Normalization
from psyphy_pp.results import as_fit_result, param_draws, thin_draws
from psyphy_pp.thresholds import thresholds, trial_probabilities

#: Newton steps after the grid search in :func:`fit_weibull`.
NEWTON_STEPS = 30

_GRID_T = 48  # grid-search points in log t, over the probe's distance range
_GRID_B = 16  # ... and in log beta, over [0.5, 8]


def _target_constant(target: float) -> float:
    return -math.log(1.0 - 1.5 * (target - 1.0 / 3.0))


def _nll(theta, s, y, w, c):
    """Negative log-likelihood of one probe; ``w`` masks padding."""
    log_t, log_b = theta[0], theta[1]
    z = c * jnp.exp(jnp.exp(log_b) * (jnp.log(s) - log_t))
    p = 1.0 / 3.0 + (2.0 / 3.0) * (-jnp.expm1(-z))
    p = jnp.clip(p, 1e-12, 1 - 1e-12)
    return -jnp.sum(w * (y * jnp.log(p) + (1 - y) * jnp.log1p(-p)))


@lru_cache(maxsize=1)
def _newton():
    grad = jax.grad(_nll)
    hess = jax.hessian(_nll)

    def solve2(H, g):  # closed-form 2 x 2 solve (no batched linalg)
        det = H[0, 0] * H[1, 1] - H[0, 1] * H[1, 0]
        return jnp.array([H[1, 1] * g[0] - H[0, 1] * g[1], H[0, 0] * g[1] - H[1, 0] * g[0]]) / det

    def step(theta, s, y, w, c):
        g, H = grad(theta, s, y, w, c), hess(theta, s, y, w, c)
        det = H[0, 0] * H[1, 1] - H[0, 1] * H[1, 0]
        newton = jnp.where((H[0, 0] > 0) & (det > 0), solve2(H, g), 0.1 * g)  # else descend
        f0 = _nll(theta, s, y, w, c)

        def halve(k, best):
            cand = theta - newton * 0.5**k
            better = _nll(cand, s, y, w, c) < _nll(best, s, y, w, c)
            return jnp.where(better, cand, best)

        best = jax.lax.fori_loop(0, 12, halve, theta)
        return jnp.where(_nll(best, s, y, w, c) <= f0, best, theta)

    def run(theta, s, y, w, c):
        theta = jax.lax.fori_loop(0, NEWTON_STEPS, lambda _, th: step(th, s, y, w, c), theta)
        return theta, hess(theta, s, y, w, c)

    return jax.jit(jax.vmap(run, in_axes=(0, 0, 0, 0, None)))


def fit_weibull(distances: ArrayLike, responses: ArrayLike, *, target: float = 2.0 / 3.0,
                level: float = 0.95) -> dict[str, np.ndarray]:
    """Maximum-likelihood Weibull psychometric functions (guess rate 1/3), one per probe.

    Args:
        distances: Comparison distances, shape ``(P, n)`` (positive).
        responses: 0/1 responses, shape ``(P, n)``.
        target: P(correct) at threshold, in (1/3, 1).
        level: Level of the Wald interval of the threshold.

    Returns:
        ``threshold``, ``lower``, ``upper``, ``slope`` (``beta``), each ``(P,)``.

    Examples:
        >>> s = np.tile(np.repeat(np.linspace(0.02, 0.2, 10), 50), (1, 1))
        >>> p = 1 / 3 + 2 / 3 * (1 - np.exp(-np.log(2) * (s / 0.1) ** 3))
        >>> y = (np.random.default_rng(0).random(s.shape) < p).astype(float)
        >>> fit = fit_weibull(s, y)
        >>> bool(abs(fit["threshold"][0] - 0.1) < 0.01), bool(fit["lower"][0] < 0.1 < fit["upper"][0])
        (True, True)
    """
    s = np.asarray(distances, np.float64)
    y = np.asarray(responses, np.float64)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"distances and responses must have one shape (P, n), got {s.shape} "
                         f"and {y.shape}")
    if not np.all(s > 0):
        raise ValueError("distances must be positive")
    if not 1.0 / 3.0 < target < 1.0:
        raise ValueError(f"target must be in (1/3, 1), got {target!r}")
    return _fit_weibull_weighted(s, y, np.ones_like(s), target, level)


@dataclass(frozen=True)
class Validation:
    """The outcome of :func:`validate`.

    Attributes:
        refs: Reference of each probe, model units, ``(P, D)``.
        directions: Unit direction of each probe, ``(P, D)``.
        num_trials: Trials per probe.
        measured: Weibull threshold of each probe (model units).
        measured_lower: Lower end of its Wald interval at ``level``.
        measured_upper: Upper end.
        weibull_slope: Fitted Weibull ``beta``.
        predicted: The fit's threshold (posterior median for a posterior).
        predicted_lower: Lower end of its credible band at ``level`` (equal to
            ``predicted`` for a point fit).
        predicted_upper: Upper end.
        slope: Regression through the origin of ``predicted`` on ``measured``.
        correlation: Pearson correlation of ``predicted`` and ``measured``.
        loglik_per_trial: Mean log-likelihood per probe trial under the fit.
        constant_loglik_per_trial: The same for a constant observer at the
            probes' proportion correct.
        target: P(correct) at threshold.
        level: Level of the intervals.
    """

    refs: np.ndarray
    directions: np.ndarray
    num_trials: np.ndarray
    measured: np.ndarray
    measured_lower: np.ndarray
    measured_upper: np.ndarray
    weibull_slope: np.ndarray
    predicted: np.ndarray
    predicted_lower: np.ndarray
    predicted_upper: np.ndarray
    slope: float
    correlation: float
    loglik_per_trial: float
    constant_loglik_per_trial: float
    target: float
    level: float

    @property
    def agree(self) -> np.ndarray:
        """Probes whose predicted threshold (or band) overlaps the measured interval."""
        return (self.predicted_upper >= self.measured_lower) & (self.predicted_lower <= self.measured_upper)

    def table(self, normalization: Normalization | None = None) -> dict[str, np.ndarray]:
        """One row per probe, in the user's units when ``normalization`` is given.

        Columns: ``ref_j``, ``direction_j`` (unit length in those units),
        ``num_trials``, ``measured`` with ``measured_lower``/``measured_upper``,
        ``weibull_slope``, ``predicted`` with ``predicted_lower``/``predicted_upper``,
        and ``agree``.
        """
        refs, dirs, scale = self.refs, self.directions, np.ones(len(self.refs))
        if normalization is not None:
            refs = normalization.to_user(refs)
            v = dirs * (np.asarray(normalization.high) - np.asarray(normalization.low)) / 2
            scale = np.linalg.norm(v, axis=1)
            dirs = v / scale[:, None]
        cols: dict[str, np.ndarray] = {}
        for j in range(refs.shape[1]):
            cols[f"ref_{j}"] = refs[:, j]
        for j in range(dirs.shape[1]):
            cols[f"direction_{j}"] = dirs[:, j]
        cols["num_trials"] = self.num_trials
        for name in ("measured", "measured_lower", "measured_upper"):
            cols[name] = getattr(self, name) * scale
        cols["weibull_slope"] = self.weibull_slope
        for name in ("predicted", "predicted_lower", "predicted_upper"):
            cols[name] = getattr(self, name) * scale
        cols["agree"] = self.agree.astype(np.int64)
        return cols

    def summary(self) -> str:
        """Text: slope, correlation, held-out log-likelihood, and agreeing probes."""
        return (
            f"validation on {self.measured.size} probes ({int(self.num_trials.sum())} trials): "
            f"predicted vs measured thresholds at P(correct) = {self.target:.4g}: slope "
            f"{self.slope:.3f} (through the origin; 1 is perfect), correlation "
            f"{self.correlation:.3f}; {int(self.agree.sum())} of {self.measured.size} probes "
            f"agree within their {self.level:.0%} intervals\n"
            f"held-out log-likelihood: {self.loglik_per_trial:.4f} nats per trial, against "
            f"{self.constant_loglik_per_trial:.4f} for a constant observer"
        )

    def __repr__(self) -> str:
        return (f"Validation(probes={self.measured.size}, slope={self.slope:.3f}, "
                f"correlation={self.correlation:.3f})")


def _probes(data: TrialData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Probe index of each trial, each probe's reference and direction, and the distances."""
    r = np.asarray(data.refs, np.float64)
    v = np.asarray(data.comparisons, np.float64) - r
    dist = np.linalg.norm(v, axis=1)
    if np.any(dist == 0):
        raise ValueError(f"probe_data has {int(np.sum(dist == 0))} trials whose comparison "
                         "equals the reference; a probe needs a direction")
    key = np.concatenate([r, np.round(v / dist[:, None], 6)], axis=1)
    uniq, probe = np.unique(key, axis=0, return_inverse=True)
    d = r.shape[1]
    return probe.reshape(-1), uniq[:, :d], uniq[:, d:], dist


def validate(result: object, probe_data: TrialData, *, target: float = 2.0 / 3.0,
             level: float = 0.9) -> Validation:
    """Compare a fit with probe psychometric functions measured on held-out trials.

    Args:
        result: A fit (:class:`~psyphy_pp.MapResult`, a posterior, or a
            :class:`~psyphy_pp.SavedFit`).
        probe_data: The probe trials (e.g. from
            :func:`~psyphy_pp.designs.probe_design` and :func:`~psyphy_pp.simulate`):
            each (reference, direction) pair is one probe, with at least two
            distinct distances.
        target: P(correct) at threshold, in (1/3, 1).
        level: Level of the measured thresholds' intervals and of the
            predicted thresholds' credible bands, in (0, 1).

    Returns:
        A :class:`Validation`.

    Raises:
        ValueError: For probe data of another dimension, a trial without a
            direction, a probe with fewer than two distances, or bad settings.
    """
    if not isinstance(probe_data, TrialData):
        raise ValueError(f"probe_data must be a psyphy_pp.TrialData, got {type(probe_data).__name__}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not (isinstance(target, (int, float)) and 1 / 3 < target < 1):
        raise ValueError(f"target must be in (1/3, 1), got {target!r}")
    fit = as_fit_result(result)
    if probe_data.input_dim != fit.model.input_dim:
        raise ValueError(f"probe_data has input_dim {probe_data.input_dim}, the fit "
                         f"{fit.model.input_dim}")
    probe, refs, dirs, dist = _probes(probe_data)
    num = np.bincount(probe)
    levels = np.array([np.unique(dist[probe == i]).size for i in range(len(num))])
    if np.any(levels < 2):
        bad = int(np.argmax(levels < 2))
        raise ValueError(f"probe at reference {refs[bad].tolist()} in direction "
                         f"{dirs[bad].round(3).tolist()} has fewer than two distinct distances; "
                         "a psychometric function needs several levels")
    # pad each probe to one length for the vectorised Weibull fit
    n_max = int(num.max())
    S = np.ones((len(num), n_max))
    Y = np.zeros((len(num), n_max))
    Wm = np.zeros((len(num), n_max))
    y = np.asarray(probe_data.responses, np.float64)
    for i in range(len(num)):
        sel = probe == i
        S[i, : num[i]], Y[i, : num[i]], Wm[i, : num[i]] = dist[sel], y[sel], 1.0
    weib = _fit_weibull_weighted(S, Y, Wm, target, level)  # padding has weight 0

    draws = {k: thin_draws(v.reshape((-1,) + v.shape[2:]), 200)
             for k, v in param_draws(fit).items()}
    point = fit.kind == "point"
    params = {k: jnp.asarray(v[0] if point else v) for k, v in draws.items()}
    W = params[SITE_W]
    uref, ref_idx = np.unique(refs, axis=0, return_inverse=True)
    udir, dir_idx = np.unique(dirs, axis=0, return_inverse=True)
    th = thresholds(fit.model, {SITE_W: W}, uref, directions=udir, target=target,
                    progress_bar=False)
    ref_idx, dir_idx = ref_idx.reshape(-1), dir_idx.reshape(-1)
    if point:
        pred = np.asarray(th.distances)[ref_idx, dir_idx]
        lo_p = hi_p = pred
    else:
        lo, med, hi = th.band(level)
        pred, lo_p, hi_p = med[ref_idx, dir_idx], lo[ref_idx, dir_idx], hi[ref_idx, dir_idx]

    m = weib["threshold"]
    P = trial_probabilities(fit.model, params, probe_data.refs, probe_data.comparisons)
    p = np.clip(P if point else P.mean(axis=0), 1e-12, 1 - 1e-12)
    ll = float(np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    q = float(np.clip(y.mean(), 1e-12, 1 - 1e-12))
    return Validation(
        refs=refs, directions=dirs, num_trials=num, measured=m,
        measured_lower=weib["lower"], measured_upper=weib["upper"], weibull_slope=weib["slope"],
        predicted=pred, predicted_lower=lo_p, predicted_upper=hi_p,
        slope=float(np.sum(m * pred) / np.sum(m * m)),
        correlation=float(np.corrcoef(m, pred)[0, 1]) if len(m) > 1 else math.nan,
        loglik_per_trial=ll, constant_loglik_per_trial=q * math.log(q) + (1 - q) * math.log1p(-q),
        target=float(target), level=float(level),
    )


def _fit_weibull_weighted(s: np.ndarray, y: np.ndarray, w: np.ndarray, target: float,
                          level: float) -> dict[str, np.ndarray]:
    """Grid search, then Newton steps, per probe (row); ``w`` weights each trial (0: padding)."""
    c = _target_constant(target)
    s_real = np.where(w > 0, s, np.nan)
    lo, hi = np.log(np.nanmin(s_real, axis=1)), np.log(np.nanmax(s_real, axis=1))
    log_t = lo[:, None] + (hi - lo + 1.0)[:, None] * np.linspace(-0.5, 1.0, _GRID_T)[None]
    log_b = np.log(np.geomspace(0.5, 8.0, _GRID_B))
    z = c * np.exp(np.exp(log_b)[None, None, :, None]
                   * (np.log(s)[:, None, None, :] - log_t[:, :, None, None]))
    p = np.clip(1 / 3 + 2 / 3 * -np.expm1(-z), 1e-12, 1 - 1e-12)
    yy, ww = y[:, None, None, :], w[:, None, None, :]
    nll = -np.sum(ww * (yy * np.log(p) + (1 - yy) * np.log1p(-p)), axis=-1)
    flat = nll.reshape(len(s), -1).argmin(axis=1)
    it, ib = np.unravel_index(flat, (_GRID_T, _GRID_B))
    theta0 = np.stack([log_t[np.arange(len(s)), it], log_b[ib]], axis=1)
    dtype = jnp.result_type(float)
    theta, H = _newton()(jnp.asarray(theta0, dtype), jnp.asarray(s, dtype), jnp.asarray(y, dtype),
                         jnp.asarray(w, dtype), c)
    theta, H = np.asarray(theta, np.float64), np.asarray(H, np.float64)
    det = H[:, 0, 0] * H[:, 1, 1] - H[:, 0, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(det > 0, H[:, 1, 1] / det, np.inf)
    sd = np.sqrt(np.maximum(var, 0.0))
    z_level = normal_quantile(0.5 + level / 2)
    t = np.exp(theta[:, 0])
    return dict(threshold=t, lower=t * np.exp(-z_level * sd), upper=t * np.exp(z_level * sd),
                slope=np.exp(theta[:, 1]))
