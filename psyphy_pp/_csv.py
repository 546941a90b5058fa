"""The one CSV writer of the package: named columns, floats at full precision."""

from __future__ import annotations

import csv
import os

import numpy as np


def write_columns(path: str | os.PathLike, cols: dict[str, np.ndarray], preamble: str = "") -> None:
    """Write equal-length columns as CSV, with ``preamble`` (comment lines) first.

    Floats are written with ``repr`` (they read back exactly), integers as
    integers, anything else with ``str``.
    """
    names = list(cols)

    def fmt(kind: str):
        if kind == "f":
            return lambda v: repr(float(v))
        if kind in "iu":
            return lambda v: str(int(v))
        return str

    fmts = [fmt(np.asarray(cols[n]).dtype.kind) for n in names]
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(preamble)
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for row in zip(*(np.asarray(cols[n]).tolist() for n in names)):
            writer.writerow([fn(v) for fn, v in zip(fmts, row)])
