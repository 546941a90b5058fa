"""Trial data: a validated container for oddity-task responses, and its files.

:class:`TrialData` holds the trials in the model's units (every stimulus
coordinate in ``[-1, 1]``). Real experiments use their own units (RGB values, a
DKL box, ...): a :class:`~psyphy_pp.normalization.Normalization` (defined in
:mod:`psyphy_pp.normalization`, re-exported here) is the affine map from a box
in those units to ``[-1, 1]^D``. It is stored with the data, written to and read
from its files, and used to report thresholds and draw plots in the user's units.

CSV format (:meth:`TrialData.from_csv`, :meth:`TrialData.to_csv`), one trial per
row, with a header row naming the columns:

* ``ref_0 .. ref_{D-1}``: the reference stimulus coordinates;
* ``comp_0 .. comp_{D-1}``: the comparison stimulus coordinates;
* ``response``: 1 if the observer picked the comparison as the odd one, else 0;
* any other column (e.g. ``subject``, ``session``): kept verbatim, as text, in
  :attr:`TrialData.metadata`, and written back by :meth:`TrialData.to_csv`.

Several observers. A column ``subject`` (or, without one, ``observer``) also
sets the observer index: :attr:`TrialData.observer` numbers each trial's
observer ``0 .. S-1`` in the order of first appearance and
:attr:`TrialData.observer_names` keeps the names, which a
:class:`~psyphy_pp.HierarchicalWPPM` needs. The column stays in
:attr:`TrialData.metadata` as well, so files with one observer read exactly as
before. Data built in Python get the index with ``observer=`` and
``observer_names=`` (written back as a ``subject`` column).

``D`` is read from the header. Lines that start with ``#`` before the header are
comments; one of the form ``# psyphy_pp normalization: {"low": [...], "high":
[...]}`` (JSON) says that the stimulus columns are in the user's units inside that
box (``to_csv`` writes it). Without it, the stimulus columns must already lie in
``[-1, 1]``, unless a ``normalization`` is passed to ``from_csv``. A line
``# psyphy_pp synthetic: <description>`` marks simulated trials
(:attr:`TrialData.synthetic`; ``to_csv`` writes it, ``from_csv`` reads it).

Files are UTF-8 and comma-separated; spaces around cells are stripped, and
unnamed columns that hold nothing (a trailing comma on every line) are ignored.
Malformed files raise a one-line ``ValueError`` that names the file, the line, the
trial and the column, and what to change; no row is ever dropped (only rows with
every cell empty are skipped). The reading and checking of files and DataFrames
lives in the private module ``psyphy_pp._parse``, which lists the variants it
reads and the ones it refuses.
"""

from __future__ import annotations

__all__ = ["TrialData", "Normalization", "STANDARD_COLUMNS", "OBSERVER_COLUMNS"]

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psyphy_pp._csv import write_columns
from psyphy_pp._optional import import_pandas
from psyphy_pp._parse import (
    NORMALIZATION_TAG,
    SYNTHETIC_TAG,
    check_synthetic,
    is_standard,
    read_csv,
    read_dataframe,
)
from psyphy_pp._validation import check_stimuli
from psyphy_pp.normalization import Normalization

#: Column-name prefixes/names with a fixed meaning in CSV files and DataFrames.
STANDARD_COLUMNS = ("ref_", "comp_", "response")
#: Columns that name each trial's observer, in order of preference.
OBSERVER_COLUMNS = ("subject", "observer")


