"""The Wishart Process Psychophysical Model (WPPM) as a NumPyro model.

:class:`WPPM` holds the hyperparameters and the task (likelihood settings) and
offers the model's pure functions (prior, covariance field, P(correct),
log-likelihood). :meth:`WPPM.numpyro_model` is the probabilistic program: the
only place where ``numpyro.sample`` is called. Its sites are named by the
constants :data:`SITE_W` (the weights), :data:`SITE_LAPSE` (the lapse rate,
when the task learns it) and :data:`SITE_Y` (the responses).

Lapses. With a lapse term in the task (``Oddity(lapse_rate=...)``), the
probability of a correct answer is ``lambda / 3 + (1 - lambda) P_model``
(:func:`~psyphy_pp.oddity.lapse.lapse_logits`). :meth:`WPPM.logits`,
:meth:`WPPM.prob_correct`, :meth:`WPPM.log_likelihood` and the model's response
site include it; :meth:`WPPM.covariance`, and so the thresholds and ellipses,
describe the perceptual field ``P_model`` alone.
"""

from __future__ import annotations

__all__ = ["WPPM", "SITE_W", "SITE_LAPSE", "SITE_Y"]

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from psyphy_pp import field as _field
from psyphy_pp import gauge as _gauge
from psyphy_pp._typing import Array, ArrayLike, Params, PRNGKey
from psyphy_pp._validation import check_choice, check_nonnegative, check_positive, check_stimuli, is_concrete
from psyphy_pp.oddity import Oddity
from psyphy_pp.oddity.lapse import lapse_logits
from psyphy_pp.sharding import (
    DevicesLike,
    TrialSharding,
    place_trials,
    run_on_trials,
    trial_sharding,
)

