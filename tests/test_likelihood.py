"""The Monte Carlo oddity likelihood against an independent numpy simulation."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.likelihood import oddity_logits_mc
from tests.reference import oddity_prob_reference


def _random_config(rng, dim=2):
    A = rng.normal(size=(dim, dim)) * 0.1
    B = rng.normal(size=(dim, dim)) * 0.1
    S0 = A @ A.T + 1e-3 * np.eye(dim)
    S1 = B @ B.T + 1e-3 * np.eye(dim)
    r = rng.uniform(-0.5, 0.5, dim)
    c = r + rng.normal(size=dim) * 0.15
    return S0, S1, r, c


# jitted for speed (one compilation per shape and settings): eager, op by op, every
# call compiled dozens of small kernels.
@partial(jax.jit, static_argnames=("num_samples", "bandwidth"))
def _mc_logits(S0, S1, delta, key, *, num_samples, bandwidth):
    task = pp.Oddity(method="mc", num_samples=num_samples, bandwidth=bandwidth)
    return task.logits(S0, S1, delta, key)


def _mc_prob(S0, S1, r, c, *, num_samples=20_000, bandwidth=1e-3, seed=0):
    z = _mc_logits(jnp.asarray(S0)[None], jnp.asarray(S1)[None], jnp.asarray(r - c)[None],
                   jax.random.PRNGKey(seed), num_samples=num_samples, bandwidth=bandwidth)
    return float(jax.nn.sigmoid(z)[0])


@pytest.mark.parametrize("dim", [2, 3])
def test_mc_matches_numpy_reference(dim, rng):
    """20,000-sample MC (bandwidth 1e-3) vs 1e6-sample hard-threshold numpy MC.

    Tolerance: 4 combined standard errors (MC ~3.5e-3, reference ~5e-4) plus
    2e-3 for the logistic smoothing's bias at bandwidth 1e-3.
    """
    for _ in range(5):
        S0, S1, r, c = _random_config(rng, dim)
        ref, se = oddity_prob_reference(S0, S1, r, c, num_samples=1_000_000)
        p = _mc_prob(S0, S1, r, c)
        tol = 4 * np.hypot(se, np.sqrt(p * (1 - p) / 20_000)) + 2e-3
        assert abs(p - ref) < tol, (p, ref, tol)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mc_chance_at_equal_stimuli(dim):
    S = 0.01 * np.eye(dim)
    p = _mc_prob(S, S, np.zeros(dim), np.zeros(dim), num_samples=50_000)
    assert abs(p - 1 / 3) < 4 * np.sqrt(2 / 9 / 50_000) + 2e-3


def test_mc_matches_authors_reference_values():
    """Sigma = 0.0026 I, r = 0, c = (s, 0): the 2e6-sample values in hong2025_baselines."""
    expected = [0.399469, 0.603705, 0.806800, 0.928172, 0.979391]
    S = 0.0026 * np.eye(2)
    for s, ref in zip(np.linspace(0.05, 0.30, 5), expected):
        p = _mc_prob(S, S, np.zeros(2), np.array([s, 0.0]))
        assert abs(p - ref) < 4 * np.sqrt(ref * (1 - ref) / 20_000) + 2e-3


def test_mc_logits_keep_precision_near_ceiling_x64(x64):
    """Far above threshold, float32 logits equal float64 ones for the same noise.

    Here 1 - p ~ 1e-11: float32 ``p`` rounds to 1 and ``log1p(-p)`` would be
    ``-inf``; the estimator averages ``1 - p`` directly, with full relative
    precision. (That holds while ``1 - p`` is a normal float32, |logit| < 87;
    beyond it the logit floors, far past the clip at MAX_LOGIT ~ 13.8.)
    """
    S = 0.001 * np.eye(2)[None]
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (1, 2, 2, 2000)))
    args = (S, S, np.array([[0.3, 0.0]]), noise)
    mc = jax.jit(lambda *a: oddity_logits_mc(*a, 0.1))  # jitted for speed, per dtype
    z64 = mc(*(jnp.asarray(a) for a in args))
    z32 = mc(*(jnp.asarray(a, jnp.float32) for a in args))
    assert float(jax.nn.sigmoid(z32.astype(jnp.float32))[0]) == 1.0
    assert 20 < float(z64[0]) < 80
    np.testing.assert_allclose(z32, z64, rtol=1e-5)


def test_mc_logits_floor_keeps_values_and_gradients_finite():
    """When every sample is far past the boundary, 1 - p underflows in float32."""
    S = 0.001 * jnp.eye(2)[None]
    noise = jax.random.normal(jax.random.PRNGKey(0), (1, 2, 2, 500))

    def logit(d):
        return oddity_logits_mc(S, S, jnp.stack([d, 0.0])[None], noise, 0.01)[0]

    value_and_grad = jax.jit(jax.value_and_grad(logit))  # jitted for speed, compiled once
    for d in (0.0, 0.5, 5.0):
        z, g = value_and_grad(jnp.float32(d))
        assert np.isfinite(z) and np.isfinite(g), (d, z, g)


def test_mc_gradient_equals_autodiff_x64(x64, rng):
    """The hand-written single-pass gradient equals reverse-mode autodiff of the estimator."""
    from psyphy_pp.oddity.montecarlo import _mc_sweep
    from psyphy_pp.oddity.whitening import whiten

    weights = jnp.asarray([0.7, -1.3, 2.0])

    def total(est, S0, S1, delta, noise):
        return jnp.sum(weights * est(S0, S1, delta, noise))

    custom = lambda S0, S1, d, noise: oddity_logits_mc(S0, S1, d, noise, 0.05)
    plain = lambda S0, S1, d, noise: _mc_sweep(*whiten(S0, S1, d)[3:], noise, 0.05)[0]
    grad_custom = jax.grad(lambda *a: total(custom, *a), (0, 1, 2))
    grad_plain = jax.grad(lambda *a: total(plain, *a), (0, 1, 2))
    # jitted for speed (created here, after x64 is on): both gradients in one
    # compilation per dimension
    grads = jax.jit(lambda *a: (grad_custom(*a), grad_plain(*a)))
    for dim in (2, 3):
        S0, S1, r, c = _random_config(rng, dim)
        S0b = jnp.asarray(np.stack([S0, S1, S0]))
        S1b = jnp.asarray(np.stack([S1, S0, 4 * S1]))
        delta = jnp.asarray(np.stack([r - c, 0.3 * (r - c), np.zeros(dim)]))
        noise = jnp.asarray(rng.normal(size=(3, 2, dim, 400)))
        g_custom, g_plain = grads(S0b, S1b, delta, noise)
        for a, b in zip(g_custom, g_plain):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.max(np.abs(np.asarray(b))))


def test_fresh_noise_needs_a_key():
    model = pp.WPPM(basis_degree=1, task=pp.Oddity(method="mc"))
    params = model.sample_prior(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        model.prob_correct(params, np.zeros((2, 2)), np.zeros((2, 2)))


def test_fixed_noise_is_deterministic():
    model = pp.WPPM(basis_degree=1, task=pp.Oddity(method="mc", num_samples=50, fixed_noise=True))
    params = model.sample_prior(jax.random.PRNGKey(0))
    refs, comps = np.zeros((3, 2)), np.full((3, 2), 0.1)
    a = model.prob_correct(params, refs, comps, key=jax.random.PRNGKey(1))
    b = model.prob_correct(params, refs, comps)
    np.testing.assert_array_equal(a, b)


def test_trial_noise_does_not_depend_on_batch():
    """Trial n's noise depends on (key, n) only: the first trials of a batch equal a smaller batch."""
    model = pp.WPPM(basis_degree=1, task=pp.Oddity(method="mc", num_samples=50))
    params = model.sample_prior(jax.random.PRNGKey(0))
    refs = np.zeros((5, 2))
    comps = np.linspace(0.01, 0.2, 10).reshape(5, 2)
    key = jax.random.PRNGKey(2)
    prob = jax.jit(lambda r, c: model.prob_correct(params, r, c, key))  # jitted for speed
    full = prob(refs, comps)
    part = prob(refs[:3], comps[:3])
    np.testing.assert_allclose(full[:3], part, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_samples=0), "num_samples"),
        (dict(bandwidth=-1.0), "bandwidth"),
        (dict(method="exact"), "method"),
        (dict(num_samples=2.5), "num_samples"),
        (dict(polar_nodes=(4, 4, 2)), "polar_nodes"),
        (dict(polar_nodes=(4, 4, 2, 0, 3)), "polar_nodes"),
        (dict(generator="mt"), "generator"),
    ],
)
def test_oddity_rejects_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        pp.Oddity(**kwargs)


