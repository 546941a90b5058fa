"""The protocol every fit result implements.

:class:`~psyphy_pp.MapResult` (``fit_map``, ``fit_map_scratch``),
:class:`~psyphy_pp.NutsResult` (``fit_nuts``) and :class:`~psyphy_pp.SavedFit`
(``load_fit``) all offer the model, the data, the settings and the draws of
``W`` in one layout, ``(chains, draws, *weights_shape)``; a point estimate is
one chain of one draw. :func:`~psyphy_pp.to_arviz`, :mod:`psyphy_pp.fitio`,
:mod:`psyphy_pp.diagnostics` and :mod:`psyphy_pp.plotting` read fits only
through it. A learnt lapse rate (``Oddity(lapse_rate="learn")``) is in
``params["lapse_rate"]`` (a point) or ``samples["lapse_rate"]`` (draws, shape
``(chains, draws)``); :func:`lapse_draws` and :func:`param_draws` read it from
any fit in the layout of the weights.
"""

from __future__ import annotations

__all__ = ["FitResult", "PosteriorDraws", "as_fit_result", "thin_draws", "lapse_draws",
           "param_draws", "lapse_summary"]

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

#: The parameter name of a learnt lapse rate (:data:`psyphy_pp.model.SITE_LAPSE`).
_LAPSE = "lapse_rate"

if TYPE_CHECKING:  # pragma: no cover
    from psyphy_pp.data import TrialData
    from psyphy_pp.model import WPPM


@runtime_checkable
class FitResult(Protocol):
    """What every fit result offers.

    Attributes:
        model: The fitted :class:`~psyphy_pp.WPPM`.
        data: The trials (None for a ground truth saved without data).
        method: How it was made (``"svi"``, ``"scratch"``, ``"nuts"``, ...).
        kind: ``"point"`` (one ``W``) or ``"posterior"`` (draws of ``W``).
        settings: The settings used.
    """

    model: WPPM
    data: TrialData | None
    method: str
    settings: dict

    @property
    def kind(self) -> str: ...

    def weight_draws(self) -> np.ndarray:
        """``W`` by chain and draw: shape ``(chains, draws, *weights_shape)``."""
        ...


class PosteriorDraws:
    """The :class:`FitResult` parts of a result that holds draws of ``W`` by chain.

    Shared by :class:`~psyphy_pp.NutsResult` and :class:`~psyphy_pp.LaplaceResult`,
    whose ``samples["W"]`` has shape ``(chains, draws, *weights_shape)`` (and
    ``samples["lapse_rate"]`` shape ``(chains, draws)`` when the lapse rate is
    learnt).
    """

    samples: dict

    @property
    def kind(self) -> str:
        """``"posterior"``: draws of ``W``."""
        return "posterior"

    def weight_draws(self) -> np.ndarray:
        """The draws of ``W``, shape ``(chains, draws, *weights_shape)``."""
        return np.asarray(self.samples["W"])

    @property
    def num_chains(self) -> int:
        """Number of chains (1 for independent draws)."""
        return int(self.samples["W"].shape[0])

    @property
    def num_samples(self) -> int:
        """Draws per chain."""
        return int(self.samples["W"].shape[1])


def thin_draws(draws: np.ndarray, max_draws: int) -> np.ndarray:
    """At most ``max_draws`` of ``draws`` (leading axis), evenly spaced, first and last kept.

    Examples:
        >>> thin_draws(np.arange(10), 4).tolist()
        [0, 3, 6, 9]
    """
    if len(draws) <= max_draws:
        return draws
    return draws[np.unique(np.linspace(0, len(draws) - 1, max_draws).round().astype(int))]


