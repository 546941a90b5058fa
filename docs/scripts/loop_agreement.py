"""How closely the two MAP loops agree, with the Monte Carlo and the quadrature likelihood.

Fits one small simulated data set four ways and plots, step by step, the
relative difference between loss trajectories:

* ``fit_map`` against ``fit_map_scratch`` with the default Monte Carlo
  likelihood (500 samples, bandwidth 0.01, fresh noise every step);
* ``fit_map_scratch`` against itself started from weights moved by about
  ``1e-7`` (relative), same likelihood: how far float32 rounding alone carries;
* ``fit_map`` against ``fit_map_scratch`` with the deterministic quadrature
  likelihood.

Writes ``loop_agreement.png`` to ``--output-dir`` (the docs use ``docs/figures``)
and prints the :func:`psyphy_pp.compare_fits` report of the quadrature pair. Run ``python docs/scripts/loop_agreement.py --help``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import psyphy_pp as pp  # noqa: E402
from psyphy_pp.diagnostics import recovery_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-size", type=int, default=5, help="reference grid points per axis")
    parser.add_argument("--trials-per-ref", type=int, default=80, help="trials at each reference")
    parser.add_argument("--num-steps", type=int, default=100, help="optimiser steps per fit")
    parser.add_argument("--output-dir", type=Path, default=Path("docs/figures"))
    return parser.parse_args(argv)


def relative_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The largest ``|a - b| / |b|`` up to each step (floored for a log axis)."""
    return np.maximum.accumulate(np.maximum(np.abs(a - b) / np.abs(b), 1e-9))


def main(argv=None):
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)

    # The problem of examples/full_wppm_fit_example.py, with fewer steps.
    truth_model = pp.WPPM(basis_degree=4, diag_term=1e-9, task=pp.Oddity(method="quadrature"))
    truth = truth_model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(truth_model, truth, grid_size=args.grid_size,
                                         trials_per_ref=args.trials_per_ref,
                                         mahalanobis_radius=2.8, key=jax.random.PRNGKey(3))
    data = pp.simulate(truth_model, truth, refs, comps, key=jax.random.PRNGKey(4))

    settings = dict(num_steps=args.num_steps, optimizer="sgd", learning_rate=1e-4, momentum=0.9, seed=0,
                    progress_bar=False)
    mc = pp.WPPM(basis_degree=4, task=pp.Oddity(method="mc"))
    quad = pp.WPPM(basis_degree=4, task=pp.Oddity(method="quadrature"))

    svi_mc = pp.fit_map(mc, data, **settings)
    scratch_mc = pp.fit_map_scratch(mc, data, **settings)
    W0 = np.asarray(scratch_mc.init_params["W"])
    nudge = 1e-7 * np.abs(W0).max() * np.random.default_rng(0).standard_normal(W0.shape)
    nudged_mc = pp.fit_map_scratch(mc, data, init_params={"W": W0 + nudge}, **settings)
    svi_quad = pp.fit_map(quad, data, **settings)
    scratch_quad = pp.fit_map_scratch(quad, data, **settings)

    curves = {
        "Monte Carlo: SVI vs scratch": relative_gap(svi_mc.losses, scratch_mc.losses),
        "Monte Carlo: scratch vs scratch from a start nudged by 1e-7":
            relative_gap(nudged_mc.losses, scratch_mc.losses),
        "quadrature: SVI vs scratch": relative_gap(svi_quad.losses, scratch_quad.losses),
    }
    for label, gap in curves.items():
        print(f"{label}: max relative loss difference {gap.max():.2e}")
    grid = pp.designs.grid_points(12, 2)
    for label, fit in [("Monte Carlo, SVI", svi_mc), ("Monte Carlo, scratch", scratch_mc),
                       ("Monte Carlo, scratch nudged", nudged_mc), ("quadrature, SVI", svi_quad),
                       ("quadrature, scratch", scratch_quad)]:
        err = recovery_error(fit.model, fit.params, truth, grid)
        print(f"{label:>27}: final loss {fit.losses[-1]:.4f}, "
              f"Bures-Wasserstein {err['bures_wasserstein']:.4f}")

    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, gap), style in zip(curves.items(), ["-", ":", "-"]):
        ax.semilogy(gap, style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("largest relative loss difference so far")
    ax.set_title(f"{data.num_trials} trials, lr 1e-4, momentum 0.9, float32")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output_dir / "loop_agreement.png", dpi=100)
    plt.close(fig)
    print(f"figure written to {args.output_dir}/loop_agreement.png")

    # The report of compare_fits for the quadrature pair (quoted in docs/diagnostics.md).
    print(pp.compare_fits(svi_quad, scratch_quad))


if __name__ == "__main__":
    main()
