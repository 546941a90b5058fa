"""Tests of psyphy_pp.quadrature against an independent Monte Carlo reference.

Tolerance for quadrature vs the 1e6-sample reference (``tests/reference.py``):
``4 * stderr + QUAD_ERR[rule]``. The reference is a binomial estimate with standard
error ``sqrt(p (1 - p) / 1e6) <= 5e-4``; 4 standard errors give a false-alarm rate
of 6e-5 per configuration (the seeds are fixed, so a pass is reproducible).
``QUAD_ERR`` bounds the quadrature error of the default node counts, measured by
``benchmarks/quadrature_accuracy.py`` against a converged (64 x 64 node)
semi-analytic reference: the semi-analytic rule (8 x 4 nodes) erred by at most
2.4e-4 over 1,000 random configurations including stress cases (mean 4e-6), and by
at most 3.4e-4 at 1-3,000 standard deviations for S1 close to S0, so 5e-4;
Gauss-Hermite (8 x 6 x 6) erred by up to 1.3e-2 when S1 and S0 are unrelated (its
v' rule then needs more nodes) but by at most 1.5e-3 on the configurations
used here, so 2e-3.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from psyphy_pp.quadrature import oddity_prob_quadrature, oddity_prob_semianalytic
from tests.reference import oddity_prob_reference

EAGER = {"hermite": oddity_prob_quadrature, "semianalytic": oddity_prob_semianalytic}
RULES = {  # jitted: eager op-by-op dispatch would dominate the run time of this file
    "hermite": jax.jit(oddity_prob_quadrature, static_argnames=("num_angles", "num_hermite")),
    "semianalytic": jax.jit(
        oddity_prob_semianalytic, static_argnames=("num_angles", "num_radial")
    ),
}
QUAD_ERR = {"hermite": 2e-3, "semianalytic": 5e-4}
BASELINES = Path(__file__).resolve().parents[2] / "shared/external/hong2025_baselines"


def _spd(scale: float, ratio: float, angle: float) -> np.ndarray:
    """2x2 SPD with standard deviations ``scale`` and ``scale * ratio``, rotated."""
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return R @ np.diag([scale**2, (scale * ratio) ** 2]) @ R.T


def _configurations() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(label, S0, S1, r, c): hand-picked edge cases plus random WPPM-like ones."""
    rng = np.random.default_rng(2024)
    S = _spd(0.05, 1.5, 0.3)
    thin = _spd(0.01, 25.0, 1.1)  # axis ratio 25
    r = np.array([0.1, -0.2])
    along = np.array([np.cos(1.1), np.sin(1.1)])  # thin's short axis
    across = np.array([-np.sin(1.1), np.cos(1.1)])  # thin's long axis
    cfgs = [
        ("r=c", S, S, r, r),
        ("r=c thin", thin, thin, r, r),
        ("r=c S1!=S0", S, _spd(0.06, 1.2, 1.0), r, r),
        ("near chance", S, 1.1 * S, r, r + 0.3 * np.linalg.cholesky(S) @ [1.0, 0.0]),
        ("ceiling", S, S, r, r + 6.5 * np.linalg.cholesky(S) @ [0.6, 0.8]),
        ("ceiling thin", thin, thin, r, r + 0.08 * along),
        ("thin short axis", thin, thin, r, r + 0.025 * along),
        ("thin long axis", thin, 1.2 * thin, r, r + 0.6 * across),
        ("thin oblique", thin, _spd(0.012, 22.0, 1.2), r, r + 0.02 * along + 0.3 * across),
        ("S1 = 2.5 S0", S, 2.5 * S, r, r + np.array([0.1, 0.05])),
        ("S1 rotated", S, _spd(0.06, 2.0, 1.8), r, r + np.array([-0.05, 0.12])),
        ("S1 round, S0 thin", _spd(0.02, 5.0, 0.2), _spd(0.05, 1.0, 0.0), r, r + 0.1 * across),
    ]
    for k in range(12):  # S1 a smooth perturbation of S0, |delta| 0.3-4.5 sd
        S0 = _spd(rng.uniform(0.02, 0.1), rng.uniform(1.0, 4.0), rng.uniform(0, np.pi))
        J = np.eye(2) + rng.uniform(-0.15, 0.15, (2, 2))
        a = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(0.3, 4.5) * np.linalg.cholesky(S0) @ [np.cos(a), np.sin(a)]
        cfgs.append((f"random {k}", S0, J @ S0 @ J.T, r, r + d))
    return cfgs


