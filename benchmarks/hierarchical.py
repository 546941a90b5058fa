"""Study of the hierarchical WPPM (issue 18): does partial pooling save trials?

Eight simulated observers share a field: ``W_shared`` is a draw from the
Wishart-process prior (degree 2 by default, P-std's prior otherwise) and
observer ``s`` has ``W_s = W_shared + tau_true * sqrt(V) * Z_s`` with
``Z_s ~ N(0, I)`` (default ``tau_true = 0.3``). Each observer gets 6,000
quasi-random trials (scrambled Sobol references, one comparison each at 2.8
noise standard deviations of its own truth in a random direction, as in
``benchmarks.coverage``); the fits at 500, 1,000, 2,000 and 6,000 trials per
observer use the first ``n`` of them.

At every size the study fits

* the hierarchical model (``pp.fit_map_scratch(pp.HierarchicalWPPM(base), data)``,
  tau learnt; the same MAP as ``pp.fit_map``, whose SVI program took about three
  times as long to compile here), and
* every observer alone (``pp.fit_map(base, data_s)``),

and scores each observer's fitted thresholds against its truth's:
``pp.thresholds`` at a 5 x 5 grid of readout references on ``[-0.8, 0.8]^2``
in 16 directions, the error of an observer being the median of
``|s_fit - s_true| / s_true`` over the pairs that reached the target in both.
The table gives the median (and the largest) of the eight observers' errors,
the population's error (``W_shared`` against the true shared field), tau
recovered against the truth, and the wall times.

Run from the repository root::

    python -m benchmarks.hierarchical           # the full study (~30 min on 2 cores)
    python -m benchmarks.hierarchical --quick   # 3 observers, 300 and 600 trials
    python -m benchmarks.hierarchical --compare-nuts   # centred vs non-centred NUTS
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import numpy as np

from benchmarks.coverage import sobol_design


def model_kwargs(basis_degree: int) -> dict:
    """P-std's prior (DESIGN.md) at the given degree."""
    return dict(input_dim=2, basis_degree=basis_degree, extra_dims=1, variance_scale=4e-3,
                decay_rate=0.4)


def make_observers(args):
    """The true shared field, each observer's truth and its ``max(sizes)`` trials."""
    import jax

    import psyphy_pp as pp

    truth_model = pp.WPPM(**model_kwargs(args.basis_degree), diag_term=1e-9)
    key = jax.random.PRNGKey(args.seed)
    W_shared = np.asarray(truth_model.prior().sample(key), np.float64)
    std = truth_model.prior_std()
    rng = np.random.default_rng(args.seed)
    truths, datasets = [], []
    n = max(args.sizes)
    for s in range(args.observers):
        W = W_shared + args.tau_true * std * rng.standard_normal(W_shared.shape)
        truth = {"W": W}
        k_design, k_resp = jax.random.split(jax.random.PRNGKey(1000 * args.seed + s + 1))
        refs, comps, _ = sobol_design(truth_model, truth, n, args.seed * 100 + s, k_design)
        data = pp.simulate(truth_model, truth, refs, comps, key=k_resp)
        truths.append(truth)
        datasets.append(data)
    return truth_model, {"W": W_shared}, truths, datasets


def pooled(datasets, n: int):
    """The first ``n`` trials of every observer as one TrialData with an observer index."""
    import psyphy_pp as pp

    names = tuple(f"S{s + 1}" for s in range(len(datasets)))
    return pp.TrialData(
        np.concatenate([d.refs[:n] for d in datasets]),
        np.concatenate([d.comparisons[:n] for d in datasets]),
        np.concatenate([d.responses[:n] for d in datasets]),
        observer=np.repeat(np.arange(len(datasets)), n), observer_names=names,
        synthetic="simulated by benchmarks.hierarchical")


def error(model, W: np.ndarray, truth_th, refs, num_directions: int) -> float:
    """Median relative threshold error against the truth's thresholds."""
    import psyphy_pp as pp

    th = pp.thresholds(model, {"W": W}, refs, num_directions=num_directions)
    ok = np.asarray(th.reached, bool) & np.asarray(truth_th.reached, bool)
    t = np.asarray(truth_th.distances)[ok]
    return float(np.median(np.abs(np.asarray(th.distances)[ok] - t) / t))


def run(args) -> dict:
    import psyphy_pp as pp

    t_start = time.perf_counter()
    truth_model, shared, truths, datasets = make_observers(args)
    base = pp.WPPM(**model_kwargs(args.basis_degree), diag_term=1e-4)
    hmodel = pp.HierarchicalWPPM(base=base, tau_scale=args.tau_scale)
    refs = pp.designs.grid_points(5, 2, -0.8, 0.8)
    k = args.num_directions
    truth_th = [pp.thresholds(truth_model, t, refs, num_directions=k) for t in truths]
    pop_th = pp.thresholds(truth_model, shared, refs, num_directions=k)
    rows = []
    for n in args.sizes:
        row: dict = {"trials_per_observer": n}
        data = pooled(datasets, n)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hfit = pp.fit_map_scratch(hmodel, data, progress_bar=False)
        row["hier_seconds"] = time.perf_counter() - t0
        row["hier_warnings"] = sorted({str(w.message)[:120] for w in caught})
        Ws = hfit.observer_weight_draws()[0, 0]
        row["hier_errors"] = [error(base, Ws[s], truth_th[s], refs, k)
                              for s in range(args.observers)]
        row["population_error"] = error(base, np.asarray(hfit.params["W_shared"]), pop_th,
                                        refs, k)
        row["tau"] = float(hfit.params["tau"])
        row["tau_search"] = hfit.settings.get("tau_search")
        row["hier_steps"] = hfit.settings["num_steps_run"]
        row["hier_fit_seconds"] = hfit.settings.get("fit_seconds")
        row["hier_hessian_seconds"] = hfit.settings.get("hessian_seconds")
        errs, secs, conv = [], [], []
        for s in range(args.observers):
            d = datasets[s]
            d_n = pp.TrialData(d.refs[:n], d.comparisons[:n], d.responses[:n])
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = pp.fit_map(base, d_n, progress_bar=False)
            secs.append(time.perf_counter() - t0)
            conv.append(bool(fit.converged))
            errs.append(error(base, np.asarray(fit.params["W"]), truth_th[s], refs, k))
        row["indep_errors"] = errs
        row["indep_seconds"] = float(np.sum(secs))
        row["indep_converged"] = int(np.sum(conv))
        rows.append(row)
        print(f"n={n}: hierarchical median error {np.median(row['hier_errors']):.4f} "
              f"(tau {row['tau']:.3g}, {row['hier_seconds']:.0f} s); independent "
              f"{np.median(errs):.4f} ({row['indep_seconds']:.0f} s)", flush=True)
    return {"rows": rows, "total_seconds": time.perf_counter() - t_start}


