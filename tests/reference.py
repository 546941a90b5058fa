"""Independent numpy reference for the oddity task (DESIGN.md section 2).

Written straight from the definition, without the u/v reparametrisation and
without importing psyphy_pp, so that it can check any implementation:
z0, z1 ~ N(r, S0) and z2 ~ N(c, S1); distances use the metric
Sbar^{-1} with Sbar = (2/3) S0 + (1/3) S1; the answer is correct when
d01 < min(d02, d12) (hard threshold, no smoothing).
"""

from __future__ import annotations

__all__ = ["oddity_prob_reference"]

import numpy as np


def oddity_prob_reference(
    S0: np.ndarray,
    S1: np.ndarray,
    r: np.ndarray,
    c: np.ndarray,
    *,
    num_samples: int = 1_000_000,
    seed: int = 0,
    chunk_size: int = 1 << 17,
) -> tuple[float, float]:
    """Monte Carlo P(correct) of one oddity configuration, in float64.

    Args:
        S0: Covariance ``(D, D)`` of the two reference samples.
        S1: Covariance ``(D, D)`` of the comparison sample.
        r: Reference stimulus, shape ``(D,)``.
        c: Comparison stimulus, shape ``(D,)``.
        num_samples: Number of simulated trials.
        seed: Seed of ``numpy.random.default_rng``.
        chunk_size: Trials simulated at a time (bounds the memory use).

    Returns:
        ``(p, stderr)``: the fraction of correct trials and its binomial
        standard error ``sqrt(p (1 - p) / num_samples)``.
    """
    S0, S1 = np.asarray(S0, np.float64), np.asarray(S1, np.float64)
    r, c = np.asarray(r, np.float64), np.asarray(c, np.float64)
    # Whitening W with W^T W = Sbar^{-1}, so d_ij = |W z_i - W z_j|^2: draw the
    # whitened samples y_i = W z_i directly.
    W = np.linalg.inv(np.linalg.cholesky((2.0 * S0 + S1) / 3.0))
    # Contiguous copies: a transposed view sends ``eps @ F`` down a slow BLAS path.
    F0 = np.ascontiguousarray((W @ np.linalg.cholesky(S0)).T)
    F1 = np.ascontiguousarray((W @ np.linalg.cholesky(S1)).T)
    shift = W @ (r - c)  # only differences matter: centre z2 at 0
    rng = np.random.default_rng(seed)
    d = r.shape[0]
    correct = 0
    for start in range(0, num_samples, chunk_size):
        m = min(chunk_size, num_samples - start)
        y0 = shift + rng.standard_normal((m, d)) @ F0
        y1 = shift + rng.standard_normal((m, d)) @ F0
        y2 = rng.standard_normal((m, d)) @ F1
        d01 = np.sum((y0 - y1) ** 2, axis=-1)
        d02 = np.sum((y0 - y2) ** 2, axis=-1)
        d12 = np.sum((y1 - y2) ** 2, axis=-1)
        correct += int(np.count_nonzero(d01 < np.minimum(d02, d12)))
    p = correct / num_samples
    return p, float(np.sqrt(p * (1.0 - p) / num_samples))
