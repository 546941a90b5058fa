"""The ``psyphy-pp`` command line: from a CSV file of trials to threshold plots.

Subcommands (``psyphy-pp <command> --help`` lists every option):

* ``simulate OUT.csv``: simulate an observer from a ground truth drawn from the
  prior; writes the trials (CSV) and the truth (a fit file, ``OUT_truth.npz``).
* ``fit DATA.csv``: fit the WPPM by MAP (then a Laplace approximation with
  ``--method laplace``, or NUTS with ``--method nuts``); writes ``fit.npz``
  (reopen with :func:`~psyphy_pp.load_fit`), ``params.npz``, ``summary.txt``
  and, when :func:`~psyphy_pp.to_arviz` is available, ``inference.nc`` (ArviZ
  netCDF) into the output directory.
* ``thresholds FIT.npz``: threshold ellipses at the reference points (CSV, one
  row per reference, in the data's units; ``--points`` also writes one row per
  direction).
* ``plot FIT.npz``: PNG figures: the threshold field (with ``--truth``, the
  truth's too), psychometric curves and the loss curve.
* ``experiment ask|tell|export|status SESSION.db``: run an adaptive experiment
  through files (:mod:`psyphy_pp.cli_experiment`).

From a CSV file to a threshold plot::

    psyphy-pp fit trials.csv --out fit
    psyphy-pp thresholds fit/fit.npz
    psyphy-pp plot fit/fit.npz

Stimuli outside ``[-1, 1]`` need their box: ``--low``/``--high`` (one value per
dimension), or a ``# psyphy_pp normalization:`` line in the CSV
(see :mod:`psyphy_pp.data`).

Exit status:

* 0: done (for ``fit``: the MAP converged, or with fresh Monte Carlo noise,
  where convergence is not assessed, ran its steps; with ``--method nuts``,
  NUTS converged too);
* 1: bad input, with a one-line reason on stderr;
* 2: command-line usage error;
* 3 (``fit``): the MAP did not converge within ``--num-steps``; everything is
  still written, and summary.txt says so;
* 4 (``fit``): the MAP diverged (its loss became non-finite, or ended higher
  than it started); the fit up to the last good step is written;
* 5 (``fit --method nuts``): NUTS did not converge (r_hat or ess_bulk of Sigma
  short of the package's standard); everything is still written, and
  summary.txt says so;
* 130: interrupted (Ctrl-C). ``fit`` stops at a step boundary and writes the fit
  so far and ``checkpoint.npz``; ``psyphy-pp fit DATA.csv --resume DIR`` continues.

Nothing is overwritten silently: an existing output is refused, with its name,
unless ``--force`` is given (``fit --force`` replaces the output directory as a
whole). Output locations and options are checked before anything is computed.
"""

from __future__ import annotations

__all__ = ["main", "build_parser"]

import argparse
import math
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psyphy_pp._cli_common import (
    add_box as _add_box,
)
from psyphy_pp._cli_common import (
    add_model as _add_model,
)
from psyphy_pp._cli_common import (
    check_new_file as _check_new_file,
)
from psyphy_pp._cli_common import (
    check_writable_dir as _check_writable_dir,
)
from psyphy_pp._cli_common import (
    model_from_args as _model,
)
from psyphy_pp._cli_common import (
    normalization_from_args as _normalization,
)
from psyphy_pp._validation import check_tree_depth
from psyphy_pp._version import __version__
from psyphy_pp.cli_experiment import add_experiment_parser, run_experiment
from psyphy_pp.defaults import (
    DEFAULT_DENSE_MASS,
    DEFAULT_LEARNING_RATES,
    DEFAULT_MAX_TREE_DEPTH,
    DEFAULT_MOMENTUM,
    DEFAULT_NUM_STEPS,
    DEFAULT_NUM_WARMUP,
    DEFAULT_NUTS_GAUGE,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TOL,
    HIERARCHICAL_MAX_TREE_DEPTH,
    HIERARCHICAL_NUM_WARMUP,
    OPTIMIZERS,
)
from psyphy_pp.gauge import GAUGES

PROG = "psyphy-pp"
#: Exit status of ``fit`` when the MAP did not converge (the fit is saved).
EXIT_NOT_CONVERGED = 3
#: Exit status of ``fit`` when the MAP diverged (the last finite state is saved).
EXIT_DIVERGED = 4
#: Exit status of ``fit --method nuts`` when the chains did not converge (all is saved).
EXIT_NUTS_NOT_CONVERGED = 5
#: Exit status after Ctrl-C (``fit`` saves its checkpoint first).
EXIT_INTERRUPTED = 130


class _UsageExit(Exception):
    def __init__(self, code: int):
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that reports errors in one line and does not exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise _UsageExit(2)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            sys.stderr.write(message)
        raise _UsageExit(status)


