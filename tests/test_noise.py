"""Statistical checks of the per-trial normal generators (psyphy_pp.noise).

Each check compares against the exact standard normal law with a tolerance of
about 5 standard errors of the statistic (or a 0.1%-level KS critical value),
so a correct generator fails by chance far less than once in a thousand runs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from psyphy_pp.noise import GENERATORS, trial_normals

N_TRIALS, SHAPE = 1000, (2, 2, 250)  # 1e6 draws, laid out as the likelihood uses them
# jitted for speed: eager, op by op, each shape compiled dozens of small kernels
TRIAL_NORMALS = jax.jit(trial_normals, static_argnums=(2, 3, 4))


def _draws(generator, key=None, index=None):
    key = jax.random.PRNGKey(0) if key is None else key
    index = jnp.arange(N_TRIALS) if index is None else index
    return np.asarray(TRIAL_NORMALS(key, index, SHAPE, jnp.float32, generator), np.float64)


def _corr_tol(n):
    return 5.0 / np.sqrt(n)


@pytest.mark.parametrize("generator", GENERATORS)
def test_marginal_is_standard_normal(generator):
    z = _draws(generator).ravel()
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
    ks = stats.kstest(z, special.ndtr)
    assert ks.pvalue > 1e-3, ks
    tail = 2 * special.ndtr(-3.5)
    assert abs(np.mean(np.abs(z) > 3.5) - tail) < 5 * np.sqrt(tail / n)


@pytest.mark.parametrize("generator", GENERATORS)
def test_pairs_are_jointly_normal(generator):
    """z0^2 + z1^2 of two draws of one trial is chi-squared with 2 degrees of freedom."""
    z = _draws(generator)
    r2 = (z[:, :, 0, :] ** 2 + z[:, :, 1, :] ** 2).ravel()
    ks = stats.kstest(r2, stats.chi2(2).cdf)
    assert ks.pvalue > 1e-3, ks


@pytest.mark.parametrize("generator", GENERATORS)
def test_neighbouring_draws_trials_and_keys_are_uncorrelated(generator):
    z = _draws(generator).reshape(N_TRIALS, -1)
    z_next_key = _draws(generator, jax.random.PRNGKey(1)).reshape(N_TRIALS, -1)
    z_folded = _draws(generator, jax.random.fold_in(jax.random.PRNGKey(0), 1)).reshape(N_TRIALS, -1)
    pairs = {
        "next draw": (z[:, :-1], z[:, 1:]),
        "next trial": (z[:-1], z[1:]),
        "next seed": (z, z_next_key),
        "folded key": (z, z_folded),
    }
    for name, (a, b) in pairs.items():
        a, b = a.ravel(), b.ravel()
        tol = _corr_tol(a.size)
        assert abs(np.corrcoef(a, b)[0, 1]) < tol, name
        assert abs(np.corrcoef(a**2, b**2)[0, 1]) < tol, name  # dependence beyond linear


def test_far_apart_trial_indices_are_uncorrelated():
    """Indices that differ in high bits only (the hash sees them as words)."""
    index = jnp.arange(N_TRIALS, dtype=jnp.uint32)
    a = _draws("hash", index=index).ravel()
    for offset in (1 << 16, 1 << 24, 1 << 31):
        b = _draws("hash", index=index + jnp.uint32(offset)).ravel()
        assert abs(np.corrcoef(a, b)[0, 1]) < _corr_tol(a.size), offset


@pytest.mark.parametrize("generator", GENERATORS)
def test_a_trials_draws_depend_only_on_key_and_index(generator):
    key = jax.random.PRNGKey(5)
    index = jnp.asarray([7, 3, 11, 0])
    together = TRIAL_NORMALS(key, index, (3, 8), jnp.float32, generator)
    for row, n in enumerate(index):
        alone = TRIAL_NORMALS(key, n[None], (3, 8), jnp.float32, generator)[0]
        np.testing.assert_array_equal(together[row], alone)
    other = TRIAL_NORMALS(jax.random.PRNGKey(6), index, (3, 8), jnp.float32, generator)
    assert not np.any(np.asarray(other) == np.asarray(together))


def test_float64_draws_are_standard_normal(x64):
    draw = jax.jit(trial_normals, static_argnums=(2, 3))  # jitted for speed, after x64 is on
    z = np.asarray(draw(jax.random.PRNGKey(0), jnp.arange(500), (2000,), jnp.float64))
    assert z.dtype == np.float64
    assert stats.kstest(z.ravel(), special.ndtr).pvalue > 1e-3


def test_unknown_generator_is_rejected():
    with pytest.raises(ValueError, match="generator must be one of"):
        trial_normals(jax.random.PRNGKey(0), jnp.arange(2), (3,), jnp.float32, "mt19937")
