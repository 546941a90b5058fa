"""MAP estimation of the WPPM with NumPyro's SVI and an ``AutoDelta`` guide.

Objective. Both MAP loops (:func:`fit_map` here and
:func:`~psyphy_pp.fit_map_scratch`) minimise the *per-trial mean* negative log
posterior,

.. math:: \\mathcal{L}(W) = -\\frac{1}{N}\\Big(\\log p(W) + \\sum_{n=1}^N \\log p(y_n \\mid W)\\Big),

so gradients keep the same size whatever the number of trials ``N`` and one
learning rate serves from a thousand to a hundred thousand trials. (psyphy
0.0.4 minimised the summed objective, which needs a learning rate ~1/N; 0.0.5
uses the mean, as here.) The reported ``losses`` are in these units: nats per
trial.

Devices. With ``devices=`` (default: every device, when there is more than
one) the trials are sharded over a 1-D device mesh
(:mod:`psyphy_pp.sharding`): padded with masked trials that contribute exactly
zero, placed with ``NamedSharding``, ``W`` replicated, and the sum over trials
reduced by XLA. The losses do not depend on the number of devices (up to the
rounding of the sum).

Optimiser. The default is ``optax.adam(3e-3)``: on P-small, and on P-std-shaped
problems with 1,000 and 2,500 trials, it reached the MAP in 100-300 steps,
while SGD with momentum 0.9 (the peers' optimiser, ``optimizer="sgd"``, rate
1e-4) had not converged after 2,000 steps and overshot early; at rate 3e-4 it
diverged on the Monte Carlo likelihood (``python -m benchmarks.bench_map``).

Noise. With a fresh-noise Monte Carlo task, step ``t`` evaluates the
likelihood with the key ``fold_in(noise_key, t)``, where
``init_key, noise_key = split(PRNGKey(seed))``. Both loops use this schedule, so
with the same seed and initial value they follow the same trajectory.
"""

from __future__ import annotations

__all__ = ["MapResult", "fit_map", "DEFAULT_LEARNING_RATES", "DEFAULT_NUM_STEPS", "FitDivergedError"]

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from psyphy_pp._jit import jit
from psyphy_pp._progress import progress
from psyphy_pp._typing import Params, PRNGKey
from psyphy_pp._validation import check_nonnegative, check_positive
from psyphy_pp.data import TrialData
from psyphy_pp.model import SITE_W, WPPM
from psyphy_pp.sharding import DevicesLike, TrialArrays, TrialSharding, place_trials, trial_sharding

logger = logging.getLogger(__name__)

#: Default learning rate of each named optimiser (per-trial objective).
DEFAULT_LEARNING_RATES = {"adam": 3e-3, "sgd": 1e-4}
DEFAULT_NUM_STEPS = 1000
DEFAULT_MOMENTUM = 0.9


class FitDivergedError(FloatingPointError):
    """The loss became non-finite during a fit.

    Attributes:
        step: The first step with a non-finite loss.
        last_params: The last parameters whose loss was finite.
    """

    def __init__(self, step: int, last_params: Params, learning_rate: float | None):
        self.step = step
        self.last_params = last_params
        hint = (
            f"try a smaller learning_rate than {learning_rate}"
            if learning_rate is not None
            else "try a smaller learning rate"
        )
        super().__init__(f"the loss became non-finite at step {step}; {hint} "
                         "or enable gradient clipping (clip_norm=1.0)")


@dataclass(frozen=True)
class MapResult:
    """The outcome of a MAP fit.

    Attributes:
        params: ``{"W": W}`` at the end of the optimisation.
        losses: Per-step loss, shape ``(num_steps,)``: the per-trial mean negative
            log posterior (nats per trial) evaluated *before* each update.
        init_params: The starting point.
        model: The model that was fitted.
        data: The data it was fitted to.
        method: ``"svi"`` or ``"scratch"``.
        settings: The settings used (seed, steps, optimiser, ...), and the
            timing: ``first_step_seconds`` (with compilation), ``seconds_per_step``.
    """

    params: Params
    losses: np.ndarray
    init_params: Params
    model: WPPM
    data: TrialData
    method: str
    settings: dict = field(default_factory=dict)

    loss_scaling: str = "mean negative log posterior per trial"

    def __repr__(self) -> str:
        return (
            f"MapResult(method={self.method!r}, num_steps={len(self.losses)}, "
            f"final_loss={float(self.losses[-1]):.6g}, settings={self.settings})"
        )


def default_optimizer(
    name: str = "adam",
    learning_rate: float | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """``optax.adam`` or ``optax.sgd`` (with momentum), after optional norm clipping."""
    lr = DEFAULT_LEARNING_RATES[name] if learning_rate is None else learning_rate
    opt = optax.adam(lr) if name == "adam" else optax.sgd(lr, momentum=momentum or None)
    return opt if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), opt)


