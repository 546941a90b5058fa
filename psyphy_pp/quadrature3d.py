"""The 3D oddity quadratures; they live in :mod:`psyphy_pp.oddity.quadrature3d`.

This module keeps the names importable from their first home.
"""

from __future__ import annotations

__all__ = ["DEFAULT_POLAR_NODES", "oddity_prob_gauss_hermite_3d", "oddity_prob_polar_3d"]

from psyphy_pp.oddity.quadrature3d import (
    DEFAULT_POLAR_NODES,
    oddity_prob_gauss_hermite_3d,
    oddity_prob_polar_3d,
)
