"""Trial sharding: seconds per step and memory per device on 1, 2 and 4 devices.

Run ``python -m benchmarks.bench_sharding``. Each configuration (devices x N)
runs in its own process with ``XLA_FLAGS=--xla_force_host_platform_device_count``
set to its device count, so the CPU is split into that many emulated devices.
The step is the one :func:`~psyphy_pp.fit_map_scratch` compiles: value and
gradient of the per-trial mean negative log posterior (P-large shape: D = 2,
basis_degree 4, extra_dims 1, the default 8 x 4 quadrature), with the trials
sharded over the devices (``make_loss(..., devices=d)``).

Columns:

* ``s/step``: the mean of ``--steps`` steps after a first (compiling) one, with
  the 1-minute load average at the start and the end of the measurement (other
  jobs on the machine slow every number down);
* ``MB/device``: XLA's memory plan of the compiled step for one device
  (``compiled.memory_analysis()``: arguments + temporaries).
  ``jax.Device.memory_stats()`` returns None on CPU, so there is no measured
  per-device peak there; on an accelerator the table adds
  ``memory_stats()["peak_bytes_in_use"]``;
* ``RSS MB``: peak resident memory of the whole process (all emulated devices
  share it; it includes JAX and XLA themselves, ~400 MB);
* ``|dloss|``: relative difference of the loss from the one-device run.

Emulated CPU devices share the same cores (two on the development machine), so
no speed-up is expected there: the point is that the memory per device falls
and the results agree. With ``--accelerator`` (default: when JAX's default
backend is not the CPU) the same table is measured on the real devices.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def worker(args) -> dict:
    import jax
    import numpy as np

    import psyphy_pp as pp
    from psyphy_pp._jit import jit
    from psyphy_pp.scratch import make_loss

    model = pp.WPPM(input_dim=2, basis_degree=4, extra_dims=1,
                    task=pp.Oddity(method=args.task, num_samples=args.num_samples))
    rng = np.random.default_rng(0)
    n = args.num_trials
    refs = rng.uniform(-0.9, 0.9, (n, 2))
    comps = np.clip(refs + rng.normal(scale=0.05, size=(n, 2)), -1, 1)
    data = pp.TrialData(refs, comps, (rng.uniform(size=n) < 0.7).astype(int))
    params = model.sample_prior(jax.random.PRNGKey(123))
    loss = make_loss(model, data, devices=args.devices)
    loss = loss if isinstance(loss, jax.tree_util.Partial) else jax.tree_util.Partial(loss)
    value_and_grad = jit(lambda loss, params, key: jax.value_and_grad(loss)(params, key))
    key = jax.random.PRNGKey(1)

    start = time.perf_counter()
    compiled = value_and_grad.lower(loss, params, key).compile()
    value, grad = compiled(loss, params, key)
    jax.block_until_ready(grad)
    first = time.perf_counter() - start
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    for t in range(args.steps):
        value, grad = compiled(loss, params, jax.random.fold_in(key, t))
    jax.block_until_ready(grad)
    per_step = (time.perf_counter() - start) / args.steps
    load_end = os.getloadavg()[0]
    mem = compiled.memory_analysis()
    stats = jax.devices()[0].memory_stats()
    return {
        "backend": jax.default_backend(),
        "devices": len(jax.devices()) if args.devices is None else args.devices,
        "num_trials": n,
        "first_step_seconds": first,
        "seconds_per_step": per_step,
        "load": [load_start, load_end],
        "plan_bytes_per_device": mem.argument_size_in_bytes + mem.temp_size_in_bytes,
        "peak_bytes_per_device": None if stats is None else stats.get("peak_bytes_in_use"),
        "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "loss": float(value),
    }


def run_config(devices: int, num_trials: int, args, *, emulate: bool) -> dict:
    env = dict(os.environ)
    if emulate:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "benchmarks.bench_sharding", "--worker",
           "--devices", str(devices), "--num-trials", str(num_trials), "--steps", str(args.steps),
           "--task", args.task, "--num-samples", str(args.num_samples)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    ref = {r["num_trials"]: r["loss"] for r in rows if r["devices"] == 1}
    lines = [
        "| devices | N | s/step | load (start-end) | first step s | MB/device (XLA plan) "
        "| peak MB/device | process RSS MB | dloss vs 1 device |",
        "| ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rel = abs(r["loss"] - ref[r["num_trials"]]) / abs(ref[r["num_trials"]]) \
            if r["num_trials"] in ref else float("nan")
        peak = "n/a" if r["peak_bytes_per_device"] is None else f"{r['peak_bytes_per_device'] / 2**20:.0f}"
        lines.append(
            f"| {r['devices']} | {r['num_trials']:,} | {r['seconds_per_step']:.3f} | "
            f"{r['load'][0]:.1f}-{r['load'][1]:.1f} | {r['first_step_seconds']:.1f} | "
            f"{r['plan_bytes_per_device'] / 2**20:.0f} | {peak} | {r['rss_bytes'] / 2**20:.0f} | "
            f"{rel:.1e} |"
        )
    return "\n".join(lines)


def accelerator_count() -> int:
    """Number of non-CPU devices JAX's default backend has (0 if it is the CPU)."""
    code = "import jax; print(0 if jax.default_backend() == 'cpu' else jax.device_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--num-trials", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--task", choices=("quadrature", "mc"), default="quadrature")
    parser.add_argument("--num-samples", type=int, default=500, help="Monte Carlo samples (mc)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.devices = args.devices[0]
        args.num_trials = args.num_trials[0]
        print(json.dumps(worker(args)))
        return 0

    print(f"value-and-grad step, P-large shape, Oddity(method={args.task!r}); "
          f"{os.cpu_count()} CPU cores; load average at start {os.getloadavg()[0]:.1f}")
    rows = []
    for n in args.num_trials:
        for d in args.devices:
            rows.append(run_config(d, n, args, emulate=True))
    print("\nemulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count):")
    print(table(rows))
    count = accelerator_count()
    if count:
        acc = [run_config(d, n, args, emulate=False)
               for n in args.num_trials for d in args.devices if d <= count]
        print(f"\n{acc[0]['backend']} devices:")
        print(table(acc))
    else:
        print("\nno accelerator: JAX's default backend is the CPU, so there is no second table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
