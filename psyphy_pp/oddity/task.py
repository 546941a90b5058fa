"""``Oddity``: the one constructor of the oddity-task likelihood settings.

A trial shows the reference ``r`` twice and the comparison ``c`` once; the
observer picks the stimulus farthest from the other two. ``Oddity`` chooses how
P(correct) is computed (:mod:`psyphy_pp.oddity`): ``method="quadrature"``
(deterministic, :class:`~psyphy_pp.oddity.quadrature.Quadrature` settings) or
``method="mc"`` (smoothed Monte Carlo,
:class:`~psyphy_pp.oddity.montecarlo.MonteCarlo` settings), or ``"auto"``, which
a :class:`~psyphy_pp.WPPM` resolves for its dimension. It evaluates the trials
block by block, so that memory is bounded by a block, and clips the logits to
``[-MAX_LOGIT, MAX_LOGIT]``.

It also holds the observer's lapse rate (``lapse_rate``, ``lapse_prior``;
:mod:`psyphy_pp.oddity.lapse`): fixed, or learnt by the fits. The estimators
compute the perceptual P(correct); :class:`~psyphy_pp.WPPM` applies the lapse
on top of them.
"""

from __future__ import annotations

__all__ = ["Oddity", "METHODS"]

import dataclasses
import numbers
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp import defaults
from psyphy_pp._padding import padded_index
from psyphy_pp._typing import Array, PRNGKey
from psyphy_pp._validation import check_choice, check_positive
from psyphy_pp.oddity.bounds import MAX_LOGIT
from psyphy_pp.oddity.lapse import DEFAULT_LAPSE_PRIOR
from psyphy_pp.oddity.montecarlo import MonteCarlo
from psyphy_pp.oddity.quadrature import Quadrature

#: The values of ``method``.
METHODS = ("auto", "quadrature", "mc")
_RECORDS = {"quadrature": Quadrature, "mc": MonteCarlo}
_FIELDS = {m: tuple(f.name for f in dataclasses.fields(r)) for m, r in _RECORDS.items()}
#: The value of ``lapse_rate`` that makes the fits learn it.
_LEARN = "learn"
_LAPSE_FIELDS = ("lapse_rate", "lapse_prior")


