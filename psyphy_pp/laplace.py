"""Laplace approximation of the WPPM posterior: a Gaussian at the MAP.

:func:`fit_laplace` has the call shape of :func:`~psyphy_pp.fit_nuts` and
returns draws of ``W`` in the same layout, ``(chains, draws, ...)`` (one chain
of independent draws), so that :func:`~psyphy_pp.to_arviz`,
:func:`~psyphy_pp.thresholds` and its ``band()``, the plots, ``save_fit`` and
the CLI (``psyphy-pp fit --method laplace``) treat it like a NUTS posterior.

The approximation. With ``f(W) = -log p(W) - sum_n log p(y_n | W)`` the
(unscaled) negative log posterior, ``W_hat`` its minimiser and ``H`` its
Hessian there, the posterior is approximated by ``N(W_hat, H^-1)``. ``H`` is
the exact Hessian of ``f`` (forward-over-reverse automatic differentiation, one
Hessian-vector product per weight, in batches), on the same deterministic
likelihood that :func:`~psyphy_pp.fit_nuts` samples
(:func:`~psyphy_pp.nuts.deterministic_task`). The MAP comes from
:func:`~psyphy_pp.fit_map` (or ``map_fit=``) and is then refined by Newton steps
on that likelihood, so that the Gaussian is centred where the gradient of ``f``
vanishes.

The rotation gauge. ``Sigma(x) = U(x) U(x)^T`` is unchanged when every
``W[i1..iD]`` is multiplied on the right by one orthogonal ``(D+E) x (D+E)``
matrix ``R``, and the prior is unchanged too, so ``f`` is constant along the
orbit ``{W R}``. At the MAP, ``H`` is therefore singular along the
``(D+E)(D+E-1)/2`` tangent directions ``W A`` of that orbit (``A``
antisymmetric), and ``H^-1`` does not exist. :func:`fit_laplace` takes the
inverse on the orthogonal complement of these directions and gives the
Gaussian zero width along them (:func:`gauge_directions`). Moving along a
tangent direction changes ``Sigma`` only at second order, so any other choice
of width there (or any other point of the orbit as centre) changes the
first-order covariance of ``Sigma``, and the threshold bands, not at all:
``tests/test_laplace.py`` checks this for a rotated MAP and for a finite width
along the gauge.

What it costs and how good it is. One Hessian is ``n`` Hessian-vector products
(``n = W.size``: 54 for P-small, 150 for a degree-4 2D model), in batches of
:data:`HVP_BATCH`. On a 6,000-trial degree-4 observer on 2 CPU cores,
:func:`fit_laplace` took 41 s in all, the MAP, compilation and two Hessians (at
the MAP, and at the centre after the Newton steps) included.

Exactness. The semi-analytic quadrature rule (the 2D default) places its
radial nodes by the trial's parameters and holds that placement fixed under
differentiation, for its gradient as for its Hessian: both are derivatives
under the integral sign, which differ from finite differences of the computed
P(correct) by the quadrature error (on P-small, 1.7e-5 relative on the largest
Hessian entry). With the Gauss-Hermite rule the Hessian matches finite
differences to 1e-9. Fixed-noise Monte Carlo (other dimensions) gives a
non-finite Hessian: :func:`fit_laplace` refuses it before fitting.

Quality. The Gaussian is exact only when the posterior is. Rotations of the
columns of ``U(x)`` that vary slowly with ``x`` leave ``Sigma`` unchanged to
first order, so ``H`` barely sees them and the Gaussian is too wide along them,
where the posterior rises quartically; each draw then adds a positive
semidefinite term to ``Sigma`` (``python -m benchmarks.laplace_shape``).
:func:`fit_laplace` reports how much faster the negative log posterior rises at
its first draws than the Gaussian predicts (``settings["rise_ratio"]``, 1 for a
Gaussian posterior, :func:`rise_ratio`) and the largest gradient left at the
centre, in posterior standard deviations; ``docs/coverage.md`` gives how often
its threshold bands cover the truth on simulated observers
(``python -m benchmarks.coverage``).
"""

