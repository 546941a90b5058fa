"""The hierarchical WPPM: limits against single-observer fits, files, errors, tools.

The default tests (files, observer index, errors) compile nothing. Every check
that fits (limits against single-observer fits, the tools, learnt tau, Laplace,
NUTS, the CLI, plots) is a study (``make test-studies``): even the smallest
hierarchical fit (the tools check, 35 s in a fresh-clone ``make test``) is over
what the default suite can add.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.hierarchical import (
    SITE_DELTA,
    SITE_W_SHARED,
    HierarchicalFit,
)

NAMES = ("ann", "bob", "cy")
GRID = pp.designs.grid_points(4, 2, -0.9, 0.9)  # where fields are compared


def _sigma(model: pp.WPPM, W) -> np.ndarray:
    return np.asarray(model.covariance({"W": np.asarray(W)}, GRID), np.float64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest entry-wise difference of two Sigma fields, relative to the largest entry."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def problem():
    """Three observers around a shared degree-1 field (tau 0.5), 144 trials each."""
    base = pp.WPPM(basis_degree=1, task=pp.Oddity(method="quadrature"))
    truth = pp.HierarchicalWPPM(base=base, tau=0.5).sample_prior(jax.random.PRNGKey(5), 3)
    Ws = np.asarray(pp.HierarchicalWPPM(base=base, tau=0.5).observer_weights(truth))
    parts = []
    for s in range(3):
        refs, comps = pp.designs.grid_design(base, {"W": Ws[s]}, grid_size=3, trials_per_ref=16,
                                             key=jax.random.PRNGKey(10 + s))
        parts.append(pp.simulate(base, {"W": Ws[s]}, refs, comps, key=jax.random.PRNGKey(20 + s)))
    data = pp.TrialData(np.concatenate([p.refs for p in parts]),
                        np.concatenate([p.comparisons for p in parts]),
                        np.concatenate([p.responses for p in parts]),
                        observer=np.repeat(np.arange(3), [p.num_trials for p in parts]),
                        observer_names=NAMES)
    return base, data, parts


@pytest.fixture(scope="module")
def small():
    """Three observers with 30 random trials each (no simulation: cheap to build)."""
    rng = np.random.default_rng(0)
    n = 90
    refs = rng.uniform(-0.8, 0.8, (n, 2))
    comps = np.clip(refs + rng.normal(0.0, 0.15, (n, 2)), -1, 1)
    data = pp.TrialData(refs, comps, (rng.random(n) < 0.7).astype(int),
                        observer=np.repeat(np.arange(3), 30), observer_names=NAMES)
    return pp.WPPM(basis_degree=1, task=pp.Oddity(method="quadrature")), data


def _fit(model, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pp.DataWarning)
        return pp.fit_map_scratch(model, data, progress_bar=False, **kw)


@pytest.mark.study
def test_tau_near_zero_is_the_pooled_fit(problem):
    """tau = 1e-3: the population's and every observer's field is the pooled fit's.

    Reference: the plain WPPM on all trials (observer index ignored), fitted by
    fit_map_scratch from the hierarchical W_shared. The posterior on these 432
    trials has more than one mode (from prior draws both kinds of fit can end in
    different ones), so the check is that the pooled fit, started at the
    hierarchical solution, stays there: the hierarchical fit is a pooled MAP.
    Deviations have prior sd 1e-3 of the prior's, so the observers' fields may
    differ from the pooled one by ~1e-3 relative; 2e-3 also covers the stopping
    error (tol 1e-5 on W).
    """
    base, data, _ = problem
    fit = _fit(pp.HierarchicalWPPM(base=base, tau=1e-3), data)
    W0 = np.asarray(fit.params[SITE_W_SHARED])
    pooled = _fit(base, pp.TrialData(data.refs, data.comparisons, data.responses),
                  init_params={"W": W0})
    ref = _sigma(base, pooled.params["W"])
    assert fit.converged and pooled.converged
    assert _rel(_sigma(base, W0), ref) < 2e-3
    for W in fit.observer_weight_draws()[0, 0]:
        assert _rel(_sigma(base, W), ref) < 2e-3


@pytest.mark.study
def test_tau_large_gives_each_observer_its_own_fit(problem):
    """tau = 10: each observer's field is its independent fit's.

    With tau = T the joint prior of W_1..W_S has covariance V (T^2 I + 1 1^T):
    each W_s has prior variance (1 + T^2) V, and the precision coupling one
    observer to the others is 1 / (T^2 (T^2 + S)) of V^-1, that is 1 / (T^2 + S)
    (1%) of the prior precision on W_s itself. The reference is fit_map_scratch of
    each observer alone under WPPM(variance_scale = (1 + T^2) * variance_scale),
    started from the hierarchical W_s (the posterior is multimodal at 144 trials).
    The bound 3e-2 (relative, on Sigma) is for that coupling: at 144 trials the
    prior sets the poorly measured directions, and 1% of its pull moved Sigma by
    1.6e-2 (bob) here; the observers' fields differ from each other by more than
    ten times the bound, so the check has teeth. A larger T does not tighten it:
    at T = 30 the prior is too weak for a 144-trial fit to converge.
    """
    base, data, parts = problem
    T = 10.0
    fit = _fit(pp.HierarchicalWPPM(base=base, tau=T), data)
    assert fit.converged
    wide = pp.WPPM(basis_degree=1, variance_scale=(1 + T**2) * base.variance_scale,
                   task=base.task)
    Ws = np.asarray(fit.observer_weight_draws()[0, 0])
    for s, part in enumerate(parts):
        alone = _fit(wide, part, init_params={"W": Ws[s]})
        assert alone.converged, NAMES[s]
        assert _rel(_sigma(base, Ws[s]), _sigma(base, alone.params["W"])) < 3e-2, NAMES[s]
        other = Ws[(s + 1) % len(parts)]
        assert _rel(_sigma(base, Ws[s]), _sigma(base, other)) > 0.3, NAMES[s]


@pytest.mark.study
def test_one_observer_reduces_to_the_plain_wppm(problem):
    """S = 1, tau fixed: W_1 = W_shared + Delta_1 has prior N(0, (1 + tau^2) V), and the
    joint mode's W_1 is the marginal mode (Gaussian prior): the fit is a MAP of the plain
    WPPM with variance_scale (1 + tau^2) times the base's. That fit, started at the
    hierarchical W_1, stays there within 1e-3 (stopping error). Measured: from prior
    draws the plain fit ends in another mode, 0.097 nats worse in total than this one."""
    base, _, parts = problem
    one = parts[0]
    data = pp.TrialData(one.refs, one.comparisons, one.responses,
                        observer=np.zeros(one.num_trials, int), observer_names=("solo",))
    tau = 0.5
    fit = _fit(pp.HierarchicalWPPM(base=base, tau=tau), data)
    W1 = np.asarray(fit.observer_weight_draws()[0, 0, 0])
    plain = _fit(pp.WPPM(basis_degree=1, variance_scale=(1 + tau**2) * base.variance_scale,
                         task=base.task), one, init_params={"W": W1})
    assert _rel(_sigma(base, W1), _sigma(base, plain.params["W"])) < 1e-3


def test_csv_subject_column_round_trips(tmp_path, small):
    _, data = small
    path = tmp_path / "obs.csv"
    data.to_csv(path)
    header = path.read_text().splitlines()[0]
    assert header.endswith(",subject")
    back = pp.TrialData.from_csv(path)
    assert back.observer_names == NAMES
    np.testing.assert_array_equal(back.observer, data.observer)
    np.testing.assert_array_equal(back.refs, data.refs)
    assert back.metadata["subject"].tolist() == [NAMES[i] for i in data.observer]
    back.to_csv(tmp_path / "again.csv")  # the column is written once, not twice
    assert (tmp_path / "again.csv").read_text() == path.read_text()
    npz = tmp_path / "obs.npz"
    data.save(npz)
    loaded = pp.TrialData.load(npz)
    assert loaded.observer_names == NAMES and (loaded.observer == data.observer).all()


def test_observer_column_and_first_appearance_order(tmp_path):
    path = tmp_path / "o.csv"
    path.write_text("ref_0,ref_1,comp_0,comp_1,response,observer\n"
                    "0,0,0.1,0,1,zed\n0,0,0,0.1,0,amy\n0,0,0.2,0,1,zed\n")
    data = pp.TrialData.from_csv(path)
    assert data.observer_names == ("zed", "amy")
    assert data.observer.tolist() == [0, 1, 0]
    assert data.observer_trials("amy").num_trials == 1


def test_bad_observer_input_is_refused():
    r, c, y = [[0.0, 0.0]] * 2, [[0.1, 0.0]] * 2, [1, 0]
    with pytest.raises(ValueError, match=r"observer must lie in 0 \.\. 1 .* got 2 at trial 1"):
        pp.TrialData(r, c, y, observer=[0, 2], observer_names=("a", "b"))
    with pytest.raises(ValueError, match=r"observer must have shape \(2,\).*got \(3,\)"):
        pp.TrialData(r, c, y, observer=[0, 1, 1], observer_names=("a", "b"))
    with pytest.raises(ValueError, match=r"observer_names must be distinct, got \['a', 'a'\]"):
        pp.TrialData(r, c, y, observer=[0, 1], observer_names=("a", "a"))
    with pytest.raises(ValueError, match="observer_names was given"):
        pp.TrialData(r, c, y, observer_names=("a",))
    data = pp.TrialData(r, c, y, observer=[0, 0], observer_names=("a", "b"))
    hmodel = pp.HierarchicalWPPM(base=pp.WPPM(basis_degree=1))
    with pytest.raises(ValueError, match=r"observers without trials: \['b'\]"):
        pp.fit_map(hmodel, data)
    with pytest.raises(ValueError, match="must have an observer index .* got observer=None; "
                                         "read a file with a 'subject'"):
        pp.fit_map(hmodel, pp.TrialData(r, c, y))
    with pytest.raises(ValueError, match=r"observer must be an index 0 \.\. 1 or one of the "
                                         r"names \['a', 'b'\], got 'z'"):
        data.observer_position("z")


def test_bad_model_arguments_are_refused():
    base = pp.WPPM(basis_degree=1)
    with pytest.raises(ValueError, match="tau"):
        pp.HierarchicalWPPM(base=base, tau=-1.0)
    with pytest.raises(ValueError, match="parameterization"):
        pp.HierarchicalWPPM(base=base, parameterization="sideways")
    with pytest.raises(ValueError, match="does not learn a lapse rate"):
        pp.HierarchicalWPPM(base=pp.WPPM(task=pp.Oddity(lapse_rate="learn")))
    with pytest.raises(ValueError, match="base must be a psyphy_pp.WPPM, got int"):
        pp.HierarchicalWPPM(base=3)  # type: ignore[arg-type]
    data = pp.TrialData([[0.0, 0.0]], [[0.1, 0.0]], [1], observer=[0], observer_names=("a",))
    with pytest.raises(ValueError, match=r"does not take \['learning_rate'\]"):
        pp.fit_map(pp.HierarchicalWPPM(base=base), data, learning_rate=1e-3)


@pytest.mark.study  # 35 s in a fresh-clone make test: it put the suite over 15 minutes
def test_observer_and_population_views_work_with_the_tools(small, tmp_path):
    """Per-observer and population fits are ordinary SavedFits: thresholds and files work;
    to_arviz names the observer dimension by the observer names, and its log-likelihood
    (the hierarchical gather of per-trial weights) equals the base WPPM's own on each
    observer's trials (float32: rtol 1e-5)."""
    base, data = small
    with warnings.catch_warnings():  # 40 steps: the views, not the optimum, are checked
        warnings.simplefilter("ignore", pp.ConvergenceWarning)
        fit = _fit(pp.HierarchicalWPPM(base=base, tau=0.5), data, num_steps=40)
    assert isinstance(fit, HierarchicalFit)
    obs = fit.observer("bob")
    np.testing.assert_allclose(obs.params["W"], np.asarray(fit.params[SITE_W_SHARED])
                               + np.asarray(fit.params[SITE_DELTA])[1])
    assert obs.data.num_trials == int(np.sum(data.observer == 1))
    pp.save_fit(tmp_path / "pop", fit.population())
    idata = pp.to_arviz(fit)
    assert idata.posterior["Sigma"].dims == ("chain", "draw", "observer", "ref_point", "row",
                                             "col")
    assert idata.posterior["observer"].values.tolist() == list(NAMES)
    assert idata.log_likelihood["y"].shape == (1, 1, data.num_trials)
    ll = base.log_likelihood(obs.params, obs.data.refs, obs.data.comparisons,
                             obs.data.responses)  # the base model's own likelihood code
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0, 0, data.observer == 1],
                               np.asarray(ll), rtol=1e-5, atol=1e-6)
    assert "3 observers" in fit.summary()


