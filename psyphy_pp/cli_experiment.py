"""``psyphy-pp experiment``: drive an adaptive experiment through files.

A stimulus program (PsychoPy, MATLAB, ...) that cannot call Python runs the
:class:`~psyphy_pp.Experiment` loop through the command line::

    psyphy-pp experiment ask session.db -n 20 --out next.csv     # trial_id, ref_*, comp_*
    # ... show the trials, write responses.csv: trial_id, response (1 = correct)
    psyphy-pp experiment tell session.db responses.csv
    psyphy-pp experiment export session.db trials.csv            # the TrialData CSV
    psyphy-pp experiment status session.db

``ask`` creates the session when the file does not exist, from the model
options (``--basis-degree`` ...), the box of the stimulus units (``--low``,
``--high``) and the session options (``--strategy`` ...); on an existing
session those options must agree with the stored ones. Stimuli are written in
the user's units at full precision. ``tell`` reads a CSV with the columns
``trial_id`` and ``response``; any ``ref_*``/``comp_*`` columns are checked
against the asked trials, so that a response file cannot be matched to the
wrong trials.
"""

from __future__ import annotations

__all__ = ["add_experiment_parser", "run_experiment"]

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from psyphy_pp._cli_common import (
    add_box,
    add_model,
    check_new_file,
    model_from_args,
    normalization_from_args,
)
from psyphy_pp._csv import write_columns, write_rows

#: Environment variable naming the directory of the on-disk compilation cache
#: (empty: no cache).
CACHE_ENV = "PSYPHY_PP_CACHE_DIR"

_SESSION_OPTIONS = ("strategy", "start_trials", "refit_every", "seed")


def add_experiment_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``experiment`` and its subcommands to ``psyphy-pp``'s subparsers."""
    from psyphy_pp.experiment import (
        DEFAULT_REFIT_EVERY,
        DEFAULT_START_TRIALS,
        DEFAULT_STRATEGY,
        STRATEGIES,
    )

    exp = sub.add_parser("experiment", help="run an adaptive experiment (ask, tell, export, "
                         "status)", description="Run an adaptive experiment through files: "
                         "ask writes the next trials as CSV (trial_id, ref_*, comp_*), tell "
                         "records a CSV of responses (trial_id, response), export writes the "
                         "told trials as a TrialData CSV, status summarises a session.")
    cmds = exp.add_subparsers(dest="experiment_command", metavar="ACTION",
                              parser_class=type(exp), required=True)
    p = cmds.add_parser("ask", help="the next trials, as CSV (creates the session if missing)")
    p.add_argument("session", type=Path, help="the session file (SQLite)")
    p.add_argument("-n", type=int, default=20, help="how many trials (default 20)")
    p.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    g = p.add_argument_group("a new session")
    g.add_argument("--input-dim", type=int, default=2, help="stimulus dimension D (default 2)")
    g.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                   help=f"placement (default {DEFAULT_STRATEGY}: a Sobol start, then the "
                   "posterior)")
    g.add_argument("--start-trials", type=int, default=DEFAULT_START_TRIALS,
                   help=f"space-filling trials before the first fit (default "
                   f"{DEFAULT_START_TRIALS})")
    g.add_argument("--refit-every", type=int, default=DEFAULT_REFIT_EVERY,
                   help=f"refit after this many new responses (default {DEFAULT_REFIT_EVERY})")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_model(p, diag_term=1e-4)
    add_box(p)

    p = cmds.add_parser("tell", help="record responses from a CSV file (trial_id, response)")
    p.add_argument("session", type=Path, help="the session file (SQLite)")
    p.add_argument("responses", type=Path, help="CSV with trial_id and response columns")
    p.add_argument("--no-refit", action="store_true", help="do not refit now, even if due")

    p = cmds.add_parser("export", help="write the told trials as a TrialData CSV file")
    p.add_argument("session", type=Path, help="the session file (SQLite)")
    p.add_argument("out", type=Path, help="CSV file to write")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")

    p = cmds.add_parser("status", help="trials, fits and timings of a session")
    p.add_argument("session", type=Path, help="the session file (SQLite)")


