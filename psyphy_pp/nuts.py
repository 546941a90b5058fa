"""Full posterior of the WPPM by NumPyro's No-U-Turn Sampler (NUTS).

:func:`fit_nuts` has the call shape of :func:`~psyphy_pp.fit_map`: a model, the
data and keyword-only settings. It runs NumPyro's :class:`numpyro.infer.NUTS`
kernel on :meth:`~psyphy_pp.WPPM.numpyro_model`, warmup (step size and dense
mass matrix) and sampling, and returns a :class:`NutsResult` that keeps the
draws by chain, ``(chains, draws, ...)``, the layout ArviZ expects (see
:func:`~psyphy_pp.to_arviz`). The loop around the kernel is psyphy_pp's
(:mod:`psyphy_pp._mcmc`) rather than :class:`numpyro.infer.MCMC`'s: it draws the
same samples (tested draw for draw), but is compiled with psyphy_pp's CPU
compiler options, which made each leapfrog step 1.8x faster on a 6,000-trial
observer, and shows psyphy_pp's progress bar.

Trajectory length and mass matrix. NumPyro's NUTS defaults (trees up to depth
10, a diagonal mass matrix) spent 160 to 180 leapfrog steps per draw on a
6,000-trial degree-4 observer, much of it on slowly varying rotations of
``U(x)`` that barely move ``Sigma``. Capping the trees at depth 6 (63 steps) and
adapting a dense mass matrix gave 2.9x the effective draws of ``Sigma`` per
second (chains one after another). With the chains side by side in threads,
2 chains x (200 + 500) from the MAP took 364 s, with max r_hat 1.011 (just
above the 1.01 :func:`~psyphy_pp.diagnostics.sigma_convergence` asks for) and
min ess_bulk 406.
Sampling at depth 7 after that depth-6 warmup, the default
(:data:`psyphy_pp.defaults.DEFAULT_MAX_TREE_DEPTH`, ``(6, 7)``), gave max r_hat
1.007 and min ess_bulk 737 in 559 s, and 1.008 and 539 on a second seed. Depth 5
was much worse (a random walk); ``docs/inference.md`` has the comparisons.

Deterministic log density. Hamiltonian Monte Carlo integrates the gradient of
the log density along a trajectory and accepts or rejects by the change in
energy. A Monte Carlo likelihood that draws fresh noise at every evaluation
(``Oddity(method="mc", fixed_noise=False)``) is a different function at every
call, which breaks both. :func:`fit_nuts` therefore runs on the likelihood that
:func:`psyphy_pp.defaults.task_for` picks for NUTS (:func:`deterministic_task`):

* ``input_dim`` 2 or 3, fresh-noise Monte Carlo: the quadrature. In 2D that is
  the MAP-grade semi-analytic rule (8 x 4 nodes), which integrates
  ``1 - P(correct)`` directly and so stays accurate where P(correct) is close to
  1 for a *wrong* answer, in the tails of the posterior. Its log density differs
  from a 32 x 16 rule's by a spread (sd over draws) of about 0.01 nats at
  Laplace draws, on P-small and on a 6,000-trial degree-4 observer, where a
  16 x 8 rule would cost 4 times as much per gradient. In 3D the default polar
  rule becomes the finer ``polar_nodes=(4, 6, 3, 6, 4)``
  (:data:`psyphy_pp.defaults.NUTS_POLAR_NODES`, mean error ~1e-4);
* other dimensions: ``Oddity(method="mc", fixed_noise=True, num_samples=max(2000, M))``
  with the model's bandwidth. Common random numbers make the log density an
  ordinary smooth function, but a *fixed* one: its Monte Carlo error (about
  ``0.5 / sqrt(M)`` in P(correct) per trial) no longer averages out over steps,
  so the posterior carries a small bias that shrinks like ``1/sqrt(M)``, plus the
  smoothing bias of the bandwidth;
* any other deterministic task (a quadrature with custom nodes, fixed-noise
  Monte Carlo) is used as it is.

The task that was used is recorded in :attr:`NutsResult.model` and
:attr:`NutsResult.task_note`. Pass ``task=`` to choose it yourself.

Identifiability. ``Sigma(x) = U(x) U(x)^T`` is unchanged when every
``W[i1..iD]`` is multiplied on the right by the same orthogonal
``(D+E) x (D+E)`` matrix, and the prior is invariant too, so the posterior of
``W`` is spread along those rotations: ``r_hat`` and ``ess`` of raw ``W``
entries say little. Diagnose convergence on identifiable quantities: ``Sigma``
at the reference points or on a grid (the ``Sigma`` variable of
:func:`~psyphy_pp.to_arviz`, :func:`~psyphy_pp.diagnostics.posterior_sigma`),
P(correct) of held-out trials, or the log density (``lp`` in the sample stats).
``gauge="fixed"`` samples coordinates without the rotations
(:mod:`psyphy_pp.gauge`); the posterior of ``Sigma`` is the same.
"""

