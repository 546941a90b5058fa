"""Where to put the next trials: a space-filling start, then the WPPM's own posterior.

An adaptive experiment (:class:`~psyphy_pp.Experiment`) places its trials in
two phases.

1. **A space-filling start** (:func:`start_trials`) before there is a fit:
   references from a scrambled, seeded Sobol sequence (``"sobol"``) or cycling
   through a grid (``"grid"``), each with one comparison in a Sobol direction at
   a Sobol distance between :data:`START_RADII` noise standard deviations of
   the *prior*'s typical observer (:func:`prior_noise_sd`).
2. **Posterior-driven placement** on random candidate trials
   (:func:`candidate_trials`), each comparison at a random Mahalanobis distance
   (:data:`CANDIDATE_RADII`) of the current MAP's ``Sigma(ref)``, scored with a
   Laplace posterior at the MAP in one of two ways:

   * ``"thresholds"`` (:func:`readout_sensitivities`, :func:`threshold_batch`):
     the expected drop of the summed relative variance of the thresholds at a
     readout grid (:data:`READOUT_GRID`), from the linearised thresholds and a
     rank-one update of the covariance per trial. A batch is chosen greedily,
     each pick under the covariance the earlier picks leave.
   * ``"information"`` (:func:`information_gain`, :func:`select_batch`): the
     expected information gain of the response about the weights on posterior
     draws (BALD: ``H[E p] - E H[p]``, ``H`` the binary entropy); since the
     response depends on the weights only through ``Sigma`` at the two stimuli,
     this is the information gain about ``Sigma``. The best candidates are taken
     greedily, keeping their references apart.

Every comparison lies inside ``[-1, 1]^D``: an offset that would leave the box
is turned round when the opposite direction has more room, and shortened to
the edge (:data:`EDGE_MARGIN` inside it) when neither has enough. Nothing is
clipped coordinate by coordinate, which would change the direction.
"""

from __future__ import annotations

__all__ = [
    "START_DESIGNS",
    "START_RADII",
    "CANDIDATE_RADII",
    "EDGE_MARGIN",
    "sobol_points",
    "prior_noise_sd",
    "place_comparisons",
    "start_trials",
    "candidate_trials",
    "information_gain",
    "select_batch",
    "READOUT_GRID",
    "READOUT_EXTENT",
    "READOUT_DIRECTIONS",
    "readout_sensitivities",
    "threshold_batch",
]

import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri
from scipy.stats import qmc

from psyphy_pp import _linalg
from psyphy_pp._masked_map import logit_jacobian, logit_slopes, prior_std, structure
from psyphy_pp._typing import Array, Params, PRNGKey
from psyphy_pp._validation import check_choice, check_positive
from psyphy_pp.basis import tensor_basis
from psyphy_pp.designs import edge_distance, grid_points
from psyphy_pp.field import covariance, prior_variances
from psyphy_pp.model import SITE_W, WPPM
from psyphy_pp.thresholds import threshold_directions, thresholds

#: The space-filling start designs.
START_DESIGNS = ("sobol", "grid")

#: Range of start comparison distances, in the prior's typical noise standard deviations.
START_RADII = (0.5, 4.0)

#: Range of candidate comparison distances, in Mahalanobis units of the current MAP.
CANDIDATE_RADII = (0.25, 4.0)

#: A shortened comparison stops this fraction of the way to the edge of the box.
EDGE_MARGIN = 0.98

#: Grid points per axis of the ``"grid"`` start design, inside ``[-GRID_EXTENT, GRID_EXTENT]``.
GRID_SIZE = 5
GRID_EXTENT = 0.8

#: The readout of the ``"thresholds"`` acquisition: thresholds at a ``5^D`` grid of
#: references on ``[-0.8, 0.8]^D`` (the CLI's default readout), 16 directions each.
READOUT_GRID = 5
READOUT_EXTENT = 0.8
READOUT_DIRECTIONS = 16


