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


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e-20, 1e-8, 1e-3])
def test_gradients_finite_near_r_equals_c(rule, scale):
    S0, S1 = _spd(0.05, 2.0, 0.3), _spd(0.06, 1.5, 0.5)
    delta = scale * np.array([1.0, 0.3])
    kw = {"num_hermite": 5} if rule == "hermite" else {}  # odd: a node sits on v' = 0
    loss = lambda *a: jnp.log(RULES[rule](*a, **kw))  # noqa: E731
    value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2))(
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
