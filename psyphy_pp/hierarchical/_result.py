"""The result of every hierarchical fit: :class:`HierarchicalFit`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psyphy_pp._typing import ArrayLike, Params
from psyphy_pp.data import TrialData
from psyphy_pp.hierarchical._model import (
    POPULATION,
    SITE_DELTA,
    SITE_TAU,
    SITE_W_SHARED,
    HierarchicalWPPM,
)


@dataclass(frozen=True, eq=False)
class HierarchicalFit:
    """A fit of a :class:`HierarchicalWPPM`: a MAP point, Laplace draws or NUTS draws.

    Attributes:
        model: The fitted :class:`HierarchicalWPPM`.
        data: The trials (with their observer index).
        method: ``"svi"``, ``"scratch"``, ``"laplace"`` or ``"nuts"``.
        samples: ``{"W_shared": (C, K, *ws), "Delta": (C, K, S, *ws), "tau":
            (C, K)}`` by chain ``C`` and draw ``K``; a point estimate has
            ``C = K = 1``.
        kind: ``"point"`` or ``"posterior"``.
        settings: The settings used, and timings (``wall_time`` in seconds).
        losses: The MAP loss trace (nats per trial), or None.
        converged: Whether the MAP loop met its stopping rule (None for draws).
        convergence: The reason, in words.
        sample_stats: NUTS statistics by chain and draw (``diverging``, ...), or
            an empty dict.
    """

    model: HierarchicalWPPM
    data: TrialData
    method: str
    samples: dict
    kind: str = "point"
    settings: dict = field(default_factory=dict)
    losses: np.ndarray | None = None
    converged: bool | None = None
    convergence: str = ""
    sample_stats: dict = field(default_factory=dict)

    @property
    def observer_names(self) -> tuple[str, ...]:
        """The observers' names, in the order of the ``Delta`` axis."""
        assert self.data.observer_names is not None
        return self.data.observer_names

    @property
    def params(self) -> Params:
        """The point estimate ``{"W_shared", "Delta", "tau"}`` (draw 0 of chain 0 for draws)."""
        return {k: np.asarray(v)[0, 0] for k, v in self.samples.items()}

    @property
    def tau(self) -> np.ndarray:
        """``tau`` by chain and draw, shape ``(C, K)``."""
        return np.asarray(self.samples[SITE_TAU])

    def observer_weight_draws(self) -> np.ndarray:
        """Every observer's ``W_s`` by chain and draw, shape ``(C, K, S, *weights_shape)``."""
        return np.asarray(self.model.observer_weights(
            {SITE_W_SHARED: self.samples[SITE_W_SHARED], SITE_DELTA: self.samples[SITE_DELTA]}))

    def observer(self, observer: int | str) -> Any:
        """One observer's fit as a :class:`~psyphy_pp.SavedFit` of the base model.

        Its weights are ``W_shared + Delta_s`` (draws kept), its data the
        observer's trials; thresholds, ellipses, plots and ``save_fit`` treat
        it as any single-observer fit.

        Args:
            observer: The observer's index or name.
        """
        from psyphy_pp.fitio import SavedFit

        s = self.data.observer_position(observer)
        W = self.observer_weight_draws()[:, :, s]
        weights: dict[str, Any] = {"W": W if self.kind == "posterior" else W[0, 0]}
        return SavedFit(self.model.base, weights,
                        kind=self.kind, method=f"{self.method} (hierarchical, observer "
                        f"{self.observer_names[s]!r})", data=self.data.observer_trials(s),
                        normalization=self.data.normalization, settings=json_settings(self.settings))

    def population(self) -> Any:
        """The shared field ``W_shared`` as a :class:`~psyphy_pp.SavedFit` of the base model."""
        from psyphy_pp.fitio import SavedFit

        W = np.asarray(self.samples[SITE_W_SHARED])
        weights: dict[str, Any] = {"W": W if self.kind == "posterior" else W[0, 0]}
        return SavedFit(self.model.base, weights,
                        kind=self.kind, method=f"{self.method} (hierarchical, population)",
                        normalization=self.data.normalization, settings=json_settings(self.settings))

    def fits(self) -> dict[str, Any]:
        """``{POPULATION: population(), name: observer(name), ...}``.

        Raises:
            ValueError: If an observer is named like the population key.
        """
        if POPULATION in self.observer_names:
            raise ValueError(f"an observer is named {POPULATION!r}, the key of the shared "
                             "field; rename it in the data")
        out = {POPULATION: self.population()}
        out.update({name: self.observer(name) for name in self.observer_names})
        return out

    def thresholds(self, refs: ArrayLike, num_directions: int = 16, **kwargs: Any) -> dict:
        """Thresholds of the population and of every observer, with draws for bands.

        Args:
            refs: Reference points in model units, ``(R, D)``.
            num_directions: Directions per reference.
            **kwargs: Passed to :func:`~psyphy_pp.thresholds`.

        Returns:
            ``{"population": Thresholds, name: Thresholds, ...}``; from draws,
            ``.band(prob)`` gives each one's band.
        """
        from psyphy_pp.thresholds import thresholds

        return {name: thresholds(fit.model, fit.params, refs, num_directions, **kwargs)
                for name, fit in self.fits().items()}

    def summary(self, level: float = 0.9) -> str:
        """A few lines: method, observers and trials, ``tau``, convergence."""
        names = self.observer_names
        counts = np.bincount(np.asarray(self.data.observer), minlength=len(names))
        tau = self.tau.ravel()
        if not self.model.learns_tau:
            tau_s = f"tau fixed at {self.model.tau:g}"
        elif tau.size == 1:
            tau_s = f"tau {float(tau[0]):.4g} (MAP)"
        else:
            lo, med, hi = np.quantile(tau, [(1 - level) / 2, 0.5, (1 + level) / 2])
            tau_s = f"tau {med:.4g} [{lo:.4g}, {hi:.4g}] ({level:.0%} interval)"
        lines = [
            f"hierarchical WPPM ({self.model.parameterization} deviations, tau_scale "
            f"{self.model.tau_scale:g}), method {self.method}",
            f"{len(names)} observers: " + ", ".join(f"{n} ({c} trials)"
                                                    for n, c in zip(names, counts)),
            tau_s,
        ]
        if self.convergence:
            lines.append(f"convergence: {self.convergence}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"HierarchicalFit(method={self.method!r}, kind={self.kind!r}, observers="
                f"{list(self.observer_names)}, tau={np.median(self.tau):.4g}, "
                f"converged={self.converged})")


def json_settings(settings: dict) -> dict:
    """The settings that are plain JSON values, tuples of them as lists (what a SavedFit keeps)."""
    def plain(v: Any) -> bool:
        return isinstance(v, (str, int, float, bool)) or v is None

    out: dict = {}
    for k, v in settings.items():
        if plain(v):
            out[k] = v
        elif isinstance(v, (tuple, list)) and all(plain(x) for x in v):
            out[k] = list(v)  # e.g. max_tree_depth, (warmup, sampling)
    return out
