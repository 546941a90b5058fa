import numpy as np
import optax
import pytest

import psyphy_pp as pp
from psyphy_pp.diagnostics import recovery_error
from tests.conftest import make_problem

FIT = dict(num_steps=60, optimizer="sgd", learning_rate=1e-4, progress_bar=False)


def _equivalence_problem():
    # Fresh-noise Monte Carlo with bandwidth 0.1. At the default bandwidth 0.01 the
    # MC objective is rough (Hessian eigenvalues ~1e4-1e5 in per-trial units), and
    # SGD at any useful rate amplifies float32 rounding until two differently
    # compiled programs part after ~10-20 steps: perturbing the initial W by 1e-7
    # does the same to the scratch loop alone. At bandwidth 0.1 the map is
    # smoother, yet still not contractive everywhere: trials whose logits cross the
    # clip at MAX_LOGIT switch their gradient on or off, so float32 rounding can
    # still grow (a 1e-7 perturbation of W reached 1e-3 to 1e-1 relative loss
    # differences by step 60, depending on the noise draws). Hence: float32
    # trajectories are compared over their first steps and, from a point far
    # along, step by step; float64 ones over all 60 steps.
    return make_problem(pp.Oddity(method="mc", num_samples=100, bandwidth=0.1))


@pytest.mark.study  # 60-90 s; SVI and scratch agree in make test on the default path
def test_svi_and_scratch_follow_the_same_trajectory():
    model, _, data = _equivalence_problem()
    a = pp.fit_map(model, data, **FIT)
    b = pp.fit_map_scratch(model, data, **FIT)
    assert a.losses.shape == b.losses.shape == (60,)
    assert b.losses[-1] < 0.6 * b.losses[0]  # the trajectory goes somewhere
    np.testing.assert_array_equal(a.init_params["W"], b.init_params["W"])
    # Five steps, not six: since the SVI step computes value and gradient through the
    # shared psyphy_pp.optim.optimizer_step (a differently compiled program than
    # before), float32 rounding on this chaotic objective reaches 1.3e-5 at step 6.
    # The x64 test below checks all 60 steps at rtol 1e-9.
    np.testing.assert_allclose(a.losses[:5], b.losses[:5], rtol=1e-5)
    # From the same point far along the trajectory, a few steps agree again.
    short = dict(FIT, num_steps=3, init_params=b.params)
    a3, b3 = pp.fit_map(model, data, **short), pp.fit_map_scratch(model, data, **short)
    np.testing.assert_allclose(a3.losses, b3.losses, rtol=1e-5)
    W_a, W_b = np.asarray(a3.params["W"]), np.asarray(b3.params["W"])
    assert np.max(np.abs(W_a - W_b)) <= 1e-5 * np.max(np.abs(W_b))


@pytest.mark.study  # 60-110 s; SVI and scratch agree in make test on the default path
def test_svi_and_scratch_follow_the_same_trajectory_x64(x64):
    model, _, data = _equivalence_problem()
    a = pp.fit_map(model, data, **FIT)
    b = pp.fit_map_scratch(model, data, **FIT)
    assert a.params["W"].dtype == np.float64
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-9)
    W_a, W_b = np.asarray(a.params["W"]), np.asarray(b.params["W"])
    assert np.max(np.abs(W_a - W_b)) <= 1e-9 * np.max(np.abs(W_b))


@pytest.mark.study  # two MC compilations, 60-120 s on 2 cores
def test_key_schedule_matters():
    """A different seed gives a different trajectory (the noise really is per step)."""
    model, _, data = _equivalence_problem()
    a = pp.fit_map_scratch(model, data, num_steps=5, progress_bar=False)
    b = pp.fit_map_scratch(model, data, num_steps=5, init_params=a.init_params, seed=1,
                           progress_bar=False)
    assert not np.allclose(a.losses[1:], b.losses[1:], rtol=1e-4)


@pytest.fixture(scope="module")
def p_small_default_task():
    return make_problem(pp.Oddity(method="quadrature"))


@pytest.mark.parametrize("fit", [pp.fit_map, pp.fit_map_scratch])
def test_map_recovers_the_field_better_than_its_start(fit, p_small_default_task):
    model, truth, data = p_small_default_task
    result = fit(model, data, num_steps=300, progress_bar=False)  # default Adam
    grid = pp.designs.grid_points(12, 2)
    before = recovery_error(model, result.init_params, truth, grid)
    after = recovery_error(model, result.params, truth, grid)
    assert after["bures_wasserstein"] < 0.7 * before["bures_wasserstein"]
    assert after["relative_frobenius"] < before["relative_frobenius"]
    assert np.mean(result.losses[-20:]) < result.losses[0]


