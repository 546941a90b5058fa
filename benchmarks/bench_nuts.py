"""Where NUTS spends its time on a realistic observer, against fit_laplace.

The observer: P-std's model (degree 4, 150 weights) with a 5 x 5 grid of
references and 240 trials each (N = 6,000), truth drawn from the prior (seed
123). One MAP fit (``fit_laplace``'s, default settings) starts both chains.

Measured and printed, for ``fit_nuts`` at the given warmup and draws:

* wall time of ``fit_nuts``, compilation included;
* the cost of one gradient of the log density, timed on its own (jitted, the
  same likelihood NUTS uses, and the 16 x 8 rule NUTS used before, for the
  ratio), and the number of gradients (leapfrog steps) per
  draw, mean and maximum, with the tree depth and the adapted step size; their
  product is what sampling costs;
* divergences, and the convergence of ``Sigma`` at the references: max r_hat
  and min ess_bulk (ArviZ), with ess per second;
* the same wall time for ``fit_laplace`` (MAP included) as the baseline.

Run ``python -m benchmarks.bench_nuts`` from the repository root
(``--num-warmup``, ``--num-draws``; default 200 + 200 per chain, about 5 min on
2 cores at fit_nuts's defaults; ``--max-tree-depth``, ``--mass dense|diagonal``,
``--gauge free|fixed``, ``--target-accept``, ``--chain-method`` and ``--seed``
override those defaults). ``--baseline sequential`` runs ``fit_nuts`` a second
time with that chain method and prints the wall-time ratio of the two runs and
whether their draws agree. ``--observer
sobol:S`` or ``grid:S`` runs instead on observer ``S`` of
``python -m benchmarks.coverage`` (6,000 trials, degree 4, its prior). The issue's
target, 2 x 500 draws with r_hat < 1.01 and ess > 400 in under 10 minutes, is
printed next to the measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time


def observer(num_trials_per_ref: int = 240, seed: int = 123):
    """The 6,000-trial degree-4 observer: (model, truth, data)."""
    import jax

    import psyphy_pp as pp

    model = pp.WPPM(input_dim=2, basis_degree=4, extra_dims=1)
    truth = model.sample_prior(jax.random.PRNGKey(seed))
    refs, comps = pp.designs.grid_design(model, truth, grid_size=5,
                                         trials_per_ref=num_trials_per_ref,
                                         key=jax.random.PRNGKey(3))
    data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(4))
    return model, truth, data


def pick_observer(name: str, trials_per_ref: int):
    """``(model, data)`` of ``--observer``: ``"bench"``, or ``"sobol:S"`` / ``"grid:S"``."""
    if name == "bench":
        model, _, data = observer(trials_per_ref)
        return model, data
    design, _, seed = name.partition(":")
    if design not in ("sobol", "grid") or not seed.isdigit():
        raise SystemExit(f"--observer must be bench, sobol:SEED or grid:SEED, got {name!r}")
    import psyphy_pp as pp
    from benchmarks.coverage import make_observer, model_kwargs

    _, _, data, _ = make_observer(int(seed), design, trials=6000, grid_size=5, basis_degree=4)
    return pp.WPPM(**model_kwargs(4)), data


def gradient_seconds(model, params, data, repeats: int = 20) -> float:
    """Median seconds of one value-and-gradient of the log density NUTS samples.

    Compiled with psyphy_pp's CPU compiler options, as the NUTS loop is.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from psyphy_pp._jit import jit

    arrays = [jnp.asarray(a) for a in (data.refs, data.comparisons, data.responses)]

    def f(W):
        p = {"W": W}
        return -(model.log_prior(p) + jnp.sum(model.log_likelihood(p, *arrays)))

    vg = jit(jax.value_and_grad(f))
    W = jnp.asarray(params["W"])
    jax.block_until_ready(vg(W))
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(vg(W + 1e-7 * i))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _depth(text: str):
    """``--max-tree-depth``: ``"7"`` or ``"6,7"``."""
    parts = tuple(int(p) for p in text.split(","))
    return parts[0] if len(parts) == 1 else parts


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-warmup", type=int, default=200)
    parser.add_argument("--num-draws", type=int, default=200)
    parser.add_argument("--trials-per-ref", type=int, default=240)
    parser.add_argument("--max-tree-depth", type=_depth, default=None, metavar="D|W,S",
                        help="one depth, or warmup,sampling; default: fit_nuts's own "
                             "(psyphy_pp.defaults.DEFAULT_MAX_TREE_DEPTH)")
    parser.add_argument("--mass", choices=("dense", "diagonal"), default=None,
                        help="default: fit_nuts's own (psyphy_pp.defaults.DEFAULT_DENSE_MASS)")
    parser.add_argument("--gauge", choices=("free", "fixed"), default=None,
                        help="default: fit_nuts's own (psyphy_pp.defaults.DEFAULT_NUTS_GAUGE)")
    parser.add_argument("--target-accept", type=float, default=None,
                        help="default: fit_nuts's own (psyphy_pp.defaults.DEFAULT_TARGET_ACCEPT)")
    parser.add_argument("--seed", type=int, default=0, help="fit_nuts's seed (default 0)")
    parser.add_argument("--chain-method", default="auto",
                        help="fit_nuts's chain_method (default auto: threaded on a multicore CPU)")
    parser.add_argument("--baseline", default=None, metavar="CHAIN_METHOD",
                        help="also run fit_nuts with this chain_method (e.g. sequential) and "
                             "print the wall-time ratio and whether the draws agree")
    parser.add_argument("--observer", default="bench", metavar="bench|sobol:S|grid:S",
                        help="the observer above (default), or coverage.py's observer S")
    args = parser.parse_args(argv)

    import jax
    import numpy as np
    import numpyro

    import psyphy_pp as pp

    load0 = os.getloadavg()
    model, data = pick_observer(args.observer, args.trials_per_ref)
    t0 = time.perf_counter()
    lap = pp.fit_laplace(model, data, progress_bar=False)
    t_laplace = time.perf_counter() - t0
    grad_s = gradient_seconds(lap.model, lap.params, data)
    # The rule NUTS sampled with until 0.1.0 (16 x 8 nodes), timed the same way.
    fine = dataclasses.replace(lap.model, task=pp.Oddity(method="quadrature", num_angles=16,
                                                         num_radial=8))
    grad_fine_s = gradient_seconds(fine, lap.params, data)

    sampler = {} if args.max_tree_depth is None else {"max_tree_depth": args.max_tree_depth}
    if args.mass is not None:
        sampler["dense_mass"] = args.mass == "dense"
    if args.gauge is not None:
        sampler["gauge"] = args.gauge
    if args.target_accept is not None:
        sampler["target_accept_prob"] = args.target_accept
    def run_nuts(chain_method):
        t0 = time.perf_counter()
        post = pp.fit_nuts(model, data, init_params=lap.map_fit.params,
                           num_warmup=args.num_warmup, num_samples=args.num_draws, num_chains=2,
                           seed=args.seed, progress_bar=False, chain_method=chain_method,
                           **sampler)
        return post, time.perf_counter() - t0

    post, t_nuts = run_nuts(args.chain_method)
    if args.baseline is not None:
        base, t_base = run_nuts(args.baseline)
        same = bool(np.array_equal(base.samples["W"], post.samples["W"]))
    steps = post.sample_stats["num_steps"]
    conv = pp.diagnostics.sigma_convergence(post)
    rhat, ess = conv.max_rhat, conv.min_ess_bulk
    iters = 2 * (args.num_warmup + args.num_draws)
    out = dict(
        num_trials=data.num_trials, weights=int(np.prod(model.weights_shape)),
        laplace_seconds=t_laplace, nuts_seconds=t_nuts, gradient_seconds=grad_s,
        gradient_seconds_16x8=grad_fine_s, task=repr(post.model.task),
        mean_steps=float(steps.mean()), max_steps=int(steps.max()),
        mean_tree_depth=float(post.sample_stats["tree_depth"].mean()),
        max_tree_depth=post.settings["max_tree_depth"],
        dense_mass=post.settings["dense_mass"], gauge=post.settings["gauge"], seed=args.seed,
        target_accept=post.settings["target_accept_prob"],
        step_size=[float(s) for s in post.sample_stats["step_size"][:, -1]],
        divergences=post.num_divergences, max_rhat=rhat, min_ess=ess,
        seconds_per_iteration=t_nuts / iters, chain_method=post.settings["chain_method"],
        load=(load0, os.getloadavg()), jax=jax.__version__, numpyro=numpyro.__version__,
    )
    print(f"observer {args.observer}: {out['num_trials']} trials, {out['weights']} weights; "
          f"jax {jax.__version__}, numpyro {numpyro.__version__}; load {load0[0]:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")
    print("| quantity | value |\n| --- | --- |")
    rows = [
        ("fit_laplace, MAP included (s)", f"{t_laplace:.0f}"),
        (f"fit_nuts, 2 chains x ({args.num_warmup} + {args.num_draws}) (s), "
         f"{out['chain_method']} chains", f"{t_nuts:.0f}"),
    ]
    if args.baseline is not None:
        out |= dict(baseline=base.settings["chain_method"], baseline_seconds=t_base,
                    same_draws=same)
        rows += [
            (f"the same, {out['baseline']} chains (s); ratio", f"{t_base:.0f}; "
             f"{t_base / t_nuts:.2f}x"),
            ("the same draws in both runs", "yes" if same else "no"),
        ]
    rows += [
        ("seconds per NUTS iteration", f"{t_nuts / iters:.2f}"),
        ("one value-and-gradient (s), the rule NUTS used", f"{grad_s:.4f}"),
        ("one value-and-gradient (s), 16 x 8 nodes (ratio)",
         f"{grad_fine_s:.4f} ({grad_fine_s / grad_s:.1f}x)"),
        ("leapfrog steps per iteration (post-warmup mean / max)",
         f"{steps.mean():.1f} / {steps.max()}"),
        ("tree depth (mean; cap)", f"{out['mean_tree_depth']:.2f}; {out['max_tree_depth']}"),
        ("mass matrix", "dense" if out["dense_mass"] else "diagonal"),
        ("gauge; seed", f"{out['gauge']}; {args.seed}"),
        ("target acceptance", f"{out['target_accept']:g}"),
        ("adapted step size (per chain)", ", ".join(f"{s:.3g}" for s in out["step_size"])),
        ("gradients x their time / wall time (warmup counted at the post-warmup steps)",
         f"{grad_s * steps.mean() * iters / t_nuts:.0%}"),
        ("divergences", f"{post.num_divergences}"),
        ("Sigma: max r_hat / min ess_bulk", f"{rhat:.4f} / {ess:.0f}"),
        ("ess_bulk per second (min over Sigma)", f"{ess / t_nuts:.3f}"),
        ("target: 2 x 500 draws, r_hat < 1.01, ess > 400, < 600 s", "see above"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    return out


if __name__ == "__main__":
    main()