@pytest.mark.study
def test_learnt_tau_fits_and_svi_equals_scratch(problem):
    """Learnt tau: both MAP loops pick the same tau (golden-section search of the same
    Laplace evidence) and the same fields (within 1e-3, stopping error)."""
    base, data, _ = problem
    hmodel = pp.HierarchicalWPPM(base=base)
    a = pp.fit_map(hmodel, data, progress_bar=False)
    b = _fit(hmodel, data)
    assert abs(np.log(float(a.params["tau"]) / float(b.params["tau"]))) < 0.15
    for s in range(3):
        assert _rel(_sigma(base, a.observer_weight_draws()[0, 0, s]),
                    _sigma(base, b.observer_weight_draws()[0, 0, s])) < 1e-3


@pytest.mark.study
def test_evidence_hessian_blocks_match_jax_hessian(problem):
    """The likelihood Hessian blocks of the tau search equal jax.hessian of each
    observer's log-likelihood through the base WPPM's own code (float32, 1e-3 relative)."""
    from psyphy_pp.hierarchical._map import likelihood_hessians

    base, data, parts = problem
    hmodel = pp.HierarchicalWPPM(base=base)
    params = hmodel.sample_prior(jax.random.PRNGKey(0), 3)
    Ws = hmodel.observer_weights(params)
    dt = Ws.dtype
    _, L = likelihood_hessians(hmodel, np.asarray(data.refs, dt), np.asarray(data.comparisons, dt),
                                np.asarray(data.responses, dt), np.asarray(data.observer), Ws)
    for s, part in enumerate(parts):
        def nll(W, part=part):
            return -jax.numpy.sum(base.log_likelihood({"W": W}, part.refs, part.comparisons,
                                                      part.responses, devices=None))
        P = int(np.prod(base.weights_shape))
        ref = np.asarray(jax.hessian(nll)(Ws[s])).reshape(P, P)
        assert np.max(np.abs(np.asarray(L[s]) - ref)) < 1e-3 * np.max(np.abs(ref))


