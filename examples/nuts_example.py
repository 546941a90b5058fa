"""Full posterior of the WPPM with NUTS: MAP, then NUTS from the MAP, then ArviZ.

Simulates the P-small problem of DESIGN.md (2D, basis_degree 2, a 3 x 3 grid of
references, 40 trials each), fits the MAP with NumPyro SVI, starts NumPyro's
NUTS from it, and reads the posterior with ArviZ: ``az.summary`` of ``Sigma``
at the reference points (W itself is not identifiable: any common right
rotation of its matrices leaves Sigma unchanged, so its r_hat means little),
leave-one-out cross-validation (``az.loo``), the coverage of the true Sigma by
the 90% credible intervals, and figures (posterior ellipse bands, trace and rank
plots) written to ``--output-dir``. It ends with ``compare_fits`` of an SVI MAP
against the hand-written MAP loop (same seed and likelihood: they agree).

The model's default likelihood is the deterministic quadrature (8 x 4 nodes);
``fit_nuts`` samples with it too (it integrates 1 - P(correct) directly, so it
stays accurate where P(correct) is close to 1), and says so.

Run ``python examples/nuts_example.py`` (69 s on 2 idle CPU cores with threaded chains and depth 7;
``--num-warmup 200 --num-samples 200`` for a quicker look).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import psyphy_pp as pp  # noqa: E402
from psyphy_pp.diagnostics import posterior_sigma  # noqa: E402
from psyphy_pp.plotting import plot_posterior_ellipses, plot_rank, plot_trace  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-size", type=int, default=3, help="reference grid points per axis")
    parser.add_argument("--trials-per-ref", type=int, default=40, help="trials at each reference")
    parser.add_argument("--basis-degree", type=int, default=2, help="Chebyshev degree K")
    parser.add_argument("--num-steps", type=int, default=1000,
                        help="most MAP optimiser steps (the fit stops once converged)")
    parser.add_argument("--num-warmup", type=int, default=300, help="NUTS warmup per chain")
    parser.add_argument("--num-samples", type=int, default=500, help="NUTS draws per chain")
    parser.add_argument("--num-chains", type=int, default=2, help="NUTS chains")
    parser.add_argument("--target-accept-prob", type=float, default=0.8,
                        help="NUTS step-size adaptation target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("examples/output/nuts"))
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress

    # P-small: the truth is a prior draw; comparisons 2.8 noise sds from each reference.
    model = pp.WPPM(input_dim=2, basis_degree=args.basis_degree, extra_dims=1)
    truth = model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(model, truth, grid_size=args.grid_size,
                                         trials_per_ref=args.trials_per_ref,
                                         key=jax.random.PRNGKey(3))
    data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(4))
    print(f"simulated {data.num_trials} trials at {len(data.unique_refs())} references, "
          f"{data.responses.mean():.1%} correct")

    # --8<-- [start:map_then_nuts]
    # MAP first (the default quadrature likelihood and L-BFGS, until converged) ...
    t0 = time.perf_counter()
    fit = pp.fit_map(model, data, num_steps=args.num_steps, seed=args.seed, progress_bar=progress)
    t1 = time.perf_counter()
    # ... then NUTS from the MAP, on the same quadrature (fit_nuts says which in task_note).
    post = pp.fit_nuts(model, data, init_params=fit.params, num_warmup=args.num_warmup,
                       num_samples=args.num_samples, num_chains=args.num_chains,
                       target_accept_prob=args.target_accept_prob, seed=args.seed,
                       progress_bar=progress)
    t2 = time.perf_counter()
    # --8<-- [end:map_then_nuts]
    print(f"MAP: {fit.num_steps} steps in {t1 - t0:.1f} s (converged {fit.converged}), loss "
          f"{fit.losses[0]:.4f} -> {fit.losses[-1]:.4f} nats per trial")
    print(f"NUTS: {post.task_note}")
    print(f"NUTS: {post.num_chains} chains x {post.num_samples} draws "
          f"(+{args.num_warmup} warmup, chains run {post.settings['chain_method']}) "
          f"in {t2 - t1:.1f} s, {post.num_divergences} divergences, "
          f"tree depth {np.median(post.sample_stats['tree_depth']):.0f} (median), "
          f"step size {np.mean(post.sample_stats['step_size'][:, 0]):.3g}")

    # --8<-- [start:arviz]
    idata = pp.to_arviz(post)
    summary = az.summary(idata, var_names=["Sigma"], round_to="none")
    loo = az.loo(idata)
    # --8<-- [end:arviz]
    print("\nposterior of Sigma at the first reference point:")
    print(summary.iloc[:4, :].to_string(float_format=lambda v: f"{v:.4g}"))
    ess_per_s = summary["ess_bulk"].min() / (t2 - t1)
    print(f"\nSigma, all {len(summary)} entries: r_hat {summary['r_hat'].min():.4f} .. "
          f"{summary['r_hat'].max():.4f}, ess_bulk min {summary['ess_bulk'].min():.0f} "
          f"({ess_per_s:.2f} per second of NUTS wall time), "
          f"ess_tail min {summary['ess_tail'].min():.0f}")
    print(f"\nLOO: elpd_loo {loo.elpd_loo:.2f} (se {loo.se:.2f}), p_loo {loo.p_loo:.2f}, "
          f"Pareto k > 0.7 for {int(np.sum(loo.pareto_k.values > 0.7))} of {data.num_trials} trials")

    ci = posterior_sigma(post, prob=0.9)
    true_sigma = np.asarray(model.covariance(truth, ci.points), np.float64)
    iu = np.triu_indices(2)
    inside = ci.contains(true_sigma)[:, iu[0], iu[1]]
    print(f"true Sigma inside the 90% credible interval for {inside.mean():.0%} of the "
          f"{inside.size} (reference point, entry) pairs")
    ci_grid = posterior_sigma(post, pp.designs.grid_points(12, 2), prob=0.9)
    print(f"on a 12 x 12 grid: mean 90% interval width of Sigma entries "
          f"{np.mean(ci_grid.upper - ci_grid.lower):.3g}")

    fig = plot_posterior_ellipses(post, truth=truth)
    fig.axes[0].set_title("threshold ellipses: posterior mean, 90% band, truth")
    fig.savefig(args.output_dir / "posterior_ellipses.png", dpi=100)
    plot_trace(post, var_name="Sigma", num_entries=3).savefig(args.output_dir / "trace_sigma.png",
                                                               dpi=80)
    plot_trace(post, num_entries=4).savefig(args.output_dir / "trace_W.png", dpi=80)
    plot_rank(post, num_entries=4).savefig(args.output_dir / "rank_W.png", dpi=80)

    # The hand-written MAP loop reaches the same MAP (W compared after aligning the
    # rotation gauge, which leaves Sigma unchanged).
    fit2 = pp.fit_map_scratch(model, data, num_steps=args.num_steps, seed=args.seed,
                              progress_bar=progress)
    # Both L-BFGS loops reach the same W (3e-6 after aligning the gauge at the defaults),
    # but float32 rounding in the line search makes their loss traces part for a few
    # steps on the way (2.2e-4 relative at steps 33-38 here), above compare_fits's
    # default 1e-4 for the per-step loss; 1e-3 still catches loops that differ.
    report = pp.compare_fits(fit, fit2, loss_rtol=1e-3)
    print(f"\n{report}")
    report.plot().savefig(args.output_dir / "compare_svi_scratch.png", dpi=80)
    plt.close("all")
    print(f"figures written to {args.output_dir}/")


if __name__ == "__main__":
    main()
