"""MAP fits and curvature on padded, masked trials, compiled once per model structure.

:func:`~psyphy_pp.select_hyperparameters` refits the MAP for every fold and
setting, and :class:`~psyphy_pp.Experiment` refits it as trials arrive. Both
pad their trials to a few fixed sizes (:func:`padded_trials`) and mask the
padding out, and pass the prior's standard deviations as an argument, so that
one compiled program serves every fold, setting and data size of a bucket.

The fit works in whitened weights ``Z = W / std``: the prior is a standard
normal there and L-BFGS sees no spread of scales (``std`` spans a factor 600 at
``decay_rate`` 0.2, degree 4). The MAP is the same point as
:func:`~psyphy_pp.fit_map`'s.
"""

from __future__ import annotations

__all__ = ["padded_trials", "prior_std", "structure", "programs",
           "whitened_gauss_newton", "gauss_newton_factor", "logit_jacobian", "logit_slopes"]

import dataclasses
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp import defaults
from psyphy_pp._jit import jit
from psyphy_pp._padding import padded_index
from psyphy_pp.laplace import gauge_directions, off_gauge_eigh
from psyphy_pp.model import SITE_W, WPPM
from psyphy_pp.optim import init_state, optimizer_step

#: Jacobian rows (weights) evaluated together by :func:`logit_jacobian`.
JACOBIAN_BATCH = 16

#: Trials per compiled call of :func:`logit_jacobian`.
TRIAL_CHUNK = 512


def padded_trials(trials: list[np.ndarray], keep: np.ndarray, size: int, dtype: Any) -> tuple:
    """``(refs, comps, y, mask)`` of the kept trials, padded to ``size`` (at least
    their number) the project's one way (:func:`psyphy_pp._padding.padded_index`),
    with ``mask`` leaving the padding out."""
    kept = np.flatnonzero(keep)
    index = kept[padded_index(len(kept), size)]
    mask = np.arange(size) < len(kept)
    return (*(jnp.asarray(a[index], dtype) for a in trials), jnp.asarray(mask))


def prior_std(model: WPPM, dtype: Any) -> jax.Array:
    """The prior standard deviation of every weight, shape ``model.weights_shape``."""
    return jnp.asarray(model.prior_std(), dtype)


def structure(model: WPPM) -> WPPM:
    """``model`` with its prior hyperparameters at fixed values: the part of the
    model a compiled program depends on (the prior enters as an argument)."""
    return dataclasses.replace(model, variance_scale=1.0, decay_rate=1.0)


def _masked_loglik(model: WPPM, W, refs, comps, y, mask):
    loglik = model.log_likelihood({SITE_W: W}, refs, comps, y, devices=None)
    return jnp.sum(jnp.where(mask, loglik, 0.0))


@lru_cache(maxsize=4)
def programs(model: WPPM) -> tuple[Any, Any]:
    """``(solve, score)`` for a model :func:`structure`, compiled once per shape.

    ``solve(W0, std, refs, comps, y, mask, num_steps, tol) -> (W, steps, converged)``
    is :func:`~psyphy_pp.fit_map`'s MAP on the masked trials: the per-trial mean
    negative log posterior, L-BFGS on whitened weights, stopped by fit_map's rule
    (no weight moved by more than ``tol`` relative to the largest weight or prior
    standard deviation over the last 10 steps). ``score(W, refs, comps, y,
    mask)`` is the mean log-likelihood per unmasked trial.
    """
    optimizer = defaults.make_optimizer("lbfgs")
    window = defaults.CONVERGENCE_WINDOW["lbfgs"]

    def solve(W0, std, refs, comps, y, mask, num_steps, tol):
        n = jnp.sum(mask)

        def loss(Z):
            return (0.5 * jnp.sum(Z**2)
                    - _masked_loglik(model, Z * std, refs, comps, y, mask)) / n

        def cond(carry):
            return (carry[2] < num_steps) & ~carry[4]

        def body(carry):
            Z, opt_state, t, history, _ = carry
            Z, opt_state, _ = optimizer_step(loss, Z, opt_state, optimizer)
            old = history[t % window]  # Z of step t + 1 - window
            # fit_map's rule, on W: relative to the largest weight or prior std
            change = jnp.max(jnp.abs(Z - old) * std) / jnp.maximum(
                jnp.max(jnp.abs(Z) * std), jnp.max(std))
            done = (t + 1 >= window) & (change <= tol)
            return Z, opt_state, t + 1, history.at[t % window].set(Z), done

        Z0 = W0 / std
        history = jnp.broadcast_to(Z0, (window,) + Z0.shape)
        carry = (Z0, init_state(optimizer, Z0), jnp.asarray(0), history, jnp.asarray(False))
        Z, _, t, _, done = jax.lax.while_loop(cond, body, carry)
        return Z * std, t, done

    def score(W, refs, comps, y, mask):
        return _masked_loglik(model, W, refs, comps, y, mask) / jnp.sum(mask)

    return jit(solve), jit(score)


@lru_cache(maxsize=4)
def _jacobian_program(model: WPPM) -> Any:
    def jacobian_rows(z, vs, std, refs, comps, mask):
        def logits(z):
            return model.logits({SITE_W: z.reshape(std.shape) * std}, refs, comps, devices=None)

        zz, jvp = jax.linearize(logits, z)
        fisher = jnp.where(mask, jax.nn.sigmoid(zz) * jax.nn.sigmoid(-zz), 0.0)
        return jax.vmap(jvp)(vs), fisher

    return jit(jacobian_rows)