#: Name of the weight sample site (``AutoDelta`` calls its parameter ``W_auto_loc``).
SITE_W = "W"
#: Name of the lapse-rate sample site of a task with ``lapse_rate="learn"``
#: (``AutoDelta`` calls its parameter ``lapse_rate_auto_loc``).
SITE_LAPSE = "lapse_rate"
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
        task: Likelihood settings (:class:`~psyphy_pp.Oddity`). The default,
            ``Oddity()``, is the deterministic quadrature in 2D and 3D and
            smoothed Monte Carlo otherwise; it is stored resolved
            (:meth:`~psyphy_pp.Oddity.resolve`).

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
        # method="auto" becomes the default for this input_dim (psyphy_pp.defaults).
        object.__setattr__(self, "task", self.task.resolve(self.input_dim))

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

    def lapse_prior(self) -> dist.Distribution:
        """The Beta prior of a learnt lapse rate (``task.lapse_prior``)."""
        a, b = self.task.lapse_prior
        dtype = jnp.result_type(float)
        return dist.Beta(jnp.asarray(a, dtype), jnp.asarray(b, dtype))

    def sample_prior(self, key: PRNGKey) -> Params:
        """Draw ``{"W": W}`` from the prior (and ``"lapse_rate"`` when it is learnt).

        ``W`` is drawn with ``key`` itself, the same ``W`` with or without a
        learnt lapse rate, which is drawn with ``fold_in(key, 1)``.
        """
        params = {SITE_W: self.prior().sample(key)}
        if self.task.learns_lapse:
            params[SITE_LAPSE] = self.lapse_prior().sample(jax.random.fold_in(key, 1))
        return params

    def log_prior(self, params: Params) -> Array:
        """Log prior density of ``params["W"]`` (and of a learnt lapse rate), a scalar."""
        lp = self.prior().log_prob(self.weights(params))
        if self.task.learns_lapse:
            lp = lp + self.lapse_prior().log_prob(self.lapse(params))
        return lp

    def lapse(self, params: Params) -> Array | float:
        """The lapse rate ``lambda``: ``params["lapse_rate"]`` if learnt, else the task's.

        Raises:
            ValueError: If the task learns the lapse rate and ``params`` has no
                scalar ``"lapse_rate"`` in ``[0, 1)``.
        """
        lam, sample_shape = self.lapse_samples(params)
        if sample_shape:
            raise ValueError(f"params[{SITE_LAPSE!r}] must be a scalar for this call, got "
                             f"shape {sample_shape}")
        return lam if self.task.learns_lapse else self.task.lapse_rate

    def initial_lapse(self, params: Params | None = None) -> Array:
        """The starting value of a learnt lapse rate for a fit.

        ``params["lapse_rate"]`` when given (it must lie in ``(0, 1)``, where the
        Beta prior's density is positive), else the prior mean ``a / (a + b)``.

        Raises:
            ValueError: If the given value is not a number in ``(0, 1)``.
        """
        dtype = jnp.result_type(float)
        if isinstance(params, dict) and SITE_LAPSE in params:
            lam = np.asarray(params[SITE_LAPSE], np.float64)
            if lam.shape != () or not 0.0 < float(lam) < 1.0:
                raise ValueError(f"init_params[{SITE_LAPSE!r}] must be a number in (0, 1), "
                                 f"got {params[SITE_LAPSE]!r}")
            return jnp.asarray(lam, dtype)
        a, b = self.task.lapse_prior
        return jnp.asarray(a / (a + b), dtype)

    def lapse_samples(self, params: Params) -> tuple[Array, tuple[int, ...]]:
        """``params["lapse_rate"]`` with any leading sample axes, and their shape.

        For a fixed lapse rate: the task's rate as a 0-d array, and ``()``.

        Raises:
            ValueError: If the task learns the lapse rate and ``params`` has no
                ``"lapse_rate"``, or a concrete one outside ``[0, 1)``.
        """
        if not self.task.learns_lapse:
            return jnp.asarray(self.task.lapse_rate), ()
        if not isinstance(params, dict) or SITE_LAPSE not in params:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                f"this model learns the lapse rate (task lapse_rate='learn'), so params "
                f"must have key {SITE_LAPSE!r} besides {SITE_W!r}, got {got}")
        lam = params[SITE_LAPSE]
        if is_concrete(lam):
            arr = np.asarray(lam, np.float64)
            if not np.all((arr >= 0) & (arr < 1)):
                raise ValueError(f"params[{SITE_LAPSE!r}] must lie in [0, 1), got "
                                 f"{arr if arr.size <= 4 else arr.ravel()[:4]}")
        lam = jnp.asarray(lam)
        return lam, tuple(lam.shape)

    # -- field and likelihood ---------------------------------------------------
    def covariance(self, params: Params, x: ArrayLike) -> Array:
        """``Sigma(x)`` for stimuli ``x`` of shape ``(..., D)``; returns ``(..., D, D)``."""
        if is_concrete(x):
            arr = np.asarray(x)
            check_stimuli("x", arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr, self.input_dim)
        return _field.covariance(self.weights(params), x, self.diag_term)

    def logits(
        self,
        params: Params,
        refs: ArrayLike,
        comparisons: ArrayLike,
        key: PRNGKey | None = None,
        *,
        devices: DevicesLike = None,
    ) -> Array:
        """Logits ``log p - log(1 - p)`` of P(correct) for each trial, shape ``(N,)``.

        ``p`` includes the task's lapse term, if any (see the module docstring).

        Args:
            params: ``{"W": W}``, with ``"lapse_rate"`` when the task learns it.
            refs: Reference stimuli, shape ``(N, D)`` in ``[-1, 1]``.
            comparisons: Comparison stimuli, shape ``(N, D)`` in ``[-1, 1]``.
            key: Monte Carlo key; required unless the task is deterministic.
            devices: Shard the trials over these devices (see
                :func:`~psyphy_pp.sharding.trial_sharding`). On concrete inputs,
                None means every local device when there is more than one; the
                trials are padded, sharded and the result cut back to ``N``.
                Inside a transformation (``jit``, ``grad``), None means no
                sharding, and with ``devices`` given ``N`` must already be a
                multiple of the device count (use
                :func:`~psyphy_pp.sharding.place_trials`).

        Raises:
            ValueError: For stimuli of the wrong shape or outside ``[-1, 1]``,
                or an invalid ``devices``.
        """
        concrete = is_concrete(refs) and is_concrete(comparisons)
        if concrete:
            r = check_stimuli("refs", refs, self.input_dim)
            c = check_stimuli("comparisons", comparisons, self.input_dim)
            if r.shape != c.shape:
                raise ValueError(
                    f"comparisons must have the same shape as refs {r.shape}, got {c.shape}"
                )
        W = self.weights(params)
        concrete = concrete and is_concrete(W) and is_concrete(key)
        if devices is None and concrete:
            devices = jax.local_devices()
        sharding = None if devices is None else trial_sharding(devices)
        if sharding is not None and concrete:
            placed = place_trials(sharding, r, c, dtype=W.dtype)
            z = self._placed_logits(sharding.replicate(W), placed.refs, placed.comparisons,
                                    key, sharding)
            return self._lapsed(z[: placed.num_trials], params)
        return self._lapsed(self._placed_logits(
            W, jnp.asarray(refs, W.dtype), jnp.asarray(comparisons, W.dtype), key, sharding),
            params)

    def prob_correct(
        self,
        params: Params,
        refs: ArrayLike,
        comparisons: ArrayLike,
        key: PRNGKey | None = None,
        *,
        devices: DevicesLike = None,
    ) -> Array:
        """P(correct) of each trial, shape ``(N,)``; arguments as :meth:`logits`.

        Examples:
            >>> import jax
            >>> model = WPPM(basis_degree=1, task=Oddity(method="quadrature"))
            >>> params = model.sample_prior(jax.random.PRNGKey(0))
            >>> p = model.prob_correct(params, [[0.0, 0.0]], [[0.0, 0.0]], devices=1)
            >>> round(float(p[0]), 3)
            0.333
        """
        return jax.nn.sigmoid(self.logits(params, refs, comparisons, key, devices=devices))

    def log_likelihood(
        self,
        params: Params,
        refs: ArrayLike,
        comparisons: ArrayLike,
        responses: ArrayLike,
        key: PRNGKey | None = None,
        *,
        devices: DevicesLike = None,
    ) -> Array:
        """Pointwise Bernoulli log-likelihood of the responses, shape ``(N,)``.

        Computed from the logits (exact at both ends of the probability range)
        by the same distribution as the model's ``"y"`` site; ``devices`` as in
        :meth:`logits`.
        """
        z = self.logits(params, refs, comparisons, key, devices=devices)
        return dist.Bernoulli(logits=z).log_prob(jnp.asarray(responses, z.dtype))

    # -- the probabilistic program ------------------------------------------------
    def numpyro_model(
        self,
        refs: ArrayLike,
        comparisons: ArrayLike,
        responses: ArrayLike | None = None,
        key: PRNGKey | None = None,
        *,
        mask: ArrayLike | None = None,
        devices: DevicesLike = None,
        gauge: str = "free",
    ) -> None:
        """The WPPM as a NumPyro model function.

        Sites: ``"W"`` (latent, Wishart-process prior; deterministic, with the
        latent sites of :mod:`psyphy_pp.gauge`, when ``gauge="fixed"``), ``"lapse_rate"`` (latent,
        Beta prior ``task.lapse_prior``; only when the task learns the lapse
        rate) and ``"y"`` (Bernoulli responses with ``logits = logit P(correct)``,
        lapse included, observed when ``responses`` is given) inside a plate
        ``"trials"``.

        Args:
            refs: Reference stimuli, shape ``(N, D)``.
            comparisons: Comparison stimuli, shape ``(N, D)``.
            responses: Observed responses in {0, 1}, shape ``(N,)``, or None to
                sample them.
            key: Monte Carlo key for a fresh-noise task; if None, one is drawn
                from NumPyro's ``prng_key()`` (e.g. under ``handlers.seed``).
            mask: Boolean ``(N,)``: False marks padding trials, whose
                log-likelihood is exactly zero. None: every trial counts.
            devices: Shard the trials over these devices; the arrays must be
                placed already (:func:`~psyphy_pp.sharding.place_trials`), with
                ``N`` a multiple of the device count. None: no sharding.
            gauge: ``"free"`` samples ``"W"`` itself; ``"fixed"`` samples the
                coordinates of :mod:`psyphy_pp.gauge` (the rotation symmetry
                removed, the same posterior of ``Sigma``) and records ``"W"`` as
                a deterministic site.
        """
        check_choice("gauge", gauge, _gauge.GAUGES)
        if gauge == "fixed":
            coords = {name: numpyro.sample(name, prior)
                      for name, prior in _gauge.coords_priors(self).items()}
            W = numpyro.deterministic(SITE_W, _gauge.weights_from_coords(self, coords))
        else:
            W = numpyro.sample(SITE_W, self.prior())
        params = {SITE_W: W}
        if self.task.learns_lapse:
            params[SITE_LAPSE] = numpyro.sample(SITE_LAPSE, self.lapse_prior())
        if self.task.needs_key and key is None:
            key = numpyro.prng_key()
        sharding = None if devices is None else trial_sharding(devices)
        if sharding is None:
            z = self.logits(params, refs, comparisons, key)
        else:
            z = self._lapsed(self._placed_logits(W, refs, comparisons, key, sharding), params)
        lik = dist.Bernoulli(logits=z)
        if mask is not None:
            lik = lik.mask(mask)
        with numpyro.plate("trials", z.shape[0]):
            numpyro.sample(SITE_Y, lik, obs=responses)

    # -- helpers ------------------------------------------------------------------
    def _lapsed(self, z: Array, params: Params) -> Array:
        """The perceptual logits ``z`` with the task's lapse term (``z`` itself without one)."""
        if not self.task.has_lapse:
            return z
        return lapse_logits(z, self.lapse(params))

    def _placed_logits(
        self, W: Array, refs: Array, comparisons: Array, key: PRNGKey | None,
        sharding: TrialSharding | None,
    ) -> Array:
        """Logits of validated trial arrays, already padded and placed for ``sharding``."""
        return run_on_trials(
            self._trial_logits, sharding, W, refs, comparisons, self.task.noise_key(key),
            block_size=self.task.block_size(self.input_dim),
            fixed_block=self.task.chunk_size is not None,
        )

    def _trial_logits(
        self, W: Array, refs: Array, comparisons: Array, key: PRNGKey | None,
        trial_index: Array | None = None, block_size: int | None = None,
    ) -> Array:
        """The core of :meth:`logits`: the field at both stimuli, then the task."""
        S = _field.covariance(W, jnp.stack([refs, comparisons]), self.diag_term)
        return self.task.logits(S[0], S[1], refs - comparisons, key, trial_index,
                                block_size=block_size)

    def weights(self, params: Params) -> Array:
        """``params["W"]`` as an array, after checking it has :attr:`weights_shape`.

        Raises:
            ValueError: If ``params`` is not a dict with key ``"W"`` of this shape.
        """
        W, sample_shape = self.weight_samples(params)
        if sample_shape:
            raise ValueError(
                f"params['W'] must have shape {self.weights_shape} for this model, got {W.shape}"
            )
        return jnp.asarray(W)

    def weight_samples(self, params: Params) -> tuple[Array, tuple[int, ...]]:
        """``params["W"]`` with any leading sample axes, and the shape of those axes.

        Posterior draws have shape ``(*sample_shape, *weights_shape)``, for example
        ``(chains, draws, ...)``; a point estimate has ``sample_shape == ()``.

        Raises:
            ValueError: If ``params`` is not a dict with key ``"W"`` whose shape
                ends with :attr:`weights_shape`.
        """
        if not isinstance(params, dict) or SITE_W not in params:
            raise ValueError(f"params must be a dict with key {SITE_W!r}, got {type(params).__name__}")
        W = params[SITE_W]
        W = W if isinstance(W, (jax.Array, np.ndarray)) else np.asarray(W)
        ws = self.weights_shape
        if W.ndim < len(ws) or tuple(W.shape[W.ndim - len(ws):]) != ws:
            raise ValueError(
                f"params['W'] must have shape {ws} for this model (or (*sample_shape, "
                f"{', '.join(map(str, ws))}) for draws), got {tuple(W.shape)}"
            )
        return W, tuple(W.shape[: W.ndim - len(ws)])
