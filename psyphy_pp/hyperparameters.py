"""Hyperparameters from the data: K-fold cross-validated held-out likelihood.

The Wishart-process prior has two hyperparameters that shape the field:
``variance_scale`` (the prior variance of the constant term: how far ``Sigma``
may stray from ``diag_term * I``) and ``decay_rate`` (how fast the prior variance
falls with the Chebyshev degree: how smooth the field is). The WPPM's authors
chose them by 5-fold cross-validation; :func:`select_hyperparameters` does the
same in one call:

1. The trials are split into ``folds`` folds **stratified by reference**
   (:func:`stratified_folds`): each distinct reference's trials are spread
   evenly over the folds, so every fold sees every part of the design.
2. For each setting of the grid, the MAP is fitted to each fold's complement
   and scored by the mean log-likelihood per trial of the held-out fold.
3. The table gives, per setting, the mean of the fold scores and its standard
   error (their standard deviation over ``sqrt(folds)``); the best setting has
   the highest mean.

Each fit is :func:`~psyphy_pp.fit_map`'s MAP (the per-trial mean negative log
posterior of the training trials, L-BFGS) as one compiled ``lax.while_loop``,
in whitened weights ``Z = W / std`` so that L-BFGS does not see the prior's
spread of scales (a factor 600 between the constant and the degree-8 terms at
``decay_rate`` 0.2, degree 4). The folds' trials are padded to one size and
masked, and the prior's standard deviations are an argument, so the whole grid
shares one compiled program (one per ``basis_degree``). Fitting the folds as a
``jax.vmap`` batch was measured 9x slower on 2 CPU cores (a batched line search
runs every branch for every fold), so they run one after the other.

Starts. The posterior has more than one mode, so where a fit starts matters.
For each fold, the model's own setting is fitted first, from
:func:`~psyphy_pp.fit_map`'s default start (same ``seed``), and every setting's
fit of that fold starts from there: the settings refine one mode instead of each
finding its own (from independent random starts, P-small's folds ended in modes
5e-4 nats per trial apart in their own objective, and the search took three
times as many L-BFGS steps). No fit ever starts from a point that saw its
held-out trials.
"""

from __future__ import annotations

__all__ = [
    "HyperparameterSearch",
    "select_hyperparameters",
    "stratified_folds",
    "default_grid",
    "GRID_NAMES",
]

import dataclasses
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp import defaults
from psyphy_pp._masked_map import padded_trials, prior_std, programs, structure
from psyphy_pp._progress import progress
from psyphy_pp._validation import check_positive
from psyphy_pp.data import TrialData
from psyphy_pp.inference import check_model_and_data
from psyphy_pp.model import SITE_W, WPPM

#: The hyperparameters a grid may vary.
GRID_NAMES = ("variance_scale", "decay_rate", "basis_degree")

#: Factors of the model's own values that :func:`default_grid` tries.
DEFAULT_FACTORS = {"variance_scale": (0.1, 1.0, 10.0), "decay_rate": (0.5, 1.0, 1.5)}


def default_grid(model: WPPM) -> dict[str, tuple]:
    """The default grid: 3 x 3 settings around the model's own values.

    ``variance_scale`` times 0.1, 1 and 10, and ``decay_rate`` times 0.5, 1 and
    1.5 (for the defaults: 4e-4, 4e-3, 4e-2 and 0.2, 0.4, 0.6).

    Examples:
        >>> import psyphy_pp as pp
        >>> default_grid(pp.WPPM())
        {'variance_scale': (0.0004, 0.004, 0.04), 'decay_rate': (0.2, 0.4, 0.6)}
    """
    return {name: tuple(float(f"{getattr(model, name) * f:.6g}") for f in factors)
            for name, factors in DEFAULT_FACTORS.items()}