def _check_observers(observer: Any, names: Any, n: int) -> tuple[np.ndarray | None, tuple | None]:
    """The validated ``(observer, observer_names)`` of ``n`` trials (both None, or both set)."""
    if observer is None:
        if names is not None:
            raise ValueError(f"observer_names was given ({list(names)[:4]}...) without observer; "
                             "pass observer (each trial's observer index) too")
        return None, None
    idx = np.asarray(observer)
    if idx.shape != (n,):
        raise ValueError(f"observer must have shape ({n},) to match refs, got {idx.shape}")
    if idx.dtype.kind not in "iu" and not (idx.dtype.kind == "f" and np.all(idx == np.round(idx))):
        raise ValueError(f"observer must hold integer indices 0 .. S-1, got dtype {idx.dtype}")
    idx = idx.astype(np.int32)
    if names is None:
        names = tuple(str(i) for i in range(int(idx.max()) + 1 if idx.size else 0))
    if isinstance(names, str) or not all(isinstance(v, (str, np.str_)) for v in names):
        raise ValueError(f"observer_names must be a sequence of strings, got {names!r}")
    names = tuple(str(v) for v in names)
    if len(set(names)) != len(names):
        raise ValueError(f"observer_names must be distinct, got {list(names)}")
    if not names:
        raise ValueError("observer_names must name at least one observer, got none")
    bad = np.flatnonzero((idx < 0) | (idx >= len(names)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"observer must lie in 0 .. {len(names) - 1} (one index per name in "
                         f"observer_names, {len(names)} names), got {int(idx[i])} at trial {i}")
    return idx, names


def _check_metadata(metadata: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a mapping of column name to values, got {type(metadata)}")
    out: dict[str, np.ndarray] = {}
    for key, values in metadata.items():
        if not isinstance(key, str) or not key or is_standard(key):
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
        synthetic: None for real data; for simulated trials a one-line description
            of where they come from (e.g. ``"simulated by psyphy_pp.simulate"``),
            stripped of surrounding spaces and kept in files.
        observer: Each trial's observer index ``0 .. S-1``, shape ``(N,)``, or
            None (one observer; the default).
        observer_names: The ``S`` observers' names (default ``"0" .. "S-1"``);
            only with ``observer``.

    Raises:
        ValueError: If a shape, value, normalization, metadata column or the
            synthetic description is invalid.

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
    synthetic: str | None = None
    observer: np.ndarray | None = None
    observer_names: tuple[str, ...] | None = None

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
        object.__setattr__(self, "synthetic", check_synthetic(self.synthetic))
        idx, names = _check_observers(self.observer, self.observer_names, refs.shape[0])
        object.__setattr__(self, "observer", idx)
        object.__setattr__(self, "observer_names", names)

    def __repr__(self) -> str:
        correct = int(self.responses.sum())
        parts = [
            f"{self.num_trials} trial{'s' if self.num_trials != 1 else ''}",
            f"input_dim={self.input_dim}",
            f"{correct} correct ({100.0 * correct / self.num_trials:.1f}%)",
            f"normalization={self.normalization!r}",
            f"metadata={list(self.metadata)}",
            f"synthetic={self.synthetic!r}",
        ]
        if self.observer_names is not None:
            parts.append(f"observers={list(self.observer_names)}")
        return f"TrialData({', '.join(parts)})"

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

    @property
    def num_observers(self) -> int:
        """Number of observers ``S`` (1 without an observer index)."""
        return 1 if self.observer_names is None else len(self.observer_names)

    def observer_trials(self, observer: int | str) -> TrialData:
        """The trials of one observer (by index or name), without the observer index.

        Raises:
            ValueError: If the data have no observer index, or no such observer.
        """
        if self.observer is None or self.observer_names is None:
            raise ValueError("these data have no observer index (observer=None); give "
                             "observer= and observer_names=, or a 'subject' column in the file")
        s = self.observer_position(observer)
        keep = self.observer == s
        return TrialData(self.refs[keep], self.comparisons[keep], self.responses[keep],
                         normalization=self.normalization,
                         metadata={k: v[keep] for k, v in self.metadata.items()},
                         synthetic=self.synthetic)

    def observer_position(self, observer: int | str) -> int:
        """The index ``0 .. S-1`` of an observer given by index or name.

        Raises:
            ValueError: If there is no such observer.
        """
        names = self.observer_names or ("0",)
        if isinstance(observer, (int, np.integer)) and not isinstance(observer, bool):
            if 0 <= int(observer) < len(names):
                return int(observer)
        elif isinstance(observer, str) and observer in names:
            return names.index(observer)
        raise ValueError(f"observer must be an index 0 .. {len(names) - 1} or one of the names "
                         f"{list(names)}, got {observer!r}")

    def with_observers_from(self, column: str | None = None) -> TrialData:
        """These trials with the observer index read from a metadata column.

        Args:
            column: The column; None takes the first of :data:`OBSERVER_COLUMNS`
                that the data have (and returns the data unchanged if none).

        Returns:
            A copy with :attr:`observer` (names numbered in order of first
            appearance) and :attr:`observer_names`; the column stays in
            :attr:`metadata`.

        Raises:
            ValueError: If ``column`` is given but not in :attr:`metadata`.
        """
        if column is None:
            column = next((c for c in OBSERVER_COLUMNS if c in self.metadata), None)
            if column is None:
                return self
        elif column not in self.metadata:
            raise ValueError(f"column must be one of the data's extra columns "
                             f"{list(self.metadata)}, got {column!r}")
        values = np.asarray(self.metadata[column]).astype(str)
        names, first, idx = np.unique(values, return_index=True, return_inverse=True)
        order = np.argsort(first)  # number the observers in order of first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return dataclasses.replace(self, observer=rank[idx.ravel()],
                                   observer_names=tuple(str(v) for v in names[order]))

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
        synthetic: str | None = None,
    ) -> TrialData:
        """Build trials from stimuli in the user's units.

        Args:
            refs: Reference stimuli in user units, shape ``(N, D)``.
            comparisons: Comparison stimuli in user units, shape ``(N, D)``.
            responses: 0/1 responses, shape ``(N,)``.
            normalization: The box of the user's units.
            metadata: Extra per-trial columns.
            synthetic: None for real data, or a description of simulated ones.

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
        return cls(out[0], out[1], responses, normalization=normalization, metadata=metadata,
                   synthetic=synthetic)

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
        if self.observer_names is not None and not any(c in cols for c in OBSERVER_COLUMNS):
            cols[OBSERVER_COLUMNS[0]] = np.asarray(self.observer_names)[self.observer]
        return cols

    def to_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the trials as CSV (module docstring), floats at full ``repr`` precision.

        With a normalization, the stimulus columns are in the user's units and a
        ``# psyphy_pp normalization:`` comment line before the header records the
        box; synthetic data get a ``# psyphy_pp synthetic:`` line with their
        description. Reading the file back with :meth:`from_csv` gives the same
        arrays, normalization and description (text in :attr:`metadata` comes back
        stripped of surrounding spaces, as every cell is).

        Args:
            path: The file to write.
            overwrite: Replace ``path`` if it exists (default: refuse).

        Raises:
            FileExistsError: If ``path`` exists and ``overwrite`` is False.
        """
        preamble = ""
        if self.normalization is not None:
            preamble += f"{NORMALIZATION_TAG} {json.dumps(self.normalization.to_dict())}\n"
        if self.synthetic is not None:
            preamble += f"{SYNTHETIC_TAG} {self.synthetic}\n"
        write_columns(path, self.columns(), preamble, overwrite=overwrite)

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
            Validated :class:`TrialData` in model units, with the normalization,
            any extra columns (as text) in :attr:`metadata`, and the file's
            synthetic description (None for real data) in :attr:`synthetic`.

        Raises:
            ValueError: For every problem with the file's content, in one line
                naming the file, the line (and trial and column) where there is
                one, and what to change: a file that is not UTF-8 or not
                comma-separated, missing columns (all named in one message), a
                row with the wrong number of fields, a value in an unnamed
                column, an unclosed quote, a non-numeric or non-finite cell, a
                response other than 0/1, a stimulus outside ``[-1, 1]`` (or
                outside the normalization box), a malformed ``# psyphy_pp`` line.
            FileNotFoundError: If ``path`` does not exist.
        """
        return read_csv(cls, path, normalization, input_dim).with_observers_from()

    def to_dataframe(self) -> Any:
        """The trials as a ``pandas.DataFrame`` in the user's units (CSV layout).

        The normalization, if any, is kept in ``df.attrs["normalization"]`` (a dict),
        and the synthetic description, if any, in ``df.attrs["synthetic"]``.

        Raises:
            ImportError: If pandas is not installed.
        """
        pd = import_pandas()
        df = pd.DataFrame(self.columns())
        if self.normalization is not None:
            df.attrs["normalization"] = self.normalization.to_dict()
        if self.synthetic is not None:
            df.attrs["synthetic"] = self.synthetic
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
        and ``df.attrs["synthetic"]`` are used when present; extra columns keep their
        dtype in :attr:`metadata`.

        Raises:
            ValueError: As :meth:`from_csv`.
            ImportError: If pandas is not installed.
        """
        return read_dataframe(cls, df, normalization, input_dim).with_observers_from()

    def save(self, path: str | os.PathLike) -> None:
        """Write the trials (and normalization, metadata, synthetic) to an ``.npz`` file."""
        arrays: dict[str, np.ndarray] = dict(
            refs=self.refs, comparisons=self.comparisons, responses=self.responses
        )
        if self.normalization is not None:
            arrays["normalization"] = np.asarray(json.dumps(self.normalization.to_dict()))
        if self.synthetic is not None:
            arrays["synthetic"] = np.asarray(self.synthetic)
        for key, values in self.metadata.items():
            arrays[f"meta:{key}"] = values
        if self.observer is not None:
            arrays["observer"] = self.observer
            arrays["observer_names"] = np.asarray(self.observer_names)
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
            synthetic = str(f["synthetic"]) if "synthetic" in f.files else None
            observer = f["observer"] if "observer" in f.files else None
            names = (tuple(str(v) for v in f["observer_names"])
                     if "observer_names" in f.files else None)
            return cls(f["refs"], f["comparisons"], f["responses"],
                       normalization=norm, metadata=meta, synthetic=synthetic,
                       observer=observer, observer_names=names)
