"""Probe validation: Weibull fits against known psychometric functions, probe_design, validate.

References: responses simulated from a known Weibull (its threshold and slope),
and simulated observers whose true thresholds are known.
"""

from types import SimpleNamespace

import jax
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.validation import fit_weibull
from tests.conftest import make_problem


def _weibull(s, t, beta, target=2 / 3):
    c = -np.log(1 - 1.5 * (target - 1 / 3))
    return 1 / 3 + 2 / 3 * (1 - np.exp(-c * (s / t) ** beta))


@pytest.mark.parametrize("target", [2 / 3, 0.8])
def test_fit_weibull_recovers_threshold_and_slope_with_calibrated_intervals(target):
    rng = np.random.default_rng(1)
    P = 200  # probes, each 12 levels x 20 repeats, as in the WPPM paper
    t_true = rng.uniform(0.05, 0.3, P)
    b_true = rng.uniform(1.5, 4.0, P)
    s = t_true[:, None] * np.repeat(np.linspace(0.3, 2.0, 12), 20)[None]
    y = (rng.random(s.shape) < _weibull(s, t_true[:, None], b_true[:, None], target)).astype(float)
    fit = fit_weibull(s, y, target=target, level=0.9)
    rel = fit["threshold"] / t_true - 1
    assert abs(np.median(rel)) < 0.02 and np.median(np.abs(rel)) < 0.1
    assert abs(np.median(fit["slope"] / b_true) - 1) < 0.15
    covered = np.mean((fit["lower"] <= t_true) & (t_true <= fit["upper"]))
    assert 0.84 <= covered <= 0.96  # 90% Wald intervals; binomial sd over 200 probes is 0.021


def test_probe_design_lays_out_references_directions_levels_and_repeats():
    refs = np.array([[0.0, 0.0], [0.5, -0.5]])
    dirs = np.array([[2.0, 0.0], [0.0, 1.0]])  # normalised inside
    r, c = pp.designs.probe_design(refs, dirs, [0.1, 0.2, 0.3], repeats=4)
    assert r.shape == c.shape == (2 * 2 * 3 * 4, 2)
    np.testing.assert_allclose(np.linalg.norm(c - r, axis=1).reshape(2, 2, 3, 4)[1, 0, :, 0],
                               [0.1, 0.2, 0.3])
    np.testing.assert_allclose(c[:4], [[0.1, 0.0]] * 4)
    with pytest.raises(ValueError, match="leave the box"):
        pp.designs.probe_design(refs, dirs, [0.1, 0.6], repeats=1)
    with pytest.raises(ValueError, match="levels must be positive"):
        pp.designs.probe_design(refs, dirs, [0.0, 0.1], repeats=1)
    with pytest.raises(ValueError, match="repeats"):
        pp.designs.probe_design(refs, dirs, [0.1], repeats=0)


def _probes(model, truth, refs, dirs, repeats=20, key=9):
    th = np.asarray(pp.thresholds(model, truth, refs, directions=dirs).distances)
    reach = pp.designs.box_distances(refs, dirs / np.linalg.norm(dirs, axis=1, keepdims=True))
    levels = np.minimum(th[..., None] * np.linspace(0.3, 2.0, 12), 0.999 * reach[..., None])
    r, c = pp.designs.probe_design(refs, dirs, levels, repeats=repeats)
    return th, pp.simulate(model, truth, r, c, key=jax.random.PRNGKey(key))


DIRS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])


@pytest.fixture(scope="module")
def p_small_probes():
    model, truth, data = make_problem()
    th, probes = _probes(model, truth, pp.designs.grid_points(3, 2, -0.4, 0.4), DIRS)
    return model, truth, data, th, probes


def test_validate_at_the_truth_measures_the_true_thresholds(p_small_probes):
    model, truth, data, th, probes = p_small_probes
    v = pp.validate(SimpleNamespace(model=model, data=data, params=truth), probes)
    assert v.measured.size == 36 and int(v.num_trials.sum()) == probes.num_trials
    np.testing.assert_allclose(np.sort(v.predicted), np.sort(th.reshape(-1)), rtol=1e-6)
    assert abs(v.slope - 1) < 0.1  # measured 0.997 (seed fixed)
    assert np.all(v.predicted_lower == v.predicted)  # a point fit has no band
    assert v.loglik_per_trial > v.constant_loglik_per_trial
    assert "slope" in v.summary() and "Validation(probes=36" in repr(v)


def test_validate_gives_bands_for_a_posterior(p_small_probes):
    model, truth, data, _, probes = p_small_probes
    rng = np.random.default_rng(0)
    W = np.asarray(truth["W"])[None, None] * (1 + 0.05 * rng.standard_normal((1, 20, 1, 1, 1, 1)))
    v = pp.validate(SimpleNamespace(model=model, data=data, samples={"W": W}), probes)
    assert np.all(v.predicted_lower <= v.predicted) and np.all(v.predicted <= v.predicted_upper)
    assert np.all(v.predicted_upper > v.predicted_lower)


def test_validate_refuses_probes_without_levels_or_direction(p_small_probes):
    model, truth, data, _, _ = p_small_probes
    fit = SimpleNamespace(model=model, data=data, params=truth)
    one_level = pp.TrialData([[0.0, 0.0]] * 3, [[0.1, 0.0]] * 3, [1, 0, 1])
    with pytest.raises(ValueError, match="fewer than two distinct distances"):
        pp.validate(fit, one_level)
    same = pp.TrialData([[0.0, 0.0]] * 2, [[0.0, 0.0], [0.1, 0.0]], [1, 0])
    with pytest.raises(ValueError, match="comparison equals the reference"):
        pp.validate(fit, same)
    with pytest.raises(ValueError, match="level"):
        pp.validate(fit, one_level, level=1.5)


@pytest.mark.study
@pytest.mark.timeout(900)
def test_a_map_fit_of_a_6000_trial_observer_predicts_the_probe_thresholds():
    """Issue 14's criterion: slope 1 +- 0.1 and r >= 0.9 on a simulated observer.

    Measured: slope 0.975, r 0.947 (degree 4, 6,000 grid trials, 36 probes x 240 trials).
    """
    model, truth, data = make_problem(basis_degree=4, grid_size=5, trials_per_ref=240)
    fit = pp.fit_map(model, data, progress_bar=False)
    _, probes = _probes(model, truth, pp.designs.grid_points(3, 2, -0.4, 0.4), DIRS)
    v = pp.validate(fit, probes)
    assert abs(v.slope - 1) < 0.1 and v.correlation >= 0.9
