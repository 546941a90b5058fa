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

Optimiser. ``optimizer="auto"`` (the default) is L-BFGS (``optax.lbfgs``, a
zoom line search) on a deterministic likelihood, which the default quadrature
is, and Adam (rate 3e-3) on fresh-noise Monte Carlo, where a line search cannot
compare losses. On P-std (N = 10,000) L-BFGS came within 1e-5 nats per trial of
the optimum in 274 iterations and within 1e-6 in 333; Adam at 3e-3 needed ~900
steps to come within 1e-4, and its loss still jumped by up to 1e-2 late in the
fit; SGD with momentum 0.9 (``optimizer="sgd"``, rate 1e-4, the peers'
optimiser) was 2e-3 above the optimum after 1,500 steps (``python -m
benchmarks.bench_map``). The policy lives in :mod:`psyphy_pp.defaults`.

Stopping. ``num_steps`` is a maximum. A fit on a deterministic likelihood stops
as soon as no parameter moved by more than ``tol`` (relative to the largest
one; default 1e-5) over the last ``window`` steps
(:class:`~psyphy_pp.optim.Convergence`; 10 steps for L-BFGS, 100 for Adam and
SGD) and reports ``converged=True``; reaching ``num_steps`` first gives
``converged=False`` and a :class:`~psyphy_pp.ConvergenceWarning`. A first-order
method at a constant rate keeps moving by about its rate and seldom meets the
rule: use L-BFGS for a converged MAP. With fresh Monte Carlo noise the loss is
a noisy estimate: every step runs and ``converged`` is None.

Noise. With a fresh-noise Monte Carlo task, step ``t`` evaluates the
likelihood with the key ``fold_in(noise_key, t)``, where
``init_key, noise_key = split(PRNGKey(seed))``. Both loops use this schedule, so
with the same seed and initial value they follow the same trajectory.
"""

from __future__ import annotations

__all__ = [
    "MapResult",
    "fit_map",
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_NUM_STEPS",
    "FitDivergedError",
    "ConvergenceWarning",
    "DataWarning",
    "PsyphyWarning",
    "data_warnings",
]

import functools
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from psyphy_pp import defaults
from psyphy_pp._jit import jit
from psyphy_pp._typing import Params, PRNGKey
from psyphy_pp._validation import check_choice, check_nonnegative, check_positive
from psyphy_pp._warnings import ConvergenceWarning, DataWarning, PsyphyWarning
from psyphy_pp.checkpoint import Checkpoint
from psyphy_pp.data import TrialData
from psyphy_pp.loop import FitDivergedError, run_loop
from psyphy_pp.model import SITE_LAPSE, SITE_W, WPPM
from psyphy_pp.optim import Convergence, OptaxWithValueFn
from psyphy_pp.sharding import DevicesLike, TrialArrays, TrialSharding, place_trials, trial_sharding

logger = logging.getLogger(__name__)

#: Default learning rate of each first-order optimiser (per-trial objective).
DEFAULT_LEARNING_RATES = defaults.DEFAULT_LEARNING_RATES
#: The most steps a MAP fit takes (it stops earlier once converged).
DEFAULT_NUM_STEPS = defaults.DEFAULT_NUM_STEPS
DEFAULT_MOMENTUM = defaults.DEFAULT_MOMENTUM


@dataclass(frozen=True)
class MapResult:
    """The outcome of a MAP fit.

    Attributes:
        params: ``{"W": W}`` at the end of the optimisation, with
            ``"lapse_rate"`` when the task learns the lapse rate.
        losses: Per-step loss, shape ``(num_steps,)`` (the steps that ran): the
            per-trial mean negative log posterior (nats per trial) evaluated
            *before* each update.
        init_params: The starting point.
        model: The model that was fitted.
        data: The data it was fitted to.
        method: ``"svi"`` or ``"scratch"``.
        settings: The settings used (seed, maximum steps, optimiser, ``tol``,
            ``window``, ...), and the timing: ``first_step_seconds`` (with
            compilation), ``seconds_per_step``.
        converged: True if the stopping rule was met, False if ``num_steps``
            ran out first (or the fit diverged), None when the rule does not
            apply (fresh-noise Monte Carlo).
        convergence: The reason, in words.
        nll_per_trial: The mean negative log-likelihood per trial, without the
            prior, at the last evaluated step (nats per trial; a noisy estimate
            with fresh Monte Carlo noise).
        constant_nll_per_trial: The same for an observer who is correct with a
            constant probability, the data's proportion correct: what a field
            that explains nothing achieves. The difference is what the field
            explains.
    """

    params: Params
    losses: np.ndarray
    init_params: Params
    model: WPPM
    data: TrialData
    method: str
    settings: dict = field(default_factory=dict)
    converged: bool | None = None
    convergence: str = ""
    nll_per_trial: float = math.nan
    constant_nll_per_trial: float = math.nan
    interrupted: bool = False
    checkpoint: Checkpoint | None = field(default=None, repr=False, compare=False)

    loss_scaling: str = "mean negative log posterior per trial"

    @property
    def kind(self) -> str:
        """``"point"``: one estimate of ``W`` (:class:`~psyphy_pp.results.FitResult`)."""
        return "point"

    def weight_draws(self) -> np.ndarray:
        """``W`` as one chain of one draw, shape ``(1, 1, *weights_shape)``."""
        return np.asarray(self.params[SITE_W])[None, None]

    @property
    def num_steps(self) -> int:
        """The number of optimiser steps that ran."""
        return int(len(self.losses))

    @property
    def final_loss(self) -> float:
        """The last loss (nats per trial, prior included)."""
        return float(self.losses[-1])

    def __repr__(self) -> str:
        stopped = ", interrupted=True" if self.interrupted else ""
        if SITE_LAPSE in self.params:
            stopped += f", lapse_rate={float(self.params[SITE_LAPSE]):.4g}"
        return (
            f"MapResult(method={self.method!r}, converged={self.converged}{stopped}, "
            f"num_steps={self.num_steps}, final_loss={self.final_loss:.6g}, "
            f"nll_per_trial={self.nll_per_trial:.5g} (constant observer "
            f"{self.constant_nll_per_trial:.5g}), optimizer={self.settings.get('optimizer')!r})"
        )


def constant_nll(responses: np.ndarray) -> float:
    """Mean negative log-likelihood per trial of a constant observer at the data's rate."""
    p = float(np.mean(responses))
    if p in (0.0, 1.0):
        return 0.0
    return float(-(p * np.log(p) + (1 - p) * np.log1p(-p)))


