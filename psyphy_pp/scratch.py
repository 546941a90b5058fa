"""MAP estimation written from scratch: ``jax.value_and_grad``, ``jax.jit`` and optax.

This module is the tutorial counterpart of :func:`~psyphy_pp.fit_map`. It
minimises the same objective (the per-trial mean negative log posterior)
straight from the model's pure functions, without NumPyro's handlers, and
uses the same key schedule, so the two loops follow the same trajectory.
"""

from __future__ import annotations

__all__ = ["fit_map_scratch", "make_loss", "make_step"]

import functools
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import optax

from psyphy_pp import defaults
from psyphy_pp._jit import jit
from psyphy_pp._typing import Array, Params, PRNGKey
from psyphy_pp.checkpoint import Checkpoint
from psyphy_pp.data import TrialData
from psyphy_pp.inference import (
    DEFAULT_NUM_STEPS,
    MapResult,
    finish_fit,
    is_hierarchical,
    place_data,
    prepare_fit,
    resume_from,
)
from psyphy_pp.loop import run_loop
from psyphy_pp.model import SITE_W, WPPM
from psyphy_pp.optim import init_state, optimizer_step
from psyphy_pp.sharding import DevicesLike, TrialSharding, trial_sharding


# --8<-- [start:loss]
def make_loss(
    model: WPPM, data: TrialData, dtype=None, *, devices: DevicesLike = None
) -> Callable[[Params, PRNGKey], Array]:
    """The per-trial mean negative log posterior as a pure function ``loss(params, key)``.

    Each log density is scaled by ``1/N`` before it is summed, in the same order
    as NumPyro's ``Trace_ELBO`` under ``handlers.scale``, so that both MAP loops
    round alike. ``devices`` shards the trials as in
    :func:`~psyphy_pp.fit_map_scratch`; padding trials are masked out.

    The result is a ``jax.tree_util.Partial`` whose arrays are the data: they
    enter the compiled step of :func:`make_step` as arguments (keeping their
    sharding), and the step compiled for one model and data size serves every
    later fit of that size.
    """
    dtype = dtype or jnp.result_type(float)
    sharding = trial_sharding(devices)
    arrays = place_data(sharding, data, dtype)  # padded and sharded on several devices
    loss = _loss_function(model, sharding, arrays.num_trials)
    return jax.tree_util.Partial(
        loss, arrays.refs, arrays.comparisons, arrays.responses, arrays.mask)


@functools.lru_cache(maxsize=8)
def _loss_function(model: WPPM, sharding: TrialSharding | None, num_trials: int) -> Callable:
    """The loss of :func:`make_loss` with the data as its first four arguments."""
    scale = 1.0 / num_trials

    def loss(refs, comps, y, mask, params: Params, key: PRNGKey) -> Array:
        log_prior = scale * model.log_prior(params)
        log_lik = scale * model.log_likelihood(params, refs, comps, y, key, devices=sharding)
        if mask is not None:
            log_lik = jnp.where(mask, log_lik, 0.0)  # padding contributes exactly zero
        return -(log_prior + jnp.sum(log_lik))

    return loss
# --8<-- [end:loss]