def test_oddity_default_is_auto_and_resolves_per_dimension():
    assert pp.Oddity().method == "auto"
    assert pp.Oddity().resolve(2).method == "quadrature"
    assert pp.Oddity().resolve(3).method == "quadrature"
    assert pp.Oddity().resolve(1).method == "mc"
    assert pp.WPPM().task == pp.Oddity(method="quadrature")
    # An unresolved task still evaluates: it resolves from the trials' dimension.
    S = np.broadcast_to(np.eye(2) * 0.01, (1, 2, 2))
    z = jax.jit(pp.Oddity().logits)(S, S, np.zeros((1, 2)))  # jitted for speed
    assert abs(float(jax.nn.sigmoid(z[0])) - 1 / 3) < 1e-4


@pytest.mark.parametrize("kwargs, input_dim, match", [
    (dict(num_samples=20), 2, "num_samples=20 only applies to method='mc'"),
    (dict(bandwidth=0.1, fixed_noise=True), 3, "bandwidth=0.1, fixed_noise=True only applies"),
    (dict(method="quadrature", num_samples=20), 2, "num_samples=20 only applies"),
    (dict(method="mc", num_angles=16), 2, "num_angles=16 only applies to method='quadrature'"),
    (dict(method="quadrature"), 1, "needs input_dim 2 or 3"),
])
def test_settings_of_the_other_method_are_an_error(kwargs, input_dim, match):
    with pytest.raises(ValueError, match=match):
        pp.WPPM(input_dim=input_dim, task=pp.Oddity(**kwargs))


