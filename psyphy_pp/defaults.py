"""Every default that is a decision, in one place.

The rest of the package reads its policies from here rather than keeping its
own copy:

* **Which likelihood.** :func:`likelihood_method`: the deterministic
  quadrature wherever it exists (``input_dim`` 2 and 3), smoothed Monte Carlo
  otherwise. :func:`task_for` turns a model's task into the one used for a
  given purpose (MAP fit, NUTS, thresholds, simulation).
* **Node counts.** The MAP-grade quadrature rules (:data:`QUADRATURE_ANGLES` x
  :data:`QUADRATURE_RADIAL` in 2D, :data:`POLAR_NODES` in 3D), the finer 3D
  rule NUTS uses (:data:`NUTS_POLAR_NODES`), and the smallest fixed-noise Monte
  Carlo sample count (:data:`MIN_FIXED_NOISE_SAMPLES`).
* **Optimiser.** :func:`optimizer_name` resolves ``optimizer="auto"``: L-BFGS
  (``optax.lbfgs``, a zoom line search) on a deterministic likelihood, Adam on
  fresh-noise Monte Carlo. :func:`make_optimizer` builds the named optimisers;
  :data:`DEFAULT_NUM_STEPS`, :data:`DEFAULT_TOL` and :data:`CONVERGENCE_WINDOW`
  set the stopping rule of the MAP loops.

Why these choices (measured on P-std, N = 10,000, 2 cores, ``python -m
benchmarks.bench_map``): the default ``fit_map`` (L-BFGS) converged in 572
steps and 18.8 s, compilation included, to the objective of a 5,000-step
reference (0.5151806 nats per trial); Adam at 3e-3 ended 8e-5 above it after
1,000 steps and its loss jumps by up to 1e-2 late in a fit; SGD with momentum
0.9 at 1e-4 ended 7e-3 above it.
"""

from __future__ import annotations

__all__ = [
    "QUADRATURE_DIMS",
    "QUADRATURE_ANGLES",
    "QUADRATURE_RADIAL",
    "POLAR_NODES",
    "NUTS_POLAR_NODES",
    "MIN_FIXED_NOISE_SAMPLES",
    "DEFAULT_MAX_TREE_DEPTH",
    "HIERARCHICAL_MAX_TREE_DEPTH",
    "HIERARCHICAL_NUM_WARMUP",
    "DEFAULT_NUM_WARMUP",
    "DEFAULT_TARGET_ACCEPT",
    "DEFAULT_DENSE_MASS",
    "DEFAULT_NUTS_GAUGE",
    "PURPOSES",
    "likelihood_method",
    "task_for",
    "OPTIMIZERS",
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_MOMENTUM",
    "DEFAULT_NUM_STEPS",
    "DEFAULT_TOL",
    "CONVERGENCE_WINDOW",
    "optimizer_name",
    "make_optimizer",
]

import dataclasses
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import optax

    from psyphy_pp.oddity import Oddity