def check_model_and_data(model: WPPM, data: TrialData) -> None:
    """Raise ``ValueError`` unless ``model`` is a WPPM and ``data`` TrialData of its dimension."""
    if not isinstance(model, WPPM):
        raise ValueError(f"model must be a psyphy_pp.WPPM, got {type(model).__name__}")
    if not isinstance(data, TrialData):
        raise ValueError(f"data must be a psyphy_pp.TrialData, got {type(data).__name__}")
    data.check_model(model.input_dim)


def data_warnings(model: WPPM, data: TrialData) -> list[str]:
    """What looks wrong with ``data`` for fitting ``model``, in words (empty if nothing).

    Checks the proportion correct against chance (1/3 in the oddity task), whether
    every response is the same, and the number of trials against the number of
    weights. :func:`fit_map` and :func:`fit_map_scratch` warn each with a
    :class:`~psyphy_pp.DataWarning`; ``psyphy-pp fit`` also writes them to
    summary.txt.

    Examples:
        >>> import numpy as np, psyphy_pp as pp
        >>> data = pp.TrialData(np.zeros((3, 2)), np.full((3, 2), 0.1), np.zeros(3, int))
        >>> for w in data_warnings(pp.WPPM(basis_degree=1), data): print(w)
        every response is 0: the field cannot be estimated from one kind of answer
        the proportion correct is 0, below chance (1/3) for an oddity task: are the responses coded 1 = correct?
        3 trials for 24 weights: the prior, not the data, will decide most of the field
    """
    y = np.asarray(data.responses)
    found = []
    if y.size and np.all(y == y[0]):
        found.append(f"every response is {int(y[0])}: the field cannot be estimated from one "
                     "kind of answer")
    rate = float(np.mean(y)) if y.size else math.nan
    if rate < 1.0 / 3.0:
        found.append(f"the proportion correct is {rate:.3g}, below chance (1/3) for an oddity "
                     "task: are the responses coded 1 = correct?")
    num_weights = int(np.prod(model.weights_shape))
    if data.num_trials < num_weights:
        found.append(f"{data.num_trials} trials for {num_weights} weights: the prior, not the "
                     "data, will decide most of the field")
    return found