from __future__ import annotations

__all__ = ["NutsResult", "fit_nuts", "deterministic_task", "with_deterministic_task", "CHAIN_METHODS"]

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp import defaults
from psyphy_pp._mcmc import CHAIN_METHODS, resolve_chain_method, run_kernel
from psyphy_pp._typing import Params
from psyphy_pp._validation import (
    check_bool,
    check_choice,
    check_nonnegative,
    check_positive,
    check_tree_depth,
)
from psyphy_pp.data import TrialData
from psyphy_pp.gauge import GAUGES, coords_from_weights
from psyphy_pp.inference import check_model_and_data, is_hierarchical, place_data
from psyphy_pp.model import SITE_LAPSE, SITE_W, WPPM
from psyphy_pp.oddity import Oddity
from psyphy_pp.results import PosteriorDraws, lapse_summary
from psyphy_pp.sharding import DevicesLike, trial_sharding

logger = logging.getLogger(__name__)

_EXTRA_FIELDS = (
    "diverging",
    "energy",
    "potential_energy",
    "num_steps",
    "accept_prob",
    "adapt_state.step_size",
)


@dataclass(frozen=True, eq=False)
class NutsResult(PosteriorDraws):
    """The outcome of :func:`fit_nuts`: posterior draws kept by chain.

    Attributes:
        samples: ``{"W": array of shape (num_chains, num_samples) + W.shape}``,
            and ``"lapse_rate"`` of shape ``(num_chains, num_samples)`` when the
            task learns the lapse rate.
        sample_stats: Per-draw NUTS statistics, each of shape
            ``(num_chains, num_samples)``: ``diverging`` (bool), ``energy``
            (Hamiltonian), ``lp`` (log density, the negative potential energy),
            ``num_steps`` (leapfrog steps), ``tree_depth``, ``step_size`` and
            ``accept_prob``.
        model: The model that was sampled, with the deterministic task actually
            used (see :func:`deterministic_task`).
        data: The trials.
        settings: The sampler settings (``num_warmup``, ``num_samples``,
            ``num_chains``, ``chain_method`` as run, ``seed``,
            ``target_accept_prob``, ``init``, ``wall_time`` in seconds, ...).
        task_note: How the task of ``model`` was chosen, in words.
        method: Always ``"nuts"``.
    """

    samples: dict
    sample_stats: dict
    model: WPPM
    data: TrialData
    settings: dict = field(default_factory=dict)
    task_note: str = ""
    method: str = "nuts"

    @property
    def num_divergences(self) -> int:
        """Divergent transitions after warmup, summed over chains."""
        return int(np.sum(self.sample_stats["diverging"]))

    def __repr__(self) -> str:
        return (
            f"NutsResult(num_chains={self.num_chains}, num_samples={self.num_samples}, "
            f"num_warmup={self.settings.get('num_warmup')}, "
            f"{lapse_summary(self) + ', ' if self.model.task.learns_lapse else ''}"
            f"divergences={self.num_divergences}, task={self.model.task!r}, "
            f"wall_time={self.settings.get('wall_time', float('nan')):.1f} s)"
        )


def deterministic_task(task: Oddity, input_dim: int) -> Oddity:
    """The likelihood NUTS samples with, given the model's task.

    The policy lives in :func:`psyphy_pp.defaults.task_for` (purpose
    ``"nuts"``): fresh-noise Monte Carlo becomes the quadrature in 2D and 3D,
    and the default 3D polar rule its finer ``NUTS_POLAR_NODES``; fresh-noise
    Monte Carlo becomes fixed-noise Monte Carlo with at least 2,000 samples in
    other dimensions; any other deterministic task, the default 2D quadrature
    included, is kept.

    Args:
        task: The model's likelihood settings.
        input_dim: The stimulus dimension ``D``.

    Returns:
        An :class:`~psyphy_pp.Oddity` with ``deterministic == True``.

    Examples:
        >>> deterministic_task(Oddity(), 2) == Oddity(method="quadrature")
        True
        >>> deterministic_task(Oddity(), 3).polar_nodes
        (4, 6, 3, 6, 4)
        >>> deterministic_task(Oddity(method="mc", num_samples=500), 1)
        Oddity(method='mc', num_samples=2000, bandwidth=0.01, fixed_noise=True, noise_seed=0, generator='hash')
    """
    return defaults.task_for("nuts", task, input_dim)


