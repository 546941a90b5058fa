"""MAP of a :class:`HierarchicalWPPM`: fits at a fixed ``tau`` and the search over ``tau``."""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from psyphy_pp import defaults
from psyphy_pp._typing import Array, Params, PRNGKey
from psyphy_pp._validation import check_choice, check_nonnegative, check_positive
from psyphy_pp._warnings import ConvergenceWarning
from psyphy_pp.data import TrialData
from psyphy_pp.hierarchical._model import SITE_DELTA, SITE_TAU, SITE_W_SHARED, SITE_Z, HierarchicalWPPM
from psyphy_pp.hierarchical._result import HierarchicalFit

logger = logging.getLogger(__name__)


def _point(model: HierarchicalWPPM, data: TrialData, method: str, params: Params,
           **kw: Any) -> HierarchicalFit:
    samples = {SITE_W_SHARED: np.asarray(params[SITE_W_SHARED])[None, None],
               SITE_DELTA: np.asarray(params[SITE_DELTA])[None, None],
               SITE_TAU: np.asarray(model.tau_value(params))[None, None]}
    return HierarchicalFit(model=model, data=data, method=method, samples=samples,
                           kind="point", **kw)


# -- MAP ----------------------------------------------------------------------------
def loss_at_tau(model: HierarchicalWPPM, refs, comps, y, obs, tau, u: Params) -> Array:
    """Per-trial mean negative log density of ``(W_shared, Z, y)`` at a given ``tau``.

    The fits step ``(W_shared, Z)`` with ``Delta = tau * Z`` and ``Z ~ N(0, V)``:
    at a fixed ``tau`` this is a linear change of variables (its Jacobian is a
    constant), so the mode is the centred one, and ``Z`` has the prior scale of
    ``W_shared`` whatever ``tau``. Measured on 3 observers x 300 trials (degree 2,
    tau 0.3): fully whitened deviations (``Z ~ N(0, I)``) had not converged in
    1,000 L-BFGS steps (the data-dominated low degrees became the stiff
    directions), and centred ones did not at ``tau = 1e-3``.
    """
    std = jnp.asarray(model.prior_std(), tau.dtype)
    params = {SITE_W_SHARED: u[SITE_W_SHARED], SITE_DELTA: tau * u[SITE_Z]}
    scale = 1.0 / y.shape[0]
    log_prior = (model.base.prior().log_prob(u[SITE_W_SHARED])
                 + jnp.sum(dist.Normal(0.0, std).log_prob(u[SITE_Z])))
    log_lik = model.log_likelihood(params, refs, comps, y, obs)
    return -(scale * log_prior + jnp.sum(scale * log_lik))


def whiten(model: HierarchicalWPPM, params: Params, tau: Array) -> Params:
    """``(W_shared, Z = Delta / tau)``: the fits' coordinates at a fixed ``tau``."""
    return {SITE_W_SHARED: jnp.asarray(params[SITE_W_SHARED]),
            SITE_Z: jnp.asarray(params[SITE_DELTA]) / tau}


def colour(model: HierarchicalWPPM, u: Params, tau: Array) -> Params:
    """``(W_shared, Delta = tau Z)`` from the fits' coordinates."""
    return {SITE_W_SHARED: u[SITE_W_SHARED], SITE_DELTA: tau * u[SITE_Z]}