def test_divergence_names_the_step(p_small):
    model, _, data = p_small
    with pytest.raises(pp.FitDivergedError, match="non-finite at step .*smaller learning_rate") as e:
        pp.fit_map_scratch(model, data, num_steps=50, optimizer="sgd", learning_rate=1e3,
                           progress_bar=False)
    W = np.asarray(e.value.last_params["W"])
    assert np.all(np.isfinite(W))


def test_any_optax_optimizer_and_init_params():
    model, truth, data = _equivalence_problem()
    a = pp.fit_map(model, data, num_steps=5, optimizer=optax.adam(1e-3), init_params=truth,
                   progress_bar=False)
    b = pp.fit_map_scratch(model, data, num_steps=5, optimizer=optax.adam(1e-3), init_params=truth,
                           progress_bar=False)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-4)
    np.testing.assert_array_equal(a.init_params["W"], truth["W"])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=-1e-3), "learning_rate"),
        (dict(momentum=1.0), "momentum"),
        (dict(clip_norm=0.0), "clip_norm"),
        (dict(optimizer="bfgs"), "optimizer"),
        (dict(learning_rate=1e-3), "learning_rate applies to optimizer 'adam' or 'sgd'"),
        (dict(optimizer="adam", momentum=0.5), "momentum applies to optimizer='sgd' only"),
        (dict(optimizer=optax.adam(1e-3), learning_rate=1e-3), "learning_rate applies"),
        (dict(tol=-1.0), "tol"),
        (dict(optimizer=3), "optimizer"),
        (dict(seed=-1), "seed"),
        (dict(init_params={"W": np.zeros((2, 2))}), r"params\['W'\] must have shape"),
    ],
)
@pytest.mark.parametrize("fit", [pp.fit_map, pp.fit_map_scratch])
def test_fits_reject_bad_settings(fit, kwargs, name, p_small):
    with pytest.raises(ValueError, match=name):
        fit(p_small.model, p_small.data, progress_bar=False, **kwargs)


def test_result_records_settings(p_small):
    fit = pp.fit_map(p_small.model, p_small.data, num_steps=3, progress_bar=False)
    assert fit.method == "svi"
    assert fit.settings["num_steps"] == 3
    assert fit.settings["task"] == p_small.model.task
    assert "per trial" in fit.loss_scaling


# -- issue 12: one right path ------------------------------------------------------


def _agreement(model, a, b):
    """Relative differences of Sigma on a 12 x 12 grid and of the gauge-aligned W."""
    from psyphy_pp.diagnostics import align_gauge

    grid = pp.designs.grid_points(12, 2)
    Sa, Sb = (np.asarray(model.covariance(f.params, grid)) for f in (a, b))
    Wa, Wb = (np.asarray(f.params["W"]) for f in (a, b))
    return (float(np.max(np.abs(Sa - Sb)) / np.max(np.abs(Sb))),
            float(np.max(np.abs(align_gauge(Wa, Wb) - Wb)) / np.max(np.abs(Wb))))


def _default_fits(model, data):
    return (pp.fit_map(model, data, progress_bar=False),
            pp.fit_map_scratch(model, data, progress_bar=False))


def test_default_model_uses_the_quadrature_and_lbfgs(p_small):
    assert p_small.model.task.method == "quadrature"
    assert pp.WPPM(input_dim=3).task.method == "quadrature"
    assert pp.WPPM(input_dim=1).task.method == "mc"
    fit = pp.fit_map(p_small.model, p_small.data, num_steps=2, progress_bar=False)
    assert fit.settings["optimizer"] == "lbfgs()"