@pytest.mark.study
def test_laplace_and_nuts_run_and_bands_overlap(problem):
    """fit_laplace and fit_nuts on the hierarchical model (tau fixed): per-observer
    threshold bands exist and the two methods' 90% bands overlap everywhere."""
    base, data, _ = problem
    hmodel = pp.HierarchicalWPPM(base=base, tau=0.5)
    lap = pp.fit_laplace(hmodel, data, num_draws=200, progress_bar=False)
    nuts = pp.fit_nuts(hmodel, data, num_warmup=150, num_samples=150, num_chains=1,
                       progress_bar=False)
    depth = pp.defaults.HIERARCHICAL_MAX_TREE_DEPTH
    assert nuts.settings["max_tree_depth"] == (depth, depth)
    assert nuts.observer(0).settings["max_tree_depth"] == [depth, depth]  # kept when saved
    assert nuts.sample_stats["num_steps"].max() < 2**depth
    refs = np.zeros((1, 2))
    tl, tn = lap.thresholds(refs, 8), nuts.thresholds(refs, 8)
    for name in ("population",) + NAMES:
        lo1, _, hi1 = tl[name].band(0.9)
        lo2, _, hi2 = tn[name].band(0.9)
        assert np.all((lo1 <= hi2) & (lo2 <= hi1)), name