def initial_params(model: HierarchicalWPPM, data: TrialData, seed: int,
             init_params: Params | None) -> Params:
    """The start: ``init_params``, or a prior draw with ``Delta`` at ``tau_scale`` when learnt."""
    S = data.num_observers
    if init_params is None:
        key = jax.random.split(jax.random.PRNGKey(seed))[0]  # the init key of fit_map
        start = model.sample_prior(key, S)
        if model.learns_tau:
            tau0 = jnp.asarray(model.tau_scale, start[SITE_W_SHARED].dtype)
            start[SITE_DELTA] = start[SITE_DELTA] / start[SITE_TAU] * tau0
            start[SITE_TAU] = tau0
        return start
    dtype = jnp.result_type(float)
    ws = model.weights_shape
    if not isinstance(init_params, dict):
        raise ValueError(f"init_params must be a dict with W_shared, Delta (and tau), got "
                         f"{type(init_params).__name__}")
    W = np.asarray(init_params.get(SITE_W_SHARED, np.zeros(ws)), np.float64)
    D = np.asarray(init_params.get(SITE_DELTA, np.zeros((S, *ws))), np.float64)
    if W.shape != ws or D.shape != (S, *ws):
        raise ValueError(f"init_params must have W_shared of shape {ws} and Delta of shape "
                         f"{(S, *ws)}, got {W.shape} and {D.shape}")
    tau = init_params.get(SITE_TAU, model.tau_scale if model.learns_tau else model.tau)
    if tau is None or not float(tau) > 0:
        raise ValueError(f"init_params['tau'] must be positive, got {tau!r}")
    return {SITE_W_SHARED: jnp.asarray(W, dtype), SITE_DELTA: jnp.asarray(D, dtype),
            SITE_TAU: jnp.asarray(float(tau), dtype)}


@dataclass
class _Problem:
    """The data of one MAP fit, as arrays, and its inner loop (a fit at fixed ``tau``)."""

    model: HierarchicalWPPM
    data: TrialData
    method: str
    optimizer: Any
    num_steps: int
    settings: dict
    progress_bar: bool

    def __post_init__(self) -> None:
        dtype = jnp.result_type(float)
        self.refs = jnp.asarray(self.data.refs, dtype)
        self.comps = jnp.asarray(self.data.comparisons, dtype)
        self.y = jnp.asarray(self.data.responses, dtype)
        self.obs = jnp.asarray(self.data.observer)
        self.steps_run = 0
        self.seconds = {"fits": 0.0, "hessians": 0.0}
        self._update: Any = None

    def fit(self, start: Params, tau: float, tol: float | None = None) -> tuple[Params, np.ndarray, dict]:
        """MAP of ``(W_shared, Delta)`` with ``tau`` held at a value, from ``start``.

        ``tol`` replaces the stopping rule's tolerance (the ``tau`` search's
        coarser one); None keeps the fit's.
        """
        from psyphy_pp.loop import run_loop
        from psyphy_pp.optim import init_state

        t0 = time.perf_counter()
        tau_arr = jnp.asarray(tau, self.refs.dtype)
        u0 = whiten(self.model, start, tau_arr)
        if self.method == "svi":
            state, step, get = self._svi(u0, tau_arr)
        else:
            from psyphy_pp.scratch import make_step

            loss = jax.tree_util.Partial(_loss_fn(self.model), self.refs, self.comps, self.y,
                                         self.obs, tau_arr)
            step_fn = make_step(jax.tree_util.Partial(_ignore_key, loss), self.optimizer)
            key = jax.random.PRNGKey(0)  # unused: the likelihood is deterministic

            def step(state, t):
                u, opt_state = state
                u, opt_state, value = step_fn(u, opt_state, key)
                return (u, opt_state), value

            state = (u0, init_state(self.optimizer, u0))

            def get(state):  # the stopping rule judges W_shared and Delta themselves
                return colour(self.model, state[0], tau_arr)
        settings = self.settings
        if tol is not None and settings["convergence"] is not None:
            rule = settings["convergence"]
            settings = dict(settings, convergence=type(rule)(tol, rule.window, rule.scale))
        state, _, losses, info = run_loop(
            step, state, get, self.num_steps, desc=f"fit_map (hierarchical, {self.method})",
            progress_bar=self.progress_bar, settings=settings, method=self.method)
        self.steps_run += len(losses)
        self.seconds["fits"] += time.perf_counter() - t0
        return get(state), losses, info

    def _svi(self, u0: Params, tau: Array) -> tuple[Any, Any, Any]:
        """SVI with ``AutoDelta`` on the non-centred model at ``tau`` (an argument: compiled
        once): the same whitened deviations as the scratch loop."""
        if self._update is None:
            svi, guide, update = _svi_program(canonical(self.model), self.optimizer,
                                              self.data.num_observers, self.data.num_trials)
            state = svi.init(jax.random.PRNGKey(0), self.refs, self.comps, self.obs, self.y,
                             tau, init_params={f"{k}_auto_loc": v for k, v in u0.items()})
            self._update = (svi, guide, update, state)
        svi, guide, update, first = self._update
        # AutoDelta's parameters are the sites' values (both unconstrained): start at u0.
        start = {f"{k}_auto_loc": v for k, v in u0.items()}
        state = first._replace(optim_state=svi.optim.init(start))

        def step(state, t):
            return update(state, self.refs, self.comps, self.obs, self.y, tau)

        def get(state):
            median = guide.median(svi.get_params(state))
            return colour(self.model, median, tau)

        return state, step, get

    def log_evidence(self, u: Params, tau: float) -> float:
        """Laplace approximation of ``log p(y | tau) + log p(tau)`` around the MAP ``u``.

        In the coordinates ``(W_shared, W_1 .. W_S)`` the likelihood's Hessian is
        block diagonal (observer ``s``'s trials depend on ``W_s`` only): ``P``
        Hessian-vector products give every block. The prior adds its
        precision; the rotation directions, along which nothing changes, are
        left out of the determinant.
        """
        from psyphy_pp.laplace import gauge_directions

        t0 = time.perf_counter()
        model = self.model
        Ws = model.observer_weights(u)
        nll, L = likelihood_hessians(canonical(model), self.refs, self.comps, self.y, self.obs, Ws)
        L = np.asarray(L, np.float64)
        S, P = L.shape[0], L.shape[1]
        v = np.asarray(model.prior_std(), np.float64).reshape(-1) ** 2
        prec = 1.0 / (tau ** 2 * v)
        n = (S + 1) * P
        H = np.zeros((n, n))
        H[:P, :P] = np.diag(1.0 / v + S * prec)
        for s in range(S):
            blk = slice((s + 1) * P, (s + 2) * P)
            H[blk, blk] = 0.5 * (L[s] + L[s].T) + np.diag(prec)
            H[:P, blk] = H[blk, :P] = -np.diag(prec)
        stacked = np.concatenate([np.asarray(u[SITE_W_SHARED], np.float64)[None],
                                  np.asarray(Ws, np.float64)])
        G = gauge_directions(stacked)
        q, _ = np.linalg.qr(np.concatenate([G, np.eye(n)], axis=1))
        Q = q[:, G.shape[1]:n]
        sign, logdet = np.linalg.slogdet(Q.T @ H @ Q)
        W0 = np.asarray(u[SITE_W_SHARED], np.float64).reshape(-1)
        D = np.asarray(u[SITE_DELTA], np.float64).reshape(S, -1)
        log_prior = (-0.5 * np.sum(W0 ** 2 / v) - 0.5 * np.sum(D ** 2 * prec)
                     - S * 0.5 * np.sum(np.log(tau ** 2 * v)) - 0.5 * np.sum(np.log(v)))
        log_tau_prior = -0.5 * (tau / model.tau_scale) ** 2 if model.learns_tau else 0.0
        self.seconds["hessians"] += time.perf_counter() - t0
        if sign <= 0:
            return -math.inf
        return float(-float(nll) + log_prior + log_tau_prior - 0.5 * logdet)


