"""Optional heavy imports, done late with an actionable error."""

from __future__ import annotations

import warnings
from typing import Any


def import_arviz() -> Any:
    """Import ArviZ lazily, without its (not actionable here) refactor notice."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
            import arviz as az
    except ImportError as err:  # pragma: no cover - arviz is a dependency
        raise ImportError(
            "psyphy_pp.to_arviz needs ArviZ: pip install 'arviz>=0.23,<0.24'"
        ) from err
    return az


def import_pandas() -> Any:
    """Import pandas lazily, for the DataFrame conversions of :class:`~psyphy_pp.TrialData`."""
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pandas is needed for DataFrame conversion; install it with `pip install pandas`"
        ) from err
    return pd
