"""Reading trials from CSV files and DataFrames: the column layout and cell checks.

The file format is described in :mod:`psyphy_pp.data`; :meth:`TrialData.from_csv`
and :meth:`TrialData.from_dataframe` call :func:`read_csv` and
:func:`read_dataframe`. Both collect the named columns of raw cells, then one
validator (``_from_columns``) parses every cell and raises a ``ValueError``
that names the file line (or DataFrame row), the trial and the column. The
writing side is :meth:`TrialData.to_csv` with the one CSV writer in
:mod:`psyphy_pp._csv`.

Every problem met reading a file is a one-line ``ValueError`` that names the
file, the line where there is one, and what to change. The variants of the
format that :func:`read_csv` reads, and the ones it refuses:

* spaces around cells and header names are stripped (``ref_0, comp_0``);
* columns with an empty header name and only empty cells (a trailing comma on
  every line, as spreadsheets write) are ignored, and so are empty cells past
  the last named column; an unnamed column that holds a value is an error;
* rows whose cells are all empty are skipped; no other row is ever dropped;
* files must be UTF-8 (a byte-order mark is allowed); other encodings are
  refused, naming the line and the byte, rather than guessed;
* the delimiter is the comma; a header separated by semicolons or tabs is
  refused with a message saying so (such files often use decimal commas too,
  which cannot be told apart from a comma delimiter).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from psyphy_pp._optional import import_pandas
from psyphy_pp.normalization import Normalization

if TYPE_CHECKING:
    from psyphy_pp.data import TrialData

#: The comment line of a CSV file that records the normalization box (JSON).
NORMALIZATION_TAG = "# psyphy_pp normalization:"
#: The comment line of a CSV file that marks the trials as synthetic (a description).
SYNTHETIC_TAG = "# psyphy_pp synthetic:"

#: Ends the line stream given to the CSV reader; cannot occur in a file (NUL is refused).
_SENTINEL = "\x00\n"


def is_standard(name: str) -> bool:
    """True for the stimulus and response columns (``ref_j``, ``comp_j``, ``response``)."""
    return name == "response" or _stim_index(name) is not None


def _stim_index(name: str) -> tuple[str, int] | None:
    for prefix in ("ref_", "comp_"):
        rest = name[len(prefix):]
        if (name.startswith(prefix) and rest.isascii() and rest.isdigit()
                and (rest == "0" or not rest.startswith("0"))):
            return prefix, int(rest)
    return None


def check_synthetic(value: Any, what: str = "synthetic") -> str | None:
    """``value`` as a synthetic-data description (stripped), or None.

    Raises:
        ValueError: Unless ``value`` is None or a non-empty one-line string.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value.strip().splitlines()) != 1:
        raise ValueError(
            f"{what} must be None (real data) or a non-empty one-line description such as "
            f"'simulated by psyphy_pp.simulate', got {value!r}"
        )
    return value.strip()


def _show(cell: Any) -> str:
    """``repr`` of a cell for a message, cut to 40 characters."""
    text = repr(cell)
    return text if len(text) <= 42 else f"{text[:40]}... ({len(str(cell))} characters)"


def _line_and_column(prefix: str) -> tuple[int, int]:
    """Line and character (from 1) just after ``prefix``, counting lines as the reader does."""
    lines = io.StringIO(prefix, newline="").readlines()
    if not lines or lines[-1].endswith(("\n", "\r")):
        return len(lines) + 1, 1
    return len(lines), len(lines[-1]) + 1