CONFIGS = _configurations()
LABELS = [c[0] for c in CONFIGS]


@pytest.fixture(scope="module")
def reference() -> dict[str, tuple[float, float]]:
    """1e6-sample reference (p, stderr) per configuration, computed once."""
    return {
        label: oddity_prob_reference(S0, S1, r, c, num_samples=1_000_000, seed=k)
        for k, (label, S0, S1, r, c) in enumerate(CONFIGS)
    }


def _batch(cfgs=CONFIGS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    S0, S1, r, c = (np.array(x) for x in zip(*[cfg[1:] for cfg in cfgs]))
    return S0, S1, r - c


def test_configurations_cover_the_edge_cases(reference):
    p = np.array([reference[label][0] for label in LABELS])
    assert p.min() < 0.36 and p.max() > 0.97
    eig = np.array([np.linalg.eigvalsh(cfg[1]) for cfg in CONFIGS])
    assert np.sqrt(eig[:, 1] / eig[:, 0]).max() >= 20  # axis ratio
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize("rule", RULES)
def test_matches_monte_carlo_reference(rule, reference):
    p = np.asarray(RULES[rule](*_batch()))
    ref = np.array([reference[label] for label in LABELS])
    err = np.abs(p - ref[:, 0])
    tol = 4 * ref[:, 1] + QUAD_ERR[rule]
    bad = [f"{LABELS[i]}: {p[i]:.5f} vs {ref[i, 0]:.5f}" for i in np.flatnonzero(err > tol)]
    assert not bad, bad


@pytest.mark.parametrize("rule", RULES)
def test_equal_noise_at_r_equals_c_is_chance(rule):
    covs = [_spd(0.05, 1.0, 0.0), _spd(0.05, 1.5, 0.3), _spd(0.01, 25.0, 1.1), _spd(1e-3, 3, 2)]
    S = np.array(covs)
    p = np.asarray(RULES[rule](S, S, np.zeros((len(covs), 2))))
    np.testing.assert_allclose(p, 1 / 3, atol=1e-3)


def test_rules_agree():
    """The two rules differ by less than the GH error budget on every configuration."""
    args = _batch()
    p_gh = np.asarray(RULES["hermite"](*args, num_angles=16, num_hermite=12))
    p_sa = np.asarray(RULES["semianalytic"](*args))
    np.testing.assert_allclose(p_gh, p_sa, atol=QUAD_ERR["hermite"] / 2)


@pytest.mark.parametrize("rule", RULES)
def test_increases_with_mahalanobis_distance(rule):
    S0 = _spd(0.04, 3.0, 0.7)
    S1 = 1.3 * _spd(0.04, 2.5, 0.9)
    L = np.linalg.cholesky(S0)
    dist = np.linspace(0.0, 7.0, 36)
    for a in np.linspace(0.0, np.pi, 5, endpoint=False):
        delta = dist[:, None] * (L @ [np.cos(a), np.sin(a)])
        p = np.asarray(RULES[rule](S0, S1, delta))
        rising = p < 0.995  # beyond that, float32 steps may round to zero
        assert np.all(np.diff(p)[rising[1:]] > 0), (a, p)
        assert np.all(np.diff(p) > -1e-6), (a, p)
        assert p[-1] > 0.98


@pytest.mark.parametrize("rule", RULES)
def test_far_comparisons_reach_ceiling(rule):
    """P -> 1 at 10-10,000 standard deviations (regression: a fixed radial map broke)."""
    S0 = _spd(0.03, 2.0, 0.4)
    S1 = 1.1 * _spd(0.03, 2.2, 0.5)
    dist = np.array([10.0, 30.0, 100.0, 300.0, 1e3, 1e4])
    for a in (0.3, 1.9):
        delta = dist[:, None] * (np.linalg.cholesky(S0) @ [np.cos(a), np.sin(a)])
        p = np.asarray(RULES[rule](S0, S1, delta))
        np.testing.assert_allclose(p, 1.0, atol=2e-4)


@cache
def _log_value_and_grad(rule):
    """Value and gradient of log P: jitted for speed, once per rule for all scales."""
    kw = {"num_hermite": 5} if rule == "hermite" else {}  # odd: a node sits on v' = 0
    loss = lambda *a: jnp.log(RULES[rule](*a, **kw))  # noqa: E731
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e-20, 1e-8, 1e-3])
def test_gradients_finite_near_r_equals_c(rule, scale):
    S0, S1 = _spd(0.05, 2.0, 0.3), _spd(0.06, 1.5, 0.5)
    delta = scale * np.array([1.0, 0.3])
    value, grads = _log_value_and_grad(rule)(
        *(jnp.asarray(x, jnp.float32) for x in (S0, S1, delta))
    )
    assert np.isfinite(value)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("rule", RULES)
