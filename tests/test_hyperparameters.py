"""Cross-validated hyperparameters: folds, per-fold fits against fit_map, errors."""

import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.hyperparameters import default_grid, stratified_folds
from tests.conftest import make_problem


def _subset(data: pp.TrialData, keep: np.ndarray) -> pp.TrialData:
    return pp.TrialData(np.asarray(data.refs)[keep], np.asarray(data.comparisons)[keep],
                        np.asarray(data.responses)[keep])


def test_folds_are_stratified_by_reference_and_reproducible():
    rng = np.random.default_rng(0)
    refs = np.repeat(rng.uniform(-1, 1, (7, 2)), rng.integers(3, 40, 7), axis=0)
    fold = stratified_folds(refs, 5, seed=3)
    assert fold.shape == (len(refs),) and set(np.unique(fold)) == set(range(5))
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 1
    for r in np.unique(refs, axis=0):
        counts = np.bincount(fold[np.all(refs == r, axis=1)], minlength=5)
        assert counts.max() - counts.min() <= 1  # each reference spread evenly
    np.testing.assert_array_equal(fold, stratified_folds(refs, 5, seed=3))
    assert not np.array_equal(fold, stratified_folds(refs, 5, seed=4))
    # One trial per reference (a Sobol design): still balanced folds.
    sizes = np.bincount(stratified_folds(rng.uniform(-1, 1, (103, 2)), 5))
    assert sizes.max() - sizes.min() <= 1


def test_default_grid_is_three_by_three_around_the_model():
    grid = default_grid(pp.WPPM(variance_scale=1e-3, decay_rate=0.3))
    assert grid == {"variance_scale": (1e-4, 1e-3, 1e-2), "decay_rate": (0.15, 0.3, 0.45)}


@pytest.mark.study  # 50 s in CI (make test ran 15.4 min); the next test stays in it
def test_each_fold_score_is_the_held_out_likelihood_of_fit_maps_map():
    """Each fold's score against fit_map on the same training trials from the same start
    (fit_map's default start for the seed, where the search starts the model's own
    setting): the held-out log-likelihood per trial agrees within 2e-4 nats. Both stop
    at tol 1e-5, one after L-BFGS on whitened and one on raw weights, and the MAP is a
    rotation orbit, so a gauge-invariant number is compared, not W. 120 trials per
    reference: with 40 (180 training trials per fold) the two optimisers' paths from
    the same start ended in different modes, 0.009 nats per trial apart."""
    model, _, data = make_problem(trials_per_ref=120)
    search = pp.select_hyperparameters(model, data, grid={"decay_rate": [model.decay_rate]},
                                       folds=2, seed=1, progress_bar=False)
    assert search.best_model == model and search.converged.all()
    for k in range(2):
        train, test = _subset(data, search.folds != k), _subset(data, search.folds == k)
        fit = pp.fit_map(model, train, seed=1, progress_bar=False)
        held = np.mean(np.asarray(model.log_likelihood(fit.params, test.refs,
                                                       test.comparisons, test.responses)))
        assert abs(search.scores[0, k] - held) <= 2e-4, (k, search.scores[0, k], held)
    assert search.mean[0] == pytest.approx(np.mean(search.scores[0]))
    assert search.stderr[0] == pytest.approx(np.std(search.scores[0], ddof=1) / np.sqrt(2))


@pytest.mark.study  # 72 s in a fresh-clone CI run; make test ran 17.6 minutes with it
def test_a_setting_starts_from_the_fold_fit_of_the_models_own():
    """Another setting's fold fit equals fit_map of that setting started at the model's
    own fold MAP (the warm start), within the same 2e-4 nats."""
    model, _, data = make_problem(trials_per_ref=120)
    search = pp.select_hyperparameters(model, data, grid={"decay_rate": [0.3]}, folds=2,
                                       seed=1, progress_bar=False)
    m = search.best_model
    assert m.decay_rate == 0.3 and m.variance_scale == model.variance_scale
    train, test = _subset(data, search.folds != 0), _subset(data, search.folds == 0)
    own = pp.fit_map(model, train, seed=1, progress_bar=False)
    fit = pp.fit_map(m, train, init_params=own.params, progress_bar=False)
    held = np.mean(np.asarray(m.log_likelihood(fit.params, test.refs, test.comparisons,
                                               test.responses)))
    assert abs(search.scores[0, 0] - held) <= 2e-4, (search.scores[0, 0], held)


