"""Side-by-side likelihood benchmark: psyphy_pp (Monte Carlo, quadrature) vs psyphy 0.0.5.

For P-std (N = 10,000) and P-large (N = 100,000) of DESIGN.md section 3 it times
value-and-grad of the negative log posterior per step, measures peak RSS (each
configuration in its own process), and the error of P(correct) against a
1e6-sample numpy Monte Carlo reference (tests/reference.py, independent of the
package) on a sample of trials. The peer runs from its own virtualenv
(benchmarks/.peer-venv, created on first use) on the same data and the same W.

Run ``make bench`` (or ``python -m benchmarks.bench_likelihood --help`` from the
repository root). Timings are only meaningful on an otherwise idle machine; the
table prints the 1-minute load average next to them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PSYPHY_STEP_SECONDS_DESIGN = 2.4  # DESIGN.md section 4, for context only
METHODS = ("mc", "mc-threefry", "quadrature")


def build_problem(trials_per_ref: int):
    """P-std / P-large data, and the W at which every method is evaluated."""
    import jax

    import psyphy_pp as pp

    truth_model = pp.WPPM(diag_term=1e-9, task=pp.Oddity(method="quadrature"))
    truth = truth_model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=5,
                                         trials_per_ref=trials_per_ref, key=jax.random.PRNGKey(3))
    data = pp.simulate(truth_model, truth, refs, comps, key=jax.random.PRNGKey(4))
    W = np.asarray(pp.WPPM().sample_prior(jax.random.PRNGKey(0))["W"])  # a prior draw, as a fit starts
    return data, W


def worker(method: str, trials_per_ref: int, steps: int) -> dict:
    """Time one configuration in this process; return seconds per step and peak RSS."""
    import jax
    import jax.numpy as jnp

    import psyphy_pp as pp
    from psyphy_pp.scratch import make_loss

    data, W = build_problem(trials_per_ref)
    task = {"mc": pp.Oddity(method="mc", num_samples=500, bandwidth=1e-2),
            "mc-threefry": pp.Oddity(method="mc", num_samples=500, bandwidth=1e-2,
                                     generator="threefry"),
            "quadrature": pp.Oddity(method="quadrature")}[method]
    model = pp.WPPM(task=task)
    from psyphy_pp._jit import jit  # jax.jit with the compiler options the fits use

    vg = jit(jax.value_and_grad(make_loss(model, data)))
    params = {"W": jnp.asarray(W, jnp.float32)}
    t0 = time.perf_counter()
    jax.block_until_ready(vg(params, jax.random.PRNGKey(0)))
    compile_s = time.perf_counter() - t0
    times = []
    for t in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(vg(params, jax.random.PRNGKey(t + 1)))
        times.append(time.perf_counter() - t0)
    return {"seconds_per_step": float(np.median(times)), "compile_seconds": compile_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(method: str, trials_per_ref: int, steps: int, timeout_s: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_likelihood", "--worker", method, "--trials-per-ref", str(trials_per_ref),
           "--steps", str(steps)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                             cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout_s:g} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit code {out.returncode}: {tail}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_problem(path: Path, data, W: np.ndarray, *, num_samples: int, bandwidth: float) -> None:
    """The problem file read by the peer's step script (benchmarks/peer_psyphy_step.py)."""
    import psyphy_pp as pp

    m = pp.WPPM()
    np.savez(path, W=W, refs=data.refs, comparisons=data.comparisons, responses=data.responses,
             basis_degree=m.basis_degree, extra_dims=m.extra_dims, variance_scale=m.variance_scale,
             decay_rate=m.decay_rate, diag_term=m.diag_term, num_samples=num_samples,
             bandwidth=bandwidth)


