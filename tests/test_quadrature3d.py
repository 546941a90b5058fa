"""Tests of psyphy_pp.quadrature3d against the independent Monte Carlo reference.

Tolerance against tests/reference.py: ``4 * stderr + QUAD_ERR[rule]``. The reference
uses 200,000 samples (standard error ``sqrt(p (1 - p) / 2e5) <= 1.2e-3``) to keep the
file fast; 4 standard errors give a false-alarm rate of 6e-5 per configuration, and
the seeds are fixed, so a pass is reproducible. ``QUAD_ERR`` bounds the error of the
rule itself at the node counts tested, measured by ``python -m benchmarks.quadrature_3d``
against the polar rule at 24 x 16 x 12 x 24 x 12 nodes: the default polar rule
(4 x 6 x 3 x 6 x 4) erred by at most ~5e-4 over its 30 configurations, so 1e-3; the
Gauss-Hermite rule at 6 x 12 x 5^3 by up to ~3e-3, so 5e-3.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from psyphy_pp.quadrature3d import (
    DEFAULT_POLAR_NODES,
    oddity_prob_gauss_hermite_3d,
    oddity_prob_polar_3d,
)
from tests.reference import oddity_prob_reference

POLAR = jax.jit(oddity_prob_polar_3d, static_argnames=("nodes", "return_incorrect"))
GH = jax.jit(oddity_prob_gauss_hermite_3d,
             static_argnames=("num_cos", "num_azimuth", "num_hermite"))
GH_NODES = {"num_cos": 6, "num_azimuth": 12, "num_hermite": 5}
QUAD_ERR = {"polar": 1e-3, "hermite": 5e-3}
REF_SAMPLES = 200_000


def _spd(rng: np.random.Generator, ratio: float) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    sd = rng.uniform(0.02, 0.1) * np.array([1.0, np.sqrt(ratio), ratio])
    return Q @ np.diag(sd**2) @ Q.T


def _configurations(n: int = 24) -> tuple[np.ndarray, ...]:
    """``n`` random (S0, S1, delta): every 6th is r = c with S1 = S0; elongated,
    unrelated-S1, near-chance and near-ceiling cases in between."""
    rng = np.random.default_rng(7)
    S0s, S1s, ds = [], [], []
    for i in range(n):
        kind = i % 6
        S0 = _spd(rng, rng.uniform(8.0, 15.0) if kind == 3 else rng.uniform(1.0, 3.0))
        if kind == 4:
            S1 = _spd(rng, rng.uniform(1.0, 3.0))
        else:
            J = np.eye(3) + rng.uniform(-0.15, 0.15, (3, 3))
            S1 = S0 if kind == 5 else J @ S0 @ J.T
        dist = [rng.uniform(0.1, 0.4), rng.uniform(0.8, 2.5), rng.uniform(4.0, 6.0),
                rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), 0.0][kind]
        x = rng.normal(size=3)
        ds.append(dist * np.linalg.cholesky(S0) @ (x / np.linalg.norm(x)))
        S0s.append(S0)
        S1s.append(S1)
    return np.array(S0s), np.array(S1s), np.array(ds)


CONFIGS = _configurations()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    S0, S1, d = CONFIGS
    return np.array([
        oddity_prob_reference(a, b, x, np.zeros(3), num_samples=REF_SAMPLES, seed=k)
        for k, (a, b, x) in enumerate(zip(S0, S1, d))
    ])


@pytest.mark.parametrize("rule", ["polar", "hermite"])
def test_matches_reference(rule, reference):
    x32 = tuple(jnp.asarray(a, jnp.float32) for a in CONFIGS)
    p = np.asarray(POLAR(*x32) if rule == "polar" else GH(*x32, **GH_NODES), np.float64)
    tol = 4.0 * reference[:, 1] + QUAD_ERR[rule]
    err = np.abs(p - reference[:, 0])
    assert np.all(err <= tol), f"{rule}: worst error {err.max():.1e} at {err.argmax()}"


def test_chance_at_r_equals_c():
    # S1 = S0 and r = c: the three samples are exchangeable, P = 1/3 exactly. The polar
    # rule's error there is ~1e-6 at the default nodes (its psi rule is the only
    # approximation); float32 rounding adds ~1e-7 per operation, so 2e-5.
    S0, _, _ = CONFIGS
    p = np.asarray(POLAR(jnp.asarray(S0, jnp.float32), jnp.asarray(S0, jnp.float32),
                         jnp.zeros((len(S0), 3), jnp.float32)))
    np.testing.assert_allclose(p, 1.0 / 3.0, atol=2e-5)
    # The Gauss-Hermite rule resolves the |v'|^3 kink at v' = 0 poorly: 0.3389 at
    # 6 x 12 x 5^3 nodes (0.3325 at 10 x 20 x 8^3 in DESIGN 2b), so 1e-2.
    p = np.asarray(GH(jnp.asarray(S0[:4]), jnp.asarray(S0[:4]), jnp.zeros((4, 3)), **GH_NODES))
    np.testing.assert_allclose(p, 1.0 / 3.0, atol=1e-2)


def test_incorrect_is_complement():
    x32 = tuple(jnp.asarray(a, jnp.float32) for a in CONFIGS)
    p, q = POLAR(*x32), POLAR(*x32, return_incorrect=True)
    np.testing.assert_allclose(np.asarray(p + q), 1.0, atol=1e-6)


def test_monotone_in_distance():
    # S1 = S0 fixed, c moving away from r along a fixed direction: P must increase.
    # Steps of 0.25 sd change P by >= 4e-3 (near chance P - 1/3 grows like s^2), an
    # order of magnitude above the rule's error, so a strict increase is required.
    S0, _, _ = CONFIGS
    s = np.linspace(0.25, 6.0, 24)
    for S in S0[[0, 3]]:
        d = np.linalg.cholesky(S) @ np.array([0.6, -0.48, 0.64])
        Sb = jnp.asarray(np.broadcast_to(S, (len(s), 3, 3)), jnp.float32)
        p = np.asarray(POLAR(Sb, Sb, jnp.asarray(s[:, None] * d, jnp.float32)))
        assert np.all(np.diff(p) > 0), p
        assert p[0] > 1.0 / 3.0 and p[-1] > 0.9


@pytest.mark.parametrize("rule", ["polar", "hermite"])
def test_gradient_finite_at_r_equals_c(rule):
    S0, S1, _ = CONFIGS
    S0, S1 = jnp.asarray(S0[:6], jnp.float32), jnp.asarray(S1[:6], jnp.float32)
    fn = (lambda *a: POLAR(*a)) if rule == "polar" else (lambda *a: GH(*a, **GH_NODES))
    loss = lambda a, b, d: jnp.sum(jnp.log(fn(a, b, d)))  # noqa: E731
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))  # jitted for speed: one trace and compile
    for A, B in ((S0, S0), (S0, S1)):  # r = c with S1 = S0 and with S1 != S0
        grads = grad(A, B, jnp.zeros((6, 3), jnp.float32))
        for g in grads:
            assert np.all(np.isfinite(np.asarray(g)))


def test_float32_matches_float64(x64):
    # Same nodes in both precisions: only rounding differs (float32 eps 6e-8 times the
    # few hundred terms of the sums), so 2e-5.
    p64 = np.asarray(POLAR(*(jnp.asarray(a, jnp.float64) for a in CONFIGS)))
    p32 = np.asarray(POLAR(*(jnp.asarray(a, jnp.float32) for a in CONFIGS)))
    assert p64.dtype == np.float64 and p32.dtype == np.float32
    np.testing.assert_allclose(p32, p64, atol=2e-5)


def test_rejects_2d():
    with pytest.raises(ValueError, match="input_dim 3"):
        oddity_prob_polar_3d(np.eye(2), np.eye(2), np.zeros(2))
    with pytest.raises(ValueError, match="input_dim 3"):
        oddity_prob_gauss_hermite_3d(np.eye(2), np.eye(2), np.zeros(2))


def test_default_nodes():
    assert len(DEFAULT_POLAR_NODES) == 5
