"""Several observers at once: a hierarchical WPPM with a shared field and deviations.

Observer ``s`` (of ``S``) has weights ``W_s = W_shared + Delta_s``:

.. math::

    W_{\\mathrm{shared}} \\sim \\mathcal{N}(0, V), \\qquad
    \\Delta_s \\sim \\mathcal{N}(0, \\tau^2 V), \\qquad
    \\tau \\sim \\mathrm{HalfNormal}(\\sigma_\\tau),

with ``V`` the Wishart-process prior variance of the base :class:`~psyphy_pp.WPPM`
(entry by entry, ``variance_scale * decay_rate ** degree``). ``tau`` is the
size of the observers' deviations relative to the prior: near 0 every observer
has the shared field (one pooled fit), large ``tau`` leaves each observer to
its own data. It is learnt (``tau=None``, the default) or fixed
(``tau=0.3``). The likelihood of a trial is the base model's, with the
weights of the trial's observer (:attr:`~psyphy_pp.TrialData.observer`).

Fits. :func:`~psyphy_pp.fit_map`, :func:`~psyphy_pp.fit_map_scratch`,
:func:`~psyphy_pp.fit_laplace` and :func:`~psyphy_pp.fit_nuts` take a
:class:`HierarchicalWPPM` with the same call shape and return a
:class:`HierarchicalFit`: draws ``(chains, draws, ...)`` of ``W_shared``,
``Delta`` (``(chains, draws, S, *weights_shape)``) and ``tau`` (a point
estimate is one chain of one draw). :meth:`HierarchicalFit.observer` and
:meth:`HierarchicalFit.population` turn it into ordinary single-observer fits
(:class:`~psyphy_pp.SavedFit`), so thresholds, ellipses, plots and files work
per observer and for the population (``W_shared``);
:meth:`HierarchicalFit.thresholds` gives them all at once and
:func:`~psyphy_pp.to_arviz` names the observer dimension ``"observer"``.

MAP with a learnt ``tau``. The joint posterior density of ``(W_shared,
Delta, tau)`` has no mode: it grows without bound as ``tau`` and every
``Delta_s`` shrink to 0 together, and a joint fit slides there. So the MAP
fits take ``tau`` as the mode of its marginal posterior ``p(y | tau) p(tau)``,
with ``p(y | tau)`` by a Laplace approximation at the fixed-``tau`` MAP
(:func:`fit_map_hierarchical`), and return the fixed-``tau`` MAP there.

Parameterisation for NUTS. ``parameterization="noncentred"`` samples
``Z_s ~ N(0, V)`` and sets ``Delta_s = tau * Z_s`` (a deterministic site);
``"centred"`` samples ``Delta_s`` itself. The MAP fits step ``(W_shared, Z)``
at a fixed ``tau`` either way (the same mode as the centred density).

Not supported: a learnt lapse rate (``Oddity(lapse_rate="learn")``; a fixed
rate works), sharding the trials over several devices, and Monte Carlo tasks
with fresh noise in the MAP fits (use the default quadrature).
"""

from __future__ import annotations

__all__ = [
    "HierarchicalWPPM",
    "HierarchicalFit",
    "SITE_W_SHARED",
    "SITE_DELTA",
    "SITE_Z",
    "SITE_TAU",
    "POPULATION",
    "DEFAULT_TAU_SCALE",
    "TAU_SEARCH",
    "TAU_SEARCH_TOL",
    "fit_map_hierarchical",
    "fit_laplace_hierarchical",
    "fit_nuts_hierarchical",
    "hierarchical_to_arviz",
    "plot_observers",
]

import functools
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree

from psyphy_pp import defaults
from psyphy_pp._typing import Array, ArrayLike, Params, PRNGKey
from psyphy_pp._validation import check_choice, check_nonnegative, check_positive
from psyphy_pp._warnings import ConvergenceWarning
from psyphy_pp.basis import tensor_basis
from psyphy_pp.data import TrialData
from psyphy_pp.model import SITE_Y, WPPM
from psyphy_pp.oddity.lapse import lapse_logits

logger = logging.getLogger(__name__)

