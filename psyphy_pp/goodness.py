r"""Goodness of fit: observed against predicted proportion correct, and a deviance test.

:func:`goodness_of_fit` answers "does the fitted model describe these trials?"
for a MAP fit or a posterior, in three parts:

* **Calibration by predicted P(correct).** The trials are sorted by their
  predicted P(correct) and cut into ``num_bins`` bins of equal count; each bin's
  observed proportion correct, with a binomial (Wilson) interval, is set
  against its mean prediction (:func:`~psyphy_pp.plotting.plot_calibration`).
* **Calibration by reference.** The same per reference point (or, when the
  design has too many distinct references for that, per region of a
  ``k x ... x k`` grid over the box): a field that is wrong in one part of the
  stimulus space shows there, even when the bins above average it out.
* **A deviance test.** The trials are grouped into cells, each reference group
  cut into up to ``cell_bins`` bins of predicted P(correct) with at least
  :data:`MIN_CELL_TRIALS` trials each, and the deviance

  .. math:: D = 2 \sum_c \Big[k_c \log\frac{k_c}{E_c}
      + (n_c - k_c) \log\frac{n_c - k_c}{n_c - E_c}\Big]

  compares the correct answers ``k_c`` of each cell with the expected number
  ``E_c`` (the sum of its trials' predicted P). Its p-value is the fraction of
  data sets simulated from the fit whose deviance is at least as large:

  - for a point fit (MAP), a parametric bootstrap *without refitting*: the
    responses are redrawn from the fitted P(correct), and the deviance is
    recomputed with the same predictions. Refitting each simulated data set
    (as psignifit does) would take minutes per replicate; without it the
    fit's adaptation to the observed data is not reproduced in the
    simulations, so the observed deviance tends to be the smaller one and the
    test is conservative (it rejects a correct model less often than its
    nominal rate, and a wrong one less readily);
  - for a posterior, the posterior-predictive p-value: each simulated data set
    is drawn from one posterior draw and compared with the observed data's
    deviance under the same draw (also conservative, for the same reason).

  With the true parameters in place of a fit the test is exact: its p-values
  are uniform (``tests/test_goodness.py``).
"""

from __future__ import annotations

__all__ = ["Calibration", "GoodnessOfFit", "goodness_of_fit", "deviance", "wilson_interval",
           "MIN_CELL_TRIALS"]

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from psyphy_pp._stats import normal_quantile
from psyphy_pp._typing import ArrayLike
from psyphy_pp._validation import check_positive
from psyphy_pp.results import as_fit_result, param_draws, thin_draws
from psyphy_pp.thresholds import trial_probabilities

#: The fewest trials in a cell of the deviance test and in a reference group.
MIN_CELL_TRIALS = 20

#: Simulated data sets drawn at once (memory ~ SIM_BLOCK x trials x 8 bytes).
SIM_BLOCK = 100


