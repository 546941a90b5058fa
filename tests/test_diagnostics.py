"""Recovery metrics, posterior summaries of Sigma and compare_fits."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import psyphy_pp as pp  # noqa: E402
from psyphy_pp.diagnostics import (  # noqa: E402
    bures_wasserstein,
    posterior_sigma,
    recovery_error,
    relative_frobenius,
)
from tests.conftest import make_problem  # noqa: E402

FIT = dict(num_steps=100, learning_rate=1e-4, progress_bar=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def smooth_problem():
    """P-small with fresh-noise Monte Carlo at bandwidth 0.1.

    At the default bandwidth 0.01 the objective is rough and float32 rounding
    makes the two MAP loops part after 10-20 steps (see test_inference.py); at
    bandwidth 0.1 they follow the same trajectory.
    """
    return make_problem(pp.Oddity(method="mc", num_samples=100, bandwidth=0.1))


def test_bures_wasserstein_isotropic_closed_form(rng):
    # For A = a I and B = b I in D dimensions, d = sqrt(D) |sqrt(a) - sqrt(b)|.
    assert bures_wasserstein(4.0 * np.eye(2), np.eye(2)) == pytest.approx(np.sqrt(2))
    X = rng.normal(size=(5, 3, 3))
    A = X @ np.swapaxes(X, -1, -2) + np.eye(3)
    np.testing.assert_allclose(bures_wasserstein(A, A), 0.0, atol=1e-6)
    B = A + 0.1 * np.eye(3)
    np.testing.assert_allclose(bures_wasserstein(A, B), bures_wasserstein(B, A), rtol=1e-8)


def test_relative_frobenius_and_recovery_error(p_small):
    assert relative_frobenius(2 * np.eye(2), np.eye(2)) == pytest.approx(1.0)
    model, truth, _ = p_small
    err = recovery_error(model, truth, truth, pp.designs.grid_points(4, 2))
    assert err["bures_wasserstein"] == pytest.approx(0.0, abs=1e-6)
    assert err["relative_frobenius"] == pytest.approx(0.0, abs=1e-6)


def test_posterior_sigma_of_a_map_fit_is_the_point(smooth_problem):
    model, _, data = smooth_problem
    fit = pp.fit_map(model, data, num_steps=5, progress_bar=False)
    summary = posterior_sigma(fit)
    expected = model.covariance(fit.params, data.unique_refs())
    np.testing.assert_allclose(summary.mean, expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(summary.lower, summary.mean, rtol=1e-6)
    np.testing.assert_allclose(summary.upper, summary.mean, rtol=1e-6)
    assert summary.num_draws == 1 and summary.points.shape == (9, 2)
    # The interval of a point estimate is [x, x]; `expected` comes from a separately
    # compiled program and may differ by float32 ulps (checked with allclose above).
    assert summary.contains(summary.mean).all()
    grid = posterior_sigma(fit, pp.designs.grid_points(12, 2), prob=0.5)
    assert grid.mean.shape == (144, 2, 2) and "prob=0.5" in repr(grid)
    with pytest.raises(ValueError, match="prob must be"):
        posterior_sigma(fit, prob=1.5)


def test_compare_fits_svi_and_scratch_agree(smooth_problem):
    model, _, data = smooth_problem
    a = pp.fit_map(model, data, **FIT)
    b = pp.fit_map_scratch(model, data, **FIT)
    report = pp.compare_fits(a, b)
    assert report.agree, report
    assert report.loss_diff.shape == (100,)
    assert report.max_rel_loss_diff < report.loss_rtol
    assert report.grid.shape == (144, 2)
    text = repr(report)
    assert text.startswith("FitComparison(svi vs scratch): AGREE")
    assert "tolerance 0.0001" in text and "tolerance 0.001" in text
    fig = report.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) >= 3
    # InferenceData in, same verdict out
    assert pp.compare_fits(pp.to_arviz(a), pp.to_arviz(b)).agree


def test_compare_fits_different_seeds_disagree(smooth_problem):
    model, _, data = smooth_problem
    a = pp.fit_map(model, data, seed=0, **FIT)
    b = pp.fit_map(model, data, seed=1, **FIT)
    report = pp.compare_fits(a, b)
    assert not report.agree
    assert report.rel_W_diff > 1e-2
    assert "DISAGREE" in repr(report) and "DIFFERENT" in repr(report)


def test_compare_fits_without_common_loss_trace_and_bad_input(smooth_problem):
    model, _, data = smooth_problem
    a = pp.fit_map(model, data, num_steps=3, progress_bar=False)
    b = pp.fit_map_scratch(model, data, num_steps=4, progress_bar=False)
    report = pp.compare_fits(a, b, grid_size=3)
    assert report.loss_diff is None and "not compared" in repr(report)
    report.plot()
    with pytest.raises(ValueError, match="W_rtol must be a positive number"):
        pp.compare_fits(a, b, W_rtol=0)
    with pytest.raises(ValueError, match="grid_size"):
        pp.compare_fits(a, b, grid_size=0)
    other = dataclasses.replace(model, basis_degree=1)
    c = dataclasses.replace(a, model=other, params=other.sample_prior(jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match="different W shapes"):
        pp.compare_fits(a, c)