#: Name of the shared-weights sample site.
SITE_W_SHARED = "W_shared"
#: Name of the observers' deviations (a sample site when centred, else deterministic).
SITE_DELTA = "Delta"
#: Name of the standardised deviations of the non-centred parameterisation.
SITE_Z = "Z"
#: Name of the deviation scale (a sample site when learnt).
SITE_TAU = "tau"
#: The key of the population (``W_shared``) in :meth:`HierarchicalFit.thresholds`.
POPULATION = "population"
#: Default scale of the half-normal prior of ``tau``.
DEFAULT_TAU_SCALE = 0.5
_PARAMETERIZATIONS = ("noncentred", "centred")


@dataclass(frozen=True)
class HierarchicalWPPM:
    """A WPPM for several observers: a shared field plus a deviation per observer.

    Args:
        base: The :class:`~psyphy_pp.WPPM` that sets the basis, the prior
            variance ``V`` of the shared weights and the task.
        tau: The deviations' scale relative to the prior, fixed; None (the
            default) learns it under a half-normal prior.
        tau_scale: Scale of that half-normal prior (default 0.5: deviations a
            fraction of the prior's spread of fields between observers).
        parameterization: ``"noncentred"`` (the default, which NUTS sampled
            better; see docs/hierarchical.md) or ``"centred"``: how
            :meth:`numpyro_model` writes the deviations.

    Raises:
        ValueError: For a base that is not a WPPM or learns its lapse rate, or
            an invalid ``tau``, ``tau_scale`` or ``parameterization``.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> hmodel = pp.HierarchicalWPPM(base=pp.WPPM(basis_degree=1))
        >>> params = hmodel.sample_prior(jax.random.PRNGKey(0), num_observers=3)
        >>> params["Delta"].shape, hmodel.observer_weights(params).shape
        ((3, 2, 2, 2, 3), (3, 2, 2, 2, 3))
    """

    base: WPPM
    tau: float | None = None
    tau_scale: float = DEFAULT_TAU_SCALE
    parameterization: str = "noncentred"

    def __post_init__(self) -> None:
        if not isinstance(self.base, WPPM):
            raise ValueError(f"base must be a psyphy_pp.WPPM, got {type(self.base).__name__}")
        if self.base.task.learns_lapse:
            raise ValueError(
                f"HierarchicalWPPM does not learn a lapse rate (base task {self.base.task!r}); "
                "fix it in the base model (Oddity(lapse_rate=0.05)) or fit each observer alone")
        if self.tau is not None:
            check_positive("tau", self.tau)
        check_positive("tau_scale", self.tau_scale)
        check_choice("parameterization", self.parameterization, _PARAMETERIZATIONS)

    @property
    def learns_tau(self) -> bool:
        """True when ``tau`` is a parameter (``tau=None``)."""
        return self.tau is None

    @property
    def input_dim(self) -> int:
        """The stimulus dimension ``D`` of the base model."""
        return self.base.input_dim

    @property
    def weights_shape(self) -> tuple[int, ...]:
        """Shape of one observer's weights (the base model's)."""
        return self.base.weights_shape

    def prior_std(self) -> np.ndarray:
        """The base prior's standard deviation of every weight, ``sqrt(V)``."""
        return self.base.prior_std()

    def tau_prior(self) -> dist.Distribution:
        """The half-normal prior of a learnt ``tau``."""
        return dist.HalfNormal(jnp.asarray(self.tau_scale, jnp.result_type(float)))

    def sample_prior(self, key: PRNGKey, num_observers: int) -> Params:
        """Draw ``{"W_shared", "Delta", "tau"}`` from the prior.

        ``W_shared`` is drawn with ``key`` itself (so it equals
        ``base.sample_prior(key)["W"]``), ``tau`` (when learnt) with
        ``fold_in(key, 1)`` and ``Delta`` with ``fold_in(key, 2)``.
        """
        check_positive("num_observers", num_observers, integer=True)
        W = self.base.prior().sample(key)
        tau = (self.tau_prior().sample(jax.random.fold_in(key, 1)) if self.learns_tau
               else jnp.asarray(self.tau, W.dtype))
        Z = jax.random.normal(jax.random.fold_in(key, 2), (num_observers, *self.weights_shape),
                              W.dtype)
        return {SITE_W_SHARED: W, SITE_DELTA: tau * jnp.asarray(self.prior_std(), W.dtype) * Z,
                SITE_TAU: tau}

    def tau_value(self, params: Params) -> Array:
        """``tau``: ``params["tau"]`` when given (it must be, when learnt), else the fixed value."""
        if self.learns_tau or SITE_TAU in params:
            return jnp.asarray(params[SITE_TAU])
        return jnp.asarray(self.tau, jnp.result_type(float))

    def observer_weights(self, params: Params) -> Array:
        """``W_s = W_shared + Delta_s`` of every observer, shape ``(..., S, *weights_shape)``."""
        n = len(self.weights_shape)
        W = jnp.asarray(params[SITE_W_SHARED])
        return jnp.expand_dims(W, W.ndim - n) + jnp.asarray(params[SITE_DELTA])

    def log_prior(self, params: Params) -> Array:
        """Log prior density of ``(W_shared, Delta, tau)``, a scalar (centred)."""
        std = jnp.asarray(self.prior_std())
        tau = self.tau_value(params)
        lp = self.base.prior().log_prob(params[SITE_W_SHARED])
        lp = lp + jnp.sum(dist.Normal(0.0, tau * std).log_prob(params[SITE_DELTA]))
        if self.learns_tau:
            lp = lp + self.tau_prior().log_prob(tau)
        return lp

    def logits(self, params: Params, refs: ArrayLike, comparisons: ArrayLike,
               observer: ArrayLike, key: PRNGKey | None = None) -> Array:
        """Logits of P(correct) of each trial with its observer's weights, shape ``(N,)``.

        The base model's task computes the probability from the covariances at
        both stimuli, exactly as :meth:`WPPM.logits` does for one observer; a
        fixed lapse rate of the task is included.

        Args:
            params: ``{"W_shared", "Delta"}`` (and ``"tau"``).
            refs: Reference stimuli ``(N, D)`` in ``[-1, 1]``.
            comparisons: Comparison stimuli ``(N, D)``.
            observer: Each trial's observer index, shape ``(N,)``.
            key: Monte Carlo key of a fresh-noise task.
        """
        Ws = self.observer_weights(params)
        refs = jnp.asarray(refs, Ws.dtype)
        comparisons = jnp.asarray(comparisons, Ws.dtype)
        W_trial = Ws[jnp.asarray(observer)]  # (N, *weights_shape)
        n = refs.shape[0]
        d = self.input_dim
        W_flat = W_trial.reshape(n, -1, d, W_trial.shape[-1])
        phi = tensor_basis(jnp.stack([refs, comparisons]), self.base.basis_degree)  # (2, N, B)
        U = jnp.einsum("tnb,nbij->tnij", phi, W_flat)
        S = jnp.einsum("tnik,tnjk->tnij", U, U) + self.base.diag_term * jnp.eye(d, dtype=U.dtype)
        task = self.base.task
        z = task.logits(S[0], S[1], refs - comparisons, task.noise_key(key),
                        block_size=task.block_size(d))
        return lapse_logits(z, float(task.lapse_rate)) if task.has_lapse else z

    def log_likelihood(self, params: Params, refs: ArrayLike, comparisons: ArrayLike,
                       responses: ArrayLike, observer: ArrayLike,
                       key: PRNGKey | None = None) -> Array:
        """Pointwise Bernoulli log-likelihood of the responses, shape ``(N,)``."""
        z = self.logits(params, refs, comparisons, observer, key)
        return dist.Bernoulli(logits=z).log_prob(jnp.asarray(responses, z.dtype))

    def numpyro_model(self, refs: ArrayLike, comparisons: ArrayLike, observer: ArrayLike,
                      responses: ArrayLike | None = None, key: PRNGKey | None = None, *,
                      num_observers: int, tau: ArrayLike | None = None) -> None:
        """The hierarchical WPPM as a NumPyro model function.

        Sites: ``"W_shared"`` (the base prior), ``"tau"`` (half-normal, when
        learnt), ``"Delta"`` inside a plate ``"observers"`` (sampled when
        centred; deterministic ``tau * Z`` from ``"Z" ~ N(0, V)`` when
        non-centred) and ``"y"`` (Bernoulli responses) inside a plate
        ``"trials"``.

        Args:
            refs: Reference stimuli ``(N, D)``.
            comparisons: Comparison stimuli ``(N, D)``.
            observer: Each trial's observer index ``(N,)``.
            responses: Observed responses, or None to sample them.
            key: Monte Carlo key for a fresh-noise task (default: NumPyro's).
            num_observers: ``S``, the size of the observer plate.
            tau: Hold ``tau`` at this value (no ``"tau"`` site), overriding the
                model's; used by the MAP fit's search over ``tau``.
        """
        W = numpyro.sample(SITE_W_SHARED, self.base.prior())
        if tau is not None:
            tau = jnp.asarray(tau, W.dtype)
        elif self.learns_tau:
            tau = numpyro.sample(SITE_TAU, self.tau_prior())
        else:
            tau = jnp.asarray(self.tau, W.dtype)
        std = jnp.asarray(self.prior_std(), W.dtype)
        n = len(self.weights_shape)
        with numpyro.plate("observers", num_observers, dim=-1):
            if self.parameterization == "centred":
                Delta = numpyro.sample(SITE_DELTA, dist.Normal(jnp.zeros_like(std), tau * std)
                                       .to_event(n))
            else:
                Z = numpyro.sample(SITE_Z, dist.Normal(jnp.zeros_like(std), std).to_event(n))
                Delta = numpyro.deterministic(SITE_DELTA, tau * Z)
        if self.base.task.needs_key and key is None:
            key = numpyro.prng_key()
        point: dict[str, Any] = {SITE_W_SHARED: W, SITE_DELTA: Delta, SITE_TAU: tau}
        z = self.logits(point, refs,
                        comparisons, observer, key)
        with numpyro.plate("trials", z.shape[0]):
            numpyro.sample(SITE_Y, dist.Bernoulli(logits=z), obs=responses)

    def check_data(self, data: TrialData) -> None:
        """Raise ``ValueError`` unless ``data`` are trials of this dimension with observers."""
        if not isinstance(data, TrialData):
            raise ValueError(f"data must be a psyphy_pp.TrialData, got {type(data).__name__}")
        data.check_model(self.input_dim)
        if data.observer is None or data.observer_names is None:
            raise ValueError(
                "data must have an observer index for a HierarchicalWPPM, got observer=None; "
                "read a file with a 'subject' (or 'observer') column, or pass observer= and "
                "observer_names= to TrialData")
        missing = [name for s, name in enumerate(data.observer_names)
                   if not np.any(data.observer == s)]
        if missing:
            raise ValueError(f"data.observer_names has observers without trials: {missing}; "
                             f"expected every one of the {data.num_observers} names to have "
                             "trials")