def with_deterministic_task(model: WPPM, task: Oddity | None = None, *,
                            user: str = "NUTS") -> tuple[WPPM, str]:
    """``model`` with the deterministic task ``user`` (NUTS, the Laplace Hessian) runs on.

    Args:
        model: The :class:`~psyphy_pp.WPPM`.
        task: An explicit deterministic task, or None for
            :func:`deterministic_task` of the model's task.
        user: Who uses the task, for the note and the error message.

    Returns:
        ``(model with that task, a note saying how it was chosen)``.

    Raises:
        ValueError: If ``task`` is not an Oddity, or draws fresh noise at every
            evaluation.
    """
    if task is not None:
        if not isinstance(task, Oddity):
            raise ValueError(f"task must be a psyphy_pp.Oddity or None, got {task!r}")
        task = task.resolve(model.input_dim).with_lapse_of(model.task)  # the model's lapse
        if task.needs_key:
            raise ValueError(
                f"task={task!r} draws fresh Monte Carlo noise at every evaluation, so the "
                f"log density is a different function at each call; {user} needs a "
                "deterministic log density. Use task=Oddity(method='quadrature') "
                "(input_dim 2 or 3) or "
                "task=Oddity(method='mc', fixed_noise=True, "
                f"num_samples={max(defaults.MIN_FIXED_NOISE_SAMPLES, task.num_samples)}), "
                "or leave task=None to let psyphy_pp choose."
            )
        used = dataclasses.replace(model, task=task)  # WPPM validates the task
        return used, f"task given explicitly: {task!r}"
    new = deterministic_task(model.task, model.input_dim)
    if new == model.task:
        return model, f"the model's own task (deterministic): {model.task!r}"
    if new.method == "quadrature":
        finer = ", with NUTS's finer polar rule" if model.input_dim == 3 else ""
        why = f"the quadrature{finer}; no Monte Carlo noise"
    else:
        why = (f"fixed-noise Monte Carlo with {new.num_samples} samples: a fixed bias that "
               "shrinks like 1/sqrt(num_samples)")
    old = ("draws fresh noise at every evaluation" if model.task.needs_key
           else "is the MAP-grade 3D quadrature")
    note = f"the model's task {model.task!r} {old}; {user} ran on {new!r} ({why})"
    return dataclasses.replace(model, task=new), note


