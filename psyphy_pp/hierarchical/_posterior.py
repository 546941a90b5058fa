"""Posteriors of a :class:`HierarchicalWPPM`: Laplace at the MAP and NUTS."""

from __future__ import annotations

import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from psyphy_pp._mcmc import resolve_chain_method, run_kernel
from psyphy_pp._typing import Params
from psyphy_pp._validation import check_bool, check_nonnegative, check_positive, check_tree_depth
from psyphy_pp.data import TrialData
from psyphy_pp.defaults import (
    DEFAULT_DENSE_MASS,
    DEFAULT_TARGET_ACCEPT,
    HIERARCHICAL_MAX_TREE_DEPTH,
    HIERARCHICAL_NUM_WARMUP,
)
from psyphy_pp.hierarchical._map import colour, fit_map_hierarchical, initial_params, loss_at_tau, whiten
from psyphy_pp.hierarchical._model import SITE_DELTA, SITE_TAU, SITE_W_SHARED, SITE_Z, HierarchicalWPPM
from psyphy_pp.hierarchical._result import HierarchicalFit

logger = logging.getLogger(__name__)


# -- Laplace ------------------------------------------------------------------------
def fit_laplace_hierarchical(
    model: HierarchicalWPPM, data: TrialData, *, num_draws: int = 1000, seed: int = 0,
    map_fit: HierarchicalFit | None = None, progress_bar: bool = False, **map_kwargs: Any,
) -> HierarchicalFit:
    """A Gaussian approximation of ``(W_shared, Delta)`` at the MAP, ``tau`` held at its MAP.

    The Hessian of the negative log posterior is exact (one Hessian-vector
    product per parameter). The common right-rotation of every observer's
    weights, which changes no field, is projected out as in
    :func:`~psyphy_pp.fit_laplace`: the draws move only in directions that
    change a field. A learnt ``tau`` is held at the MAP's value (an empirical
    Bayes posterior): its own uncertainty is not in the draws, which
    ``fit_nuts`` samples.

    Raises:
        ValueError: For invalid arguments, or a MAP that is not a mode (a
            Hessian that is not positive definite off the rotations).
    """
    from psyphy_pp.laplace import gauge_directions

    check_positive("num_draws", num_draws, integer=True)
    check_nonnegative("seed", seed, integer=True)
    if map_fit is None:
        map_fit = fit_map_hierarchical(model, data, seed=seed, progress_bar=progress_bar,
                                       **map_kwargs)
    elif not isinstance(map_fit, HierarchicalFit) or map_fit.kind != "point":
        raise ValueError(f"map_fit must be a point HierarchicalFit (fit_map of this model), "
                         f"got {map_fit!r}")
    elif map_fit.data.num_trials != data.num_trials:
        raise ValueError(f"map_fit was fitted to {map_fit.data.num_trials} trials, but data "
                         f"has {data.num_trials}; pass the MAP fit of this data")
    t0 = time.perf_counter()
    point = map_fit.params
    dtype = jnp.result_type(float)
    tau = jnp.asarray(float(point[SITE_TAU]), dtype)
    u_map = whiten(model, point, tau)  # (W_shared, Z): Delta = tau sqrt(V) Z is linear
    flat0, unravel = ravel_pytree(u_map)
    refs = jnp.asarray(data.refs, dtype)
    comps = jnp.asarray(data.comparisons, dtype)
    y = jnp.asarray(data.responses, dtype)
    obs = jnp.asarray(data.observer)

    def f(v):
        return loss_at_tau(model, refs, comps, y, obs, tau, unravel(v)) * data.num_trials

    grad = jax.grad(f)
    hvp = jax.jit(lambda v, t: jax.jvp(grad, (v,), (t,))[1])
    n = flat0.size
    eye = np.eye(n)
    H = np.stack([np.asarray(hvp(flat0, jnp.asarray(eye[i], dtype)), np.float64)
                  for i in range(n)])
    H = 0.5 * (H + H.T)
    # ravel_pytree orders the dict by key: W_shared, then Z (S, *ws). A rotation moves
    # W_shared to W_shared A and Z to Z A (sqrt(V) is constant over the last two axes).
    stacked = np.concatenate([np.asarray(u_map[SITE_W_SHARED])[None],
                              np.asarray(u_map[SITE_Z])])
    G = gauge_directions(stacked)  # the same W A for every observer and the population
    q, _ = np.linalg.qr(np.concatenate([G, np.eye(n)], axis=1))
    Q = q[:, G.shape[1]:n]  # orthonormal complement of the rotations
    evals, evecs = np.linalg.eigh(Q.T @ H @ Q)
    if evals[0] <= 0:
        raise ValueError(f"the MAP is not a mode: the Hessian off the rotations has an "
                         f"eigenvalue {evals[0]:.3g} <= 0; refit with more steps")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((num_draws, evals.size))
    draws = np.asarray(flat0, np.float64) + (z / np.sqrt(evals)) @ evecs.T @ Q.T
    parts = [colour(model, unravel(jnp.asarray(d, dtype)), tau) for d in draws]
    samples = {k: np.stack([np.asarray(p[k]) for p in parts])[None]
               for k in (SITE_W_SHARED, SITE_DELTA)}
    samples[SITE_TAU] = np.full((1, num_draws), float(point[SITE_TAU]))
    settings = dict(map_fit.settings, num_draws=num_draws, seed=seed,
                    laplace_seconds=time.perf_counter() - t0, num_parameters=n,
                    gauge_dim=int(G.shape[1]))
    return HierarchicalFit(model=model, data=data, method="laplace", samples=samples,
                           kind="posterior", settings=settings, losses=map_fit.losses,
                           converged=map_fit.converged, convergence=map_fit.convergence)


