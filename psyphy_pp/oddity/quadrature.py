"""Settings of the deterministic quadrature likelihood, and which rule runs where.

* In 2D, ``quadrature_rule="semianalytic"`` (default) is
  :func:`~psyphy_pp.oddity.quadrature2d.oddity_prob_semianalytic`
  (``num_angles x num_radial`` nodes) and ``"gauss-hermite"`` is
  :func:`~psyphy_pp.oddity.quadrature2d.oddity_prob_quadrature`
  (``num_angles x num_hermite**2`` nodes).
* In 3D, the rule is :func:`~psyphy_pp.oddity.quadrature3d.oddity_prob_polar_3d`
  with ``polar_nodes``, whose radial integral is closed-form as the 2D
  semi-analytic rule's is; ``quadrature_rule="gauss-hermite"`` is refused in 3D
  rather than ignored.

Both rules integrate ``1 - P(correct)`` directly where they can, so that far
above threshold the logit keeps its precision.
"""

from __future__ import annotations

__all__ = ["Quadrature", "RULES"]

import math
from dataclasses import dataclass

import jax.numpy as jnp

from psyphy_pp import defaults
from psyphy_pp._typing import Array
from psyphy_pp._validation import check_choice, check_positive
from psyphy_pp.oddity import quadrature2d, quadrature3d
from psyphy_pp.oddity.bounds import PROB_EPS

#: The values of ``quadrature_rule``.
RULES = ("semianalytic", "gauss-hermite")


@dataclass(frozen=True)
class Quadrature:
    """Settings of the quadrature likelihood (``Oddity(method="quadrature")``).

    Args:
        quadrature_rule: ``"semianalytic"`` (default: closed-form average over
            ``v'``, ``num_angles x num_radial`` nodes in 2D; mean error ~4e-6 at
            8 x 4) or ``"gauss-hermite"`` (2D only, DESIGN 2b, ``num_angles x
            num_hermite**2`` nodes; mean error ~5e-4 at 8 x 6 x 6).
        num_angles: 2D: Gauss-Legendre nodes over the half circle.
        num_radial: 2D: Gauss-Legendre nodes of the semi-analytic rule's inner integral.
        num_hermite: 2D: Gauss-Hermite nodes per dimension of ``v'``.
        polar_nodes: 3D: node counts of
            :func:`~psyphy_pp.oddity.quadrature3d.oddity_prob_polar_3d`. The
            default, 384 nodes, erred by 7e-4 on average (500-sample Monte Carlo:
            1.5e-2) at about twice the cost of 500 samples; ``(4, 6, 3, 6, 4)``,
            1,728 nodes, by 9e-5 at about 8x (``python -m benchmarks.quadrature_3d``).

    Examples:
        >>> Quadrature().trials_per_block(2)   # 2**20 trial-node evaluations per block
        32768
    """

    quadrature_rule: str = "semianalytic"
    num_angles: int = defaults.QUADRATURE_ANGLES
    num_radial: int = defaults.QUADRATURE_RADIAL
    num_hermite: int = 6
    polar_nodes: tuple[int, int, int, int, int] = defaults.POLAR_NODES

    def __post_init__(self) -> None:
        check_choice("quadrature_rule", self.quadrature_rule, RULES)
        check_positive("num_angles", self.num_angles, integer=True)
        check_positive("num_radial", self.num_radial, integer=True)
        check_positive("num_hermite", self.num_hermite, integer=True)
        if not isinstance(self.polar_nodes, (tuple, list)) or len(self.polar_nodes) != 5:
            raise ValueError(f"polar_nodes must be a tuple of 5 integers, got {self.polar_nodes!r}")
        object.__setattr__(self, "polar_nodes", tuple(self.polar_nodes))  # e.g. read from JSON
        for k in self.polar_nodes:
            check_positive("polar_nodes", k, integer=True)

    deterministic = True

    def check_input_dim(self, input_dim: int) -> None:
        """Raise ``ValueError`` unless these settings have a rule for ``input_dim``."""
        if input_dim not in defaults.QUADRATURE_DIMS:
            raise ValueError(
                "Oddity(method='quadrature') needs input_dim 2 or 3, got input_dim="
                f"{input_dim}; use method='mc' (with fixed_noise=True for a deterministic "
                "likelihood)"
            )
        if input_dim == 3 and self.quadrature_rule != "semianalytic":
            raise ValueError(
                f"quadrature_rule={self.quadrature_rule!r} exists in 2D only; in 3D the "
                "quadrature is the polar rule, whose nodes polar_nodes sets"
            )

    def trials_per_block(self, input_dim: int) -> int:
        """Trials evaluated at once: about ``2**20`` trial-node evaluations."""
        return max(1, 2**20 // self.nodes_per_trial(input_dim))

    def nodes_per_trial(self, input_dim: int) -> int:
        """Integrand evaluations per trial in ``input_dim`` dimensions."""
        if input_dim == 3:
            return math.prod(self.polar_nodes)
        if self.quadrature_rule == "semianalytic":
            return self.num_angles * self.num_radial
        return self.num_angles * self.num_hermite**2

    def logits(self, S0: Array, S1: Array, delta: Array) -> Array:
        """Logits of P(correct) of a block of trials, within ``[PROB_EPS, 1 - PROB_EPS]``."""
        if delta.shape[-1] == 2 and self.quadrature_rule == "gauss-hermite":
            p = quadrature2d.oddity_prob_quadrature(
                S0, S1, delta, num_angles=self.num_angles, num_hermite=self.num_hermite
            )
            # Clip p before the logs: a p that rounds to 1 would give log1p(-p) = -inf
            # and a NaN gradient; clipped trials get a zero gradient instead.
            p = jnp.clip(p, PROB_EPS, 1.0 - PROB_EPS)
            return jnp.log(p) - jnp.log1p(-p)
        # The other rules integrate 1 - p directly: far above threshold p rounds to
        # 1 while 1 - p is still well above PROB_EPS.
        if delta.shape[-1] == 3:
            q = quadrature3d.oddity_prob_polar_3d(
                S0, S1, delta, nodes=self.polar_nodes, return_incorrect=True
            )
        else:  # the semi-analytic rule's lam in [1, inf) half
            q = quadrature2d.oddity_prob_semianalytic(
                S0, S1, delta, num_angles=self.num_angles, num_radial=self.num_radial,
                return_incorrect=True,
            )
        q = jnp.clip(q, PROB_EPS, 1.0 - PROB_EPS)
        return jnp.log1p(-q) - jnp.log(q)