def fit_nuts(
    model: WPPM,
    data: TrialData,
    *,
    num_warmup: int | None = None,
    num_samples: int = 500,
    num_chains: int = 2,
    seed: int = 0,
    init_params: Params | None = None,
    target_accept_prob: float = defaults.DEFAULT_TARGET_ACCEPT,
    max_tree_depth: int | tuple[int, int] | None = None,
    dense_mass: bool = defaults.DEFAULT_DENSE_MASS,
    gauge: str = defaults.DEFAULT_NUTS_GAUGE,
    progress_bar: bool = True,
    chain_method: str = "auto",
    task: Oddity | None = None,
    devices: DevicesLike = None,
) -> NutsResult:
    """Sample the WPPM posterior with NumPyro's NUTS.

    The sampler targets the (unscaled) log posterior
    ``log p(W) + sum_n log p(y_n | W)`` of :meth:`~psyphy_pp.WPPM.numpyro_model`,
    with step-size and dense mass-matrix adaptation during warmup and trees
    of at most ``2**depth - 1`` leapfrog steps (``max_tree_depth``).

    The likelihood must be deterministic (see the module docstring). With the
    default ``task=None`` it is :func:`deterministic_task` of the model's task:
    the quadrature in 2D and 3D for the default task (with the finer polar rule
    in 3D), and
    ``Oddity(method="mc", fixed_noise=True, num_samples=max(2000, M))`` for
    fresh-noise Monte Carlo in other dimensions (a fixed bias that shrinks like
    ``1/sqrt(M)``). The task used is in ``result.model.task`` and
    ``result.task_note``.

    Chains and devices. With ``chain_method="auto"`` the chains run in parallel
    (one per device, ``pmap``) when there are at least as many devices (of
    ``devices``; default every device) as chains. Otherwise, on a CPU with more
    than one core and one device, they run side by side in host threads
    (``"threaded"``: on 2 cores 1.33x faster than one after another,
    with the same draws); elsewhere they run one after another
    (``"sequential"``), and the trials of each chain are sharded over the devices
    (:mod:`psyphy_pp.sharding`) when there is more than one. A CPU is one JAX
    device unless ``numpyro.set_host_device_count(n)`` (or
    ``XLA_FLAGS=--xla_force_host_platform_device_count=n``) is set before JAX
    starts. ``"parallel"`` with too few devices warns and falls back to the
    automatic choice; ``"vectorized"`` runs all chains in one ``vmap`` (often
    slower for NUTS, whose trees differ in size between chains).
    ``settings["chain_method"]`` is the method that ran and
    ``settings["num_devices"]`` the number of devices the trials were sharded
    over (1 with parallel chains). Parallel chains run under ``jax.pmap``, which
    takes no compiler options, so each of their steps misses the CPU speed-up the
    other methods get (see the module docstring).

    W is not identifiable (right-multiplying every ``W[i1..iD]`` by one common
    orthogonal matrix leaves likelihood and prior unchanged): judge convergence
    by ``Sigma`` (``to_arviz(result)`` has it), held-out P(correct) or the log
    density, not by raw ``W`` entries.

    Args:
        model: The :class:`~psyphy_pp.WPPM`.
        data: The trials.
        num_warmup: Warmup (adaptation) iterations per chain; None:
            :data:`~psyphy_pp.defaults.DEFAULT_NUM_WARMUP` (200; 500 for a
            hierarchical model).
        num_samples: Draws kept per chain.
        num_chains: Number of chains.
        seed: Seeds the initial values and the sampler.
        init_params: ``{"W": W}`` to start every chain from (e.g. ``fit.params``
            of a MAP fit, with its ``"lapse_rate"`` when the task learns it;
            default the prior mean). If None, each chain starts from its own
            prior draw.
        target_accept_prob: Target acceptance probability of the step-size
            adaptation, in (0, 1); raise it (e.g. 0.9) if there are divergences.
            How this default and ``num_warmup``'s were chosen is in
            ``docs/inference.md``.
        max_tree_depth: Cap on the depth of each NUTS tree, at most
            ``2**depth - 1`` leapfrog steps per iteration: an int for warmup
            and sampling, or a pair ``(warmup, sampling)``. None means
            :data:`psyphy_pp.defaults.DEFAULT_MAX_TREE_DEPTH`, ``(6, 7)``
            (a hierarchical model keeps its own 6); the module docstring says
            how it was chosen.
        dense_mass: Adapt a dense mass matrix (all covariances of the weights)
            in warmup, rather than a diagonal one.
        gauge: ``"free"`` samples the weights ``W`` themselves; ``"fixed"``
            samples them with the rotation symmetry removed
            (:mod:`psyphy_pp.gauge`): the same posterior of ``Sigma``. It mixed
            better in some runs and worse in others (``docs/inference.md``), so
            it is an option to experiment with. ``samples["W"]`` then holds
            ``W`` rotated into the gauge (the sampled coordinates are not
            kept), and ``lp`` is the log density of the coordinates, not
            comparable with a free run's. Single-observer models only.
        progress_bar: Show a progress bar (iterations of all chains).
        chain_method: ``"auto"``, ``"parallel"``, ``"threaded"``, ``"sequential"``
            or ``"vectorized"`` (see above).
        task: The deterministic :class:`~psyphy_pp.Oddity` to sample with,
            instead of the automatic choice (e.g. a finer quadrature rule, see
            the module docstring).
        devices: The devices to use: None (every device), a number of devices,
            a sequence of ``jax.Device`` or a 1-D ``jax.sharding.Mesh`` with axis
            ``"trials"`` (see :func:`~psyphy_pp.sharding.trial_sharding`).

    Returns:
        A :class:`NutsResult`.

    Raises:
        ValueError: For invalid arguments (before anything is compiled),
            including a ``task`` that draws fresh noise at every evaluation.

    Examples:
        >>> import psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=0, extra_dims=0)
        >>> data = pp.TrialData([[0.0, 0.0]] * 4, [[0.2, 0.0]] * 4, [1, 1, 0, 1])
        >>> post = pp.fit_nuts(model, data, num_warmup=20, num_samples=10, num_chains=1,
        ...                    task=pp.Oddity(method="mc", fixed_noise=True, num_samples=16),
        ...                    progress_bar=False)
        >>> post.samples["W"].shape
        (1, 10, 1, 1, 2, 2)
        >>> post.sample_stats["diverging"].shape
        (1, 10)
    """
    from numpyro.infer import NUTS
    from numpyro.infer.initialization import init_to_sample, init_to_value

    check_choice("gauge", gauge, GAUGES)
    if is_hierarchical(model):  # several observers: psyphy_pp.hierarchical
        if gauge != "free":
            raise ValueError(f"gauge={gauge!r} is not available for a hierarchical model; "
                             "use gauge='free'")
        from psyphy_pp.hierarchical import fit_nuts_hierarchical

        # None: the hierarchical sampler keeps its own default.
        given: dict[str, Any] = {k: v for k, v in (("num_warmup", num_warmup),
                                                   ("max_tree_depth", max_tree_depth)) if v is not None}
        return fit_nuts_hierarchical(  # type: ignore[return-value]
            cast(Any, model), data, num_samples=num_samples, num_chains=num_chains, seed=seed,
            init_params=init_params, target_accept_prob=target_accept_prob,
            dense_mass=dense_mass, progress_bar=progress_bar,
            chain_method=chain_method, task=task, devices=devices, **given)
    if num_warmup is None:
        num_warmup = defaults.DEFAULT_NUM_WARMUP
    if max_tree_depth is None:
        max_tree_depth = defaults.DEFAULT_MAX_TREE_DEPTH
    check_model_and_data(model, data)
    check_positive("num_warmup", num_warmup, integer=True)
    check_positive("num_samples", num_samples, integer=True)
    check_positive("num_chains", num_chains, integer=True)
    check_nonnegative("seed", seed, integer=True)
    check_positive("target_accept_prob", target_accept_prob)
    if not target_accept_prob < 1:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    depths = check_tree_depth("max_tree_depth", max_tree_depth)
    check_bool("dense_mass", dense_mass)
    check_bool("progress_bar", progress_bar)
    used_model, task_note = with_deterministic_task(model, task)
    sharding = trial_sharding(devices)
    num_devices = 1 if sharding is None else sharding.num_devices
    method = resolve_chain_method(chain_method, num_chains, num_devices)
    if method == "parallel":
        sharding = None  # the devices run one chain each, every chain sees all trials

    dtype = jnp.result_type(float)
    if init_params is not None:
        used_model.weights(init_params)  # shape check
        W0 = jnp.asarray(init_params[SITE_W], dtype)
        if not bool(jnp.all(jnp.isfinite(W0))):
            raise ValueError("init_params['W'] must be finite")
        if gauge == "fixed":
            values = {k: jnp.asarray(v, dtype)
                      for k, v in coords_from_weights(used_model, W0).items()}
        else:
            values = {SITE_W: W0}
        if used_model.task.learns_lapse:
            values[SITE_LAPSE] = used_model.initial_lapse(init_params)
        init_strategy = init_to_value(values=values)
        init_desc = "init_params (all chains)"
    else:
        init_strategy = init_to_sample
        init_desc = "a prior draw per chain"

    arrays = place_data(sharding, data, dtype)  # padded (mask) and placed when sharded
    # devices=None: unsharded
    model_fn = functools.partial(used_model.numpyro_model, devices=sharding, gauge=gauge)
    kernel = NUTS(
        model_fn,
        target_accept_prob=target_accept_prob,
        max_tree_depth=depths,
        dense_mass=dense_mass,
        init_strategy=init_strategy,
    )
    t0 = time.perf_counter()
    draws = run_kernel(
        kernel, jax.random.PRNGKey(seed),
        # Sharded trial arrays enter the compiled loop as arguments and keep their sharding.
        (arrays.refs, arrays.comparisons, arrays.responses), {"mask": arrays.mask},
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        chain_method=method, fields=_EXTRA_FIELDS, progress_bar=progress_bar, desc="fit_nuts")
    extra = draws.fields
    samples = {k: v for k, v in draws.samples.items() if k in (SITE_W, SITE_LAPSE)}
    wall_time = time.perf_counter() - t0

    num_steps = extra["num_steps"].astype(np.int64)
    stats = {
        "diverging": extra["diverging"].astype(bool),
        "energy": extra["energy"],
        "lp": -extra["potential_energy"],
        "num_steps": num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(num_steps, 1))).astype(np.int64) + 1,
        "step_size": extra["adapt_state.step_size"],
        "accept_prob": extra["accept_prob"],
    }
    settings = dict(
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=method,
        seed=seed,
        target_accept_prob=target_accept_prob,
        max_tree_depth=depths,
        dense_mass=dense_mass,
        gauge=gauge,
        init=init_desc,
        task=used_model.task,
        num_trials=data.num_trials,
        num_devices=1 if sharding is None else sharding.num_devices,
        wall_time=wall_time,
    )
    result = NutsResult(
        samples=samples, sample_stats=stats, model=used_model, data=data,
        settings=settings, task_note=task_note,
    )
    logger.info("fit_nuts: %s; %s", result, task_note)
    if result.num_divergences:
        logger.warning(
            "fit_nuts: %d divergent transitions; try target_accept_prob=0.9 or higher",
            result.num_divergences,
        )
    return result
