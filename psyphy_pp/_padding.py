"""The one way trials are padded: copies of trial 0 after the real trials."""

from __future__ import annotations

__all__ = ["padded_index"]

import numpy as np


def padded_index(num: int, multiple: int) -> np.ndarray:
    """Indices that pad ``num`` trials to a multiple of ``multiple``.

    ``0 .. num-1`` followed by zeros: taking them from a trial array appends
    copies of trial 0 (a valid stimulus with a finite likelihood), and the real
    trials keep their positions.

    Examples:
        >>> padded_index(5, 4).tolist()
        [0, 1, 2, 3, 4, 0, 0, 0]
    """
    if num < 1:
        raise ValueError(f"padding needs at least one trial, got {num}")
    length = -(-num // multiple) * multiple
    return np.concatenate([np.arange(num), np.zeros(length - num, np.int64)])
