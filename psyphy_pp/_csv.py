"""The one CSV writer of the package: named columns, floats at full precision."""

from __future__ import annotations

import csv
import os
from typing import TextIO

import numpy as np

from psyphy_pp._files import atomic_path


def write_columns(
    path: str | os.PathLike,
    cols: dict[str, np.ndarray],
    preamble: str = "",
    *,
    overwrite: bool = False,
) -> None:
    """Write equal-length columns as CSV, with ``preamble`` (comment lines) first.

    Floats are written with ``repr`` (they read back exactly), integers as
    integers, anything else with ``str``. The file is written in one step
    (:func:`~psyphy_pp._files.atomic_path`): a failed write leaves no partial
    file, and an existing file as it was.

    Args:
        path: The CSV file to write.
        cols: Column name -> values, all of one length.
        preamble: Text written before the header row (``#`` comment lines).
        overwrite: Replace ``path`` if it exists.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is False.

    Examples:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "t.csv")
        >>> write_columns(path, {"x": np.array([0.1, 2.0]), "n": np.array([1, 2])})
        >>> print(open(path).read(), end="")
        x,n
        0.1,1
        2.0,2
        >>> write_columns(path, {"x": np.array([1.0])})
        Traceback (most recent call last):
        ...
        FileExistsError: .../t.csv already exists; pass overwrite=True to replace it
        >>> write_columns(path, {"x": np.array([1.0])}, overwrite=True)
        >>> tmp.cleanup()
    """
    with atomic_path(path, overwrite) as part, open(part, "w", newline="", encoding="utf-8") as f:
        write_rows(f, cols, preamble)


def write_rows(f: TextIO, cols: dict[str, np.ndarray], preamble: str = "") -> None:
    """Write ``preamble``, the header and the rows of ``cols`` to an open text file
    (the format of :func:`write_columns`)."""
    names = list(cols)

    def fmt(kind: str):
        if kind == "f":
            return lambda v: repr(float(v))
        if kind in "iu":
            return lambda v: str(int(v))
        return str

    fmts = [fmt(np.asarray(cols[n]).dtype.kind) for n in names]
    f.write(preamble)
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(names)
    for row in zip(*(np.asarray(cols[n]).tolist() for n in names)):
        writer.writerow([fn(v) for fn, v in zip(fmts, row)])