@functools.lru_cache(maxsize=8)
def _svi_program(model: HierarchicalWPPM, optimizer: Any, num_observers: int,
                 num_trials: int) -> tuple[Any, Any, Any]:
    """``(svi, guide, jitted update)`` of the non-centred model with ``tau`` as an argument.

    Built once per model, optimiser and data size, as ``fit_map``'s own program
    is: later fits (the steps of the ``tau`` search, refits) compile nothing.
    """
    from numpyro.handlers import scale
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.infer.initialization import init_to_median

    from psyphy_pp._jit import jit
    from psyphy_pp.optim import OptaxWithValueFn

    whitened = HierarchicalWPPM(model.base, model.tau, model.tau_scale, "noncentred")

    def model_fn(refs, comps, obs, y, tau):
        whitened.numpyro_model(refs, comps, obs, y, num_observers=num_observers, tau=tau)

    objective = scale(model_fn, scale=1.0 / num_trials)
    guide = AutoDelta(objective, init_loc_fn=init_to_median(num_samples=1))
    svi = SVI(objective, guide, OptaxWithValueFn(optimizer), Trace_ELBO())
    return svi, guide, jit(svi.update)


@functools.lru_cache(maxsize=8)
def _hessian_program(model: HierarchicalWPPM) -> Any:
    """The jitted ``(nll, blocks)`` of :func:`likelihood_hessians`, compiled once per model."""
    from psyphy_pp._jit import jit

    ws = model.weights_shape
    P = int(np.prod(ws))

    def run(refs, comps, y, obs, Ws):
        zero = jnp.zeros(ws, Ws.dtype)

        def nll(Ws):
            params = {SITE_W_SHARED: zero, SITE_DELTA: Ws}
            return -jnp.sum(model.log_likelihood(params, refs, comps, y, obs))

        grad = jax.grad(nll)

        def column(i):
            t = jnp.broadcast_to(jax.nn.one_hot(i, P, dtype=Ws.dtype).reshape(ws), Ws.shape)
            return jax.jvp(grad, (Ws,), (t,))[1].reshape(Ws.shape[0], P)

        cols = jax.lax.map(column, jnp.arange(P))  # (P, S, P): column i of every block
        return nll(Ws), jnp.transpose(cols, (1, 2, 0))

    return jit(run)