def test_jit_matches_eager(rule):
    """Equal up to float32 rounding (XLA fuses and reorders the arithmetic under jit)."""
    args = tuple(a[:6] for a in _batch())
    np.testing.assert_allclose(
        np.asarray(jax.jit(EAGER[rule])(*args)), np.asarray(EAGER[rule](*args)), rtol=1e-5
    )


@pytest.mark.parametrize("rule", RULES)
def test_broadcasting_and_shapes(rule):
    S0 = _spd(0.05, 2.0, 0.3)
    S1 = np.broadcast_to(_spd(0.06, 1.5, 0.5), (3, 4, 2, 2))
    delta = np.zeros((4, 2)) + [0.05, 0.02]
    p = RULES[rule](S0, S1, delta)
    assert p.shape == (3, 4) and p.dtype == jnp.float32
    np.testing.assert_allclose(p, RULES[rule](S0, S1[0, 0], delta[0]), rtol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_rejects_other_input_dims(rule):
    S3 = np.eye(3)[None]
    with pytest.raises(ValueError, match=r"S0 .*\(\.\.\., 2, 2\).*\(1, 3, 3\)"):
        RULES[rule](S3, S3, np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"delta .*\(\.\.\., 2\).*\(3,\)"):
        RULES[rule](np.eye(2), np.eye(2), np.zeros(3))


@pytest.mark.parametrize("rule", RULES)
def test_float64_x64(rule, reference):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        args = _batch()
        p64 = RULES[rule](*args)
        assert p64.dtype == jnp.float64
        p32 = RULES[rule](*(jnp.asarray(a, jnp.float32) for a in args))
        assert p32.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(p64), np.asarray(p32), atol=2e-5)
        ref = np.array([reference[label] for label in LABELS])
        assert np.all(np.abs(np.asarray(p64) - ref[:, 0]) <= 4 * ref[:, 1] + QUAD_ERR[rule])
        # Reverse-mode derivatives against finite differences (P is invariant under
        # S -> a S, delta -> sqrt(a) delta: rescale so that S is of order 1).
        S0, S1, delta = (a[::4] for a in args)
        scale = 1.0 / np.trace(S0, axis1=-2, axis2=-1)
        scaled = (S0 * scale[:, None, None], S1 * scale[:, None, None],
                  delta * np.sqrt(scale)[:, None])
        jax.test_util.check_grads(
            RULES[rule], scaled, order=1, modes=["rev"], atol=1e-6, rtol=1e-5, eps=1e-6
        )
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.mark.parametrize("rule", RULES)
def test_authors_baseline(rule):
    """Hong et al.'s oddity_prediction.npz configuration (Sigma = 0.0026 I)."""
    path = BASELINES / "oddity_prediction.npz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    data = np.load(path)
    s = data["vec_lengths"]
    delta = -np.stack([s, np.zeros_like(s)], axis=-1)  # r = (0, 0), c = (s, 0)
    S = 0.0026 * np.eye(2)
    p = np.asarray(RULES[rule](S, S, delta))
    # 2,000,000-sample hard-threshold Monte Carlo (README, standard error ~3e-4).
    mc = np.array([0.399469, 0.603705, 0.806800, 0.928172, 0.979391])
    np.testing.assert_allclose(p, mc, atol=1e-3)
    # The stored pC is a single 200-sample smoothed draw: binomial 4-sigma check.
    assert np.all(np.abs(data["pC"] - p) <= 4 * np.sqrt(p * (1 - p) / 200))