@dataclass(frozen=True, eq=False)
class HierarchicalFit:
    """A fit of a :class:`HierarchicalWPPM`: a MAP point, Laplace draws or NUTS draws.

    Attributes:
        model: The fitted :class:`HierarchicalWPPM`.
        data: The trials (with their observer index).
        method: ``"svi"``, ``"scratch"``, ``"laplace"`` or ``"nuts"``.
        samples: ``{"W_shared": (C, K, *ws), "Delta": (C, K, S, *ws), "tau":
            (C, K)}`` by chain ``C`` and draw ``K``; a point estimate has
            ``C = K = 1``.
        kind: ``"point"`` or ``"posterior"``.
        settings: The settings used, and timings (``wall_time`` in seconds).
        losses: The MAP loss trace (nats per trial), or None.
        converged: Whether the MAP loop met its stopping rule (None for draws).
        convergence: The reason, in words.
        sample_stats: NUTS statistics by chain and draw (``diverging``, ...), or
            an empty dict.
    """

    model: HierarchicalWPPM
    data: TrialData
    method: str
    samples: dict
    kind: str = "point"
    settings: dict = field(default_factory=dict)
    losses: np.ndarray | None = None
    converged: bool | None = None
    convergence: str = ""
    sample_stats: dict = field(default_factory=dict)

    @property
    def observer_names(self) -> tuple[str, ...]:
        """The observers' names, in the order of the ``Delta`` axis."""
        assert self.data.observer_names is not None
        return self.data.observer_names

    @property
    def params(self) -> Params:
        """The point estimate ``{"W_shared", "Delta", "tau"}`` (draw 0 of chain 0 for draws)."""
        return {k: np.asarray(v)[0, 0] for k, v in self.samples.items()}

    @property
    def tau(self) -> np.ndarray:
        """``tau`` by chain and draw, shape ``(C, K)``."""
        return np.asarray(self.samples[SITE_TAU])

    def observer_weight_draws(self) -> np.ndarray:
        """Every observer's ``W_s`` by chain and draw, shape ``(C, K, S, *weights_shape)``."""
        return np.asarray(self.model.observer_weights(
            {SITE_W_SHARED: self.samples[SITE_W_SHARED], SITE_DELTA: self.samples[SITE_DELTA]}))

    def observer(self, observer: int | str) -> Any:
        """One observer's fit as a :class:`~psyphy_pp.SavedFit` of the base model.

        Its weights are ``W_shared + Delta_s`` (draws kept), its data the
        observer's trials; thresholds, ellipses, plots and ``save_fit`` treat
        it as any single-observer fit.

        Args:
            observer: The observer's index or name.
        """
        from psyphy_pp.fitio import SavedFit

        s = self.data.observer_position(observer)
        W = self.observer_weight_draws()[:, :, s]
        weights: dict[str, Any] = {"W": W if self.kind == "posterior" else W[0, 0]}
        return SavedFit(self.model.base, weights,
                        kind=self.kind, method=f"{self.method} (hierarchical, observer "
                        f"{self.observer_names[s]!r})", data=self.data.observer_trials(s),
                        normalization=self.data.normalization, settings=_json(self.settings))

    def population(self) -> Any:
        """The shared field ``W_shared`` as a :class:`~psyphy_pp.SavedFit` of the base model."""
        from psyphy_pp.fitio import SavedFit

        W = np.asarray(self.samples[SITE_W_SHARED])
        weights: dict[str, Any] = {"W": W if self.kind == "posterior" else W[0, 0]}
        return SavedFit(self.model.base, weights,
                        kind=self.kind, method=f"{self.method} (hierarchical, population)",
                        normalization=self.data.normalization, settings=_json(self.settings))

    def fits(self) -> dict[str, Any]:
        """``{POPULATION: population(), name: observer(name), ...}``.

        Raises:
            ValueError: If an observer is named like the population key.
        """
        if POPULATION in self.observer_names:
            raise ValueError(f"an observer is named {POPULATION!r}, the key of the shared "
                             "field; rename it in the data")
        out = {POPULATION: self.population()}
        out.update({name: self.observer(name) for name in self.observer_names})
        return out

    def thresholds(self, refs: ArrayLike, num_directions: int = 16, **kwargs: Any) -> dict:
        """Thresholds of the population and of every observer, with draws for bands.

        Args:
            refs: Reference points in model units, ``(R, D)``.
            num_directions: Directions per reference.
            **kwargs: Passed to :func:`~psyphy_pp.thresholds`.

        Returns:
            ``{"population": Thresholds, name: Thresholds, ...}``; from draws,
            ``.band(prob)`` gives each one's band.
        """
        from psyphy_pp.thresholds import thresholds

        return {name: thresholds(fit.model, fit.params, refs, num_directions, **kwargs)
                for name, fit in self.fits().items()}

    def summary(self, level: float = 0.9) -> str:
        """A few lines: method, observers and trials, ``tau``, convergence."""
        names = self.observer_names
        counts = np.bincount(np.asarray(self.data.observer), minlength=len(names))
        tau = self.tau.ravel()
        if not self.model.learns_tau:
            tau_s = f"tau fixed at {self.model.tau:g}"
        elif tau.size == 1:
            tau_s = f"tau {float(tau[0]):.4g} (MAP)"
        else:
            lo, med, hi = np.quantile(tau, [(1 - level) / 2, 0.5, (1 + level) / 2])
            tau_s = f"tau {med:.4g} [{lo:.4g}, {hi:.4g}] ({level:.0%} interval)"
        lines = [
            f"hierarchical WPPM ({self.model.parameterization} deviations, tau_scale "
            f"{self.model.tau_scale:g}), method {self.method}",
            f"{len(names)} observers: " + ", ".join(f"{n} ({c} trials)"
                                                    for n, c in zip(names, counts)),
            tau_s,
        ]
        if self.convergence:
            lines.append(f"convergence: {self.convergence}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"HierarchicalFit(method={self.method!r}, kind={self.kind!r}, observers="
                f"{list(self.observer_names)}, tau={np.median(self.tau):.4g}, "
                f"converged={self.converged})")


def _json(settings: dict) -> dict:
    """The settings that are plain JSON values (what a SavedFit keeps)."""
    return {k: v for k, v in settings.items() if isinstance(v, (str, int, float, bool))
            or v is None}


def _point(model: HierarchicalWPPM, data: TrialData, method: str, params: Params,
           **kw: Any) -> HierarchicalFit:
    samples = {SITE_W_SHARED: np.asarray(params[SITE_W_SHARED])[None, None],
               SITE_DELTA: np.asarray(params[SITE_DELTA])[None, None],
               SITE_TAU: np.asarray(model.tau_value(params))[None, None]}
    return HierarchicalFit(model=model, data=data, method=method, samples=samples,
                           kind="point", **kw)


# -- MAP ----------------------------------------------------------------------------
def _loss(model: HierarchicalWPPM, refs, comps, y, obs, tau, u: Params) -> Array:
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


def _whiten(model: HierarchicalWPPM, params: Params, tau: Array) -> Params:
    """``(W_shared, Z = Delta / tau)``: the fits' coordinates at a fixed ``tau``."""
    return {SITE_W_SHARED: jnp.asarray(params[SITE_W_SHARED]),
            SITE_Z: jnp.asarray(params[SITE_DELTA]) / tau}


def _colour(model: HierarchicalWPPM, u: Params, tau: Array) -> Params:
    """``(W_shared, Delta = tau Z)`` from the fits' coordinates."""
    return {SITE_W_SHARED: u[SITE_W_SHARED], SITE_DELTA: tau * u[SITE_Z]}


def _initial(model: HierarchicalWPPM, data: TrialData, seed: int,
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
        u0 = _whiten(self.model, start, tau_arr)
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
                return _colour(self.model, state[0], tau_arr)
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
            svi, guide, update = _svi_program(_canonical(self.model), self.optimizer,
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
            return _colour(self.model, median, tau)

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
        nll, L = _likelihood_hessians(_canonical(model), self.refs, self.comps, self.y, self.obs, Ws)
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
    """The jitted ``(nll, blocks)`` of :func:`_likelihood_hessians`, compiled once per model."""
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


def _likelihood_hessians(model: HierarchicalWPPM, refs, comps, y, obs, Ws) -> tuple:
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
    start = _initial(model, data, seed, init_params)
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


_LOSSES: dict = {}


def _loss_fn(model: HierarchicalWPPM) -> Any:
    """``loss(refs, comps, y, obs, tau, u)``, one function object per model (jit cache hits)."""
    canonical = _canonical(model)
    if canonical not in _LOSSES:
        _LOSSES[canonical] = functools.partial(_loss, canonical)
    return _LOSSES[canonical]


def _canonical(model: HierarchicalWPPM) -> HierarchicalWPPM:
    """The model as the MAP programs see it: ``tau`` enters them as an argument, so every
    ``tau``, ``tau_scale`` and parameterisation shares one compiled program."""
    return HierarchicalWPPM(model.base)


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
    u_map = _whiten(model, point, tau)  # (W_shared, Z): Delta = tau sqrt(V) Z is linear
    flat0, unravel = ravel_pytree(u_map)
    refs = jnp.asarray(data.refs, dtype)
    comps = jnp.asarray(data.comparisons, dtype)
    y = jnp.asarray(data.responses, dtype)
    obs = jnp.asarray(data.observer)

    def f(v):
        return _loss(model, refs, comps, y, obs, tau, unravel(v)) * data.num_trials

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
    parts = [_colour(model, unravel(jnp.asarray(d, dtype)), tau) for d in draws]
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
    model: HierarchicalWPPM, data: TrialData, *, num_warmup: int = 500,
    num_samples: int = 500, num_chains: int = 2, seed: int = 0,
    init_params: Params | None = None, target_accept_prob: float = 0.8,
    progress_bar: bool = True, chain_method: str = "auto", **unsupported: Any,
) -> HierarchicalFit:
    """NUTS on :meth:`HierarchicalWPPM.numpyro_model` (what ``fit_nuts`` runs).

    Every chain starts from ``init_params`` (a MAP's ``params``) or, by
    default, from a prior draw with ``Delta`` at ``tau = tau_scale``.

    Raises:
        ValueError: For invalid arguments, before anything is compiled.
    """
    from numpyro.infer import MCMC, NUTS
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
    if not model.base.task.deterministic:
        raise ValueError(f"NUTS needs a deterministic likelihood; the base task "
                         f"{model.base.task!r} draws fresh noise")
    check_choice("chain_method", chain_method, ("auto", "sequential", "vectorized", "parallel"))
    method = "sequential" if chain_method == "auto" else chain_method
    start = _initial(model, data, seed, init_params)
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

    kernel = NUTS(model_fn, target_accept_prob=target_accept_prob,
                  init_strategy=init_to_value(values=values))
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=method, progress_bar=progress_bar)
    t0 = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), jnp.asarray(data.refs, dtype),
             jnp.asarray(data.comparisons, dtype), jnp.asarray(data.observer),
             jnp.asarray(data.responses, dtype), extra_fields=("diverging", "num_steps"))
    wall = time.perf_counter() - t0
    got = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    samples = {SITE_W_SHARED: got[SITE_W_SHARED], SITE_DELTA: got[SITE_DELTA]}
    samples[SITE_TAU] = (got[SITE_TAU] if model.learns_tau else
                         np.full(got[SITE_W_SHARED].shape[:2], float(model.tau or 0.0)))
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    stats = {"diverging": extra["diverging"].astype(bool),
             "num_steps": extra["num_steps"].astype(np.int64)}
    settings = dict(num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    chain_method=method, seed=seed, target_accept_prob=target_accept_prob,
                    parameterization=model.parameterization, num_trials=data.num_trials,
                    num_observers=S, wall_time=wall)
    fit = HierarchicalFit(model=model, data=data, method="nuts", samples=samples,
                          kind="posterior", settings=settings, sample_stats=stats)
    if stats["diverging"].any():
        logger.warning("fit_nuts (hierarchical): %d divergent transitions",
                       int(stats["diverging"].sum()))
    return fit


