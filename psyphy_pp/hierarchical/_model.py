"""The hierarchical model itself: :class:`HierarchicalWPPM` and its site names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from psyphy_pp._typing import Array, ArrayLike, Params, PRNGKey
from psyphy_pp._validation import check_choice, check_positive
from psyphy_pp.basis import tensor_basis
from psyphy_pp.data import TrialData
from psyphy_pp.model import SITE_Y, WPPM
from psyphy_pp.oddity.lapse import lapse_logits

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