def likelihood_hessians(model: HierarchicalWPPM, refs, comps, y, obs, Ws) -> tuple:
    """The negative log-likelihood and its Hessian block ``(S, P, P)`` for each observer."""
    return _hessian_program(model)(refs, comps, y, obs, Ws)


def _golden_max(f: Any, lo: float, hi: float, tol: float) -> float:
    """The maximiser of a unimodal ``f`` on ``[lo, hi]`` by golden-section search."""
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return c if fc >= fd else d


#: The range of ``tau`` the MAP fit searches (relative to the prior), and its precision
#: in ``log tau``.
TAU_SEARCH = (1e-2, 3.0, 0.1)


#: The stopping tolerance of the fits inside the ``tau`` search (the last fit, at the
#: chosen ``tau``, uses the fit's own ``tol``).
TAU_SEARCH_TOL = 1e-3


def fit_map_hierarchical(
    model: HierarchicalWPPM, data: TrialData, *, method: str = "svi",
    num_steps: int = defaults.DEFAULT_NUM_STEPS, optimizer: str = "auto",
    tol: float | None = defaults.DEFAULT_TOL, seed: int = 0,
    init_params: Params | None = None, progress_bar: bool = True, **unsupported: Any,
) -> HierarchicalFit:
    """MAP of a :class:`HierarchicalWPPM` (what ``fit_map`` and ``fit_map_scratch`` run).

    With ``tau`` fixed: the mode of the posterior of ``(W_shared, Delta)``.
    ``method="svi"`` runs NumPyro SVI with an ``AutoDelta`` guide on the
    centred :meth:`HierarchicalWPPM.numpyro_model`; ``"scratch"`` steps the same
    objective, written as a pure function, with optax. Both minimise the
    per-trial mean negative log posterior with L-BFGS (``optimizer="auto"``)
    or Adam and stop by :class:`~psyphy_pp.optim.Convergence`.

    With ``tau`` learnt: the joint mode of ``(W_shared, Delta, tau)`` does not
    exist (the density grows without bound as ``tau`` and every ``Delta_s``
    shrink together; a joint fit slides to ``tau = 0``). So ``tau`` is the
    mode of its own marginal posterior, ``p(y | tau) p(tau)``, with ``p(y |
    tau)`` by a Laplace approximation at the fixed-``tau`` MAP (a type-II MAP,
    "empirical Bayes"); a golden-section search in ``log tau`` over
    :data:`TAU_SEARCH` finds it, each step warm-started from the last. The
    result is the fixed-``tau`` MAP at that ``tau``; ``settings["tau_search"]``
    lists the values tried and their log evidence.

    Raises:
        ValueError: For invalid arguments, before anything is compiled.
    """
    from psyphy_pp.optim import Convergence

    given = sorted(k for k, v in unsupported.items() if v is not None)
    if given:
        raise ValueError(f"fit_map with a HierarchicalWPPM does not take {given} (only "
                         "num_steps, optimizer ('auto', 'lbfgs', 'adam'), tol, seed, "
                         "init_params, progress_bar)")
    model.check_data(data)
    check_positive("num_steps", num_steps, integer=True)
    check_nonnegative("seed", seed, integer=True)
    if tol is not None:
        check_nonnegative("tol", tol)
    if not isinstance(optimizer, str):
        raise ValueError(f"optimizer must be 'auto', 'lbfgs' or 'adam' for a HierarchicalWPPM, "
                         f"got {type(optimizer).__name__}")
    check_choice("optimizer", optimizer, ("auto", "lbfgs", "adam"))
    if not model.base.task.deterministic:
        raise ValueError(f"a HierarchicalWPPM is fitted with a deterministic likelihood only; "
                         f"the base task {model.base.task!r} draws fresh noise: use "
                         "Oddity(method='quadrature') or Oddity(method='mc', fixed_noise=True)")
    name = "lbfgs" if optimizer == "auto" else optimizer
    lr = None if name == "lbfgs" else defaults.DEFAULT_LEARNING_RATES[name]
    opt = defaults.make_optimizer(name, lr, None, None)
    start = initial_params(model, data, seed, init_params)
    rule = Convergence(tol, defaults.CONVERGENCE_WINDOW[name],
                       scale=float(np.max(model.prior_std())))
    settings: dict = dict(num_steps=num_steps, learning_rate=lr, optimizer=f"{name}()",
                          tol=tol, convergence=rule, seed=seed, num_trials=data.num_trials,
                          num_observers=data.num_observers)
    problem = _Problem(model, data, method, opt, num_steps, settings, progress_bar)
    t0 = time.perf_counter()
    if not model.learns_tau:
        tau = float(model.tau)  # type: ignore[arg-type]
        u, losses, info = problem.fit(start, tau)
    else:
        tried: dict[float, tuple] = {}
        last = [start]

        def evidence(log_tau: float) -> float:
            tau = math.exp(log_tau)
            u, losses, info = problem.fit(last[0], tau, tol=TAU_SEARCH_TOL)
            last[0] = u
            value = problem.log_evidence(u, tau)
            tried[tau] = (value, u, losses, info)
            logger.info("fit_map (hierarchical): tau %.4g, log evidence %.6g", tau, value)
            return value

        lo, hi, xtol = TAU_SEARCH
        best = _golden_max(evidence, math.log(lo), math.log(hi), xtol)
        tau = min(tried, key=lambda t: abs(math.log(t) - best))
        settings["tau_search"] = [(t, tried[t][0]) for t in sorted(tried)]
        u, losses, info = problem.fit(tried[tau][1], tau)  # to the fit's own tolerance
    kept = {k: v for k, v in settings.items() if k != "convergence"}
    kept.update(wall_time=time.perf_counter() - t0, num_steps_run=problem.steps_run,
                fit_seconds=problem.seconds["fits"],
                hessian_seconds=problem.seconds["hessians"])
    params = dict(u, tau=jnp.asarray(tau))
    fit = _point(model, data, method, params, settings=kept, losses=losses,
                 converged=info["converged"], convergence=info["convergence"])
    if fit.converged is False and not info.get("interrupted"):
        warnings.warn(f"fit_map (hierarchical) {fit.convergence}", ConvergenceWarning,
                      stacklevel=3)
    return fit


def _ignore_key(loss: Any, params: Params, key: PRNGKey) -> Array:
    return loss(params)


def _loss_fn(model: HierarchicalWPPM) -> Any:
    """``loss(refs, comps, y, obs, tau, u)``, one function object per model (jit cache hits)."""
    return _shared_loss(canonical(model))


@functools.lru_cache(maxsize=8)
def _shared_loss(model: HierarchicalWPPM) -> Any:
    return functools.partial(loss_at_tau, model)


def canonical(model: HierarchicalWPPM) -> HierarchicalWPPM:
    """The model as the MAP programs see it: ``tau`` enters them as an argument, so every
    ``tau``, ``tau_scale`` and parameterisation shares one compiled program."""
    return HierarchicalWPPM(model.base)
