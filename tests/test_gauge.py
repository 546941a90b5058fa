"""psyphy_pp.gauge: the fixed-gauge coordinates of W, against the plain weights.

The independent references are the covariance field of the plain weights (the
rotation must not change it) and the plain prior pushed through the rotation by
numpy's QR decomposition (Monte Carlo): its coordinates must have the
distribution :func:`coords_priors` says (the Bartlett decomposition).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import psyphy_pp as pp
from psyphy_pp.gauge import (
    SITE_GAUGE_DIAG,
    SITE_GAUGE_OFFDIAG,
    SITE_GAUGE_REST,
    coords_from_weights,
    coords_priors,
    weights_from_coords,
)


@pytest.mark.parametrize("input_dim, degree, extra", [(1, 2, 0), (2, 1, 1), (2, 2, 2), (3, 1, 1)])
def test_rotating_into_the_gauge_keeps_sigma_and_is_idempotent(input_dim, degree, extra, x64):
    model = pp.WPPM(input_dim=input_dim, basis_degree=degree, extra_dims=extra)
    W = np.asarray(model.sample_prior(jax.random.PRNGKey(7))["W"])
    coords = coords_from_weights(model, W)
    Wg = np.asarray(weights_from_coords(model, coords))
    block0 = Wg[(0,) * input_dim]
    assert np.allclose(np.triu(block0, 1), 0.0) and np.all(np.diag(block0) > 0)
    x = np.random.default_rng(0).uniform(-1, 1, (5, input_dim))
    np.testing.assert_allclose(model.covariance({"W": Wg}, x), model.covariance({"W": W}, x),
                               rtol=1e-10, atol=1e-14)
    again = coords_from_weights(model, Wg)
    for name, value in coords.items():  # a W already in the gauge is its own rotation
        np.testing.assert_allclose(again[name], value, rtol=1e-10, atol=1e-14)


def test_coordinates_of_rotated_prior_draws_have_the_bartlett_prior():
    """Plain prior draws, rotated by numpy's QR, against the fixed-gauge prior.

    20,000 draws: each coordinate's mean within 5 standard errors, its sd within
    5% (the relative sd of a sample sd is sqrt((kurtosis - 1) / 4n): 0.5% for the
    normal coordinates, 0.8% and 1.0% for the chi-square ones with 3 and 2 degrees
    of freedom, so 5% is 5 to 10 standard errors), and a Kolmogorov-Smirnov test of
    the chi-square diagonal at p > 1e-3. Each coordinate on its own; their
    independence is not tested here (the P-small study test compares whole
    posteriors).
    """
    model = pp.WPPM(input_dim=2, basis_degree=1, extra_dims=1)
    n = 20_000
    W = np.asarray(jax.vmap(lambda k: model.sample_prior(k)["W"])(
        jax.random.split(jax.random.PRNGKey(0), n)), np.float64)
    rotated = [coords_from_weights(model, w) for w in W]
    priors = coords_priors(model)
    assert set(priors) == {SITE_GAUGE_DIAG, SITE_GAUGE_OFFDIAG, SITE_GAUGE_REST}
    for name, prior in priors.items():
        mc = np.stack([r[name] for r in rotated])
        mean, sd = np.asarray(prior.base_dist.mean), np.sqrt(np.asarray(prior.base_dist.variance))
        mean, sd = np.broadcast_to(mean, mc.shape[1:]), np.broadcast_to(sd, mc.shape[1:])
        assert np.all(np.abs(mc.mean(0) - mean) < 5 * sd / np.sqrt(n)), name
        np.testing.assert_allclose(mc.std(0), sd, rtol=0.05, err_msg=name)
    diag = np.stack([r[SITE_GAUGE_DIAG] for r in rotated])
    for i, df in enumerate(np.asarray(priors[SITE_GAUGE_DIAG].base_dist.df)):
        assert df == 3 - i
        assert stats.kstest(diag[:, i], stats.chi2(df).cdf).pvalue > 1e-3


def test_a_singular_constant_block_has_no_gauge():
    model = pp.WPPM(input_dim=2, basis_degree=1)
    W = np.zeros(model.weights_shape)
    with pytest.raises(ValueError, match=r"W: the constant block.*rank input_dim \(2\).*gauge='free'"):
        coords_from_weights(model, W)


def test_numpyro_model_with_the_fixed_gauge_records_W():
    from numpyro import handlers

    model = pp.WPPM(input_dim=2, basis_degree=1)
    x = jnp.zeros((3, 2))
    trace = handlers.trace(handlers.seed(model.numpyro_model, 0)).get_trace(
        x, x + 0.05, jnp.ones(3), gauge="fixed")
    assert trace["W"]["type"] == "deterministic"
    assert trace["W"]["value"].shape == model.weights_shape
    assert {SITE_GAUGE_DIAG, SITE_GAUGE_OFFDIAG, SITE_GAUGE_REST} <= set(trace)
    with pytest.raises(ValueError, match="gauge must be one of"):
        model.numpyro_model(x, x, gauge="pinned")
    learns = pp.WPPM(input_dim=2, basis_degree=1, task=pp.Oddity(lapse_rate="learn"))
    trace = handlers.trace(handlers.seed(learns.numpyro_model, 0)).get_trace(
        x, x + 0.05, jnp.ones(3), gauge="fixed")
    assert trace["lapse_rate"]["type"] == "sample" and trace["W"]["type"] == "deterministic"


def test_coords_from_weights_checks_the_shape():
    model = pp.WPPM(input_dim=2, basis_degree=1)
    with pytest.raises(ValueError, match="shape"):
        coords_from_weights(model, np.ones((2, 2, 2, 2)))


def test_fit_nuts_with_the_fixed_gauge_returns_draws_of_W_in_the_gauge():
    model = pp.WPPM(input_dim=2, basis_degree=0, extra_dims=1)
    data = pp.TrialData([[0.0, 0.0]] * 4, [[0.2, 0.0]] * 4, [1, 1, 0, 1])
    W0 = np.asarray(model.sample_prior(jax.random.PRNGKey(2))["W"])
    post = pp.fit_nuts(model, data, num_warmup=10, num_samples=6, num_chains=1, gauge="fixed",
                       init_params={"W": W0}, progress_bar=False,
                       task=pp.Oddity(method="mc", fixed_noise=True, num_samples=16))
    assert set(post.samples) == {"W"} and post.samples["W"].shape == (1, 6, 1, 1, 2, 3)
    assert post.settings["gauge"] == "fixed"
    block0 = post.samples["W"][0, :, 0, 0]
    assert np.all(block0[:, 0, 1:] == 0) and np.all(block0[:, 1, 2] == 0)


def test_hierarchical_nuts_refuses_the_fixed_gauge_before_running():
    model = pp.HierarchicalWPPM(base=pp.WPPM(input_dim=2, basis_degree=0))
    data = pp.TrialData([[0.0, 0.0]] * 2, [[0.2, 0.0]] * 2, [1, 0])
    with pytest.raises(ValueError, match="gauge='fixed' is not available for a hierarchical"):
        pp.fit_nuts(model, data, gauge="fixed", progress_bar=False)


def test_cli_refuses_the_fixed_gauge_for_several_observers(tmp_path, capsys):
    from psyphy_pp.cli import main

    csv = tmp_path / "t.csv"
    rows = [f"0,0,0.1,0,{i % 2},{'ab'[i % 2]}" for i in range(8)]
    csv.write_text("ref_0,ref_1,comp_0,comp_1,response,subject\n" + "\n".join(rows) + "\n")
    code = main(["fit", str(csv), "--out", str(tmp_path / "o"), "--method", "nuts",
                 "--gauge", "fixed", "--no-progress"])
    assert code == 1  # the CLI's status for a refused argument
    assert "--gauge fixed is not available for a hierarchical fit" in capsys.readouterr().err