def _decode(source: str, raw: bytes) -> str:
    """The file's text: UTF-8, with or without a byte-order mark, and no NUL."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValueError(
            f"{source}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark); "
            "psyphy_pp reads UTF-8: save it as 'CSV UTF-8' (comma delimited)"
        )
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line, col = _line_and_column(raw[:err.start].decode("utf-8"))
        raise ValueError(
            f"{source}, line {line}, character {col}: byte 0x{raw[err.start]:02x} is not UTF-8 "
            "(the file may be Latin-1 or Windows-1252 text); save the file as UTF-8 "
            "(e.g. 'CSV UTF-8' in Excel) and read it again"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        line, col = _line_and_column(text[:nul])
        raise ValueError(
            f"{source}, line {line}, character {col}: a NUL character (byte 0x00), which a text "
            "file does not hold; is it a binary or UTF-16 file? Save it as UTF-8 CSV"
        )
    return text


def _check_delimiter(source: str, line: int, header: str) -> None:
    """Refuse a header separated by semicolons or tabs instead of commas."""
    if "," in header:
        return
    counts = {";": header.count(";"), "\t": header.count("\t")}
    found = max(counts, key=lambda k: counts[k])
    if counts[found]:
        name = "semicolons (';')" if found == ";" else "tabs"
        raise ValueError(
            f"{source}, line {line}: the header is separated by {name}, but psyphy_pp reads "
            "comma-separated files; export the file as CSV with commas between the cells "
            "(and decimal points, not decimal commas)"
        )


def _read_preamble(source: str, lines: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """Index of the header line, and the tag lines (comments and blank lines) before it."""
    found: dict[str, tuple[int, Any]] = {}
    for k, text in enumerate(lines):
        stripped = text.strip()
        line = k + 1
        for tag in (NORMALIZATION_TAG, SYNTHETIC_TAG):
            if stripped.startswith(tag):
                if tag in found:
                    raise ValueError(
                        f"{source}, line {line}: a second '{tag}' line (the first is line "
                        f"{found[tag][0]}); keep one of them"
                    )
                rest = stripped[len(tag):]
                if tag == NORMALIZATION_TAG:
                    value: Any = _parse_norm_line(source, line, rest)
                else:
                    value = _parse_synthetic_line(source, line, rest)
                found[tag] = (line, value)
                break
        else:
            if stripped and not stripped.startswith("#"):
                return k, {tag: value for tag, (_, value) in found.items()}
    raise ValueError(
        f"{source}: the file has no header row (it is empty or holds only comments); "
        "its first line that is not a '#' comment must name the columns "
        "(ref_0, ..., comp_0, ..., response)"
    )


def read_csv(
    cls: type[TrialData],
    path: str | os.PathLike,
    normalization: Normalization | None,
    input_dim: int | None,
) -> TrialData:
    """Read and check trials from a CSV file: the body of :meth:`TrialData.from_csv`."""
    source = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    lines = io.StringIO(_decode(source, raw), newline="").readlines()
    k, tags = _read_preamble(source, lines)
    header_line = k + 1
    _check_delimiter(source, header_line, lines[k])
    # The sentinel line shows whether the last record closed its quotes: if not,
    # the reader swallows it into that record.
    reader = csv.reader(iter([*lines[k:], _SENTINEL]), skipinitialspace=True)
    records: list[tuple[int, list[str]]] = []
    while True:
        start = header_line + reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # e.g. a field larger than the csv module's limit
            raise ValueError(
                f"{source}, line {start}: cannot split the line into cells ({err}); "
                "check the quotes in that line"
            ) from None
        records.append((start, row))
    last_start, last = records.pop()
    if last != [_SENTINEL.rstrip("\n")]:
        raise ValueError(
            f"{source}, line {last_start}: a quote (\") opened in this line is never closed, so "
            "the rest of the file would be one cell; close the quote or remove it"
        )
    (_, header), *body = [(line, [cell.strip() for cell in row]) for line, row in records]
    rows = [(line, row) for line, row in body if any(row)]
    named = [(pos, name) for pos, name in enumerate(header) if name]
    width = named[-1][0] + 1 if named else 0
    unnamed = {pos for pos in range(width) if not header[pos]}
    line_of = [line for line, _ in rows]

    def where(i: int) -> str:
        return f"{source}, line {line_of[i]} (trial {i})"

    for i, (_, row) in enumerate(rows):
        if len(row) < width:
            raise ValueError(
                f"{where(i)}: expected {width} fields as in the header, got {len(row)}; add the "
                "missing cells (a cell that holds a comma must be quoted)"
            )
        for pos in [*sorted(unnamed), *range(width, len(row))]:
            if row[pos]:
                if pos < len(header):
                    raise ValueError(
                        f"{where(i)}: column {pos + 1} has no name in the header (line "
                        f"{header_line}) but holds {_show(row[pos])}; name the column in the "
                        "header, or delete it"
                    )
                raise ValueError(
                    f"{where(i)}: expected {width} fields as in the header, got {len(row)} "
                    f"(field {pos + 1} holds {_show(row[pos])}); remove the extra cells, "
                    "or quote a cell that holds a comma"
                )
    norm = _merge_norms(source, normalization, tags.get(NORMALIZATION_TAG))
    names = [name for _, name in named]
    columns = {name: [row[pos] for _, row in rows] for pos, name in named}
    return _from_columns(cls, names, columns, len(rows), where, source, norm, input_dim,
                         tags.get(SYNTHETIC_TAG))


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
        raise ValueError(f"DataFrame has duplicate columns {dup}; rename one of each")
    attrs = getattr(df, "attrs", {}) or {}
    df_norm = (Normalization.from_dict(attrs["normalization"])
               if attrs.get("normalization") is not None else None)
    norm = _merge_norms("DataFrame", normalization, df_norm)
    synthetic = check_synthetic(attrs.get("synthetic"), 'DataFrame.attrs["synthetic"]')
    index = list(df.index)

    def where(i: int) -> str:
        return f"DataFrame row {index[i]!r} (trial {i})"

    columns = {}
    for name, col in zip(header, df.columns):
        values = df[col].to_numpy()
        columns[name] = values if not is_standard(name) else values.tolist()
    return _from_columns(cls, header, columns, len(df), where, "DataFrame", norm, input_dim,
                         synthetic)


def _parse_norm_line(source: str, line: int, text: str) -> Normalization:
    try:
        return Normalization.from_dict(json.loads(text))
    except Exception as err:  # any malformed JSON or box: one message for all
        raise ValueError(
            f"{source}, line {line}: cannot read the normalization line "
            f"'{NORMALIZATION_TAG} {{\"low\": [...], \"high\": [...]}}': {err}; "
            "fix or delete the line"
        ) from err


def _parse_synthetic_line(source: str, line: int, text: str) -> str:
    if not text.strip():
        raise ValueError(
            f"{source}, line {line}: the line '{SYNTHETIC_TAG}' gives no description; "
            f"write one after it (e.g. '{SYNTHETIC_TAG} simulated by my_script.py'), "
            "or delete the line if the data are real"
        )
    return text.strip()


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


def _expected_columns(source: str, header: Sequence[str],
                      input_dim: int | None) -> tuple[int, list[str]]:
    """``D`` and the standard columns expected for it."""
    if input_dim is None:
        found = [(_stim_index(n), n) for n in header]
        top = max(((p_k[1], n) for p_k, n in found if p_k is not None), default=None)
        if top is None:
            input_dim = 2
        elif top[0] + 1 > max(len(header), 16):  # cannot all be there; do not list them
            raise ValueError(
                f"{source}: column {top[1]} implies input_dim {top[0] + 1}, which needs "
                f"{2 * top[0] + 3} columns, but the header has {len(header)}; number the "
                "stimulus columns from 0 (ref_0 .. ref_{D-1}, comp_0 .. comp_{D-1})"
            )
        else:
            input_dim = top[0] + 1
    elif input_dim > max(len(header), 16):
        raise ValueError(
            f"{source}: input_dim={input_dim} needs {2 * input_dim + 1} columns (ref_0 .. "
            f"ref_{input_dim - 1}, comp_0 .. comp_{input_dim - 1}, response), but the header "
            f"has {len(header)}; pass the input_dim of the file, or none to read it from the header"
        )
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
    except (TypeError, ValueError, OverflowError):
        return None


def _names(header: Sequence[str]) -> str:
    return ", ".join(n if n.isprintable() else repr(n) for n in header) or "no columns"


def _from_columns(
    cls: type[TrialData],
    header: Sequence[str],
    columns: Mapping[str, Sequence[Any]],
    n: int,
    where: Callable[[int], str],
    source: str,
    norm: Normalization | None,
    input_dim: int | None,
    synthetic: str | None = None,
) -> TrialData:
    """Validate named columns of raw cells and build :class:`TrialData`."""
    if input_dim is not None and (isinstance(input_dim, bool) or not isinstance(input_dim, int)
                                  or input_dim < 1):
        raise ValueError(f"input_dim must be a positive integer or None, got {input_dim!r}")
    dup = sorted({c for c in header if list(header).count(c) > 1})
    if dup:
        raise ValueError(f"{source}: duplicate columns {dup} in the header; rename one of each")
    if input_dim is None and norm is not None:
        input_dim = norm.input_dim
    d, expected = _expected_columns(source, header, input_dim)
    missing = [c for c in expected if c not in header]
    if missing:
        lower = {c.lower(): c for c in header}
        near = [f"{lower[c.lower()]!r} for {c}" for c in missing if c.lower() in lower]
        hint = f" (names are case-sensitive: found {', '.join(near)})" if near else ""
        raise ValueError(
            f"{source}: missing column(s) {', '.join(missing)} (expected {', '.join(expected)} "
            f"for input_dim {d}; found {_names(header)}); name them so in the header{hint}"
        )
    unexpected = [c for c in header if _stim_index(c) is not None and c not in expected]
    if unexpected:
        raise ValueError(
            f"{source}: column(s) {', '.join(unexpected)} do not fit input_dim {d} "
            f"(expected {', '.join(expected)}); drop them, or read with the input_dim they belong to"
        )
    if norm is not None and norm.input_dim != d:
        raise ValueError(
            f"{source}: the normalization has input_dim {norm.input_dim} but the columns "
            f"give input_dim {d}; give a normalization box with {d} dimension(s)"
        )
    if n == 0:
        raise ValueError(f"{source}: no trials after the header; add one row per trial")

    values: dict[str, np.ndarray] = {}
    for name in expected:
        out = np.empty(n, np.float64)
        for i, cell in enumerate(columns[name]):
            v = _parse_number(cell)
            if v is None or not math.isfinite(v):
                kind = "a number" if name != "response" else "0 or 1"
                shown = "an empty cell" if (v is None and str(cell).strip() == "") else _show(cell)
                raise ValueError(
                    f"{where(i)}, column {name}: expected {kind}, got {shown}; correct the cell "
                    "(no trial is skipped)"
                )
            out[i] = v
        values[name] = out
    y = values["response"]
    bad = np.flatnonzero((y != 0.0) & (y != 1.0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where(i)}, column response: expected 0 or 1, got {_show(columns['response'][i])} "
            f"({bad.size} bad response(s) in all); code each response as 1 (the odd one was "
            "found) or 0"
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
    try:
        return cls(refs, comps, y.astype(np.int32), normalization=norm, metadata=meta,
                   synthetic=synthetic)
    except ValueError as err:  # a check of TrialData itself: say which input failed it
        raise ValueError(f"{source}: {err}") from err