from __future__ import annotations

__all__ = ["LaplaceResult", "fit_laplace", "gauge_directions", "hessian", "off_gauge_eigh",
           "rise_ratio"]

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp._jit import jit
from psyphy_pp._progress import progress
from psyphy_pp._typing import Params
from psyphy_pp._validation import check_bool, check_nonnegative, check_positive
from psyphy_pp.data import TrialData
from psyphy_pp.inference import MapResult, check_model_and_data, fit_map, is_hierarchical
from psyphy_pp.model import SITE_W, WPPM
from psyphy_pp.nuts import with_deterministic_task
from psyphy_pp.oddity import Oddity
from psyphy_pp.results import PosteriorDraws

logger = logging.getLogger(__name__)

#: Hessian-vector products evaluated together (bounds the memory of one batch).
HVP_BATCH = 16

#: Newton steps at most when refining the MAP on the Laplace likelihood.
MAX_NEWTON_STEPS = 8

#: The refinement stops when the Newton decrement ``g^T H^-1 g`` is below this (nats).
NEWTON_TOL = 1e-8

#: Draws at which :func:`fit_laplace` compares the rise of the negative log
#: posterior with the rise the Gaussian predicts (``settings["rise_ratio"]``).
CHECK_DRAWS = 8


@dataclass(frozen=True, eq=False)
class LaplaceResult(PosteriorDraws):
    """The outcome of :func:`fit_laplace`: independent draws of a Gaussian at the MAP.

    Attributes:
        samples: ``{"W": array of shape (1, num_draws) + W.shape}``: one chain
            of independent draws, the layout of :class:`~psyphy_pp.NutsResult`.
        params: ``{"W": W}``, the centre (the MAP refined by Newton steps).
        cov_factor: ``L`` of shape ``(n, n - g)`` with ``cov = L @ L.T`` the
            covariance of ``W.reshape(-1)``; ``g`` is the number of gauge
            directions, along which the covariance is zero.
        eigenvalues: The Hessian's eigenvalues on the complement of the gauge
            directions, ascending (``1 / eigenvalue`` is a variance).
        model: The model, with the deterministic task the Hessian was taken on.
        data: The trials.
        map_fit: The :class:`~psyphy_pp.MapResult` it started from.
        settings: ``num_draws``, ``seed``, ``task``, ``newton_steps``,
            ``newton_decrement`` (nats), ``max_gradient`` (largest gradient entry
            at the centre, in units of its posterior standard deviation),
            ``rise_ratio`` (how much faster the negative log posterior rises
            at the first :data:`CHECK_DRAWS` draws than the Gaussian predicts:
            1 for a Gaussian posterior, see :func:`rise_ratio`), ``gauge_dim``,
            ``hessian_seconds``, ``wall_time`` (seconds, MAP included).
        task_note: How the task of ``model`` was chosen, in words.
        method: Always ``"laplace"``.
    """

    samples: dict
    params: Params
    cov_factor: np.ndarray
    eigenvalues: np.ndarray
    model: WPPM
    data: TrialData
    map_fit: MapResult | None = field(default=None, repr=False)
    settings: dict = field(default_factory=dict)
    task_note: str = ""
    method: str = "laplace"

    def covariance(self) -> np.ndarray:
        """The covariance of ``W.reshape(-1)``, shape ``(n, n)`` (singular along the gauge)."""
        return self.cov_factor @ self.cov_factor.T

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"LaplaceResult(num_draws={self.num_samples}, weights={self.cov_factor.shape[0]}, "
            f"gauge_dim={s.get('gauge_dim')}, newton_steps={s.get('newton_steps')}, "
            f"max_gradient={s.get('max_gradient', math.nan):.2g} sd, "
            f"rise_ratio={s.get('rise_ratio', math.nan):.2f}, task={self.model.task!r}, "
            f"wall_time={s.get('wall_time', math.nan):.1f} s)"
        )