@pytest.mark.study
def test_cli_fit_on_a_subject_file_fits_the_hierarchical_model(small, tmp_path, capsys):
    from psyphy_pp.cli import main

    _, data = small
    path = tmp_path / "trials.csv"
    data.to_csv(path)
    out = tmp_path / "fit"
    status = main(["fit", str(path), "--out", str(out), "--basis-degree", "1", "--no-progress"])
    text = (out / "summary.txt").read_text()
    assert status in (0, 3)
    assert "HIERARCHICAL" in text and "3 observers" in text
    for i, name in enumerate(NAMES):
        assert f"fit_observer_{i}.npz: {name}" in text
        assert pp.load_fit(out / f"fit_observer_{i}.npz").data.num_trials == 30
    assert (out / "fit_population.npz").exists()


@pytest.mark.study  # 40-70 s on 2 cores, mostly compiling: make test-studies
def test_cli_nuts_on_a_subject_file_reports_convergence_per_observer(small, tmp_path, capsys):
    from psyphy_pp.cli import main

    _, data = small
    path = tmp_path / "trials.csv"
    data.to_csv(path)
    out = tmp_path / "fit"
    # Degree 0 and 1 chain x 10 draws: quick, and not converged (r_hat needs 2 chains).
    status = main(["fit", str(path), "--out", str(out), "--basis-degree", "0", "--extra-dims",
                   "0", "--method", "nuts", "--num-warmup", "10", "--num-draws", "10",
                   "--num-chains", "1", "--max-tree-depth", "3", "--no-progress"])
    assert status in (3, 5)  # 3 when the hierarchical MAP did not converge: it takes precedence
    err = capsys.readouterr().err
    assert "NUTS did not converge (Sigma of the population, observer" in err
    assert "r_hat needs at least 2 chains" in err and f"exit status {status}" in err
    text = (out / "summary.txt").read_text()
    for who in ("the population", *(f"observer {n}" for n in NAMES)):
        assert f"NUTS convergence (Sigma of {who} at the references): max r_hat" in text
    assert pp.load_fit(out / "fit_observer_0.npz").sample_shape == (1, 10)


@pytest.mark.study
def test_plot_observers_draws_one_panel_per_observer_and_the_population(small):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from psyphy_pp.hierarchical import plot_observers

    base, data = small
    fit = _fit(pp.HierarchicalWPPM(base=base, tau=0.5), data)
    fig = plot_observers(fit, np.zeros((1, 2)), num_directions=8, ncols=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 4 and titles[0].startswith("population")
    assert [t.split(" ")[0] for t in titles[1:]] == list(NAMES)
