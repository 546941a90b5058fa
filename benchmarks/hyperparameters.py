"""How long does select_hyperparameters take, and does it find the true hyperparameters?

Two parts:

* **timing**: the issue's target, a 5-fold x 9-setting search (the default grid)
  on a 6,000-trial observer with a degree-4 basis (a prior draw of
  ``WPPM(basis_degree=4)``, a 5 x 5 grid of references, 240 trials each), against
  one default ``fit_map`` of all its trials measured in the same run;
* **recovery**: ``--observers`` observers drawn from the prior of
  ``WPPM(basis_degree=2, variance_scale=4e-3, decay_rate=0.4)`` (seeds
  ``--seed + i``), 1,000 trials each (5 x 5 references x 40), searched over a
  5 x 5 grid, ``variance_scale`` 4e-3 times 0.01 ... 100 (factors of 10) and
  ``decay_rate`` 0.1, 0.2, 0.4, 0.8, 1.2, from a model whose own values are the
  truth's: how often the chosen setting lies within one grid step of the truth
  in each hyperparameter.

Prints both tables with the load average before and after, and writes ``--json``.
Run ``python -m benchmarks.hyperparameters`` from the repository root (about 10
minutes on 2 cores; ``--quick`` for a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RECOVERY_GRID = {
    "variance_scale": (4e-5, 4e-4, 4e-3, 4e-2, 4e-1),
    "decay_rate": (0.1, 0.2, 0.4, 0.8, 1.2),
}
TRUTH = {"variance_scale": 4e-3, "decay_rate": 0.4}


def observer(basis_degree: int, grid_size: int, trials_per_ref: int, seed: int):
    """``(model, data)``: a prior draw of ``WPPM(basis_degree)`` on a grid design."""
    import jax

    import psyphy_pp as pp

    model = pp.WPPM(basis_degree=basis_degree, **TRUTH)
    truth = model.sample_prior(jax.random.PRNGKey(seed))
    refs, comps = pp.designs.grid_design(model, truth, grid_size=grid_size,
                                         trials_per_ref=trials_per_ref,
                                         key=jax.random.PRNGKey(seed + 1000))
    data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(seed + 2000))
    return model, data


def timing(trials_per_ref: int, progress_bar: bool) -> dict:
    import psyphy_pp as pp

    model, data = observer(4, 5, trials_per_ref, seed=0)
    start = time.perf_counter()
    fit = pp.fit_map(model, data, progress_bar=progress_bar)
    fit_seconds = time.perf_counter() - start
    search = pp.select_hyperparameters(model, data, progress_bar=progress_bar)
    return {
        "num_trials": data.num_trials,
        "fit_map_seconds": fit_seconds,
        "fit_map_steps": fit.num_steps,
        "search_seconds": search.seconds,
        "settings": search.settings,
        "mean": search.mean.tolist(),
        "stderr": search.stderr.tolist(),
        "steps": search.steps.tolist(),
        "converged": search.converged.tolist(),
        "best": search.best,
        "summary": search.summary(),
    }


def recovery(observers: int, seed: int, trials_per_ref: int, progress_bar: bool) -> list[dict]:
    import psyphy_pp as pp

    rows = []
    for i in range(observers):
        model, data = observer(2, 5, trials_per_ref, seed=seed + i)
        search = pp.select_hyperparameters(model, data, grid=RECOVERY_GRID,
                                           progress_bar=progress_bar)
        steps_away = {name: abs(RECOVERY_GRID[name].index(search.best[name])
                                - RECOVERY_GRID[name].index(TRUTH[name]))
                      for name in RECOVERY_GRID}
        truth_index = search.settings.index(TRUTH)
        rows.append({
            "seed": seed + i, "best": search.best, "steps_away": steps_away,
            "truth_delta": float(search.mean[truth_index] - search.mean[search.best_index]),
            "truth_stderr": float(search.stderr[truth_index]),
            "seconds": search.seconds,
        })
        print(f"observer {seed + i}: best {search.best}, steps away {steps_away}, truth "
              f"{rows[-1]['truth_delta']:+.5f} nats/trial from the best ({search.seconds:.0f} s)",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke test (~1 minute)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/hyperparameters.json"))
    parser.add_argument("--progress-bar", action="store_true")
    args = parser.parse_args(argv)
    observers = 2 if args.quick else args.observers
    load_before = os.getloadavg()
    t = timing(24 if args.quick else 240, args.progress_bar)
    print(t["summary"])
    print(f"\n| trials | one fit_map (s) | 5-fold x {len(t['settings'])} search (s) | ratio | "
          "fits converged |")
    print("| --- | --- | --- | --- | --- |")
    converged = int(np.sum(t["converged"]))
    print(f"| {t['num_trials']:,} | {t['fit_map_seconds']:.1f} | {t['search_seconds']:.0f} | "
          f"{t['search_seconds'] / t['fit_map_seconds']:.1f} | {converged} of "
          f"{np.size(t['converged'])} |\n")
    rows = recovery(observers, args.seed, 8 if args.quick else 40, args.progress_bar)
    load_after = os.getloadavg()
    within = {name: sum(r["steps_away"][name] <= 1 for r in rows) for name in RECOVERY_GRID}
    exact = {name: sum(r["steps_away"][name] == 0 for r in rows) for name in RECOVERY_GRID}
    both = sum(all(v <= 1 for v in r["steps_away"].values()) for r in rows)
    print("\n| hyperparameter | chosen = truth | within one grid step | of |")
    print("| --- | --- | --- | --- |")
    for name in RECOVERY_GRID:
        print(f"| {name} | {exact[name]} | {within[name]} | {len(rows)} |")
    print(f"| both within one step | | {both} | {len(rows)} |")
    inside = sum(r["truth_delta"] >= -r["truth_stderr"] for r in rows)
    print(f"\nthe truth's score within one standard error of the best: {inside} of {len(rows)}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"timing": t, "recovery": rows, "load": [
        load_before[0], load_after[0]]}, indent=1, default=str))


if __name__ == "__main__":
    main()
