"""Simulating an observer's responses from a model and ground-truth weights."""

from __future__ import annotations

__all__ = ["simulate"]

import numbers

import jax
import jax.numpy as jnp
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
    lapse_rate: float = 0.0,
) -> TrialData:
    """Draw Bernoulli responses with ``P(correct)`` of the ground truth.

    With ``lapse_rate`` ``lambda > 0`` the observer lapses: each trial lapses
    with probability ``lambda`` and is then correct with probability 1/3
    (chance), whatever the stimuli; the other trials are answered with the
    model's P(correct). Overall ``P(correct) = lambda / 3 + (1 - lambda) P``.

    Args:
        model: Model (its task sets how P(correct) is computed, including any
            lapse term of its own).
        truth: Ground-truth parameters ``{"W": W}`` (with ``"lapse_rate"`` if
            the model's task learns it).
        refs: Reference stimuli, shape ``(N, D)``.
        comparisons: Comparison stimuli, shape ``(N, D)``.
        key: PRNG key; split into the likelihood's noise and the response draws
            (and, with lapses, the lapse draws). The default ``lapse_rate=0``
            draws exactly the responses it drew before lapses existed.
        lapse_rate: The probability ``lambda`` in ``[0, 1)`` that a trial lapses.

    Returns:
        A validated :class:`~psyphy_pp.TrialData`, marked as synthetic
        (:attr:`~psyphy_pp.TrialData.synthetic` is ``"simulated by psyphy_pp.simulate"``,
        and its CSV files say so in a ``# psyphy_pp synthetic:`` line).

    Raises:
        ValueError: If ``lapse_rate`` is not a number in ``[0, 1)``.

    Examples:
        >>> import jax
        >>> model = WPPM(basis_degree=2)
        >>> truth = model.sample_prior(jax.random.PRNGKey(0))
        >>> data = simulate(model, truth, [[0.0, 0.0]], [[0.2, 0.0]], key=jax.random.PRNGKey(1))
        >>> data.responses.shape
        (1,)
        >>> data.synthetic
        'simulated by psyphy_pp.simulate'

        An observer who lapses on 30% of the trials, far from threshold (P near 1):

        >>> far = simulate(model, truth, [[-0.9, 0.0]] * 3000, [[0.9, 0.0]] * 3000,
        ...                key=jax.random.PRNGKey(1), lapse_rate=0.3)
        >>> round(float(1 - far.responses.mean()), 1)  # about 0.3 * 2/3 wrong
        0.2
    """
    if (isinstance(lapse_rate, bool) or not isinstance(lapse_rate, numbers.Real)
            or not 0.0 <= float(lapse_rate) < 1.0):
        raise ValueError(f"lapse_rate must be a number in [0, 1), got {lapse_rate!r}")
    key_noise, key_y = jax.random.split(key)
    p = model.prob_correct(truth, refs, comparisons, key=key_noise)
    y = jax.random.bernoulli(key_y, p)
    if lapse_rate > 0:
        key_lapse, key_guess = jax.random.split(jax.random.fold_in(key, 1))
        lapsed = jax.random.bernoulli(key_lapse, float(lapse_rate), y.shape)
        guess = jax.random.bernoulli(key_guess, jnp.asarray(1.0 / 3.0, p.dtype), y.shape)
        y = jnp.where(lapsed, guess, y)
    return TrialData(refs, comparisons, np.asarray(y, dtype=np.int32), synthetic=SIMULATED)