def prepare_fit(
    model: WPPM,
    data: TrialData,
    *,
    num_steps: int,
    learning_rate: float | None,
    momentum: float | None,
    clip_norm: float | None,
    optimizer: str | optax.GradientTransformation,
    seed: int,
    init_params: Params | None,
    tol: float | None = defaults.DEFAULT_TOL,
    devices: DevicesLike = None,
) -> tuple[optax.GradientTransformation, Params, PRNGKey, dict, TrialSharding | None]:
    """Check the arguments shared by the MAP loops; build optimiser, init, key and layout.

    Returns:
        ``(optimizer, init_params, noise_key, settings, sharding)``; ``sharding``
        is None on one device, and ``init_params`` are replicated over its mesh.
        ``settings["convergence"]`` is the :class:`~psyphy_pp.optim.Convergence`
        rule (None with fresh Monte Carlo noise).
    """
    check_model_and_data(model, data)
    sharding = trial_sharding(devices)
    check_positive("num_steps", num_steps, integer=True)
    check_nonnegative("seed", seed, integer=True)
    if tol is not None:
        check_nonnegative("tol", tol)
    if isinstance(optimizer, str):
        check_choice("optimizer", optimizer, defaults.OPTIMIZERS)
        name = defaults.optimizer_name(optimizer, model.task)
        if learning_rate is not None:
            if name == "lbfgs":
                raise ValueError(
                    f"learning_rate applies to optimizer 'adam' or 'sgd', not {name!r} "
                    "(its line search picks each step's length); got "
                    f"learning_rate={learning_rate!r} with optimizer={optimizer!r}"
                )
            check_positive("learning_rate", learning_rate)
        if momentum is not None:
            if name != "sgd":
                raise ValueError(
                    f"momentum applies to optimizer='sgd' only, got momentum={momentum!r} "
                    f"with optimizer={optimizer!r} ({name})"
                )
            check_nonnegative("momentum", momentum)
            if momentum >= 1:
                raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if clip_norm is not None:
            check_positive("clip_norm", clip_norm)
        if name != "lbfgs":
            learning_rate = defaults.DEFAULT_LEARNING_RATES[name] if learning_rate is None else learning_rate
        if name == "sgd":
            momentum = defaults.DEFAULT_MOMENTUM if momentum is None else momentum
        opt_desc = name + "(" + ", ".join(
            f"{k}={v}" for k, v in (("lr", learning_rate), ("momentum", momentum),
                                    ("clip_norm", clip_norm)) if v is not None) + ")"
        optimizer = defaults.make_optimizer(name, learning_rate, momentum, clip_norm)
    elif isinstance(optimizer, optax.GradientTransformation):
        for arg, value in (("learning_rate", learning_rate), ("momentum", momentum),
                           ("clip_norm", clip_norm)):
            if value is not None:
                raise ValueError(
                    f"{arg} applies to a named optimizer ('adam', 'sgd'); with an optax "
                    f"transformation set it there instead (got {arg}={value!r})"
                )
        name, opt_desc = "custom", repr(optimizer)[:80]
    else:
        raise ValueError(
            f"optimizer must be one of {defaults.OPTIMIZERS} or an optax.GradientTransformation, "
            f"got {type(optimizer).__name__}"
        )
    init_key, noise_key = jax.random.split(jax.random.PRNGKey(seed))
    if init_params is None:
        init_params = model.sample_prior(init_key)
    else:
        given = init_params
        W0 = np.asarray(model.weights(init_params))  # shape check
        if not np.all(np.isfinite(W0)):
            raise ValueError(
                f"init_params['W'] must be finite, got {int(np.sum(~np.isfinite(W0)))} "
                f"non-finite values of {W0.size}"
            )
        init_params = {SITE_W: jnp.asarray(W0, dtype=jnp.result_type(float))}
        if model.task.learns_lapse:
            init_params[SITE_LAPSE] = model.initial_lapse(given)
    for message in data_warnings(model, data):
        warnings.warn(message, DataWarning, stacklevel=3)
    if sharding is not None:
        init_params = sharding.replicate(init_params)
    rule = None
    if model.task.deterministic:
        rule = Convergence(tol, defaults.CONVERGENCE_WINDOW[name],
                           scale=float(np.max(model.prior_std())))
    settings = dict(
        num_steps=num_steps,
        learning_rate=learning_rate,
        optimizer=opt_desc,
        tol=tol,
        window=None if rule is None else rule.window,
        convergence=rule,
        seed=seed,
        task=model.task,
        num_trials=data.num_trials,
        num_devices=1 if sharding is None else sharding.num_devices,
    )
    return optimizer, init_params, noise_key, settings, sharding