@dataclass(frozen=True)
class Oddity:
    """Settings of the oddity-task likelihood.

    One flat constructor in front of one settings record per method:
    :class:`~psyphy_pp.oddity.quadrature.Quadrature` (``quadrature_rule``,
    ``num_angles``, ``num_radial``, ``num_hermite``, ``polar_nodes``) and
    :class:`~psyphy_pp.oddity.montecarlo.MonteCarlo` (``num_samples``,
    ``bandwidth``, ``fixed_noise``, ``noise_seed``, ``generator``), whose
    docstrings describe each setting. :attr:`settings` is the record of the
    task's method; the repr shows that record's settings.

    Args:
        method: ``"auto"`` (default: ``"quadrature"`` where it exists, ``input_dim``
            2 or 3, else ``"mc"``; see :func:`psyphy_pp.defaults.likelihood_method`),
            ``"quadrature"`` or ``"mc"``. A :class:`~psyphy_pp.WPPM` resolves
            ``"auto"`` for its ``input_dim`` (:meth:`resolve`). Settings that only
            the other method reads must keep their defaults: ``Oddity(num_samples=100)``
            in 2D is an error that asks for ``method="mc"``.
        num_samples: Monte Carlo samples per trial.
        bandwidth: Logistic smoothing width of the Monte Carlo decision.
        fixed_noise: Monte Carlo with the same noise at every evaluation
            (deterministic, with a small fixed bias).
        noise_seed: Seed of the fixed noise.
        generator: ``"hash"`` (default) or ``"threefry"`` Monte Carlo noise.
        num_angles: 2D quadrature: Gauss-Legendre nodes over the half circle.
        quadrature_rule: ``"semianalytic"`` (default) or ``"gauss-hermite"`` (2D only).
        num_radial: 2D semi-analytic rule: nodes of the inner integral.
        num_hermite: 2D Gauss-Hermite rule: nodes per dimension of ``v'``.
        polar_nodes: 3D quadrature: node counts of the polar rule.
        chunk_size: Trials evaluated at once. Larger data sets are evaluated
            block by block (``jax.lax.map``), so memory is bounded by the block,
            not by ``N``. None picks blocks of about ``2**16`` trial-sample
            evaluations (Monte Carlo) or ``2**20`` trial-node evaluations
            (quadrature, rematerialised in the backward pass).
        lapse_rate: The observer's lapse rate ``lambda``: on a fraction
            ``lambda`` of the trials they answer at random, so
            ``P(correct) = lambda / 3 + (1 - lambda) P_model``
            (:mod:`psyphy_pp.oddity.lapse`). A number in ``[0, 1)`` fixes it
            (default 0: no lapse term); ``"learn"`` makes ``lambda`` a
            parameter (the sample site :data:`psyphy_pp.model.SITE_LAPSE`) that
            :func:`~psyphy_pp.fit_map` and :func:`~psyphy_pp.fit_nuts` learn with
            ``W``. Thresholds and ellipses describe ``P_model`` and do not
            include the lapse.
        lapse_prior: ``(a, b)`` of the Beta prior of a learnt lapse rate;
            default ``(2, 38)`` (mean 0.05, mode about 0.026). Only with
            ``lapse_rate="learn"``.

    Examples:
        >>> Oddity()
        Oddity(method='auto')
        >>> Oddity().resolve(2)
        Oddity(method='quadrature', quadrature_rule='semianalytic', num_angles=8, num_radial=4, polar_nodes=(4, 4, 2, 4, 3))
        >>> Oddity(method="mc")
        Oddity(method='mc', num_samples=500, bandwidth=0.01, fixed_noise=False, noise_seed=0, generator='hash')
        >>> Oddity(method="mc", num_samples=100).settings
        MonteCarlo(num_samples=100, bandwidth=0.01, fixed_noise=False, noise_seed=0, generator='hash')
        >>> Oddity(lapse_rate=0.02)
        Oddity(method='auto', lapse_rate=0.02)
        >>> Oddity(lapse_rate="learn", lapse_prior=(1, 19)).learns_lapse
        True
    """

    method: str = "auto"
    num_samples: int = 500
    bandwidth: float = 1e-2
    fixed_noise: bool = False
    noise_seed: int = 0
    generator: str = "hash"
    num_angles: int = defaults.QUADRATURE_ANGLES
    quadrature_rule: str = "semianalytic"
    num_radial: int = defaults.QUADRATURE_RADIAL
    num_hermite: int = 6
    polar_nodes: tuple[int, int, int, int, int] = defaults.POLAR_NODES
    chunk_size: int | None = None
    lapse_rate: float | str = 0.0
    lapse_prior: tuple[float, float] = DEFAULT_LAPSE_PRIOR

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        self._record("mc")  # each record checks its own settings
        quadrature = self._record("quadrature")
        object.__setattr__(self, "polar_nodes", quadrature.polar_nodes)  # a tuple, e.g. from JSON
        if self.chunk_size is not None:
            check_positive("chunk_size", self.chunk_size, integer=True)
        self._check_lapse()

    def _check_lapse(self) -> None:
        lam = self.lapse_rate
        if lam != _LEARN:
            if (isinstance(lam, bool) or not isinstance(lam, numbers.Real)
                    or not 0.0 <= float(lam) < 1.0):
                raise ValueError(
                    f"lapse_rate must be a number in [0, 1) or {_LEARN!r}, got {lam!r}")
            object.__setattr__(self, "lapse_rate", float(lam))
        prior = self.lapse_prior
        if (not isinstance(prior, (tuple, list)) or len(prior) != 2
                or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                       or not np.isfinite(v) or v <= 0 for v in prior)):
            raise ValueError(
                f"lapse_prior must be a pair (a, b) of positive numbers, the parameters of "
                f"a Beta prior, got {prior!r}")
        prior = (float(prior[0]), float(prior[1]))  # a tuple, e.g. from JSON
        object.__setattr__(self, "lapse_prior", prior)
        if prior != DEFAULT_LAPSE_PRIOR and self.lapse_rate != _LEARN:
            raise ValueError(
                f"lapse_prior only applies to lapse_rate={_LEARN!r}, got lapse_prior={prior!r} "
                f"with lapse_rate={self.lapse_rate!r}; pass lapse_rate={_LEARN!r} to learn "
                "the lapse rate, or drop lapse_prior")

    @property
    def learns_lapse(self) -> bool:
        """True when the lapse rate is a parameter to learn (``lapse_rate="learn"``)."""
        return self.lapse_rate == _LEARN

    @property
    def has_lapse(self) -> bool:
        """True when P(correct) has a lapse term (a learnt or a non-zero fixed rate)."""
        return self.lapse_rate != 0.0

    def without_lapse(self) -> Oddity:
        """These settings with no lapse term: the perceptual P(correct) alone.

        Examples:
            >>> Oddity(lapse_rate="learn").without_lapse()
            Oddity(method='auto')
        """
        if not self.has_lapse and self.lapse_prior == DEFAULT_LAPSE_PRIOR:
            return self
        return dataclasses.replace(self, lapse_rate=0.0, lapse_prior=DEFAULT_LAPSE_PRIOR)

    def with_lapse_of(self, other: Oddity) -> Oddity:
        """These settings with the lapse settings of ``other``."""
        if all(getattr(self, n) == getattr(other, n) for n in _LAPSE_FIELDS):
            return self
        return dataclasses.replace(self, **{n: getattr(other, n) for n in _LAPSE_FIELDS})

    def _record(self, method: str):  # -> Quadrature | MonteCarlo
        return _RECORDS[method](**{n: getattr(self, n) for n in _FIELDS[method]})

    @property
    def settings(self) -> Quadrature | MonteCarlo:
        """The settings record of this task's method.

        Raises:
            ValueError: For ``method="auto"`` (call :meth:`resolve` first).
        """
        if self.method == "auto":
            raise ValueError(
                "Oddity(method='auto') has no settings record until its method is known; "
                "call task.resolve(input_dim) first (a WPPM's task is already resolved)"
            )
        return self._record(self.method)

    def __repr__(self) -> str:
        if self.method == "auto":
            names = [f.name for f in dataclasses.fields(self)
                     if f.name != "method" and getattr(self, f.name) != f.default]
        else:
            names = list(_FIELDS[self.method])
            if self.method == "quadrature":  # the inner nodes of the other 2D rule
                names.remove("num_hermite" if self.quadrature_rule == "semianalytic"
                             else "num_radial")
            if self.chunk_size is not None:
                names.append("chunk_size")
            defaults_of = {f.name: f.default for f in dataclasses.fields(self)}
            names += [n for n in _LAPSE_FIELDS if getattr(self, n) != defaults_of[n]]
        fields = "".join(f", {n}={getattr(self, n)!r}" for n in names)
        return f"Oddity(method={self.method!r}{fields})"

    def resolve(self, input_dim: int) -> Oddity:
        """These settings with ``method="auto"`` made concrete for ``input_dim``.

        Raises:
            ValueError: When a setting of the other method was changed from its
                default (it would be ignored), or when the method has no rule
                for ``input_dim`` (the quadrature outside 2D and 3D, the
                Gauss-Hermite quadrature rule in 3D).
        """
        task = self
        if self.method == "auto":
            task = dataclasses.replace(self, method=defaults.likelihood_method(input_dim))
        other = "quadrature" if task.method == "mc" else "mc"
        defaults_of = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [n for n in _FIELDS[other] if getattr(task, n) != defaults_of[n]]
        if changed:
            how = (f"method='auto' uses {task.method!r} for input_dim {input_dim}; "
                   if self.method == "auto" else "")
            raise ValueError(
                f"{', '.join(f'{n}={getattr(task, n)!r}' for n in changed)} only applies to "
                f"method={other!r}, but the task's method is {task.method!r} ({how}pass "
                f"method={other!r} to use it, or drop the setting)"
            )
        settings = task.settings
        if isinstance(settings, Quadrature):
            settings.check_input_dim(input_dim)
        return task

    @property
    def deterministic(self) -> bool:
        """True when the likelihood is the same function at every evaluation.

        Raises:
            ValueError: For ``method="auto"``, which depends on ``input_dim``
                (call :meth:`resolve` first; a WPPM's task is resolved).
        """
        if self.method == "auto":
            raise ValueError(
                "Oddity(method='auto') is deterministic or not depending on input_dim; "
                "call task.resolve(input_dim) first (a WPPM's task is already resolved)"
            )
        return self.settings.deterministic

    @property
    def needs_key(self) -> bool:
        """True when each evaluation must be given a fresh PRNG key."""
        return not self.deterministic

    def noise_key(self, key: PRNGKey | None) -> PRNGKey | None:
        """The key the estimator uses: the fixed one, the given one, or None."""
        settings = self.settings
        return settings.noise_key(key) if isinstance(settings, MonteCarlo) else None

    def block_size(self, input_dim: int = 2) -> int:
        """Trials per block (see ``chunk_size``)."""
        if self.method == "auto":
            return self.resolve(input_dim).block_size(input_dim)
        if self.chunk_size is not None:
            return self.chunk_size
        return self.settings.trials_per_block(input_dim)

    def logits(
        self,
        S0: Array,
        S1: Array,
        delta: Array,
        key: PRNGKey | None = None,
        trial_index: Array | None = None,
        *,
        block_size: int | None = None,
    ) -> Array:
        """Logits of P(correct), clipped to ``[-MAX_LOGIT, MAX_LOGIT]``.

        Clipping the logits is clipping P(correct) to ``[PROB_EPS, 1 - PROB_EPS]``.

        Args:
            S0: Covariances at the references, shape ``(N, D, D)``.
            S1: Covariances at the comparisons, shape ``(N, D, D)``.
            delta: ``refs - comparisons``, shape ``(N, D)``.
            key: Monte Carlo key (ignored when the likelihood is deterministic).
                Trial ``n``'s noise is a function of ``key`` and ``n`` only
                (:func:`psyphy_pp.noise.trial_normals`), so it does not depend on
                the batch, block or device it sits in.
            trial_index: The trials' indices ``n``, shape ``(N,)``; default
                ``0 .. N-1``. A shard of a larger data set passes its global
                indices, so that its noise is the same as in one piece.
            block_size: Trials per block for this call (default
                :meth:`block_size`); ``N`` evaluates all trials as one block.

        Returns:
            Array of shape ``(N,)``.
        """
        if self.method == "auto":
            return self.resolve(delta.shape[-1]).logits(
                S0, S1, delta, key, trial_index, block_size=block_size)
        settings = self.settings
        n = delta.shape[0]
        index = jnp.arange(n) if trial_index is None else jnp.asarray(trial_index)
        if isinstance(settings, MonteCarlo):
            mc, mc_key = settings, settings.noise_key(key)
            block_logits = lambda S0, S1, delta, index: mc.logits(S0, S1, delta, index, mc_key)
        else:
            quad = settings
            block_logits = lambda S0, S1, delta, index: quad.logits(S0, S1, delta)

        block = min(n, block_size or self.block_size(delta.shape[-1]))
        if block == n:
            z = block_logits(S0, S1, delta, index)
        else:
            take = jnp.asarray(padded_index(n, block))  # padding is computed and dropped
            blocks = (S0[take], S1[take], delta[take], index[take])
            blocks = jax.tree_util.tree_map(lambda a: a.reshape(-1, block, *a.shape[1:]), blocks)
            fn = lambda b: block_logits(*b)
            if isinstance(settings, Quadrature):
                # Rematerialise each block in the backward pass. (The Monte Carlo
                # estimator needs not: its custom gradient keeps O(1) per trial.)
                fn = jax.checkpoint(fn)
            z = jax.lax.map(fn, blocks).reshape(-1)[:n]
        return jnp.clip(z, -MAX_LOGIT, MAX_LOGIT)
