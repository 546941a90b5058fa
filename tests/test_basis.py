import itertools

import numpy as np
import pytest
from numpy.polynomial import chebyshev as npcheb

from psyphy_pp.basis import chebyshev, tensor_basis


@pytest.mark.parametrize("degree", [0, 1, 2, 5])
def test_chebyshev_matches_numpy(degree, rng):
    x = rng.uniform(-1, 1, size=(7,))
    expected = np.stack([npcheb.chebval(x, np.eye(degree + 1)[k]) for k in range(degree + 1)], -1)
    np.testing.assert_allclose(chebyshev(x, degree), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_tensor_basis_matches_loop(dim, rng):
    degree = 2
    x = rng.uniform(-1, 1, size=(4, dim))
    phi = np.asarray(tensor_basis(x, degree))
    assert phi.shape == (4, (degree + 1) ** dim)
    for n in range(4):
        expected = [
            np.prod([npcheb.chebval(x[n, d], np.eye(degree + 1)[i]) for d, i in enumerate(idx)])
            for idx in itertools.product(range(degree + 1), repeat=dim)
        ]
        np.testing.assert_allclose(phi[n], expected, rtol=1e-5, atol=1e-6)
