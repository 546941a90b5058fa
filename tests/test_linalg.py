import numpy as np
import pytest

from psyphy_pp import _linalg


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_small_matrix_algebra_matches_numpy(dim, rng):
    A = rng.normal(size=(6, dim, dim))
    S = A @ A.transpose(0, 2, 1) + 0.1 * np.eye(dim)
    L = np.linalg.cholesky(S)
    np.testing.assert_allclose(_linalg.cholesky(S), L, rtol=1e-4, atol=1e-5)
    b = rng.normal(size=(6, dim))
    np.testing.assert_allclose(_linalg.solve_lower(L, b), np.linalg.solve(L, b[..., None])[..., 0],
                               rtol=1e-4, atol=1e-5)
    B = rng.normal(size=(6, dim, 4))
    np.testing.assert_allclose(_linalg.solve_lower_matrix(L, B), np.linalg.solve(L, B),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_linalg.logdet_from_cholesky(L), np.linalg.slogdet(S)[1],
                               rtol=1e-4, atol=1e-5)
