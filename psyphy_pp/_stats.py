"""Small statistics helpers shared by the goodness-of-fit and validation modules."""

from __future__ import annotations

__all__ = ["normal_quantile"]

import math


def normal_quantile(q: float) -> float:
    """The standard normal quantile of ``q`` in (0, 1) (bisection on ``erf``; no scipy needed).

    Examples:
        >>> round(normal_quantile(0.975), 4)
        1.96
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
