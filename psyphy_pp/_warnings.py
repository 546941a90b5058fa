"""Warning classes of psyphy_pp."""

from __future__ import annotations


class PsyphyWarning(UserWarning):
    """Base class of the warnings psyphy_pp emits."""


class ConvergenceWarning(PsyphyWarning):
    """A fit reached its maximum number of steps before it converged."""


class DataWarning(PsyphyWarning):
    """The data look wrong for a fit: below chance, one kind of response, too few trials."""
