"""How often do the threshold credible bands of ``fit_laplace`` contain the true thresholds?

Simulated observers, each a draw from the prior of DESIGN.md's P-std model
(``WPPM(input_dim=2, basis_degree=4, extra_dims=1, variance_scale=4e-3,
decay_rate=0.4)``; the truth is simulated with ``diag_term=1e-9`` and fitted
with ``diag_term=1e-4``, as ``psyphy-pp simulate`` and ``psyphy-pp fit`` do).
Observer ``i`` has the seed ``--seed + i``; its seed alone fixes its truth,
design and responses (``k_truth, k_design, k_resp = split(PRNGKey(seed), 3)``,
as ``psyphy-pp simulate`` does), so any observer can be rerun alone with
``--seed SEED --observers 1 --design DESIGN``. The designs alternate over
observers (even index: grid, odd index: Sobol):

* ``grid``: a 5 x 5 reference grid, ``--trials / 25`` trials per reference
  (``pp.designs.grid_design``);
* ``sobol``: ``--trials`` references from a scrambled Sobol sequence on
  ``[-1, 1]^2`` (``scipy.stats.qmc.Sobol`` seeded with the observer's seed;
  scipy comes with arviz; without it, a Halton sequence with a seeded random
  shift), each with one comparison placed as ``grid_design`` places them:
  ``clip(ref + 2.8 chol(Sigma_truth(ref)) (cos a, sin a), -1, 1)``, ``a``
  uniform.

Each observer is fitted with the default call ``pp.fit_laplace(model, data,
progress_bar=False)`` (MAP, Newton refinement, Hessian, 1,000 draws), timed as a
whole. True thresholds at target P(correct) 2/3 (the default) come from
``pp.thresholds`` of the truth at 25 readout references
(``grid_points(5, 2, -0.8, 0.8)``) x 16 directions; posterior thresholds from
``pp.thresholds(post.model, {"W": draws})`` with the draws thinned to
``--draws`` (400), evenly spaced. Only (reference, direction) pairs where the
truth reaches the target inside the box are scored; the others are counted as
dropped. Coverage is the fraction of true thresholds inside the equal-tailed
``Thresholds.band(prob)`` for prob 0.5, 0.8, 0.9 and 0.95, pooled over the
observers of a design, with the spread over observers (min / median / max of
per-observer coverage); the band width is the median over pairs of
``(upper - lower) / median``.

Options: ``--nuts`` also runs ``pp.fit_nuts(model, data,
init_params=post.map_fit.params, num_warmup=500, num_samples=500,
num_chains=2)`` per observer (NUTS took 625 s per observer on 2 cores at
``--nuts-warmup 200 --nuts-samples 500`` with the default tree-depth cap and dense
mass matrix, so about 13 min at 500 + 500) and reports the same
columns; ``--bootstrap K`` adds a parametric bootstrap of the MAP on the first K
observers (``fit_map_scratch`` refits, warm-started at the MAP, to data simulated from
the MAP fit, as many as fit in that observer's Laplace wall time); ``--quick``
is a smoke test (2 observers, 600 trials, basis degree 2, small NUTS runs).

Prints a markdown table (and one row per observer), writes the raw numbers as
JSON (``benchmarks/results/coverage.json``) and the calibration plot
(``docs/figures/coverage.png``); with ``--quick`` both go to the temporary
directory unless ``--json`` / ``--figure`` are given.

Run ``python -m benchmarks.coverage`` from the repository root (about 1-2 min
per observer on 2 CPU cores; 20 observers by default).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROBS = (0.5, 0.8, 0.9, 0.95)
DESIGNS = ("grid", "sobol")
#: Comparisons at this Mahalanobis distance of the truth (grid_design's default).
RADIUS = 2.8


# -- the observers --------------------------------------------------------------------------

def model_kwargs(basis_degree: int) -> dict:
    """P-std's prior (DESIGN.md): degree-4 Chebyshev basis, one extra dimension."""
    return dict(input_dim=2, basis_degree=basis_degree, extra_dims=1, variance_scale=4e-3,
                decay_rate=0.4)


