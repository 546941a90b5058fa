"""to_arviz for MAP and NUTS results, and the ArviZ-based plots."""

import dataclasses
import warnings

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import psyphy_pp as pp  # noqa: E402
from psyphy_pp._optional import import_arviz  # noqa: E402
from psyphy_pp.arviz_io import LOG_LIKELIHOOD_SEED, sigma_draws  # noqa: E402
from psyphy_pp.plotting import plot_posterior_ellipses, plot_rank, plot_trace  # noqa: E402
from tests.conftest import make_problem  # noqa: E402

az = import_arviz()

GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data")


@pytest.fixture(scope="module")
def small():
    """P-small-like problem on a 2 x 2 grid (basis_degree 1, 80 trials, fresh-noise MC)."""
    return make_problem(grid_size=2, trials_per_ref=20, basis_degree=1)


@pytest.fixture(scope="module")
def nuts_idata(small):
    model, _, data = small
    post = pp.fit_nuts(model, data, num_warmup=60, num_samples=60, num_chains=2,
                       progress_bar=False)
    return post, pp.to_arviz(post)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _group_warnings(record):
    return [str(w.message) for w in record
            if "group" in str(w.message).lower() or "log_likelihood" in str(w.message).lower()]


def test_to_arviz_nuts_has_every_group_with_named_dims(nuts_idata, small):
    post, idata = nuts_idata
    model, _, data = small
    for group in GROUPS:
        assert hasattr(idata, group), group
    assert idata.posterior["W"].dims == ("chain", "draw", "basis_1", "basis_2", "row", "W_col")
    assert idata.posterior["Sigma"].dims == ("chain", "draw", "ref_point", "row", "col")
    assert idata.posterior["Sigma"].shape == (2, 60, 4, 2, 2)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "trial")
    assert idata.observed_data["y"].dims == ("trial",)
    assert idata.constant_data["refs"].dims == ("trial", "stimulus_dim")
    assert idata.constant_data["ref_points"].dims == ("ref_point", "stimulus_dim")
    assert set(idata.sample_stats.data_vars) == {
        "diverging", "energy", "lp", "n_steps", "tree_depth", "step_size", "acceptance_rate"}
    for group in GROUPS:
        for dim in getattr(idata, group).dims:
            assert not dim.startswith(("dim_", "W_dim", "Sigma_dim", "y_dim")), (group, dim)
    np.testing.assert_array_equal(idata.observed_data["y"].values, data.responses)
    assert idata.posterior.attrs["inference_method"] == "nuts"
    assert "quadrature" in idata.posterior.attrs["task"]


def test_to_arviz_nuts_values_match_the_model(nuts_idata, small):
    post, idata = nuts_idata
    data = small.data
    model = post.model  # the deterministic (quadrature) model that NUTS sampled
    W = post.samples["W"][1, 7]
    S = model.covariance({"W": W}, data.unique_refs())
    np.testing.assert_allclose(idata.posterior["Sigma"].values[1, 7], S, rtol=1e-5, atol=1e-7)
    ll = model.log_likelihood({"W": W}, data.refs, data.comparisons, data.responses)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[1, 7], ll, rtol=1e-4, atol=1e-5)
    lp = np.asarray(model.log_prior({"W": W})) + np.sum(ll)
    assert idata.sample_stats["lp"].values[1, 7] == pytest.approx(float(lp), rel=1e-4)


def test_to_arviz_passes_summary_loo_waic_and_plot_trace_without_group_warnings(nuts_idata):
    _, idata = nuts_idata
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        summary = az.summary(idata, var_names=["Sigma"])
        loo = az.loo(idata, pointwise=True)
        waic = az.waic(idata)
        axes = az.plot_trace(idata, var_names=["Sigma"], coords={"ref_point": [0]})
    assert not _group_warnings(record), _group_warnings(record)
    assert list(summary.index[:2]) == ["Sigma[0, 0, 0]", "Sigma[0, 0, 1]"]
    assert np.isfinite(loo.elpd_loo) and loo.loo_i.shape == (80,)
    assert np.isfinite(waic.elpd_waic)
    assert np.asarray(axes).shape[1] == 2