# -- ArviZ and plots ----------------------------------------------------------------
def hierarchical_to_arviz(fit: HierarchicalFit) -> Any:
    """A :class:`HierarchicalFit` as ``arviz.InferenceData`` (what ``to_arviz`` returns).

    ``posterior``: ``W_shared`` (dims ``basis_1 .. basis_D, row, W_col``),
    ``Delta`` and ``W`` (each observer's weights; dims ``observer, basis_1 ..,
    row, W_col``), ``tau``, ``Sigma`` (``observer, ref_point, row, col``: each
    observer's field at the data's distinct references) and
    ``Sigma_population`` (``ref_point, row, col``). The ``observer``
    coordinate holds the observer names. ``log_likelihood`` has ``y`` by
    ``trial``; ``constant_data`` has ``refs``, ``comparisons`` and ``observer``
    (each trial's observer index); a MAP fit's loss trace is in
    ``sample_stats.loss``.
    """
    from psyphy_pp._optional import import_arviz
    from psyphy_pp.field import covariance

    az = import_arviz()
    model, data = fit.model, fit.data
    base = model.base
    D = base.input_dim
    ref_points = data.unique_refs()
    W_shared = np.asarray(fit.samples[SITE_W_SHARED])
    Ws = fit.observer_weight_draws()
    C, K = W_shared.shape[:2]
    flat = Ws.reshape(C * K, *Ws.shape[2:])
    sigma = np.stack([np.asarray(covariance(w, ref_points, base.diag_term)) for w in
                      flat.reshape(-1, *model.weights_shape)])
    sigma = sigma.reshape(C, K, Ws.shape[2], *sigma.shape[1:])
    sigma_pop = np.stack([np.asarray(covariance(w, ref_points, base.diag_term))
                          for w in W_shared.reshape(-1, *model.weights_shape)])
    log_lik = _log_lik_draws(model, fit).reshape(C, K, data.num_trials)
    basis_dims = [f"basis_{k + 1}" for k in range(D)]
    coords: dict[str, Any] = {name: np.arange(base.basis_degree + 1) for name in basis_dims}
    coords |= dict(observer=list(fit.observer_names), row=np.arange(D), col=np.arange(D),
                   W_col=np.arange(D + base.extra_dims),
                   ref_point=np.arange(ref_points.shape[0]), trial=np.arange(data.num_trials),
                   stimulus_dim=np.arange(D))
    w_dims = basis_dims + ["row", "W_col"]
    dims = {SITE_W_SHARED: w_dims, SITE_DELTA: ["observer"] + w_dims, "W": ["observer"] + w_dims,
            "Sigma": ["observer", "ref_point", "row", "col"],
            "Sigma_population": ["ref_point", "row", "col"], SITE_Y: ["trial"],
            "refs": ["trial", "stimulus_dim"], "comparisons": ["trial", "stimulus_dim"],
            "observer_index": ["trial"], "ref_points": ["ref_point", "stimulus_dim"],
            "loss": ["step"]}
    sample_stats = None
    if fit.kind == "point" and fit.losses is not None:
        sample_stats = {"loss": np.asarray(fit.losses)[None, None]}
        coords["step"] = np.arange(len(fit.losses))
    elif fit.sample_stats:
        sample_stats = {"diverging": fit.sample_stats["diverging"],
                        "n_steps": fit.sample_stats["num_steps"]}
    idata = az.from_dict(
        posterior={SITE_W_SHARED: W_shared, SITE_DELTA: np.asarray(fit.samples[SITE_DELTA]),
                   "W": Ws, SITE_TAU: fit.tau, "Sigma": sigma,
                   "Sigma_population": sigma_pop.reshape(C, K, *sigma_pop.shape[1:])},
        sample_stats=sample_stats,
        log_likelihood={SITE_Y: log_lik},
        observed_data={SITE_Y: np.asarray(data.responses)},
        constant_data={"refs": np.asarray(data.refs), "comparisons": np.asarray(data.comparisons),
                       "observer_index": np.asarray(data.observer), "ref_points": ref_points},
        coords=coords, dims=dims)
    idata.posterior.attrs |= dict(
        inference_method=fit.method, hierarchical=1, tau_fixed=float(model.tau or 0.0),
        tau_scale=float(model.tau_scale), parameterization=model.parameterization,
        input_dim=D, basis_degree=base.basis_degree, extra_dims=base.extra_dims,
        variance_scale=base.variance_scale, decay_rate=base.decay_rate,
        diag_term=base.diag_term)
    return idata