def gauge_directions(W: np.ndarray) -> np.ndarray:
    """Orthonormal tangent directions of the rotation orbit ``{W R}`` at ``W``.

    ``W R`` with ``R`` orthogonal gives the same ``Sigma`` everywhere. The
    orbit's tangent space at ``W`` is spanned by ``W A`` for antisymmetric
    ``A`` (``W[i1..iD] @ A`` for every block).

    Args:
        W: Weights of shape ``(*basis, D, D + E)``.

    Returns:
        An ``(n, g)`` array with orthonormal columns, ``n = W.size`` and ``g``
        the rank of the tangent space (``(D+E)(D+E-1)/2`` for a generic ``W``).

    Examples:
        >>> W = np.random.default_rng(0).normal(size=(3, 3, 2, 3))
        >>> gauge_directions(W).shape
        (54, 3)
    """
    W = np.asarray(W, np.float64)
    m = W.shape[-1]
    tangents = []
    for i in range(m):
        for j in range(i + 1, m):
            A = np.zeros((m, m))
            A[i, j], A[j, i] = 1.0, -1.0
            tangents.append((W @ A).reshape(-1))
    if not tangents:
        return np.zeros((W.size, 0))
    u, s, _ = np.linalg.svd(np.stack(tangents, axis=1), full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-10)) if s.size and s[0] > 0 else 0
    return u[:, :rank]


def _negative_log_posterior(w, refs, comps, y, model: WPPM):
    """``f(w)``: the unscaled negative log posterior of flat weights ``w``."""
    params = {SITE_W: w.reshape(model.weights_shape)}
    return -(model.log_prior(params) + jnp.sum(model.log_likelihood(params, refs, comps, y)))


@partial(jit, static_argnames="model")
def _value_grad_and_hvps(w, vs, refs, comps, y, model: WPPM):
    """``f(w)``, ``grad f(w)`` and the Hessian-vector products ``H v`` for the rows ``v`` of ``vs``."""
    value_and_grad = jax.value_and_grad(_negative_log_posterior)
    (f, g), jvp = jax.linearize(lambda w: value_and_grad(w, refs, comps, y, model), w)
    return f, g, jax.vmap(jvp)(vs)[1]


def hessian(model: WPPM, data: TrialData, params: Params, *, progress_bar: bool = False,
            batch: int = HVP_BATCH) -> np.ndarray:
    """The exact Hessian of the unscaled negative log posterior at ``params``.

    ``f(W) = -log p(W) - sum_n log p(y_n | W)`` with the model's own
    (deterministic) task, differentiated forward-over-reverse: ``batch``
    Hessian-vector products at a time, so memory stays that of ``batch``
    gradients.

    Args:
        model: The :class:`~psyphy_pp.WPPM`; its task must be deterministic.
        data: The trials.
        params: ``{"W": W}``.
        progress_bar: Show a progress bar over the batches.
        batch: Hessian-vector products per compiled call.

    Returns:
        The symmetric ``(n, n)`` Hessian in float64 (computed in JAX's default
        float precision), ``n = W.size``, for ``W.reshape(-1)``.
    """
    if model.task.needs_key:
        raise ValueError(f"the model's task must be deterministic, got {model.task!r}")
    check_positive("batch", batch, integer=True)
    w = np.asarray(model.weights(params), np.float64).reshape(-1)
    return _Curvature(model, data, batch).hessian(w, progress_bar)[1]