# -- NUTS ---------------------------------------------------------------------------
def fit_nuts_hierarchical(
    model: HierarchicalWPPM, data: TrialData, *, num_warmup: int = HIERARCHICAL_NUM_WARMUP,
    num_samples: int = 500, num_chains: int = 2, seed: int = 0,
    init_params: Params | None = None, target_accept_prob: float = DEFAULT_TARGET_ACCEPT,
    max_tree_depth: int | tuple[int, int] = HIERARCHICAL_MAX_TREE_DEPTH,
    dense_mass: bool = DEFAULT_DENSE_MASS,
    progress_bar: bool = True, chain_method: str = "auto", **unsupported: Any,
) -> HierarchicalFit:
    """NUTS on :meth:`HierarchicalWPPM.numpyro_model` (what ``fit_nuts`` runs).

    Every chain starts from ``init_params`` (a MAP's ``params``) or, by
    default, from a prior draw with ``Delta`` at ``tau = tau_scale``.

    Args:
        model: The :class:`HierarchicalWPPM`; its base task must be deterministic.
        data: Trials with an ``observer`` column.
        num_warmup: Warmup (adaptation) iterations per chain.
        num_samples: Draws kept per chain.
        num_chains: Number of chains.
        seed: Seeds the initial values and the sampler.
        init_params: Parameters to start every chain from (a hierarchical MAP's
            ``params``), or None for a prior draw.
        target_accept_prob: Target acceptance probability of the step-size
            adaptation, in (0, 1).
        max_tree_depth: At most ``2**depth - 1`` leapfrog steps per iteration,
            an int or a pair ``(warmup, sampling)``, as in :func:`~psyphy_pp.fit_nuts`.
        dense_mass: Adapt a dense mass matrix in warmup, rather than a diagonal one.
        progress_bar: Show a progress bar (iterations of all chains).
        chain_method: ``"auto"`` (``"threaded"`` for several chains on a CPU
            with more than one core, else ``"sequential"``), ``"threaded"``,
            ``"sequential"``, ``"vectorized"`` or ``"parallel"``.
        **unsupported: ``fit_nuts`` arguments this model does not take
            (``task``, ``devices``); anything but None raises.

    Returns:
        A :class:`HierarchicalFit` of posterior draws.

    Raises:
        ValueError: For invalid arguments, before anything is compiled.
    """
    from numpyro.infer import NUTS
    from numpyro.infer.initialization import init_to_value

    given = sorted(k for k, v in unsupported.items() if v is not None)
    if given:
        raise ValueError(f"fit_nuts with a HierarchicalWPPM does not take {given}")
    model.check_data(data)
    for name, value in (("num_warmup", num_warmup), ("num_samples", num_samples),
                        ("num_chains", num_chains)):
        check_positive(name, value, integer=True)
    check_nonnegative("seed", seed, integer=True)
    if not 0 < target_accept_prob < 1:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}")
    depths = check_tree_depth("max_tree_depth", max_tree_depth)
    check_bool("dense_mass", dense_mass)
    if not model.base.task.deterministic:
        raise ValueError(f"NUTS needs a deterministic likelihood; the base task "
                         f"{model.base.task!r} draws fresh noise")
    # The trials are not sharded: "auto" runs the chains in threads (or in turn), and
    # only "parallel" looks at the devices.
    method = resolve_chain_method(chain_method, num_chains,
                                  None if chain_method == "parallel" else 1, auto_parallel=False)
    start = initial_params(model, data, seed, init_params)
    values = {SITE_W_SHARED: start[SITE_W_SHARED]}
    if model.learns_tau:
        values[SITE_TAU] = start[SITE_TAU]
    if model.parameterization == "centred":
        values[SITE_DELTA] = start[SITE_DELTA]
    else:
        values[SITE_Z] = start[SITE_DELTA] / start[SITE_TAU]
    dtype = start[SITE_W_SHARED].dtype
    S = data.num_observers

    def model_fn(refs, comps, obs, y):
        model.numpyro_model(refs, comps, obs, y, num_observers=S)

    kernel = NUTS(model_fn, target_accept_prob=target_accept_prob, max_tree_depth=depths,
                  dense_mass=dense_mass, init_strategy=init_to_value(values=values))
    t0 = time.perf_counter()
    draws = run_kernel(
        kernel, jax.random.PRNGKey(seed),
        (jnp.asarray(data.refs, dtype), jnp.asarray(data.comparisons, dtype),
         jnp.asarray(data.observer), jnp.asarray(data.responses, dtype)), {},
        num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
        chain_method=method, fields=("diverging", "num_steps"), progress_bar=progress_bar,
        desc="fit_nuts (hierarchical)")
    wall = time.perf_counter() - t0
    got, extra = draws.samples, draws.fields
    samples = {SITE_W_SHARED: got[SITE_W_SHARED], SITE_DELTA: got[SITE_DELTA]}
    samples[SITE_TAU] = (got[SITE_TAU] if model.learns_tau else
                         np.full(got[SITE_W_SHARED].shape[:2], float(model.tau or 0.0)))
    stats = {"diverging": extra["diverging"].astype(bool),
             "num_steps": extra["num_steps"].astype(np.int64)}
    settings = dict(num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    chain_method=method, seed=seed, target_accept_prob=target_accept_prob,
                    max_tree_depth=depths, dense_mass=dense_mass,
                    parameterization=model.parameterization, num_trials=data.num_trials,
                    num_observers=S, wall_time=wall)
    fit = HierarchicalFit(model=model, data=data, method="nuts", samples=samples,
                          kind="posterior", settings=settings, sample_stats=stats)
    if stats["diverging"].any():
        logger.warning("fit_nuts (hierarchical): %d divergent transitions",
                       int(stats["diverging"].sum()))
    return fit
