"""Trial data: a validated container for oddity-task responses, and its files.

:class:`TrialData` holds the trials in the model's units (every stimulus
coordinate in ``[-1, 1]``). Real experiments use their own units (RGB values, a
DKL box, ...): a :class:`Normalization` is the affine map from a box in those
units to ``[-1, 1]^D``. It is stored with the data, written to and read from
its files, and used to report thresholds and draw plots in the user's units.

CSV format (:meth:`TrialData.from_csv`, :meth:`TrialData.to_csv`), one trial per
row, with a header row naming the columns:

* ``ref_0 .. ref_{D-1}``: the reference stimulus coordinates;
* ``comp_0 .. comp_{D-1}``: the comparison stimulus coordinates;
* ``response``: 1 if the observer picked the comparison as the odd one, else 0;
* any other column (e.g. ``subject``, ``session``): kept verbatim, as text, in
  :attr:`TrialData.metadata`, and written back by :meth:`TrialData.to_csv`.

``D`` is read from the header. Lines that start with ``#`` before the header are
comments; one of the form ``# psyphy_pp normalization: {"low": [...], "high":
[...]}`` (JSON) says that the stimulus columns are in the user's units inside that
box (``to_csv`` writes it). Without it, the stimulus columns must already lie in
``[-1, 1]``, unless a ``normalization`` is passed to ``from_csv``. Malformed files
raise a ``ValueError`` that names the file line, the trial and the column; no row
is ever dropped (only blank lines are skipped).
"""

from __future__ import annotations

__all__ = ["TrialData", "Normalization", "STANDARD_COLUMNS"]

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psyphy_pp._csv import write_columns
from psyphy_pp._validation import check_stimuli

#: Column-name prefixes/names with a fixed meaning in CSV files and DataFrames.
STANDARD_COLUMNS = ("ref_", "comp_", "response")

_NORMALIZATION_TAG = "# psyphy_pp normalization:"


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


