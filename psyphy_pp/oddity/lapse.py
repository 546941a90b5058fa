r"""Lapses: an observer who sometimes answers at random.

With lapse rate :math:`\lambda` the observer attends on a fraction
:math:`1 - \lambda` of the trials and answers at random (correct with
probability 1/3, the oddity task's chance) on the others:

.. math:: p = \frac{\lambda}{3} + (1 - \lambda)\, \sigma(z),

where :math:`z` is the logit of the perceptual model's P(correct). The lapsed
logit is computed on the log scale, so that it stays exact where
:math:`\sigma(z)` is close to 0 or 1:

.. math::
    \log p = \operatorname{logaddexp}\big(\log\tfrac{\lambda}{3},\;
        \log(1 - \lambda) + \log\sigma(z)\big), \qquad
    \log(1 - p) = \operatorname{logaddexp}\big(\log\tfrac{2\lambda}{3},\;
        \log(1 - \lambda) + \log\sigma(-z)\big).

``lambda = 0`` returns ``z`` itself.
"""

from __future__ import annotations

__all__ = ["lapse_logits", "DEFAULT_LAPSE_PRIOR"]

import jax
import jax.numpy as jnp

from psyphy_pp._typing import Array, ArrayLike

#: Beta(a, b) prior of a learnt lapse rate: mean 0.05, mode about 0.026.
DEFAULT_LAPSE_PRIOR = (2.0, 38.0)


def lapse_logits(z: ArrayLike, lapse_rate: ArrayLike) -> Array:
    """Logits of ``lapse_rate / 3 + (1 - lapse_rate) * sigmoid(z)``.

    Args:
        z: Logits of the perceptual P(correct), any shape.
        lapse_rate: ``lambda`` in ``[0, 1)``, broadcastable to ``z``.

    Returns:
        The lapsed logits, the shape of ``z`` broadcast with ``lapse_rate``;
        exactly ``z`` where ``lapse_rate == 0`` (with finite gradients there).

    Examples:
        >>> import jax.numpy as jnp
        >>> z = jnp.array([-40.0, 0.0, 40.0])
        >>> p = jax.nn.sigmoid(lapse_logits(z, 0.06))
        >>> [round(float(v), 4) for v in p]  # 0.06/3 at the bottom, 1 - 2 * 0.06/3 at the top
        [0.02, 0.49, 0.96]
        >>> bool(jnp.all(lapse_logits(z, 0.0) == z))
        True
    """
    z = jnp.asarray(z)
    lam = jnp.asarray(lapse_rate, z.dtype)
    lapsing = lam > 0
    safe = jnp.where(lapsing, lam, 0.5)  # keeps log(lambda) and its gradient finite at 0
    attend = jnp.log1p(-safe)
    log_p = jnp.logaddexp(jnp.log(safe / 3), attend + jax.nn.log_sigmoid(z))
    log_q = jnp.logaddexp(jnp.log(2 * safe / 3), attend + jax.nn.log_sigmoid(-z))
    return jnp.where(lapsing, log_p - log_q, z)
