"""Run the psyphy 0.0.5 peer on a WPPM problem and collect its step timing.

``run_peer(problem_npz_path)`` makes sure the peer venv exists
(:mod:`peer_venv`), runs ``peer_psyphy_step.py`` inside it in a subprocess with
a timeout, and returns the JSON dict that script prints, or
``{"error": "..."}`` on failure (timeout, killed for lack of memory, crash).

Run as a script, it builds the P-std problem of DESIGN 3 with plain numpy
(seed 123) and prints the peer's result for N = 2,500 and N = 10,000::

    python -m benchmarks.run_peer [--steps 5] [--sizes 100 400]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from benchmarks.peer_venv import ensure_peer_venv  # noqa: E402

STEP_SCRIPT = HERE / "peer_psyphy_step.py"


def run_peer(problem_npz_path, steps: int = 5, timeout_s: float = 1800.0) -> dict:
    """Time psyphy's MAP step on ``problem_npz_path``; return its result dict.

    Never raises for a failing peer: returns ``{"error": message}`` instead.
    """
    try:
        py = ensure_peer_venv()
    except Exception as exc:  # pip/network failure
        return {"error": f"could not create the peer venv: {exc}"}
    cmd = [str(py), str(STEP_SCRIPT), str(problem_npz_path), "--steps", str(steps)]
    # Own session so that a timeout can kill the whole process group.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"timeout after {timeout_s:g} s"}
    except BaseException:  # e.g. KeyboardInterrupt: do not leave the peer running
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if proc.returncode != 0:
        if proc.returncode == -signal.SIGKILL:
            why = "killed by SIGKILL (probably out of memory)"
        else:
            why = f"exit code {proc.returncode}"
        tail = "\n".join(err.strip().splitlines()[-5:])
        if "RESOURCE_EXHAUSTED" in err or "MemoryError" in err:
            why += " (out of memory)"
        return {"error": f"{why}: {tail}"}
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no JSON on stdout: {out[-500:]!r} {err[-500:]!r}"}


# ---------------------------------------------------------------------------
# Standalone P-std problem (DESIGN 3), plain numpy
# ---------------------------------------------------------------------------
P_STD = dict(basis_degree=4, extra_dims=1, variance_scale=4e-3, decay_rate=0.4,
             diag_term=1e-4, num_samples=500, bandwidth=1e-2)


def sigma_field(W: np.ndarray, X: np.ndarray, diag_term: float) -> np.ndarray:
    """Sigma(x) for a batch X (n, 2) of 2D points, W of shape (K+1, K+1, 2, 2+E)."""
    cheb = np.polynomial.chebyshev.chebvander(X, W.shape[0] - 1)  # (n, 2, K+1)
    U = np.einsum("ijde,ni,nj->nde", W, cheb[:, 0], cheb[:, 1])
    return U @ U.transpose(0, 2, 1) + diag_term * np.eye(2)


def oddity_p_correct(r, c, S0, S1, rng, n_mc: int = 2000) -> np.ndarray:
    """Hard-threshold Monte Carlo P(correct) of the oddity task (DESIGN 2)."""
    L0, L1 = np.linalg.cholesky(S0), np.linalg.cholesky(S1)
    Sinv = np.linalg.inv((2 / 3) * S0 + (1 / 3) * S1)
    p = np.empty(len(r))
    for a in range(0, len(r), 500):  # chunks keep memory small
        s = slice(a, a + 500)
        n = len(r[s])
        e = rng.standard_normal((3, n, n_mc, 2))
        z0 = r[s, None] + np.einsum("nij,nmj->nmi", L0[s], e[0])
        z1 = r[s, None] + np.einsum("nij,nmj->nmi", L0[s], e[1])
        z2 = c[s, None] + np.einsum("nij,nmj->nmi", L1[s], e[2])

        def d2(u, s=s):
            return np.einsum("nmi,nij,nmj->nm", u, Sinv[s], u)

        p[s] = np.mean(d2(z0 - z1) < np.minimum(d2(z0 - z2), d2(z1 - z2)), axis=1)
    return p


def make_p_std(trials_per_ref: int = 400, seed: int = 123) -> dict:
    """P-std problem arrays (DESIGN 3) with ``trials_per_ref`` x 25 trials."""
    rng = np.random.default_rng(seed)
    K, E = P_STD["basis_degree"], P_STD["extra_dims"]
    i = np.arange(K + 1)
    var = P_STD["variance_scale"] * P_STD["decay_rate"] ** (i[:, None] + i[None, :])
    W = np.sqrt(var)[:, :, None, None] * rng.standard_normal((K + 1, K + 1, 2, 2 + E))
    g = np.linspace(-1, 1, 5)
    grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    refs = np.repeat(grid, trials_per_ref, axis=0)
    a = rng.uniform(0, 2 * np.pi, len(refs))
    S_r = sigma_field(W, refs, 1e-9)
    step = 2.8 * np.einsum("nij,nj->ni", np.linalg.cholesky(S_r),
                           np.stack([np.cos(a), np.sin(a)], 1))
    comps = np.clip(refs + step, -1, 1)
    p = oddity_p_correct(refs, comps, S_r, sigma_field(W, comps, 1e-9), rng)
    responses = (rng.uniform(size=len(p)) < p).astype(np.int32)
    return dict(W=W, refs=refs, comparisons=comps, responses=responses, **P_STD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400],
                        help="trials per reference (x 25 = N)")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for tpr in args.sizes:
            path = Path(tmp) / f"p_std_{tpr}.npz"
            prob = make_p_std(tpr)
            np.savez(path, **prob)
            res = run_peer(path, steps=args.steps, timeout_s=args.timeout)
            if "p_correct_first" in res:  # sanity check against numpy MC
                p_peer = np.asarray(res.pop("p_correct_first"))
                n = len(p_peer)
                r, c, W = prob["refs"][:n], prob["comparisons"][:n], prob["W"]
                p_np = oddity_p_correct(r, c, sigma_field(W, r, 1e-4),
                                        sigma_field(W, c, 1e-4),
                                        np.random.default_rng(0), n_mc=20000)
                res["p_correct_first_mean_abs_diff_vs_numpy"] = float(
                    np.mean(np.abs(p_peer - p_np)))
            print(f"N = {25 * tpr}: {json.dumps(res)}", flush=True)


if __name__ == "__main__":
    main()