def check_model_and_data(model: WPPM, data: TrialData) -> None:
    """Raise ``ValueError`` unless ``model`` is a WPPM and ``data`` TrialData of its dimension."""
    if not isinstance(model, WPPM):
        raise ValueError(f"model must be a psyphy_pp.WPPM, got {type(model).__name__}")
    if not isinstance(data, TrialData):
        raise ValueError(f"data must be a psyphy_pp.TrialData, got {type(data).__name__}")
    data.check_model(model.input_dim)


def prepare_fit(
    model: WPPM,
    data: TrialData,
    *,
    num_steps: int,
    learning_rate: float | None,
    momentum: float,
    clip_norm: float | None,
    optimizer: str | optax.GradientTransformation,
    seed: int,
    init_params: Params | None,
    devices: DevicesLike = None,
) -> tuple[optax.GradientTransformation, Params, PRNGKey, dict, TrialSharding | None]:
    """Check the arguments shared by the MAP loops; build optimiser, init, key and layout.

    Returns:
        ``(optimizer, init_params, noise_key, settings, sharding)``; ``sharding``
        is None on one device, and ``init_params`` are replicated over its mesh.
    """
    check_model_and_data(model, data)
    sharding = trial_sharding(devices)
    check_positive("num_steps", num_steps, integer=True)
    check_nonnegative("seed", seed, integer=True)
    if isinstance(optimizer, str):
        if optimizer not in DEFAULT_LEARNING_RATES:
            raise ValueError(
                f"optimizer must be one of {tuple(DEFAULT_LEARNING_RATES)} or an "
                f"optax.GradientTransformation, got {optimizer!r}"
            )
        if learning_rate is None:
            learning_rate = DEFAULT_LEARNING_RATES[optimizer]
        check_positive("learning_rate", learning_rate)
        check_nonnegative("momentum", momentum)
        if momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if clip_norm is not None:
            check_positive("clip_norm", clip_norm)
        opt_desc = f"{optimizer}(lr={learning_rate}" + (
            f", momentum={momentum}" if optimizer == "sgd" else "") + f", clip_norm={clip_norm})"
        optimizer = default_optimizer(optimizer, learning_rate, momentum, clip_norm)
    elif isinstance(optimizer, optax.GradientTransformation):
        opt_desc = repr(optimizer)[:80]
        learning_rate = None
    else:
        raise ValueError(
            "optimizer must be 'adam', 'sgd' or an optax.GradientTransformation, "
            f"got {type(optimizer).__name__}"
        )
    init_key, noise_key = jax.random.split(jax.random.PRNGKey(seed))
    if init_params is None:
        init_params = model.sample_prior(init_key)
    else:
        model._weights(init_params)  # shape check
        init_params = {SITE_W: jnp.asarray(init_params[SITE_W], dtype=jnp.result_type(float))}
    if sharding is not None:
        init_params = sharding.replicate(init_params)
    settings = dict(
        num_steps=num_steps,
        learning_rate=learning_rate,
        optimizer=opt_desc,
        seed=seed,
        task=model.task,
        num_trials=data.num_trials,
        num_devices=1 if sharding is None else sharding.num_devices,
    )
    return optimizer, init_params, noise_key, settings, sharding


def place_data(sharding: TrialSharding | None, data: TrialData, dtype: Any) -> TrialArrays:
    """The trial arrays of ``data`` for ``sharding`` (padded, masked and placed)."""
    return place_trials(sharding, data.refs, data.comparisons, data.responses, dtype=dtype)


def run_loop(
    step: Callable[[Any, int], tuple[Any, jax.Array]],
    state: Any,
    get_params: Callable[[Any], Params],
    num_steps: int,
    *,
    desc: str,
    progress_bar: bool,
    learning_rate: float | None,
) -> tuple[Any, np.ndarray, dict]:
    """Drive ``state, loss = step(state, t)`` for ``num_steps`` steps.

    Shows a progress bar, and stops with :class:`FitDivergedError` at the first
    non-finite loss (the state before that step is kept on the exception).

    Returns:
        ``(state, losses, timing)``; ``timing`` holds ``first_step_seconds``
        (including compilation) and ``seconds_per_step`` (the mean of the others).
    """
    losses = np.empty(num_steps)
    update_every = max(1, num_steps // 100)
    start = time.perf_counter()
    with progress(num_steps, desc, progress_bar) as bar:
        for t in range(num_steps):
            new_state, loss = step(state, t)
            losses[t] = loss  # waits for the step to finish
            if t == 0:
                first = time.perf_counter()
            if not np.isfinite(losses[t]):
                raise FitDivergedError(t, get_params(state), learning_rate)
            state = new_state
            if (t + 1) % update_every == 0 or t + 1 == num_steps:
                bar.update(update_every if (t + 1) % update_every == 0 else num_steps % update_every)
                bar.set_postfix_str(f"loss {losses[t]:.5g}")
    params = get_params(state)
    if not all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(params)):
        raise FitDivergedError(num_steps, params, learning_rate)
    end = time.perf_counter()
    timing = {
        "first_step_seconds": first - start,  # includes compilation
        "seconds_per_step": (end - first) / (num_steps - 1) if num_steps > 1 else None,
    }
    logger.info("%s: %d steps, loss %.6g -> %.6g, %s", desc, num_steps, losses[0], losses[-1], timing)
    return state, losses, timing