def lapse_draws(fit: Any) -> np.ndarray | None:
    """A fit's learnt lapse rate by chain and draw, shape ``(chains, draws)``.

    A point estimate is one chain of one draw, as in :meth:`FitResult.weight_draws`.

    Returns:
        The draws, or None when the model's task does not learn the lapse rate
        (a fixed rate is ``fit.model.task.lapse_rate``).

    Raises:
        ValueError: If the task learns the lapse rate but the fit holds no
            ``"lapse_rate"`` of the shape of its weight draws.
    """
    if not fit.model.task.learns_lapse:
        return None
    shape = fit.weight_draws().shape[:2]
    for name in ("samples", "params"):
        source = getattr(fit, name, None)
        if isinstance(source, dict) and _LAPSE in source:
            lam = np.asarray(source[_LAPSE], np.float64)
            if lam.size == int(np.prod(shape)):
                return lam.reshape(shape)
            raise ValueError(f"{name}[{_LAPSE!r}] must have shape {shape} (chains, draws) "
                             f"like the weight draws, got {lam.shape}")
    raise ValueError(f"the model learns the lapse rate (task lapse_rate='learn') but the fit "
                     f"has no {_LAPSE!r} in its params or samples")


def param_draws(fit: Any) -> dict[str, np.ndarray]:
    """Every parameter of a fit by chain and draw.

    Returns:
        ``{"W": (chains, draws, *weights_shape)}``, with ``"lapse_rate"``
        ``(chains, draws)`` when the lapse rate is learnt.
    """
    draws = {"W": fit.weight_draws()}
    lam = lapse_draws(fit)
    if lam is not None:
        draws[_LAPSE] = lam
    return draws


def lapse_summary(fit: Any, level: float = 0.9) -> str:
    """The learnt lapse rate in words, for reprs and summaries ("" when not learnt).

    A point estimate gives its value; draws give their median and the central
    ``level`` interval.

    Examples:
        >>> import psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1, task=pp.Oddity(lapse_rate="learn"))
        >>> fit = pp.SavedFit(model, {"W": np.zeros(model.weights_shape), "lapse_rate": 0.04})
        >>> lapse_summary(fit)
        'lapse_rate=0.04'
    """
    lam = lapse_draws(fit)
    if lam is None:
        return ""
    if lam.size == 1:
        return f"lapse_rate={float(lam.reshape(())):.4g}"
    lo, med, hi = np.quantile(lam, [(1 - level) / 2, 0.5, (1 + level) / 2])
    return f"lapse_rate={med:.4g} [{lo:.4g}, {hi:.4g}] ({level:.0%} interval)"


def as_fit_result(obj: object) -> FitResult:
    """``obj`` as a :class:`FitResult`.

    A fit result is returned as it is. Any other object with the attributes
    ``model``, ``data`` and ``samples["W"]`` (draws, ``(chains, draws, ...)``) or
    ``params["W"]`` (one estimate) is wrapped, so that results made elsewhere
    can be saved and read like the package's own.

    Raises:
        ValueError: If ``obj`` has neither.
    """
    if isinstance(obj, FitResult):
        return obj
    samples = getattr(obj, "samples", None)
    params = getattr(obj, "params", None)
    source = samples if samples is not None else params
    if not isinstance(source, dict) or "W" not in source or not hasattr(obj, "model"):
        raise ValueError(
            "result must be a MapResult, a NutsResult, a SavedFit, or have model and "
            f"samples['W'] or params['W'], got {type(obj).__name__}"
        )
    return _Wrapped(obj, np.asarray(source["W"]), "posterior" if samples is not None else "point")


class _Wrapped:
    """A :class:`FitResult` view of an object that has the parts but not the protocol."""

    def __init__(self, obj: object, W: np.ndarray, kind: str) -> None:
        self.model = obj.model  # type: ignore[attr-defined]
        self.data = getattr(obj, "data", None)
        self.method = str(getattr(obj, "method", "unknown"))
        self.settings = dict(getattr(obj, "settings", None) or {})
        self.losses = getattr(obj, "losses", None)
        self.kind = kind
        self._W = W
        self.samples = getattr(obj, "samples", None)
        self.params = getattr(obj, "params", None)

    def weight_draws(self) -> np.ndarray:
        return self._W if self.kind == "posterior" else self._W[None, None]
