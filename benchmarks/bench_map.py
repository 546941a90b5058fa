"""Time to a converged MAP on P-std: the default call against the other optimisers.

Every configuration fits DESIGN.md's P-std data (N = 10,000) from the same prior
draw (seed 0). The first row is the call users make, ``pp.fit_map(model, data)``
with every default, timed as a whole (SVI set-up and compilation included). The
reference is a 5,000-step L-BFGS fit without the stopping rule. Reported per
configuration: wall time, steps run, whether the fit says it converged, the
final objective evaluated with a finer quadrature (12 x 6) and its gap to the
reference's, and the recovery error of Sigma on a 12 x 12 grid
(Bures-Wasserstein, relative Frobenius). The SVI and scratch default fits are
also compared with each other (Sigma on the grid, and W after aligning the
rotation gauge).

Run ``python -m benchmarks.bench_map`` from the repository root (``make bench``).
``--skip-mc`` leaves out the old default (fresh-noise Monte Carlo with Adam),
which takes about 100 s.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def configs(num_steps: int, skip_mc: bool):
    import psyphy_pp as pp

    mc = pp.Oddity(method="mc", num_samples=500, bandwidth=1e-2)
    rows = {
        "default fit_map(model, data): L-BFGS": (pp.fit_map, None, {}),
        "default fit_map_scratch(model, data)": (pp.fit_map_scratch, None, {}),
        "Adam lr 3e-3": (pp.fit_map, None, dict(optimizer="adam", num_steps=num_steps)),
        "SGD lr 1e-4 m 0.9 (peers' optimiser)": (pp.fit_map, None,
                                                 dict(optimizer="sgd", num_steps=num_steps)),
        "SGD lr 3e-4 m 0.9": (pp.fit_map, None,
                              dict(optimizer="sgd", learning_rate=3e-4, num_steps=num_steps)),
    }
    if not skip_mc:
        rows["old default: MC M=500 fresh noise, Adam 3e-3"] = (
            pp.fit_map, mc, dict(num_steps=num_steps))
    return rows


def main(argv=None) -> int:
    import jax

    import psyphy_pp as pp
    from psyphy_pp.diagnostics import align_gauge, recovery_error
    from psyphy_pp.scratch import make_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-ref", type=int, default=400)
    parser.add_argument("--num-steps", type=int, default=1000,
                        help="most steps of the non-default rows (default 1000)")
    parser.add_argument("--reference-steps", type=int, default=5000)
    parser.add_argument("--skip-mc", action="store_true", help="leave out the old MC default")
    parser.add_argument("--only", nargs="*", help="substrings of configuration names to run")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", pp.ConvergenceWarning)  # the table says it

    truth_model = pp.WPPM(diag_term=1e-9)
    truth = truth_model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=5,
                                         trials_per_ref=args.trials_per_ref, key=jax.random.PRNGKey(3))
    data = pp.simulate(truth_model, truth, refs, comps, key=jax.random.PRNGKey(4))
    model = pp.WPPM()
    grid = pp.designs.grid_points(12, 2)
    exact = pp.WPPM(task=pp.Oddity(method="quadrature", num_angles=12, num_radial=6))
    exact_loss = jax.jit(make_loss(exact, data))
    load_start = os.getloadavg()[0]

    t0 = time.perf_counter()
    ref = pp.fit_map_scratch(model, data, num_steps=args.reference_steps, tol=None,
                             progress_bar=False)
    ref_wall = time.perf_counter() - t0
    ref_loss = float(exact_loss(ref.params, None))
    print(f"reference: {args.reference_steps} L-BFGS steps without the stopping rule, "
          f"{ref_wall:.1f} s, exact loss {ref_loss:.7f}", flush=True)

    results = {}
    for name, (fit_fn, task, kw) in configs(args.num_steps, args.skip_mc).items():
        if args.only and not any(s in name for s in args.only):
            continue
        m = model if task is None else pp.WPPM(task=task)
        t0 = time.perf_counter()
        fit = fit_fn(m, data, progress_bar=False, **kw)
        wall = time.perf_counter() - t0
        err = recovery_error(model, fit.params, truth, grid)
        final = float(exact_loss(fit.params, None))
        results[name] = (fit, wall, err, final)
        print(f"{name}: {wall:.1f} s, {fit.num_steps} steps, converged {fit.converged}, "
              f"exact final loss {final:.7f}", flush=True)

    load_end = os.getloadavg()[0]
    print(f"\nP-std, N = {data.num_trials}; 1-minute load {load_start:.2f} at the start, "
          f"{load_end:.2f} at the end; reference objective {ref_loss:.7f} nats/trial "
          f"(5,000 L-BFGS steps; exact = semi-analytic quadrature 12 x 6)")
    print("| configuration | wall s | compile s | s/step | steps | converged | final loss | "
          "gap to reference | BW | relF |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (fit, wall, err, final) in results.items():
        per = fit.settings.get("seconds_per_step") or float("nan")
        print(f"| {name} | {wall:.1f} | {fit.settings['first_step_seconds']:.1f} | {per:.4f} | "
              f"{fit.num_steps} | {fit.converged} | {final:.6f} | {final - ref_loss:+.1e} | "
              f"{err['bures_wasserstein']:.4f} | {err['relative_frobenius']:.3f} |")
    a = results.get("default fit_map(model, data): L-BFGS")
    b = results.get("default fit_map_scratch(model, data)")
    if a and b:
        Sa, Sb = (np.asarray(model.covariance(r[0].params, grid)) for r in (a, b))
        Wa, Wb = (np.asarray(r[0].params["W"]) for r in (a, b))
        scale = np.max(np.abs(Wb))
        print(f"\nSVI vs scratch, default path: Sigma on 12 x 12 grid "
              f"{np.max(np.abs(Sa - Sb)) / np.max(np.abs(Sb)):.1e} (relative), W "
              f"{np.max(np.abs(align_gauge(Wa, Wb) - Wb)) / scale:.1e} after aligning the "
              f"rotation gauge ({np.max(np.abs(Wa - Wb)) / scale:.1e} before); final losses "
              f"differ by {abs(a[3] - b[3]):.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
