"""Does goodness_of_fit pass correct models at its nominal rate and flag wrong ones?

Two sets of simulated observers, each fitted with the default ``fit_map`` and
tested with the default ``goodness_of_fit`` (1,000 simulated data sets):

* **correctly specified**: ``--observers`` prior draws of the P-small model
  (``WPPM(basis_degree=2)``, seed ``--seed + i``), a 5 x 5 grid with 40 trials
  per reference (1,000 trials), fitted with the same model. The test is also
  run with the truth in place of the fit, where it is exact;
* **misspecified**: ``--step-observers`` data sets from :func:`step_truth`, a
  field whose noise standard deviation jumps 3.6-fold across ``x1 = 0`` (``U``
  jumps 5-fold, degree 9; the default ``diag_term`` floors ``Sigma``), on a
  9 x 9 grid with 40 trials per reference (3,240 trials), fitted with
  ``WPPM(basis_degree=2)``, whose quartic ``Sigma`` cannot follow it.

It prints the rejection rates at 5% and 10% with their binomial 95% ranges,
writes ``--json`` and draws ``--figure`` (the calibration plots of one observer
of each kind). Run ``python -m benchmarks.goodness`` from the repository root
(about 10 minutes on 2 cores; ``--quick`` for a 1-minute smoke test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace


def step_truth():
    """``(model, params)`` of a field whose ``U`` jumps 5-fold across ``x1 = 0``.

    ``U(x) = s(x1) U0`` with ``U0 = 0.06 I`` and ``s = 0.6 + 0.4 sign(x1)``,
    ``sign`` replaced by its Chebyshev series up to degree 9.
    """
    import numpy as np

    import psyphy_pp as pp

    model = pp.WPPM(input_dim=2, basis_degree=9, extra_dims=0)
    W = np.zeros(model.weights_shape)
    U0 = 0.06 * np.eye(2)
    W[0, 0] = 0.6 * U0
    for k in range(1, 10, 2):
        W[k, 0] = 0.4 * 4 / (math.pi * k) * (-1) ** ((k - 1) // 2) * U0
    return model, {"W": W}


def _binomial_range(n: int, p: float, level: float = 0.95) -> tuple[int, int]:
    """Central range of a Binomial(n, p) count holding at least ``level``."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    lo, hi, tail = 0, n, (1 - level) / 2
    while sum(pmf[: lo + 1]) < tail:
        lo += 1
    while sum(pmf[hi:]) < tail:
        hi -= 1
    return lo, hi


def run_observer(kind: str, seed: int, quick: bool) -> dict:
    """Simulate, fit and test one observer; ``kind`` is ``"correct"`` or ``"step"``."""
    import jax

    import psyphy_pp as pp

    k_truth, k_design, k_resp = jax.random.split(jax.random.PRNGKey(seed), 3)
    if kind == "correct":
        truth_model = pp.WPPM(basis_degree=1 if quick else 2)
        truth = truth_model.sample_prior(k_truth)
        grid, per_ref = (3, 40) if quick else (5, 40)
    else:
        truth_model, truth = step_truth()
        grid, per_ref = (5, 40) if quick else (9, 40)
    refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=grid,
                                         trials_per_ref=per_ref, key=k_design)
    data = pp.simulate(truth_model, truth, refs, comps, key=k_resp)
    fit_model = pp.WPPM(basis_degree=truth_model.basis_degree if kind == "correct" else 2)
    t0 = time.perf_counter()
    fit = pp.fit_map(fit_model, data, progress_bar=False)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    gof = pp.goodness_of_fit(fit, seed=seed)
    t_gof = time.perf_counter() - t0
    at_truth = pp.goodness_of_fit(SimpleNamespace(model=truth_model, data=data, params=truth),
                                  seed=seed)
    return dict(kind=kind, seed=seed, num_trials=data.num_trials, converged=bool(fit.converged),
                fit_seconds=t_fit, gof_seconds=t_gof, deviance=gof.deviance,
                num_cells=gof.num_cells, p_value=gof.p_value, p_value_truth=at_truth.p_value,
                references_missed=int(gof.by_reference.outside.sum()),
                references=int(gof.by_reference.predicted.size),
                _gof=gof)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=20)
    parser.add_argument("--step-observers", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 + 1 small observers")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/goodness.json"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/calibration.png"))
    args = parser.parse_args(argv)
    if args.quick:
        args.observers, args.step_observers = 2, 1

    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psyphy_pp.plotting import plot_calibration

    load0, t0 = os.getloadavg()[0], time.perf_counter()
    rows = [run_observer("correct", args.seed + i, args.quick) for i in range(args.observers)]
    rows += [run_observer("step", args.seed + i, args.quick) for i in range(args.step_observers)]
    wall = time.perf_counter() - t0
    print(f"jax {jax.__version__}; load {load0:.2f} -> {os.getloadavg()[0]:.2f}; "
          f"{wall / 60:.1f} min")
    print("| observers | fitted | trials | rejected at 5% | at 10% | binomial 95% range "
          "at 5% / 10% | median p | p at the truth: rejected at 5% / 10% |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for kind, label in (("correct", "correctly specified"), ("step", "step field (misspecified)")):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        n = len(sel)
        p = sorted(r["p_value"] for r in sel)
        pt = [r["p_value_truth"] for r in sel]
        r5, r10 = sum(x < 0.05 for x in p), sum(x < 0.10 for x in p)
        t5, t10 = sum(x < 0.05 for x in pt), sum(x < 0.10 for x in pt)
        b5, b10 = _binomial_range(n, 0.05), _binomial_range(n, 0.10)
        print(f"| {label} | {n} | {sel[0]['num_trials']} | {r5}/{n} | {r10}/{n} | "
              f"{b5[0]}-{b5[1]} / {b10[0]}-{b10[1]} | {p[n // 2]:.3f} | {t5}/{n} / {t10}/{n} |")
        summary[kind] = dict(observers=n, rejected_5=r5, rejected_10=r10, truth_rejected_5=t5,
                             truth_rejected_10=t10, median_p=p[n // 2])
    print("\n| kind | seed | trials | converged | fit s | test s | deviance / cells | p | "
          "p at truth | reference groups missed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['kind']} | {r['seed']} | {r['num_trials']} | {r['converged']} | "
              f"{r['fit_seconds']:.1f} | {r['gof_seconds']:.1f} | {r['deviance']:.1f} / "
              f"{r['num_cells']} | {r['p_value']:.3f} | {r['p_value_truth']:.3f} | "
              f"{r['references_missed']} of {r['references']} |")

    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, kind in zip(axes, ("correct", "step")):
        first = next((r for r in rows if r["kind"] == kind), None)
        if first is not None:
            plot_calibration(first["_gof"], ax=ax)
            ax.set_title(("correctly specified" if kind == "correct" else "step field, degree-2 "
                          "fit") + f" (seed {first['seed']})\n" + ax.get_title(), fontsize=9)
    fig.tight_layout()
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = dict(summary=summary, wall_minutes=wall / 60, load=load0,
               observers=[{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json} and {args.figure}")
    return out


if __name__ == "__main__":
    main()