# --- 1 - P(correct) computed directly (return_incorrect=True) -------------------------

INCORRECT = jax.jit(
    lambda S0, S1, delta, num_angles=8, num_radial=4: oddity_prob_semianalytic(
        S0, S1, delta, num_angles=num_angles, num_radial=num_radial, return_incorrect=True
    ),
    static_argnames=("num_angles", "num_radial"),
)


def _brute_force_log_incorrect(S0, S1, delta, n_theta=64, n_v=48, width=12.0):
    """log P(incorrect) by nested Gauss-Legendre from DESIGN 2b, float64 numpy.

    Independent of psyphy_pp: u' ~ N(0, A) falls outside the correct region
    ``(3/4)|u'|^2 + |<u', v'>| < |v'|^2`` along direction e beyond the root R of
    ``(3/4) R^2 + R |<e, v'>| = |v'|^2``, with Gaussian mass
    ``exp(-a R^2 / 2) / (2 pi a sqrt|A|)`` per unit angle (a = e^T A^{-1} e). The
    angle runs over the full circle split at the two kinks ``<e, v'> = 0``; v' ~
    N(mu, B) is integrated on a tensor grid spanning +-width standard deviations of
    the Laplace approximation of the integrand (its mode is far from v' = 0 for far
    trials, where the integrand is smooth). Everything stays in logs.
    """
    from scipy import optimize
    from scipy.special import logsumexp

    L = np.linalg.cholesky((2 * S0 + S1) / 3)
    Li = np.linalg.inv(L)
    A, B, mu = 2 * Li @ S0 @ Li.T, Li @ (S0 / 2 + S1) @ Li.T, Li @ delta
    Ai, Bi = np.linalg.inv(A), np.linalg.inv(B)
    x, w = np.polynomial.legendre.leggauss(n_theta)
    log_wt = np.log(np.concatenate([w, w]) * np.pi / 2)
    log_c = -np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(A))

    def log_h(v):
        phi = np.arctan2(v[..., 1], v[..., 0])[..., None]
        th = np.concatenate([phi + np.pi / 2 * x, phi + np.pi + np.pi / 2 * x], -1)
        e0, e1 = np.cos(th), np.sin(th)
        a = Ai[0, 0] * e0**2 + 2 * Ai[0, 1] * e0 * e1 + Ai[1, 1] * e1**2
        ev = np.abs(e0 * v[..., 0, None] + e1 * v[..., 1, None])
        R = (2 / 3) * (np.sqrt(ev**2 + 3 * (v**2).sum(-1)[..., None]) - ev)
        log_q = log_c + logsumexp(-0.5 * a * R**2 - np.log(a) + log_wt, axis=-1)
        dv = v - mu
        return log_q - 0.5 * np.einsum("...i,ij,...j", dv, Bi, dv)

    mode = optimize.minimize(lambda v: -log_h(v), 0.5 * mu, method="Nelder-Mead",
                             options=dict(xatol=1e-9, fatol=1e-12, maxiter=4000)).x
    eps = 1e-4 * (1 + np.abs(mode).max())
    E = np.eye(2) * eps
    H = np.array([[-(log_h(mode + E[i] + E[j]) - log_h(mode + E[i] - E[j])
                     - log_h(mode - E[i] + E[j]) + log_h(mode - E[i] - E[j])) / (4 * eps**2)
                   for j in range(2)] for i in range(2)])
    C = np.linalg.cholesky(np.linalg.inv(H))
    xv, wv = np.polynomial.legendre.leggauss(n_v)
    z = np.stack(np.meshgrid(width * xv, width * xv, indexing="ij"), -1).reshape(-1, 2)
    log_wz = np.log(np.outer(wv, wv).reshape(-1) * width**2)
    log_norm = -0.5 * np.log(np.linalg.det(2 * np.pi * B)) + np.log(np.linalg.det(C))
    return logsumexp(log_h(mode + z @ C.T) + log_wz) + log_norm


