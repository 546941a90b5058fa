"""Acceptance study of the lapse rate (issue 14, item 4).

An observer with a degree-2 field (the truth drawn from the prior, seed 123)
lapses on 5% of the trials. From its simulated trials (default 6,000: a 5 x 5
reference grid, comparisons at Mahalanobis radii 1.5, 2.5, 4 and 7 of the
truth, equally many at each) it fits a MAP without a lapse term
(``Oddity()``) and a MAP that learns the lapse rate
(``Oddity(lapse_rate="learn")``), and compares the thresholds of each with the
truth's (16 directions at the 25 references; median of
``|s_fit - s_true| / s_true`` over the (reference, direction) pairs that
reached the target in both).

The interval of the learnt rate. NUTS on these 6,000 trials ran at about 10 s
per iteration early in warmup on this 2-core machine (trees of 127-511 leapfrog
steps), far over a few minutes, so the interval is a Laplace one on the logit
scale: the negative log posterior of ``(W, u = logit lambda)`` (with the
Jacobian of the logit) is expanded to second order at its mode (float64
Hessian, Newton steps from the MAP, the 3 rotation-gauge directions of ``W``
dropped by their zero curvature), and ``sigmoid(u_hat +- z sd_u)`` is the
interval, which stays inside ``(0, 1)``. One scalar out of 55 parameters and
thousands of trials is where the Gaussian approximation is good; as a check,
the study refits the MAP with ``lambda`` fixed at the mode and at both ends of
the interval and reports the profile deviance of ``u`` at the ends, which
should be near the chi-square quantile (3.84 at 95%) if the Laplace and
profile-likelihood intervals agree.
``--nuts`` adds a NUTS run (1 chain) for its interval too.

Run from the repository root::

    python -m benchmarks.lapse_study                  # 6,000 trials
    python -m benchmarks.lapse_study --num-trials 3000 --nuts

``tests/test_lapse.py::test_acceptance_study`` (a study) runs it and checks
that the interval covers the true rate and that the learnt-lapse thresholds
are the closer ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

#: The radii of the comparisons, in noise standard deviations of the truth.
RADII = (1.5, 2.5, 4.0, 7.0)


def make_data(num_trials: int, lapse_rate: float, seed: int = 123):
    """The truth model, its weights and the simulated trials."""
    import jax

    import psyphy_pp as pp

    truth_model = pp.WPPM(basis_degree=2, diag_term=1e-9)
    truth = truth_model.sample_prior(jax.random.PRNGKey(seed))
    per_ref = max(1, num_trials // (25 * len(RADII)))
    refs, comps = [], []
    for i, radius in enumerate(RADII):
        r, c = pp.designs.grid_design(truth_model, truth, grid_size=5, trials_per_ref=per_ref,
                                      mahalanobis_radius=radius, key=jax.random.PRNGKey(10 + i))
        refs.append(r)
        comps.append(c)
    data = pp.simulate(truth_model, truth, np.concatenate(refs), np.concatenate(comps),
                       key=jax.random.PRNGKey(seed + 1), lapse_rate=lapse_rate)
    return truth_model, truth, data


def threshold_error(model, params, truth_model, truth, refs) -> float:
    """Median relative threshold error against the truth over references x directions."""
    import psyphy_pp as pp

    fit = pp.thresholds(model, params, refs, num_directions=16)
    true = pp.thresholds(truth_model, truth, refs, num_directions=16)
    ok = fit.reached & true.reached
    err = np.abs(fit.distances - true.distances) / true.distances
    return float(np.median(err[ok]))


def laplace_lapse_interval(fit, level: float = 0.95, newton_steps: int = 3) -> dict:
    """Laplace interval of a learnt lapse rate on the logit scale (see the module docstring)."""
    from statistics import NormalDist

    import jax
    import jax.numpy as jnp
    model, data = fit.model, fit.data
    W0 = np.asarray(fit.params["W"], np.float64)
    lam0 = float(fit.params["lapse_rate"])
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)  # a float64 Hessian; restored below
    try:
        refs, comps = jnp.asarray(data.refs, jnp.float64), jnp.asarray(data.comparisons, jnp.float64)
        y = jnp.asarray(data.responses, jnp.float64)

        def neg_log_post(theta):
            u = theta[-1]
            params = {"W": theta[:-1].reshape(W0.shape), "lapse_rate": jax.nn.sigmoid(u)}
            log_jacobian = jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)
            return -(model.log_prior(params) + log_jacobian
                     + jnp.sum(model.log_likelihood(params, refs, comps, y)))

        grad = jax.jit(jax.grad(neg_log_post))
        hess = jax.jit(jax.hessian(neg_log_post))
        theta = np.concatenate([W0.ravel(), [np.log(lam0) - np.log1p(-lam0)]])
        for i in range(newton_steps + 1):
            H = np.asarray(hess(jnp.asarray(theta)), np.float64)
            g = np.asarray(grad(jnp.asarray(theta)), np.float64)
            e, V = np.linalg.eigh(0.5 * (H + H.T))
            keep = e > 1e-6 * e.max()  # drops the rotation gauge of W
            cov = (V[:, keep] / e[keep]) @ V[:, keep].T
            if i < newton_steps:
                theta = theta - cov @ g
    finally:
        jax.config.update("jax_enable_x64", previous)
    sd = float(np.sqrt(cov[-1, -1]))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    u = float(theta[-1])
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    return {"lower": sig(u - z * sd), "mode": sig(u), "upper": sig(u + z * sd), "sd_logit": sd,
            "gauge_dim": int(np.sum(~keep))}


def profile_nlp(fit, lapse_rate: float) -> float:
    """Profile negative log posterior of ``u = logit lambda`` at a fixed rate (W refitted).

    ``N x (MAP loss with lambda fixed) - log Beta(lambda) - log(lambda (1 - lambda))``:
    the density of ``u`` that :func:`laplace_lapse_interval` expands, maximised over ``W``.
    """
    import dataclasses

    import psyphy_pp as pp

    model = fit.model
    fixed = dataclasses.replace(model, task=dataclasses.replace(
        model.task, lapse_rate=float(lapse_rate), lapse_prior=(2.0, 38.0)))
    refit = pp.fit_map(fixed, fit.data, init_params={"W": fit.params["W"]}, progress_bar=False)
    beta = float(model.lapse_prior().log_prob(float(lapse_rate)))
    return (fit.data.num_trials * refit.final_loss - beta
            - float(np.log(lapse_rate) + np.log1p(-lapse_rate)))


def run(num_trials: int = 6000, lapse_rate: float = 0.05, *, level: float = 0.95,
        nuts: bool = False, num_warmup: int = 150, num_samples: int = 150,
        progress_bar: bool = False) -> dict:
    """Run the study; return its numbers (see the module docstring)."""
    import psyphy_pp as pp
    from psyphy_pp.designs import grid_points

    truth_model, truth, data = make_data(num_trials, lapse_rate)
    refs = grid_points(5, 2, -0.8, 0.8)
    out: dict = {"num_trials": data.num_trials, "true_lapse_rate": lapse_rate,
                 "proportion_correct": float(data.responses.mean())}

    t0 = time.perf_counter()
    plain = pp.fit_map(pp.WPPM(basis_degree=2), data, progress_bar=progress_bar)
    out["map_plain_seconds"] = time.perf_counter() - t0
    learn_model = pp.WPPM(basis_degree=2, task=pp.Oddity(lapse_rate="learn"))
    t0 = time.perf_counter()
    learnt = pp.fit_map(learn_model, data, progress_bar=progress_bar)
    out["map_learn_seconds"] = time.perf_counter() - t0
    out["map_lapse_rate"] = float(learnt.params["lapse_rate"])
    out["map_plain_converged"] = plain.converged
    out["map_learn_converged"] = learnt.converged

    t0 = time.perf_counter()
    interval = laplace_lapse_interval(learnt, level)
    out["laplace_seconds"] = time.perf_counter() - t0
    out |= {f"laplace_lapse_{k}": v for k, v in interval.items()}
    out["level"] = level
    out["covers"] = bool(interval["lower"] <= lapse_rate <= interval["upper"])
    t0 = time.perf_counter()
    centre = profile_nlp(learnt, interval["mode"])
    for end in ("lower", "upper"):
        out[f"profile_deviance_at_{end}"] = 2 * (profile_nlp(learnt, interval[end]) - centre)
    out["profile_seconds"] = time.perf_counter() - t0

    out["threshold_error_plain"] = threshold_error(plain.model, plain.params, truth_model,
                                                   truth, refs)
    out["threshold_error_learnt"] = threshold_error(learnt.model, learnt.params,
                                                    truth_model, truth, refs)
    if nuts:
        t0 = time.perf_counter()
        post = pp.fit_nuts(learn_model, data, num_warmup=num_warmup, num_samples=num_samples,
                           num_chains=1, init_params=learnt.params, progress_bar=progress_bar)
        out["nuts_seconds"] = time.perf_counter() - t0
        lam = post.samples["lapse_rate"].reshape(-1)
        lo, med, hi = np.quantile(lam, [(1 - level) / 2, 0.5, (1 + level) / 2])
        out |= {"nuts_lapse_lower": float(lo), "nuts_lapse_median": float(med),
                "nuts_lapse_upper": float(hi), "nuts_divergences": post.num_divergences}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-trials", type=int, default=6000)
    parser.add_argument("--lapse-rate", type=float, default=0.05)
    parser.add_argument("--nuts", action="store_true", help="also run NUTS (1 chain)")
    parser.add_argument("--num-warmup", type=int, default=150)
    parser.add_argument("--num-samples", type=int, default=150)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out = run(args.num_trials, args.lapse_rate, nuts=args.nuts, num_warmup=args.num_warmup,
              num_samples=args.num_samples)
    for k, v in out.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    print(f"total seconds: {time.perf_counter() - t0:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
