"""The lapse rate: Oddity(lapse_rate=...), simulate(lapse_rate=...) and learning it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import psyphy_pp as pp
from psyphy_pp.model import SITE_LAPSE, SITE_W
from psyphy_pp.oddity import lapse_logits
from psyphy_pp.results import lapse_draws, param_draws
from psyphy_pp.thresholds import threshold_task, trial_probabilities

from .conftest import make_problem

TRUE_LAPSE = 0.05


def _closed_form(z: np.ndarray, lam: float) -> np.ndarray:
    """logit(lambda/3 + (1 - lambda) sigmoid(z)) in float64, both tails written out."""
    p = lam / 3 + (1 - lam) / (1 + np.exp(-z))
    q = 2 * lam / 3 + (1 - lam) / (1 + np.exp(z))  # 1 - p without cancellation
    return np.log(p) - np.log(q)


@pytest.mark.parametrize("lam", [1e-6, 1e-3, 0.05, 0.3, 0.9])
def test_lapse_logits_match_numpy_closed_form_x64(lam, x64):
    z = np.linspace(-30.0, 30.0, 241)
    got = np.asarray(lapse_logits(jnp.asarray(z), lam))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _closed_form(z, lam), rtol=1e-10, atol=1e-12)


def test_lapse_logits_zero_rate_is_exactly_z_with_finite_gradient():
    z = jnp.linspace(-20.0, 20.0, 41, dtype=jnp.float32)
    assert bool(jnp.all(lapse_logits(z, 0.0) == z))
    g = jax.grad(lambda lam: jnp.sum(lapse_logits(z, lam)))(0.0)
    assert np.isfinite(float(g))


def test_lapse_logits_bound_probability_by_the_lapse():
    p = jax.nn.sigmoid(lapse_logits(jnp.array([-50.0, 50.0]), 0.3))
    np.testing.assert_allclose(np.asarray(p), [0.1, 0.8], rtol=1e-5)


def test_default_task_is_unchanged():
    assert repr(pp.Oddity()) == "Oddity(method='auto')"
    assert pp.Oddity(lapse_rate=0.0) == pp.Oddity()
    assert "lapse" not in repr(pp.Oddity().resolve(2))
    assert repr(pp.Oddity(lapse_rate=0.05).resolve(2)).endswith(", lapse_rate=0.05)")
    assert repr(pp.Oddity(lapse_rate="learn", lapse_prior=(1, 19))).endswith(
        "lapse_rate='learn', lapse_prior=(1.0, 19.0))")


def test_zero_lapse_fit_is_bit_for_bit_the_lapse_free_fit():
    # A zero rate is no lapse term at all: the same task, the same sample sites and
    # the same fit. (Against the code before lapses existed, a 10-step fit_map and
    # thresholds on P-small gave identical bits.)
    model = pp.WPPM(basis_degree=1)
    zero = pp.WPPM(basis_degree=1, task=pp.Oddity(lapse_rate=0.0))
    assert zero == model and hash(zero) == hash(model) and not zero.task.has_lapse
    truth = model.sample_prior(jax.random.PRNGKey(1))
    data = pp.simulate(model, truth, [[0.0, 0.0], [0.5, 0.2]] * 20, [[0.1, 0.0], [0.5, 0.3]] * 20,
                       key=jax.random.PRNGKey(2))
    trace = numpyro.handlers.trace(numpyro.handlers.seed(zero.numpyro_model, 0)).get_trace(
        data.refs, data.comparisons, data.responses)
    assert set(trace) == {SITE_W, "trials", "y"}
    a = pp.fit_map(model, data, num_steps=5, tol=None, progress_bar=False)
    b = pp.fit_map(zero, data, num_steps=5, tol=None, progress_bar=False)
    assert set(b.params) == {SITE_W}
    np.testing.assert_array_equal(np.asarray(a.params[SITE_W]), np.asarray(b.params[SITE_W]))
    np.testing.assert_array_equal(a.losses, b.losses)
    assert repr(a) == repr(b) and "lapse" not in repr(a)


def test_simulate_zero_lapse_draws_the_same_responses():
    prob = make_problem()
    key = jax.random.PRNGKey(4)  # the key make_problem simulated with
    again = pp.simulate(prob.model, prob.truth, prob.data.refs, prob.data.comparisons, key=key,
                        lapse_rate=0.0)
    np.testing.assert_array_equal(again.responses, prob.data.responses)


def test_simulate_lapses_change_the_expected_share_of_answers():
    # Each trial lapses with probability lam and then answers correctly with
    # probability 1/3, so given the lapse-free answer y0 (same key) a lapse
    # changes it with probability 2/3 (y0 = 1) or 1/3 (y0 = 0): the share of
    # changed answers has expectation lam * mean(1/3 + y0/3). Tolerance: 4
    # binomial standard deviations (about 0.0045 at N = 20,000, lam = 0.2).
    model = pp.WPPM(basis_degree=1)
    truth = model.sample_prior(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    n, lam = 20_000, 0.2
    refs = rng.uniform(-0.8, 0.8, (n, 2))
    comps = np.clip(refs + rng.normal(0, 0.15, (n, 2)), -1, 1)
    key = jax.random.PRNGKey(7)
    y0 = pp.simulate(model, truth, refs, comps, key=key).responses
    y = pp.simulate(model, truth, refs, comps, key=key, lapse_rate=lam).responses
    changed = float(np.mean(y != y0))
    expected = lam * float(np.mean(1 / 3 + y0 / 3))
    sd = np.sqrt(expected * (1 - expected) / n)
    assert abs(changed - expected) < 4 * sd, (changed, expected, sd)


def test_prob_correct_includes_the_lapse_and_thresholds_do_not():
    prob = make_problem()
    lapsing = dataclasses.replace(prob.model, task=pp.Oddity(lapse_rate=0.2))
    refs, comps = prob.data.refs[:50], prob.data.comparisons[:50]
    p0 = np.asarray(prob.model.prob_correct(prob.truth, refs, comps, devices=1), np.float64)
    p = np.asarray(lapsing.prob_correct(prob.truth, refs, comps, devices=1), np.float64)
    np.testing.assert_allclose(p, 0.2 / 3 + 0.8 * p0, rtol=2e-6, atol=2e-6)
    P = trial_probabilities(lapsing, prob.truth, refs, comps)
    np.testing.assert_allclose(P, 0.2 / 3 + 0.8 * p0, rtol=2e-6, atol=2e-6)
    grid = [[0.0, 0.0], [0.5, -0.5]]
    a = pp.thresholds(prob.model, prob.truth, grid, num_directions=8)
    b = pp.thresholds(lapsing, prob.truth, grid, num_directions=8)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_deterministic_tasks_keep_the_lapse_settings():
    task = pp.Oddity(method="mc", lapse_rate="learn", lapse_prior=(3, 30))
    nuts_task = pp.nuts.deterministic_task(task, 2)
    assert nuts_task.method == "quadrature" and nuts_task.deterministic
    assert (nuts_task.lapse_rate, nuts_task.lapse_prior) == ("learn", (3.0, 30.0))
    assert not threshold_task(task, 2).has_lapse


@pytest.mark.parametrize("kwargs,match", [
    (dict(lapse_rate=1.0), r"lapse_rate must be a number in \[0, 1\) or 'learn', got 1.0"),
    (dict(lapse_rate=-0.1), "lapse_rate must be"),
    (dict(lapse_rate="lern"), "got 'lern'"),
    (dict(lapse_rate=True), "got True"),
    (dict(lapse_rate="learn", lapse_prior=(0, 10)), r"lapse_prior must be a pair \(a, b\)"),
    (dict(lapse_rate="learn", lapse_prior=(2,)), "lapse_prior must be a pair"),
    (dict(lapse_rate=0.05, lapse_prior=(1, 19)), "lapse_prior only applies to lapse_rate='learn'"),
])
def test_oddity_rejects_bad_lapse_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pp.Oddity(**kwargs)


def test_bad_lapse_arguments_raise_before_compiling():
    prob = make_problem()
    learn = dataclasses.replace(prob.model, task=pp.Oddity(lapse_rate="learn"))
    with pytest.raises(ValueError, match="lapse_rate must be a number in"):
        pp.simulate(prob.model, prob.truth, prob.data.refs, prob.data.comparisons,
                    key=jax.random.PRNGKey(0), lapse_rate=1.5)
    with pytest.raises(ValueError, match="must have key 'lapse_rate'"):
        learn.prob_correct(prob.truth, prob.data.refs[:2], prob.data.comparisons[:2])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        learn.prob_correct({**prob.truth, SITE_LAPSE: 1.2}, prob.data.refs[:2],
                           prob.data.comparisons[:2])
    with pytest.raises(ValueError, match="fit_map_scratch cannot learn the lapse rate"):
        pp.fit_map_scratch(learn, prob.data, progress_bar=False)
    with pytest.raises(ValueError, match="fit_laplace cannot learn the lapse rate"):
        pp.fit_laplace(learn, prob.data, progress_bar=False)
    with pytest.raises(ValueError, match=r"init_params\['lapse_rate'\] must be a number in \(0, 1\)"):
        pp.fit_map(learn, prob.data, init_params={**prob.truth, SITE_LAPSE: 0.0},
                   progress_bar=False)
    with pytest.raises(ValueError, match="params must have key 'lapse_rate'"):
        pp.SavedFit(learn, prob.truth)


@pytest.mark.study  # 45 s in CI (make test ran 15.4 min): make test-studies
def test_fixed_lapse_works_in_every_fit():
    prob = make_problem()
    fixed = dataclasses.replace(prob.model, task=pp.Oddity(lapse_rate=0.05))
    a = pp.fit_map(fixed, prob.data, num_steps=20, tol=None, progress_bar=False)
    b = pp.fit_map_scratch(fixed, prob.data, num_steps=20, tol=None, progress_bar=False)
    assert set(a.params) == set(b.params) == {SITE_W}
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4)
    assert lapse_draws(a) is None


# -- a learnt lapse rate ---------------------------------------------------------------

def _recovery_data(num_trials: int = 2400):
    """Degree-2 truth, lambda = 0.05; comparisons at 4 Mahalanobis radii (easy trials too)."""
    truth_model = pp.WPPM(basis_degree=2, diag_term=1e-9)
    truth = truth_model.sample_prior(jax.random.PRNGKey(123))
    per_ref = num_trials // 100
    refs, comps = zip(*[
        pp.designs.grid_design(truth_model, truth, grid_size=5, trials_per_ref=per_ref,
                               mahalanobis_radius=r, key=jax.random.PRNGKey(10 + i))
        for i, r in enumerate((1.5, 2.5, 4.0, 7.0))])
    return pp.simulate(truth_model, truth, np.concatenate(refs), np.concatenate(comps),
                       key=jax.random.PRNGKey(4), lapse_rate=TRUE_LAPSE)


@pytest.fixture(scope="module")
def learnt_fit():
    model = pp.WPPM(basis_degree=2, task=pp.Oddity(lapse_rate="learn"))
    return pp.fit_map(model, _recovery_data(), progress_bar=False)


def test_learnt_lapse_map_recovers_the_rate(learnt_fit):
    # 2,400 trials, 600 of them far (radius 7, P_model ~0.93): the standard error
    # of the rate is about 0.012, plus the pull of the Beta(2, 38) prior. Measured:
    # 0.037 at 3,000 trials; tolerance 0.03 (about 2.5 standard errors).
    lam = float(learnt_fit.params[SITE_LAPSE])
    assert learnt_fit.converged
    assert abs(lam - TRUE_LAPSE) < 0.03, lam
    assert "lapse_rate=" in repr(learnt_fit)
    draws = param_draws(learnt_fit)
    assert draws[SITE_LAPSE].shape == (1, 1) and draws[SITE_W].shape[:2] == (1, 1)


def test_learnt_lapse_save_load_round_trip(learnt_fit, tmp_path):
    path = tmp_path / "fit.npz"
    pp.save_fit(path, learnt_fit)
    saved = pp.load_fit(path)
    assert saved.model == learnt_fit.model
    assert float(saved.params[SITE_LAPSE]) == float(learnt_fit.params[SITE_LAPSE])
    assert "lapse_rate=" in repr(saved)
    # Posterior draws: (chains, draws), with an interval in the repr.
    W = np.repeat(np.asarray(learnt_fit.params[SITE_W])[None, None], 4, axis=1)
    post = pp.SavedFit(learnt_fit.model, {SITE_W: W, SITE_LAPSE: np.full((1, 4), 0.04)},
                       kind="posterior", method="nuts")
    pp.save_fit(tmp_path / "post.npz", post)
    back = pp.load_fit(tmp_path / "post.npz")
    np.testing.assert_array_equal(back.params[SITE_LAPSE], np.full((1, 4), 0.04))
    assert "interval" in repr(back)


def test_fit_files_without_a_lapse_term_do_not_mention_it(tmp_path):
    import json

    model = pp.WPPM(basis_degree=1)
    pp.save_fit(tmp_path / "f.npz", pp.SavedFit(model, model.sample_prior(jax.random.PRNGKey(0))))
    header = json.loads(str(np.load(tmp_path / "f.npz")["header"]))
    assert "lapse_rate" not in header["model"]["task"]  # readable by earlier versions


def test_learnt_lapse_to_arviz_and_goodness(learnt_fit):
    idata = pp.to_arviz(learnt_fit)
    assert idata.posterior[SITE_LAPSE].dims == ("chain", "draw")
    assert float(idata.posterior[SITE_LAPSE].values[0, 0]) == pytest.approx(
        float(learnt_fit.params[SITE_LAPSE]))
    ll = idata.log_likelihood["y"].values[0, 0]
    direct = learnt_fit.model.log_likelihood(learnt_fit.params, learnt_fit.data.refs,
                                             learnt_fit.data.comparisons,
                                             learnt_fit.data.responses)
    np.testing.assert_allclose(ll, np.asarray(direct), rtol=1e-4, atol=1e-6)
    gof = pp.goodness_of_fit(learnt_fit, num_sims=50)
    assert np.isfinite(gof.deviance)


@pytest.mark.study  # about 2.5 min on 2 cores
def test_fit_nuts_samples_the_lapse_rate():
    data = _recovery_data(1200)
    model = pp.WPPM(basis_degree=2, task=pp.Oddity(lapse_rate="learn"))
    post = pp.fit_nuts(model, data, num_warmup=50, num_samples=50, num_chains=1,
                       progress_bar=False)
    lam = post.samples[SITE_LAPSE]
    assert lam.shape == (1, 50) and np.all((lam > 0) & (lam < 1))
    assert "lapse_rate=" in repr(post)
    assert pp.to_arviz(post).posterior[SITE_LAPSE].shape == (1, 50)


@pytest.mark.study  # 6,000 trials: 5 MAP fits and a Hessian, about 3.5 min on 2 cores
def test_acceptance_study():
    # Measured (2026-11-28): learnt lambda 0.062, 95% Laplace interval on the logit
    # scale [0.046, 0.086] (profile deviance 3.2 and 4.5 at its ends, against 3.84);
    # median relative threshold error 0.059 with the learnt lapse, 0.115 without.
    from benchmarks.lapse_study import run

    out = run()
    assert out["covers"], out
    assert 2.0 < out["profile_deviance_at_lower"] < 6.5, out  # the interval is a fair one
    assert 2.0 < out["profile_deviance_at_upper"] < 6.5, out
    assert out["threshold_error_learnt"] < out["threshold_error_plain"], out


@pytest.mark.parametrize("argv,message", [
    (["simulate", "{d}/s.csv", "--lapse-rate", "learn"],
     "--lapse-rate must be a number in [0, 1), got 'learn'"),
    (["simulate", "{d}/s.csv", "--lapse-rate", "1"], "--lapse-rate must be a number in [0, 1)"),
    (["fit", "{d}/t.csv", "--lapse-rate", "often"],
     "--lapse-rate must be a number in [0, 1) or 'learn', got 'often'"),
    (["fit", "{d}/t.csv", "--lapse-rate", "learn", "--method", "laplace"],
     "--lapse-rate learn does not work with --method laplace"),
])
def test_cli_checks_lapse_rate_before_computing(tmp_path, capsys, argv, message):
    from psyphy_pp.cli import main

    (tmp_path / "t.csv").write_text("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,1\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([a.format(d=tmp_path) for a in argv]) == 1
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
