"""MAP fit over several processes with ``jax.distributed``, here on one machine.

Each process calls ``jax.distributed.initialize``, loads its own slice of the
trials and calls ``fit_map`` with the default ``devices=None``: the trial mesh
then spans the devices of every process, XLA sums the log-likelihood across
processes (CPU collectives over TCP, "gloo"), and every process ends with the
same MAP. On a cluster, start one process per host (or per accelerator) with
the coordinator's address instead of the loopback one used here.

Run ``python examples/multi_process_fit.py`` (the launcher): it starts
``--num-processes`` worker processes of this script on 127.0.0.1, fits the same
data in one process, and compares the two MAP estimates. A worker alone is
``python examples/multi_process_fit.py --process-id 0 --num-processes 2
--coordinator 127.0.0.1:PORT --output w0.npz``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--process-id", type=int, default=None,
                        help="run as this worker (default: launch the workers)")
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--grid-size", type=int, default=4, help="reference grid points per axis")
    parser.add_argument("--trials-per-ref", type=int, default=50, help="trials at each reference")
    parser.add_argument("--num-steps", type=int, default=200, help="MAP optimiser steps")
    parser.add_argument("--task", choices=("quadrature", "mc"), default="quadrature",
                        help="likelihood: deterministic quadrature or 100-sample Monte Carlo")
    parser.add_argument("--output", type=Path, default=None, help="worker: write the MAP here")
    return parser.parse_args(argv)


# --8<-- [start:data]
def load_trials(args, process_id: int, num_processes: int):
    """This process's slice of the trials (here simulated; in practice read from a file)."""
    import jax

    import psyphy_pp as pp

    model = make_model(args)
    truth = model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(model, truth, grid_size=args.grid_size,
                                         trials_per_ref=args.trials_per_ref,
                                         key=jax.random.PRNGKey(3))
    data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(4))
    n = data.num_trials
    lo, hi = process_id * n // num_processes, (process_id + 1) * n // num_processes
    return pp.TrialData(data.refs[lo:hi], data.comparisons[lo:hi], data.responses[lo:hi])
# --8<-- [end:data]


def make_model(args):
    import psyphy_pp as pp

    task = pp.Oddity(method="quadrature") if args.task == "quadrature" else pp.Oddity(method="mc", num_samples=100)
    return pp.WPPM(input_dim=2, basis_degree=2, extra_dims=1, task=task)


def worker(args) -> None:
    # --8<-- [start:worker]
    import jax

    jax.distributed.initialize(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    import numpy as np

    import psyphy_pp as pp

    data = load_trials(args, jax.process_index(), jax.process_count())
    fit = pp.fit_map(make_model(args), data, num_steps=args.num_steps, seed=0,
                     progress_bar=False)  # devices=None: the mesh spans every process
    # --8<-- [end:worker]
    W = np.asarray(fit.params["W"].addressable_data(0))  # replicated: every process has it all
    if args.output is not None:
        np.savez(args.output, W=W, losses=fit.losses, num_devices=fit.settings["num_devices"],
                 num_trials=fit.settings["num_trials"], local_trials=data.num_trials,
                 seconds_per_step=fit.settings["seconds_per_step"] or np.nan)
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args) -> int:
    import numpy as np

    coordinator = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", ""))
    with tempfile.TemporaryDirectory() as tmp:
        outputs = [Path(tmp) / f"worker{i}.npz" for i in range(args.num_processes)]
        common = [sys.executable, __file__, "--num-processes", str(args.num_processes),
                  "--coordinator", coordinator, "--grid-size", str(args.grid_size),
                  "--trials-per-ref", str(args.trials_per_ref), "--num-steps", str(args.num_steps),
                  "--task", args.task]
        start = time.perf_counter()
        procs = [subprocess.Popen(common + ["--process-id", str(i), "--output", str(out)], env=env)
                 for i, out in enumerate(outputs)]
        codes = [p.wait(timeout=900) for p in procs]
        wall = time.perf_counter() - start
        if any(codes):
            print(f"worker exit codes {codes}", file=sys.stderr)
            return 1
        results = [dict(np.load(out)) for out in outputs]

    import psyphy_pp as pp

    full = pp.TrialData(
        *[np.concatenate(parts) for parts in zip(*[
            (d.refs, d.comparisons, d.responses)
            for d in (load_trials(args, i, args.num_processes) for i in range(args.num_processes))
        ])]
    )
    one = pp.fit_map(make_model(args), full, num_steps=args.num_steps, seed=0,
                     progress_bar=False, devices=1)
    W1 = np.asarray(one.params["W"])
    r0 = results[0]
    print(f"{args.num_processes} processes: {int(r0['num_trials'])} trials "
          f"({[int(r['local_trials']) for r in results]} per process) on "
          f"{int(r0['num_devices'])} devices, {args.num_steps} steps, {wall:.1f} s wall")
    print(f"1 process:   final loss {one.losses[-1]:.7f}")
    print(f"{args.num_processes} processes: final loss {float(r0['losses'][-1]):.7f}")
    same = all(np.array_equal(r["W"], r0["W"]) for r in results)
    # W is compared after aligning the rotation gauge (Sigma = U U^T and the prior do
    # not change under a common right rotation of every W block).
    from psyphy_pp.diagnostics import align_gauge

    diff = float(np.max(np.abs(align_gauge(r0["W"], W1) - W1)))
    rel = diff / float(np.max(np.abs(W1)))
    print(f"all processes hold the same W: {same}")
    print(f"max |W(processes) - W(1 process)| = {diff:.3g} (relative {rel:.2g}, rotation "
          "gauge aligned)")
    n = min(len(r0["losses"]), len(one.losses))
    print(f"steps: {len(r0['losses'])} ({args.num_processes} processes), {len(one.losses)} "
          f"(1 process); max |loss difference| over the first {n} steps = "
          f"{float(np.max(np.abs(r0['losses'][:n] - one.losses[:n]))):.3g}")
    ok = same and rel < 1e-3
    print("AGREE" if ok else "DISAGREE")
    return 0 if ok else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.process_id is None:
        return launch(args)
    worker(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
