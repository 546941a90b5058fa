"""The 2D oddity quadratures; they live in :mod:`psyphy_pp.oddity.quadrature2d`.

This module keeps the names importable from their first home.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_NUM_ANGLES",
    "DEFAULT_NUM_HERMITE",
    "DEFAULT_NUM_RADIAL",
    "oddity_prob_quadrature",
    "oddity_prob_semianalytic",
]

from psyphy_pp.oddity.quadrature2d import (
    DEFAULT_NUM_ANGLES,
    DEFAULT_NUM_HERMITE,
    DEFAULT_NUM_RADIAL,
    oddity_prob_quadrature,
    oddity_prob_semianalytic,
)
