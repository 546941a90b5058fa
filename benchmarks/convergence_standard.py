"""How often a perfectly stationary sampler meets the NUTS convergence standard.

The standard of :func:`psyphy_pp.diagnostics.sigma_convergence` asks for max r_hat
< 1.01 and min ess_bulk >= 400 over every entry of Sigma at the references (75
entries for 25 references in 2D). Both are estimates, so even chains that sample
the posterior exactly fail it some of the time. This script measures how often:
``P`` independent entries, each ``C`` chains of ``N`` draws of a stationary AR(1)
process with lag-one correlation ``rho`` (rho = 0: independent draws), scored by
ArviZ as the package scores Sigma.

Run ``python -m benchmarks.convergence_standard`` (about a minute;
``--reps``, ``--entries``, ``--draws`` and ``--rho`` change the setting).
"""

from __future__ import annotations

import argparse


def pass_rates(rho: float, *, entries: int = 75, chains: int = 2, draws: int = 500,
               reps: int = 200, seed: int = 0) -> dict:
    """Median ess, and how often max r_hat < 1.01, min ess >= 400, and both."""
    import arviz as az
    import numpy as np

    from psyphy_pp.diagnostics import ESS_MIN, RHAT_MAX

    rng = np.random.default_rng(seed)
    rhat, ess_min, ess_med = [], [], []
    for _ in range(reps):
        e = rng.standard_normal((chains, draws, entries))
        x = np.empty_like(e)
        x[:, 0] = e[:, 0]
        for t in range(1, draws):
            x[:, t] = rho * x[:, t - 1] + np.sqrt(1.0 - rho**2) * e[:, t]
        ds = az.convert_to_dataset({"s": x})
        r = az.rhat(ds)["s"].values
        s = az.ess(ds, method="bulk")["s"].values
        rhat.append(r.max())
        ess_min.append(s.min())
        ess_med.append(np.median(s))
    rhat_ok, ess_ok = np.array(rhat) < RHAT_MAX, np.array(ess_min) >= ESS_MIN
    return dict(rho=rho, median_ess=float(np.median(ess_med)),
                median_min_ess=float(np.median(ess_min)), p_rhat=float(rhat_ok.mean()),
                p_ess=float(ess_ok.mean()), p_both=float((rhat_ok & ess_ok).mean()))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--entries", type=int, default=75)
    parser.add_argument("--draws", type=int, default=500, help="per chain (2 chains)")
    parser.add_argument("--rho", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.35])
    args = parser.parse_args(argv)
    rows = [pass_rates(r, entries=args.entries, draws=args.draws, reps=args.reps)
            for r in args.rho]
    print(f"{args.entries} entries, 2 chains x {args.draws} draws, {args.reps} repetitions")
    print("| lag-one correlation | median ess_bulk | median of min ess_bulk | "
          "P(max r_hat < 1.01) | P(min ess >= 400) | P(both) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['rho']:g} | {r['median_ess']:.0f} | {r['median_min_ess']:.0f} | "
              f"{r['p_rhat']:.2f} | {r['p_ess']:.2f} | {r['p_both']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