def table(result: dict, tau_true: float) -> str:
    lines = ["| trials per observer | hierarchical: median (max) error | independent: median "
             "(max) error | population error | tau (truth " + f"{tau_true:g}) | hierarchical "
             "fit (s) | 8 independent fits (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        h, i = np.asarray(r["hier_errors"]), np.asarray(r["indep_errors"])
        lines.append(
            f"| {r['trials_per_observer']:,} | {np.median(h):.3f} ({h.max():.3f}) | "
            f"{np.median(i):.3f} ({i.max():.3f}) | {r['population_error']:.3f} | "
            f"{r['tau']:.3g} | {r['hier_seconds']:.0f} | {r['indep_seconds']:.0f} |")
    return "\n".join(lines)


def compare_nuts(args) -> list[dict]:
    """NUTS with centred and non-centred deviations on a small problem, tau learnt.

    3 observers of the study's kind (their first ``args.nuts_trials`` trials),
    degree 1, one chain of ``args.nuts_steps`` warmup and as many draws for each
    parameterisation, started from the same MAP. Reports wall time,
    divergences, mean leapfrog steps and the bulk ESS of tau and of the
    smallest-ESS entry of the population's Sigma at the centre.
    """
    import arviz as az

    import psyphy_pp as pp

    sub = argparse.Namespace(**dict(vars(args), observers=3, basis_degree=1,
                                    sizes=[args.nuts_trials]))
    _, _, _, datasets = make_observers(sub)
    data = pooled(datasets, args.nuts_trials)
    base = pp.WPPM(**model_kwargs(1), diag_term=1e-4)
    start = pp.fit_map(pp.HierarchicalWPPM(base=base), data, progress_bar=False)
    out = []
    for par in ("centred", "noncentred"):
        hmodel = pp.HierarchicalWPPM(base=base, parameterization=par)
        t0 = time.perf_counter()
        post = pp.fit_nuts(hmodel, data, num_warmup=args.nuts_steps,
                           num_samples=args.nuts_steps, num_chains=1,
                           init_params=start.params, progress_bar=False)
        wall = time.perf_counter() - t0
        W = post.samples["W_shared"]
        sig = np.stack([np.asarray(base.covariance({"W": w}, np.zeros((1, 2))))[0]
                        for w in W[0]])[None]
        ess_sigma = min(float(az.ess(sig[..., i, j])) for i in range(2) for j in range(2))
        out.append(dict(parameterization=par, wall_s=wall,
                        divergences=int(post.sample_stats["diverging"].sum()),
                        mean_leapfrog=float(post.sample_stats["num_steps"].mean()),
                        ess_tau=float(az.ess(post.tau)), ess_sigma_min=ess_sigma,
                        tau_median=float(np.median(post.tau))))
        print(out[-1], flush=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hierarchical",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="3 observers at 300 and 600 trials (checks that the study runs)")
    p.add_argument("--observers", type=int, default=8)
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 6000],
                   help="trials per observer")
    p.add_argument("--basis-degree", type=int, default=2)
    p.add_argument("--tau-true", type=float, default=0.3)
    p.add_argument("--tau-scale", type=float, default=0.5,
                   help="scale of the fitted model's half-normal prior on tau")
    p.add_argument("--num-directions", type=int, default=16)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=None, help="write the raw numbers to this JSON file")
    p.add_argument("--compare-nuts", action="store_true",
                   help="only compare NUTS with centred and non-centred deviations")
    p.add_argument("--nuts-trials", type=int, default=200)
    p.add_argument("--nuts-steps", type=int, default=200)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.observers, args.sizes = 3, [300, 600]
    if args.compare_nuts:
        compare_nuts(args)
        return 0
    load0 = os.getloadavg()
    print(f"hierarchical study: {args.observers} observers, sizes {args.sizes}, degree "
          f"{args.basis_degree}, tau_true {args.tau_true}, tau_scale {args.tau_scale}, seed "
          f"{args.seed}; load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}",
          flush=True)
    result = run(args)
    load1 = os.getloadavg()
    result.update(args=vars(args), load_start=load0, load_end=load1)
    print(table(result, args.tau_true))
    print(f"total {result['total_seconds']:.0f} s; load average at end {load1[0]:.2f} "
          f"{load1[1]:.2f} {load1[2]:.2f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, default=float)
    return 0 if all(math.isfinite(r["tau"]) for r in result["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