def test_oddity_repr_shows_the_settings_of_its_method():
    assert repr(pp.Oddity(method="mc", num_samples=20)) == (
        "Oddity(method='mc', num_samples=20, bandwidth=0.01, fixed_noise=False, noise_seed=0, "
        "generator='hash')")
    assert "num_samples" not in repr(pp.Oddity(method="quadrature"))
    assert "num_angles=8, num_radial=4" in repr(pp.Oddity(method="quadrature"))


@pytest.mark.parametrize("method", ["mc", "quadrature"])
def test_chunked_evaluation_equals_one_block(method):
    """Blocks of 7 trials (with padding) give the same logits and gradients as one block."""
    kw = dict(method=method, num_samples=64) if method == "mc" else dict(method=method)
    model = pp.WPPM(basis_degree=1, task=pp.Oddity(**kw))
    chunked = pp.WPPM(basis_degree=1, task=pp.Oddity(chunk_size=7, **kw))
    params = model.sample_prior(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    refs = rng.uniform(-0.8, 0.8, (30, 2))
    comps = refs + rng.normal(0, 0.1, (30, 2))
    key = jax.random.PRNGKey(3)

    def logits_and_grad(m):
        """The logits and the gradient of their sum (a VJP with ones), one pass."""
        def fn(W):
            z, vjp = jax.vjp(lambda W: m.logits({"W": W}, refs, comps, key), W)
            return z, vjp(jnp.ones_like(z))[0]
        # jitted, logits and gradient in one compilation per model: run eagerly, op by
        # op, the gradient alone took ~90 s of compilation on 2 cores
        return jax.jit(fn)(params["W"])

    (z_chunked, g_chunked), (z_one, g_one) = logits_and_grad(chunked), logits_and_grad(model)
    np.testing.assert_allclose(z_chunked, z_one, rtol=1e-5, atol=1e-5)
    # atol relative to the largest entry (~200 here): each entry is a float32 sum of
    # per-trial terms of that size, added in a different order in blocks, so a small
    # entry (0.94) moved by 3.3e-4 = 1.8e-6 of the largest on this machine (the old
    # absolute atol 1e-4 failed here, also on the unchanged code).
    np.testing.assert_allclose(g_chunked, g_one, rtol=1e-4,
                               atol=1e-5 * float(jnp.max(jnp.abs(g_one))))


def test_quadrature_in_3d_is_the_polar_rule_and_agrees_with_mc(rng):
    """Oddity(method='quadrature') on 3D trials: the polar rule's logits, close to 20k-sample MC."""
    from psyphy_pp.quadrature3d import oddity_prob_polar_3d

    configs = [_random_config(rng, 3) for _ in range(6)]
    S0 = jnp.asarray(np.stack([c[0] for c in configs]), jnp.float32)
    S1 = jnp.asarray(np.stack([c[1] for c in configs]), jnp.float32)
    delta = jnp.asarray(np.stack([c[2] - c[3] for c in configs]), jnp.float32)
    task = pp.Oddity(method="quadrature")
    # Everything jitted: op by op, this test spent ~100 s compiling small kernels.
    p = jax.nn.sigmoid(jax.jit(task.logits)(S0, S1, delta))
    direct = jax.jit(lambda *a: oddity_prob_polar_3d(*a, nodes=task.polar_nodes))(S0, S1, delta)
    np.testing.assert_allclose(p, direct, atol=2e-6)
    # 20,000 samples: standard error <= 3.5e-3; 4 SE plus 2e-3 of smoothing bias
    # (bandwidth 1e-3) plus 4e-3 for the 384-node rule's worst error (3.5e-3 measured).
    mc = jax.nn.sigmoid(jax.jit(pp.Oddity(method="mc", num_samples=20_000, bandwidth=1e-3).logits)(
        S0, S1, delta, jax.random.PRNGKey(0)))
    assert np.all(np.abs(np.asarray(p) - np.asarray(mc)) < 4 * 3.5e-3 + 2e-3 + 4e-3)
    grad = jax.jit(jax.grad(lambda d: jnp.sum(task.logits(S0, S1, d))))(delta.at[0].set(0.0))
    assert np.all(np.isfinite(grad))
