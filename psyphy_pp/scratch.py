"""MAP estimation written from scratch: ``jax.value_and_grad``, ``jax.jit`` and optax.

This module is the tutorial counterpart of :func:`~psyphy_pp.fit_map`. It
minimises the same objective (the per-trial mean negative log posterior)
straight from the model's pure functions, without NumPyro's handlers, and
uses the same key schedule, so the two loops follow the same trajectory.
"""

from __future__ import annotations

__all__ = ["fit_map_scratch", "make_loss", "make_step"]

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from psyphy_pp._jit import jit
from psyphy_pp._typing import Array, Params, PRNGKey
from psyphy_pp.data import TrialData
from psyphy_pp.inference import (
    DEFAULT_MOMENTUM,
    DEFAULT_NUM_STEPS,
    MapResult,
    prepare_fit,
    run_loop,
)
from psyphy_pp.model import SITE_W, WPPM


# --8<-- [start:loss]
def make_loss(model: WPPM, data: TrialData, dtype=None) -> Callable[[Params, PRNGKey], Array]:
    """The per-trial mean negative log posterior as a pure function ``loss(params, key)``.

    Each log density is scaled by ``1/N`` before it is summed, in the same order
    as NumPyro's ``Trace_ELBO`` under ``handlers.scale``, so that both MAP loops
    round alike.
    """
    dtype = dtype or jnp.result_type(float)
    refs = jnp.asarray(data.refs, dtype)
    comps = jnp.asarray(data.comparisons, dtype)
    y = jnp.asarray(data.responses, dtype)
    scale = 1.0 / data.num_trials

    def loss(params: Params, key: PRNGKey) -> Array:
        log_prior = scale * model.log_prior(params)
        log_lik = jnp.sum(scale * model.log_likelihood(params, refs, comps, y, key))
        return -(log_prior + log_lik)

    return loss
# --8<-- [end:loss]


# --8<-- [start:step]
def make_step(loss: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """One jitted optimiser step: ``(params, opt_state, key) -> (params, opt_state, loss)``."""

    @jit  # jax.jit, with psyphy_pp's CPU compiler options (psyphy_pp/_jit.py)
    def step(params: Params, opt_state: optax.OptState, key: PRNGKey):
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step
# --8<-- [end:step]


def fit_map_scratch(
    model: WPPM,
    data: TrialData,
    *,
    num_steps: int = DEFAULT_NUM_STEPS,
    optimizer: str | optax.GradientTransformation = "adam",
    learning_rate: float | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    clip_norm: float | None = None,
    seed: int = 0,
    init_params: Params | None = None,
    progress_bar: bool = True,
) -> MapResult:
    """MAP estimate by a hand-written, jitted optax loop.

    Same arguments, defaults, objective and key schedule as
    :func:`~psyphy_pp.fit_map`; returns a :class:`~psyphy_pp.MapResult` with
    ``method="scratch"``.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1, task=pp.Oddity(num_samples=20))
        >>> truth = model.sample_prior(jax.random.PRNGKey(1))
        >>> data = pp.simulate(model, truth, [[0.0, 0.0]], [[0.1, 0.0]], key=jax.random.PRNGKey(3))
        >>> pp.fit_map_scratch(model, data, num_steps=3, progress_bar=False).losses.shape
        (3,)
    """
    optimizer, init_params, noise_key, settings = prepare_fit(
        model, data, num_steps=num_steps, learning_rate=learning_rate, momentum=momentum,
        clip_norm=clip_norm, optimizer=optimizer, seed=seed, init_params=init_params,
    )
    # --8<-- [start:loop]
    loss = make_loss(model, data, dtype=init_params[SITE_W].dtype)
    step = make_step(loss, optimizer)

    def advance(state, t):
        params, opt_state = state
        key = jax.random.fold_in(noise_key, t)  # same key schedule as fit_map
        params, opt_state, value = step(params, opt_state, key)
        return (params, opt_state), value

    state = (init_params, optimizer.init(init_params))
    (params, _), losses, timing = run_loop(
        advance, state, lambda s: s[0], num_steps, desc="fit_map_scratch",
        progress_bar=progress_bar, learning_rate=settings["learning_rate"],
    )
    # --8<-- [end:loop]
    settings.update(timing)
    return MapResult(
        params=params, losses=losses, init_params=init_params,
        model=model, data=data, method="scratch", settings=settings,
    )