def deviance(correct: ArrayLike, trials: ArrayLike, expected: ArrayLike) -> np.ndarray:
    """Binomial deviance of cell counts against their expected counts.

    Args:
        correct: Correct answers per cell, shape ``(..., C)``.
        trials: Trials per cell, shape ``(C,)``.
        expected: Expected correct answers per cell, ``0 < expected < trials``,
            shape ``(..., C)``.

    Returns:
        ``2 sum_c [k log(k / E) + (n - k) log((n - k) / (n - E))]`` over the last
        axis (``0 log 0 = 0``).

    Examples:
        >>> float(deviance([5], [10], [5.0]))
        0.0
        >>> round(float(deviance([10], [10], [5.0])), 4)  # 2 * 10 * log 2
        13.8629
    """
    k = np.asarray(correct, np.float64)
    n = np.asarray(trials, np.float64)
    e = np.asarray(expected, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(k > 0, k * np.log(k / e), 0.0)
        b = np.where(n - k > 0, (n - k) * np.log((n - k) / (n - e)), 0.0)
    return 2.0 * np.sum(a + b, axis=-1)


def wilson_interval(correct: ArrayLike, trials: ArrayLike, level: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion.

    Args:
        correct: Successes ``k``.
        trials: Trials ``n`` (at least 1).
        level: Coverage of the interval, in (0, 1).

    Returns:
        ``(lower, upper)``, arrays of the shape of ``correct``.

    Examples:
        >>> lo, hi = wilson_interval(8, 10)
        >>> round(float(lo), 4), round(float(hi), 4)
        (0.4902, 0.9433)
    """
    k = np.asarray(correct, np.float64)
    n = np.asarray(trials, np.float64)
    z = normal_quantile(0.5 + level / 2)
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@dataclass(frozen=True)
class Calibration:
    """Observed against predicted proportion correct, per group of trials.

    Attributes:
        predicted: Mean predicted P(correct) of each group, shape ``(G,)``.
        observed: Observed proportion correct.
        num_trials: Trials per group.
        lower: Lower end of the Wilson interval of ``observed`` at ``level``.
        upper: Upper end.
        points: For groups of references, their centre in model units,
            shape ``(G, D)``; None for bins of predicted P.
    """

    predicted: np.ndarray
    observed: np.ndarray
    num_trials: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    points: np.ndarray | None = None

    @property
    def outside(self) -> np.ndarray:
        """Groups whose interval does not contain the prediction (bool, ``(G,)``)."""
        return (self.predicted < self.lower) | (self.predicted > self.upper)


@dataclass(frozen=True)
class GoodnessOfFit:
    """The outcome of :func:`goodness_of_fit`.

    Attributes:
        deviance: The deviance of the observed data at the (posterior-mean)
            predictions, over ``num_cells`` cells.
        p_value: Fraction of simulated data sets with a deviance at least as
            large (``(1 + count) / (1 + num_sims)``); small means the model does
            not describe the data.
        method: ``"parametric bootstrap"`` (point fit, no refitting) or
            ``"posterior predictive"``.
        num_sims: Simulated data sets.
        num_cells: Cells of the deviance.
        by_bin: :class:`Calibration` in bins of predicted P(correct).
        by_reference: :class:`Calibration` per reference group.
        grouping: How references were grouped (``"references"`` or ``"regions k^D"``).
        level: Level of the binomial intervals.
    """

    deviance: float
    p_value: float
    method: str
    num_sims: int
    num_cells: int
    by_bin: Calibration
    by_reference: Calibration
    grouping: str
    level: float

    def summary(self) -> str:
        """Two lines of text: the test, and the groups whose interval misses the prediction."""
        ref = self.by_reference
        return (
            f"goodness of fit: deviance {self.deviance:.1f} over {self.num_cells} cells, "
            f"p = {self.p_value:.3g} ({self.method}, {self.num_sims} simulated data sets)\n"
            f"calibration: {int(ref.outside.sum())} of {ref.predicted.size} reference groups "
            f"({self.grouping}) and {int(self.by_bin.outside.sum())} of "
            f"{self.by_bin.predicted.size} bins of predicted P(correct) have the prediction "
            f"outside the {self.level:.0%} interval of the observed proportion"
        )

    def __repr__(self) -> str:
        return (f"GoodnessOfFit(deviance={self.deviance:.1f}, num_cells={self.num_cells}, "
                f"p_value={self.p_value:.3g}, method={self.method!r})")


def _reference_groups(refs: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Group index of each trial, group centres, and how they were formed.

    Distinct references when they have :data:`MIN_CELL_TRIALS` trials each on
    average; otherwise regions of a ``k^D`` grid over ``[-1, 1]^D`` with ``k``
    as large as keeps that average.
    """
    n, d = refs.shape
    uniq, inverse = np.unique(refs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(uniq) * MIN_CELL_TRIALS <= n:
        return inverse, uniq, "references"
    k = max(1, int((n / MIN_CELL_TRIALS) ** (1.0 / d)))
    idx = np.clip(np.floor((refs + 1.0) / 2.0 * k).astype(np.int64), 0, k - 1)
    flat = np.ravel_multi_index(idx.T, (k,) * d)
    used, group = np.unique(flat, return_inverse=True)
    centres = np.stack([refs[group == g].mean(axis=0) for g in range(len(used))])
    return group.reshape(-1), centres, f"regions {k}^{d}"


def _quantile_bins(p: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin index (0..num_bins-1) of each entry, by rank: bins of equal count."""
    order = np.argsort(p, kind="stable")
    bins = np.empty(p.size, np.int64)
    bins[order] = (np.arange(p.size) * num_bins) // p.size
    return bins


def _cells(group: np.ndarray, p: np.ndarray, cell_bins: int) -> np.ndarray:
    """Cell index of each trial: each group cut into bins of predicted P."""
    cell = np.empty(p.size, np.int64)
    start = 0
    for g in range(group.max() + 1):
        members = np.flatnonzero(group == g)
        b = int(np.clip(members.size // MIN_CELL_TRIALS, 1, cell_bins))
        cell[members] = start + _quantile_bins(p[members], b)
        start += b
    return cell


def _calibration(index: np.ndarray, y: np.ndarray, p: np.ndarray, level: float,
                 points: np.ndarray | None = None) -> Calibration:
    count = np.bincount(index).astype(np.float64)
    correct = np.bincount(index, weights=y)
    predicted = np.bincount(index, weights=p) / count
    lower, upper = wilson_interval(correct, count, level)
    return Calibration(predicted, correct / count, count.astype(np.int64), lower, upper, points)


def goodness_of_fit(
    result: object,
    *,
    num_bins: int = 10,
    cell_bins: int = 3,
    num_sims: int = 1000,
    max_draws: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> GoodnessOfFit:
    """Compare a fit's predicted P(correct) with its trials (see the module docstring).

    Args:
        result: A fit with its data: a :class:`~psyphy_pp.MapResult`,
            :class:`~psyphy_pp.NutsResult`, :class:`~psyphy_pp.LaplaceResult` or
            a loaded :class:`~psyphy_pp.SavedFit`.
        num_bins: Bins of predicted P(correct) for :attr:`GoodnessOfFit.by_bin`.
        cell_bins: The most bins of predicted P per reference group in the
            deviance's cells.
        num_sims: Simulated data sets for the p-value.
        max_draws: For a posterior, the most draws used (evenly spaced).
        level: Level of the binomial intervals, in (0, 1).
        seed: Seeds the simulated responses.

    Returns:
        A :class:`GoodnessOfFit`.

    Raises:
        ValueError: For a result without data, or invalid settings.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> truth = model.sample_prior(jax.random.PRNGKey(1))
        >>> refs, comps = pp.designs.grid_design(model, truth, grid_size=2, trials_per_ref=50,
        ...                                      key=jax.random.PRNGKey(2))
        >>> data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(3))
        >>> class Truth:  # any object with model, data and params["W"]
        ...     model, data, params = model, data, truth
        >>> gof = pp.goodness_of_fit(Truth(), num_sims=200)
        >>> gof.num_cells, gof.method
        (8, 'parametric bootstrap')
    """
    check_positive("num_bins", num_bins, integer=True)
    check_positive("cell_bins", cell_bins, integer=True)
    check_positive("num_sims", num_sims, integer=True)
    check_positive("max_draws", max_draws, integer=True)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    fit = as_fit_result(result)
    data = fit.data
    if data is None or data.num_trials == 0:
        raise ValueError("result has no trials to compare with; goodness_of_fit needs the "
                         "data the model was fitted to (result.data)")
    draws = {k: v.reshape((-1,) + v.shape[2:]) for k, v in param_draws(fit).items()}
    if fit.kind == "posterior":
        draws = {k: thin_draws(v, max_draws) for k, v in draws.items()}
    P = trial_probabilities(fit.model, {k: jnp.asarray(v) for k, v in draws.items()},
                            data.refs, data.comparisons)  # with the lapse term, if any
    P = np.clip(P, 1e-12, 1 - 1e-12)  # (S, N)
    p_mean = P.mean(axis=0)
    y = np.asarray(data.responses, np.float64)

    group, centres, grouping = _reference_groups(np.asarray(data.refs, np.float64))
    cell = _cells(group, p_mean, cell_bins)
    num_cells = int(cell.max()) + 1
    onehot = np.zeros((y.size, num_cells))
    onehot[np.arange(y.size), cell] = 1.0
    n_cell = onehot.sum(axis=0)
    k_obs = y @ onehot

    rng = np.random.default_rng(seed)
    which = np.arange(num_sims) % len(P)  # the draw behind each simulated data set
    expected = P @ onehot  # (S, C)
    d_rep = np.concatenate([  # in blocks, so memory stays ~SIM_BLOCK x N
        deviance((rng.random((len(w), y.size)) < P[w]) @ onehot, n_cell, expected[w])
        for w in np.array_split(which, max(1, -(-num_sims // SIM_BLOCK)))])
    d_obs = deviance(k_obs, n_cell, expected[which])
    p_value = float((1 + np.sum(d_rep >= d_obs)) / (1 + num_sims))

    return GoodnessOfFit(
        deviance=float(deviance(k_obs, n_cell, p_mean @ onehot)),
        p_value=p_value,
        method="parametric bootstrap" if fit.kind == "point" else "posterior predictive",
        num_sims=num_sims,
        num_cells=num_cells,
        by_bin=_calibration(_quantile_bins(p_mean, min(num_bins, y.size)), y, p_mean, level),
        by_reference=_calibration(group, y, p_mean, level, centres),
        grouping=grouping,
        level=level,
    )