class _Curvature:
    """Gradient and Hessian of ``f`` for one model and data set (compiled once per shape)."""

    def __init__(self, model: WPPM, data: TrialData, batch: int) -> None:
        self.dtype = jnp.result_type(float)
        self.batch = batch
        self.model = model
        self.arrays = tuple(jnp.asarray(a, self.dtype)
                            for a in (data.refs, data.comparisons, data.responses))

    def _fn(self, w: jax.Array, vs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return _value_grad_and_hvps(w, vs, *self.arrays, model=self.model)

    def value_and_gradient(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """``f`` and ``grad f`` at flat ``w`` (float64)."""
        vs = jnp.zeros((self.batch, w.size), self.dtype)
        f, g, _ = self._fn(jnp.asarray(w, self.dtype), vs)
        return float(f), np.asarray(g, np.float64)

    def gradient(self, w: np.ndarray) -> np.ndarray:
        """``grad f`` at flat ``w`` (float64)."""
        return self.value_and_gradient(w)[1]

    def hessian(self, w: np.ndarray, progress_bar: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(grad f, Hessian of f)`` at flat ``w``, both float64, the Hessian symmetrised."""
        n, batch = w.size, self.batch
        wj = jnp.asarray(w, self.dtype)
        eye = np.eye(n, dtype=self.dtype)
        rows, g = [], None
        with progress(n, "Laplace: Hessian", progress_bar) as bar:
            for start in range(0, n, batch):
                vs = eye[start:start + batch]
                if len(vs) < batch:  # one compiled shape: pad the last batch
                    vs = np.concatenate([vs, np.zeros((batch - len(vs), n), vs.dtype)])
                _, g, hv = self._fn(wj, jnp.asarray(vs))
                rows.append(np.asarray(hv, np.float64)[: n - start])
                bar.update(min(batch, n - start))
        H = np.concatenate(rows)[:n]
        return np.asarray(g, np.float64), 0.5 * (H + H.T)


def rise_ratio(value: Callable[[np.ndarray], float], centre: np.ndarray, factor: np.ndarray,
               z: np.ndarray) -> float:
    """How much faster ``f`` rises at Gaussian draws than the Gaussian says.

    At the draws ``centre + factor @ z_k`` of ``N(centre, factor factor^T)``, a
    Gaussian posterior ``f = -log p`` rises by exactly ``|z_k|^2 / 2`` above its
    value at the centre. The ratio of the summed actual rises to that sum is 1
    for a Gaussian posterior, and above 1 where the posterior is narrower than
    the Gaussian along the directions drawn.

    Args:
        value: ``f`` of a flat weight vector.
        centre: The Gaussian's mean, flat.
        factor: ``L`` with covariance ``L L^T``.
        z: Standard normal draws, shape ``(k, L.shape[1])``.

    Returns:
        ``sum_k (f(centre + L z_k) - f(centre)) / sum_k |z_k|^2 / 2``.
    """
    f0 = value(centre)
    rise = sum(value(centre + factor @ zk) - f0 for zk in z)
    return float(rise / (0.5 * np.sum(np.square(z))))


def off_gauge_eigh(H: np.ndarray, gauge: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Hessian restricted to the complement of the rotation gauge.

    Args:
        H: A symmetric ``(n, n)`` Hessian.
        gauge: Orthonormal gauge directions, shape ``(n, g)`` (:func:`gauge_directions`).

    Returns:
        ``(B, lam, V)``: an orthonormal basis ``B`` (``(n, n - g)``) of the
        complement of ``gauge``, and the eigenvalues ``lam`` (ascending) and
        eigenvectors ``V`` of ``B^T H B``. The Gaussian with zero width along the
        gauge has covariance factor ``B @ (V / sqrt(lam))``.
    """
    n, g = gauge.shape
    if g:
        q, _ = np.linalg.qr(np.concatenate([gauge, np.eye(n)], axis=1))
        B = q[:, g:n]
    else:
        B = np.eye(n)
    Hc = B.T @ H @ B
    lam, V = np.linalg.eigh(0.5 * (Hc + Hc.T))
    return B, lam, V


def _newton_frame(H: np.ndarray, g: np.ndarray, W: np.ndarray):
    """Off-gauge basis, eigenpairs of the restricted Hessian, and the whitened gradient."""
    if not np.all(np.isfinite(H)):
        raise ValueError(
            f"the Hessian of the negative log posterior has {np.sum(~np.isfinite(H))} "
            "non-finite entries; fit_laplace needs a likelihood with finite second "
            "derivatives"
        )
    B, lam, V = off_gauge_eigh(H, gauge_directions(W))
    if lam[0] <= 0:
        raise ValueError(
            f"the Hessian of the negative log posterior is not positive definite at the "
            f"MAP (smallest eigenvalue off the rotation gauge {lam[0]:.3g}); the start is "
            "not a minimum. Fit the MAP to convergence (fit_map with a smaller tol or "
            "more num_steps) and pass it as map_fit"
        )
    return B, lam, V, V.T @ (B.T @ g) / np.sqrt(lam)


def fit_laplace(
    model: WPPM,
    data: TrialData,
    *,
    num_draws: int = 1000,
    seed: int = 0,
    map_fit: MapResult | None = None,
    task: Oddity | None = None,
    progress_bar: bool = True,
) -> LaplaceResult:
    """Approximate the WPPM posterior by a Gaussian at the MAP (Laplace).

    Fits the MAP with :func:`~psyphy_pp.fit_map` (unless ``map_fit`` is given),
    refines it by Newton steps on the deterministic likelihood that
    :func:`~psyphy_pp.fit_nuts` uses, takes the exact Hessian there and draws
    ``W`` from ``N(W_hat, H^-1)``, with zero width along the rotation gauge
    (see the module docstring).

    A fixed lapse rate (``Oddity(lapse_rate=0.05)``) is part of the likelihood
    as everywhere. A learnt one (``lapse_rate="learn"``) is refused: the
    Gaussian, its gauge directions and the Newton refinement are built for
    ``W`` alone; :func:`~psyphy_pp.fit_nuts` samples ``W`` and the lapse rate
    jointly.

    Args:
        model: The :class:`~psyphy_pp.WPPM`.
        data: The trials.
        num_draws: Independent draws of ``W`` to keep.
        seed: Seeds the MAP fit (its prior draw as initial value) and the draws.
        map_fit: A :class:`~psyphy_pp.MapResult` of ``model`` on ``data`` to
            start from, e.g. one fitted with non-default settings.
        task: The deterministic :class:`~psyphy_pp.Oddity` for the Hessian,
            instead of :func:`~psyphy_pp.nuts.deterministic_task` of the model's.
        progress_bar: Show progress bars (the MAP fit and the Hessian).

    Returns:
        A :class:`LaplaceResult`.

    Raises:
        ValueError: For invalid arguments or a model that learns the lapse rate
            (before anything is compiled), or if the Hessian is not positive
            definite off the gauge directions (the start is not a minimum: fit
            the MAP to convergence first).

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> truth = model.sample_prior(jax.random.PRNGKey(1))
        >>> refs, comps = pp.designs.grid_design(model, truth, grid_size=2, trials_per_ref=20,
        ...                                      key=jax.random.PRNGKey(2))
        >>> data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(3))
        >>> post = pp.fit_laplace(model, data, num_draws=100, progress_bar=False)
        >>> post.samples["W"].shape
        (1, 100, 2, 2, 2, 3)
        >>> post.settings["gauge_dim"]
        3
    """
    if is_hierarchical(model):  # several observers: psyphy_pp.hierarchical
        from psyphy_pp.hierarchical import fit_laplace_hierarchical

        if task is not None:
            raise ValueError(f"fit_laplace with a HierarchicalWPPM takes its base model's task, "
                             f"got task={task!r}")
        return fit_laplace_hierarchical(  # type: ignore[return-value]
            model, data, num_draws=num_draws, seed=seed, map_fit=map_fit,  # type: ignore[arg-type]
            progress_bar=progress_bar)
    check_model_and_data(model, data)
    if model.task.learns_lapse:
        raise ValueError(
            f"fit_laplace cannot learn the lapse rate (task {model.task!r}): its Gaussian, "
            "gauge directions and Hessian are those of W alone. Use fit_nuts for the joint "
            "posterior of W and lapse_rate, or fix the lapse rate (Oddity(lapse_rate=0.05))")
    check_positive("num_draws", num_draws, integer=True)
    check_nonnegative("seed", seed, integer=True)
    check_bool("progress_bar", progress_bar)
    if map_fit is not None:
        if not isinstance(map_fit, MapResult):
            raise ValueError(f"map_fit must be a psyphy_pp.MapResult (fit_map or "
                             f"fit_map_scratch), got {type(map_fit).__name__}")
        model.weights(map_fit.params)  # shape check against this model
        if map_fit.data.num_trials != data.num_trials:
            raise ValueError(f"map_fit was fitted to {map_fit.data.num_trials} trials, but "
                             f"data has {data.num_trials}; pass the MAP fit of this data")
    used_model, task_note = with_deterministic_task(model, task, user="the Laplace Hessian")
    if used_model.task.method != "quadrature":
        raise ValueError(
            f"fit_laplace needs the quadrature likelihood (input_dim 2 or 3), got "
            f"{used_model.task!r} for input_dim {model.input_dim}: the second derivatives of "
            "the smoothed Monte Carlo likelihood are not finite. Use fit_nuts instead"
        )

    t0 = time.perf_counter()
    if map_fit is None:
        map_fit = fit_map(model, data, seed=seed, progress_bar=progress_bar)
    w = np.asarray(map_fit.params[SITE_W], np.float64).reshape(-1)
    shape = used_model.weights_shape
    dtype = jnp.result_type(float)
    curvature = _Curvature(used_model, data, HVP_BATCH)

    t1 = time.perf_counter()
    g, H = curvature.hessian(w, progress_bar)
    B, lam, V, gz = _newton_frame(H, g, w.reshape(shape))
    steps = 0
    while float(gz @ gz) >= NEWTON_TOL and steps < MAX_NEWTON_STEPS:
        # Newton steps on the Hessian at the start: the MAP is within a few
        # hundredths of a posterior standard deviation, where H barely changes.
        w_new = w - B @ (V @ (gz / np.sqrt(lam)))
        gz_new = V.T @ (B.T @ curvature.gradient(w_new)) / np.sqrt(lam)
        if float(gz_new @ gz_new) >= float(gz @ gz):  # no progress: keep the better point
            break
        w, gz = w_new, gz_new
        steps += 1
    if steps:  # the covariance is the inverse Hessian at the centre itself
        g, H = curvature.hessian(w, progress_bar)
        B, lam, V, gz = _newton_frame(H, g, w.reshape(shape))
    decrement = float(gz @ gz)
    hessian_seconds = time.perf_counter() - t1
    gauge_dim = w.size - B.shape[1]

    L = B @ (V / np.sqrt(lam))  # cov = L L^T
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (num_draws, L.shape[1]), dtype),
                   np.float64)
    draws = (w + z @ L.T).reshape((1, num_draws) + shape)
    ratio = rise_ratio(lambda v: curvature.value_and_gradient(v)[0], w, L, z[:CHECK_DRAWS])
    settings = dict(
        num_draws=num_draws,
        seed=seed,
        task=used_model.task,
        num_trials=data.num_trials,
        newton_steps=steps,
        newton_decrement=decrement,
        max_gradient=float(np.max(np.abs(gz))),
        gauge_dim=gauge_dim,
        rise_ratio=ratio,
        hessian_seconds=hessian_seconds,
        wall_time=time.perf_counter() - t0,
    )
    result = LaplaceResult(
        samples={SITE_W: draws.astype(np.dtype(dtype))},
        params={SITE_W: jnp.asarray(w.reshape(shape), dtype)},
        cov_factor=L, eigenvalues=lam, model=used_model, data=data, map_fit=map_fit,
        settings=settings, task_note=task_note,
    )
    logger.info("fit_laplace: %s; %s", result, task_note)
    if decrement >= NEWTON_TOL:
        logger.warning("fit_laplace: the Newton refinement stopped after %d steps with "
                       "decrement %.3g nats", steps, decrement)
    return result