def sobol_points(n: int, dim: int, *, seed: int, skip: int = 0) -> np.ndarray:
    """Points ``skip .. skip + n - 1`` of a scrambled Sobol sequence in ``[0, 1)^dim``.

    The sequence is fixed by ``seed``, so consecutive calls with growing ``skip``
    continue one sequence.

    Examples:
        >>> a = sobol_points(4, 2, seed=0)
        >>> b = sobol_points(2, 2, seed=0, skip=2)
        >>> bool(np.all(a[2:] == b))
        True
    """
    check_positive("n", n, integer=True)
    check_positive("dim", dim, integer=True)
    engine = qmc.Sobol(dim, scramble=True, seed=np.random.default_rng(seed))
    if skip:
        engine.fast_forward(skip)
    with warnings.catch_warnings():  # balance needs powers of two; a stream of batches is not
        warnings.filterwarnings("ignore", "The balance properties", UserWarning)
        return engine.random(n)


def prior_noise_sd(model: WPPM, x: np.ndarray) -> np.ndarray:
    """The prior's typical noise standard deviation at stimuli ``x``, shape ``x.shape[:-1]``.

    ``sqrt(tr E[Sigma(x)] / D)`` with the expectation over the Wishart-process
    prior: ``E[Sigma(x)] = ((D + E) sum_b phi_b(x)^2 v_b + diag_term) I`` for
    the basis functions ``phi_b`` and prior variances ``v_b``.
    """
    phi = np.asarray(tensor_basis(jnp.asarray(x), model.basis_degree), np.float64)
    v = prior_variances(model.input_dim, model.basis_degree, model.variance_scale,
                        model.decay_rate).reshape(-1)
    cols = model.input_dim + model.extra_dims
    return np.sqrt(cols * (phi**2 @ v) + model.diag_term)