def unit_square_points(n: int, seed: int) -> tuple[np.ndarray, str]:
    """``n`` low-discrepancy points in ``[0, 1)^2``, and the name of the generator.

    A scrambled Sobol sequence (``scipy.stats.qmc.Sobol``, the first ``n`` points
    of a ``2^m >= n`` sequence) when scipy is importable, else a Halton sequence
    (bases 2 and 3) with a seeded uniform random shift modulo 1.
    """
    try:
        from scipy.stats import qmc
    except ImportError:
        pass
    else:
        m = max(1, math.ceil(math.log2(n)))
        pts = qmc.Sobol(d=2, scramble=True, seed=seed).random_base2(m)[:n]
        return pts, "scrambled Sobol (scipy.stats.qmc.Sobol)"
    return halton_points(n, seed), "Halton (bases 2, 3) with a seeded random shift"


def halton_points(n: int, seed: int) -> np.ndarray:
    """The first ``n`` points of the 2D Halton sequence, shifted by a seeded uniform vector mod 1."""
    cols = []
    for base in (2, 3):
        i = np.arange(1, n + 1)
        x, f = np.zeros(n), 1.0
        while np.any(i > 0):
            f /= base
            x += f * (i % base)
            i //= base
        cols.append(x)
    shift = np.random.default_rng(seed).random(2)
    return (np.stack(cols, axis=1) + shift) % 1.0