def stratified_folds(refs: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """The fold (``0 .. folds - 1``) of each trial, stratified by reference.

    The trials are shuffled (by ``seed``), grouped by their reference and dealt
    out to the folds in turn, so each reference's trials are spread over the
    folds as evenly as possible, and fold sizes differ by at most one. With a
    different reference on every trial (a Sobol design) this is a random split
    in which neighbouring references go to different folds.

    Args:
        refs: Reference stimuli, shape ``(N, D)``.
        folds: Number of folds, at least 2 and at most ``N``.
        seed: Seeds the shuffle.

    Returns:
        An int array of shape ``(N,)``.

    Examples:
        >>> import numpy as np
        >>> refs = np.repeat([[0.0, 0.0], [0.5, 0.5]], 10, axis=0)
        >>> f = stratified_folds(refs, 5)
        >>> [np.bincount(f[:10]).tolist(), np.bincount(f[10:]).tolist()]
        [[2, 2, 2, 2, 2], [2, 2, 2, 2, 2]]
    """
    refs = np.asarray(refs)
    n = len(refs)
    check_positive("folds", folds, integer=True)
    if not 2 <= folds <= n:
        raise ValueError(f"folds must be between 2 and the number of trials ({n}), got {folds}")
    order = np.random.default_rng(seed).permutation(n)
    _, group = np.unique(refs[order], axis=0, return_inverse=True)
    dealt = order[np.argsort(group.ravel(), kind="stable")]  # grouped, shuffled within
    fold = np.empty(n, dtype=np.int64)
    fold[dealt] = np.arange(n) % folds
    return fold


@dataclass(frozen=True)
class HyperparameterSearch:
    """The outcome of :func:`select_hyperparameters`.

    Attributes:
        settings: One dict per grid point (the hyperparameters it sets).
        scores: Held-out mean log-likelihood per trial, shape ``(settings, folds)``.
        mean: Mean of ``scores`` over the folds (nats per trial).
        stderr: Standard error of ``mean``: the folds' standard deviation over
            ``sqrt(folds)``.
        converged: Whether each fold's fit met the stopping rule, same shape as
            ``scores``.
        steps: L-BFGS steps of each fit, same shape as ``scores``.
        best_index: The setting with the highest ``mean``.
        best_model: The model with that setting.
        folds: The fold of each trial, shape ``(N,)``.
        seconds: Wall time of the search, compilation included.
    """

    settings: list[dict[str, Any]]
    scores: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    converged: np.ndarray
    steps: np.ndarray
    best_index: int
    best_model: WPPM
    folds: np.ndarray
    seconds: float

    @property
    def best(self) -> dict[str, Any]:
        """The best setting."""
        return dict(self.settings[self.best_index])

    def table(self) -> dict[str, np.ndarray]:
        """One row per setting: its hyperparameters, ``mean``, ``stderr``,
        ``delta`` (``mean`` minus the best mean) and ``converged`` (folds whose fit
        converged)."""
        cols: dict[str, np.ndarray] = {}
        for name in self.settings[0]:
            cols[name] = np.array([s[name] for s in self.settings])
        cols["mean"] = self.mean
        cols["stderr"] = self.stderr
        cols["delta"] = self.mean - self.mean[self.best_index]
        cols["converged"] = self.converged.sum(axis=1)
        return cols

    def summary(self) -> str:
        """The table as text, best setting marked, and the time taken."""
        names = list(self.settings[0])
        folds = self.scores.shape[1]
        lines = [f"{folds}-fold cross-validation over {len(self.settings)} settings "
                 f"({self.seconds:.0f} s): held-out log-likelihood, nats per trial"]
        lines.append("  ".join(f"{n:>14}" for n in names)
                     + f"  {'mean':>9}  {'stderr':>7}  converged")
        for i, s in enumerate(self.settings):
            mark = "  <- best" if i == self.best_index else ""
            lines.append("  ".join(f"{s[n]:>14.4g}" for n in names)
                         + f"  {self.mean[i]:>9.5f}  {self.stderr[i]:>7.5f}"
                         + f"  {int(self.converged[i].sum())}/{folds}{mark}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"HyperparameterSearch(settings={len(self.settings)}, "
                f"folds={self.scores.shape[1]}, best={self.best})")


def _grid_settings(model: WPPM, grid: Mapping[str, Sequence] | None) -> list[dict[str, Any]]:
    """The list of settings of ``grid`` (a product over its values), checked."""
    grid = default_grid(model) if grid is None else grid
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty dict of hyperparameter -> values, got {grid!r}")
    for name, values in grid.items():
        if name not in GRID_NAMES:
            raise ValueError(f"grid may vary {GRID_NAMES}, got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
    settings = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    for s in settings:
        dataclasses.replace(model, **s)  # each value is checked by WPPM
    return settings


def select_hyperparameters(
    model: WPPM,
    data: TrialData,
    *,
    grid: Mapping[str, Sequence] | None = None,
    folds: int = 5,
    seed: int = 0,
    num_steps: int = defaults.DEFAULT_NUM_STEPS,
    tol: float = defaults.DEFAULT_TOL,
    progress_bar: bool = True,
) -> HyperparameterSearch:
    """Choose the prior's hyperparameters by K-fold cross-validated likelihood.

    See the module docstring for the method. Every other setting of ``model``
    (its task, ``extra_dims``, ``diag_term``) is kept.

    Args:
        model: The model whose hyperparameters to choose.
        data: The trials.
        grid: ``{name: values}`` over ``"variance_scale"``, ``"decay_rate"`` and
            ``"basis_degree"``; every combination is tried. None:
            :func:`default_grid` (3 x 3 around the model's own values).
        folds: Number of folds.
        seed: Seeds the folds and the fits' common starting draw.
        num_steps: The most L-BFGS steps per fit.
        tol: The stopping rule's tolerance (as in :func:`~psyphy_pp.fit_map`).
        progress_bar: Show a progress bar over the settings.

    Returns:
        A :class:`HyperparameterSearch`; ``.best_model`` is ready for
        :func:`~psyphy_pp.fit_map`.

    Raises:
        ValueError: For a bad grid or fold count, a likelihood that is not
            deterministic (fresh-noise Monte Carlo cannot be compared across
            settings; use ``Oddity(method="mc", fixed_noise=True)``), or a task
            that learns the lapse rate (fix it; a fixed rate is kept).

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> truth = model.sample_prior(jax.random.PRNGKey(1))
        >>> refs, comps = pp.designs.grid_design(model, truth, grid_size=2,
        ...     trials_per_ref=20, key=jax.random.PRNGKey(2))
        >>> data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(3))
        >>> search = pp.select_hyperparameters(model, data, grid={"decay_rate": [0.2, 0.4]},
        ...     folds=2, progress_bar=False)
        >>> search.table()["mean"].shape
        (2,)
    """
    check_model_and_data(model, data)
    if not model.task.deterministic:
        raise ValueError(
            f"select_hyperparameters needs a deterministic likelihood, got task {model.task!r}; "
            "use the quadrature (2D, 3D) or Oddity(method='mc', fixed_noise=True)")
    if model.task.learns_lapse:
        raise ValueError(
            "select_hyperparameters fits W alone: fix the lapse rate (e.g. "
            "Oddity(lapse_rate=0.05), or the value a fit_map with lapse_rate='learn' found), "
            f"got task {model.task!r}")
    check_positive("num_steps", num_steps, integer=True)
    check_positive("tol", tol)
    settings = _grid_settings(model, grid)
    fold = stratified_folds(np.asarray(data.refs), folds, seed)
    dtype = jnp.result_type(float)
    trials = [np.asarray(a) for a in (data.refs, data.comparisons, data.responses)]
    sizes = np.bincount(fold, minlength=folds)
    train = [padded_trials(trials, fold != k, len(fold) - sizes.min(), dtype) for k in range(folds)]
    test = [padded_trials(trials, fold == k, sizes.max(), dtype) for k in range(folds)]
    start = time.perf_counter()
    scores = np.empty((len(settings), folds))
    converged = np.empty((len(settings), folds), dtype=bool)
    steps = np.empty((len(settings), folds), dtype=np.int64)
    centres: dict[tuple, list] = {}  # per weights shape: the model's own MAP of each fold
    with progress(len(settings) * folds, "select_hyperparameters", progress_bar) as bar:
        for i, s in enumerate(settings):
            m = dataclasses.replace(model, **s)
            solve, score = programs(structure(m))
            if m.weights_shape not in centres:  # from fit_map's default start, seed included
                own = dataclasses.replace(model, basis_degree=m.basis_degree)
                W0 = own.sample_prior(jax.random.split(jax.random.PRNGKey(seed))[0])[SITE_W]
                centres[m.weights_shape] = [solve(W0, prior_std(own, dtype), *train[k], num_steps,
                                                  tol)[0] for k in range(folds)]
            std = prior_std(m, dtype)
            for k in range(folds):
                W, steps[i, k], converged[i, k] = solve(
                    centres[m.weights_shape][k], std, *train[k], num_steps, tol)
                scores[i, k] = score(W, *test[k])
                bar.update(1)
            bar.set_postfix_str(f"{s}: {scores[i].mean():.5f}")
    mean = scores.mean(axis=1)
    stderr = scores.std(axis=1, ddof=1) / math.sqrt(folds)
    best = int(np.argmax(mean))
    return HyperparameterSearch(
        settings=settings, scores=scores, mean=mean, stderr=stderr, converged=converged,
        steps=steps, best_index=best, best_model=dataclasses.replace(model, **settings[best]),
        folds=fold, seconds=time.perf_counter() - start,
    )