@pytest.mark.parametrize("size", [
    "p_small",
    pytest.param("3000_trials", marks=pytest.mark.study),  # 60-90 s: make test-studies
])
def test_default_svi_and_scratch_reach_the_same_map(size):
    """Both loops, default settings, a whole default fit: converged, and the same MAP.

    W is compared after aligning the rotation gauge (Sigma = U U^T and the prior
    are invariant under a common right rotation of every W block, and the two
    loops end at different points of that flat orbit: raw W differs by ~1e-2 on
    P-std while Sigma agrees to ~1e-5). Sigma on a 12 x 12 grid must agree within
    1e-4 (relative), the bound of issue 12. The aligned W is held to 3e-4: on the
    3,000-trial degree-4 set it differed by 1.6e-4 (and 1.2e-4 once the scratch loop's
    data became arguments of its compiled step) while Sigma agreed within the bound.
    What remains lies along slowly varying rotations of the columns of U(x), which
    change Sigma only to second order (benchmarks/laplace_shape.py), so the stopping
    rule's tol of 1e-5 leaves them loosely pinned; issue 12 allows Sigma as the bound
    for differences along the rotations.
    """
    if size == "p_small":
        model, _, data = make_problem()
    else:  # a 3,000-trial set, degree 4 as in the paper's fits
        model, _, data = make_problem(grid_size=5, trials_per_ref=120, basis_degree=4)
    assert data.num_trials == (360 if size == "p_small" else 3000)
    a, b = _default_fits(model, data)
    assert a.converged is True and b.converged is True
    assert a.num_steps < 1000 and b.num_steps < 1000
    d_sigma, d_W = _agreement(model, a, b)
    assert d_sigma <= 1e-4, d_sigma
    assert d_W <= 3e-4, d_W
    assert abs(a.losses[-1] - b.losses[-1]) <= 1e-6
    # The loss settles: after the best loss, it never rises by more than rounding.
    for fit in (a, b):
        tail = fit.losses[int(np.argmin(fit.losses)):]
        assert np.max(tail) - np.min(fit.losses) <= 1e-6


def test_not_converged_warns_and_says_so(p_small):
    with pytest.warns(pp.ConvergenceWarning, match="did not converge in num_steps=3"):
        fit = pp.fit_map_scratch(p_small.model, p_small.data, num_steps=3, progress_bar=False)
    assert fit.converged is False
    assert fit.num_steps == 3
    assert "did not converge" in fit.convergence
    assert "converged=False" in repr(fit)


def test_fresh_noise_monte_carlo_is_not_assessed():
    model, _, data = make_problem(pp.Oddity(method="mc", num_samples=50))
    fit = pp.fit_map(model, data, num_steps=4, progress_bar=False)
    assert fit.converged is None
    assert fit.num_steps == 4
    assert "noisy" in fit.convergence
    assert fit.settings["optimizer"].startswith("adam")


def test_tol_none_runs_every_step(p_small):
    with pytest.warns(pp.ConvergenceWarning):
        fit = pp.fit_map(p_small.model, p_small.data, num_steps=25, tol=None, progress_bar=False)
    assert fit.num_steps == 25


def test_fit_quality_against_a_constant_observer(p_small):
    model, truth, data = p_small
    fit = pp.fit_map_scratch(model, data, progress_bar=False)
    p = float(np.mean(data.responses))
    assert fit.constant_nll_per_trial == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)))
    # The reported NLL is the loss without the prior (checked against the model).
    ll = model.log_likelihood(fit.params, data.refs, data.comparisons, data.responses, devices=1)
    assert fit.nll_per_trial == pytest.approx(-float(np.mean(ll)), abs=1e-5)
    assert fit.nll_per_trial < fit.constant_nll_per_trial  # the field explains something
    assert fit.nll_per_trial > 0


def test_sgd_is_one_argument_away(p_small):
    fit = pp.fit_map(p_small.model, p_small.data, optimizer="sgd", num_steps=5,
                     progress_bar=False)
    assert fit.settings["optimizer"] == "sgd(lr=0.0001, momentum=0.9)"
    assert fit.settings["window"] == 100


def test_divergence_keeps_a_partial_result(p_small):
    model, _, data = p_small
    with pytest.raises(pp.FitDivergedError) as e:
        pp.fit_map(model, data, num_steps=50, optimizer="sgd", learning_rate=1e3,
                   progress_bar=False)
    result = e.value.result
    assert result is not None and result.converged is False
    assert np.all(np.isfinite(np.asarray(result.params["W"])))
    assert "diverged" in result.convergence


# -- nothing lost, nothing misreported (issue 13) -----------------------------------------
def _settings(rule=None):
    return {"convergence": rule, "learning_rate": None, "optimizer": "test", "seed": 0,
            "tol": None, "num_trials": 1}


def test_run_loop_stops_at_a_step_boundary_on_sigint():
    import os
    import signal

    from psyphy_pp.inference import run_loop

    def step(state, t):
        if t == 3:
            os.kill(os.getpid(), signal.SIGINT)  # arrives "during" step 3, which completes
        return state - 0.1, float(np.sum(state**2))

    state, _, losses, info = run_loop(step, np.ones(2), lambda s: {"W": s}, 100, desc="t",
                                      progress_bar=False, settings=_settings())
    assert info["interrupted"] and len(losses) == 4 and info["checkpoint"].step == 4
    np.testing.assert_allclose(state, 0.6)


