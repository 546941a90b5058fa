r"""Discrimination thresholds of a fitted WPPM: the solver along directions

The threshold of a reference ``r`` in the unit direction ``e`` is the distance
``s`` at which the probability of a correct oddity answer reaches a target,

.. math:: P_{\mathrm{correct}}(r, r + s\,e) = p^\ast, \qquad
    p^\ast = \tfrac23 \text{ by default (halfway between chance } \tfrac13 \text{ and 1)}.

For equal isotropic noise of standard deviation ``sigma`` the answer is about
``2.554 sigma`` in 2D and ``2.717 sigma`` in 3D (DESIGN.md section 1).

Lapses. :math:`P_{\mathrm{correct}}` here is the perceptual model's,
``P_model``, *without* the observer's lapse term
(``Oddity(lapse_rate=...)``): thresholds, ellipses and
:func:`psychometric_curves` describe the perceptual field, and the target is a
value of ``P_model``. (With lapses the observed P(correct) tops out at
``1 - 2 lambda / 3`` and would reach a target only farther out.)
:func:`trial_probabilities`, which predicts responses, includes the lapse.

How it is solved (:func:`thresholds`):

1. *Box.* The comparison must stay inside the model box ``[-1, 1]^D``, so ``s`` is
   searched in ``[0, s_max]`` with ``s_max`` the distance from ``r`` to the box
   edge along ``e``.
2. *Bracketing.* P(correct) is evaluated on a grid of ``num_grid + 1`` distances
   ``s_max (j / num_grid)^2`` (denser near ``r``, where thresholds usually are).
   The first grid interval where P crosses the target brackets the root.
   If P stays below the target on the whole grid, the target is **not reached**
   inside the box: ``reached`` is False and ``distances`` holds ``s_max``, a lower
   bound for the threshold (never NaN).
3. *Monotonicity.* A psychometric function should rise with ``s``; if P falls by
   more than ``monotone_tol`` between two grid points, ``monotone`` is False for
   that direction (the threshold is still the first crossing). Where ``Sigma``
   changes quickly, P(correct) can genuinely dip slightly below chance close to
   the reference (the comparison's noise differs from the reference's), which
   this flag reports too.
4. *Root.* The Illinois variant of regula falsi refines the bracket for a fixed
   number of iterations (jitted, no data-dependent control flow). It keeps the
   root bracketed and converges superlinearly.

All references and directions are solved as one batch of trials; posterior
draws (``params["W"]`` with leading sample axes, e.g. ``(chains, draws)`` from
:func:`~psyphy_pp.fit_nuts`) are solved draw by draw with ``jax.lax.map`` in
jitted chunks, and give credible bands (:meth:`Thresholds.band`).

Root finding needs a deterministic P(correct). The model's task is used when it
is deterministic (the default quadrature in 2D and 3D); a fresh-noise Monte
Carlo task is replaced as :func:`threshold_task` says (the policy of
:func:`psyphy_pp.defaults.task_for`); pass ``task=`` to choose it yourself.

The ellipse (ellipsoid in 3D) through the threshold points of each reference is
fitted by :func:`~psyphy_pp.ellipses.fit_ellipses` (the least-squares conic of
:mod:`psyphy_pp.ellipses`), and the result is a :class:`Thresholds` table
(:mod:`psyphy_pp.threshold_table`). An ellipse is flagged (``ellipses.ok``
False, with ``ellipses.reason``; ``ellipse_ok`` and ``ellipse_reason`` in the
table) where fewer than half of the directions reached the target inside the
box, where the conic is not an ellipse, or where a half-axis is longer than the
box is wide (2 model units). ``Ellipses``, ``fit_ellipses``, ``Thresholds`` and
``DEFAULT_TARGET`` are re-exported here.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_TARGET",
    "Ellipses",
    "Thresholds",
    "fit_ellipses",
    "psychometric_curves",
    "trial_probabilities",
    "threshold_directions",
    "threshold_task",
    "thresholds",
]

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp._jit import jit
from psyphy_pp._progress import progress
from psyphy_pp._typing import ArrayLike, Params
from psyphy_pp._validation import check_positive, check_stimuli
from psyphy_pp.designs import box_distances
from psyphy_pp.ellipses import Ellipses, fit_ellipses
from psyphy_pp.model import SITE_LAPSE, SITE_W, WPPM
from psyphy_pp.oddity import Oddity
from psyphy_pp.threshold_table import DEFAULT_TARGET, Thresholds

#: Trials evaluated at once per draw (bounds the memory of ``lax.map`` batches).
_TRIALS_PER_BATCH = 20_000


def threshold_task(task: Oddity, input_dim: int) -> Oddity:
    """The deterministic likelihood used to solve for thresholds, without lapses.

    The policy lives in :func:`psyphy_pp.defaults.task_for` (purpose
    ``"thresholds"``): a deterministic task (quadrature, or fixed-noise Monte
    Carlo) is returned unchanged; a fresh-noise Monte Carlo task becomes the
    default quadrature when ``input_dim`` is 2 or 3, and fixed-noise Monte Carlo
    with at least 2,000 samples (same bandwidth) otherwise. A lapse term is
    dropped: thresholds describe the perceptual P(correct).

    Args:
        task: The model's likelihood settings.
        input_dim: The model's ``D``.

    Returns:
        A task with ``task.deterministic`` True and no lapse term.

    Examples:
        >>> threshold_task(Oddity(method="mc", lapse_rate=0.05), 2)
        Oddity(method='quadrature', quadrature_rule='semianalytic', num_angles=8, num_radial=4, polar_nodes=(4, 4, 2, 4, 3))
    """
    from psyphy_pp import defaults

    return defaults.task_for("thresholds", task, input_dim).without_lapse()


def threshold_directions(num_directions: int, input_dim: int) -> np.ndarray:
    """Unit directions around a reference, shape ``(num_directions, D)``.

    ``D = 1``: alternately ``+1`` and ``-1``. ``D = 2``: equally spaced angles
    ``2 pi k / K`` starting along the first axis (an even ``K`` gives antipodal
    pairs). ``D >= 3``: a Fibonacci lattice on the sphere (``D = 3``), or
    normalised draws of a seeded Gaussian (``D > 3``).

    Args:
        num_directions: Number of directions ``K``.
        input_dim: Stimulus dimension ``D``.

    Returns:
        Array of unit vectors, float64.

    Raises:
        ValueError: If an argument is not a positive integer.

    Examples:
        >>> threshold_directions(4, 2).round(6).tolist()
        [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-0.0, -1.0]]
    """
    check_positive("num_directions", num_directions, integer=True)
    check_positive("input_dim", input_dim, integer=True)
    k = np.arange(num_directions, dtype=np.float64)
    if input_dim == 1:
        return np.where(k % 2 == 0, 1.0, -1.0)[:, None]
    if input_dim == 2:
        t = 2.0 * np.pi * k / num_directions
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if input_dim == 3:
        z = 1.0 - 2.0 * (k + 0.5) / num_directions
        rho = np.sqrt(1.0 - z**2)
        phi = np.pi * (3.0 - np.sqrt(5.0)) * k
        return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    g = np.random.default_rng(0).standard_normal((num_directions, input_dim))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


@functools.lru_cache(maxsize=16)
def _solver(model: WPPM, num_grid: int, num_iterations: int, batch_size: int):
    """Jitted ``(Ws, refs, dirs, s_max, target, tol) -> (s, reached, monotone)``."""
    grid = (np.arange(num_grid + 1) / num_grid) ** 2

    def solve_one(W, refs, dirs, s_max, target, tol):
        params = {SITE_W: W}
        dtype = W.dtype
        refs, dirs, s_max = refs.astype(dtype), dirs.astype(dtype), s_max.astype(dtype)
        n, d = refs.shape

        def f(s):  # P(correct) - target at distances s of shape (..., N)
            comps = jnp.clip(refs + s[..., None] * dirs, -1.0, 1.0)
            r = jnp.broadcast_to(refs, comps.shape)
            p = model.prob_correct(params, r.reshape(-1, d), comps.reshape(-1, d))
            return p.reshape(s.shape) - target

        s_grid = jnp.asarray(grid, dtype)[:, None] * s_max[None, :]  # (G+1, N)
        fg = f(s_grid)
        above = fg >= 0
        reached = jnp.any(above, axis=0)
        k = jnp.argmax(above, axis=0)
        km = jnp.maximum(k - 1, 0)
        take = lambda a, i: jnp.take_along_axis(a, i[None], axis=0)[0]  # noqa: E731
        a, b = take(s_grid, km), take(s_grid, k)
        fa, fb = take(fg, km), take(fg, k)
        monotone = jnp.all(jnp.diff(fg, axis=0) >= -tol, axis=0)

        def body(_, state):
            a, b, fa, fb, side = state
            denom = fb - fa
            c = jnp.where(denom > 0, b - fb * (b - a) / jnp.where(denom > 0, denom, 1.0),
                          0.5 * (a + b))
            c = jnp.clip(c, a, b)
            fc = f(c)
            left = fc < 0  # c replaces a
            fb = jnp.where(left & (side < 0), 0.5 * fb, fb)
            fa = jnp.where(~left & (side > 0), 0.5 * fa, fa)
            a, fa = jnp.where(left, c, a), jnp.where(left, fc, fa)
            b, fb = jnp.where(left, b, c), jnp.where(left, fb, fc)
            side = jnp.where(left, -1, 1)
            return a, b, fa, fb, side

        if num_iterations:
            state = (a, b, fa, fb, jnp.zeros(n, jnp.int32))
            a, b, fa, fb, _ = jax.lax.fori_loop(0, num_iterations, body, state)
        # The bracket end with the smaller residual (fa, fb may be Illinois-scaled;
        # both ends converge to the root, so either is accurate).
        s = jnp.where(jnp.abs(fa) < jnp.abs(fb), a, b)
        s = jnp.where(k == 0, 0.0, s)
        s = jnp.where(reached, s, s_max)
        return s, reached, monotone

    @jit  # psyphy_pp's CPU compiler options: 400 draws in 2.3 s instead of 7.5 s
    def run(Ws, refs, dirs, s_max, target, tol):
        return jax.lax.map(lambda W: solve_one(W, refs, dirs, s_max, target, tol), Ws,
                           batch_size=batch_size)

    return run


def thresholds(
    model: WPPM,
    params: Params,
    refs: ArrayLike,
    num_directions: int = 16,
    target: float = DEFAULT_TARGET,
    *,
    directions: ArrayLike | None = None,
    task: Oddity | None = None,
    num_grid: int = 12,
    num_iterations: int = 20,
    monotone_tol: float = 1e-3,
    fit_centre: bool = True,
    chunk_size: int = 64,
    progress_bar: bool = False,
) -> Thresholds:
    """Discrimination thresholds at reference points, for MAP params or posterior draws.

    See the module docstring for the method. Draws are solved in jitted chunks
    of ``chunk_size`` (the progress bar counts draws). The thresholds are those
    of the perceptual model: a lapse term of the task (fixed or learnt) is left
    out, and ``target`` is a value of the lapse-free P(correct).

    Args:
        model: The fitted :class:`~psyphy_pp.WPPM`.
        params: ``{"W": W}`` with ``W`` of shape ``model.weights_shape``, or with
            leading sample axes, e.g. ``(chains, draws) + weights_shape``. A
            ``"lapse_rate"`` entry is ignored.
        refs: Reference points in model units, shape ``(R, D)``.
        num_directions: Number of directions ``K`` (ignored if ``directions`` is given).
        target: Target P(correct), in ``(1/3, 1)``.
        directions: Directions to use instead, shape ``(K, D)`` (normalised here).
        task: Deterministic likelihood to use (default: :func:`threshold_task`
            of the model's task); its lapse term, if any, is dropped.
        num_grid: Grid intervals used to bracket the root and check monotonicity.
        num_iterations: Illinois (regula falsi) iterations.
        monotone_tol: Largest fall of P(correct) between grid points still
            counted as monotone.
        fit_centre: Let the ellipse centre differ from the reference.
        chunk_size: Draws per jitted call.
        progress_bar: Show a progress bar over the draws.

    Returns:
        :class:`Thresholds` in model units (see :meth:`Thresholds.to_user`).

    Raises:
        ValueError: For invalid arguments (shapes, target, a task that is not
            deterministic), before anything is compiled.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1, diag_term=1e-9, task=pp.Oddity(method="quadrature"))
        >>> W = np.zeros(model.weights_shape)
        >>> W[0, 0, :, :2] = 0.05 * np.eye(2)     # constant Sigma = 0.05^2 I
        >>> th = pp.thresholds(model, {"W": W}, [[0.0, 0.0]], num_directions=8)
        >>> th.distances.shape, bool(th.reached.all())
        ((1, 8), True)
        >>> round(float(th.distances.mean() / 0.05), 2)
        2.55
    """
    if not isinstance(model, WPPM):
        raise ValueError(f"model must be a psyphy_pp.WPPM, got {type(model).__name__}")
    refs = check_stimuli("refs", refs, model.input_dim)
    if not (isinstance(target, (int, float)) and 1.0 / 3.0 < float(target) < 1.0):
        raise ValueError(f"target must be a probability in (1/3, 1), got {target!r}")
    check_positive("num_grid", num_grid, integer=True)
    if not isinstance(num_iterations, int) or num_iterations < 0:
        raise ValueError(f"num_iterations must be a non-negative integer, got {num_iterations!r}")
    if not (isinstance(monotone_tol, (int, float)) and monotone_tol >= 0):
        raise ValueError(f"monotone_tol must be a number >= 0, got {monotone_tol!r}")
    check_positive("chunk_size", chunk_size, integer=True)
    if directions is None:
        dirs = threshold_directions(num_directions, model.input_dim)
    else:
        dirs = np.asarray(directions, np.float64)
        if dirs.ndim != 2 or dirs.shape[1] != model.input_dim or dirs.shape[0] == 0:
            raise ValueError(
                f"directions must have shape (K, {model.input_dim}), got {dirs.shape}"
            )
        norms = np.linalg.norm(dirs, axis=1)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise ValueError("directions must be finite and non-zero")
        dirs = dirs / norms[:, None]
    if task is None:
        task = threshold_task(model.task, model.input_dim)
    elif not isinstance(task, Oddity) or not task.resolve(model.input_dim).deterministic:
        raise ValueError(
            "task must be a deterministic psyphy_pp.Oddity (method='quadrature', or "
            f"fixed_noise=True), got {task!r}"
        )
    solver_model = dataclasses.replace(model, task=task.without_lapse())
    W, sample_shape = model.weight_samples(params)
    if not np.all(np.isfinite(W)):
        raise ValueError("params['W'] must be finite")

    r, k = refs.shape[0], dirs.shape[0]
    s_max = box_distances(refs, dirs)
    flat_refs = np.repeat(refs, k, axis=0)
    flat_dirs = np.tile(dirs, (r, 1))
    n_trials = r * k * (num_grid + 1)
    batch = max(1, min(chunk_size, _TRIALS_PER_BATCH // n_trials))
    run = _solver(solver_model, num_grid, num_iterations, batch)

    dtype = jnp.result_type(float)
    Ws = W.reshape((-1,) + model.weights_shape).astype(dtype)
    n = Ws.shape[0]
    size = min(chunk_size, n)
    out_s, out_r, out_m = [], [], []
    with progress(n, "thresholds", progress_bar and n > 1) as bar:
        for start in range(0, n, size):
            chunk = Ws[start:start + size]
            m = chunk.shape[0]
            if m < size:  # pad to one compiled shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - m, axis=0)])
            s, re, mo = run(jnp.asarray(chunk), flat_refs, flat_dirs, s_max.reshape(-1),
                            float(target), float(monotone_tol))
            out_s.append(np.asarray(s, np.float64)[:m])
            out_r.append(np.asarray(re)[:m])
            out_m.append(np.asarray(mo)[:m])
            bar.update(m)
    shape = sample_shape + (r, k)
    dist = np.concatenate(out_s).reshape(shape)
    reached = np.concatenate(out_r).reshape(shape)
    monotone = np.concatenate(out_m).reshape(shape)
    dist = np.clip(dist, 0.0, s_max)
    pts = refs[:, None, :] + dist[..., None] * dirs
    ell = fit_ellipses(refs, pts, mask=reached, fit_centre=fit_centre)
    return Thresholds(
        refs=refs, directions=dirs, distances=dist,
        reached=reached, monotone=monotone, max_distances=s_max, ellipses=ell,
        target=float(target),
    )


def psychometric_curves(
    model: WPPM,
    params: Params,
    refs: ArrayLike,
    directions: ArrayLike,
    distances: ArrayLike,
    *,
    task: Oddity | None = None,
) -> np.ndarray:
    """P(correct) along rays from references: the psychometric functions.

    Comparisons ``r + s e`` are clipped to the box ``[-1, 1]^D``. Like
    :func:`thresholds`, the curves are the perceptual model's, without the
    lapse term, so that they cross the target at the thresholds.

    Args:
        model: The model.
        params: ``{"W": W}``, optionally with leading sample axes.
        refs: References in model units, shape ``(R, D)``.
        directions: Directions, shape ``(K, D)`` (normalised here).
        distances: Distances ``s``, shape ``(G,)``.
        task: Deterministic likelihood (default :func:`threshold_task`); its
            lapse term, if any, is dropped.

    Returns:
        P(correct), shape ``(*S, R, K, G)``.

    Examples:
        >>> import psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> W = np.zeros(model.weights_shape); W[0, 0, :, :2] = 0.05 * np.eye(2)
        >>> p = psychometric_curves(model, {"W": W}, [[0.0, 0.0]], [[1.0, 0.0]], [0.0, 0.5])
        >>> p.shape, bool(abs(p[0, 0, 0] - 1 / 3) < 1e-3), bool(p[0, 0, 1] > 0.99)
        ((1, 1, 2), True, True)
    """
    refs = check_stimuli("refs", refs, model.input_dim)
    dirs = np.asarray(directions, np.float64)
    if dirs.ndim != 2 or dirs.shape[1] != model.input_dim:
        raise ValueError(f"directions must have shape (K, {model.input_dim}), got {dirs.shape}")
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    s = np.asarray(distances, np.float64).reshape(-1)
    task = threshold_task(model.task, model.input_dim) if task is None else task
    if not task.resolve(model.input_dim).deterministic:
        raise ValueError(f"task must be deterministic, got {task!r}")
    m = dataclasses.replace(model, task=task.without_lapse())
    W, sample_shape = model.weight_samples(params)
    comps = np.clip(refs[:, None, None, :] + s[:, None] * dirs[:, None, :], -1.0, 1.0)
    rr = np.broadcast_to(refs[:, None, None, :], comps.shape).reshape(-1, model.input_dim)
    cc = comps.reshape(-1, model.input_dim)
    Ws = W.reshape((-1,) + model.weights_shape).astype(jnp.result_type(float))
    batch = max(1, _TRIALS_PER_BATCH // rr.shape[0])
    out = np.asarray(_curve_fn(m, batch)(jnp.asarray(Ws), None, rr, cc), np.float64)
    return out.reshape(sample_shape + comps.shape[:-1])


def trial_probabilities(model: WPPM, params: Params, refs: ArrayLike, comparisons: ArrayLike,
                        *, task: Oddity | None = None) -> np.ndarray:
    """P(correct) of given trials under each draw of ``W``: the predicted responses.

    Unlike :func:`thresholds`, this includes the lapse term of the model's
    task: a fixed rate, or the learnt one of each draw (``params["lapse_rate"]``).

    Args:
        model: The model.
        params: ``{"W": W}``, optionally with leading sample axes; with
            ``"lapse_rate"`` (the same leading axes) when the task learns it.
        refs: References in model units, shape ``(N, D)``.
        comparisons: Comparisons, shape ``(N, D)``.
        task: Deterministic likelihood (default: :func:`threshold_task` of the
            model's task, with the model's lapse term). The lapse term is
            always the model's.

    Returns:
        P(correct) in float64, shape ``(*S, N)``.
    """
    rr = check_stimuli("refs", refs, model.input_dim)
    cc = check_stimuli("comparisons", comparisons, model.input_dim)
    if rr.shape != cc.shape:
        raise ValueError(f"comparisons must have the shape of refs {rr.shape}, got {cc.shape}")
    task = threshold_task(model.task, model.input_dim) if task is None else task
    if not task.resolve(model.input_dim).deterministic:
        raise ValueError(f"task must be deterministic, got {task!r}")
    m = dataclasses.replace(model, task=task.with_lapse_of(model.task))
    W, sample_shape = model.weight_samples(params)
    dtype = jnp.result_type(float)
    Ws = W.reshape((-1,) + model.weights_shape).astype(dtype)
    lams = None
    if model.task.learns_lapse:
        lam, lapse_shape = model.lapse_samples(params)
        if lapse_shape != sample_shape:
            raise ValueError(f"params[{SITE_LAPSE!r}] must have the sample shape of "
                             f"params['W'], {sample_shape}, got {lapse_shape}")
        lams = jnp.asarray(lam, dtype).reshape(-1)
    batch = max(1, _TRIALS_PER_BATCH // max(1, rr.shape[0]))
    out = np.asarray(_curve_fn(m, batch)(jnp.asarray(Ws), lams, rr, cc), np.float64)
    return out.reshape(sample_shape + rr.shape[:1])


@functools.lru_cache(maxsize=16)
def _curve_fn(model: WPPM, batch_size: int):
    """Jitted ``(Ws, lapse rates or None, refs, comps) -> P(correct)`` over draws, ``(S, N)``."""

    @jit
    def run(Ws, lams, refs, comps):
        def one(draw):
            W, lam = draw
            params = {SITE_W: W} if lam is None else {SITE_W: W, SITE_LAPSE: lam}
            return model.prob_correct(params, refs, comps)

        return jax.lax.map(one, (Ws, lams), batch_size=batch_size)

    return run
