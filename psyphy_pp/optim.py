"""Optimiser plumbing shared by both MAP loops.

* :func:`optimizer_step` is one step of any optax transformation on a loss
  function of the parameters. It passes optax's extra arguments (``value``,
  ``grad``, ``value_fn``), so line-search methods such as ``optax.lbfgs`` work,
  and reuses the value and gradient a line search stored in the state.
* :class:`OptaxWithValueFn` runs :func:`optimizer_step` inside NumPyro's
  ``SVI.update``. (NumPyro's own ``optax_to_numpyro`` passes ``value`` but not
  ``value_fn``, which a line search needs.)
* :class:`Convergence` is the stopping rule of :func:`~psyphy_pp.fit_map` and
  :func:`~psyphy_pp.fit_map_scratch`.
"""

from __future__ import annotations

__all__ = ["optimizer_step", "init_state", "OptaxWithValueFn", "Convergence"]

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.optim import _NumPyroOptim

from psyphy_pp._typing import Array


def init_state(optimizer: optax.GradientTransformation, params: Any) -> Any:
    """``optimizer.init(params)`` with strong dtypes.

    Some states start with weakly typed scalars that come back strongly typed
    from the first update; the second step would then compile again.
    """
    state = optimizer.init(params)
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), state)


def _stored_value(opt_state: Any) -> bool:
    """True when the state holds a line search's value and gradient."""
    try:
        value = optax.tree_utils.tree_get(opt_state, "value")
        grad = optax.tree_utils.tree_get(opt_state, "grad")
    except (KeyError, ValueError):  # absent, or more than one
        return False
    return value is not None and grad is not None


def optimizer_step(
    value_fn: Callable[[Any], Array],
    params: Any,
    opt_state: Any,
    optimizer: optax.GradientTransformation,
) -> tuple[Any, Any, Array]:
    """One optimiser step on ``value_fn``: ``(params, opt_state, value at the old params)``.

    Args:
        value_fn: The scalar loss as a function of the parameters.
        params: The current parameters.
        opt_state: The optimiser's state (:func:`init_state`).
        optimizer: Any optax transformation; line searches get ``value_fn``.
    """
    if _stored_value(opt_state):  # a line search evaluated these params already
        value, grads = optax.value_and_grad_from_state(value_fn)(params, state=opt_state)
    else:
        value, grads = jax.value_and_grad(value_fn)(params)
    updates, opt_state = optax.with_extra_args_support(optimizer).update(
        grads, opt_state, params, value=value, grad=grads, value_fn=value_fn
    )
    return optax.apply_updates(params, updates), opt_state, value


class OptaxWithValueFn(_NumPyroOptim):
    """An optax transformation as a NumPyro optimiser, line searches included.

    ``SVI(model, guide, OptaxWithValueFn(optax.lbfgs()), Trace_ELBO())`` runs
    L-BFGS on the ELBO; with an ``AutoDelta`` guide that is MAP estimation.
    """

    def __init__(self, optimizer: optax.GradientTransformation) -> None:
        self.optimizer = optimizer
        self.update_with_value = True

    def init(self, params: Any) -> tuple[Array, tuple[Any, Any]]:
        return jnp.array(0), (params, init_state(self.optimizer, params))

    def get_params(self, state: tuple[Array, tuple[Any, Any]]) -> Any:
        return state[1][0]

    def eval_and_update(
        self, fn: Callable[[Any], tuple], state: Any, forward_mode_differentiation: bool = False
    ) -> tuple[tuple[Array, Any], Any]:
        i, (params, opt_state) = state
        params, opt_state, value = optimizer_step(
            lambda p: fn(p)[0], params, opt_state, self.optimizer
        )
        return (value, None), (i + 1, (params, opt_state))

    def eval_and_stable_update(
        self, fn: Callable[[Any], tuple], state: Any, forward_mode_differentiation: bool = False
    ) -> tuple[tuple[Array, Any], Any]:
        return self.eval_and_update(fn, state, forward_mode_differentiation)


@dataclass(frozen=True)
class Convergence:
    """The stopping rule of the MAP loops.

    A fit has converged at step ``t`` when no parameter moved by more than
    ``tol`` over the last ``window`` steps, relative to the largest absolute
    parameter or to ``scale``, whichever is larger:

    .. math:: \\max_i |W_i^{(t)} - W_i^{(t - w)}| \\le \\mathrm{tol} \\cdot \\max(\\max_i |W_i^{(t)}|, s).

    The rule is on the parameters, not on the loss: in float32 the loss stops
    changing (at ~1e-7 nats per trial) hundreds of steps before the fitted
    field does. On P-std, L-BFGS's loss was flat from step ~400, while
    ``Sigma`` on a 12 x 12 grid still moved by 5e-4 (relative); at
    ``tol=1e-5`` the fit stops near step 600, with ``Sigma`` within ~1e-5 of
    where it ends 400 steps later. The floor ``scale`` (the fits pass the
    prior standard deviation of the constant term) keeps the rule meaningful
    when the MAP is at ``W = 0``, as it can be with very few trials.

    Attributes:
        tol: The relative change below which the fit has converged; None
            switches the rule off (every step runs).
        window: Steps over which the change is measured.
        scale: The smallest parameter scale the change is relative to.
    """

    tol: float | None
    window: int
    scale: float = 0.0

    def change(self, new: np.ndarray, old: np.ndarray) -> float:
        """The relative change between two parameter vectors."""
        size = max(float(np.max(np.abs(new))), self.scale, 1e-30)
        return float(np.max(np.abs(new - old)) / size)

    def converged(self, change: float) -> bool:
        """Whether a :meth:`change` over the last ``window`` steps is within ``tol``."""
        return self.tol is not None and change <= self.tol