def test_loss_ending_higher_than_it_started_is_a_divergence():
    from psyphy_pp.inference import run_loop
    from psyphy_pp.optim import Convergence

    deterministic = _settings(Convergence(1e-5, 10, scale=1.0))  # a stopping rule: not noisy
    with pytest.raises(pp.FitDivergedError, match="ended higher than it started") as info:
        run_loop(lambda s, t: (s + 1.0, float(s[0])), np.zeros(1), lambda s: {"W": s}, 5,
                 desc="t", progress_bar=False, settings=deterministic)
    assert float(info.value.last_params["W"][0]) == 0.0  # the lowest loss's parameters
    # With fresh Monte Carlo noise (no stopping rule) a rise is not judged: it is noise.
    run_loop(lambda s, t: (s + 1.0, float(s[0])), np.zeros(1), lambda s: {"W": s}, 5,
             desc="t", progress_bar=False, settings=_settings())


def test_init_params_must_be_finite(p_small):
    W = np.full(p_small.model.weights_shape, np.nan)
    with pytest.raises(ValueError, match=r"init_params\['W'\] must be finite"):
        pp.fit_map(p_small.model, p_small.data, init_params={"W": W}, progress_bar=False)


def test_data_warnings_name_what_looks_wrong():
    model = pp.WPPM(basis_degree=1)
    data = pp.TrialData(np.zeros((3, 2)), np.full((3, 2), 0.1), np.zeros(3, int))
    found = pp.inference.data_warnings(model, data)
    assert [w.split(":")[0].split(",")[0] for w in found] == [
        "every response is 0", "the proportion correct is 0", "3 trials for 24 weights"]
    with pytest.warns(pp.DataWarning, match="every response is 0"):
        pp.fit_map_scratch(model, data, num_steps=1, progress_bar=False)


@pytest.mark.parametrize("fit", [
    # fit_map's resume also runs in test_cli's SIGINT test
    pytest.param(pp.fit_map, marks=pytest.mark.study),
    pp.fit_map_scratch,
])
def test_resume_ends_where_an_uninterrupted_fit_does(p_small, fit, tmp_path):
    """A fit stopped half-way (here by num_steps) and resumed from its checkpoint,
    saved and loaded, ends at the same W as one fit: to 1e-6 relative."""
    from psyphy_pp.checkpoint import Checkpoint

    model, data = p_small.model, p_small.data
    whole = fit(model, data, progress_bar=False)
    assert whole.converged
    half = fit(model, data, num_steps=whole.num_steps // 2, progress_bar=False)
    half.checkpoint.save(tmp_path / "c.npz")
    resumed = fit(model, data, progress_bar=False, resume=Checkpoint.load(tmp_path / "c.npz"))
    assert resumed.converged and resumed.num_steps == whole.num_steps
    W1, W2 = np.asarray(whole.params["W"]), np.asarray(resumed.params["W"])
    assert np.max(np.abs(W2 - W1)) <= 1e-6 * np.max(np.abs(W1))
    with pytest.raises(ValueError, match="seed must be what the interrupted fit used"):
        fit(model, data, progress_bar=False, seed=1, resume=half)


def test_a_damaged_or_foreign_checkpoint_is_a_one_line_error(tmp_path):
    """The checkpoint reader is the fit-file reader (_files.read_npz): no raw
    numpy, zip or AttributeError traceback, and no advice to allow pickles."""
    from psyphy_pp.checkpoint import Checkpoint

    good = tmp_path / "good.npz"
    Checkpoint("scratch", 1, [np.zeros(2)], [], np.ones(1), {"seed": 0}).save(good)
    cases = {"text.npz": b"ref_0,ref_1\n", "empty.npz": b"", "cut.npz": good.read_bytes()[:60]}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    for name in [*cases, "array.npy", "other.npz"]:
        with pytest.raises(ValueError, match="is not a psyphy_pp checkpoint") as info:
            Checkpoint.load(tmp_path / name)
        assert "\n" not in str(info.value) and "pickle" not in str(info.value)
    with pytest.raises(ValueError, match="no checkpoint at"):
        Checkpoint.load(tmp_path)
    assert Checkpoint.load(good).step == 1
