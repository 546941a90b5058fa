"""Simulating an observer's responses from a model and ground-truth weights."""

from __future__ import annotations

__all__ = ["simulate"]

import jax
import numpy as np

from psyphy_pp._typing import ArrayLike, Params, PRNGKey
from psyphy_pp.data import TrialData
from psyphy_pp.model import WPPM

#: The :attr:`TrialData.synthetic` description of the trials :func:`simulate` returns.
SIMULATED = "simulated by psyphy_pp.simulate"


def simulate(
    model: WPPM,
    truth: Params,
    refs: ArrayLike,
    comparisons: ArrayLike,
    *,
    key: PRNGKey,
) -> TrialData:
    """Draw Bernoulli responses with ``P(correct)`` of the ground truth.

    Args:
        model: Model (its task sets how P(correct) is computed).
        truth: Ground-truth parameters ``{"W": W}``.
        refs: Reference stimuli, shape ``(N, D)``.
        comparisons: Comparison stimuli, shape ``(N, D)``.
        key: PRNG key; split into the likelihood's noise and the response draws.

    Returns:
        A validated :class:`~psyphy_pp.TrialData`, marked as synthetic
        (:attr:`~psyphy_pp.TrialData.synthetic` is ``"simulated by psyphy_pp.simulate"``,
        and its CSV files say so in a ``# psyphy_pp synthetic:`` line).

    Examples:
        >>> import jax
        >>> model = WPPM(basis_degree=2)
        >>> truth = model.sample_prior(jax.random.PRNGKey(0))
        >>> data = simulate(model, truth, [[0.0, 0.0]], [[0.2, 0.0]], key=jax.random.PRNGKey(1))
        >>> data.responses.shape
        (1,)
        >>> data.synthetic
        'simulated by psyphy_pp.simulate'
    """
    key_noise, key_y = jax.random.split(key)
    p = model.prob_correct(truth, refs, comparisons, key=key_noise)
    y = jax.random.bernoulli(key_y, p)
    return TrialData(refs, comparisons, np.asarray(y, dtype=np.int32), synthetic=SIMULATED)
