from pathlib import Path

import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.field import covariance, field_U, prior_variances

BASELINES = Path(__file__).resolve().parents[2] / "shared" / "external" / "hong2025_baselines"


@pytest.mark.skipif(not BASELINES.exists(), reason="authors' baseline files not present")
def test_field_matches_authors_baseline_x64(x64):
    """U(x) and Sigma(x) equal the WPPM authors' regression arrays (float64)."""
    inputs = np.load(BASELINES / "inputs_W_X.npz")
    W, X = inputs["W"], inputs["X_grid"]
    np.testing.assert_allclose(field_U(W, X), np.load(BASELINES / "compute_U.npz")["U"],
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(covariance(W, X, 1e-4),
                               np.load(BASELINES / "compute_Sigmas.npz")["Sigma"],
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_covariance_matches_dense_loop_x64(dim, rng, x64):
    from numpy.polynomial.chebyshev import chebval

    K, E, eps = 2, 1, 1e-3
    W = rng.normal(size=(K + 1,) * dim + (dim, dim + E))
    x = rng.uniform(-1, 1, size=(5, dim))
    for n in range(5):
        U = np.zeros((dim, dim + E))
        for idx in np.ndindex(*(K + 1,) * dim):
            phi = np.prod([chebval(x[n, d], np.eye(K + 1)[i]) for d, i in enumerate(idx)])
            U += W[idx] * phi
        np.testing.assert_allclose(covariance(W, x[n], eps), U @ U.T + eps * np.eye(dim),
                                   rtol=1e-12)


def test_prior_variances_decay_with_total_degree():
    v = prior_variances(2, 3, 4e-3, 0.4)
    assert v.shape == (4, 4)
    assert v[0, 0] == pytest.approx(4e-3)
    assert v[1, 2] == pytest.approx(4e-3 * 0.4**3)


def test_sample_prior_has_prior_scale():
    import jax

    model = pp.WPPM(basis_degree=3)
    sample_prior = jax.jit(model.sample_prior)  # jitted for speed, compiled once
    W = np.stack([sample_prior(jax.random.PRNGKey(i))["W"] for i in range(400)])
    std = W.std(axis=0)
    # 400 draws: the sample std is within ~3.5 * std/sqrt(2*400) = 12.5% of the truth.
    np.testing.assert_allclose(std, model.prior_std(), rtol=0.125)


def test_covariance_rejects_out_of_box():
    import jax

    model = pp.WPPM(basis_degree=1)
    params = model.sample_prior(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\].*1\.5"):
        model.covariance(params, np.array([[0.0, 1.5]]))
