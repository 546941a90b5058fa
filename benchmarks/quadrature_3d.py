"""3D oddity task: accuracy and cost of deterministic rules against fixed-noise Monte Carlo.

Methods (all float32, batched):

* ``MC M/bw``: psyphy_pp's smoothed Monte Carlo with fixed common random numbers,
  ``pp.Oddity(method="mc", num_samples=M, bandwidth=bw, fixed_noise=True)``. Its error
  is the noise of one fixed draw plus the bias of the logistic smoothing.
* ``GH a x b x h^3``: the DESIGN 2b construction
  (:func:`psyphy_pp.oddity.quadrature3d.oddity_prob_gauss_hermite_3d`).
* ``polar ...``: six-dimensional polar coordinates with the radial integral in closed
  form (:func:`psyphy_pp.oddity.quadrature3d.oddity_prob_polar_3d`), node counts
  ``n_pol x n_azi x f_pol x f_azi x psi``.

Accuracy is measured on 30 random configurations (S0, S1, r, c) cycling through six
kinds: near chance (0.1-0.4 sd apart), mid (0.8-2.5 sd), near ceiling (4-6 sd),
elongated ellipsoids (axis ratio 8-15, S1 a perturbation of S0), unrelated S1, and
r = c (S1 = S0, exactly 1/3). Errors of P(correct) are reported against

* ``MC``: the independent float64 hard-threshold Monte Carlo of tests/reference.py
  with ``REF_SAMPLES`` samples per configuration (its standard error, printed, is a
  floor under every ``MC`` column), and
* ``quad``: the polar rule at ``REF_NODES`` in float64, which agrees with the Monte
  Carlo reference to within its standard errors (the z-scores are printed) and with
  itself at fewer nodes to ~1e-7, so it resolves errors far below the Monte Carlo floor.

Cost: microseconds per trial of a jitted value-and-grad (w.r.t. S0, S1, delta) of the
Bernoulli log-likelihood of 10,000 float32 trials (all responses correct), compiled
with psyphy_pp's compiler options; the quadrature rules run in blocks of about
``2**20`` trial-node evaluations under ``jax.checkpoint``, as ``Oddity`` does for 2D.
Wall (median of ``REPEATS``) and process CPU time per call are both shown; the machine
is shared, so the load average is printed too.

Run from the repository root: ``python -m benchmarks.quadrature_3d`` (``--quick`` for a
smaller run: 2e5 reference samples, fewer methods).
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # references in float64; methods run in float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import psyphy_pp as pp  # noqa: E402
from psyphy_pp._jit import compiler_options  # noqa: E402
from psyphy_pp.oddity import PROB_EPS  # noqa: E402
from psyphy_pp.oddity.quadrature3d import (  # noqa: E402
    oddity_prob_gauss_hermite_3d,
    oddity_prob_polar_3d,
)
from tests.reference import oddity_prob_reference  # noqa: E402

NUM_CONFIGS = 30
REF_SAMPLES = 2_000_000
REF_NODES = (24, 16, 12, 24, 12)
N_TIMING = 10_000
REPEATS = 5
KINDS = ("chance", "mid", "ceiling", "elongated", "unrelated", "r=c")


def _spd(rng: np.random.Generator, ratio: float) -> np.ndarray:
    """Random 3x3 SPD: standard deviations ``s * (1, ratio^0.5.., ratio)``, random axes."""
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    s = rng.uniform(0.02, 0.1)
    sd = s * np.array([1.0, ratio ** rng.uniform(0.0, 1.0), ratio])
    return Q @ np.diag(sd**2) @ Q.T


def random_configs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """``(S0, S1, delta, kind)`` for ``n`` configurations cycling through ``KINDS``."""
    S0s, S1s, deltas, kinds = [], [], [], []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        S0 = _spd(rng, rng.uniform(8.0, 15.0) if kind == "elongated" else rng.uniform(1.0, 3.0))
        if kind == "unrelated":
            S1 = _spd(rng, rng.uniform(1.0, 3.0))
        elif kind == "r=c":
            S1 = S0
        else:
            J = np.eye(3) + rng.uniform(-0.15, 0.15, (3, 3))
            S1 = J @ S0 @ J.T
        lo, hi = {"chance": (0.1, 0.4), "ceiling": (4.0, 6.0), "r=c": (0.0, 0.0)}.get(
            kind, (0.8, 2.5) if kind == "mid" else (0.5, 3.0)
        )
        x = rng.normal(size=3)
        deltas.append(rng.uniform(lo, hi) * np.linalg.cholesky(S0) @ (x / np.linalg.norm(x)))
        S0s.append(S0)
        S1s.append(S1)
        kinds.append(kind)
    return np.array(S0s), np.array(S1s), np.array(deltas), np.array(kinds)


def mc_prob(num_samples: int, bandwidth: float):
    """P(correct) of fixed-noise Monte Carlo through ``pp.Oddity(...).logits``."""
    odd = pp.Oddity(method="mc", num_samples=num_samples, bandwidth=bandwidth, fixed_noise=True)
    return lambda S0, S1, delta: jax.nn.sigmoid(odd.logits(S0, S1, delta)), odd


def blocked(fn, evals: int):
    """``fn`` over a batch of trials in blocks of ~2**20 trial-node evaluations."""

    def run(S0, S1, delta):
        n = delta.shape[0]
        block = max(1, min(n, 2**20 // evals))
        if block == n:
            return fn(S0, S1, delta)
        nb = -(-n // block)
        idx = jnp.concatenate([jnp.arange(n), jnp.zeros(nb * block - n, jnp.int32)])
        parts = tuple(a[idx].reshape(nb, block, *a.shape[1:]) for a in (S0, S1, delta))
        return jax.lax.map(jax.checkpoint(lambda b: fn(*b)), parts).reshape(-1)[:n]

    return run


def time_value_and_grad(prob_fn, logit_fn=None) -> tuple[float, float]:
    """(wall median, CPU per call) seconds of value-and-grad over N_TIMING float32 trials."""
    S0, S1, delta, _ = random_configs(np.random.default_rng(1), N_TIMING)
    S0, S1, delta = (jnp.asarray(a, jnp.float32) for a in (S0, S1, delta))
    if logit_fn is not None:
        loss = lambda *a: jnp.sum(jax.nn.log_sigmoid(logit_fn(*a)))  # noqa: E731
    else:
        eps = PROB_EPS
        loss = lambda *a: jnp.sum(jnp.log(jnp.clip(prob_fn(*a), eps, 1 - eps)))  # noqa: E731
    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), compiler_options=compiler_options())
    jax.block_until_ready(f(S0, S1, delta))
    walls = []
    c0 = time.process_time()
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        jax.block_until_ready(f(S0, S1, delta))
        walls.append(time.perf_counter() - t0)
    return float(np.median(walls)), (time.process_time() - c0) / REPEATS


def main() -> None:
    global REF_SAMPLES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller reference, fewer methods")
    args = parser.parse_args()
    if args.quick:
        REF_SAMPLES = 200_000

    S0, S1, delta, kinds = random_configs(np.random.default_rng(0), NUM_CONFIGS)
    print(f"load average: {open('/proc/loadavg').read().split()[:3]}")
    t0 = time.perf_counter()
    mc = np.array([
        oddity_prob_reference(a, b, d, np.zeros(3), num_samples=REF_SAMPLES, seed=k)
        for k, (a, b, d) in enumerate(zip(S0, S1, delta))
    ])
    print(f"reference Monte Carlo: {NUM_CONFIGS} configurations x {REF_SAMPLES:,} samples "
          f"in {time.perf_counter() - t0:.0f} s; stderr mean {mc[:, 1].mean():.1e}, "
          f"max {mc[:, 1].max():.1e}")
    quad = np.array([
        float(oddity_prob_polar_3d(a, b, d, nodes=REF_NODES)) for a, b, d in zip(S0, S1, delta)
    ])
    z = (quad - mc[:, 0]) / np.maximum(mc[:, 1], 1e-12)
    print(f"polar {'x'.join(map(str, REF_NODES))} (float64) vs reference MC: mean |z| "
          f"{np.abs(z).mean():.2f} (expect ~0.8), max |z| {np.abs(z).max():.1f}; "
          f"r=c: {quad[kinds == 'r=c'].min():.7f}..{quad[kinds == 'r=c'].max():.7f}")
    print("P range:", " ".join(f"{k}:{quad[kinds == k].min():.3f}-{quad[kinds == k].max():.3f}"
                               for k in KINDS))
    x32 = tuple(jnp.asarray(a, jnp.float32) for a in (S0, S1, delta))

    methods = []
    for M in (500, 2000):
        for bw in (0.01, 0.005):
            fn, odd = mc_prob(M, bw)
            methods.append((f"MC {M} bw {bw}", M, fn, lambda *a, odd=odd: odd.logits(*a)))
    gh = [(4, 8, 4), (6, 12, 5)] if args.quick else [(4, 8, 4), (6, 12, 5), (10, 20, 8)]
    for a, b, h in gh:
        evals = a * b * h**3
        f = lambda *x, a=a, b=b, h=h: oddity_prob_gauss_hermite_3d(  # noqa: E731
            *x, num_cos=a, num_azimuth=b, num_hermite=h)
        methods.append((f"GH {a}x{b}x{h}^3", evals, f, None))
    polar = [(4, 4, 2, 4, 3), (4, 6, 3, 6, 4)] if args.quick else [
        (4, 4, 2, 4, 3), (4, 6, 2, 6, 4), (4, 6, 3, 6, 4), (6, 6, 3, 6, 5), (6, 8, 3, 8, 6)]
    for nodes in polar:
        f = lambda *x, nodes=nodes: oddity_prob_polar_3d(*x, nodes=nodes)  # noqa: E731
        methods.append((f"polar {'x'.join(map(str, nodes))}", int(np.prod(nodes)), f, None))

    print(f"\nerrors of P(correct) over {NUM_CONFIGS} configurations (float32); cost of "
          f"value-and-grad, N = {N_TIMING:,} float32 trials")
    head = (f"{'method':<22}{'evals':>7}{'MC mean':>9}{'MC max':>9}{'quad mean':>10}"
            f"{'quad max':>9}{'r=c err':>9}{'us/trial':>9}{'cpu us':>8}  load")
    print(head)
    for name, evals, fn, logit_fn in methods:
        p = np.asarray(jax.jit(fn)(*x32), np.float64)
        e_mc, e_q = np.abs(p - mc[:, 0]), np.abs(p - quad)
        rc = np.abs(p[kinds == "r=c"] - 1.0 / 3.0).max()
        if evals > 50_000:
            cost = "       -       -"
        else:
            prob = fn if logit_fn is not None else blocked(fn, evals)
            wall, cpu = time_value_and_grad(prob, logit_fn)
            cost = f"{1e6 * wall / N_TIMING:>8.2f}{1e6 * cpu / N_TIMING:>8.2f}"
        load = open("/proc/loadavg").read().split()[0]
        print(f"{name:<22}{evals:>7}{e_mc.mean():>9.1e}{e_mc.max():>9.1e}{e_q.mean():>10.1e}"
              f"{e_q.max():>9.1e}{rc:>9.1e}{cost}  {load}", flush=True)


if __name__ == "__main__":
    main()