def test_table_summary_and_best():
    model, _, data = make_problem()
    search = pp.select_hyperparameters(
        model, data, grid={"variance_scale": [4e-4, 4e-3], "decay_rate": [0.4]}, folds=2,
        progress_bar=False)
    table = search.table()
    assert list(table) == ["variance_scale", "decay_rate", "mean", "stderr", "delta",
                           "converged"]
    np.testing.assert_allclose(table["variance_scale"], [4e-4, 4e-3])
    assert table["delta"][search.best_index] == 0 and np.all(table["delta"] <= 0)
    assert search.best == search.settings[int(np.argmax(search.mean))]
    text = search.summary()
    assert "2-fold cross-validation over 2 settings" in text and text.count("<- best") == 1
    assert "HyperparameterSearch(settings=2, folds=2" in repr(search)


@pytest.mark.parametrize("kwargs, match", [
    ({"grid": {"diag_term": [1e-4]}}, "grid may vary"),
    ({"grid": {"decay_rate": []}}, r"grid\['decay_rate'\] must be a non-empty list"),
    ({"grid": {"decay_rate": [-1.0]}}, "decay_rate"),
    ({"grid": {}}, "non-empty dict"),
    ({"folds": 1}, "folds must be between 2"),
    ({"folds": 10_000}, "folds must be between 2"),
    ({"num_steps": 0}, "num_steps"),
])
def test_bad_arguments_are_refused_before_any_fit(kwargs, match):
    model, _, data = make_problem()
    with pytest.raises(ValueError, match=match):
        pp.select_hyperparameters(model, data, progress_bar=False, **kwargs)


def test_fresh_noise_monte_carlo_is_refused():
    model, _, data = make_problem(pp.Oddity(method="mc", num_samples=20))
    with pytest.raises(ValueError, match="deterministic likelihood"):
        pp.select_hyperparameters(model, data, progress_bar=False)


def test_a_learnt_lapse_rate_is_refused():
    model, _, data = make_problem()
    lapsing = pp.WPPM(basis_degree=2, task=pp.Oddity(lapse_rate="learn"))
    with pytest.raises(ValueError, match="fix the lapse rate"):
        pp.select_hyperparameters(lapsing, data, progress_bar=False)


@pytest.mark.study  # ~3 minutes: make test-studies
def test_recovers_the_true_hyperparameters_within_one_grid_step():
    """Issue 14's criterion on the first 3 observers of benchmarks/hyperparameters.py
    (prior draws of variance_scale 4e-3, decay_rate 0.4, 1,000 trials, a 5 x 5 grid of
    settings a factor 10 / about 2 apart): the chosen setting is within one grid step of
    the truth in both. Over its 8 observers the benchmark measured this for 6 (docs:
    fit_check.md); both misses chose decay_rate 0.1, two steps below, with
    variance_scale 0.04, on the ridge where a larger variance_scale and a faster decay
    give a similar prior, and the truth's score within 0.0024 nats per trial of theirs."""
    from benchmarks.hyperparameters import RECOVERY_GRID, TRUTH, observer

    for seed in range(3):
        model, data = observer(2, 5, 40, seed=seed)
        search = pp.select_hyperparameters(model, data, grid=RECOVERY_GRID, progress_bar=False)
        for name, values in RECOVERY_GRID.items():
            away = abs(values.index(search.best[name]) - values.index(TRUTH[name]))
            assert away <= 1, (seed, search.best)
