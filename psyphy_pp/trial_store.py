"""The crash-safe store of an experiment session: one SQLite file.

:class:`TrialStore` keeps everything an :class:`~psyphy_pp.Experiment` needs to
resume exactly: its settings, every trial asked and every response told, every
fit, and one row per ``ask`` (the random state of an ask is its index). It uses
the standard library's :mod:`sqlite3`:

* **WAL journal, one transaction per call.** A ``tell`` is committed (and its
  transaction closed) before it returns, so a process killed at any moment
  loses nothing already told; a half-written transaction is rolled back when
  the file is next opened.
* **Writers are serialised.** Every write takes SQLite's write lock
  (``BEGIN IMMEDIATE``) and waits up to ``timeout`` seconds for another
  process's write to finish, then raises :class:`SessionBusyError`. An ``ask``
  holds the lock while it chooses its trials, so two processes asking at once
  get different, consecutive batches.
* **A schema version.** The ``meta`` table names the application
  (:data:`APPLICATION`) and the schema version (:data:`SCHEMA_VERSION`); a file
  without them, a newer version, or a file that is not SQLite at all raises
  :class:`SessionFileError`, which names the file.

Tables: ``meta(key, value)`` (JSON values), ``trials(id, batch, source, ref,
comparison, response, asked_at, told_at)`` (stimuli as JSON lists of floats in
model units, written at full precision), ``asks(batch, num_trials, strategy,
fit_id, seconds, fallback, asked_at)`` and ``fits(id, num_trials, W, factor,
info, created_at)`` (arrays as ``.npy`` bytes).
"""

from __future__ import annotations

__all__ = [
    "APPLICATION",
    "SCHEMA_VERSION",
    "SessionBusyError",
    "SessionFileError",
    "StoredFit",
    "TrialStore",
]

import io
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The ``meta`` table's ``application`` value.
APPLICATION = "psyphy_pp experiment"

