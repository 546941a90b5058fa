"""Adaptive placement against space-filling designs, on simulated observers.

    python -m benchmarks.adaptive            # 4 observers, about 15-35 min each on 2 cores
    python -m benchmarks.adaptive --quick    # 1 observer, 1,000 trials: a smoke test

Each observer is simulated and run through :class:`psyphy_pp.Experiment` once
per strategy, each session to the largest size (default 6,000 told trials, asked
in batches of 20):

* ``thresholds``: the default (500 Sobol start trials, then placement by the
  expected drop of the readout thresholds' variance, refitted every 200 trials);
* ``sobol``: the session's scrambled Sobol design all the way;
* ``grid``: the session's grid design all the way (5 x 5 references on
  ``[-0.8, 0.8]^2``);
* ``information`` (with ``--strategies``): placement by the expected
  information gain about the field.

None of these designs knows the truth. For context the table adds
``oracle-grid``, DESIGN.md's P-std design, which places every comparison at 2.8
noise standard deviations *of the truth* (``pp.designs.grid_design``).

Observers: prior draws of P-std's model (``WPPM(basis_degree=4, extra_dims=1,
variance_scale=4e-3, decay_rate=0.4)``, truth ``diag_term=1e-9``), and one
"rough" observer outside the fitted model: a degree-7 field with
``decay_rate=0.7`` (its finer structure cannot be represented at degree 4).

Scoring. At every size (the first ``n`` told trials of a session) the default
``pp.fit_map`` is fitted and its thresholds compared with the truth's at 25
readout references (``grid_points(5, 2, -0.8, 0.8)``) x 16 directions, where
the truth reaches P(correct) = 2/3 inside the box: the **median relative
threshold error**. The **band width** is the median relative width of the 90%
band of 100 draws of a Gauss-Newton Laplace posterior at that MAP (the
curvature the session itself uses). The time of every ``ask`` and refit is
reported from the sessions' own logs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (1000, 2000, 4000, 6000)
STRATEGIES = ("thresholds", "sobol", "grid")
RESULTS = Path(__file__).resolve().parent / "results"


def model_kwargs(basis_degree: int = 4) -> dict:
    return dict(input_dim=2, basis_degree=basis_degree, extra_dims=1, variance_scale=4e-3,
                decay_rate=0.4)


def make_truth(kind: str, seed: int):
    import jax

    import psyphy_pp as pp

    if kind == "prior":
        truth_model = pp.WPPM(**model_kwargs(), diag_term=1e-9)
    else:  # rough: finer structure than the fitted degree-4 model holds
        truth_model = pp.WPPM(**{**model_kwargs(7), "decay_rate": 0.7}, diag_term=1e-9)
    return truth_model, truth_model.sample_prior(jax.random.PRNGKey(seed))


def run_session(strategy: str, fit_model, truth_model, truth, total: int, batch: int,
                seed: int, path: str):
    """Run one session to ``total`` told trials; returns (data, ask log, fit log, seconds)."""
    import jax

    import psyphy_pp as pp

    key = jax.random.PRNGKey(10_000 + seed)
    t0 = time.perf_counter()
    with pp.Experiment(fit_model, path, strategy=strategy, seed=seed) as exp:
        while exp.num_told < total:
            trials = exp.ask(min(batch, total - exp.num_told))
            key, sub = jax.random.split(key)
            sim = pp.simulate(truth_model, truth, trials.refs, trials.comparisons, key=sub)
            exp.tell(trials, sim.responses)
        return exp.data, exp.ask_log(), exp.fit_log(), time.perf_counter() - t0


def oracle_data(truth_model, truth, total: int, seed: int):
    import jax

    import psyphy_pp as pp

    k_design, k_resp, k_perm = jax.random.split(jax.random.PRNGKey(20_000 + seed), 3)
    refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=5,
                                         trials_per_ref=-(-total // 25), key=k_design)
    order = np.random.default_rng(seed).permutation(len(refs))[:total]  # any prefix is balanced
    return pp.simulate(truth_model, truth, refs[order], comps[order], key=k_resp)


def head(data, n: int):
    import psyphy_pp as pp

    return pp.TrialData(data.refs[:n], data.comparisons[:n], data.responses[:n])


def laplace_draws(model, W, data, num: int, seed: int) -> np.ndarray:
    """Draws of the Gauss-Newton Laplace posterior at ``W`` (what the session uses)."""
    import jax
    import jax.numpy as jnp

    from psyphy_pp._masked_map import gauss_newton_factor, padded_trials, prior_std, structure

    dtype = jnp.result_type(float)
    std = prior_std(model, dtype)
    n = data.num_trials
    arrays = padded_trials([data.refs, data.comparisons, data.responses], np.ones(n, bool), n,
                           dtype)
    L = gauss_newton_factor(structure(model), jnp.asarray(W, dtype), std, arrays)
    Z = np.asarray(W, np.float64) / np.asarray(std, np.float64)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (num, L.shape[1])), np.float64)
    return ((Z.reshape(-1) + z @ L.T).reshape((num,) + Z.shape)
            * np.asarray(std, np.float64))


def score(model, data, refs, true_th, mask, band_draws: int, seed: int) -> dict:
    import psyphy_pp as pp

    t0 = time.perf_counter()
    fit = pp.fit_map(model, data, progress_bar=False)
    fit_s = time.perf_counter() - t0
    W = np.asarray(fit.params["W"], np.float64)
    th = pp.thresholds(model, {"W": W}, refs, num_directions=true_th.distances.shape[-1])
    t = true_th.distances[mask]
    err = float(np.median(np.abs(th.distances[mask] - t) / t))
    draws = laplace_draws(model, W, data, band_draws, seed)
    post = pp.thresholds(model, {"W": draws}, refs, num_directions=true_th.distances.shape[-1])
    lo, med, hi = post.band(0.9)
    width = float(np.median((hi[mask] - lo[mask]) / med[mask]))
    covered = float(np.mean((lo[mask] <= t) & (t <= hi[mask])))
    return {"error": err, "width90": width, "covered90": covered, "fit_s": round(fit_s, 2),
            "converged": bool(fit.converged)}


def observer(kind: str, seed: int, args) -> dict:
    import psyphy_pp as pp

    truth_model, truth = make_truth(kind, seed)
    fit_model = pp.WPPM(**model_kwargs(), diag_term=1e-4)
    refs = pp.designs.grid_points(5, 2, -0.8, 0.8)
    true_th = pp.thresholds(truth_model, truth, refs, num_directions=16)
    mask = np.asarray(true_th.reached, bool)
    total = max(args.sizes)
    out: dict = {"kind": kind, "seed": seed, "scored": int(mask.sum()), "designs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies:
            data, asks, fits, wall = run_session(strategy, fit_model, truth_model, truth,
                                                 total, args.batch, seed,
                                                 os.path.join(tmp, f"{strategy}.db"))
            adaptive = np.isin(asks["strategy"], ["thresholds", "information"])
            row = {"session_s": round(wall, 1),
                   "ask_s": asks["seconds"][adaptive].tolist(),
                   "fallbacks": int(asks["fallback"].sum()),
                   "refits": fits, "sizes": {}}
            for n in args.sizes:
                row["sizes"][n] = score(fit_model, head(data, n), refs, true_th, mask,
                                        args.band_draws, seed)
                print(f"  {kind} {seed} {strategy:>11} n={n:>5}: {row['sizes'][n]}", flush=True)
            out["designs"][strategy] = row
        if args.oracle:
            data = oracle_data(truth_model, truth, total, seed)
            row = {"sizes": {}}
            for n in args.sizes:
                row["sizes"][n] = score(fit_model, head(data, n), refs, true_th, mask,
                                        args.band_draws, seed)
                print(f"  {kind} {seed} oracle-grid n={n:>5}: {row['sizes'][n]}", flush=True)
            out["designs"]["oracle-grid"] = row
    return out


def table(rows: list[dict], sizes) -> str:
    designs = list(rows[0]["designs"])
    lines = ["| observers | design | " + " | ".join(f"error at {n:,}" for n in sizes)
             + " | 90% band width at " + f"{sizes[0]:,} / {sizes[-1]:,}"
             + " | 90% band covers (all sizes) |",
             "|---|---|" + "---|" * len(sizes) + "---|---|"]
    groups = [("prior draws", [r for r in rows if r["kind"] == "prior"]),
              ("rough", [r for r in rows if r["kind"] == "rough"])]
    for label, group in groups:
        if not group:
            continue
        for d in designs:
            errs = [np.median([r["designs"][d]["sizes"][n]["error"] for r in group])
                    for n in sizes]
            w0 = np.median([r["designs"][d]["sizes"][sizes[0]]["width90"] for r in group])
            w1 = np.median([r["designs"][d]["sizes"][sizes[-1]]["width90"] for r in group])
            cov = np.mean([r["designs"][d]["sizes"][n]["covered90"] for r in group
                           for n in sizes])
            lines.append(f"| {label} ({len(group)}) | {d} | "
                         + " | ".join(f"{e:.3f}" for e in errs)
                         + f" | {w0:.3f} / {w1:.3f} | {cov:.2f} |")
    return "\n".join(lines)


def timing(rows: list[dict], strategy: str) -> str:
    asks = np.concatenate([r["designs"][strategy]["ask_s"] for r in rows
                           if strategy in r["designs"]])
    refits = [f for r in rows if strategy in r["designs"]
              for f in r["designs"][strategy]["refits"]]
    fb = sum(r["designs"][strategy]["fallbacks"] for r in rows if strategy in r["designs"])
    tot = np.array([f["map_seconds"] + f["hessian_seconds"] for f in refits])
    return (f"ask ({strategy}, batches of 20, compilation excluded): median "
            f"{np.median(asks):.3f} s, 95th percentile {np.percentile(asks, 95):.3f} s, max "
            f"{asks.max():.3f} s over {asks.size} asks; {fb} cut short by the time budget\n"
            f"refit (MAP + Gauss-Newton curvature, compilation included): median "
            f"{np.median(tot):.2f} s, max {tot.max():.2f} s over {tot.size} refits")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior-observers", type=int, default=3)
    parser.add_argument("--rough-observers", type=int, default=1)
    parser.add_argument("--prior-seeds", type=int, nargs="+",
                        help="seeds of the prior observers (default 0 .. --prior-observers - 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--band-draws", type=int, default=100)
    parser.add_argument("--no-oracle", dest="oracle", action="store_false")
    parser.add_argument("--quick", action="store_true", help="1 observer, 500 and 1,000 trials")
    parser.add_argument("--out", type=Path, default=RESULTS / "adaptive.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.prior_observers, args.rough_observers, args.sizes = 1, 0, [500, 1000]
    args.sizes = sorted(args.sizes)
    logging.basicConfig(level=logging.WARNING)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    t0 = time.perf_counter()
    rows = []
    for seed in args.prior_seeds or range(args.prior_observers):
        rows.append(observer("prior", seed, args))
    for seed in range(args.rough_observers):
        rows.append(observer("rough", 100 + seed, args))
    print(f"\nload average at end: {os.getloadavg()}; {(time.perf_counter() - t0) / 60:.1f} min")
    print(table(rows, args.sizes))
    for strategy in ("thresholds", "information"):
        if strategy in args.strategies:
            print(timing(rows, strategy))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
