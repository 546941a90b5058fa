"""Several observers at once: a hierarchical WPPM with a shared field and deviations.

Observer ``s`` (of ``S``) has weights ``W_s = W_shared + Delta_s``:

.. math::

    W_{\\mathrm{shared}} \\sim \\mathcal{N}(0, V), \\qquad
    \\Delta_s \\sim \\mathcal{N}(0, \\tau^2 V), \\qquad
    \\tau \\sim \\mathrm{HalfNormal}(\\sigma_\\tau),

with ``V`` the Wishart-process prior variance of the base :class:`~psyphy_pp.WPPM`
(entry by entry, ``variance_scale * decay_rate ** degree``). ``tau`` is the
size of the observers' deviations relative to the prior: near 0 every observer
has the shared field (one pooled fit), large ``tau`` leaves each observer to
its own data. It is learnt (``tau=None``, the default) or fixed
(``tau=0.3``). The likelihood of a trial is the base model's, with the
weights of the trial's observer (:attr:`~psyphy_pp.TrialData.observer`).

Fits. :func:`~psyphy_pp.fit_map`, :func:`~psyphy_pp.fit_map_scratch`,
:func:`~psyphy_pp.fit_laplace` and :func:`~psyphy_pp.fit_nuts` take a
:class:`HierarchicalWPPM` with the same call shape and return a
:class:`HierarchicalFit`: draws ``(chains, draws, ...)`` of ``W_shared``,
``Delta`` (``(chains, draws, S, *weights_shape)``) and ``tau`` (a point
estimate is one chain of one draw). :meth:`HierarchicalFit.observer` and
:meth:`HierarchicalFit.population` turn it into ordinary single-observer fits
(:class:`~psyphy_pp.SavedFit`), so thresholds, ellipses, plots and files work
per observer and for the population (``W_shared``);
:meth:`HierarchicalFit.thresholds` gives them all at once and
:func:`~psyphy_pp.to_arviz` names the observer dimension ``"observer"``.

MAP with a learnt ``tau``. The joint posterior density of ``(W_shared,
Delta, tau)`` has no mode: it grows without bound as ``tau`` and every
``Delta_s`` shrink to 0 together, and a joint fit slides there. So the MAP
fits take ``tau`` as the mode of its marginal posterior ``p(y | tau) p(tau)``,
with ``p(y | tau)`` by a Laplace approximation at the fixed-``tau`` MAP
(:func:`fit_map_hierarchical`), and return the fixed-``tau`` MAP there.

Parameterisation for NUTS. ``parameterization="noncentred"`` samples
``Z_s ~ N(0, V)`` and sets ``Delta_s = tau * Z_s`` (a deterministic site);
``"centred"`` samples ``Delta_s`` itself. The MAP fits step ``(W_shared, Z)``
at a fixed ``tau`` either way (the same mode as the centred density).

Not supported: a learnt lapse rate (``Oddity(lapse_rate="learn")``; a fixed
rate works), sharding the trials over several devices, and Monte Carlo tasks
with fresh noise in the MAP fits (use the default quadrature).
"""

from __future__ import annotations

__all__ = [
    "HierarchicalWPPM",
    "HierarchicalFit",
    "SITE_W_SHARED",
    "SITE_DELTA",
    "SITE_Z",
    "SITE_TAU",
    "POPULATION",
    "DEFAULT_TAU_SCALE",
    "TAU_SEARCH",
    "TAU_SEARCH_TOL",
    "fit_map_hierarchical",
    "fit_laplace_hierarchical",
    "fit_nuts_hierarchical",
    "hierarchical_to_arviz",
    "plot_observers",
]

from psyphy_pp.hierarchical._map import (
    TAU_SEARCH,
    TAU_SEARCH_TOL,
    fit_map_hierarchical,
)
from psyphy_pp.hierarchical._model import (
    DEFAULT_TAU_SCALE,
    POPULATION,
    SITE_DELTA,
    SITE_TAU,
    SITE_W_SHARED,
    SITE_Z,
    HierarchicalWPPM,
)
from psyphy_pp.hierarchical._posterior import fit_laplace_hierarchical, fit_nuts_hierarchical
from psyphy_pp.hierarchical._result import HierarchicalFit
from psyphy_pp.hierarchical._views import hierarchical_to_arviz, plot_observers
