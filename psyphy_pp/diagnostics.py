"""Recovery metrics between covariance fields (numpy, float64).

These compare a fitted field ``Sigma(x)`` with a reference (usually the ground
truth of a simulation) at a set of points, as in DESIGN.md section 3.
"""

from __future__ import annotations

__all__ = ["bures_wasserstein", "relative_frobenius", "recovery_error"]

import numpy as np

from psyphy_pp._typing import ArrayLike, Params
from psyphy_pp.model import WPPM


def _sqrtm_psd(A: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(A)
    return (V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(V, -1, -2)


def bures_wasserstein(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    """Bures-Wasserstein distance between SPD matrices, shape ``(...)``.

    .. math:: d(A, B)^2 = \\operatorname{tr} A + \\operatorname{tr} B
        - 2 \\operatorname{tr} (A^{1/2} B A^{1/2})^{1/2}

    It is the 2-Wasserstein distance between ``N(0, A)`` and ``N(0, B)``, so it
    is in the units of the stimulus (a standard deviation).
    """
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    rA = _sqrtm_psd(A)
    cross = np.trace(_sqrtm_psd(rA @ B @ rA), axis1=-2, axis2=-1)
    d2 = np.trace(A, axis1=-2, axis2=-1) + np.trace(B, axis1=-2, axis2=-1) - 2 * cross
    return np.sqrt(np.clip(d2, 0.0, None))


def relative_frobenius(A: ArrayLike, B: ArrayLike) -> np.ndarray:
    """``||A - B||_F / ||B||_F`` for matrices of shape ``(..., D, D)``."""
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    return np.linalg.norm(A - B, axis=(-2, -1)) / np.linalg.norm(B, axis=(-2, -1))


def recovery_error(
    model: WPPM, params: Params, truth: Params, points: ArrayLike
) -> dict[str, float]:
    """Mean Bures-Wasserstein and relative Frobenius error of ``Sigma`` at ``points``.

    Args:
        model: The model (its ``diag_term`` applies to both fields).
        params: Fitted parameters.
        truth: Reference parameters.
        points: Stimuli of shape ``(G, D)``.

    Returns:
        ``{"bures_wasserstein": ..., "relative_frobenius": ...}`` (means over points).
    """
    S = np.asarray(model.covariance(params, points), np.float64)
    T = np.asarray(model.covariance(truth, points), np.float64)
    return {
        "bures_wasserstein": float(np.mean(bures_wasserstein(S, T))),
        "relative_frobenius": float(np.mean(relative_frobenius(S, T))),
    }
