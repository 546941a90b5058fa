"""fit_nuts: deterministic likelihood, argument checks and posterior quality on P-small."""

import dataclasses

import jax
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp._mcmc import resolve_chain_method
from psyphy_pp._warnings import PsyphyWarning
from psyphy_pp.diagnostics import posterior_sigma
from psyphy_pp.nuts import (
    deterministic_task,
    with_deterministic_task,
)
from tests.conftest import make_problem

TINY = dict(num_warmup=10, num_samples=5, num_chains=1, progress_bar=False)


@pytest.fixture(scope="module")
def tiny():
    """A problem small enough for NUTS smoke tests (24 weights, 40 trials)."""
    return make_problem(grid_size=2, trials_per_ref=10, basis_degree=1)


@pytest.fixture(scope="module")
def tiny_posterior(tiny):
    """Two very short chains on the default task, started from the truth."""
    model, truth, data = tiny
    return pp.fit_nuts(model, data, init_params=truth, num_warmup=5, num_samples=4,
                       num_chains=2, seed=1, progress_bar=False)


def test_deterministic_task_picks_quadrature_in_2d_3d_and_fixed_noise_elsewhere():
    quadrature = pp.Oddity(method="quadrature")
    assert deterministic_task(pp.Oddity(), 2) == quadrature  # the MAP-grade rule as it is
    assert deterministic_task(pp.Oddity(method="mc"), 2) == quadrature
    in_3d = deterministic_task(pp.Oddity(), 3)
    assert in_3d == dataclasses.replace(quadrature, polar_nodes=pp.defaults.NUTS_POLAR_NODES)
    assert deterministic_task(pp.Oddity(method="mc"), 3) == in_3d
    t1 = deterministic_task(pp.Oddity(method="mc", num_samples=500, bandwidth=0.05), 1)
    assert (t1.method, t1.fixed_noise, t1.num_samples, t1.bandwidth) == ("mc", True, 2000, 0.05)
    assert deterministic_task(pp.Oddity(method="mc", num_samples=4000), 1).num_samples == 4000
    fixed = pp.Oddity(method="mc", fixed_noise=True, num_samples=50)
    assert deterministic_task(fixed, 3) is fixed


def test_fit_nuts_result_layout_and_recorded_task(tiny, tiny_posterior):
    model, _, data = tiny
    post = tiny_posterior
    assert model.task == pp.Oddity(method="quadrature")  # the default MAP-grade quadrature
    assert post.samples["W"].shape == (2, 4) + model.weights_shape
    for name in ("diverging", "energy", "lp", "num_steps", "tree_depth", "step_size",
                 "accept_prob"):
        assert post.sample_stats[name].shape == (2, 4), name
    assert post.sample_stats["diverging"].dtype == bool
    np.testing.assert_array_equal(
        post.sample_stats["tree_depth"],
        np.floor(np.log2(post.sample_stats["num_steps"])).astype(int) + 1)
    assert post.model.task == model.task  # in 2D NUTS samples the MAP-grade rule
    assert "the model's own task" in post.task_note
    assert post.settings["chain_method"] == resolve_chain_method("auto", 2)
    assert post.method == "nuts" and "NutsResult(num_chains=2, num_samples=4" in repr(post)
    assert post.data is data


def test_sigma_convergence_is_arviz_summary_of_sigma_at_the_references(tiny_posterior):
    import arviz as az

    from psyphy_pp.diagnostics import SigmaConvergence, sigma_convergence

    conv = sigma_convergence(tiny_posterior)
    summ = az.summary(pp.to_arviz(tiny_posterior), var_names=["Sigma"], kind="diagnostics",
                      round_to="none")
    assert conv.max_rhat == pytest.approx(summ["r_hat"].max(), rel=1e-9)
    assert conv.min_ess_bulk == pytest.approx(summ["ess_bulk"].min(), rel=1e-9)
    assert not conv.converged  # 2 x 4 draws
    assert SigmaConvergence(1.005, 400.0).converged
    assert not SigmaConvergence(1.01, 1000.0).converged


def test_fit_nuts_init_params_is_one_argument_away(tiny, tiny_posterior):
    _, truth, _ = tiny
    assert tiny_posterior.settings["init"].startswith("init_params")
    # both chains start at the truth: after five short warmup steps they are still close
    W = tiny_posterior.samples["W"]
    assert np.max(np.abs(W - np.asarray(truth["W"]))) < 0.5