def _log_lik_draws(model: HierarchicalWPPM, fit: HierarchicalFit) -> np.ndarray:
    """The pointwise log-likelihood at every draw, shape ``(C * K, N)``."""
    data = fit.data
    dtype = jnp.result_type(float)
    refs = jnp.asarray(data.refs, dtype)
    comps = jnp.asarray(data.comparisons, dtype)
    y = jnp.asarray(data.responses, dtype)
    obs = jnp.asarray(data.observer)
    run = _log_lik_program(_canonical(model))
    W = np.asarray(fit.samples[SITE_W_SHARED])
    Dl = np.asarray(fit.samples[SITE_DELTA])
    W = W.reshape(-1, *W.shape[2:])
    Dl = Dl.reshape(-1, *Dl.shape[2:])
    return np.stack([np.asarray(run(jnp.asarray(w, dtype), jnp.asarray(d, dtype), refs, comps,
                                    y, obs)) for w, d in zip(W, Dl)])


@functools.lru_cache(maxsize=8)
def _log_lik_program(model: HierarchicalWPPM) -> Any:
    from psyphy_pp._jit import jit

    def run(W, Delta, refs, comps, y, obs):
        return model.log_likelihood({SITE_W_SHARED: W, SITE_DELTA: Delta}, refs, comps, y, obs)

    return jit(run)