#: Input dimensions that have a deterministic quadrature for P(correct).
QUADRATURE_DIMS = (2, 3)
#: 2D semi-analytic rule of MAP fits: Gauss-Legendre angles over the half circle.
QUADRATURE_ANGLES = 8
#: 2D semi-analytic rule of MAP fits: nodes of the inner (radial) integral.
QUADRATURE_RADIAL = 4
#: 3D polar rule of MAP fits (384 nodes; mean error ~7e-4 in P(correct)).
POLAR_NODES = (4, 4, 2, 4, 3)
#: NUTS's finer 3D rule (1,728 nodes; mean error ~1e-4). In 2D NUTS samples with
#: the MAP-grade rule: since ``1 - P(correct)`` is integrated directly, its log
#: density differs from a 32 x 16 rule's by a spread (sd over draws) of ~0.01 nats
#: at Laplace draws of P-small and of a 6,000-trial degree-4 observer, and 16 x 8
#: cost 4 times as much per gradient (``docs/inference.md``).
NUTS_POLAR_NODES = (4, 6, 3, 6, 4)
#: The fewest fixed-noise Monte Carlo samples used where a deterministic
#: likelihood is needed and no quadrature exists (``input_dim`` 1 or > 3).
MIN_FIXED_NOISE_SAMPLES = 2000
#: Cap on the depth of NUTS trees, ``(warmup, sampling)``: at most
#: ``2**depth - 1`` leapfrog steps per iteration (NumPyro's default is 10 for
#: both). With :data:`DEFAULT_DENSE_MASS`, on a 6,000-trial degree-4 observer,
#: 2 chains x (200 + 500) from the MAP: depth 6 throughout took 364 s, max r_hat
#: 1.011 and min ess_bulk 406 over Sigma (seed 0); depth 7 after a depth-6 warmup
#: (the same warmup) took 559 s, max r_hat 1.007 and min ess_bulk 737. Depth 6
#: itself had 2.9x the effective draws per second of depth 10 with a diagonal
#: mass matrix (``docs/inference.md``).
DEFAULT_MAX_TREE_DEPTH = (6, 7)
#: The tree depth of a hierarchical model (deeper sampling trees not measured there).
HIERARCHICAL_MAX_TREE_DEPTH = 6
#: NUTS warmup of a hierarchical model (200 not measured there).
HIERARCHICAL_NUM_WARMUP = 500
#: Whether NUTS adapts a dense mass matrix in warmup (else a diagonal one); see
#: :data:`DEFAULT_MAX_TREE_DEPTH`.
DEFAULT_DENSE_MASS = True
#: NUTS warmup (adaptation) iterations per chain. On the 6,000-trial observer of
#: :data:`DEFAULT_MAX_TREE_DEPTH`, 500 (the previous default) cost 25% more time
#: and gave fewer effective draws than 200 with the same chains (183 and 225
#: against 406 and 304, seeds 0 and 1), with smaller adapted steps
#: (``docs/inference.md``).
DEFAULT_NUM_WARMUP = 200
#: NUTS's target acceptance probability, to which warmup tunes the step size
#: (NumPyro's default). 0.65 (the NUTS paper's value) gave longer capped
#: trajectories and min ess_bulk 406 and 461 where 0.8 gave 406 and 304 on that
#: observer (seeds 0 and 1, same chains), but a divergent transition on P-small
#: (degree 1, 2 x (300 + 600)), where 0.8 has none; so 0.8 (``docs/inference.md``).
DEFAULT_TARGET_ACCEPT = 0.8
#: How NUTS treats the rotation symmetry of the weights: ``"free"`` (sample ``W``)
#: or ``"fixed"`` (:mod:`psyphy_pp.gauge`).
DEFAULT_NUTS_GAUGE = "free"
#: The purposes :func:`task_for` knows.
PURPOSES = ("fit", "nuts", "thresholds", "simulate")


def likelihood_method(input_dim: int) -> str:
    """The likelihood method used by default in ``input_dim`` dimensions.

    Examples:
        >>> likelihood_method(2), likelihood_method(3), likelihood_method(1)
        ('quadrature', 'quadrature', 'mc')
    """
    return "quadrature" if input_dim in QUADRATURE_DIMS else "mc"


def task_for(purpose: str, task: Oddity, input_dim: int) -> Oddity:
    """The likelihood settings used for ``purpose``, given the model's ``task``.

    * ``"fit"``: the task itself (``method="auto"`` resolved for ``input_dim``).
    * ``"nuts"`` and ``"thresholds"`` need a deterministic log density. A
      fresh-noise Monte Carlo task becomes the quadrature where it exists, and
      otherwise fixed-noise Monte Carlo with at least
      :data:`MIN_FIXED_NOISE_SAMPLES` samples (same bandwidth and seed). In
      3D NUTS also swaps the default MAP-grade polar rule for
      :data:`NUTS_POLAR_NODES`; any other deterministic task, the 2D default
      quadrature included, is used as it is.
    * ``"simulate"``: fresh-noise Monte Carlo gets at least
      :data:`MIN_FIXED_NOISE_SAMPLES` samples; other tasks are used as they are.

    Args:
        purpose: One of :data:`PURPOSES`.
        task: The model's :class:`~psyphy_pp.Oddity`.
        input_dim: The stimulus dimension ``D``.

    Returns:
        An :class:`~psyphy_pp.Oddity` with a concrete method, and the lapse
        settings of ``task``.

    Examples:
        >>> from psyphy_pp import Oddity
        >>> task_for("nuts", Oddity(), 2)
        Oddity(method='quadrature', quadrature_rule='semianalytic', num_angles=8, num_radial=4, polar_nodes=(4, 4, 2, 4, 3))
        >>> task_for("nuts", Oddity(), 3).polar_nodes
        (4, 6, 3, 6, 4)
        >>> task_for("thresholds", Oddity(method="mc", num_samples=500), 1)
        Oddity(method='mc', num_samples=2000, bandwidth=0.01, fixed_noise=True, noise_seed=0, generator='hash')
    """
    from psyphy_pp._validation import check_choice

    check_choice("purpose", purpose, PURPOSES)
    task = task.resolve(input_dim)
    if purpose == "fit":
        return task
    # The choice concerns the perceptual P(correct); the lapse settings are kept.
    return _perceptual_task_for(purpose, task.without_lapse(), input_dim).with_lapse_of(task)