# --8<-- [start:step]
def make_step(loss: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """One jitted optimiser step: ``(params, opt_state, key) -> (params, opt_state, loss)``.

    ``loss`` enters the compiled step as an argument: the arrays held by a
    ``jax.tree_util.Partial`` (such as the data of :func:`make_loss`) are then
    inputs of the program, not constants baked into it, and one compiled step
    serves every fit with the same loss function, optimiser and data shapes.
    :func:`~psyphy_pp.optim.optimizer_step` computes the value and gradient
    and hands the loss function to the optimiser too, which a line search
    (``optax.lbfgs``) needs.
    """
    loss = loss if isinstance(loss, jax.tree_util.Partial) else jax.tree_util.Partial(loss)
    return functools.partial(_compiled_step(optimizer), loss)


@functools.lru_cache(maxsize=8)
def _compiled_step(optimizer: optax.GradientTransformation) -> Callable:
    """The jitted step of :func:`make_step` for ``optimizer``, built once."""

    @jit  # jax.jit, with psyphy_pp's CPU compiler options (psyphy_pp/_jit.py)
    def step(loss, params: Params, opt_state: optax.OptState, key: PRNGKey):
        return optimizer_step(lambda p: loss(p, key), params, opt_state, optimizer)

    return step
# --8<-- [end:step]


def fit_map_scratch(
    model: WPPM | Any,
    data: TrialData,
    *,
    num_steps: int = DEFAULT_NUM_STEPS,
    optimizer: str | optax.GradientTransformation = "auto",
    learning_rate: float | None = None,
    momentum: float | None = None,
    clip_norm: float | None = None,
    tol: float | None = defaults.DEFAULT_TOL,
    seed: int = 0,
    init_params: Params | None = None,
    progress_bar: bool = True,
    devices: DevicesLike = None,
    resume: MapResult | Checkpoint | None = None,
) -> MapResult:
    """MAP estimate by a hand-written, jitted optax loop.

    Same arguments (``devices`` and ``resume`` included), defaults, objective, stopping rule and
    key schedule as :func:`~psyphy_pp.fit_map`; returns a
    :class:`~psyphy_pp.MapResult` with ``method="scratch"``.

    A fixed lapse rate (``Oddity(lapse_rate=0.05)``) works as in
    :func:`~psyphy_pp.fit_map`. A learnt one (``lapse_rate="learn"``) is
    refused: this loop steps the parameters as they are, with no change of
    variables, so a step could take ``lambda`` out of ``[0, 1)``; NumPyro's
    ``AutoDelta`` in :func:`~psyphy_pp.fit_map` optimises it on the logit scale.

    Raises:
        ValueError: For invalid arguments, or a model that learns the lapse
            rate (use :func:`~psyphy_pp.fit_map`), before anything is compiled.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> truth = model.sample_prior(jax.random.PRNGKey(1))
        >>> data = pp.simulate(model, truth, [[0.0, 0.0]], [[0.1, 0.0]], key=jax.random.PRNGKey(3))
        >>> fit = pp.fit_map_scratch(model, data, progress_bar=False)
        >>> fit.converged, fit.num_steps < 1000
        (True, True)
    """
    if is_hierarchical(model):  # several observers: psyphy_pp.hierarchical
        from psyphy_pp.hierarchical import fit_map_hierarchical

        return fit_map_hierarchical(  # type: ignore[return-value]
            cast(Any, model), data, method="scratch", num_steps=num_steps, optimizer=optimizer, tol=tol,
            seed=seed, init_params=init_params, progress_bar=progress_bar,
            learning_rate=learning_rate, momentum=momentum, clip_norm=clip_norm,
            devices=devices, resume=resume)
    if isinstance(model, WPPM) and model.task.learns_lapse:
        raise ValueError(
            f"fit_map_scratch cannot learn the lapse rate (task {model.task!r}): it steps the "
            "parameters without a change of variables, so lapse_rate could leave [0, 1). "
            "Use fit_map, which learns it on the logit scale, or fix it "
            "(Oddity(lapse_rate=0.05))")
    checkpoint, init_params = resume_from(resume, init_params)
    optimizer, init_params, noise_key, settings, sharding = prepare_fit(
        model, data, num_steps=num_steps, learning_rate=learning_rate, momentum=momentum,
        clip_norm=clip_norm, optimizer=optimizer, seed=seed, init_params=init_params,
        tol=tol, devices=devices,
    )
    if checkpoint is not None:
        checkpoint.check_settings("scratch", settings)
    # --8<-- [start:loop]
    loss = make_loss(model, data, dtype=init_params[SITE_W].dtype, devices=sharding or 1)
    step = make_step(loss, optimizer)

    def advance(state, t):
        params, opt_state = state
        key = jax.random.fold_in(noise_key, t)  # same key schedule as fit_map
        params, opt_state, value = step(params, opt_state, key)
        return (params, opt_state), value

    def run():  # steps until converged (settings["convergence"]) or num_steps
        state = (init_params, init_state(optimizer, init_params))
        if checkpoint is not None:  # continue where an earlier run stopped
            state = checkpoint.restore(state)
        return run_loop(advance, state, lambda s: s[0], num_steps, desc="fit_map_scratch",
                        progress_bar=progress_bar, settings=settings, method="scratch",
                        resume=checkpoint)
    # --8<-- [end:loop]
    return finish_fit("scratch", model, data, init_params, settings, run, lambda s: s[0],
                      data.num_trials)