FAR_FAMILIES = {  # (S0, S1, direction angle in S0's Cholesky frame, distances in sd)
    "S0 = S1 = 1e-4 I": (1e-4 * np.eye(2), 1e-4 * np.eye(2), 0.0, [3.0, 6.0, 9.0, 12.0]),
    "S0 = S1 elongated": (_spd(0.01, 3.0, 0.5), _spd(0.01, 3.0, 0.5), 1.0, [3.0, 6.0, 9.0, 12.0]),
    "S1 = 2.5 S0": (
        _spd(0.01, 1.5, 0.3), 2.5 * _spd(0.01, 1.5, 0.3), 0.4, [3.0, 7.0, 11.0, 15.0]
    ),
    "S1 rotated": (
        _spd(0.01, 2.0, 0.3), 1.2 * _spd(0.01, 2.5, 0.6), 2.0, [3.0, 6.0, 10.0, 13.0]
    ),
}


def _far_deltas(S0, angle, dist):
    return np.asarray(dist)[:, None] * (np.linalg.cholesky(S0) @ [np.cos(angle), np.sin(angle)])


@pytest.mark.parametrize("family", FAR_FAMILIES)
def test_incorrect_far_trials_match_brute_force(family):
    """1 - p far above threshold, relative to an independent float64 integration.

    Measured relative errors (DESIGN's 8 angles are the limit; the lam rule alone errs
    by < 2e-4): S0 = S1 and S1 = 2.5 S0 at most 5e-3 over 1 - p in [1e-6, 0.6] at
    8 x 4 nodes, so tolerance 1e-2; for S1 rotated against S0 the angle integrand's
    peak is narrow and off-centre (module docstring): 7e-2 at 8 angles, 4e-4 at 12,
    so that family is checked at 16 x 4 nodes with the same 1e-2. The brute force
    agrees with itself at twice the nodes to 1e-13 relative.
    """
    S0, S1, angle, dist = FAR_FAMILIES[family]
    delta = _far_deltas(S0, angle, dist)
    ref = np.exp([_brute_force_log_incorrect(S0, S1, d) for d in delta])
    assert ref.min() < 5e-6 and ref.max() > 1e-2  # the range the claim is about
    jax.config.update("jax_enable_x64", True)
    try:
        num_angles = 16 if family == "S1 rotated" else 8
        q = np.asarray(INCORRECT(S0, S1, delta, num_angles=num_angles))
        q_hi = np.asarray(INCORRECT(S0, S1, delta, num_angles=256, num_radial=64))
    finally:
        jax.config.update("jax_enable_x64", False)
    # The rule converges to the independent reference up to its own truncation of
    # the lam range where the exponent exceeds 12 (a relative e^-12 = 6e-6).
    np.testing.assert_allclose(q_hi, ref, rtol=2e-5)
    np.testing.assert_allclose(q, ref, rtol=1e-2)
    # float32 keeps the relative precision (its exponentials are relatively exact).
    q32 = np.asarray(INCORRECT(*(jnp.asarray(a, jnp.float32) for a in (S0, S1, delta)),
                               num_angles=num_angles))
    np.testing.assert_allclose(q32, ref, rtol=1.5e-2)


def test_incorrect_far_beyond_float64_complement():
    """Where 1 - p underflows to 0 in float64, the direct rule still converges."""
    jax.config.update("jax_enable_x64", True)
    try:
        S = 1e-4 * np.eye(2)
        delta = np.array([[0.15, 0.0], [0.2, 0.0]])
        # jitted for speed (created here, after x64 is on); eager, it compiled ~90 kernels
        complement = jax.jit(lambda *a: 1.0 - oddity_prob_semianalytic(*a))
        assert np.all(np.asarray(complement(S, S, delta)) < 1e-12)
        q = np.asarray(INCORRECT(S, S, delta, num_angles=256, num_radial=64))
    finally:
        jax.config.update("jax_enable_x64", False)
    ref = np.exp([_brute_force_log_incorrect(S, S, d) for d in delta])  # 1.1e-9, 4.0e-16
    np.testing.assert_allclose(q, ref, rtol=2e-5)  # the lam-range truncation, e^-12


