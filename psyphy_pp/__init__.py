"""psyphy_pp: the Wishart Process Psychophysical Model on NumPyro.

Examples:
    >>> import psyphy_pp as pp
    >>> pp.WPPM(input_dim=2, basis_degree=4).weights_shape
    (5, 5, 2, 3)
"""

from psyphy_pp import designs as designs
from psyphy_pp.data import TrialData as TrialData
from psyphy_pp.inference import FitDivergedError as FitDivergedError
from psyphy_pp.inference import MapResult as MapResult
from psyphy_pp.inference import fit_map as fit_map
from psyphy_pp.likelihood import Oddity as Oddity
from psyphy_pp.model import WPPM as WPPM
from psyphy_pp.scratch import fit_map_scratch as fit_map_scratch
from psyphy_pp.simulate import simulate as simulate

__version__ = "0.1.0"

__all__ = [
    "WPPM",
    "Oddity",
    "TrialData",
    "MapResult",
    "FitDivergedError",
    "fit_map",
    "fit_map_scratch",
    "simulate",
    "designs",
]
