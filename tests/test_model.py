import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

import psyphy_pp as pp


def test_log_density_is_log_prior_plus_log_likelihood_x64(p_small, x64):
    """numpyro's log_density of the model equals a hand computation in numpy."""
    model, truth, data = p_small
    params = {"W": np.asarray(model.sample_prior(jax.random.PRNGKey(9))["W"], np.float64)}
    key = jax.random.PRNGKey(5)

    @jax.jit  # for speed (created here, after x64 is on): eager, it compiled every small op
    def evaluate(params):
        lp, _ = log_density(model.numpyro_model, (data.refs, data.comparisons, data.responses),
                            {"key": key}, params)
        p = model.prob_correct(params, data.refs, data.comparisons, key)
        return lp, p, model.log_prior(params)

    lp, p, model_log_prior = evaluate(params)
    std = model.prior_std()
    W = params["W"]
    log_prior = np.sum(-0.5 * (W / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))
    p = np.asarray(p, np.float64)
    y = data.responses
    log_lik = np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))
    assert float(lp) == pytest.approx(log_prior + log_lik, rel=1e-10)
    assert float(model_log_prior) == pytest.approx(log_prior, rel=1e-12)


def test_model_samples_responses_without_observations():
    from numpyro.handlers import seed, trace

    model = pp.WPPM(basis_degree=1)
    refs = np.zeros((4, 2))
    tr = trace(seed(model.numpyro_model, 0)).get_trace(refs, refs + 0.1)
    assert tr["W"]["value"].shape == model.weights_shape
    assert tr["y"]["value"].shape == (4,)
    assert set(np.unique(tr["y"]["value"])) <= {0, 1}


def test_jit_matches_eager(p_small):
    model, truth, data = p_small
    key = jax.random.PRNGKey(1)
    eager = model.logits(truth, data.refs, data.comparisons, key)
    jitted = jax.jit(model.logits)(truth, jnp.asarray(data.refs), jnp.asarray(data.comparisons), key)
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-5)


def test_weights_of_the_wrong_shape_are_rejected():
    model = pp.WPPM(basis_degree=2)
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(3, 3, 2, 3\).*\(2, 2, 2, 3\)"):
        model.covariance({"W": np.zeros((2, 2, 2, 3))}, np.zeros((1, 2)))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(variance_scale=0.0), "variance_scale"),
        (dict(variance_scale=-1e-3), "variance_scale"),
        (dict(decay_rate=0.0), "decay_rate"),
        (dict(diag_term=-1e-4), "diag_term"),
        (dict(diag_term=0.0), "diag_term"),
        (dict(input_dim=0), "input_dim"),
        (dict(basis_degree=-1), "basis_degree"),
        (dict(extra_dims=1.5), "extra_dims"),
        (dict(task="mc"), "task"),
        (dict(input_dim=1, task=pp.Oddity(method="quadrature")), "quadrature"),
    ],
)
def test_wppm_rejects_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        pp.WPPM(**kwargs)


def test_prob_correct_validates_stimuli():
    model = pp.WPPM(basis_degree=1, task=pp.Oddity(method="mc", fixed_noise=True))
    params = model.sample_prior(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"comparisons must lie in \[-1, 1\].*row 1"):
        model.prob_correct(params, np.zeros((2, 2)), np.array([[0.0, 0.0], [1.2, 0.0]]))
    with pytest.raises(ValueError, match="refs must be finite.*nan"):
        model.prob_correct(params, np.array([[np.nan, 0.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"refs must have shape \(N, 2\)"):
        model.prob_correct(params, np.zeros((2, 3)), np.zeros((2, 3)))
