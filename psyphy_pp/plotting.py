"""Matplotlib figures: covariance-ellipse fields and loss curves.

Functions draw on a given ``Axes`` (or a new figure) and return the figure;
nothing here calls ``plt.show``. matplotlib is imported lazily.
"""

from __future__ import annotations

__all__ = ["plot_ellipse_field", "plot_losses", "THRESHOLD_SCALE_2D"]

from typing import Any, Sequence

import numpy as np

from psyphy_pp._typing import ArrayLike, Params
from psyphy_pp.model import WPPM

#: For isotropic noise, the 2/3-correct oddity threshold lies ~2.554 sigma away (2D).
THRESHOLD_SCALE_2D = 2.554


def _ellipse_axes(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-axis lengths and angle (degrees) of the ellipses ``x^T S^-1 x = 1``."""
    w, V = np.linalg.eigh(S)
    angle = np.degrees(np.arctan2(V[..., 1, 1], V[..., 0, 1]))
    return np.sqrt(np.clip(w[..., ::-1], 0.0, None)), angle


def plot_ellipse_field(
    model: WPPM,
    params: Params,
    points: ArrayLike,
    *,
    ax: Any = None,
    scale: float = THRESHOLD_SCALE_2D,
    **ellipse_kwargs: Any,
) -> Any:
    """Draw ``scale``-sigma ellipses of ``Sigma(x)`` at 2D ``points``.

    With the default ``scale`` the ellipses approximate the 2/3-correct
    oddity thresholds.

    Args:
        model: A 2D :class:`~psyphy_pp.WPPM`.
        params: ``{"W": W}``.
        points: Centres, shape ``(G, 2)``.
        ax: Axes to draw on (a new figure if None).
        scale: Ellipse radius in units of the noise standard deviation.
        **ellipse_kwargs: Passed to ``matplotlib.patches.Ellipse``
            (e.g. ``edgecolor``, ``linestyle``, ``label``).

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    if model.input_dim != 2:
        raise ValueError(f"plot_ellipse_field needs input_dim == 2, got {model.input_dim}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    points = np.asarray(points, np.float64)
    radii, angles = _ellipse_axes(np.asarray(model.covariance(params, points), np.float64))
    style = dict(facecolor="none", edgecolor="k", linewidth=1.0) | ellipse_kwargs
    label = style.pop("label", None)
    for i, (p, r, a) in enumerate(zip(points, radii, angles)):
        ax.add_patch(Ellipse(p, 2 * scale * r[0], 2 * scale * r[1], angle=a,
                             label=label if i == 0 else None, **style))
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("stimulus dimension 1")
    ax.set_ylabel("stimulus dimension 2")
    return ax.figure


def plot_losses(
    results: Sequence[Any], *, labels: Sequence[str] | None = None, ax: Any = None
) -> Any:
    """Loss curves of MAP fits (anything with ``.losses``) on one axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    labels = labels or [getattr(r, "method", f"fit {i}") for i, r in enumerate(results)]
    for r, label in zip(results, labels):
        ax.plot(np.asarray(r.losses), label=label, alpha=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative log posterior per trial)")
    ax.legend()
    return ax.figure