def resume_from(
    resume: MapResult | Checkpoint | None, init_params: Params | None
) -> tuple[Checkpoint | None, Params | None]:
    """The checkpoint to continue from, and the start to report (the original one).

    Raises:
        ValueError: If ``resume`` is neither a MapResult with a checkpoint nor a
            :class:`~psyphy_pp.checkpoint.Checkpoint`, or comes with ``init_params``.
    """
    if resume is None:
        return None, init_params
    if init_params is not None:
        raise ValueError("pass either resume or init_params, not both (resume continues "
                         "from the checkpoint's parameters)")
    if isinstance(resume, MapResult):
        if resume.checkpoint is None:
            raise ValueError("resume: this MapResult has no checkpoint (it was loaded "
                             "from a file?); pass the Checkpoint itself")
        return resume.checkpoint, resume.init_params
    if isinstance(resume, Checkpoint):
        return resume, None
    raise ValueError(f"resume must be a MapResult or a Checkpoint, got {type(resume).__name__}")


def place_data(sharding: TrialSharding | None, data: TrialData, dtype: Any) -> TrialArrays:
    """The trial arrays of ``data`` for ``sharding`` (padded, masked and placed)."""
    return place_trials(sharding, data.refs, data.comparisons, data.responses, dtype=dtype)


def finish_fit(
    method: str,
    model: WPPM,
    data: TrialData,
    init_params: Params,
    settings: dict,
    run: Callable[[], tuple[Any, Any, np.ndarray, dict]],
    get_params: Callable[[Any], Params],
    num_trials: int,
) -> MapResult:
    """Run a MAP loop and package the :class:`MapResult` (shared by both loops).

    Adds the fit-quality numbers, warns when the fit did not converge and, on
    divergence, attaches the partial result to the :class:`FitDivergedError`.
    """
    def package(params, losses, info, last_params):
        nll = math.nan
        if len(losses) and last_params is not None:
            log_prior = float(model.log_prior(last_params))
            nll = float(losses[-1]) + log_prior / num_trials
        kept = {k: v for k, v in settings.items() if k != "convergence"}
        kept["num_steps_run"] = len(losses)
        special = ("converged", "convergence", "interrupted", "checkpoint")
        kept.update({k: v for k, v in info.items() if k not in special})
        return MapResult(
            params=params, losses=losses, init_params=init_params, model=model, data=data,
            method=method, settings=kept, converged=info["converged"],
            convergence=info["convergence"], nll_per_trial=nll,
            constant_nll_per_trial=constant_nll(np.asarray(data.responses)),
            interrupted=info.get("interrupted", False), checkpoint=info.get("checkpoint"),
        )

    try:
        state, last_state, losses, info = run()
    except FitDivergedError as err:
        info = {"converged": False, "convergence": f"diverged: {err}"}
        err.result = package(err.last_params, err.losses, info, None)
        raise
    result = package(get_params(state), losses, info, get_params(last_state))
    if result.converged is False and not result.interrupted:
        warnings.warn(f"{'fit_map' if method == 'svi' else 'fit_map_scratch'} "
                      f"{result.convergence}", ConvergenceWarning, stacklevel=3)
    return result