def _check_metadata(metadata: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a mapping of column name to values, got {type(metadata)}")
    out: dict[str, np.ndarray] = {}
    for key, values in metadata.items():
        if not isinstance(key, str) or not key or _is_standard(key):
            raise ValueError(
                f"metadata keys must be non-empty strings other than the stimulus/response "
                f"columns {STANDARD_COLUMNS}, got {key!r}"
            )
        arr = np.asarray(values)
        if arr.dtype.kind not in "biufU":
            arr = arr.astype(str)
        if arr.shape != (n,):
            raise ValueError(f"metadata[{key!r}] must have shape ({n},), got {arr.shape}")
        out[key] = arr
    return out


def _is_standard(name: str) -> bool:
    return name == "response" or _stim_index(name) is not None


def _stim_index(name: str) -> tuple[str, int] | None:
    for prefix in ("ref_", "comp_"):
        rest = name[len(prefix):]
        if name.startswith(prefix) and rest.isdigit() and (rest == "0" or not rest.startswith("0")):
            return prefix, int(rest)
    return None


@dataclass(frozen=True)
class TrialData:
    """Oddity-task trials: references, comparisons and binary responses.

    Arrays are validated and stored as numpy (float64 stimuli, int responses):
    shapes ``(N, D)``, ``(N, D)`` and ``(N,)``, finite stimuli in ``[-1, 1]``,
    responses in {0, 1} (1 = correct). Stimuli are always in the model's units;
    :attr:`user_refs` and :attr:`user_comparisons` give them in the user's.

    Args:
        refs: Reference stimuli, shape ``(N, D)``.
        comparisons: Comparison stimuli, shape ``(N, D)``.
        responses: 1 if the observer picked the comparison as the odd one.
        normalization: The :class:`Normalization` from the user's units to
            ``[-1, 1]^D``, or None when the data were given in model units.
        metadata: Extra per-trial columns (e.g. ``subject``, ``session``), each of
            shape ``(N,)``; kept as they are and written back to files.

    Raises:
        ValueError: If a shape, value, normalization or metadata column is invalid.

    Examples:
        >>> data = TrialData([[0.0, 0.0]], [[0.1, 0.0]], [1])
        >>> data.num_trials, data.input_dim
        (1, 2)
    """

    refs: np.ndarray
    comparisons: np.ndarray
    responses: np.ndarray
    normalization: Normalization | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        refs = check_stimuli("refs", self.refs)
        comps = check_stimuli("comparisons", self.comparisons)
        if comps.shape != refs.shape:
            raise ValueError(
                f"comparisons must have the same shape as refs {refs.shape}, got {comps.shape}"
            )
        y = np.asarray(self.responses)
        if y.shape != (refs.shape[0],):
            raise ValueError(
                f"responses must have shape ({refs.shape[0]},) to match refs, got {y.shape}"
            )
        if y.size and not np.isin(y, (0, 1)).all():
            i = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
            raise ValueError(f"responses must be 0 or 1, got {y[i].item()!r} at index {i}")
        if refs.shape[0] == 0:
            raise ValueError("TrialData needs at least one trial, got N = 0")
        norm = self.normalization
        if norm is not None:
            if not isinstance(norm, Normalization):
                raise ValueError(
                    f"normalization must be a psyphy_pp.Normalization or None, got {type(norm).__name__}"
                )
            if norm.input_dim != refs.shape[1]:
                raise ValueError(
                    f"normalization must have input_dim {refs.shape[1]} to match refs, "
                    f"got {norm.input_dim}"
                )
        object.__setattr__(self, "refs", refs)
        object.__setattr__(self, "comparisons", comps)
        object.__setattr__(self, "responses", y.astype(np.int32))
        object.__setattr__(self, "metadata", _check_metadata(self.metadata, refs.shape[0]))

    @property
    def num_trials(self) -> int:
        """Number of trials ``N``."""
        return self.refs.shape[0]

    @property
    def input_dim(self) -> int:
        """Stimulus dimension ``D``."""
        return self.refs.shape[1]

    @property
    def user_refs(self) -> np.ndarray:
        """References in the user's units (the model's units without a normalization)."""
        return self.refs if self.normalization is None else self.normalization.to_user(self.refs)

    @property
    def user_comparisons(self) -> np.ndarray:
        """Comparisons in the user's units (the model's units without a normalization)."""
        if self.normalization is None:
            return self.comparisons
        return self.normalization.to_user(self.comparisons)

    def check_model(self, input_dim: int) -> None:
        """Raise ``ValueError`` if the data's ``D`` differs from the model's."""
        if self.input_dim != input_dim:
            raise ValueError(
                f"data has input_dim {self.input_dim} but the model expects "
                f"input_dim={input_dim}"
            )

    def unique_refs(self) -> np.ndarray:
        """The distinct reference points, shape ``(R, D)``, in sorted order."""
        return np.unique(self.refs, axis=0)

    @classmethod
    def from_user_units(
        cls,
        refs: Any,
        comparisons: Any,
        responses: Any,
        normalization: Normalization,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> TrialData:
        """Build trials from stimuli in the user's units.

        Args:
            refs: Reference stimuli in user units, shape ``(N, D)``.
            comparisons: Comparison stimuli in user units, shape ``(N, D)``.
            responses: 0/1 responses, shape ``(N,)``.
            normalization: The box of the user's units.
            metadata: Extra per-trial columns.

        Raises:
            ValueError: If a value lies outside the box (naming row and column),
                or for the checks of :class:`TrialData`.

        Examples:
            >>> norm = Normalization([0, 0], [10, 10])
            >>> d = TrialData.from_user_units([[5.0, 5.0]], [[7.5, 5.0]], [1], norm)
            >>> d.comparisons.tolist(), d.user_comparisons.tolist()
            ([[0.5, 0.0]], [[7.5, 5.0]])
        """
        if not isinstance(normalization, Normalization):
            raise ValueError(
                f"normalization must be a psyphy_pp.Normalization, got {type(normalization).__name__}"
            )
        out = []
        for name, x in (("ref_", refs), ("comp_", comparisons)):
            x = np.asarray(x, np.float64)
            if x.ndim != 2 or x.shape[1] != normalization.input_dim:
                raise ValueError(
                    f"{name.rstrip('_')} stimuli must have shape (N, {normalization.input_dim}), "
                    f"got {x.shape}"
                )
            bad = ~np.isfinite(x)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise ValueError(f"row {i}, column {name}{j}: value {float(x[i, j])!r} is not finite")
            normalization.check_user_values(name, x)
            out.append(normalization.to_model(x))
        return cls(out[0], out[1], responses, normalization=normalization, metadata=metadata)

    # -- files --------------------------------------------------------------------
    def columns(self) -> dict[str, np.ndarray]:
        """The trials as named columns in the user's units (the CSV layout)."""
        d = self.input_dim
        if self.normalization is None:
            refs, comps = self.refs, self.comparisons
        else:
            refs = self.normalization.to_user_exact(self.refs)
            comps = self.normalization.to_user_exact(self.comparisons)
        cols: dict[str, np.ndarray] = {}
        cols.update({f"ref_{j}": refs[:, j] for j in range(d)})
        cols.update({f"comp_{j}": comps[:, j] for j in range(d)})
        cols["response"] = self.responses
        cols.update(self.metadata)
        return cols

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the trials as CSV (module docstring), floats at full ``repr`` precision.

        With a normalization, the stimulus columns are in the user's units and a
        ``# psyphy_pp normalization:`` comment line before the header records the
        box; reading the file back with :meth:`from_csv` gives the same arrays.
        """
        preamble = ""
        if self.normalization is not None:
            preamble = f"{_NORMALIZATION_TAG} {json.dumps(self.normalization.to_dict())}\n"
        write_columns(path, self.columns(), preamble)

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        *,
        normalization: Normalization | None = None,
        input_dim: int | None = None,
    ) -> TrialData:
        """Read trials from a CSV file (format in the module docstring).

        Args:
            path: The file.
            normalization: The box of the user's units, if the stimulus columns
                are not in ``[-1, 1]`` and the file has no normalization line.
                If both are present they must agree.
            input_dim: The expected ``D`` (default: read from the header).

        Returns:
            Validated :class:`TrialData` in model units, with the normalization
            and any extra columns (as text) in :attr:`metadata`.

        Raises:
            ValueError: Missing columns (all named in one message), a row with the
                wrong number of fields, a non-numeric or non-finite cell, a
                response other than 0/1, or a stimulus outside ``[-1, 1]`` (or
                outside the normalization box); the message names the file line,
                the trial index and the column.
            FileNotFoundError: If ``path`` does not exist.
        """
        source = os.fspath(path)
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = iter(f)
            file_norm = None
            line_count = 0
            header_text = None
            for text in lines:
                line_count += 1
                stripped = text.strip()
                if stripped.startswith(_NORMALIZATION_TAG):
                    file_norm = _parse_norm_line(source, line_count,
                                                 stripped[len(_NORMALIZATION_TAG):])
                elif stripped.startswith("#") or not stripped:
                    continue
                else:
                    header_text = text
                    break
            if header_text is None:
                raise ValueError(f"{source}: the file has no header row (it is empty)")
            header = next(csv.reader([header_text]))
            header_line = line_count
            reader = csv.reader(lines)
            rows: list[list[str]] = []
            line_numbers: list[int] = []
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                rows.append(row)
                line_numbers.append(header_line + reader.line_num)
        norm = _merge_norms(source, normalization, file_norm)

        def where(i: int) -> str:
            return f"{source}, line {line_numbers[i]} (trial {i})"

        for i, row in enumerate(rows):
            if len(row) != len(header):
                raise ValueError(
                    f"{where(i)}: expected {len(header)} fields as in the header, got {len(row)}"
                )
        columns = {name: [row[k] for row in rows] for k, name in enumerate(header)}
        return _from_columns(cls, header, columns, len(rows), where, source, norm, input_dim)

    def to_dataframe(self) -> Any:
        """The trials as a ``pandas.DataFrame`` in the user's units (CSV layout).

        The normalization, if any, is kept in ``df.attrs["normalization"]`` (a dict).

        Raises:
            ImportError: If pandas is not installed.
        """
        pd = _import_pandas()
        df = pd.DataFrame(self.columns())
        if self.normalization is not None:
            df.attrs["normalization"] = self.normalization.to_dict()
        return df

    @classmethod
    def from_dataframe(
        cls,
        df: Any,
        *,
        normalization: Normalization | None = None,
        input_dim: int | None = None,
    ) -> TrialData:
        """Read trials from a ``pandas.DataFrame`` with the CSV columns.

        Checked like :meth:`from_csv`; errors name the row's index label and the
        column. ``df.attrs["normalization"]`` (as written by :meth:`to_dataframe`)
        is used when present; extra columns keep their dtype in :attr:`metadata`.

        Raises:
            ValueError: As :meth:`from_csv`.
            ImportError: If pandas is not installed.
        """
        _import_pandas()
        header = [str(c) for c in df.columns]
        if len(set(header)) != len(header):
            dup = sorted({c for c in header if header.count(c) > 1})
            raise ValueError(f"DataFrame has duplicate columns {dup}")
        attrs = getattr(df, "attrs", {}) or {}
        df_norm = (Normalization.from_dict(attrs["normalization"])
                   if attrs.get("normalization") is not None else None)
        norm = _merge_norms("DataFrame", normalization, df_norm)
        index = list(df.index)

        def where(i: int) -> str:
            return f"DataFrame row {index[i]!r} (trial {i})"

        columns = {}
        for name, col in zip(header, df.columns):
            values = df[col].to_numpy()
            columns[name] = values if not _is_standard(name) else values.tolist()
        return _from_columns(cls, header, columns, len(df), where, "DataFrame", norm, input_dim)

    def save(self, path: str | os.PathLike) -> None:
        """Write the trials (and normalization and metadata) to an ``.npz`` file."""
        arrays: dict[str, np.ndarray] = dict(
            refs=self.refs, comparisons=self.comparisons, responses=self.responses
        )
        if self.normalization is not None:
            arrays["normalization"] = np.asarray(json.dumps(self.normalization.to_dict()))
        for key, values in self.metadata.items():
            arrays[f"meta:{key}"] = values
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrialData:
        """Read trials written by :meth:`save` (validated again)."""
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("refs", "comparisons", "responses") if k not in f.files]
            if missing:
                raise ValueError(f"{os.fspath(path)!r} lacks arrays {missing}")
            norm = None
            if "normalization" in f.files:
                norm = Normalization.from_dict(json.loads(str(f["normalization"])))
            meta = {k[len("meta:"):]: f[k] for k in f.files if k.startswith("meta:")}
            return cls(f["refs"], f["comparisons"], f["responses"],
                       normalization=norm, metadata=meta)


def _import_pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pandas is needed for DataFrame conversion; install it with `pip install pandas`"
        ) from err
    return pd


def _parse_norm_line(source: str, line: int, text: str) -> Normalization:
    try:
        return Normalization.from_dict(json.loads(text))
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{source}, line {line}: cannot read the normalization line "
            f"'{_NORMALIZATION_TAG} {{\"low\": [...], \"high\": [...]}}': {err}"
        ) from err


def _merge_norms(source: str, given: Normalization | None,
                 stored: Normalization | None) -> Normalization | None:
    if given is not None and not isinstance(given, Normalization):
        raise ValueError(
            f"normalization must be a psyphy_pp.Normalization or None, got {type(given).__name__}"
        )
    if given is None or stored is None:
        return given if given is not None else stored
    if (given.low, given.high) != (stored.low, stored.high):
        raise ValueError(
            f"{source} records the normalization box low={list(stored.low)}, "
            f"high={list(stored.high)}, but normalization=low={list(given.low)}, "
            f"high={list(given.high)} was given; drop one of them or make them agree"
        )
    return given if given.names is not None else stored


def _expected_columns(header: Sequence[str], input_dim: int | None) -> tuple[int, list[str]]:
    """``D`` and the standard columns expected for it."""
    if input_dim is None:
        found = [_stim_index(n) for n in header]
        indices = [k for p_k in found if p_k is not None for k in [p_k[1]]]
        input_dim = max(indices) + 1 if indices else 2
    expected = [f"ref_{j}" for j in range(input_dim)] + [f"comp_{j}" for j in range(input_dim)]
    return input_dim, expected + ["response"]


def _parse_number(cell: Any) -> float | None:
    """The cell as a float, or None if it is not a number (empty, text, ...)."""
    if isinstance(cell, (bool, np.bool_)):
        return None
    if isinstance(cell, str):
        try:
            return float(cell.strip())
        except ValueError:
            return None
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def _from_columns(
    cls: type[TrialData],
    header: Sequence[str],
    columns: Mapping[str, Sequence[Any]],
    n: int,
    where: Any,
    source: str,
    norm: Normalization | None,
    input_dim: int | None,
) -> TrialData:
    """Validate named columns of raw cells and build :class:`TrialData`."""
    dup = sorted({c for c in header if list(header).count(c) > 1})
    if dup:
        raise ValueError(f"{source}: duplicate columns {dup} in the header")
    if input_dim is None and norm is not None:
        input_dim = norm.input_dim
    d, expected = _expected_columns(header, input_dim)
    missing = [c for c in expected if c not in header]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {', '.join(missing)} (expected {', '.join(expected)} "
            f"for input_dim {d}; found {', '.join(header) if header else 'no columns'})"
        )
    unexpected = [c for c in header if _stim_index(c) is not None and c not in expected]
    if unexpected:
        raise ValueError(
            f"{source}: column(s) {', '.join(unexpected)} do not fit input_dim {d} "
            f"(expected {', '.join(expected)})"
        )
    if norm is not None and norm.input_dim != d:
        raise ValueError(
            f"{source}: the normalization has input_dim {norm.input_dim} but the columns "
            f"give input_dim {d}"
        )
    if n == 0:
        raise ValueError(f"{source}: no trials after the header")

    values: dict[str, np.ndarray] = {}
    for name in expected:
        out = np.empty(n, np.float64)
        for i, cell in enumerate(columns[name]):
            v = _parse_number(cell)
            if v is None or not math.isfinite(v):
                kind = "a number" if name != "response" else "0 or 1"
                shown = "an empty cell" if (v is None and str(cell).strip() == "") else repr(cell)
                raise ValueError(f"{where(i)}, column {name}: expected {kind}, got {shown}")
            out[i] = v
        values[name] = out
    y = values["response"]
    bad = np.flatnonzero((y != 0.0) & (y != 1.0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where(i)}, column response: expected 0 or 1, got {columns['response'][i]!r} "
            f"({bad.size} bad response(s) in all)"
        )
    refs = np.stack([values[f"ref_{j}"] for j in range(d)], axis=1)
    comps = np.stack([values[f"comp_{j}"] for j in range(d)], axis=1)
    for prefix, x in (("ref_", refs), ("comp_", comps)):
        if norm is not None:
            norm.check_user_values(prefix, x, where)
        else:
            out = np.abs(x) > 1.0
            if out.any():
                i, j = np.argwhere(out)[0]
                raise ValueError(
                    f"{where(i)}, column {prefix}{j}: value {float(x[i, j])!r} lies outside [-1, 1] "
                    f"({int(out.sum())} value(s) out of range in all); normalise the stimuli "
                    "or give the box of your units (normalization=Normalization(low, high), "
                    "or --low/--high on the command line)"
                )
    meta = {name: np.asarray(columns[name]) for name in header if not _is_standard(name)}
    if norm is not None:
        refs, comps = norm.to_model(refs), norm.to_model(comps)
    return cls(refs, comps, y.astype(np.int32), normalization=norm, metadata=meta)
