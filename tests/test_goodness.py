"""goodness_of_fit: the deviance against binomial log-likelihoods, an exact test at the truth,
and a misspecified field flagged.

References: the deviance as twice the log-likelihood ratio of the saturated
binomial model (``math.lgamma``), the Wilson interval's textbook value, and
simulations from a known truth (uniform p-values when the truth is the "fit").
"""

import math
from types import SimpleNamespace

import jax
import numpy as np
import pytest

import psyphy_pp as pp
from benchmarks.goodness import _binomial_range, step_truth
from psyphy_pp.goodness import MIN_CELL_TRIALS, deviance, wilson_interval
from tests.conftest import make_problem


def _binomial_loglik(k, n, p):
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + (k * math.log(p) if k else 0.0) + ((n - k) * math.log(1 - p) if n - k else 0.0))


def test_deviance_is_twice_the_log_likelihood_ratio_to_the_saturated_model():
    k = np.array([0, 3, 10, 7, 20])
    n = np.array([10, 10, 10, 12, 20])
    p = np.array([0.4, 0.35, 0.9, 0.5, 0.97])
    ref = 2 * sum(_binomial_loglik(ki, ni, ki / ni) - _binomial_loglik(ki, ni, pi)
                  for ki, ni, pi in zip(k, n, p))
    assert float(deviance(k, n, n * p)) == pytest.approx(ref, rel=1e-12)
    # leading axes: one deviance per simulated data set
    assert deviance(np.stack([k, n - k]), n, np.stack([n * p, n * p])).shape == (2,)


def test_wilson_interval_matches_the_textbook_value_and_contains_the_estimate():
    lo, hi = wilson_interval(np.array([8, 0, 50]), np.array([10, 10, 50]), 0.95)
    np.testing.assert_allclose([lo[0], hi[0]], [0.4902, 0.9433], atol=1e-4)
    assert lo[1] == pytest.approx(0.0, abs=1e-12) and hi[2] == pytest.approx(1.0, abs=1e-12)
    assert np.all(lo <= np.array([0.8, 0.0, 1.0]) + 1e-12)


@pytest.fixture(scope="module")
def p_small():
    return make_problem()  # P-small: 9 references x 40 trials, degree 2


def test_the_test_is_exact_at_the_truth(p_small):
    """With the true W as the fit, the parametric-bootstrap p-values are uniform."""
    model, truth, data = p_small
    pvals = []
    for seed in range(40):
        d = pp.simulate(model, truth, data.refs, data.comparisons, key=jax.random.PRNGKey(100 + seed))
        gof = pp.goodness_of_fit(SimpleNamespace(model=model, data=d, params=truth),
                                 num_sims=400, seed=seed)
        pvals.append(gof.p_value)
    pvals = np.array(pvals)
    # 40 uniform p-values: 4 expected below 0.1 (binomial sd 1.9), mean 0.5 (sd 0.046)
    assert np.sum(pvals < 0.1) <= 10
    assert abs(pvals.mean() - 0.5) < 0.15
    assert gof.num_cells == 9 * 2  # 40 trials per reference: two cells of 20
    assert gof.grouping == "references" and gof.method == "parametric bootstrap"


def test_tables_count_every_trial_once(p_small):
    model, truth, data = p_small
    gof = pp.goodness_of_fit(SimpleNamespace(model=model, data=data, params=truth), num_sims=50)
    assert gof.by_reference.num_trials.sum() == data.num_trials
    assert gof.by_bin.num_trials.sum() == data.num_trials and gof.by_bin.predicted.size == 10
    correct = gof.by_reference.observed * gof.by_reference.num_trials
    assert correct.sum() == pytest.approx(float(np.sum(data.responses)))
    assert np.all(np.diff(gof.by_bin.predicted) >= 0)  # bins sorted by prediction
    assert gof.by_reference.points.shape == (9, 2)
    assert "goodness of fit: deviance" in gof.summary() and "GoodnessOfFit(" in repr(gof)