def test_correct_plus_incorrect_is_one():
    """p ([0, 1] half) + q ([1, inf) half) = 1: the two halves of one integral.

    At 64 x 64 nodes both halves are converged (float64, 1e-10). At the default 8 x 4
    each half has its own quadrature error, measured below 3e-5 (mean 3e-6) on the
    benchmark's 200 configurations: tolerance 1e-4.
    """
    jax.config.update("jax_enable_x64", True)
    try:
        args = _batch()
        for kw, tol in [({"num_angles": 64, "num_radial": 64}, 1e-10), ({}, 1e-4)]:
            p = np.asarray(RULES["semianalytic"](*args, **kw))
            q = np.asarray(INCORRECT(*args, **kw))
            np.testing.assert_allclose(p + q, 1.0, atol=tol)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_incorrect_at_r_equals_c_is_two_thirds():
    """Exact up to float32 rounding: for S0 = S1 the substituted lam integrand is exp.

    Measured: at most 7e-7 off (axis ratio 25), a few float32 ulps; tolerance 2e-6."""
    covs = [_spd(0.05, 1.0, 0.0), _spd(0.05, 1.5, 0.3), _spd(0.01, 25.0, 1.1), _spd(1e-3, 3, 2)]
    S = jnp.asarray(np.array(covs), jnp.float32)
    q = np.asarray(INCORRECT(S, S, jnp.zeros((len(covs), 2), jnp.float32)))
    np.testing.assert_allclose(q, 2 / 3, atol=2e-6)


@cache
def _loglik_value_and_grad():
    """Bernoulli log-likelihood from q, value and gradient: jitted for speed, once."""
    from psyphy_pp.likelihood import PROB_EPS

    def loglik(S0, S1, delta):
        q = jnp.clip(INCORRECT(S0, S1, delta), PROB_EPS, 1.0 - PROB_EPS)
        logit = jnp.log1p(-q) - jnp.log(q)
        return -jax.nn.softplus(-logit) - jax.nn.softplus(logit)  # y = 1 plus y = 0

    return jax.jit(jax.value_and_grad(loglik, argnums=(0, 1, 2)))


@pytest.mark.parametrize("dist", [0.0, 1e-20, 1e-3, 1.0, 10.0, 30.0, 1e3, 1e5])
def test_incorrect_logits_finite_with_gradients(dist):
    """Value and gradient of the Bernoulli log-likelihood as the Oddity task forms it."""
    S0, S1 = _spd(0.05, 2.0, 0.3), _spd(0.06, 1.5, 0.5)
    delta = dist * np.linalg.cholesky(S0) @ [0.8, 0.6]
    value, grads = _loglik_value_and_grad()(
        *(jnp.asarray(x, jnp.float32) for x in (S0, S1, delta))
    )
    assert np.isfinite(value)
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))


def test_incorrect_gradient_matches_finite_differences():
    """Node placement is held fixed under differentiation, so the gradient is that of
    the integrand on the nodes: it equals the derivative of the value up to the
    quadrature error. Checked in float64 against central differences of log q (the
    logit's hard part) at 8 x 4 nodes: relative error measured below 2e-3 from 0.5 to
    12 standard deviations, tolerance 1e-2."""
    jax.config.update("jax_enable_x64", True)
    try:
        S0, S1 = _spd(1.0, 2.0, 0.3), _spd(1.1, 1.5, 0.5)
        # jitted for speed (created here, after x64 is on), each compiled once
        f = jax.jit(lambda d: jnp.log(INCORRECT(S0, S1, d)))
        grad_f = jax.jit(jax.grad(f))
        for dist in (0.5, 2.0, 6.0, 12.0):
            d = dist * np.array([0.8, 0.6])
            g = np.asarray(grad_f(jnp.asarray(d)))
            h = 1e-5
            fd = np.array([(f(d + h * e) - f(d - h * e)) / (2 * h) for e in np.eye(2)])
            np.testing.assert_allclose(g, fd, rtol=1e-2, atol=1e-3 * np.abs(fd).max())
    finally:
        jax.config.update("jax_enable_x64", False)