#: The version of the tables this psyphy_pp writes and reads.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trials (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL,
    source TEXT NOT NULL,
    ref TEXT NOT NULL,
    comparison TEXT NOT NULL,
    response INTEGER,
    asked_at REAL NOT NULL,
    told_at REAL
);
CREATE TABLE asks (
    batch INTEGER PRIMARY KEY,
    num_trials INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    fit_id INTEGER,
    seconds REAL NOT NULL,
    fallback INTEGER NOT NULL,
    asked_at REAL NOT NULL
);
CREATE TABLE fits (
    id INTEGER PRIMARY KEY,
    num_trials INTEGER NOT NULL,
    W BLOB NOT NULL,
    factor BLOB NOT NULL,
    info TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class SessionFileError(ValueError):
    """The file is not a psyphy_pp experiment session this version can read."""


class SessionBusyError(RuntimeError):
    """Another process held the session's write lock for longer than the timeout."""


@dataclass(frozen=True)
class StoredFit:
    """A fit kept in the session: the MAP and its Laplace covariance factor.

    Attributes:
        id: The fit's row id (increasing).
        num_trials: Told trials it was fitted to.
        W: The MAP weights.
        factor: ``L`` (``(n, k)``) with ``L L^T`` the Laplace covariance of
            ``(W / prior_std).reshape(-1)`` (whitened weights).
        info: Steps, convergence, timings.
    """

    id: int
    num_trials: int
    W: np.ndarray
    factor: np.ndarray
    info: dict


def _to_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _from_bytes(b: bytes) -> np.ndarray:
    return np.load(io.BytesIO(b), allow_pickle=False)


class TrialStore:
    """An experiment session file (module docstring).

    Args:
        path: The SQLite file.
        timeout: Seconds to wait for another process's write lock.
        create: Create the file (with ``meta``) if it does not exist.
        meta: The session's settings, written when the file is created.

    Raises:
        SessionFileError: If the file is not SQLite, not a psyphy_pp session,
            or of a newer schema version.
        FileNotFoundError: If the file does not exist and ``create`` is False.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 10.0, create: bool = False,
                 meta: dict[str, Any] | None = None) -> None:
        self.path = os.fspath(path)
        exists = os.path.exists(self.path)
        if not exists and not create:
            raise FileNotFoundError(f"no experiment session at {self.path!r}")
        self.timeout = float(timeout)
        try:
            self._conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            if not exists or self._is_empty():
                with self.write():
                    for stmt in _SCHEMA.strip().split(";"):
                        if stmt.strip():
                            self._conn.execute(stmt)
                    base = {"application": APPLICATION, "schema_version": SCHEMA_VERSION}
                    for k, v in {**base, **(meta or {})}.items():
                        self._conn.execute("INSERT INTO meta VALUES (?, ?)", (k, json.dumps(v)))
            self._meta = self._read_meta()
        except sqlite3.DatabaseError as e:
            self.close()
            raise SessionFileError(
                f"{self.path!r} is not a psyphy_pp experiment session: SQLite says {e}") from e

    # -- the connection -------------------------------------------------------------
    def close(self) -> None:
        """Close the file (every call has already committed)."""
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
            del self._conn

    def _is_empty(self) -> bool:
        return self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] == 0

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: the lock is taken first, committed at the end."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise SessionBusyError(
                    f"another process kept {self.path!r} locked for more than "
                    f"timeout={self.timeout:g} s") from e
            raise
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _read_meta(self) -> dict[str, Any]:
        try:
            rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.OperationalError as e:
            raise SessionFileError(
                f"{self.path!r} is an SQLite file but not a psyphy_pp experiment session "
                f"(no meta table: {e})") from e
        meta = {k: json.loads(v) for k, v in rows}
        if meta.get("application") != APPLICATION:
            raise SessionFileError(
                f"{self.path!r} is an SQLite file but not a psyphy_pp experiment session "
                f"(application {meta.get('application')!r}, expected {APPLICATION!r})")
        version = meta.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise SessionFileError(
                f"{self.path!r} has session schema version {version!r}; this psyphy_pp reads "
                f"versions up to {SCHEMA_VERSION}: open it with the psyphy_pp that wrote it")
        return meta

    @property
    def meta(self) -> dict[str, Any]:
        """The session's settings."""
        return dict(self._meta)

    # -- reading ----------------------------------------------------------------------
    def trials(self, told: bool | None = None) -> dict[str, np.ndarray]:
        """Trials in id order: ``id``, ``batch``, ``source``, ``refs``, ``comparisons``,
        ``response`` (-1 when not told). ``told``: only told (True) or pending (False)."""
        where = {None: "", True: " WHERE response IS NOT NULL",
                 False: " WHERE response IS NULL"}[told]
        rows = self._conn.execute(
            "SELECT id, batch, source, ref, comparison, response FROM trials" + where
            + " ORDER BY id").fetchall()
        dim = int(self._meta.get("input_dim", 0))
        return {
            "id": np.array([r[0] for r in rows], np.int64),
            "batch": np.array([r[1] for r in rows], np.int64),
            "source": np.array([r[2] for r in rows], dtype=object),
            "refs": np.array([json.loads(r[3]) for r in rows], np.float64).reshape(-1, dim),
            "comparisons": np.array([json.loads(r[4]) for r in rows],
                                    np.float64).reshape(-1, dim),
            "response": np.array([-1 if r[5] is None else r[5] for r in rows], np.int64),
        }

    def counts(self) -> tuple[int, int, int]:
        """``(asked, told, next_batch)``."""
        asked, told = self._conn.execute(
            "SELECT count(*), count(response) FROM trials").fetchone()
        batch = self._conn.execute("SELECT coalesce(max(batch) + 1, 0) FROM asks").fetchone()[0]
        return int(asked), int(told), int(batch)

    def count_source(self, source: str) -> int:
        """How many trials were placed by ``source``."""
        return int(self._conn.execute("SELECT count(*) FROM trials WHERE source = ?",
                                      (source,)).fetchone()[0])

    def asks(self) -> dict[str, np.ndarray]:
        """One entry per ask: ``batch``, ``num_trials``, ``strategy``, ``fit_id``,
        ``seconds``, ``fallback``."""
        rows = self._conn.execute(
            "SELECT batch, num_trials, strategy, coalesce(fit_id, -1), seconds, fallback "
            "FROM asks ORDER BY batch").fetchall()
        cols = list(zip(*rows)) if rows else [()] * 6
        return {
            "batch": np.array(cols[0], np.int64), "num_trials": np.array(cols[1], np.int64),
            "strategy": np.array(cols[2], dtype=object), "fit_id": np.array(cols[3], np.int64),
            "seconds": np.array(cols[4], np.float64), "fallback": np.array(cols[5], bool),
        }

    def latest_fit(self) -> StoredFit | None:
        """The most recent fit, or None."""
        row = self._conn.execute(
            "SELECT id, num_trials, W, factor, info FROM fits ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return StoredFit(int(row[0]), int(row[1]), _from_bytes(row[2]), _from_bytes(row[3]),
                         json.loads(row[4]))

    def fit_log(self) -> list[dict]:
        """One entry per fit, oldest first: ``id``, ``num_trials`` and its ``info``."""
        rows = self._conn.execute("SELECT id, num_trials, info FROM fits ORDER BY id").fetchall()
        return [{"id": int(i), "num_trials": int(n), **json.loads(info)} for i, n, info in rows]

    def num_fits(self) -> int:
        """How many fits the session holds."""
        return int(self._conn.execute("SELECT count(*) FROM fits").fetchone()[0])

    # -- writing (inside ``write()``) -------------------------------------------------
    def add_ask(self, conn: sqlite3.Connection, batch: int, refs: np.ndarray,
                comparisons: np.ndarray, sources: list[str], strategy: str,
                fit_id: int | None, seconds: float, fallback: bool) -> np.ndarray:
        """Record one ask and its trials; returns the new trial ids."""
        now = time.time()
        conn.execute("INSERT INTO asks VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (batch, len(refs), strategy, fit_id, seconds, int(fallback), now))
        ids = []
        for r, c, s in zip(refs, comparisons, sources):
            cur = conn.execute(
                "INSERT INTO trials (batch, source, ref, comparison, asked_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (batch, s, json.dumps([float(v) for v in r]), json.dumps([float(v) for v in c]),
                 now))
            ids.append(cur.lastrowid)
        return np.asarray(ids, np.int64)

    def add_fit(self, conn: sqlite3.Connection, num_trials: int, W: np.ndarray,
                factor: np.ndarray, info: dict) -> int:
        """Record a fit; returns its id."""
        cur = conn.execute(
            "INSERT INTO fits (num_trials, W, factor, info, created_at) VALUES (?, ?, ?, ?, ?)",
            (num_trials, _to_bytes(W), _to_bytes(factor), json.dumps(info), time.time()))
        return int(cur.lastrowid or 0)

    def add_responses(self, conn: sqlite3.Connection, ids: np.ndarray,
                      responses: np.ndarray) -> int:
        """Record responses to asked trials; returns how many were new.

        A trial told again with the same response is accepted (a caller that
        died after the commit may repeat its tell); a different response, an
        unknown id or an id given twice raises ``ValueError`` and records nothing.
        """
        if len(set(ids.tolist())) != len(ids):
            dup = next(i for i in ids.tolist() if ids.tolist().count(i) > 1)
            raise ValueError(f"trials must name each trial once, got trial id {dup} twice")
        now, new = time.time(), 0
        for i, y in zip(ids.tolist(), responses.tolist()):
            row = conn.execute("SELECT response FROM trials WHERE id = ?", (i,)).fetchone()
            if row is None:
                raise ValueError(f"trial id {i} was never asked in {self.path!r}")
            if row[0] is not None:
                if row[0] != y:
                    raise ValueError(f"trial id {i} was already told with response {row[0]}, "
                                     f"got {y}; a told response cannot change")
                continue
            conn.execute("UPDATE trials SET response = ?, told_at = ? WHERE id = ?", (y, now, i))
            new += 1
        return new
