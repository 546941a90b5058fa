"""The Wishart Process Psychophysical Model (WPPM) as a NumPyro model.

:class:`WPPM` holds the hyperparameters and the task (likelihood settings) and
offers the model's pure functions (prior, covariance field, P(correct),
log-likelihood). :meth:`WPPM.numpyro_model` is the probabilistic program: the
only place where ``numpyro.sample`` is called. Its sites are named by the
constants :data:`SITE_W` (the weights) and :data:`SITE_Y` (the responses).
"""

from __future__ import annotations

__all__ = ["WPPM", "SITE_W", "SITE_Y"]

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from psyphy_pp import field as _field
from psyphy_pp._jit import jit
from psyphy_pp._typing import Array, ArrayLike, Params, PRNGKey
from psyphy_pp._validation import check_nonnegative, check_positive, check_stimuli, is_concrete
from psyphy_pp.likelihood import Oddity

#: Name of the weight sample site (``AutoDelta`` calls its parameter ``W_auto_loc``).
SITE_W = "W"
#: Name of the observed response site.
SITE_Y = "y"


@dataclass(frozen=True)
class WPPM:
    """Wishart Process Psychophysical Model.

    Args:
        input_dim: Stimulus dimension ``D`` (1, 2 or 3 in practice).
        basis_degree: Highest Chebyshev degree ``K`` per dimension.
        extra_dims: Extra columns ``E`` of ``U(x)`` (``U`` is ``D x (D+E)``).
        variance_scale: Prior variance of the constant-term weights.
        decay_rate: Factor by which the prior variance falls per unit of degree.
        diag_term: ``epsilon`` added to the diagonal of ``Sigma(x)``.
        task: Likelihood settings (:class:`~psyphy_pp.Oddity`).

    Examples:
        >>> import jax
        >>> model = WPPM(input_dim=2, basis_degree=2)
        >>> params = model.sample_prior(jax.random.PRNGKey(0))
        >>> params["W"].shape
        (3, 3, 2, 3)
        >>> model.covariance(params, jnp.zeros((4, 2))).shape
        (4, 2, 2)
    """

    input_dim: int = 2
    basis_degree: int = 4
    extra_dims: int = 1
    variance_scale: float = 4e-3
    decay_rate: float = 0.4
    diag_term: float = 1e-4
    task: Oddity = field(default_factory=Oddity)

    def __post_init__(self) -> None:
        check_positive("input_dim", self.input_dim, integer=True)
        check_nonnegative("basis_degree", self.basis_degree, integer=True)
        check_nonnegative("extra_dims", self.extra_dims, integer=True)
        check_positive("variance_scale", self.variance_scale)
        check_positive("decay_rate", self.decay_rate)
        check_positive("diag_term", self.diag_term)
        if not isinstance(self.task, Oddity):
            raise ValueError(f"task must be a psyphy_pp.Oddity, got {self.task!r}")
        if self.task.method == "quadrature" and self.input_dim != 2:
            raise ValueError(
                "task=Oddity(method='quadrature') needs input_dim == 2, "
                f"got input_dim={self.input_dim}; use method='mc' with fixed_noise=True"
            )

    # -- shapes and prior -------------------------------------------------------
    @property
    def weights_shape(self) -> tuple[int, ...]:
        """Shape of ``W``: ``(K+1,) * D + (D, D + E)``."""
        return _field.weights_shape(self.input_dim, self.basis_degree, self.extra_dims)

    def prior_std(self) -> np.ndarray:
        """Prior standard deviation of every entry of ``W`` (shape ``weights_shape``)."""
        var = _field.prior_variances(
            self.input_dim, self.basis_degree, self.variance_scale, self.decay_rate
        )
        return np.broadcast_to(np.sqrt(var)[..., None, None], self.weights_shape)

    def prior(self) -> dist.Distribution:
        """The Wishart-process prior of ``W`` as one NumPyro distribution."""
        scale = jnp.asarray(self.prior_std(), dtype=jnp.result_type(float))
        return dist.Normal(jnp.zeros_like(scale), scale).to_event(len(self.weights_shape))

    def sample_prior(self, key: PRNGKey) -> Params:
        """Draw ``{"W": W}`` from the prior."""
        return {SITE_W: self.prior().sample(key)}

    def log_prior(self, params: Params) -> Array:
        """Log prior density of ``params["W"]`` (a scalar)."""
        return self.prior().log_prob(self._weights(params))

    # -- field and likelihood ---------------------------------------------------
    def covariance(self, params: Params, x: ArrayLike) -> Array:
        """``Sigma(x)`` for stimuli ``x`` of shape ``(..., D)``; returns ``(..., D, D)``."""
        if is_concrete(x):
            arr = np.asarray(x)
            check_stimuli("x", arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr, self.input_dim)
        return _field.covariance(self._weights(params), x, self.diag_term)

    def logits(
        self,
        params: Params,
        refs: ArrayLike,
        comparisons: ArrayLike,
        key: PRNGKey | None = None,
    ) -> Array:
        """Logits ``log p - log(1 - p)`` of P(correct) for each trial, shape ``(N,)``.

        Args:
            params: ``{"W": W}``.
            refs: Reference stimuli, shape ``(N, D)`` in ``[-1, 1]``.
            comparisons: Comparison stimuli, shape ``(N, D)`` in ``[-1, 1]``.
            key: Monte Carlo key; required unless the task is deterministic.
        """
        if is_concrete(refs) and is_concrete(comparisons):
            r = check_stimuli("refs", refs, self.input_dim)
            c = check_stimuli("comparisons", comparisons, self.input_dim)
            if r.shape != c.shape:
                raise ValueError(
                    f"comparisons must have the same shape as refs {r.shape}, got {c.shape}"
                )
        W = self._weights(params)
        args = (W, jnp.asarray(refs, W.dtype), jnp.asarray(comparisons, W.dtype), key)
        if all(is_concrete(a) for a in args):
            return _logits_jit(self, *args)  # an eager call: compile once, reuse
        return _logits(self, *args)  # traced: part of the caller's program

    def prob_correct(
        self,
        params: Params,
        refs: ArrayLike,
        comparisons: ArrayLike,
        key: PRNGKey | None = None,
    ) -> Array:
        """P(correct) of each trial, shape ``(N,)``; arguments as :meth:`logits`."""
        return jax.nn.sigmoid(self.logits(params, refs, comparisons, key))

    def log_likelihood(
        self,
        params: Params,
        refs: ArrayLike,
        comparisons: ArrayLike,
        responses: ArrayLike,
        key: PRNGKey | None = None,
    ) -> Array:
        """Pointwise Bernoulli log-likelihood of the responses, shape ``(N,)``.

        Computed from the logits (exact at both ends of the probability range)
        by the same distribution as the model's ``"y"`` site.
        """
        z = self.logits(params, refs, comparisons, key)
        return dist.Bernoulli(logits=z).log_prob(jnp.asarray(responses, z.dtype))

    # -- the probabilistic program ------------------------------------------------
    def numpyro_model(
        self,
        refs: ArrayLike,
        comparisons: ArrayLike,
        responses: ArrayLike | None = None,
        key: PRNGKey | None = None,
    ) -> None:
        """The WPPM as a NumPyro model function.

        Sites: ``"W"`` (latent, Wishart-process prior) and ``"y"`` (Bernoulli
        responses with ``logits = logit P(correct)``, observed when ``responses`` is
        given) inside a plate ``"trials"``.

        Args:
            refs: Reference stimuli, shape ``(N, D)``.
            comparisons: Comparison stimuli, shape ``(N, D)``.
            responses: Observed responses in {0, 1}, shape ``(N,)``, or None to
                sample them.
            key: Monte Carlo key for a fresh-noise task; if None, one is drawn
                from NumPyro's ``prng_key()`` (e.g. under ``handlers.seed``).
        """
        W = numpyro.sample(SITE_W, self.prior())
        if self.task.needs_key and key is None:
            key = numpyro.prng_key()
        z = self.logits({SITE_W: W}, refs, comparisons, key)
        with numpyro.plate("trials", z.shape[0]):
            numpyro.sample(SITE_Y, dist.Bernoulli(logits=z), obs=responses)

    # -- helpers ------------------------------------------------------------------
    def _weights(self, params: Params) -> Array:
        if not isinstance(params, dict) or SITE_W not in params:
            raise ValueError(f"params must be a dict with key {SITE_W!r}, got {type(params)}")
        W = jnp.asarray(params[SITE_W])
        if W.shape != self.weights_shape:
            raise ValueError(
                f"params['W'] must have shape {self.weights_shape} for this model, got {W.shape}"
            )
        return W


def _logits(model: WPPM, W: Array, refs: Array, comparisons: Array, key: PRNGKey | None) -> Array:
    """The core of :meth:`WPPM.logits` (inputs already validated)."""
    S = _field.covariance(W, jnp.stack([refs, comparisons]), model.diag_term)
    return model.task.logits(S[0], S[1], refs - comparisons, key)


_logits_jit = jit(_logits, static_argnums=0)
