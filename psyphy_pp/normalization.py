"""Normalization: the affine map between the user's stimulus units and the model box.

The model works in ``[-1, 1]^D``. Real experiments use their own units (RGB
values, a DKL box, ...): a :class:`Normalization` is the affine map from a box
in those units to ``[-1, 1]^D``. It is stored with the
:class:`~psyphy_pp.TrialData`, written to and read from its files (the
``# psyphy_pp normalization:`` line of a CSV file, see :mod:`psyphy_pp.data`),
and used to report thresholds and draw plots in the user's units.
"""

from __future__ import annotations

__all__ = ["Normalization"]

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def _float_tuple(name: str, values: Any) -> tuple[float, ...]:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty sequence of numbers, got {values!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {values!r}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Normalization:
    r"""Affine map from a box in the user's stimulus units to the model box ``[-1, 1]^D``

    .. math:: z_j = 2 \frac{x_j - \mathrm{low}_j}{\mathrm{high}_j - \mathrm{low}_j} - 1,
        \qquad x_j = \mathrm{low}_j + (z_j + 1) \frac{\mathrm{high}_j - \mathrm{low}_j}{2}.

    A distance ``s`` along dimension ``j`` in model units is ``s * scale[j]`` in
    user units, and a covariance (or ellipse shape matrix) ``M`` becomes
    ``diag(scale) M diag(scale)``. Both maps clip to their box, so that values on
    the edge map to the edge exactly.

    Args:
        low: Lower bound of each dimension in user units, length ``D``.
        high: Upper bound of each dimension, length ``D``, each ``> low``.
        names: Optional names of the dimensions (used as axis labels), length ``D``.

    Raises:
        ValueError: If the bounds are not finite, have different lengths, or
            ``high <= low`` in some dimension.

    Examples:
        >>> norm = Normalization(low=[0, 0], high=[255, 255], names=["R", "G"])
        >>> norm.to_model([[0.0, 127.5]]).tolist()
        [[-1.0, 0.0]]
        >>> norm.to_user([[1.0, 0.0]]).tolist()
        [[255.0, 127.5]]
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        low = _float_tuple("low", self.low)
        high = _float_tuple("high", self.high)
        if len(low) != len(high):
            raise ValueError(
                f"low and high must have the same length, got {len(low)} and {len(high)}"
            )
        bad = [j for j in range(len(low)) if not high[j] > low[j]]
        if bad:
            j = bad[0]
            raise ValueError(
                f"high must be greater than low in every dimension, got low={low[j]!r}, "
                f"high={high[j]!r} in dimension {j}"
            )
        names = self.names
        if names is not None:
            if isinstance(names, str):
                names = [names]
            names = tuple(str(n) for n in names)
            if len(names) != len(low):
                raise ValueError(f"names must have length {len(low)}, got {len(names)}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "names", names)

    @classmethod
    def identity(cls, input_dim: int) -> Normalization:
        """The map of ``[-1, 1]^D`` onto itself (data already in model units)."""
        return cls((-1.0,) * input_dim, (1.0,) * input_dim)

    @property
    def input_dim(self) -> int:
        """Stimulus dimension ``D``."""
        return len(self.low)

    @property
    def scale(self) -> np.ndarray:
        """User units per model unit in each dimension, ``(high - low) / 2``, shape ``(D,)``."""
        return (np.asarray(self.high) - np.asarray(self.low)) / 2.0

    @property
    def is_identity(self) -> bool:
        """True when the box is ``[-1, 1]^D``."""
        return all(v == -1.0 for v in self.low) and all(v == 1.0 for v in self.high)

    def axis_labels(self) -> list[str]:
        """Names of the dimensions, or ``"stimulus dimension j"``."""
        if self.names is not None:
            return list(self.names)
        return [f"stimulus dimension {j + 1}" for j in range(self.input_dim)]

    def to_model(self, x: Any) -> np.ndarray:
        """Map user-unit stimuli ``(..., D)`` to model units (clipped to ``[-1, 1]``)."""
        x = self._check_last_axis("x", x)
        low, high = np.asarray(self.low), np.asarray(self.high)
        return np.clip(2.0 * (x - low) / (high - low) - 1.0, -1.0, 1.0)

    def to_user(self, z: Any) -> np.ndarray:
        """Map model-unit stimuli ``(..., D)`` to user units (clipped to the box)."""
        z = self._check_last_axis("z", z)
        low, high = np.asarray(self.low), np.asarray(self.high)
        return np.clip(low + (z + 1.0) * ((high - low) / 2.0), low, high)

    def to_user_exact(self, z: Any) -> np.ndarray:
        """Like :meth:`to_user`, but picks the float that maps back to ``z`` exactly.

        ``to_model(to_user(z))`` can differ from ``z`` in the last bit. Where a
        neighbouring float of ``to_user(z)`` maps back to ``z`` exactly, it is
        used instead, so that writing user units and reading them back is
        lossless (for every ``z`` that came from a user-unit value).
        """
        z = self._check_last_axis("z", z)
        x = self.to_user(z)
        done = self.to_model(x) == z
        for steps in (1, -1, 2, -2, 3, -3):
            if done.all():
                break
            cand = x
            toward = np.inf if steps > 0 else -np.inf
            for _ in range(abs(steps)):
                cand = np.nextafter(cand, toward)
            cand = np.clip(cand, self.low, self.high)
            hit = ~done & (self.to_model(cand) == z)
            x = np.where(hit, cand, x)
            done = done | hit
        return x

    def covariance_to_user(self, M: Any) -> np.ndarray:
        """``diag(scale) M diag(scale)`` for matrices ``(..., D, D)`` in model units."""
        s = self.scale
        return np.asarray(M, np.float64) * s[:, None] * s[None, :]

    def to_dict(self) -> dict:
        """A JSON-ready dict (``low``, ``high``, ``names``)."""
        return {"low": list(self.low), "high": list(self.high),
                "names": None if self.names is None else list(self.names)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        missing = [k for k in ("low", "high") if k not in d]
        if missing:
            raise ValueError(f"a normalization needs keys {missing}, got {sorted(d)}")
        return cls(d["low"], d["high"], d.get("names"))

    def check_user_values(self, name: str, x: np.ndarray, row_label: Any = None) -> None:
        """Raise ``ValueError`` naming the first user-unit value outside the box.

        Args:
            name: Column-name prefix used in the message (e.g. ``"ref_"``).
            x: User-unit stimuli, shape ``(N, D)``.
            row_label: ``row_label(i)`` describes row ``i`` (default ``"row i"``).
        """
        x = np.asarray(x, np.float64)
        low, high = np.asarray(self.low), np.asarray(self.high)
        out = (x < low) | (x > high)
        if out.any():
            i, j = np.argwhere(out)[0]
            where = row_label(i) if row_label else f"row {i}"
            raise ValueError(
                f"{where}, column {name}{j!s}: value {float(x[i, j])!r} lies outside the "
                f"normalization box [{self.low[j]!r}, {self.high[j]!r}] of dimension {j} "
                f"({int(out.sum())} value(s) out of range in all)"
            )

    def _check_last_axis(self, name: str, x: Any) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.ndim == 0 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name} must have shape (..., {self.input_dim}) for this normalization, "
                f"got {x.shape}"
            )
        return x
