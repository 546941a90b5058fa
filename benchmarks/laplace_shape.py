"""Where the Laplace Gaussian is wider than the WPPM posterior, and why.

``docs/coverage.md`` found that ``fit_laplace``'s threshold bands sit too high.
This script measures the shape of the posterior along the Gaussian's own
directions, on the 6,000-trial degree-4 observer of ``benchmarks/bench_nuts.py``
(5 x 5 grid, 240 trials per reference), with ``extra_dims=1`` (P-std) and
``extra_dims=0``:

* ``rise_ratio`` (``fit_laplace``'s own check, at its first 8 draws, and here
  at 64): how much the negative log posterior ``f`` rises at Gaussian draws,
  over the ``|z|^2 / 2`` a Gaussian posterior would give;
* along the three widest eigen-directions of the Laplace covariance, the rise
  of ``f`` at -2, -1, +1 and +2 standard deviations (a Gaussian: 2, 0.5, 0.5, 2);
* where those directions live: the share of their squared length in each
  principal column of ``W`` (columns ordered by their singular value in the
  stacked ``W``; the last is the weakest).

Run ``python -m benchmarks.laplace_shape`` from the repository root (about
3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os


def shape_report(extra_dims: int, num_draws: int = 64) -> dict:
    """Fit the observer with ``extra_dims`` and measure the posterior along the Gaussian."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import psyphy_pp as pp
    from psyphy_pp.laplace import _negative_log_posterior, rise_ratio

    model = pp.WPPM(input_dim=2, basis_degree=4, extra_dims=extra_dims)
    truth = model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(model, truth, grid_size=5, trials_per_ref=240,
                                         key=jax.random.PRNGKey(3))
    data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(4))
    post = pp.fit_laplace(model, data, num_draws=num_draws, progress_bar=False)

    arrays = [jnp.asarray(a) for a in (data.refs, data.comparisons, data.responses)]
    f_jit = jax.jit(lambda w: _negative_log_posterior(w, *arrays, post.model))
    dtype = jnp.result_type(float)

    def f(w):
        return float(f_jit(jnp.asarray(w, dtype)))

    W = np.asarray(post.params["W"], np.float64)
    w = W.reshape(-1)
    lam, V = np.linalg.eigh(post.covariance())
    lam = np.clip(lam, 0.0, None)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (num_draws, post.cov_factor.shape[1])),
                   np.float64)
    f0 = f(w)
    widest = []
    M = W.shape[-1]
    _, sv, vt = np.linalg.svd(W.reshape(-1, M), full_matrices=False)
    for idx in (-1, -2, -3):
        d = V[:, idx] * np.sqrt(lam[idx])
        rises = [f(w + s * d) - f0 for s in (-2.0, -1.0, 1.0, 2.0)]
        energy = (d.reshape(-1, M) @ vt.T) ** 2
        share = energy.sum(axis=0) / energy.sum()
        widest.append(dict(sd=float(np.sqrt(lam[idx])), rises=rises, column_share=share.tolist()))
    return dict(
        extra_dims=extra_dims, weights=int(w.size),
        rise_ratio_8=float(post.settings["rise_ratio"]),
        rise_ratio=rise_ratio(f, w, post.cov_factor, z),
        column_singular_values=sv.tolist(), widest=widest,
    )


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=64, help="draws for the rise ratio")
    args = parser.parse_args(argv)
    load0 = os.getloadavg()[0]
    reports = [shape_report(e, args.draws) for e in (1, 0)]
    print(f"load {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"| extra_dims | weights | rise ratio (8 draws / {args.draws} draws) | singular values "
          "of the columns of W |")
    print("| --- | --- | --- | --- |")
    for r in reports:
        sv = ", ".join(f"{s:.3f}" for s in r["column_singular_values"])
        print(f"| {r['extra_dims']} | {r['weights']} | {r['rise_ratio_8']:.2f} / "
              f"{r['rise_ratio']:.2f} | {sv} |")
    print("\n| extra_dims | direction | sd | rise at -2, -1, +1, +2 sd (Gaussian: 2, 0.5, 0.5, 2) "
          "| share per column (strongest first) |")
    print("| --- | --- | --- | --- | --- |")
    for r in reports:
        for k, d in enumerate(r["widest"], 1):
            rises = ", ".join(f"{x:.1f}" for x in d["rises"])
            share = ", ".join(f"{x:.2f}" for x in d["column_share"])
            print(f"| {r['extra_dims']} | widest {k} | {d['sd']:.3g} | {rises} | {share} |")
    return reports


if __name__ == "__main__":
    main()
