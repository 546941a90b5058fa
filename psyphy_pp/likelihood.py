"""The oddity-task likelihood settings; they live in :mod:`psyphy_pp.oddity`.

This module keeps the names importable from their first home.
"""

from __future__ import annotations

__all__ = ["Oddity", "oddity_logits_mc", "PROB_EPS", "MAX_LOGIT"]

from psyphy_pp.oddity.bounds import MAX_LOGIT, PROB_EPS
from psyphy_pp.oddity.montecarlo import oddity_logits_mc
from psyphy_pp.oddity.task import Oddity