def run_experiment(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``psyphy-pp experiment ACTION``; returns the exit code."""
    action = args.experiment_command  # required by the parser: a missing one exits 2
    if action in ("ask", "tell"):
        _compilation_cache()
    if action == "ask":
        # the options at their defaults: a plain ask of this session, parsed
        return _ask(args, parser.parse_args(["experiment", "ask", str(args.session)]))
    return {"tell": _tell, "export": _export, "status": _status}[action](args)


def _compilation_cache() -> None:
    """Keep compiled programs on disk between calls (module docstring)."""
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None):  # the user chose one
        return
    path = os.environ.get(CACHE_ENV)
    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "psyphy_pp", "jax")
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _open(path: Path):
    from psyphy_pp.experiment import Experiment

    if not path.exists():
        raise ValueError(f"no experiment session at {path}; create one with "
                         f"psyphy-pp experiment ask {path}")
    return Experiment(path=path)


def _ask(args: argparse.Namespace, defaults: argparse.Namespace) -> int:
    from psyphy_pp.experiment import Experiment

    if args.n < 1:
        raise ValueError(f"-n must be at least 1, got {args.n}")
    if args.out is not None:
        check_new_file(args.out, args.force, "--out")
    settings = {k: getattr(args, k) for k in _SESSION_OPTIONS}
    if args.session.exists():
        given = {k: v for k, v in settings.items() if v != getattr(defaults, k)}
        exp = Experiment(path=args.session, **given)
        _check_model_options(args, defaults, exp)
    else:
        model = model_from_args(args, args.input_dim)
        exp = Experiment(model, args.session, normalization=normalization_from_args(args),
                         **settings)
        sys.stderr.write(f"created {args.session}: {model!r}\n")
    with exp:
        trials = exp.ask(args.n)
        refs, comps = trials.user_refs, trials.user_comparisons
        norm = exp.normalization
    cols = {"trial_id": trials.ids}
    cols.update({f"ref_{j}": refs[:, j] for j in range(refs.shape[1])})
    cols.update({f"comp_{j}": comps[:, j] for j in range(comps.shape[1])})
    preamble = ("" if norm is None
                else f"# psyphy_pp normalization: {json.dumps(norm.to_dict())}\n")
    if args.out is None:
        write_rows(sys.stdout, cols, preamble)
    else:
        write_columns(args.out, cols, preamble, overwrite=args.force)
    return 0


def _check_model_options(args: argparse.Namespace, defaults: argparse.Namespace, exp) -> None:
    """Model options away from their defaults must match the stored model."""
    stored = exp.model
    checks = {"basis_degree": stored.basis_degree, "extra_dims": stored.extra_dims,
              "variance_scale": stored.variance_scale, "decay_rate": stored.decay_rate,
              "diag_term": stored.diag_term, "input_dim": stored.input_dim}
    for name, value in checks.items():
        given = getattr(args, name)
        if given != getattr(defaults, name) and given != value:
            raise ValueError(f"--{name.replace('_', '-')} {given} differs from the session's "
                             f"{value} in {args.session}")


def _read_responses(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        lines = [ln for ln in f if not ln.lstrip().startswith("#")]
    rows = list(csv.reader(lines))
    if not rows:
        raise ValueError(f"{path}: no header row")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("trial_id", "response") if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a response file "
                         "needs trial_id and response (1 = correct, 0 = wrong)")
    cols: dict[str, list[str]] = {h: [] for h in header}
    for i, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}, line {i}: {len(row)} fields, the header has "
                             f"{len(header)}")
        for h, c in zip(header, row):
            cols[h].append(c.strip())
    return cols


def _numbers(path: Path, name: str, values: list[str], kind: type) -> np.ndarray:
    out = []
    for i, v in enumerate(values):
        try:
            x = kind(v)
        except ValueError:
            raise ValueError(f"{path}, trial {i + 1}, column {name}: {v!r} is not "
                             f"{'an integer' if kind is int else 'a number'}") from None
        out.append(x)
    return np.asarray(out)


def _tell(args: argparse.Namespace) -> int:
    cols = _read_responses(args.responses)
    ids = _numbers(args.responses, "trial_id", cols["trial_id"], int).astype(np.int64)
    y = _numbers(args.responses, "response", cols["response"], int)
    with _open(args.session) as exp:
        stim = [c for c in cols if c.startswith(("ref_", "comp_"))]
        if stim:
            t = exp.trial_table()
            index = {int(i): k for k, i in enumerate(t["id"])}
            unknown = [int(i) for i in ids if int(i) not in index]
            if unknown:
                raise ValueError(f"trial id {unknown[0]} was never asked in {args.session}")
            rows = np.array([index[int(i)] for i in ids], np.int64)
            norm = exp.normalization
            for c in stim:
                kind, j = c.split("_", 1)
                arr = t["refs"] if kind == "ref" else t["comparisons"]
                asked = arr[rows, int(j)]
                if norm is not None:
                    asked = norm.to_user_exact(arr[rows])[:, int(j)]
                got = _numbers(args.responses, c, cols[c], float)
                scale = 1.0 if norm is None else float(np.max(np.abs(norm.scale)))
                bad = np.flatnonzero(np.abs(got - asked) > 1e-9 * max(scale, 1.0))
                if bad.size:
                    k = int(bad[0])
                    raise ValueError(
                        f"{args.responses}: trial id {int(ids[k])} has {c} = {got[k]!r}, but "
                        f"it was asked with {asked[k]!r}; the response file does not match "
                        "the session's trials")
        before = exp.fit
        new = exp.tell(ids, y, refit=not args.no_refit)
        after = exp.fit
        print(f"told {new} new trial(s) ({len(ids) - new} already told); {exp!r}")
        if after is not None and (before is None or after.id != before.id):
            info = after.info
            print(f"refitted on {after.num_trials} trials: {info['steps']} L-BFGS steps, "
                  f"{'converged' if info['converged'] else 'NOT converged'}, "
                  f"{info['map_seconds'] + info['hessian_seconds']:.1f} s")
    return 0


def _export(args: argparse.Namespace) -> int:
    check_new_file(args.out, args.force, "OUT")
    with _open(args.session) as exp:
        data = exp.export(args.out, overwrite=args.force)
    print(f"wrote {data.num_trials} told trials to {args.out}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from psyphy_pp.experiment import ADAPTIVE

    with _open(args.session) as exp:
        print(repr(exp))
        print(f"model: {exp.model!r}")
        print(f"settings: {exp.settings}")
        print(f"pending (asked, not told): {len(exp.pending)}")
        log = exp.ask_log()
        adaptive = np.isin(log["strategy"], ADAPTIVE)
        if adaptive.any():
            s = log["seconds"][adaptive]
            print(f"adaptive asks: {int(adaptive.sum())}, median {np.median(s):.3f} s, "
                  f"max {s.max():.3f} s, cut by the time budget {int(log['fallback'].sum())}")
        for f in exp.fit_log()[-3:]:
            print(f"fit {f['id']} on {f['num_trials']} trials: {f['steps']} steps, "
                  f"{'converged' if f['converged'] else 'NOT converged'}")
    return 0
