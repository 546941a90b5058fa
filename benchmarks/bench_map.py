"""Time to a converged MAP on P-std for several likelihood / optimiser settings.

Each configuration fits DESIGN.md's P-std data (N = 10,000) with
``fit_map_scratch`` from the same prior draw, and reports the wall time, the
final loss (mean of the last 50 steps, nats per trial), the step at which the
running loss first came within ``--tol`` of the best final loss of all
configurations, and the recovery error of Sigma on a 12 x 12 grid
(Bures-Wasserstein, relative Frobenius).

Run ``python -m benchmarks.bench_map`` from the repository root.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import optax


def configs(num_steps: int):
    import psyphy_pp as pp

    quad = pp.Oddity(method="quadrature")
    mc = pp.Oddity(method="mc", num_samples=500, bandwidth=1e-2)
    return {
        "default fit_map: MC M=500, Adam lr 3e-3": (mc, dict(num_steps=num_steps)),
        "MC M=500, SGD lr 1e-4 m 0.9 (peers' optimiser)": (mc, dict(num_steps=num_steps, optimizer="sgd")),
        "quadrature, SGD lr 1e-4 m 0.9": (quad, dict(num_steps=num_steps, optimizer="sgd")),
        "quadrature, Adam lr 3e-3 (recommended)": (quad, dict(num_steps=num_steps)),
        "quadrature, Adam lr 1e-2": (quad, dict(num_steps=num_steps, optimizer=optax.adam(1e-2))),
    }


def main(argv=None) -> int:
    import jax

    import psyphy_pp as pp
    from psyphy_pp.diagnostics import recovery_error

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-ref", type=int, default=400)
    parser.add_argument("--num-steps", type=int, default=1000)
    parser.add_argument("--tol", type=float, default=2e-3, help="nats per trial")
    parser.add_argument("--only", nargs="*", help="substrings of configuration names to run")
    args = parser.parse_args(argv)

    truth_model = pp.WPPM(diag_term=1e-9, task=pp.Oddity(method="quadrature"))
    truth = truth_model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=5,
                                         trials_per_ref=args.trials_per_ref, key=jax.random.PRNGKey(3))
    data = pp.simulate(truth_model, truth, refs, comps, key=jax.random.PRNGKey(4))
    grid = pp.designs.grid_points(12, 2)
    exact = pp.WPPM(task=pp.Oddity(method="quadrature", num_angles=12, num_radial=6))
    from psyphy_pp.scratch import make_loss

    exact_loss = jax.jit(make_loss(exact, data))
    results = {}
    for name, (task, kw) in configs(args.num_steps).items():
        if args.only and not any(s in name for s in args.only):
            continue
        model = pp.WPPM(task=task)
        t0 = time.perf_counter()
        fit = pp.fit_map_scratch(model, data, progress_bar=False, **kw)
        wall = time.perf_counter() - t0
        err = recovery_error(model, fit.params, truth, grid)
        final = float(exact_loss(fit.params, None))
        results[name] = (fit, wall, err, final)
        print(f"{name}: {wall:.1f} s, exact final loss {final:.5f}, "
              f"BW {err['bures_wasserstein']:.4f}, relF {err['relative_frobenius']:.3f}", flush=True)

    best = min(r[3] for r in results.values())
    load = open("/proc/loadavg").read().split()[0]
    print(f"\nP-std, N = {data.num_trials}, {args.num_steps} steps, 1-minute load {load}; 'converged' = running mean of the "
          f"loss within {args.tol} nats/trial of the best final loss ({best:.5f}, semi-analytic quadrature 12x6)")
    print(f"{'configuration':<48} {'wall s':>7} {'s/step':>7} {'conv. step':>10} {'time to conv.':>13} "
          f"{'final loss':>10} {'BW':>7} {'relF':>6}")
    for name, (fit, wall, err, final) in results.items():
        run = np.convolve(fit.losses, np.ones(50) / 50, mode="valid")
        hit = np.flatnonzero(run <= best + args.tol)
        step = int(hit[0]) + 50 if hit.size else None
        per = wall / args.num_steps
        conv = f"{step:>10d} {step * per:>13.1f}" if step else f"{'never':>10} {'-':>13}"
        print(f"{name:<48} {wall:>7.1f} {per:>7.3f} {conv} {final:>10.5f} "
              f"{err['bures_wasserstein']:>7.4f} {err['relative_frobenius']:>6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