def fit_map(
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
    devices: DevicesLike = None,
) -> MapResult:
    """MAP estimate by NumPyro SVI with an ``AutoDelta`` guide and optax.

    The loss is the per-trial mean negative log posterior (see the module
    docstring). The optimiser is ``optax.adam(3e-3)`` by default;
    ``optimizer="sgd"`` gives the peers' SGD with momentum (rate 1e-4, momentum
    0.9), and any optax transformation may be passed instead. ``clip_norm``
    puts ``optax.clip_by_global_norm`` in front of a named optimiser.

    Args:
        model: The :class:`~psyphy_pp.WPPM` to fit.
        data: The trials.
        num_steps: Optimiser steps.
        optimizer: ``"adam"``, ``"sgd"`` (with momentum) or any
            ``optax.GradientTransformation``.
        learning_rate: Rate of a named optimiser; None picks
            :data:`DEFAULT_LEARNING_RATES` (3e-3 for Adam, 1e-4 for SGD).
        momentum: Momentum of ``optimizer="sgd"``.
        clip_norm: Clip the gradient's global norm to this value (off if None;
            named optimisers only).
        seed: Seeds the prior draw used as initial value and the Monte Carlo noise.
        init_params: ``{"W": W}`` to start from instead of a prior draw.
        progress_bar: Show a progress bar.
        devices: Shard the trials over these devices: None (every device when
            there is more than one), a number of devices, a sequence of
            ``jax.Device`` or a 1-D ``jax.sharding.Mesh`` with axis ``"trials"``
            (see :func:`~psyphy_pp.sharding.trial_sharding`). With several
            processes, ``data`` is this process's slice of the trials.

    Returns:
        A :class:`MapResult` with ``method="svi"``.

    Raises:
        ValueError: For invalid arguments, before anything is compiled.
        FitDivergedError: If the loss becomes non-finite.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1, task=pp.Oddity(num_samples=20))
        >>> truth = model.sample_prior(jax.random.PRNGKey(1))
        >>> refs, comps = pp.designs.grid_design(model, truth, grid_size=2,
        ...     trials_per_ref=10, key=jax.random.PRNGKey(2))
        >>> data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(3))
        >>> fit = pp.fit_map(model, data, num_steps=5, progress_bar=False)
        >>> fit.losses.shape
        (5,)
    """
    from functools import partial

    from numpyro.handlers import scale
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.infer.initialization import init_to_value
    from numpyro.optim import optax_to_numpyro

    optimizer, init_params, noise_key, settings, sharding = prepare_fit(
        model, data, num_steps=num_steps, learning_rate=learning_rate, momentum=momentum,
        clip_norm=clip_norm, optimizer=optimizer, seed=seed, init_params=init_params,
        devices=devices,
    )
    arrays = place_data(sharding, data, init_params[SITE_W].dtype)
    refs, comps, y = arrays.refs, arrays.comparisons, arrays.responses
    mask = arrays.mask  # masks the padding trials of a sharded run; None otherwise
    settings["num_trials"] = arrays.num_trials

    model_fn = partial(model.numpyro_model, devices=sharding)  # None: unsharded
    objective = scale(model_fn, scale=1.0 / arrays.num_trials)
    guide = AutoDelta(objective, init_loc_fn=init_to_value(values=init_params))
    svi = SVI(objective, guide, optax_to_numpyro(optimizer), Trace_ELBO())
    svi_state = svi.init(jax.random.PRNGKey(seed), refs, comps, y, key=noise_key, mask=mask)
    update = jit(svi.update)

    def step(state, t):
        return update(state, refs, comps, y, key=jax.random.fold_in(noise_key, t), mask=mask)

    def get_params(state):
        return {SITE_W: guide.median(svi.get_params(state))[SITE_W]}

    svi_state, losses, timing = run_loop(
        step, svi_state, get_params, num_steps, desc="fit_map (SVI)",
        progress_bar=progress_bar, learning_rate=settings["learning_rate"],
    )
    settings.update(timing)
    return MapResult(
        params=get_params(svi_state), losses=losses, init_params=init_params,
        model=model, data=data, method="svi", settings=settings,
    )