@pytest.mark.parametrize("fit", [pp.fit_map, pp.fit_map_scratch], ids=["svi", "scratch"])
def test_to_arviz_map_is_one_chain_one_draw_with_a_loss_trace(fit, small):
    model, _, data = small
    result = fit(model, data, num_steps=7, progress_bar=False)
    idata = pp.to_arviz(result)
    assert idata.posterior["W"].shape == (1, 1) + model.weights_shape
    assert idata.sample_stats["loss"].dims == ("chain", "draw", "step")
    np.testing.assert_allclose(idata.sample_stats["loss"].values[0, 0], result.losses)
    assert idata.posterior.attrs["inference_method"] == result.method
    assert "deterministic task" in idata.log_likelihood.attrs["note"]  # the default quadrature
    np.testing.assert_allclose(
        idata.posterior["Sigma"].values[0, 0],
        model.covariance(result.params, data.unique_refs()), rtol=1e-5, atol=1e-8)  # float32, two compiled programs
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        summary = az.summary(idata, var_names=["Sigma"], kind="stats")
    assert not _group_warnings(record)
    assert len(summary) == 4 * 4


def test_to_arviz_map_with_fresh_noise_uses_a_fixed_key(small):
    model, _, data = small
    fresh = dataclasses.replace(model, task=pp.Oddity(method="mc", num_samples=50))
    assert fresh.task.needs_key
    result = pp.fit_map(fresh, data, num_steps=3, progress_bar=False)
    a, b = pp.to_arviz(result), pp.to_arviz(result)
    np.testing.assert_array_equal(a.log_likelihood["y"].values, b.log_likelihood["y"].values)
    key = jax.random.PRNGKey(LOG_LIKELIHOOD_SEED)
    expected = fresh.log_likelihood(result.params, data.refs, data.comparisons, data.responses, key)
    # atol: the two evaluations are compiled as different XLA programs (an eager
    # call vs. one traced inside to_arviz), so float32 entries near zero can
    # differ by a few ulps (4.8e-7 seen at a value of -0.0376).
    np.testing.assert_allclose(a.log_likelihood["y"].values[0, 0], expected, rtol=1e-5, atol=2e-6)
    assert "fixed key" in a.log_likelihood.attrs["note"]


def test_to_arviz_round_trips_through_netcdf(nuts_idata, tmp_path):
    _, idata = nuts_idata
    path = tmp_path / "post.nc"
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    np.testing.assert_array_equal(back.posterior["Sigma"].values, idata.posterior["Sigma"].values)
    assert back.posterior.attrs["diag_term"] == idata.posterior.attrs["diag_term"]
    assert int(back.sample_stats["diverging"].sum()) == int(idata.sample_stats["diverging"].sum())
    np.testing.assert_allclose(sigma_draws(back, [[0.0, 0.0]]), sigma_draws(idata, [[0.0, 0.0]]))


def test_to_arviz_passes_inference_data_through_and_rejects_others(nuts_idata):
    _, idata = nuts_idata
    assert pp.to_arviz(idata) is idata
    with pytest.raises(ValueError, match="MapResult .* NutsResult"):
        pp.to_arviz({"W": np.zeros(3)})


def test_sigma_draws_on_a_grid(nuts_idata, small):
    post, idata = nuts_idata
    model = small.model
    grid = pp.designs.grid_points(5, 2)
    S = sigma_draws(idata, grid)
    assert S.shape == (2, 60, 25, 2, 2)
    np.testing.assert_allclose(S[0, 3], model.covariance({"W": post.samples["W"][0, 3]}, grid),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"points must have shape \(P, 2\)"):
        sigma_draws(idata, np.zeros((3, 3)))


def test_sigma_draws_of_a_fit_without_data_needs_points(small):
    model, truth_params, _ = small
    truth = pp.SavedFit(model, truth_params, method="truth")  # no data
    grid = pp.designs.grid_points(3, 2)
    S = sigma_draws(truth, grid)
    assert S.shape == (1, 1, 9, 2, 2)
    np.testing.assert_allclose(S[0, 0], model.covariance(truth_params, grid), rtol=1e-5,
                               atol=1e-7)
    with pytest.raises(ValueError, match="has no data to take its reference points from"):
        sigma_draws(truth)


def test_posterior_plots_return_figures(nuts_idata, small):
    post, _ = nuts_idata
    fig = plot_posterior_ellipses(post, truth=small.truth)
    assert isinstance(fig, matplotlib.figure.Figure)
    fig = plot_trace(post, num_entries=3)
    assert len(fig.axes) == 6
    fig = plot_trace(post, var_name="Sigma", entries=[(0, 0, 1)])
    assert "Sigma[0,0,1]" in " ".join(ax.get_title() for ax in fig.axes)
    fig = plot_rank(post, num_entries=2)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="var_name must be one of"):
        plot_trace(post, var_name="U")
    with pytest.raises(ValueError, match="is not an index of W"):
        plot_rank(post, entries=[(9, 0, 0, 0)])