def test_posterior_draws_give_a_posterior_predictive_p_value(p_small):
    model, truth, data = p_small
    rng = np.random.default_rng(0)
    W = np.asarray(truth["W"])[None, None] + 1e-3 * rng.standard_normal((1, 30) + model.weights_shape)
    gof = pp.goodness_of_fit(SimpleNamespace(model=model, data=data, samples={"W": W}),
                             num_sims=300)
    assert gof.method == "posterior predictive" and 0 < gof.p_value <= 1


def test_many_distinct_references_are_grouped_into_regions():
    model = pp.WPPM(basis_degree=1)
    truth = model.sample_prior(jax.random.PRNGKey(0))
    refs = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (400, 2), minval=-0.9, maxval=0.9))
    data = pp.simulate(model, truth, refs, np.clip(refs + 0.05, -1, 1), key=jax.random.PRNGKey(2))
    gof = pp.goodness_of_fit(SimpleNamespace(model=model, data=data, params=truth), num_sims=50)
    assert gof.grouping == "regions 4^2"  # 400 / 20 = 20 trials per region -> k = 4
    assert gof.by_reference.num_trials.min() >= 1
    assert gof.by_reference.num_trials.sum() == 400


@pytest.mark.study  # a 3,240-trial fit (~35 s); benchmarks/goodness.py measures 5 such fits
def test_a_field_with_a_step_the_basis_cannot_follow_is_flagged():
    truth_model, truth = step_truth()
    # 9 columns of references: a quadratic U (quartic Sigma) cannot pass through them all
    refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=9, trials_per_ref=40,
                                         key=jax.random.PRNGKey(3))
    data = pp.simulate(truth_model, truth, refs, comps, key=jax.random.PRNGKey(4))
    fit = pp.fit_map(pp.WPPM(input_dim=2, basis_degree=2), data, progress_bar=False)
    gof = pp.goodness_of_fit(fit, num_sims=500)
    assert gof.p_value < 0.01  # measured: 0.002, the smallest possible with 500 simulations
    assert gof.by_reference.outside.sum() >= 5  # measured: 12 of 81


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_sims=0), "num_sims"), (dict(level=1.0), "level"), (dict(num_bins=1.5), "num_bins"),
])
def test_bad_settings_are_refused(p_small, kwargs, match):
    model, truth, data = p_small
    with pytest.raises(ValueError, match=match):
        pp.goodness_of_fit(SimpleNamespace(model=model, data=data, params=truth), **kwargs)


def test_a_fit_without_data_is_refused(p_small):
    model, truth, _ = p_small
    with pytest.raises(ValueError, match="no trials"):
        pp.goodness_of_fit(SimpleNamespace(model=model, data=None, params=truth))


def test_min_cell_trials_is_what_the_docs_say():
    assert MIN_CELL_TRIALS == 20


def test_plot_calibration_draws_bins_and_references(p_small, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from psyphy_pp.plotting import plot_calibration

    model, truth, data = p_small
    gof = pp.goodness_of_fit(SimpleNamespace(model=model, data=data, params=truth), num_sims=50)
    fig = plot_calibration(gof)
    ax = fig.axes[0]
    assert "deviance" in ax.get_title() and ax.get_xlabel() == "predicted P(correct)"
    fig.savefig(tmp_path / "calibration.png")
    assert (tmp_path / "calibration.png").stat().st_size > 1000


def test_benchmark_binomial_range_and_step_field():
    """Smoke test of benchmarks/goodness.py's helpers (the study itself is a benchmark)."""
    assert _binomial_range(20, 0.05) == (0, 3)  # P(X <= 3) = 0.984 for Binomial(20, 0.05)
    model, truth = step_truth()
    x = np.array([[-0.5, 0.0], [0.5, 0.0]])
    sd = np.sqrt(np.asarray(model.covariance(truth, x))[:, 0, 0])
    assert 3.4 < sd[1] / sd[0] < 3.8  # U jumps 5-fold; with diag_term 1e-4 the sd 3.6-fold