def accuracy(data, W, num_trials: int, peer_p: list | None) -> dict:
    """Mean and max |P(correct) error| against the numpy reference on the first trials."""
    import jax

    import psyphy_pp as pp
    from tests.reference import oddity_prob_reference

    params = {"W": W}
    model = pp.WPPM()
    refs, comps = data.refs[:num_trials], data.comparisons[:num_trials]
    S0 = np.asarray(model.covariance(params, refs), np.float64)
    S1 = np.asarray(model.covariance(params, comps), np.float64)
    ref = np.array([oddity_prob_reference(S0[i], S1[i], refs[i], comps[i])[0]
                    for i in range(num_trials)])
    est = {
        "psyphy_pp mc M=500": pp.WPPM(task=pp.Oddity(method="mc", num_samples=500)).prob_correct(
            params, refs, comps, key=jax.random.PRNGKey(11)),
        "psyphy_pp quadrature": pp.WPPM(task=pp.Oddity(method="quadrature")).prob_correct(
            params, refs, comps),
    }
    if peer_p:
        est["psyphy 0.0.5 mc M=500"] = np.asarray(peer_p[:num_trials])
    out = {k: (float(np.mean(np.abs(np.asarray(v) - ref))), float(np.max(np.abs(np.asarray(v) - ref))))
           for k, v in est.items()}
    out["reference standard error"] = (float(np.mean(np.sqrt(ref * (1 - ref) / 1e6))),) * 2
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--trials-per-ref", type=int, default=400)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 4000],
                        help="trials per reference (400 = P-std, 4000 = P-large)")
    parser.add_argument("--accuracy-trials", type=int, default=40)
    parser.add_argument("--no-peer", action="store_true", help="skip psyphy")
    parser.add_argument("--peer-large", action="store_true",
                        help="also run psyphy above N = 10,000 (it needs ~1.7 GB per 10,000 trials)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.trials_per_ref, args.steps)))
        return 0

    from benchmarks.run_peer import run_peer

    rows = []
    peer_p = None
    for size in args.sizes:
        n = 25 * size
        data, W = build_problem(size)
        # JAX's threefry generator instead of the default hash, at the first size only:
        # how much of the Monte Carlo step the noise generator accounts for.
        methods = METHODS if size == args.sizes[0] else ("mc", "quadrature")
        res = {m: run_worker(m, size, args.steps, args.timeout) for m in methods}
        if args.no_peer:
            res["psyphy"] = {"error": "skipped (--no-peer)"}
        elif n > 10_000 and not args.peer_large:
            res["psyphy"] = {"error": f"not run: its peak RSS grows ~1.7 GB per 10,000 trials "
                                      f"(~{1.7 * n / 10_000:.0f} GB here; --peer-large to try)"}
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "problem.npz"
                write_problem(path, data, W, num_samples=500, bandwidth=1e-2)
                res["psyphy"] = run_peer(path, steps=args.steps, timeout_s=args.timeout)
            peer_p = peer_p or res["psyphy"].get("p_correct_first")
        rows.append((n, res))

    load = open("/proc/loadavg").read().split()[0]
    print(f"\nvalue-and-grad of the negative log posterior, seconds per step (median of {args.steps}),"
          f" peak RSS; ratio = psyphy / psyphy_pp; 1-minute load average at the end: {load}")
    print(f"{'N':>8} {'method':<24} {'s/step':>9} {'peak RSS MB':>12} {'psyphy/this':>12}")
    for n, res in rows:
        peer = res["psyphy"].get("seconds_per_step")
        for name, key in [("psyphy_pp mc M=500", "mc"), ("  same, threefry noise", "mc-threefry"),
                          ("psyphy_pp quadrature", "quadrature"), ("psyphy 0.0.5 mc M=500", "psyphy")]:
            if key not in res:
                continue
            r = res[key]
            if "error" in r:
                print(f"{n:>8} {name:<24} {'cannot run: ' + r['error']}")
                continue
            ratio = f"{peer / r['seconds_per_step']:.1f}x" if peer and key != "psyphy" else ""
            print(f"{n:>8} {name:<24} {r['seconds_per_step']:>9.4f} {r['peak_rss_mb']:>12.0f} {ratio:>12}")

    data, W = build_problem(args.sizes[0])
    acc = accuracy(data, W, args.accuracy_trials, peer_p)
    print(f"\nP(correct) error against the 1e6-sample numpy reference, first {args.accuracy_trials} trials:")
    for name, (mean, mx) in acc.items():
        print(f"  {name:<28} mean |err| {mean:.2e}   max |err| {mx:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
