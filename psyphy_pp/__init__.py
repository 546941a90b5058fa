"""psyphy_pp: the Wishart Process Psychophysical Model on NumPyro.

Examples:
    >>> import psyphy_pp as pp
    >>> pp.WPPM(input_dim=2, basis_degree=4).weights_shape
    (5, 5, 2, 3)
"""

from psyphy_pp import defaults as defaults
from psyphy_pp import designs as designs
from psyphy_pp import placement as placement
from psyphy_pp._version import __version__ as __version__
from psyphy_pp.arviz_io import to_arviz as to_arviz
from psyphy_pp.data import TrialData as TrialData
from psyphy_pp.diagnostics import FitComparison as FitComparison
from psyphy_pp.diagnostics import compare_fits as compare_fits
from psyphy_pp.ellipses import Ellipses as Ellipses
from psyphy_pp.experiment import AskedTrials as AskedTrials
from psyphy_pp.experiment import Experiment as Experiment
from psyphy_pp.fitio import IncompatibleFitError as IncompatibleFitError
from psyphy_pp.fitio import SavedFit as SavedFit
from psyphy_pp.fitio import load_fit as load_fit
from psyphy_pp.fitio import save_fit as save_fit
from psyphy_pp.goodness import GoodnessOfFit as GoodnessOfFit
from psyphy_pp.goodness import goodness_of_fit as goodness_of_fit
from psyphy_pp.hierarchical import HierarchicalFit as HierarchicalFit
from psyphy_pp.hierarchical import HierarchicalWPPM as HierarchicalWPPM
from psyphy_pp.hyperparameters import HyperparameterSearch as HyperparameterSearch
from psyphy_pp.hyperparameters import select_hyperparameters as select_hyperparameters
from psyphy_pp.inference import ConvergenceWarning as ConvergenceWarning
from psyphy_pp.inference import DataWarning as DataWarning
from psyphy_pp.inference import FitDivergedError as FitDivergedError
from psyphy_pp.inference import MapResult as MapResult
from psyphy_pp.inference import PsyphyWarning as PsyphyWarning
from psyphy_pp.inference import fit_map as fit_map
from psyphy_pp.laplace import LaplaceResult as LaplaceResult
from psyphy_pp.laplace import fit_laplace as fit_laplace
from psyphy_pp.model import WPPM as WPPM
from psyphy_pp.normalization import Normalization as Normalization
from psyphy_pp.nuts import NutsResult as NutsResult
from psyphy_pp.nuts import fit_nuts as fit_nuts
from psyphy_pp.oddity import Oddity as Oddity
from psyphy_pp.scratch import fit_map_scratch as fit_map_scratch
from psyphy_pp.sharding import trial_sharding as trial_sharding
from psyphy_pp.simulate import simulate as simulate
from psyphy_pp.threshold_table import Thresholds as Thresholds
from psyphy_pp.thresholds import psychometric_curves as psychometric_curves
from psyphy_pp.thresholds import thresholds as thresholds
from psyphy_pp.validation import Validation as Validation
from psyphy_pp.validation import validate as validate

__all__ = [
    "WPPM",
    "Oddity",
    "TrialData",
    "MapResult",
    "FitDivergedError",
    "ConvergenceWarning",
    "DataWarning",
    "PsyphyWarning",
    "fit_map",
    "fit_map_scratch",
    "simulate",
    "designs",
    "placement",
    "defaults",
    "Normalization",
    "SavedFit",
    "save_fit",
    "load_fit",
    "IncompatibleFitError",
    "thresholds",
    "Thresholds",
    "Ellipses",
    "psychometric_curves",
    "fit_nuts",
    "NutsResult",
    "fit_laplace",
    "LaplaceResult",
    "to_arviz",
    "compare_fits",
    "goodness_of_fit",
    "GoodnessOfFit",
    "validate",
    "select_hyperparameters",
    "Experiment",
    "AskedTrials",
    "HyperparameterSearch",
    "Validation",
    "FitComparison",
    "trial_sharding",
    "HierarchicalWPPM",
    "HierarchicalFit",
]