def fit_map(
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
    """MAP estimate by NumPyro SVI with an ``AutoDelta`` guide and optax.

    The loss is the per-trial mean negative log posterior (see the module
    docstring). ``optimizer="auto"`` is L-BFGS on a deterministic likelihood
    (the default quadrature) and Adam at 3e-3 on fresh-noise Monte Carlo;
    ``"sgd"`` is SGD with momentum (rate 1e-4, momentum 0.9), the peers'
    optimiser; any optax transformation may be passed instead, line searches
    included. The fit stops once converged (see the module docstring) and
    says so in ``result.converged``.

    A :class:`~psyphy_pp.HierarchicalWPPM` (several observers) is fitted by
    :mod:`psyphy_pp.hierarchical` and gives a
    :class:`~psyphy_pp.HierarchicalFit`; ``learning_rate``, ``momentum``,
    ``clip_norm``, ``devices`` and ``resume`` are refused for it.

    Args:
        model: The :class:`~psyphy_pp.WPPM` (or
            :class:`~psyphy_pp.HierarchicalWPPM`) to fit.
        data: The trials.
        num_steps: The most optimiser steps to take.
        optimizer: ``"auto"``, ``"lbfgs"``, ``"adam"``, ``"sgd"`` (with momentum)
            or any ``optax.GradientTransformation``.
        learning_rate: Rate of ``"adam"`` or ``"sgd"``; None picks
            :data:`DEFAULT_LEARNING_RATES` (3e-3 for Adam, 1e-4 for SGD). An
            error with L-BFGS (its line search sets the step) or an optax object.
        momentum: Momentum of ``optimizer="sgd"`` (default 0.9); an error otherwise.
        clip_norm: Clip the gradient's global norm to this value (off if None;
            named optimisers only).
        tol: Stop when no parameter moved by more than this (relative to the
            largest) over the last 10 (L-BFGS) or 100 (Adam, SGD) steps; None
            runs all ``num_steps``. Not applied with fresh Monte Carlo noise.
        seed: Seeds the prior draw used as initial value and the Monte Carlo noise.
        init_params: ``{"W": W}`` to start from instead of a prior draw. When
            the task learns the lapse rate, ``"lapse_rate"`` may be given too
            (default: its prior mean).
        progress_bar: Show a progress bar.
        devices: Shard the trials over these devices: None (every device when
            there is more than one), a number of devices, a sequence of
            ``jax.Device`` or a 1-D ``jax.sharding.Mesh`` with axis ``"trials"``
            (see :func:`~psyphy_pp.sharding.trial_sharding`). With several
            processes, ``data`` is this process's slice of the trials.
        resume: A :class:`MapResult` of this function (interrupted, or not
            converged) or its :class:`~psyphy_pp.checkpoint.Checkpoint`: continue
            from where it stopped, with the same arguments otherwise. On a
            deterministic likelihood the fit then ends where one uninterrupted
            fit would. ``num_steps`` counts the steps already run.

    Returns:
        A :class:`MapResult` with ``method="svi"``. If SIGINT (Ctrl-C) arrives
        during the loop, the fit stops at the next step boundary and the result
        has ``interrupted=True``.

    Raises:
        ValueError: For invalid arguments, before anything is compiled.
        FitDivergedError: If the loss becomes non-finite or ends higher than it
            started (``err.result`` holds the fit up to the last good step).

    Warns:
        ConvergenceWarning: When ``num_steps`` ran out before the fit converged.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> truth = model.sample_prior(jax.random.PRNGKey(1))
        >>> refs, comps = pp.designs.grid_design(model, truth, grid_size=2,
        ...     trials_per_ref=10, key=jax.random.PRNGKey(2))
        >>> data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(3))
        >>> fit = pp.fit_map(model, data, progress_bar=False)
        >>> fit.converged, fit.settings["optimizer"]
        (True, 'lbfgs()')
    """
    if is_hierarchical(model):  # several observers: psyphy_pp.hierarchical
        from psyphy_pp.hierarchical import fit_map_hierarchical

        return fit_map_hierarchical(  # type: ignore[return-value]
            cast(Any, model), data, method="svi", num_steps=num_steps, optimizer=optimizer, tol=tol,
            seed=seed, init_params=init_params, progress_bar=progress_bar,
            learning_rate=learning_rate, momentum=momentum, clip_norm=clip_norm,
            devices=devices, resume=resume)
    checkpoint, init_params = resume_from(resume, init_params)
    optimizer, init_params, noise_key, settings, sharding = prepare_fit(
        model, data, num_steps=num_steps, learning_rate=learning_rate, momentum=momentum,
        clip_norm=clip_norm, optimizer=optimizer, seed=seed, init_params=init_params,
        tol=tol, devices=devices,
    )
    if checkpoint is not None:
        checkpoint.check_settings("svi", settings)
    arrays = place_data(sharding, data, init_params[SITE_W].dtype)
    refs, comps, y = arrays.refs, arrays.comparisons, arrays.responses
    mask = arrays.mask  # masks the padding trials of a sharded run; None otherwise
    settings["num_trials"] = arrays.num_trials

    svi, guide, update = _svi_program(model, optimizer, sharding, arrays.num_trials)
    # SVI.init runs the model eagerly, op by op, to set up the guide; on the
    # prior alone that takes ~2 s instead of ~17 s (P-std, 2 cores).
    svi_state = svi.init(jax.random.PRNGKey(seed), refs, comps, y, prototype=True,
                         init_params={_auto_loc(name): v for name, v in init_params.items()})
    if checkpoint is not None:
        svi_state = checkpoint.restore(svi_state)

    def step(state, t):
        return update(state, refs, comps, y, key=jax.random.fold_in(noise_key, t), mask=mask)

    def get_params(state):
        median = guide.median(svi.get_params(state))
        return {name: median[name] for name in init_params}  # W, and a learnt lapse rate

    def run():
        return run_loop(step, svi_state, get_params, num_steps, desc="fit_map (SVI)",
                        progress_bar=progress_bar, settings=settings, method="svi",
                        resume=checkpoint)

    return finish_fit("svi", model, data, init_params, settings, run, get_params,
                      arrays.num_trials)


def is_hierarchical(model: object) -> bool:
    """Whether ``model`` is a :class:`~psyphy_pp.HierarchicalWPPM` (imported lazily)."""
    from psyphy_pp.hierarchical import HierarchicalWPPM

    return isinstance(model, HierarchicalWPPM)


def _auto_loc(site: str) -> str:
    """The ``AutoDelta`` parameter of a sample site (its name plus the guide's suffix)."""
    return f"{site}_auto_loc"


@functools.lru_cache(maxsize=8)
def _svi_program(
    model: WPPM,
    optimizer: optax.GradientTransformation,
    sharding: TrialSharding | None,
    num_trials: int,
) -> tuple[Any, Any, Callable]:
    """``(svi, guide, jitted svi.update)`` of a MAP fit, built once per combination.

    Compiling the update takes ~10 s even for a small model; repeated fits of one
    model to data of one size (cross-validation folds, bootstrap refits, the
    Laplace approximation's MAP) reuse it. Nothing of a particular fit is baked
    in: the data are arguments of the update, and the start enters through
    ``svi.init(..., init_params=...)`` (the guide's own initial value is never
    used). ``num_trials`` is part of the key because the objective is scaled by
    ``1 / num_trials``; the named optimisers are cached objects
    (:func:`psyphy_pp.defaults.make_optimizer`), so that equal settings hit.
    """
    import numpyro
    from numpyro.handlers import scale
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.infer.initialization import init_to_median

    def model_fn(*args, prototype=False, **kwargs):
        if prototype:  # the prior alone: all AutoDelta needs to set itself up
            numpyro.sample(SITE_W, model.prior())
            if model.task.learns_lapse:
                numpyro.sample(SITE_LAPSE, model.lapse_prior())
            return
        model.numpyro_model(*args, devices=sharding, **kwargs)  # None: unsharded

    objective = scale(model_fn, scale=1.0 / num_trials)
    guide = AutoDelta(objective, init_loc_fn=init_to_median(num_samples=1))
    svi = SVI(objective, guide, OptaxWithValueFn(optimizer), Trace_ELBO())
    return svi, guide, jit(svi.update)