#: ``fit``'s NUTS-only options that the CLI fills in (the library's defaults);
#: ``num_warmup`` and ``max_tree_depth`` stay None, and ``fit_nuts`` picks them
#: (they differ by model).
_NUTS_DEFAULTS: dict[str, Any] = {
    "num_chains": 2,
    "mass": "dense" if DEFAULT_DENSE_MASS else "diagonal", "gauge": DEFAULT_NUTS_GAUGE,
    "target_accept": DEFAULT_TARGET_ACCEPT,
}
_NUTS_ONLY = ("num_warmup", "max_tree_depth", *_NUTS_DEFAULTS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``psyphy-pp`` (with its subcommands)."""
    parser = _Parser(prog=PROG, description="Fit the Wishart Process Psychophysical Model to "
                     "oddity-task trials and report discrimination thresholds.",
                     epilog="From a CSV file to a threshold plot: psyphy-pp fit trials.csv --out fit; "
                            "psyphy-pp thresholds fit/fit.npz; psyphy-pp plot fit/fit.npz")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("simulate", help="write a synthetic data set (CSV) and its ground truth",
                       description="Simulate an observer whose noise field is drawn from the "
                       "prior; write the trials as CSV and the truth as a fit file.")
    p.add_argument("out", type=Path, help="CSV file to write")
    p.add_argument("--truth-out", type=Path, help="fit file of the ground truth "
                   "(default: OUT with _truth.npz)")
    p.add_argument("--input-dim", type=int, default=2, help="stimulus dimension D (default 2)")
    p.add_argument("--grid-size", type=int, default=5, help="reference grid points per axis (default 5)")
    p.add_argument("--trials-per-ref", type=int, default=100, help="trials per reference (default 100)")
    p.add_argument("--radius", type=float, default=2.8,
                   help="comparison distance in noise standard deviations of the truth (default 2.8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--lapse-rate", default="0", metavar="FLOAT",
                   help="the observer lapses on this fraction of the trials and then answers "
                   "at random (correct with probability 1/3); default 0")
    _add_force(p, "the CSV file and the truth file")
    _add_model(p, diag_term=1e-9)
    _add_box(p)

    p = sub.add_parser("fit", help="fit the model to a CSV file (MAP; or MAP, then Laplace or NUTS)",
                       description="Fit the WPPM to trials in a CSV file (columns ref_0.., comp_0.., "
                       "response; see psyphy_pp.data). Writes fit.npz, params.npz, summary.txt "
                       "and an ArviZ netCDF file into --out. A file with a 'subject' (or "
                       "'observer') column naming several observers is fitted by the "
                       "hierarchical WPPM (a shared field plus a deviation per observer): "
                       "one fit_observer_<i>.npz per observer and fit_population.npz.")
    p.add_argument("data", type=Path, help="CSV file of trials")
    p.add_argument("--out", type=Path, help="output directory (default: DATA without .csv, + _fit)")
    p.add_argument("--method", choices=("map", "laplace", "nuts"), default="map",
                   help="map: MAP by SVI; laplace: MAP, then draws of a Gaussian at it (about a "
                        "minute for 6,000 trials); nuts: MAP, then NUTS started from it "
                        "(default map)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="auto",
                   help="MAP optimiser: auto = lbfgs on a deterministic likelihood (the default "
                        "quadrature), adam on fresh-noise Monte Carlo; sgd = SGD with momentum "
                        "(default auto)")
    p.add_argument("--num-steps", type=int, default=DEFAULT_NUM_STEPS,
                   help=f"most MAP optimiser steps; the fit stops once converged "
                        f"(default {DEFAULT_NUM_STEPS})")
    p.add_argument("--tol", type=float, default=DEFAULT_TOL,
                   help="converged when no parameter moved by more than this (relative) over "
                        f"the last 10 (lbfgs) or 100 (adam, sgd) steps (default {DEFAULT_TOL:g})")
    p.add_argument("--learning-rate", type=float,
                   help="adam or sgd learning rate (per-trial objective; default "
                        f"{DEFAULT_LEARNING_RATES['adam']:g} for adam, "
                        f"{DEFAULT_LEARNING_RATES['sgd']:g} for sgd); not for lbfgs")
    p.add_argument("--momentum", type=float,
                   help=f"sgd momentum (default {DEFAULT_MOMENTUM:g}); sgd only")
    p.add_argument("--num-warmup", type=int,
                   help=f"NUTS warmup per chain (default {DEFAULT_NUM_WARMUP}; "
                        f"{HIERARCHICAL_NUM_WARMUP} for data with several observers)")
    p.add_argument("--num-draws", type=int,
                   help="NUTS draws per chain (default 500), or Laplace draws (default 1000)")
    p.add_argument("--num-chains", type=int, help="NUTS chains (default 2)")
    p.add_argument("--max-tree-depth", type=_tree_depth, metavar="DEPTH|WARMUP,SAMPLING",
                   help="NUTS: at most 2**depth - 1 leapfrog steps per iteration, one depth "
                        "or a warmup,sampling pair (default "
                        f"{','.join(map(str, DEFAULT_MAX_TREE_DEPTH))}; "
                        f"{HIERARCHICAL_MAX_TREE_DEPTH} for data with several observers); "
                        "raise it if NUTS does not converge")
    p.add_argument("--mass", choices=("dense", "diagonal"),
                   help="NUTS mass matrix adapted in warmup (default "
                        f"{_NUTS_DEFAULTS['mass']})")
    p.add_argument("--gauge", choices=GAUGES,
                   help="NUTS: 'fixed' samples W with its rotation symmetry removed (the "
                        "same posterior of Sigma; an experiment: it mixed better or worse "
                        "depending on the observer and the run), 'free' samples W itself "
                        f"(default {DEFAULT_NUTS_GAUGE})")
    p.add_argument("--target-accept", type=float,
                   help="NUTS: the acceptance probability warmup tunes the step size to (default "
                        f"{DEFAULT_TARGET_ACCEPT:g}); raise it (0.9) if there are divergences")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--lapse-rate", default="0", metavar="FLOAT|learn",
                   help="lapse rate of the observer: a fixed number in [0, 1), or 'learn' to "
                   "fit it with the field (Beta(2, 38) prior; not with --method laplace); "
                   "default 0, no lapse term")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the interrupted (or unconverged) fit in DIR from its "
                        "checkpoint.npz, with the same options; writes into DIR")
    _add_force(p, "the output directory, as a whole")
    _add_model(p, diag_term=1e-4)
    _add_box(p)

    p = sub.add_parser("thresholds", help="threshold ellipses of a fit (CSV)",
                       description="Compute discrimination thresholds (P(correct) = target) along "
                       "directions around reference points, fit an ellipse per reference and "
                       "write them as CSV, in the data's units. References: the data's distinct "
                       "reference points when there are at most 100, else a grid (--grid-size).")
    p.add_argument("fit", type=Path, help="fit file written by psyphy-pp fit")
    _add_threshold_options(p)
    p.add_argument("--out", type=Path, help="CSV file to write (default: thresholds.csv next to FIT)")
    p.add_argument("--points", type=Path, help="also write one row per (reference, direction) here")
    _add_force(p, "the CSV files")

    p = sub.add_parser("validate", help="compare a fit with held-out probe trials",
                       description="Fit a Weibull psychometric function (guess rate 1/3) to "
                       "each probe of PROBES (a reference and a direction, with comparisons at "
                       "several distances) and compare its threshold with the fit's. Prints "
                       "the slope (through the origin) and correlation of predicted on "
                       "measured thresholds, in model units, and the held-out log-likelihood; "
                       "writes one row per probe, in the units of the fit's data.")
    p.add_argument("fit", type=Path, help="fit file written by psyphy-pp fit")
    p.add_argument("probes", type=Path, help="CSV of probe trials, in the units of the fit's data")
    p.add_argument("--target", type=float, default=2.0 / 3.0,
                   help="P(correct) at threshold (default 2/3)")
    p.add_argument("--prob", type=float, default=0.9,
                   help="level of the measured intervals and predicted bands (default 0.9)")
    p.add_argument("--out", type=Path, help="CSV to write (default: validation.csv next to FIT)")
    _add_force(p, "the CSV file")

    p = sub.add_parser("plot", help="PNG figures of a fit",
                       description="Draw the threshold-ellipse field (2D), psychometric curves, "
                       "the loss curve and the calibration (observed against predicted "
                       "proportion correct, with the goodness-of-fit test) of a fit as PNG "
                       "files.")
    p.add_argument("fit", type=Path, help="fit file written by psyphy-pp fit")
    p.add_argument("--truth", type=Path, help="ground-truth fit file (from psyphy-pp simulate) to overlay")
    _add_threshold_options(p)
    p.add_argument("--out", type=Path, help="directory for the PNG files (default: next to FIT)")
    p.add_argument("--dpi", type=int, default=120, help="resolution (default 120)")
    p.add_argument("--scale", default="auto",
                   help="draw the threshold ellipses at this multiple of their size about each "
                        "reference: auto (neighbours do not overlap; the title gives the scale) "
                        "or a positive number, 1 for true size (default auto)")
    _add_force(p, "the PNG files")
    add_experiment_parser(sub)
    return parser


def _add_force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace existing outputs ({what})")


def _add_threshold_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-directions", type=int, default=16, help="directions per reference (default 16)")
    p.add_argument("--target", type=float, default=2.0 / 3.0, help="P(correct) at threshold (default 2/3)")
    p.add_argument("--grid-size", type=int,
                   help="use a grid of this many points per axis on [-0.8, 0.8]^D as references")
    p.add_argument("--prob", type=float, default=0.9, help="credible band mass for posterior fits (default 0.9)")
    p.add_argument("--max-draws", type=int, default=200,
                   help="posterior draws used for bands, thinned evenly (default 200)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _resolve_nuts_options(args: argparse.Namespace) -> None:
    """Fill in the NUTS-only options, or refuse them (and --num-draws) with --method map."""
    given = {k: getattr(args, k) for k in (*_NUTS_ONLY, "num_draws")
             if getattr(args, k) is not None}
    if args.method != "nuts":
        unused = [k for k in given if not (k == "num_draws" and args.method == "laplace")]
        if unused:
            flags = ", ".join(f"--{k.replace('_', '-')} {_option_text(given[k])}" for k in unused)
            raise ValueError(f"{flags}: only for --method nuts, got --method {args.method}")
    if args.target_accept is not None and not 0.0 < args.target_accept < 1.0:
        raise ValueError("--target-accept must be between 0 and 1 (exclusive), got "
                         f"{args.target_accept}")
    for k, default in _NUTS_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, default)


def _tree_depth(text: str) -> int | tuple[int, int]:
    """``--max-tree-depth``: ``"7"`` or ``"6,7"`` (warmup, sampling), each at least 1."""
    try:
        parts = tuple(int(p) for p in text.split(","))
        pair = check_tree_depth("--max-tree-depth", parts[0] if len(parts) == 1 else parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a depth of at least 1 or a pair WARMUP,SAMPLING such as 6,7, got {text!r}"
        ) from None
    return pair[0] if len(parts) == 1 else pair  # as typed: "7" stays one depth


def _option_text(value: Any) -> str:
    """An option's value as it is typed: ``(6, 7)`` is ``6,7``."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _depth_text(depths: Any) -> str:
    """A ``(warmup, sampling)`` tree depth for summary.txt: ``"7 (6 in warmup)"`` or ``"6"``."""
    warmup, sampling = depths
    return f"{sampling}" if warmup == sampling else f"{sampling} ({warmup} in warmup)"


def _check_int(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _check_threshold_options(args: argparse.Namespace) -> None:
    """The options of ``thresholds`` and ``plot``, checked before anything is computed."""
    _check_int("--grid-size", args.grid_size)
    _check_int("--num-directions", args.num_directions, 2)
    _check_int("--max-draws", args.max_draws)
    if not 0.0 < args.prob < 1.0:
        raise ValueError(f"--prob must be between 0 and 1 (exclusive), got {args.prob}")
    if not 1.0 / 3.0 < args.target < 1.0:
        raise ValueError("--target must be between chance (1/3) and 1 (exclusive), got "
                         f"{args.target}")


def _lapse_rate(value: str, *, learn: bool) -> float | str:
    """``--lapse-rate`` as a number in [0, 1), or ``"learn"`` when allowed."""
    if learn and value == "learn":
        return value
    try:
        rate = float(value)
    except ValueError:
        rate = math.nan
    if not 0.0 <= rate < 1.0:
        expected = "a number in [0, 1) or 'learn'" if learn else "a number in [0, 1)"
        raise ValueError(f"--lapse-rate must be {expected}, got {value!r}")
    return rate


def _cmd_simulate(args: argparse.Namespace) -> int:
    import jax

    from psyphy_pp import designs
    from psyphy_pp.data import TrialData
    from psyphy_pp.defaults import task_for
    from psyphy_pp.fitio import SavedFit, save_fit
    from psyphy_pp.simulate import simulate

    norm = _normalization(args)
    if norm is not None and norm.input_dim != args.input_dim:
        raise ValueError(f"--low/--high must have {args.input_dim} values (--input-dim), "
                         f"got {norm.input_dim}")
    truth_path = args.truth_out or args.out.with_name(args.out.stem + "_truth.npz")
    _check_new_file(args.out, args.force, "the data file")
    _check_new_file(truth_path, args.force, "the truth file")
    _check_int("--grid-size", args.grid_size)
    _check_int("--trials-per-ref", args.trials_per_ref)
    lapse_rate = float(_lapse_rate(args.lapse_rate, learn=False))
    model = _model(args, args.input_dim)
    model = _replace(model, task=task_for("simulate", model.task, model.input_dim))
    key = jax.random.PRNGKey(args.seed)
    k_truth, k_design, k_resp = jax.random.split(key, 3)
    truth = model.sample_prior(k_truth)
    refs, comps = designs.grid_design(model, truth, grid_size=args.grid_size,
                                      trials_per_ref=args.trials_per_ref,
                                      mahalanobis_radius=args.radius, key=k_design)
    data = simulate(model, truth, refs, comps, key=k_resp, lapse_rate=lapse_rate)
    if lapse_rate:  # the truth file records the observer's lapse rate
        model = _replace(model, task=_replace(model.task, lapse_rate=lapse_rate))
    if norm is not None:  # round through the user's units, so the CSV is the data
        data = TrialData.from_user_units(norm.to_user_exact(data.refs),
                                         norm.to_user_exact(data.comparisons),
                                         data.responses, norm)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(args.out, overwrite=args.force)
    save_fit(truth_path, SavedFit(model, truth, method="truth", normalization=norm,
                                  settings={"seed": args.seed}), include_data=False,
             overwrite=args.force)
    print(f"wrote {data.num_trials} trials ({data.responses.mean():.1%} correct) to {args.out}")
    print(f"wrote the ground truth to {truth_path}")
    return 0


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def _fit_directory(args: argparse.Namespace) -> Path:
    """The output directory of ``fit``, checked before the fit runs."""
    if args.resume is not None:
        if args.out is not None and args.out != args.resume:
            raise ValueError(f"--resume {args.resume} writes into {args.resume}; drop --out "
                             f"{args.out}")
        return args.resume
    out = args.out or args.data.with_name(args.data.stem + "_fit")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise ValueError(f"the output directory {out} already exists; pass --force to replace "
                         f"it as a whole, or --resume {out} to continue its fit")
    _check_writable_dir(out.parent)
    return out


def _cmd_fit(args: argparse.Namespace) -> int:
    from psyphy_pp.checkpoint import CHECKPOINT_FILE, Checkpoint
    from psyphy_pp.data import TrialData

    out = _fit_directory(args)
    for name in ("--num-warmup", "--num-draws", "--num-chains"):
        _check_int(name, getattr(args, name[2:].replace("-", "_")))
    _resolve_nuts_options(args)
    lapse_rate = _lapse_rate(args.lapse_rate, learn=True)
    if lapse_rate == "learn" and args.method == "laplace":
        raise ValueError("--lapse-rate learn does not work with --method laplace (its Gaussian "
                         "is over W alone); use --method nuts or map, or a fixed --lapse-rate")
    checkpoint = None
    if args.resume is not None:
        checkpoint = Checkpoint.load(args.resume / CHECKPOINT_FILE)
    data = TrialData.from_csv(args.data, normalization=_normalization(args))
    model = _model(args, data.input_dim, lapse_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written into a fresh directory beside OUT, which then replaces
    # OUT as a whole: two fits never mix, and a failure leaves OUT as it was.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        if data.num_observers > 1:  # a subject column with several observers
            status = _run_hierarchical_fit(args, data, model, checkpoint, staging, out)
        else:
            status = _run_fit(args, data, model, checkpoint, staging, out)
        _replace_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return status


def _run_hierarchical_fit(args: argparse.Namespace, data: Any, model: Any, checkpoint: Any,
                          staging: Path, out: Path) -> int:
    """``fit`` on trials of several observers: the hierarchical WPPM (psyphy_pp.hierarchical).

    Writes ``fit_population.npz`` (W_shared) and ``fit_observer_<i>.npz`` (one per
    observer, in the order of ``summary.txt``; each works with ``thresholds`` and
    ``plot``), ``params.npz`` (W_shared, Delta, tau), ``inference.nc`` and
    ``summary.txt``.
    """
    import psyphy_pp as pp
    from psyphy_pp.fitio import SavedFit, save_fit

    if checkpoint is not None:
        raise ValueError("--resume is not available for a hierarchical fit (data with several "
                         f"observers: {list(data.observer_names)}); refit instead")
    for flag, value in (("--learning-rate", args.learning_rate), ("--momentum", args.momentum)):
        if value is not None:
            raise ValueError(f"{flag} does not apply to a hierarchical fit (data with several "
                             f"observers), got {value!r}; it uses --optimizer auto or adam")
    if args.method == "nuts" and args.gauge != "free":
        raise ValueError(f"--gauge {args.gauge} is not available for a hierarchical fit (data "
                         "with several observers); use --gauge free")
    hmodel = pp.HierarchicalWPPM(base=model)
    progress = not args.no_progress
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pp.ConvergenceWarning)
        # The scratch loop: the same MAP as fit_map's SVI (tests/test_hierarchical.py), and
        # faster here (3 observers x 500 trials, degree 4: 61.5 s against 93.5 s).
        fit: Any = pp.fit_map_scratch(hmodel, data, num_steps=args.num_steps,
                                      optimizer=args.optimizer, tol=args.tol, seed=args.seed,
                                      progress_bar=progress)
        result: Any = fit
        if args.method == "nuts":
            result = pp.fit_nuts(hmodel, data,  # type: ignore[arg-type]
                                 **_nuts_kwargs(args, fit, progress))
        elif args.method == "laplace":
            result = pp.fit_laplace(hmodel, data, num_draws=args.num_draws or 1000,  # type: ignore[arg-type]
                                    seed=args.seed, map_fit=fit, progress_bar=progress)
    status = EXIT_NOT_CONVERGED if fit.converged is False else 0
    failures = [f"the MAP {fit.convergence}"] if status else []
    population = result.population()
    observers = {name: result.observer(name) for name in result.observer_names}
    conv_lines: list[str] = []
    if args.method == "nuts":
        from psyphy_pp.diagnostics import SigmaConvergence, sigma_convergence

        convs = {"the population": sigma_convergence(population, data.unique_refs())}
        convs.update((f"observer {name}", sigma_convergence(one))
                     for name, one in observers.items())
        conv_lines = [_nuts_convergence_line(c, f"Sigma of {who} at the references",
                                             args.num_chains) for who, c in convs.items()]
        failed = [who for who, c in convs.items() if not c.converged]
        if failed:  # their largest r_hat and smallest ess_bulk
            worst = SigmaConvergence(
                max_rhat=float(np.max([convs[w].max_rhat for w in failed])),
                min_ess_bulk=float(np.min([convs[w].min_ess_bulk for w in failed])))
            failures.append(_nuts_failure(worst, f"Sigma of {', '.join(failed)}",
                                          args.num_chains))
            status = status or EXIT_NUTS_NOT_CONVERGED
    files = {"fit_population.npz": population}
    for i, one in enumerate(observers.values()):
        files[f"fit_observer_{i}.npz"] = one
    for fname, one in files.items():
        save_fit(staging / fname, SavedFit.from_result(one))
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in result.samples.items()}
    np.savez(staging / "params.npz", **arrays)
    notes = [str(w.message) for w in caught]
    try:
        pp.to_arviz(result).to_netcdf(str(staging / "inference.nc"))
    except Exception as err:  # report, do not hide: the fit itself is saved
        notes.append(f"no ArviZ file: {type(err).__name__}: {_one_line(err)}")
    lines = [f"{PROG} fit {args.data}: {data.num_trials} trials of {data.num_observers} "
             "observers (column 'subject'/'observer'): fitted the HIERARCHICAL WPPM "
             "(shared field + per-observer deviations, psyphy_pp.HierarchicalWPPM)",
             result.summary(), *conv_lines,
             f"method: {args.method}; wall time {time.perf_counter() - t0:.1f} s",
             f"files in {out}: fit_population.npz (the shared field), params.npz, "
             "inference.nc, and one fit per observer:"]
    lines += [f"  fit_observer_{i}.npz: {name}" for i, name in enumerate(result.observer_names)]
    lines += [f"note: {n}" for n in notes]
    text = "\n".join(lines)
    (staging / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    for failure in failures:
        sys.stderr.write(f"{PROG} fit: {failure} (exit status {status}; the fit is saved in "
                         f"{out})\n")
    return status


def _replace_directory(new: Path, final: Path) -> None:
    """Move ``new`` to ``final``, replacing a directory there as a whole."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        old.rmdir()
        final.rename(old)
        new.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(final)


def _run_fit(args: argparse.Namespace, data: Any, model: Any, checkpoint: Any,
             staging: Path, out: Path) -> int:
    import psyphy_pp as pp
    from psyphy_pp.checkpoint import CHECKPOINT_FILE
    from psyphy_pp.fitio import SavedFit, save_fit

    progress = not args.no_progress
    t0 = time.perf_counter()
    status = 0
    failure = None
    with warnings.catch_warnings(record=True) as caught:  # reported in summary.txt
        warnings.simplefilter("ignore", pp.ConvergenceWarning)  # the verdict is in the result
        warnings.simplefilter("always", pp.DataWarning)
        try:
            fit = pp.fit_map(model, data, num_steps=args.num_steps, optimizer=args.optimizer,
                             learning_rate=args.learning_rate, momentum=args.momentum,
                             tol=args.tol, seed=args.seed, progress_bar=progress,
                             resume=checkpoint)
        except pp.FitDivergedError as err:
            if err.result is None:
                raise
            fit, status, failure = err.result, EXIT_DIVERGED, f"the MAP diverged: {err}"
    data_notes = [str(w.message) for w in caught if issubclass(w.category, pp.DataWarning)]
    for note in data_notes:
        sys.stderr.write(f"{PROG} fit: warning: {note}\n")
    if status == 0 and fit.interrupted:
        status, failure = EXIT_INTERRUPTED, f"interrupted after {fit.num_steps} steps"
    elif status == 0 and fit.converged is False:
        status, failure = EXIT_NOT_CONVERGED, f"the MAP {fit.convergence}"
    t_map = time.perf_counter() - t0
    result: Any = fit
    if args.method == "nuts" and status == 0:
        result = pp.fit_nuts(model, data, **_nuts_kwargs(args, fit, progress))
    elif args.method == "laplace" and status == 0:
        result = pp.fit_laplace(model, data, num_draws=args.num_draws or 1000, seed=args.seed,
                                map_fit=fit, progress_bar=progress)
    conv = None
    if getattr(result, "method", None) == "nuts":
        from psyphy_pp.diagnostics import sigma_convergence

        conv = sigma_convergence(result)
        if status == 0 and not conv.converged:
            status = EXIT_NUTS_NOT_CONVERGED
            failure = _nuts_failure(conv, "Sigma at the references", args.num_chains)
    bands = _band_lines(result, data, progress) if result is not fit else []
    checks = _goodness_lines(result) if status != EXIT_INTERRUPTED else []
    wall = time.perf_counter() - t0
    saved = SavedFit.from_result(result)
    if saved.kind == "posterior" and saved.losses is None:
        saved = _replace(saved, losses=fit.losses)
    save_fit(staging / "fit.npz", saved)
    params: dict[str, Any] = {k: np.asarray(v) for k, v in saved.params.items()}
    np.savez(staging / "params.npz", **params)
    written = ["fit.npz", "params.npz"]
    if status in (EXIT_INTERRUPTED, EXIT_NOT_CONVERGED) and fit.checkpoint is not None:
        fit.checkpoint.save(staging / CHECKPOINT_FILE)
        written.append(CHECKPOINT_FILE)
    notes = []
    if status != EXIT_INTERRUPTED:
        try:
            pp.to_arviz(result).to_netcdf(str(staging / "inference.nc"))
            written.append("inference.nc")
        except Exception as err:  # report, do not hide: the fit itself is saved
            notes.append(f"no ArviZ file: {type(err).__name__}: {_one_line(err)}")
    written.append("summary.txt")
    text = _summary(args, data, fit, result, t_map, wall, [out / w for w in written], notes,
                    data_notes, bands, checks, conv)
    (staging / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    if status == EXIT_INTERRUPTED:
        sys.stderr.write(f"{PROG} fit: {failure}; the fit so far and its checkpoint are in "
                         f"{out}; continue with: {PROG} fit {args.data} --resume {out}\n")
    elif failure is not None:
        sys.stderr.write(f"{PROG} fit: {failure} (exit status {status}; the fit is saved in "
                         f"{out})\n")
    return status


#: References listed in summary.txt (all of them are in ``psyphy-pp thresholds``).
SUMMARY_REFERENCES = 25


def _band_lines(result: Any, data: Any, progress: bool, prob: float = 0.9) -> list[str]:
    """summary.txt lines of a posterior fit: threshold ellipses with their credible bands."""
    from psyphy_pp.fitio import SavedFit
    from psyphy_pp.thresholds import thresholds

    saved = SavedFit.from_result(result, normalization=data.normalization)
    refs = _reference_points(saved, None)
    draws = _thin(saved, 200)
    th = thresholds(saved.model, draws, refs, num_directions=16,
                    progress_bar=progress).to_user(data.normalization)
    t = th.table(prob)
    d = th.input_dim
    lines = [f"thresholds at P(correct) = {th.target:.4g}: ellipse half-axes with their "
             f"{prob:.0%} credible bands ({len(refs)} references x 16 directions, "
             f"{len(draws['W'])} draws; all in psyphy-pp thresholds):"]
    for i in range(min(len(refs), SUMMARY_REFERENCES)):
        ref = ", ".join(f"{t[f'ref_{j}'][i]:.4g}" for j in range(d))
        axes = " and ".join(f"{t[f'axis_{j}'][i]:.3g} [{t[f'axis_{j}_lower'][i]:.3g}, "
                            f"{t[f'axis_{j}_upper'][i]:.3g}]" for j in range(d))
        angle = f", angle {t['angle_deg'][i]:.0f} deg" if d == 2 else ""
        why = "" if t["ellipse_ok"][i] else f" (not ok: {t['ellipse_reason'][i]})"
        lines.append(f"  ref ({ref}): {axes}{angle}{why}")
    if len(refs) > SUMMARY_REFERENCES:
        lines.append(f"  ... and {len(refs) - SUMMARY_REFERENCES} more references")
    return lines


def _goodness_lines(result: Any) -> list[str]:
    """summary.txt lines: the goodness-of-fit test of the fit (or why it could not run)."""
    from psyphy_pp.goodness import goodness_of_fit

    try:
        return goodness_of_fit(result).summary().splitlines()
    except Exception as err:  # report, do not hide: the fit itself is saved
        return [f"goodness of fit: not computed ({type(err).__name__}: {_one_line(err)})"]


def _summary(args: argparse.Namespace, data: Any, fit: Any, result: Any, t_map: float,
             wall: float, written: Sequence[Path], notes: Sequence[str],
             data_notes: Sequence[str] = (), bands: Sequence[str] = (),
             checks: Sequence[str] = (), conv: Any = None) -> str:
    """summary.txt's text; ``conv`` is the Sigma convergence of a NUTS ``result``."""
    m = fit.model
    norm = data.normalization
    settings = fit.settings
    if fit.interrupted:
        verdict = "INTERRUPTED (resume with --resume)"
    elif fit.converged is None:
        verdict = "convergence not assessed (fresh Monte Carlo noise)"
    else:
        verdict = "converged" if fit.converged else "NOT converged"
    lines = [
        f"psyphy_pp {__version__} fit of {args.data}",
        f"data: {data.num_trials} trials, input_dim {data.input_dim}, "
        f"{len(data.unique_refs())} distinct references, {data.responses.mean():.1%} correct",
        "units: " + ("model units [-1, 1]" if norm is None else
                     f"box low={list(norm.low)} high={list(norm.high)} mapped to [-1, 1]"),
        f"model: basis_degree {m.basis_degree}, extra_dims {m.extra_dims}, variance_scale "
        f"{m.variance_scale:g}, decay_rate {m.decay_rate:g}, diag_term {m.diag_term:g}, "
        f"task {m.task!r}",
        f"MAP (SVI, optimizer {settings.get('optimizer')}, tol {settings.get('tol')}): "
        f"{fit.num_steps} of at most {settings.get('num_steps')} steps in {t_map:.1f} s, "
        f"{verdict}",
        f"MAP convergence: {fit.convergence}",
        f"MAP loss (negative log posterior): {fit.losses[0]:.5g} -> {fit.losses[-1]:.5g} "
        "nats per trial" if len(fit.losses) else "MAP loss: no finite step",
        f"fit quality: negative log-likelihood {fit.nll_per_trial:.5g} nats per trial; a "
        f"constant observer at the data's {data.responses.mean():.1%} correct: "
        f"{fit.constant_nll_per_trial:.5g}",
    ]
    if m.task.has_lapse:
        lines.append(_lapse_line(m, fit, result))
    if getattr(result, "method", None) == "nuts":
        stats = getattr(result, "sample_stats", {}) or {}
        div = int(np.sum(stats.get("diverging", 0)))
        st = result.settings
        lines.append(f"NUTS: {result.num_chains} chains x {result.num_samples} draws (warmup "
                     f"{st['num_warmup']}, target acceptance {st['target_accept_prob']:g}, tree "
                     f"depth at most {_depth_text(st['max_tree_depth'])}, {args.mass} mass, "
                     f"{args.gauge} gauge), {div} divergences, task {result.model.task!r}")
        lines.append(_nuts_convergence_line(conv, "Sigma at the references", args.num_chains))
    elif getattr(result, "method", None) == "laplace":
        st = result.settings
        lines.append(f"Laplace: {result.num_samples} independent draws of a Gaussian at the MAP "
                     f"({st['newton_steps']} Newton steps, largest gradient left "
                     f"{st['max_gradient']:.2g} posterior sd, {st['gauge_dim']} rotation-gauge "
                     f"directions with zero width), task {result.model.task!r}")
        lines.append(f"Laplace check: at its draws the negative log posterior rose "
                     f"{st['rise_ratio']:.2f} times as much as the Gaussian predicts (1 for a "
                     "Gaussian posterior; above 1 the posterior is narrower than the Gaussian "
                     "in some directions and the bands sit too high, see docs/coverage.md)")
    lines += list(bands)
    lines += list(checks)
    lines.append(f"wall time: {wall:.1f} s")
    lines.append("warnings: " + ("; ".join(data_notes) if data_notes else "none"))
    lines += [f"note: {n}" for n in notes]
    lines.append("wrote: " + ", ".join(str(p) for p in written))
    return "\n".join(lines)


def _nuts_kwargs(args: argparse.Namespace, fit: Any, progress: bool) -> dict[str, Any]:
    """``fit_nuts``'s arguments from the command line, every chain started at the MAP ``fit``."""
    return dict(num_warmup=args.num_warmup, target_accept_prob=args.target_accept,
                num_samples=args.num_draws or 500,
                num_chains=args.num_chains, max_tree_depth=args.max_tree_depth,
                dense_mass=args.mass == "dense", gauge=args.gauge, seed=args.seed,
                init_params=fit.params, progress_bar=progress)


def _nuts_remedy(num_chains: int) -> str:
    """What to do when NUTS did not converge (one chain has no r_hat at all)."""
    if num_chains < 2:
        return "r_hat needs at least 2 chains: --num-chains 2 or more"
    return "run more draws (--num-draws) or raise --max-tree-depth"


def _nuts_failure(conv: Any, what: str, num_chains: int) -> str:
    """The stderr line of a NUTS run that did not converge."""
    return (f"NUTS did not converge ({what}: max r_hat {conv.max_rhat:.3f}, min ess_bulk "
            f"{conv.min_ess_bulk:.0f}); {_nuts_remedy(num_chains)}")


def _nuts_convergence_line(conv: Any, what: str, num_chains: int) -> str:
    """summary.txt line: r_hat and ess_bulk of Sigma (``what``), and the verdict."""
    from psyphy_pp.diagnostics import ESS_MIN, RHAT_MAX

    verdict = ("converged" if conv.converged else
               f"NOT converged (wanted r_hat < {RHAT_MAX} and ess_bulk >= {ESS_MIN}: "
               f"{_nuts_remedy(num_chains)})")
    return (f"NUTS convergence ({what}): max r_hat {conv.max_rhat:.3f}, "
            f"min ess_bulk {conv.min_ess_bulk:.0f}, {verdict}")


def _lapse_line(model: Any, fit: Any, result: Any) -> str:
    """summary.txt line: the lapse rate, fixed or learnt (with its interval for a posterior)."""
    from psyphy_pp.results import lapse_summary

    if not model.task.learns_lapse:
        return f"lapse rate: fixed at {model.task.lapse_rate:g}"
    text = f"lapse rate: learnt, MAP {lapse_summary(fit).split('=', 1)[1]}"
    if result is not fit:
        text += f"; posterior median {lapse_summary(result).split('=', 1)[1]}"
    a, b = model.task.lapse_prior
    return text + f" (Beta({a:g}, {b:g}) prior; thresholds are those of the perceptual field)"


def _reference_points(saved: Any, grid_size: int | None) -> np.ndarray:
    from psyphy_pp.designs import grid_points

    d = saved.model.input_dim
    if grid_size is None and saved.data is not None:
        refs = saved.data.unique_refs()
        if len(refs) <= 100:
            return refs
    return grid_points(5 if grid_size is None else grid_size, d, -0.8, 0.8)


def _thin(saved: Any, max_draws: int) -> dict:
    W = np.asarray(saved.params["W"])
    if saved.kind != "posterior":
        return {"W": W}
    if max_draws < 1:
        raise ValueError(f"--max-draws must be at least 1, got {max_draws}")
    from psyphy_pp.results import thin_draws

    return {"W": thin_draws(W.reshape((-1,) + saved.model.weights_shape), max_draws)}


def _compute_thresholds(saved: Any, args: argparse.Namespace, refs: np.ndarray | None = None,
                        normalization: Any = None) -> tuple[Any, Any]:
    """Thresholds of a fit in model units and in the data's units."""
    from psyphy_pp.thresholds import thresholds

    refs = _reference_points(saved, args.grid_size) if refs is None else refs
    th = thresholds(saved.model, _thin(saved, args.max_draws), refs,
                    num_directions=args.num_directions, target=args.target,
                    progress_bar=not args.no_progress)
    return th, th.to_user(normalization or saved.normalization)


def _cmd_thresholds(args: argparse.Namespace) -> int:
    from psyphy_pp.fitio import load_fit

    _check_threshold_options(args)
    out = args.out or args.fit.with_name("thresholds.csv")
    _check_new_file(out, args.force, "the thresholds file")
    if args.points:
        _check_new_file(args.points, args.force, "the points file")
    saved = load_fit(args.fit)
    _, th = _compute_thresholds(saved, args)
    th.to_csv(out, prob=args.prob, overwrite=args.force)
    if args.points:
        th.to_csv(args.points, points=True, prob=args.prob, overwrite=args.force)
    n_ref, n_dir = th.refs.shape[0], th.directions.shape[0]
    frac = th.fraction_reached().mean()
    print(f"thresholds at P(correct) = {args.target:.4g} for {n_ref} references x {n_dir} "
          f"directions ({frac:.0%} reached inside the box) written to {out}"
          + (f" and {args.points}" if args.points else ""))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psyphy_pp.fitio import load_fit
    from psyphy_pp.goodness import goodness_of_fit
    from psyphy_pp.plotting import (
        plot_calibration,
        plot_losses,
        plot_psychometric_curves,
        plot_threshold_field,
    )

    _check_threshold_options(args)
    _check_int("--dpi", args.dpi)
    scale = _scale_option(args.scale)
    out = args.out or args.fit.parent
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    for name in ("thresholds.png", "psychometric.png", "losses.png", "calibration.png"):
        _check_new_file(out / name, args.force, "the figure")
    saved = load_fit(args.fit)
    truth = load_fit(args.truth) if args.truth else None
    if truth is not None and truth.model.input_dim != saved.model.input_dim:
        raise ValueError(f"--truth has input_dim {truth.model.input_dim}, the fit "
                         f"{saved.model.input_dim}")
    if truth is not None and _box(truth.normalization) != _box(saved.normalization):
        raise ValueError("--truth and the fit use different stimulus units (normalizations)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    d = saved.model.input_dim
    th_model, th = _compute_thresholds(saved, args)
    if d == 2:
        fig, ax = plt.subplots(figsize=(7, 7))
        truth_th = None
        if truth is not None:
            _, truth_th = _compute_thresholds(truth, args, refs=th_model.refs,
                                              normalization=saved.normalization)
        plot_threshold_field(th, truth=truth_th, ax=ax, prob=args.prob, scale=scale)
        written.append(_save(fig, out / "thresholds.png", args.dpi))
    else:
        print(f"note: the threshold-field plot is 2D only (input_dim {d}); see psyphy-pp thresholds")
    refs = _panel_refs(th_model.refs)
    dirs = np.eye(d)
    if d == 2:  # 0, 45, 90 and 135 degrees
        t = np.radians([0.0, 45.0, 90.0, 135.0])
        dirs = np.stack([np.cos(t), np.sin(t)], axis=1)
    fig = plot_psychometric_curves(saved.model, _thin(saved, min(args.max_draws, 100)), refs, dirs,
                                   target=args.target, normalization=saved.normalization,
                                   prob=args.prob)
    written.append(_save(fig, out / "psychometric.png", args.dpi))
    if saved.losses is not None:
        fig = plot_losses([saved], labels=[f"MAP ({saved.method})"])
        written.append(_save(fig, out / "losses.png", args.dpi))
    if saved.data is not None and saved.data.num_trials:
        fig = plot_calibration(goodness_of_fit(saved))
        written.append(_save(fig, out / "calibration.png", args.dpi))
    plt.close("all")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from psyphy_pp._csv import write_columns
    from psyphy_pp.data import TrialData
    from psyphy_pp.fitio import load_fit
    from psyphy_pp.validation import validate

    if not 1.0 / 3.0 < args.target < 1.0:
        raise ValueError(f"--target must be in (1/3, 1), got {args.target}")
    if not 0.0 < args.prob < 1.0:
        raise ValueError(f"--prob must be in (0, 1), got {args.prob}")
    out = args.out or args.fit.with_name("validation.csv")
    _check_new_file(out, args.force, "the validation file")
    saved = load_fit(args.fit)
    probes = TrialData.from_csv(args.probes, normalization=saved.normalization)
    v = validate(saved, probes, target=args.target, level=args.prob)
    write_columns(out, v.table(saved.normalization), overwrite=args.force)
    print(v.summary())
    print(f"wrote {out}")
    return 0


def _scale_option(value: str) -> str | float:
    if value == "auto":
        return value
    try:
        scale = float(value)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"--scale must be 'auto' or a positive number, got {value!r}")
    return scale


def _box(norm: Any) -> tuple | None:
    return None if norm is None else (norm.low, norm.high)


def _panel_refs(refs: np.ndarray) -> np.ndarray:
    """Up to three references for the psychometric panel: those nearest 0, -0.5 and +0.5."""
    d = refs.shape[1]
    chosen: list[int] = []
    for c in (0.0, -0.5, 0.5):
        i = int(np.argmin(np.linalg.norm(refs - c * np.ones(d), axis=1)))
        if i not in chosen:
            chosen.append(i)
    return refs[chosen]


def _save(fig: Any, path: Path, dpi: int) -> Path:
    from psyphy_pp._files import atomic_path

    fig.tight_layout()
    with atomic_path(path, overwrite=True) as part:  # existing figures were refused up front
        fig.savefig(part, dpi=dpi, format="png")
    return path


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


_COMMANDS = {"simulate": _cmd_simulate, "fit": _cmd_fit, "thresholds": _cmd_thresholds,
             "plot": _cmd_plot, "validate": _cmd_validate,
             "experiment": lambda args: run_experiment(args, build_parser())}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``psyphy-pp`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 on success, 1 on bad input (with a one-line reason on
    stderr), 2 on command-line usage errors; for ``fit``, 3 when the MAP did not
    converge and 4 when it diverged (the fit is written in both cases; see the
    module docstring).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageExit as stop:
        return stop.code
    if args.version:
        print(f"{PROG} {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, OSError, FloatingPointError, ImportError, KeyError, RuntimeError) as err:
        reason = _one_line(err)
        if isinstance(err, (RuntimeError, KeyError)):
            reason = f"{type(err).__name__}: {reason}"
        if isinstance(err, OSError) and getattr(err, "filename", None) and err.strerror:
            reason = f"{err.strerror}: {err.filename}"
        sys.stderr.write(f"{PROG} {args.command}: error: {reason}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG} {args.command}: interrupted; nothing was written\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
