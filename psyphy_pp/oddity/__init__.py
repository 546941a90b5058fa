"""The oddity task: the probability that the observer picks the odd stimulus.

A trial shows the reference ``r`` twice and the comparison ``c`` once. With
internal samples ``z0, z1 ~ N(r, S0)``, ``z2 ~ N(c, S1)`` and distances in the
metric of ``Sbar = 2/3 S0 + 1/3 S1``, the answer is correct when
``d(z0, z1) < min(d(z0, z2), d(z1, z2))``.

The subpackage, one idea per module:

* :mod:`~psyphy_pp.oddity.whitening`: the whitening by ``chol(Sbar)`` that every
  estimator starts from;
* :mod:`~psyphy_pp.oddity.montecarlo`: smoothed Monte Carlo in any dimension,
  and its settings record :class:`MonteCarlo`;
* :mod:`~psyphy_pp.oddity.quadrature2d` and :mod:`~psyphy_pp.oddity.quadrature3d`:
  deterministic P(correct) in 2D and 3D;
* :mod:`~psyphy_pp.oddity.quadrature`: the settings record :class:`Quadrature`
  and which rule runs in which dimension;
* :mod:`~psyphy_pp.oddity.bounds`: the clip of P(correct), :data:`PROB_EPS`;
* :mod:`~psyphy_pp.oddity.lapse`: the lapse term, :func:`lapse_logits`;
* :mod:`~psyphy_pp.oddity.task`: :class:`Oddity`, the one constructor, with
  the blocking of large data sets.
"""

from __future__ import annotations

__all__ = [
    "Oddity",
    "MonteCarlo",
    "Quadrature",
    "PROB_EPS",
    "MAX_LOGIT",
    "Whitened",
    "whiten",
    "oddity_logits_mc",
    "oddity_prob_semianalytic",
    "oddity_prob_quadrature",
    "oddity_prob_polar_3d",
    "oddity_prob_gauss_hermite_3d",
    "lapse_logits",
]

from psyphy_pp.oddity.bounds import MAX_LOGIT, PROB_EPS
from psyphy_pp.oddity.lapse import lapse_logits
from psyphy_pp.oddity.montecarlo import MonteCarlo, oddity_logits_mc
from psyphy_pp.oddity.quadrature import Quadrature
from psyphy_pp.oddity.quadrature2d import oddity_prob_quadrature, oddity_prob_semianalytic
from psyphy_pp.oddity.quadrature3d import oddity_prob_gauss_hermite_3d, oddity_prob_polar_3d
from psyphy_pp.oddity.task import Oddity
from psyphy_pp.oddity.whitening import Whitened, whiten