def plot_observers(fit: HierarchicalFit, refs: ArrayLike | None = None, *,
                   num_directions: int = 16, prob: float = 0.9, ncols: int = 3,
                   truth: dict | None = None, **kwargs: Any) -> Any:
    """Threshold ellipses: one panel for the population, then one per observer (2D).

    Each panel is :func:`~psyphy_pp.plotting.plot_threshold_field` of that
    fit (with the ``prob`` band for draws), in the data's units.

    Args:
        fit: The :class:`HierarchicalFit`.
        refs: Reference points in model units (default the data's distinct
            references, at most 25 of them).
        num_directions: Directions per reference.
        prob: Mass of the bands.
        ncols: Panels per row.
        truth: Optional ``{name: Thresholds}`` of true thresholds (in the same
            units), drawn dashed in the matching panels.
        **kwargs: Passed to ``plot_threshold_field``.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: If the model is not 2D, or ``ncols`` is not a positive integer.
    """
    import matplotlib.pyplot as plt

    from psyphy_pp.plotting import plot_threshold_field

    if fit.model.input_dim != 2:
        raise ValueError(f"plot_observers needs input_dim 2, got {fit.model.input_dim}")
    check_positive("ncols", ncols, integer=True)
    if refs is None:
        refs = fit.data.unique_refs()
        if len(refs) > 25:
            refs = refs[np.linspace(0, len(refs) - 1, 25).round().astype(int)]
    ths = fit.thresholds(refs, num_directions)
    n = len(ths)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 4 * nrows), squeeze=False)
    for ax, (name, th) in zip(axes.ravel(), ths.items()):
        th = th.to_user(fit.data.normalization)
        plot_threshold_field(th, ax=ax, prob=prob, truth=(truth or {}).get(name), **kwargs)
        ax.set_title(f"{name} ({ax.get_title()})" if ax.get_title() else name)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
