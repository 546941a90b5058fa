"""Time one MAP optimiser step of psyphy 0.0.5 on a given WPPM problem.

Runs INSIDE the peer venv (``benchmarks/.peer-venv``); it imports psyphy, never
psyphy_pp.  Usage::

    .peer-venv/bin/python peer_psyphy_step.py problem.npz [--steps 5]

The .npz holds ``W`` (K+1, K+1, D, D+E) in the layout of DESIGN 1 (first basis
axis goes with x[0]), ``refs`` (N, D), ``comparisons`` (N, D), ``responses``
(N,) in {0, 1} and the scalars ``basis_degree`` (K), ``extra_dims`` (E),
``variance_scale``, ``decay_rate``, ``diag_term``, ``num_samples`` (M) and
``bandwidth``.

How the settings map onto psyphy 0.0.5 (read from its installed source):

* ``Prior(basis_degree=K)`` means T_0..T_K, i.e. K+1 functions per axis (the
  same K as DESIGN 1, not the authors' "degree" K+1).
* ``Prior(variance_scale, decay_rate, extra_embedding_dims=E)`` holds the prior
  W[i, j, :, :] ~ N(0, variance_scale * decay_rate**(i+j)); ``log_prob`` drops
  the normalising constant and adds 1e-10 to each variance.  WPPM's own
  ``variance_scale``/``decay_rate`` arguments are stored but unused.
* ``WPPM(diag_term=...)`` gives Sigma(x) = U U^T + diag_term I, with
  U = einsum("ijde,ij->de", W, T_i(x0) T_j(x1)), i.e. W needs no re-layout.
* ``OddityTask(OddityTaskConfig(num_samples=M, bandwidth=h))`` is the MC
  likelihood (3 (D+E)- and 3 D-dimensional draws per sample, logistic smoothing).
* ``MAPOptimizer`` minimises ``-(1/N) * model.log_posterior_from_data(p, data,
  key=k)`` (reduction="mean") with optax.sgd(lr=5e-5, momentum=0.9), 500 steps
  by default, and a fresh ``jax.random.split`` subkey per step.

The step timed here is a copy of ``MAPOptimizer.fit``'s inner ``step`` (same
objective, same optax optimiser object, data closed over as constants, fresh
key per step).  Prints ONE JSON line on stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import sys
import time

import numpy as np


def numpy_sigma(W: np.ndarray, x: np.ndarray, diag_term: float) -> np.ndarray:
    """Sigma(x) = U U^T + diag_term I with U = sum_i W[i...] T_i1(x1)...T_iD(xD)."""
    K1, D = W.shape[0], x.shape[0]
    cheb = np.polynomial.chebyshev.chebvander(x, K1 - 1)  # (D, K+1): T_k(x_d)
    phi = cheb[0]
    for d in range(1, D):
        phi = np.multiply.outer(phi, cheb[d])
    U = np.tensordot(phi, W, axes=D)  # (D, D+E)
    return U @ U.T + diag_term * np.eye(D)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem", help=".npz problem file")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps")
    parser.add_argument("--n-pcorrect", type=int, default=200)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import optax
    from psyphy.data import TrialData
    from psyphy.inference import MAPOptimizer
    from psyphy.model import WPPM, GaussianNoise, OddityTask, OddityTaskConfig, Prior

    z = np.load(args.problem)
    W = np.asarray(z["W"], dtype=np.float64)
    refs, comps = np.asarray(z["refs"]), np.asarray(z["comparisons"])
    responses = np.asarray(z["responses"]).astype(np.int32)
    K, E = int(z["basis_degree"]), int(z["extra_dims"])
    diag_term = float(z["diag_term"])
    N, D = refs.shape
    assert W.shape == (K + 1,) * D + (D, D + E), W.shape

    # --- psyphy model with the problem's settings -------------------------
    task = OddityTask(
        config=OddityTaskConfig(
            num_samples=int(z["num_samples"]), bandwidth=float(z["bandwidth"])
        )
    )
    prior = Prior(
        input_dim=D,
        basis_degree=K,
        extra_embedding_dims=E,
        variance_scale=float(z["variance_scale"]),
        decay_rate=float(z["decay_rate"]),
    )
    model = WPPM(
        prior=prior,
        likelihood=task,
        noise=GaussianNoise(),
        input_dim=D,
        extra_dims=E,
        variance_scale=float(z["variance_scale"]),
        decay_rate=float(z["decay_rate"]),
        diag_term=diag_term,
    )
    # psyphy's layout is W[i, j, d, e] with phi[i, j] = T_i(x0) T_j(x1): identical.
    params = {"W": jnp.asarray(W, dtype=jnp.float32)}
    assert params["W"].shape == model.init_params(jax.random.PRNGKey(0))["W"].shape

    # --- Sigma(x) agreement against numpy ---------------------------------
    pts = np.random.default_rng(0).uniform(-1, 1, size=(8, D))
    pts = np.vstack([pts, refs[:4]])
    sig_pp = np.stack([np.asarray(model.local_covariance(params, jnp.asarray(p)))
                       for p in pts])
    sig_np = np.stack([numpy_sigma(W, p, diag_term) for p in pts])
    sigma_diff = float(np.max(np.abs(sig_pp - sig_np)))
    sigma_scale = float(np.max(np.abs(sig_np)))
    print(f"Sigma max|diff| {sigma_diff:.3g} (max|Sigma| {sigma_scale:.3g})",
          file=sys.stderr)

    stimuli = jnp.asarray(np.stack([refs, comps], axis=1), dtype=jnp.float32)
    data = TrialData(stimuli=stimuli, responses=jnp.asarray(responses))

    # --- psyphy's own P(correct) for the first trials (fixed keys) -----------
    n_pc = min(args.n_pcorrect, N)
    keys = jax.random.split(jax.random.PRNGKey(0), n_pc)
    p_first = jax.jit(jax.vmap(
        lambda s, k: task.predict(params, s, model, key=k)[0]))(stimuli[:n_pc], keys)
    p_first = np.asarray(p_first).astype(float)

    # --- the MAPOptimizer step (copy of MAPOptimizer.fit's inner step) -------
    opt = MAPOptimizer()  # defaults: sgd(lr=5e-5, momentum=0.9), reduction="mean"
    scale = 1.0 / N if opt.reduction == "mean" else 1.0

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(
            lambda p: -scale * model.log_posterior_from_data(p, data, key=key)
        )(params)
        updates, opt_state = opt.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = opt.optimizer.init(params)
    _, opt_key = jax.random.split(jax.random.PRNGKey(0))  # as fit(seed=None)
    times, cpu_times, losses = [], [], []
    for i in range(args.warmup + args.steps):
        opt_key, subkey = jax.random.split(opt_key)
        t0, c0 = time.perf_counter(), time.process_time()
        params, opt_state, loss = step(params, opt_state, subkey)
        jax.block_until_ready((params, loss))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        losses.append(float(loss))
        print(f"step {i}: {times[-1]:.3f} s loss {losses[-1]:.5f}", file=sys.stderr)

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "seconds_per_step": float(np.median(times[args.warmup:])),
        "min_seconds_per_step": float(np.min(times[args.warmup:])),
        # CPU seconds of this process (all threads) per step
        "cpu_seconds_per_step": float(np.median(cpu_times[args.warmup:])),
        "loadavg_1min_at_end": os.getloadavg()[0],
        "peak_rss_mb": peak_kb / 1024.0,
        "sigma_max_abs_diff": sigma_diff,
        "sigma_max_abs": sigma_scale,
        "p_correct_first": p_first.tolist(),
        "psyphy_version": importlib.metadata.version("psyphy"),
        "jax_version": jax.__version__,
        "n_trials": N,
        "num_samples": int(z["num_samples"]),
        "first_step_seconds": times[0],
        "step_seconds": times[args.warmup:],
        "loss_first": losses[0],
    }))


if __name__ == "__main__":
    main()