def whitened_gauss_newton(model: WPPM, W: jax.Array, std: jax.Array, arrays: tuple
                          ) -> np.ndarray:
    """The Gauss-Newton (Fisher) Hessian, in ``Z = W / std``, of the masked negative
    log posterior: ``I + J^T diag(p (1 - p)) J`` with ``J`` the Jacobian of the
    trials' logits.

    It leaves out the second derivatives of the logits, so it is positive
    definite everywhere (not only at a minimum), and it costs forward-mode
    Jacobian rows instead of Hessian-vector products (measured on 2,000 trials,
    degree 4: 0.38 s against 1.25 s, compilation 4.4 s against 14.7 s).

    Args:
        model: A model :func:`structure` (its task deterministic).
        W: The point, shape ``model.weights_shape``.
        std: The prior standard deviations (:func:`prior_std`).
        arrays: ``(refs, comps, y, mask)`` from :func:`padded_trials`.

    Returns:
        The symmetric ``(n, n)`` matrix in float64, ``n = W.size``.
    """
    J, fisher = logit_jacobian(model, W, std, arrays[0], arrays[1], arrays[3])
    G = (J * fisher) @ J.T
    n = J.shape[0]
    return np.eye(n) + 0.5 * (G + G.T)


def gauss_newton_factor(model: WPPM, W: jax.Array, std: jax.Array, arrays: tuple) -> np.ndarray:
    """``L`` with ``L L^T`` the Gauss-Newton Laplace covariance of ``Z = W / std``.

    The inverse of :func:`whitened_gauss_newton` on the complement of the
    rotation gauge, zero along it (as :func:`~psyphy_pp.fit_laplace` does with the
    exact Hessian). Arguments as :func:`whitened_gauss_newton`; returns
    ``(n, n - g)`` in float64.
    """
    H = whitened_gauss_newton(model, W, std, arrays)
    B, lam, V = off_gauge_eigh(H, gauge_directions(np.asarray(W / std, np.float64)))
    return B @ (V / np.sqrt(lam))


def logit_jacobian(model: WPPM, W: jax.Array, std: jax.Array, refs: Any, comps: Any,
                   mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian of the trials' logits in whitened weights, and their Fisher weights.

    The trials are taken :data:`TRIAL_CHUNK` at a time (the last chunk padded),
    so that one compiled program serves every number of trials.

    Args:
        model: A model :func:`structure`.
        W: The point, shape ``model.weights_shape``.
        std: The prior standard deviations (:func:`prior_std`).
        refs, comps: The trials, shape ``(N, D)``.
        mask: Trials to count, shape ``(N,)``.

    Returns:
        ``(J, fisher)``: ``J[i, t] = d logit_t / d Z_i``, shape ``(n, N)``, and
        ``p (1 - p)`` of each trial (0 where masked), shape ``(N,)``, float64.
    """
    rows_of = _jacobian_program(model)
    z = jnp.reshape(W / std, -1)
    n, dtype = z.size, z.dtype
    eye = np.eye(n, dtype=np.dtype(dtype))
    tangents = [eye[i:i + JACOBIAN_BATCH] for i in range(0, n, JACOBIAN_BATCH)]
    tangents[-1] = np.concatenate(  # one compiled shape: pad the last batch
        [tangents[-1], np.zeros((JACOBIAN_BATCH - len(tangents[-1]), n), eye.dtype)])
    refs, comps, mask = np.asarray(refs), np.asarray(comps), np.asarray(mask, bool)
    N = len(refs)
    index = padded_index(N, -(-N // TRIAL_CHUNK) * TRIAL_CHUNK)
    keep = np.arange(len(index)) < N
    cols, weights = [], []
    for start in range(0, len(index), TRIAL_CHUNK):
        i = index[start:start + TRIAL_CHUNK]
        r, c = jnp.asarray(refs[i], dtype), jnp.asarray(comps[i], dtype)
        m = jnp.asarray(mask[i] & keep[start:start + TRIAL_CHUNK])
        rows = []
        for vs in tangents:
            J, fisher = rows_of(z, jnp.asarray(vs), std, r, c, m)
            rows.append(np.asarray(J, np.float64))
        cols.append(np.concatenate(rows)[:n])
        weights.append(np.asarray(fisher, np.float64))
    return np.concatenate(cols, axis=1)[:, :N], np.concatenate(weights)[:N]


@lru_cache(maxsize=4)
def _slope_program(model: WPPM) -> Any:
    def slopes(W, refs, comps, dirs):
        def logits(c):
            return model.logits({SITE_W: W}, refs, c, devices=None)

        return jax.jvp(logits, (comps,), (dirs,))[1]

    return jit(slopes)


def logit_slopes(model: WPPM, W: jax.Array, refs: Any, comps: Any, dirs: Any) -> np.ndarray:
    """``d logit / d s`` of each trial as its comparison moves along ``dirs`` (``(N,)``),
    :data:`TRIAL_CHUNK` trials per compiled call."""
    N = len(refs)
    index = padded_index(N, -(-N // TRIAL_CHUNK) * TRIAL_CHUNK)
    out = [np.asarray(_slope_program(model)(W, *(jnp.asarray(np.asarray(a)[i], W.dtype)
                                                  for a in (refs, comps, dirs))), np.float64)
           for i in (index[k:k + TRIAL_CHUNK] for k in range(0, len(index), TRIAL_CHUNK))]
    return np.concatenate(out)[:N]
