"""Reading trials from CSV files and DataFrames: the column layout and cell checks.

The file format is described in :mod:`psyphy_pp.data`; :meth:`TrialData.from_csv`
and :meth:`TrialData.from_dataframe` call :func:`read_csv` and
:func:`read_dataframe`. Both collect the named columns of raw cells, then one
validator (``_from_columns``) parses every cell and raises a ``ValueError``
that names the file line (or DataFrame row), the trial and the column. The
writing side is :meth:`TrialData.to_csv` with the one CSV writer in
:mod:`psyphy_pp._csv`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from psyphy_pp._optional import import_pandas
from psyphy_pp.normalization import Normalization

if TYPE_CHECKING:
    from psyphy_pp.data import TrialData

#: The comment line of a CSV file that records the normalization box (JSON).
NORMALIZATION_TAG = "# psyphy_pp normalization:"


def is_standard(name: str) -> bool:
    """True for the stimulus and response columns (``ref_j``, ``comp_j``, ``response``)."""
    return name == "response" or _stim_index(name) is not None


def _stim_index(name: str) -> tuple[str, int] | None:
    for prefix in ("ref_", "comp_"):
        rest = name[len(prefix):]
        if name.startswith(prefix) and rest.isdigit() and (rest == "0" or not rest.startswith("0")):
            return prefix, int(rest)
    return None


def read_csv(
    cls: type[TrialData],
    path: str | os.PathLike,
    normalization: Normalization | None,
    input_dim: int | None,
) -> TrialData:
    """Read and check trials from a CSV file: the body of :meth:`TrialData.from_csv`."""
    source = os.fspath(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        lines = iter(f)
        file_norm = None
        line_count = 0
        header_text = None
        for text in lines:
            line_count += 1
            stripped = text.strip()
            if stripped.startswith(NORMALIZATION_TAG):
                file_norm = _parse_norm_line(source, line_count,
                                             stripped[len(NORMALIZATION_TAG):])
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


def read_dataframe(
    cls: type[TrialData],
    df: Any,
    normalization: Normalization | None,
    input_dim: int | None,
) -> TrialData:
    """Read and check trials from a DataFrame: the body of :meth:`TrialData.from_dataframe`."""
    import_pandas()
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
        columns[name] = values if not is_standard(name) else values.tolist()
    return _from_columns(cls, header, columns, len(df), where, "DataFrame", norm, input_dim)


def _parse_norm_line(source: str, line: int, text: str) -> Normalization:
    try:
        return Normalization.from_dict(json.loads(text))
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{source}, line {line}: cannot read the normalization line "
            f"'{NORMALIZATION_TAG} {{\"low\": [...], \"high\": [...]}}': {err}"
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
    meta = {name: np.asarray(columns[name]) for name in header if not is_standard(name)}
    if norm is not None:
        refs, comps = norm.to_model(refs), norm.to_model(comps)
    return cls(refs, comps, y.astype(np.int32), normalization=norm, metadata=meta)