def test_fit_nuts_passes_tree_depth_and_mass_matrix_to_the_kernel(tiny):
    model, truth, data = tiny
    post = pp.fit_nuts(model, data, init_params=truth, max_tree_depth=(4, 2), dense_mass=False,
                       **TINY)
    assert post.settings["max_tree_depth"] == (4, 2) and post.settings["dense_mass"] is False
    assert post.sample_stats["num_steps"].max() <= 2**2 - 1  # the sampling depth, not warmup's


def test_fit_nuts_explicit_task_overrides_the_choice(tiny):
    model, _, _ = tiny
    task = pp.Oddity(method="mc", fixed_noise=True, num_samples=64)
    used, note = with_deterministic_task(model, task)
    assert used.task is task and "explicitly" in note
    used, note = with_deterministic_task(dataclasses.replace(model, task=task), None)
    assert used.task is task and "own task" in note
    with pytest.raises(ValueError, match="quadrature.*needs input_dim 2 or 3"):
        with_deterministic_task(pp.WPPM(input_dim=1, basis_degree=1), pp.Oddity(method="quadrature"))


def test_fit_nuts_rejects_a_fresh_noise_task(tiny):
    model, _, data = tiny
    with pytest.raises(ValueError, match="NUTS needs a deterministic log density") as e:
        pp.fit_nuts(model, data, task=pp.Oddity(method="mc", fixed_noise=False), **TINY)
    msg = str(e.value)
    assert "fixed_noise=True" in msg and "method='quadrature'" in msg


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_warmup=0), "num_warmup"),
        (dict(num_samples=-3), "num_samples"),
        (dict(num_chains=1.5), "num_chains"),
        (dict(seed=-1), "seed"),
        (dict(target_accept_prob=1.0), "target_accept_prob"),
        (dict(target_accept_prob=0.0), "target_accept_prob"),
        (dict(max_tree_depth=0), "max_tree_depth"),
        (dict(max_tree_depth=6.5), "max_tree_depth"),
        (dict(max_tree_depth=(6, 0)), "pair"),
        (dict(max_tree_depth=(6, 7, 8)), "pair"),
        (dict(max_tree_depth="6,7"), "pair"),
        (dict(dense_mass="yes"), "dense_mass"),
        (dict(gauge="rotated"), "gauge must be one of"),
        (dict(chain_method="threads"), "chain_method must be one of"),
        (dict(init_params={"W": np.zeros((2, 2))}), "shape"),
        (dict(init_params={"W": np.full((2, 2, 2, 3), np.nan)}), "finite"),
        (dict(task="quadrature"), "task must be"),
        (dict(progress_bar="no"), "progress_bar"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_fit_nuts_validates_arguments_up_front(tiny, kwargs, match):
    model, _, data = tiny
    settings = dict(TINY) | kwargs
    with pytest.raises(ValueError, match=match):
        pp.fit_nuts(model, data, **settings)


def test_auto_chain_method_runs_chains_side_by_side_on_a_multicore_cpu(monkeypatch):
    import psyphy_pp._mcmc as mcmc

    n = len(jax.devices())
    assert resolve_chain_method("auto", 1) == "sequential"
    assert resolve_chain_method("vectorized", n + 1) == "vectorized"
    if n >= 2:
        assert resolve_chain_method("auto", 2) == "parallel"
    assert resolve_chain_method("auto", 2, 4) == "parallel"
    assert resolve_chain_method("auto", 2, 4, auto_parallel=False) == "sequential"
    on_cpu = jax.default_backend() == "cpu"
    monkeypatch.setattr(mcmc, "host_cores", lambda: 2)
    assert resolve_chain_method("auto", 2, 1) == ("threaded" if on_cpu else "sequential")
    assert resolve_chain_method("auto", 3, 2) == "sequential"  # trials sharded over 2 devices
    with pytest.warns(PsyphyWarning, match="set_host_device_count"):
        assert resolve_chain_method("parallel", 2, 1) == resolve_chain_method("auto", 2, 1)
    with pytest.warns(PsyphyWarning, match="sharded over 2"):
        assert resolve_chain_method("threaded", 2, 2) == "sequential"
    monkeypatch.setattr(mcmc, "host_cores", lambda: 1)
    assert resolve_chain_method("auto", 2, 1) == "sequential"
    with pytest.raises(ValueError, match="chain_method must be one of"):
        resolve_chain_method("threads", 2)


@pytest.fixture(scope="module")
def p_small_posterior():
    """NUTS on P-small with basis_degree 1 (24 weights), started from a MAP fit.

    NUTS samples the default MAP-grade quadrature (8 x 4 nodes). (With
    basis_degree 2, 2 chains x 500 draws take about twice as long and gave
    r_hat of 1.007 and 1.013 for the worst Sigma entry on two seeds.)
    """
    problem = make_problem(basis_degree=1)
    model, _, data = problem
    fit = pp.fit_map(model, data, progress_bar=False)
    post = pp.fit_nuts(model, data, init_params=fit.params, num_warmup=300, num_samples=600,
                       num_chains=2, seed=0, progress_bar=False)
    return problem, post


@pytest.mark.study  # ~2-8 min on 2 cores: make test-studies
@pytest.mark.timeout(1800)  # the shared NUTS fixture took > 10 min on a loaded machine
def test_fit_nuts_converges_on_sigma_and_covers_the_truth(p_small_posterior):
    import arviz as az

    (model, truth, data), post = p_small_posterior
    assert post.model.task == model.task
    assert post.num_divergences == 0
    idata = pp.to_arviz(post)
    summary = az.summary(idata, var_names=["Sigma"], kind="diagnostics", round_to="none")
    assert len(summary) == 9 * 4
    assert summary["r_hat"].max() < 1.01, summary.sort_values("r_hat").tail()
    assert summary["ess_bulk"].min() > 100, summary.sort_values("ess_bulk").head()
    ci = posterior_sigma(post, prob=0.9)
    true_sigma = np.asarray(model.covariance(truth, ci.points), np.float64)
    iu = np.triu_indices(2)
    inside = ci.contains(true_sigma)[:, iu[0], iu[1]]  # (point, entry) pairs, no duplicates
    assert inside.mean() >= 0.8, inside


@pytest.mark.study  # shares the NUTS fixture above: make test-studies
@pytest.mark.timeout(1800)  # the shared NUTS fixture took > 10 min on a loaded machine
def test_laplace_and_nuts_sigma_bands_overlap(p_small_posterior):
    """On P-small the Laplace Gaussian and NUTS agree on Sigma: every 90% band overlaps.

    Also compared: the band widths (Laplace's within a factor 1.5 of NUTS's on
    average) and the medians (within half a NUTS band of each other at most points).
    """
    (model, _, data), post = p_small_posterior
    lap = pp.fit_laplace(model, data, num_draws=1200, progress_bar=False)
    a, b = posterior_sigma(post, prob=0.9), posterior_sigma(lap, prob=0.9)
    iu = np.triu_indices(2)
    lo_a, hi_a = a.lower[:, iu[0], iu[1]], a.upper[:, iu[0], iu[1]]
    lo_b, hi_b = b.lower[:, iu[0], iu[1]], b.upper[:, iu[0], iu[1]]
    assert np.all((lo_b <= hi_a) & (lo_a <= hi_b))
    ratio = np.mean(hi_b - lo_b) / np.mean(hi_a - lo_a)
    assert 1 / 1.5 < ratio < 1.5, ratio
    mid_a, mid_b = 0.5 * (lo_a + hi_a), 0.5 * (lo_b + hi_b)
    assert np.mean(np.abs(mid_a - mid_b) <= 0.5 * (hi_a - lo_a)) >= 0.8


@pytest.mark.study  # shares the NUTS fixture above, plus a second run: make test-studies
@pytest.mark.timeout(2400)
def test_nuts_on_the_map_grade_rule_matches_a_finer_rule(p_small_posterior):
    """NUTS on the default 8 x 4 quadrature and on 16 x 8 give the same Sigma posterior.

    Reference: an identical run on the finer rule. The two runs differ by Monte
    Carlo error: with ess_bulk > 100 per entry (the test above), the mean of one
    run has a standard error of about 0.1 posterior sd and a 5% or 95% quantile
    about 0.21 sd, so the difference of two runs about 0.14 and 0.3 sd. A 90% band is
    about 3.3 sd wide; the bounds, 0.25 and 0.4 band widths (0.8 and 1.3 sd), are
    4 to 6 times those errors, enough for the largest of 36 entries.
    """
    (model, _, data), post = p_small_posterior
    fit = pp.fit_map(model, data, progress_bar=False)
    fine = pp.fit_nuts(model, data, init_params=fit.params, num_warmup=300, num_samples=600,
                       num_chains=2, seed=0, progress_bar=False,
                       task=pp.Oddity(method="quadrature", num_angles=16, num_radial=8))
    assert fine.num_divergences == 0
    assert_same_sigma_posterior(post, fine)


def assert_same_sigma_posterior(post, reference):
    """Means within 0.25 and 5% / 95% quantiles within 0.4 of the reference's 90% band width."""
    a, b = posterior_sigma(post, prob=0.9), posterior_sigma(reference, prob=0.9)
    iu = np.triu_indices(2)
    lo_a, hi_a = a.lower[:, iu[0], iu[1]], a.upper[:, iu[0], iu[1]]
    lo_b, hi_b = b.lower[:, iu[0], iu[1]], b.upper[:, iu[0], iu[1]]
    mean_a, mean_b = a.mean[:, iu[0], iu[1]], b.mean[:, iu[0], iu[1]]
    width = hi_b - lo_b
    assert np.all(np.abs(mean_a - mean_b) <= 0.25 * width), np.abs(mean_a - mean_b) / width
    assert np.all(np.abs(lo_a - lo_b) <= 0.4 * width), np.abs(lo_a - lo_b) / width
    assert np.all(np.abs(hi_a - hi_b) <= 0.4 * width), np.abs(hi_a - hi_b) / width


@pytest.mark.study  # shares the NUTS fixture above, plus a second run: make test-studies
@pytest.mark.timeout(2400)
def test_nuts_with_the_fixed_gauge_matches_the_plain_sampler(p_small_posterior):
    """The reparameterised sampler (``gauge="fixed"``) has the plain one's Sigma posterior.

    Reference: the plain run of the fixture, same settings and seed. The bounds
    are those of the finer-rule test above, for the same reason: two runs with
    ess_bulk > 100 per entry differ by about 0.14 sd in the mean and 0.3 sd in a
    5% or 95% quantile; 0.25 and 0.4 band widths are 4 to 6 times that.
    """
    (model, _, data), post = p_small_posterior
    fit = pp.fit_map(model, data, progress_bar=False)
    fixed = pp.fit_nuts(model, data, init_params=fit.params, num_warmup=300, num_samples=600,
                        num_chains=2, seed=0, progress_bar=False, gauge="fixed")
    assert fixed.num_divergences == 0 and fixed.settings["gauge"] == "fixed"
    # The bounds below rest on ess_bulk > 100 per entry; r_hat only has to rule out
    # chains in different places (the first run gave 1.0106 and ess 590 over 36 entries).
    conv = pp.diagnostics.sigma_convergence(fixed)
    assert conv.min_ess_bulk > 100 and conv.max_rhat < 1.03, conv
    assert_same_sigma_posterior(fixed, post)


def test_hierarchical_models_keep_their_own_default_warmup(monkeypatch):
    """A WPPM gets defaults.DEFAULT_NUM_WARMUP and DEFAULT_MAX_TREE_DEPTH; a
    hierarchical model keeps its sampler's own 500 and 6 unless the caller sets
    them. Both get DEFAULT_TARGET_ACCEPT, 0.8."""
    import inspect

    import psyphy_pp.hierarchical as hier

    own = inspect.signature(hier.fit_nuts_hierarchical).parameters
    assert (own["num_warmup"].default, own["target_accept_prob"].default) == (500, 0.8)
    assert own["max_tree_depth"].default == 6
    assert (pp.defaults.DEFAULT_NUM_WARMUP, pp.defaults.DEFAULT_TARGET_ACCEPT) == (200, 0.8)
    assert pp.defaults.DEFAULT_MAX_TREE_DEPTH == (6, 7)
    seen: list[dict] = []
    monkeypatch.setattr(hier, "fit_nuts_hierarchical", lambda *a, **kw: seen.append(kw))
    model = pp.HierarchicalWPPM(base=pp.WPPM(input_dim=2, basis_degree=0))
    data = pp.TrialData([[0.0, 0.0]] * 2, [[0.2, 0.0]] * 2, [1, 0])
    pp.fit_nuts(model, data, progress_bar=False)
    pp.fit_nuts(model, data, num_warmup=7, target_accept_prob=0.9, max_tree_depth=5,
                progress_bar=False)
    assert "num_warmup" not in seen[0] and seen[0]["target_accept_prob"] == 0.8
    assert "max_tree_depth" not in seen[0]
    assert seen[1]["num_warmup"] == 7 and seen[1]["target_accept_prob"] == 0.9
    assert seen[1]["max_tree_depth"] == 5