def _perceptual_task_for(purpose: str, task: Oddity, input_dim: int) -> Oddity:
    """:func:`task_for` of a resolved task without a lapse term."""
    from psyphy_pp.oddity import Oddity

    if purpose == "simulate":
        if task.needs_key and task.num_samples < MIN_FIXED_NOISE_SAMPLES:
            return dataclasses.replace(task, num_samples=MIN_FIXED_NOISE_SAMPLES)
        return task
    default_quadrature = Oddity(method="quadrature")
    if task.needs_key:
        if input_dim not in QUADRATURE_DIMS:
            return dataclasses.replace(
                task, fixed_noise=True,
                num_samples=max(MIN_FIXED_NOISE_SAMPLES, task.num_samples),
            )
        task = default_quadrature
    if purpose == "nuts" and input_dim == 3 and task == default_quadrature:
        return dataclasses.replace(task, polar_nodes=NUTS_POLAR_NODES)
    return task


#: The optimiser names ``fit_map`` accepts (``"auto"`` picks one of the others).
OPTIMIZERS = ("auto", "lbfgs", "adam", "sgd")
#: Learning rate of each first-order optimiser (per-trial objective). L-BFGS
#: has none: its line search picks each step's length.
DEFAULT_LEARNING_RATES = {"adam": 3e-3, "sgd": 1e-4}
#: Momentum of ``optimizer="sgd"``.
DEFAULT_MOMENTUM = 0.9
#: The most optimiser steps a MAP fit takes; it stops earlier once converged.
DEFAULT_NUM_STEPS = 1000
#: Converged: no parameter moved by more than this, relative to the largest
#: one, over the last :data:`CONVERGENCE_WINDOW` steps
#: (:class:`psyphy_pp.optim.Convergence`).
DEFAULT_TOL = 1e-5
#: Steps over which the improvement is measured, per optimiser (L-BFGS makes
#: much larger steps than a first-order method).
CONVERGENCE_WINDOW = {"lbfgs": 10, "adam": 100, "sgd": 100, "custom": 100}


def optimizer_name(optimizer: str, task: Oddity) -> str:
    """Resolve ``"auto"``: ``"lbfgs"`` on a deterministic task, ``"adam"`` otherwise.

    A line search compares losses at several points of one step, which a
    likelihood with fresh Monte Carlo noise at every evaluation cannot offer.

    Examples:
        >>> from psyphy_pp import Oddity
        >>> optimizer_name("auto", Oddity(method="quadrature"))
        'lbfgs'
        >>> optimizer_name("auto", Oddity(method="mc"))
        'adam'
    """
    if optimizer != "auto":
        return optimizer
    return "lbfgs" if task.deterministic else "adam"


@functools.lru_cache(maxsize=32)
def make_optimizer(
    name: str,
    learning_rate: float | None = None,
    momentum: float | None = None,
    clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """The optax transformation of a named optimiser (after optional norm clipping).

    Args:
        name: ``"lbfgs"``, ``"adam"`` or ``"sgd"``.
        learning_rate: Adam and SGD only; None picks :data:`DEFAULT_LEARNING_RATES`.
        momentum: SGD only; None picks :data:`DEFAULT_MOMENTUM`.
        clip_norm: Clip the gradient's global norm first (off if None).

    Equal arguments give the same object, so that a MAP fit's compiled update,
    cached per optimiser, is reused by the next fit with the same settings.
    """
    import optax

    if name == "lbfgs":
        opt = optax.lbfgs()
    elif name == "adam":
        opt = optax.adam(DEFAULT_LEARNING_RATES["adam"] if learning_rate is None else learning_rate)
    else:
        lr = DEFAULT_LEARNING_RATES["sgd"] if learning_rate is None else learning_rate
        m = DEFAULT_MOMENTUM if momentum is None else momentum
        opt = optax.sgd(lr, momentum=m or None)
    return opt if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), opt)