def place_comparisons(refs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``refs + offsets``, kept inside ``[-1, 1]^D`` (module docstring).

    Args:
        refs: References inside the box, shape ``(N, D)``.
        offsets: Intended comparison offsets, shape ``(N, D)``.

    Returns:
        Comparisons inside the box, shape ``(N, D)``: each offset as given when
        it fits, else turned round if the opposite direction has more room, and
        shortened to :data:`EDGE_MARGIN` of the room when it still does not fit.

    Examples:
        >>> place_comparisons(np.array([[0.9, 0.0]]), np.array([[0.5, 0.0]])).tolist()
        [[0.4, 0.0]]
    """
    refs = np.asarray(refs, np.float64)
    offsets = np.asarray(offsets, np.float64)
    length = np.linalg.norm(offsets, axis=-1)
    dirs = offsets / np.where(length > 0, length, 1.0)[:, None]
    ahead, behind = edge_distance(refs, dirs), edge_distance(refs, -dirs)
    flip = (ahead < length) & (behind > ahead)
    dirs = np.where(flip[:, None], -dirs, dirs)
    room = np.where(flip, behind, ahead)
    length = np.where(length <= room, length, EDGE_MARGIN * room)
    return np.clip(refs + length[:, None] * dirs, -1.0, 1.0)  # the clip only removes rounding


def _unit_directions(u: np.ndarray) -> np.ndarray:
    """Uniform unit directions in ``D`` dimensions from ``(N, D)`` uniforms (normal quantiles)."""
    g = ndtri(np.clip(u, 1e-12, 1 - 1e-12))
    return g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-300)


def start_trials(model: WPPM, n: int, *, seed: int, skip: int = 0,
                 design: str = "sobol") -> tuple[np.ndarray, np.ndarray]:
    """Trials ``skip .. skip + n - 1`` of the space-filling start (module docstring).

    Args:
        model: The model; its prior sets the comparison distances.
        n: Number of trials.
        seed: Fixes the Sobol sequence (and the grid's order).
        skip: Trials of this design already placed.
        design: ``"sobol"`` (references from the Sobol sequence) or ``"grid"``
            (references cycle through a ``5^D`` grid on ``[-0.8, 0.8]^D``, in an
            order shuffled by ``seed``).

    Returns:
        ``(refs, comparisons)``, each ``(n, D)``, inside ``[-1, 1]^D``.

    Examples:
        >>> refs, comps = start_trials(WPPM(basis_degree=2), 8, seed=0)
        >>> refs.shape, bool(np.all(np.abs(comps) <= 1))
        ((8, 2), True)
    """
    check_choice("design", design, START_DESIGNS)
    D = model.input_dim
    u = sobol_points(n, 2 * D + 1, seed=seed, skip=skip)
    if design == "sobol":
        refs = 2.0 * u[:, :D] - 1.0
    else:
        grid = grid_points(GRID_SIZE, D, -GRID_EXTENT, GRID_EXTENT)
        order = np.random.default_rng(seed).permutation(len(grid))
        refs = grid[order[(skip + np.arange(n)) % len(grid)]]
    lo, hi = START_RADII
    radius = (lo + (hi - lo) * u[:, 2 * D]) * prior_noise_sd(model, refs)
    return refs, place_comparisons(refs, radius[:, None] * _unit_directions(u[:, D:2 * D]))


def candidate_trials(model: WPPM, params: Params, num: int, key: PRNGKey
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Random candidate trials around the current fit (module docstring).

    References are uniform in the box; each comparison lies in a uniform
    direction at a Mahalanobis distance uniform in :data:`CANDIDATE_RADII` of
    ``Sigma(ref)`` under ``params``.

    Returns:
        ``(refs, comparisons)``, each ``(num, D)``, inside ``[-1, 1]^D``.
    """
    check_positive("num", num, integer=True)
    D = model.input_dim
    k_ref, k_dir, k_rad = jax.random.split(key, 3)
    refs = np.asarray(jax.random.uniform(k_ref, (num, D), minval=-1.0, maxval=1.0), np.float64)
    e = np.asarray(jax.random.normal(k_dir, (num, D)), np.float64)
    e /= np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-300)
    lo, hi = CANDIDATE_RADII
    r = lo + (hi - lo) * np.asarray(jax.random.uniform(k_rad, (num,)), np.float64)
    W = model.weights(params)
    L = np.asarray(_field_cholesky(W, jnp.asarray(refs, W.dtype), model.diag_term), np.float64)
    return refs, place_comparisons(refs, r[:, None] * np.einsum("nij,nj->ni", L, e))


@partial(jax.jit, static_argnums=2)
def _field_cholesky(W: Array, x: Array, diag_term: float) -> Array:
    return _linalg.cholesky(covariance(W, x, diag_term))


def _binary_entropy(p: Array) -> Array:
    p = jnp.clip(p, 1e-12, 1 - 1e-12)
    return -(p * jnp.log(p) + (1 - p) * jnp.log1p(-p))


def information_gain(p: Array) -> Array:
    """Expected information gain (nats) of each trial's response about the weights.

    Args:
        p: P(correct) of each candidate under each posterior draw, shape ``(S, C)``.

    Returns:
        ``H[mean_s p] - mean_s H[p_s]``, shape ``(C,)``: zero when the draws
        agree, at most ``log 2``.

    Examples:
        >>> [round(float(g), 3) for g in information_gain(jnp.array([[0.5, 0.9], [0.5, 0.1]]))]
        [0.0, 0.368]
    """
    return _binary_entropy(jnp.mean(p, axis=0)) - jnp.mean(_binary_entropy(p), axis=0)


def select_batch(refs: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` high-scoring candidates whose references lie apart.

    Greedy: the best remaining candidate is taken unless its reference lies
    within ``0.5 * (2^D / n)^(1/D)`` of one already taken (half the spacing of
    ``n`` points spread over the box); if too few remain, the best of the rest
    fill the batch.

    Examples:
        >>> refs = np.array([[0.0, 0.0], [0.01, 0.0], [0.9, 0.9]])
        >>> select_batch(refs, np.array([3.0, 2.0, 1.0]), 2).tolist()
        [0, 2]
    """
    D = refs.shape[1]
    order = np.argsort(-np.asarray(scores), kind="stable")
    if n >= len(order):
        return order
    spacing = 0.5 * (2.0**D / n) ** (1.0 / D)
    chosen: list[int] = []
    for i in order:
        if all(math.dist(refs[i], refs[j]) >= spacing for j in chosen):
            chosen.append(int(i))
            if len(chosen) == n:
                return np.asarray(chosen)
    rest = [int(i) for i in order if i not in set(chosen)]
    return np.asarray(chosen + rest[: n - len(chosen)])


def readout_sensitivities(model: WPPM, W: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``A = C g_k / t_k`` for the readout thresholds ``t_k`` of the MAP ``W``.

    ``g_k = d t_k / d Z`` is the gradient of a threshold in whitened weights
    ``Z = W / std``, by the implicit function theorem on ``logit(r_k + t u_k) =
    logit(2/3)``: ``g_k = -(d logit / d Z) / (d logit / d t)``. ``C = L L^T`` is
    the Laplace covariance of ``Z`` (``L = factor``). A trial with logit Jacobian
    ``j`` and Fisher weight ``w`` then lowers the summed relative variance
    ``sum_k Var[t_k] / t_k^2`` by ``w |A^T j|^2 / (1 + w j^T C j)``
    (:func:`threshold_batch`).

    Args:
        model: The model.
        W: The MAP weights.
        factor: ``L`` with ``C = L L^T``, shape ``(n, m)``.

    Returns:
        ``A``, shape ``(n, K)``: one column per readout threshold the MAP reaches
        inside the box with a rising psychometric function (the others carry no
        gradient and are left out).
    """
    D = model.input_dim
    refs = grid_points(READOUT_GRID, D, -READOUT_EXTENT, READOUT_EXTENT)
    dirs = threshold_directions(READOUT_DIRECTIONS, D)
    th = thresholds(model, {SITE_W: jnp.asarray(W)}, refs, directions=dirs)
    t = np.asarray(th.distances, np.float64).reshape(-1)
    reached = np.asarray(th.reached, bool).reshape(-1)
    r = np.repeat(refs, len(dirs), axis=0)
    u = np.tile(dirs, (len(refs), 1))
    keep = reached & (t > 0)
    if not keep.any():
        return np.zeros((W.size, 0))
    r, u, t = r[keep], u[keep], t[keep]
    dtype = jnp.result_type(float)
    struct, Wj = structure(model), jnp.asarray(W, dtype)
    comps = np.clip(r + t[:, None] * u, -1.0, 1.0)
    J, _ = logit_jacobian(struct, Wj, prior_std(model, dtype), r, comps, np.ones(len(r), bool))
    slope = logit_slopes(struct, Wj, r, comps, u)
    rising = slope > 1e-6
    G = -J[:, rising] / slope[rising]
    return factor @ (factor.T @ (G / t[rising]))


def threshold_batch(J: np.ndarray, fisher: np.ndarray, factor: np.ndarray, A: np.ndarray,
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedily choose ``n`` candidates that most lower the readout thresholds' variance.

    Each pick maximises ``w |A^T j|^2 / (1 + w j^T C j)`` (the drop of
    ``sum_k Var[t_k] / t_k^2``, :func:`readout_sensitivities`) under the
    covariance left by the picks before it (a rank-one update per pick), so
    that a batch does not ask the same question twice.

    Args:
        J: Logit Jacobians of the candidates, shape ``(n_w, C)``.
        fisher: Their Fisher weights ``p (1 - p)``, shape ``(C,)``.
        factor: ``L``, shape ``(n_w, m)``.
        A: From :func:`readout_sensitivities`, shape ``(n_w, K)``.
        n: How many to choose (at most ``C``).

    Returns:
        ``(indices, gains)``: the chosen candidates in order, and the drop each
        gave when it was chosen.
    """
    JL = J.T @ factor  # (C, m): rows j_c^T L of the current covariance factor
    JA = J.T @ A  # (C, K): j_c^T A
    w = np.asarray(fisher, np.float64)
    chosen: list[int] = []
    gains: list[float] = []
    for _ in range(min(n, len(w))):
        q = np.sum(JL**2, axis=1)
        score = w * np.sum(JA**2, axis=1) / (1.0 + w * q)
        score[chosen] = -np.inf
        c = int(np.argmax(score))
        chosen.append(c)
        gains.append(float(score[c]))
        v = JL[c].copy()
        vv = float(v @ v)
        b = w[c] / (1.0 + w[c] * vv)
        u = JL @ v  # j_d^T C j_c for every d
        JA -= b * np.outer(u, JA[c])
        if vv > 0:  # L' = L (I - alpha v v^T) gives C' = C - b (C j)(C j)^T
            alpha = (1.0 - math.sqrt(max(0.0, 1.0 - b * vv))) / vv
            JL -= alpha * np.outer(u, v)
    return np.asarray(chosen, np.int64), np.asarray(gains)