def sobol_design(truth_model, truth: dict, n: int, seed: int, key) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` quasi-random references on ``[-1, 1]^2``, one comparison each.

    The comparison is placed as :func:`psyphy_pp.designs.grid_design` places
    its comparisons (which takes a grid only): ``RADIUS`` noise standard
    deviations of the truth away, in a uniformly random direction, clipped to
    the box.
    """
    import jax

    pts, generator = unit_square_points(n, seed)
    refs = 2.0 * pts - 1.0
    L = np.linalg.cholesky(np.asarray(truth_model.covariance(truth, refs), np.float64))
    a = np.asarray(jax.random.uniform(key, (n,), minval=0.0, maxval=2.0 * np.pi), np.float64)
    e = np.stack([np.cos(a), np.sin(a)], axis=1)
    comps = refs + RADIUS * np.einsum("nij,nj->ni", L, e)
    return refs, np.clip(comps, -1.0, 1.0), generator


def make_observer(seed: int, design: str, *, trials: int, grid_size: int, basis_degree: int):
    """The truth, its model and the simulated trials of one observer, all from ``seed``."""
    import jax

    import psyphy_pp as pp

    truth_model = pp.WPPM(**model_kwargs(basis_degree), diag_term=1e-9)
    k_truth, k_design, k_resp = jax.random.split(jax.random.PRNGKey(seed), 3)
    truth = truth_model.sample_prior(k_truth)
    if design == "grid":
        per_ref = trials // grid_size**2
        if per_ref * grid_size**2 != trials:
            raise ValueError(f"--trials ({trials}) must be a multiple of --grid-size^2 "
                             f"({grid_size**2}) for the grid design")
        refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=grid_size,
                                             trials_per_ref=per_ref, mahalanobis_radius=RADIUS,
                                             key=k_design)
        generator = f"{grid_size} x {grid_size} grid, {per_ref} trials per reference"
    else:
        refs, comps, generator = sobol_design(truth_model, truth, trials, seed, k_design)
    data = pp.simulate(truth_model, truth, refs, comps, key=k_resp)
    return truth_model, truth, data, generator


# -- scoring ----------------------------------------------------------------------------------

def thin(W: np.ndarray, weights_shape: tuple, num: int) -> np.ndarray:
    """Draws of any leading shape flattened to one axis, ``num`` of them evenly spaced."""
    flat = np.asarray(W).reshape((-1,) + tuple(weights_shape))
    if flat.shape[0] <= num:
        return flat
    idx = np.round(np.linspace(0, flat.shape[0] - 1, num)).astype(int)
    return flat[idx]


def score(th, true_dist: np.ndarray, mask: np.ndarray) -> dict:
    """Coverage counts, widths and the PIT of the true thresholds under one posterior."""
    out = {"used": int(mask.sum()), "covered": {}, "below": {}, "above": {}, "width": {}}
    d = th.distances.reshape((-1,) + true_dist.shape)
    for p in PROBS:
        lo, med, hi = th.band(p)
        t, lo, med, hi = true_dist[mask], lo[mask], med[mask], hi[mask]
        out["covered"][str(p)] = int(np.sum((lo <= t) & (t <= hi)))
        out["below"][str(p)] = int(np.sum(t < lo))  # truth below the band
        out["above"][str(p)] = int(np.sum(t > hi))
        out["width"][str(p)] = (float(np.median((hi - lo) / med)) if t.size else math.nan)
    # PIT: the fraction of draws below the truth, per scored pair.
    out["pit"] = np.round(np.mean(d[:, mask] < true_dist[mask], axis=0), 4).tolist()
    out["num_draws"] = int(d.shape[0])
    return out


class _Records(logging.Handler):
    """Collects the warnings psyphy_pp logs (e.g. fit_laplace's Newton refinement)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def run_fit(fn):
    """``fn()`` with its wall time, warnings (both kinds) and any exception, as a dict."""
    handler = _Records()
    log = logging.getLogger("psyphy_pp")
    log.addHandler(handler)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result, error = fn(), None
            except Exception as err:  # noqa: BLE001 - a failed fit is a result here
                result, error = None, f"{type(err).__name__}: {err}"
    finally:
        log.removeHandler(handler)
    wall = time.perf_counter() - t0
    msgs = [f"{w.category.__name__}: {w.message}" for w in caught] + handler.messages
    return result, {"wall_s": round(wall, 2), "warnings": msgs, "error": error}


def posterior_thresholds(model, W, refs, num_directions: int, num_draws: int):
    import psyphy_pp as pp

    draws = thin(W, model.weights_shape, num_draws)
    return pp.thresholds(model, {"W": draws}, refs, num_directions=num_directions)


def bootstrap(model, data, post, seed: int, budget_s: float, min_refits: int = 2):
    """Parametric bootstrap of the MAP: refits to data simulated from the MAP fit.

    Returns the refits' weights, shape ``(B, *weights_shape)``, and how many ran.
    Refits continue until ``budget_s`` seconds have passed (at least ``min_refits``).
    """
    import jax

    import psyphy_pp as pp

    centre = post.map_fit.params
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    Ws, t0, b = [], time.perf_counter(), 0
    while b < min_refits or time.perf_counter() - t0 < budget_s:
        sim = pp.simulate(model, centre, data.refs, data.comparisons,
                          key=jax.random.fold_in(key, b))
        refit = pp.fit_map_scratch(model, sim, init_params=centre, progress_bar=False)
        Ws.append(np.asarray(refit.params["W"]))
        b += 1
    return np.stack(Ws), b


# -- one observer ------------------------------------------------------------------------------

def observer_run(seed: int, design: str, args, with_bootstrap: bool = False) -> dict:
    """Simulates, fits and scores one observer; returns its row of raw numbers."""
    import psyphy_pp as pp

    truth_model, truth, data, generator = make_observer(
        seed, design, trials=args.trials, grid_size=args.grid_size,
        basis_degree=args.basis_degree)
    model = pp.WPPM(**model_kwargs(args.basis_degree), diag_term=1e-4)
    refs = pp.designs.grid_points(args.readout_grid, 2, -0.8, 0.8)
    true_th = pp.thresholds(truth_model, truth, refs, num_directions=args.num_directions)
    mask = np.asarray(true_th.reached, bool)
    true_dist = np.asarray(true_th.distances)
    row: dict = {"seed": seed, "design": design, "design_detail": generator,
                 "num_trials": data.num_trials, "proportion_correct": float(data.responses.mean()),
                 "pairs": int(mask.size), "dropped": int((~mask).sum())}

    post, info = run_fit(lambda: pp.fit_laplace(model, data, progress_bar=False))
    row["laplace"] = info
    if post is not None:
        s = post.settings
        info.update(map_steps=post.map_fit.num_steps, map_converged=post.map_fit.converged,
                    map_first_step_s=round(float(post.map_fit.settings["first_step_seconds"]), 2),
                    newton_steps=s["newton_steps"], newton_decrement=s["newton_decrement"],
                    max_gradient_sd=s["max_gradient"], hessian_s=round(s["hessian_seconds"], 2),
                    smallest_eigenvalue=float(post.eigenvalues[0]))
        t0 = time.perf_counter()
        th = posterior_thresholds(post.model, post.samples["W"], refs, args.num_directions,
                                  args.draws)
        info["thresholds_s"] = round(time.perf_counter() - t0, 2)
        info.update(score(th, true_dist, mask))

        if args.nuts:
            nuts, ninfo = run_fit(lambda: pp.fit_nuts(
                model, data, init_params=post.map_fit.params, num_warmup=args.nuts_warmup,
                num_samples=args.nuts_samples, num_chains=2, progress_bar=False))
            row["nuts"] = ninfo
            if nuts is not None:
                ninfo["divergences"] = int(nuts.num_divergences)
                ninfo.update(pp.diagnostics.sigma_convergence(nuts)._asdict())
                th = posterior_thresholds(nuts.model, nuts.samples["W"], refs,
                                          args.num_directions, args.draws)
                ninfo.update(score(th, true_dist, mask))

        if with_bootstrap:
            budget = info["wall_s"]
            out, binfo = run_fit(lambda: bootstrap(model, data, post, seed, budget))
            row["bootstrap"] = binfo
            if out is not None:
                Ws, binfo["refits"] = out
                th = pp.thresholds(model, {"W": Ws}, refs, num_directions=args.num_directions)
                binfo.update(score(th, true_dist, mask))
    return row


# -- summaries -------------------------------------------------------------------------------------

def summarise(rows: list[dict], method: str) -> list[dict]:
    """One summary per (design, prob) over the observers whose fit succeeded."""
    out = []
    present = {r["design"] for r in rows}
    for design in DESIGNS + (("all",) if len(present) > 1 else ()):
        rs = [r[method] for r in rows if method in r and "used" in r[method]
              and (design == "all" or r["design"] == design)]
        if not rs:
            continue
        used = sum(r["used"] for r in rs)
        dropped = sum(r["dropped"] for r in rows if method in r and "used" in r[method]
                      and (design == "all" or r["design"] == design))
        for p in PROBS:
            k = str(p)
            per = [r["covered"][k] / r["used"] for r in rs if r["used"]]
            out.append(dict(
                method=method, design=design, prob=p, observers=len(rs), used=used,
                dropped=dropped,
                coverage=sum(r["covered"][k] for r in rs) / used if used else math.nan,
                below=sum(r["below"][k] for r in rs) / used if used else math.nan,
                above=sum(r["above"][k] for r in rs) / used if used else math.nan,
                obs_min=float(np.min(per)) if per else math.nan,
                obs_median=float(np.median(per)) if per else math.nan,
                obs_max=float(np.max(per)) if per else math.nan,
                width=float(np.median([r["width"][k] for r in rs])),
            ))
    return out


TABLE_COLUMNS = ("method", "design", "observers", "thresholds scored (dropped)", "nominal",
                 "coverage", "truth below / above band", "per observer min / median / max",
                 "relative width")


def format_table(summary: list[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for s in summary:
        lines.append(
            f"| {s['method']} | {s['design']} | {s['observers']} | {s['used']} ({s['dropped']}) | "
            f"{s['prob']:.2f} | {s['coverage']:.3f} | {s['below']:.3f} / {s['above']:.3f} | "
            f"{s['obs_min']:.2f} / {s['obs_median']:.2f} / {s['obs_max']:.2f} | "
            f"{s['width']:.3f} |")
    return "\n".join(lines)


def format_observers(rows: list[dict], methods: list[str]) -> str:
    head = ["seed", "design", "% correct", "scored (dropped)"]
    for m in methods:
        head += [f"{m} wall s", f"{m} cov 0.9", f"{m} notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["seed"]), r["design"], f"{100 * r['proportion_correct']:.1f}",
                 f"{r['pairs'] - r['dropped']} ({r['dropped']})"]
        for m in methods:
            info = r.get(m)
            if info is None:
                cells += ["", "", "not run"]
                continue
            cov = (f"{info['covered']['0.9'] / info['used']:.3f}"
                   if info.get("used") else "")
            notes = []
            if info.get("error"):
                notes.append("FAILED: " + info["error"][:120])
            if "map_steps" in info:
                notes.append(f"MAP {info['map_steps']} steps"
                             + ("" if info["map_converged"] else " (not converged)")
                             + f", Newton {info['newton_steps']}")
            if "divergences" in info:
                notes.append(f"{info['divergences']} divergences")
            if "max_rhat" in info:
                notes.append(f"Sigma r_hat <= {info['max_rhat']:.3f}, "
                             f"ess_bulk >= {info['min_ess_bulk']:.0f}")
            if "refits" in info:
                notes.append(f"{info['refits']} refits")
            if info.get("warnings"):
                notes.append(f"{len(info['warnings'])} warning(s)")
            cells += [f"{info['wall_s']:.1f}", cov, "; ".join(notes)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=120)
    lim = (0.4, 1.0)
    x = np.linspace(*lim, 2)
    ax.fill_between(x, x - 0.05, x + 0.05, color="0.88", label="nominal ± 5 points")
    ax.plot(x, x, color="0.3", lw=1, ls="--", label="nominal")
    styles = {"laplace": "-", "nuts": "--", "bootstrap": ":"}
    colours = {"grid": "C0", "sobol": "C1", "all": "C2"}
    offsets = {"grid": -0.006, "sobol": 0.006, "all": 0.0}
    for method in dict.fromkeys(s["method"] for s in summary):
        for design in DESIGNS:
            ss = [s for s in summary if s["method"] == method and s["design"] == design]
            if not ss:
                continue
            p = np.array([s["prob"] for s in ss])
            c = np.array([s["coverage"] for s in ss])
            lo = np.array([s["obs_min"] for s in ss])
            hi = np.array([s["obs_max"] for s in ss])
            ax.errorbar(p + offsets[design], c, yerr=[c - lo, hi - c], fmt="o",
                        ls=styles.get(method, "-"), color=colours[design], capsize=2, lw=1.3,
                        elinewidth=0.7,
                        label=f"{method}, {design} ({ss[0]['observers']} observers)")
    ax.set_xlim(*lim)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("nominal probability of the band")
    ax.set_ylabel("fraction of true thresholds inside the band")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.text(0.41, 0.97, "bars: per-observer min to max", fontsize=7, va="top")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.coverage",
                                description=__doc__.splitlines()[0])
    p.add_argument("--observers", type=int, default=None, help="observers (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first observer; observer i "
                   "has seed SEED + i (default 0)")
    p.add_argument("--design", choices=("alternate",) + DESIGNS, default="alternate",
                   help="grid, sobol, or alternate over observers (default: even index grid, "
                        "odd index sobol)")
    p.add_argument("--trials", type=int, default=None, help="trials per observer (default 6000)")
    p.add_argument("--grid-size", type=int, default=5, help="reference grid per axis (default 5)")
    p.add_argument("--basis-degree", type=int, default=None, help="Chebyshev degree (default 4)")
    p.add_argument("--readout-grid", type=int, default=5,
                   help="readout references per axis on [-0.8, 0.8] (default 5)")
    p.add_argument("--num-directions", type=int, default=16, help="directions per reference "
                   "(default 16)")
    p.add_argument("--draws", type=int, default=400,
                   help="posterior draws kept for the thresholds, evenly thinned (default 400)")
    p.add_argument("--nuts", action="store_true", help="also run fit_nuts per observer (about "
                   "13 min each at the default 500 + 500)")
    p.add_argument("--nuts-warmup", type=int, default=None, help="NUTS warmup (default 500)")
    p.add_argument("--nuts-samples", type=int, default=None,
                   help="NUTS draws per chain, 2 chains (default 500)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="K",
                   help="parametric bootstrap of the MAP on the first K observers (default 0)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 observers, 600 trials, "
                   "basis degree 2, NUTS 100 + 100")
    p.add_argument("--json", type=Path, default=None,
                   help="raw results (default benchmarks/results/coverage.json)")
    p.add_argument("--figure", type=Path, default=None,
                   help="calibration plot (default docs/figures/coverage.png)")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    quick = args.quick
    defaults = dict(observers=(2, 20), trials=(600, 6000), basis_degree=(2, 4),
                    nuts_warmup=(100, 500), nuts_samples=(100, 500))
    for name, (q, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, q if quick else full)
    tmp = Path(tempfile.gettempdir())
    if args.json is None:
        args.json = (tmp / "psyphy_pp_coverage_quick.json" if quick
                     else ROOT / "benchmarks" / "results" / "coverage.json")
    if args.figure is None:
        args.figure = (tmp / "psyphy_pp_coverage_quick.png" if quick
                       else ROOT / "docs" / "figures" / "coverage.png")
    for name in ("observers", "trials", "grid_size", "basis_degree", "readout_grid",
                 "num_directions", "draws", "nuts_warmup", "nuts_samples"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.bootstrap < 0 or args.seed < 0:
        raise SystemExit("--bootstrap and --seed must be >= 0")
    return args


def main(argv=None) -> int:
    import jax
    import numpyro

    import psyphy_pp as pp

    args = resolve(build_parser().parse_args(argv))
    logging.getLogger("psyphy_pp").setLevel(logging.WARNING)
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    seeds = [args.seed + i for i in range(args.observers)]
    designs = [(DESIGNS[i % 2] if args.design == "alternate" else args.design)
               for i in range(args.observers)]
    header = (
        f"coverage of threshold bands; started {started:%Y-%m-%d %H:%M %Z}; "
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, psyphy_pp {pp.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; load (1/5/15 min) at start "
        f"{load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f}\n"
        f"observers {args.observers}: seeds {seeds[0]}..{seeds[-1]}, designs "
        f"{'alternating grid / sobol' if args.design == 'alternate' else args.design}; "
        f"{args.trials} trials each; basis degree {args.basis_degree}; truth diag_term 1e-9, "
        f"fit diag_term 1e-4; readout {args.readout_grid} x {args.readout_grid} on [-0.8, 0.8]^2 "
        f"x {args.num_directions} directions; {args.draws} draws for the bands"
        + (f"; NUTS {args.nuts_warmup} + {args.nuts_samples} x 2 chains" if args.nuts else "")
        + (f"; bootstrap on the first {args.bootstrap} observers" if args.bootstrap else ""))
    print(header, flush=True)

    rows = []
    for i, (seed, design) in enumerate(zip(seeds, designs)):
        t0 = time.perf_counter()
        row = observer_run(seed, design, args, with_bootstrap=i < args.bootstrap)
        rows.append(row)
        lap = row["laplace"]
        msg = (f"observer {i + 1}/{args.observers}: seed {seed}, {design}, "
               f"{row['pairs'] - row['dropped']} scored ({row['dropped']} dropped); "
               f"laplace {lap['wall_s']:.1f} s")
        for m in ("laplace", "nuts", "bootstrap"):
            info = row.get(m)
            if info and info.get("used"):
                msg += f"; {m} coverage at 0.9: {info['covered']['0.9'] / info['used']:.3f}"
            if info and info.get("error"):
                msg += f"; {m} FAILED: {info['error']}"
            if info and info.get("warnings"):
                msg += f"; {m} warnings: {info['warnings']}"
        msg += f" ({time.perf_counter() - t0:.0f} s for this observer)"
        print(msg, flush=True)

    methods = [m for m in ("laplace", "nuts", "bootstrap") if any(m in r for r in rows)]
    summary = [s for m in methods for s in summarise(rows, m)]
    total = time.perf_counter() - t_start
    load_end = os.getloadavg()
    lap_walls = [r["laplace"]["wall_s"] for r in rows if not r["laplace"]["error"]]
    failed = [r["seed"] for r in rows if r["laplace"]["error"]]
    footer = (
        f"total run time {total / 60:.1f} min; load (1/5/15 min) at end "
        f"{load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f}; fit_laplace wall time per "
        f"observer (MAP included) median {np.median(lap_walls) if lap_walls else math.nan:.1f} s, "
        f"min {min(lap_walls, default=math.nan):.1f} s, max {max(lap_walls, default=math.nan):.1f} s"
        f"; failed fits: {failed or 'none'}; designs: "
        + "; ".join(sorted({f"{r['design']}: {r['design_detail']}" for r in rows})))
    print("\nPer observer:\n")
    print(format_observers(rows, methods))
    print("\nCoverage of the true thresholds (target P(correct) 2/3) by equal-tailed bands:\n")
    print(format_table(summary))
    print("\n" + footer, flush=True)

    title = (f"{args.observers} simulated observers, {args.trials} trials each, "
             f"basis degree {args.basis_degree}")
    plot(summary, args.figure, title)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = dict(
        command="python -m benchmarks.coverage " + " ".join(sys.argv[1:] if argv is None else argv),
        header=header, footer=footer, started=started.isoformat(timespec="seconds"),
        total_seconds=round(total, 1), load_start=load_start, load_end=load_end,
        versions=dict(jax=jax.__version__, numpyro=numpyro.__version__,
                      psyphy_pp=pp.__version__, python=platform.python_version()),
        settings={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        summary=summary, observers=rows)
    args.json.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(f"wrote {args.json} and {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
