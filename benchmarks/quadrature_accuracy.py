"""Accuracy and cost of the 2D oddity quadratures (psyphy_pp.oddity.quadrature2d) per node count.

For each node setting of the Gauss-Hermite rule (``oddity_prob_quadrature``, angles x
Hermite x Hermite) and of the semi-analytic rule (``oddity_prob_semianalytic``,
angles x radial), prints the mean and max |error| of P(correct):

* ``MC``: over 20 random configurations against a 2,000,000-sample numpy Monte
  Carlo (tests/reference.py; its standard error, about 3e-4, is a floor here);
* ``ref``: over 200 random configurations against a noise-free reference, the
  semi-analytic rule with 64 x 64 nodes (it agrees with 128 x 256 nodes to 1e-14;
  the 32 x 16 x 16 Gauss-Hermite rule is off by up to ~8e-4 on the hardest cases);
* ``far``: max error over 200 WPPM-like configurations (S1 close to S0) with r and c
  1 to 3,000 standard deviations apart, against the same reference (64 x 256 nodes);
* ``r=c``: the error at r = c with S0 = S1 (exactly 1/3);

(rule ``SAq`` is ``1 - oddity_prob_semianalytic(..., return_incorrect=True)``, the
complement rule that ``Oddity(method="quadrature")`` uses for the logits)

plus the time of a jitted value-and-grad of sum(log p) over N = 10,000 float32
trials (median and min of 10 calls after warm-up). Half of the configurations are
WPPM-like (S1 a smooth perturbation of S0, comparison within ~4 thresholds); the
others are stress cases: axis ratio 20-30, unrelated S1, far comparisons, r = c.

Run from the repository root: ``python benchmarks/quadrature_accuracy.py``. With
``--no-ynn``, the timed functions are compiled with XLA's YNNPACK fusions off
(``xla_cpu_experimental_ynn_fusion_type=""``), which is much faster on this CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # accuracy in float64; timing uses float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from psyphy_pp.oddity.quadrature2d import (  # noqa: E402
    oddity_prob_quadrature,
    oddity_prob_semianalytic,
)
from tests.reference import oddity_prob_reference  # noqa: E402

GH_SETTINGS = [(a, h) for a in (4, 6, 8, 16) for h in (4, 5, 6, 8, 10)]
SA_SETTINGS = [(a, r) for a in (4, 6, 8, 12) for r in (3, 4, 6, 8)]
MC_CONFIGS, REF_CONFIGS = 20, 200
MC_SAMPLES = 2_000_000
N_TIMING = 10_000


def _spd(rng: np.random.Generator, scale: float, ratio: float) -> np.ndarray:
    """Random 2x2 SPD matrix: eigenvalues scale^2 * (1, ratio^2), random orientation."""
    a = rng.uniform(0.0, np.pi)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return R @ np.diag([scale**2, (scale * ratio) ** 2]) @ R.T


def random_configs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """``n`` configurations ``(S0, S1, delta)`` cycling through five kinds.

    0: WPPM-like (S1 a perturbation of S0, |delta| 0.3-4 standard deviations);
    1: as 0 with axis ratio 20-30; 2: unrelated S1; 3: far (5-7 sd); 4: r = c.
    """
    S0s, S1s, deltas = [], [], []
    for i in range(n):
        kind = i % 5
        ratio = rng.uniform(20.0, 30.0) if kind == 1 else rng.uniform(1.0, 4.0)
        S0 = _spd(rng, rng.uniform(0.02, 0.1), ratio)
        if kind == 2:
            S1 = _spd(rng, rng.uniform(0.02, 0.1), rng.uniform(1.0, 4.0))
        else:
            J = np.eye(2) + rng.uniform(-0.15, 0.15, (2, 2))
            S1 = J @ S0 @ J.T
        s = {3: rng.uniform(5.0, 7.0), 4: 0.0}.get(kind, rng.uniform(0.3, 4.0))
        a = rng.uniform(0.0, 2 * np.pi)
        deltas.append(s * np.linalg.cholesky(S0) @ np.array([np.cos(a), np.sin(a)]))
        S0s.append(S0)
        S1s.append(S1)
    return np.array(S0s), np.array(S1s), np.array(deltas)


def time_value_and_grad(
    fn, compiler_options: dict | None, repeats: int = 10
) -> tuple[float, float]:
    """(median, min) seconds of a jitted value-and-grad of sum(log p), float32."""
    S0, S1, delta = (
        jnp.asarray(a, jnp.float32) for a in random_configs(np.random.default_rng(1), N_TIMING)
    )
    loss = lambda S0, S1, delta: jnp.sum(jnp.log(fn(S0, S1, delta)))  # noqa: E731
    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), compiler_options=compiler_options)
    jax.block_until_ready(f(S0, S1, delta))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(S0, S1, delta))
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-ynn", action="store_true", help="time without YNNPACK fusions")
    args = parser.parse_args()
    options = {"xla_cpu_experimental_ynn_fusion_type": ""} if args.no_ynn else None

    mc_cfg = random_configs(np.random.default_rng(0), MC_CONFIGS)
    ref_cfg = random_configs(np.random.default_rng(5), REF_CONFIGS)
    rng = np.random.default_rng(11)
    S0, S1, delta = (a[np.arange(a.shape[0]) % 5 == 0] for a in random_configs(rng, 1000))
    far_cfg = (S0, S1, delta * np.exp(rng.uniform(0.0, np.log(3e3), (len(delta), 1))))
    t0 = time.perf_counter()
    mc = np.array(
        [
            oddity_prob_reference(a, b, d, np.zeros(2), num_samples=MC_SAMPLES, seed=k)
            for k, (a, b, d) in enumerate(zip(*mc_cfg))
        ]
    )
    print(f"Monte Carlo: {MC_CONFIGS} configurations x {MC_SAMPLES:,} samples in "
          f"{time.perf_counter() - t0:.0f} s, mean stderr {mc[:, 1].mean():.1e}")
    best = lambda cfg: np.asarray(  # noqa: E731
        oddity_prob_semianalytic(*cfg, num_angles=64, num_radial=64)
    )
    best_mc, best_ref = best(mc_cfg), best(ref_cfg)
    best_far = np.asarray(oddity_prob_semianalytic(*far_cfg, num_angles=64, num_radial=256))
    z = np.abs(best_mc - mc[:, 0]) / mc[:, 1]
    print(f"reference vs MC: max |z| {z.max():.1f}, mean |z| {z.mean():.2f} (expect ~0.8)")
    gh32 = np.asarray(oddity_prob_quadrature(*ref_cfg, num_angles=32, num_hermite=16))
    print(f"Gauss-Hermite 32x16x16 vs reference: max |err| {np.abs(gh32 - best_ref).max():.1e}")
    print(f"timings: N = {N_TIMING:,} float32, "
          f"{'YNNPACK fusions off' if args.no_ynn else 'default XLA flags'}\n")

    eye = np.eye(2) * 0.01
    one_minus_q = lambda *a, **kw: 1.0 - oddity_prob_semianalytic(  # noqa: E731
        *a, return_incorrect=True, **kw
    )
    rules = [("GH", oddity_prob_quadrature, "num_hermite", GH_SETTINGS),
             ("SA", oddity_prob_semianalytic, "num_radial", SA_SETTINGS),
             ("SAq", one_minus_q, "num_radial", SA_SETTINGS)]
    print(f"{'rule':>4} {'nodes':>8} {'evals':>5} {'MC mean':>8} {'MC max':>8} "
          f"{'ref mean':>8} {'ref max':>8} {'far max':>8} {'r=c':>8} {'ms med':>7} {'ms min':>7}")
    for name, fn, key, settings in rules:
        for na, nb in settings:
            kw = {"num_angles": na, key: nb}
            f = lambda *a, fn=fn, kw=kw: fn(*a, **kw)  # noqa: E731
            e_mc = np.abs(np.asarray(f(*mc_cfg)) - mc[:, 0])
            e_ref = np.abs(np.asarray(f(*ref_cfg)) - best_ref)
            e_far = np.abs(np.asarray(f(*far_cfg)) - best_far)
            chance = float(f(eye, eye, np.zeros(2))) - 1.0 / 3.0
            med, low = time_value_and_grad(f, options)
            nodes = f"{na}x{nb}x{nb}" if name == "GH" else f"{na}x{nb}"
            evals = na * nb * nb if name == "GH" else na * nb
            print(f"{name:>4} {nodes:>8} {evals:>5} {e_mc.mean():>8.1e} {e_mc.max():>8.1e} "
                  f"{e_ref.mean():>8.1e} {e_ref.max():>8.1e} {e_far.max():>8.1e} {chance:>8.1e} "
                  f"{1e3 * med:>7.1f} {1e3 * low:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
