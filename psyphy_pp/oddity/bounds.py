"""The bounds every oddity likelihood clips P(correct) to."""

from __future__ import annotations

__all__ = ["PROB_EPS", "MAX_LOGIT"]

import math

#: Probabilities are clipped to ``[PROB_EPS, 1 - PROB_EPS]`` before the Bernoulli.
PROB_EPS = 1e-6
#: The same bound on the logit scale: ``log((1 - PROB_EPS) / PROB_EPS)``.
MAX_LOGIT = float(math.log((1.0 - PROB_EPS) / PROB_EPS))
