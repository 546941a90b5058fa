"""Fit results as ArviZ ``InferenceData``, for every kind of fit.

:func:`to_arviz` turns the result of :func:`~psyphy_pp.fit_map`,
:func:`~psyphy_pp.fit_map_scratch`, :func:`~psyphy_pp.fit_laplace` or
:func:`~psyphy_pp.fit_nuts` into an
``arviz.InferenceData`` with the groups

* ``posterior``: ``W`` with dims ``("basis_1", ..., "basis_D", "row", "W_col")``
  (the Chebyshev degree along each stimulus dimension, then the ``D x (D+E)``
  matrix), and the derived ``Sigma`` with dims ``("ref_point", "row", "col")``:
  ``Sigma(x)`` at the data's distinct reference points
  (``data.unique_refs()``, also in ``constant_data.ref_points``); and, when
  the task learns the lapse rate, ``lapse_rate`` (dims ``("chain", "draw")``
  only);
* ``sample_stats``: for NUTS ``diverging``, ``energy``, ``lp`` (log density),
  ``n_steps``, ``tree_depth``, ``step_size`` and ``acceptance_rate``; for a MAP
  fit the loss trace ``loss`` with its own dim ``step``; none for a Laplace fit
  (its draws are independent; its settings are attributes of ``posterior``);
* ``log_likelihood``: ``y`` with dim ``trial``, the pointwise log-likelihood of
  every trial at every draw, so that ``az.loo`` and ``az.waic`` work;
* ``observed_data``: the responses ``y`` (dim ``trial``);
* ``constant_data``: ``refs`` and ``comparisons`` (dims ``("trial", "stimulus_dim")``)
  and ``ref_points`` (dims ``("ref_point", "stimulus_dim")``).

A MAP fit is stored as one chain of one draw. Its ``az.summary`` then has
means but no ``r_hat`` or ``ess``, and LOO is meaningless for it; those are
for posterior samples.

``W`` is not identifiable: multiplying every ``W[i1..iD]`` on the right by one
common orthogonal ``(D+E) x (D+E)`` matrix leaves ``Sigma``, the likelihood and
the prior unchanged. ``W`` is kept for completeness; read convergence
diagnostics on ``Sigma`` (``az.summary(idata, var_names=["Sigma"])``), the
log density ``lp`` or held-out P(correct).

The model's hyperparameters are stored as attributes of the ``posterior``
group, so that ``Sigma`` can be recomputed anywhere from the InferenceData
alone (:func:`sigma_draws`).
"""

from __future__ import annotations

__all__ = ["to_arviz", "sigma_draws", "weights_and_field", "LOG_LIKELIHOOD_SEED"]

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp import field as _field
from psyphy_pp._jit import jit
from psyphy_pp._optional import import_arviz
from psyphy_pp._typing import ArrayLike
from psyphy_pp.inference import MapResult
from psyphy_pp.laplace import LaplaceResult
from psyphy_pp.model import SITE_LAPSE, SITE_W, SITE_Y, WPPM
from psyphy_pp.nuts import NutsResult
from psyphy_pp.results import FitResult, lapse_draws

#: Key seed of the pointwise log-likelihood of a MAP fit whose task draws fresh
#: Monte Carlo noise: every draw and trial uses ``PRNGKey(LOG_LIKELIHOOD_SEED)``.
LOG_LIKELIHOOD_SEED = 0

#: Draws evaluated at once when computing derived quantities.
_DRAW_BATCH = 16


def _model_attrs(model: WPPM) -> dict[str, Any]:
    return dict(
        input_dim=model.input_dim,
        basis_degree=model.basis_degree,
        extra_dims=model.extra_dims,
        variance_scale=model.variance_scale,
        decay_rate=model.decay_rate,
        diag_term=model.diag_term,
        task=repr(model.task),
    )


@partial(jit, static_argnames=("diag_term", "batch"))
def _sigma_batch(W: jax.Array, points: jax.Array, diag_term: float, batch: int) -> jax.Array:
    return jax.lax.map(lambda w: _field.covariance(w, points, diag_term), W, batch_size=batch)


@partial(jit, static_argnames=("model", "batch"))
def _log_lik_batch(
    model: WPPM, W: jax.Array, lam: jax.Array | None, refs: jax.Array, comps: jax.Array,
    y: jax.Array, key: jax.Array | None, batch: int,
) -> jax.Array:
    def one(draw: tuple) -> jax.Array:
        w, lapse = draw
        params = {SITE_W: w} if lapse is None else {SITE_W: w, SITE_LAPSE: lapse}
        return model.log_likelihood(params, refs, comps, y, key)

    return jax.lax.map(one, (W, lam), batch_size=batch)


def _flat(W: np.ndarray) -> tuple[jax.Array, int]:
    """Draws of shape ``(C, S) + W.shape`` as one axis, and a batch size for it."""
    flat = jnp.asarray(W).reshape((-1,) + W.shape[2:])
    return flat, min(_DRAW_BATCH, flat.shape[0])


def _sigma(W: np.ndarray, points: np.ndarray, diag_term: float) -> np.ndarray:
    flat, batch = _flat(W)
    out = np.asarray(_sigma_batch(flat, jnp.asarray(points, flat.dtype), float(diag_term), batch))
    return out.reshape(W.shape[:2] + out.shape[1:])


def weights_and_field(fit: Any) -> tuple[np.ndarray, float, int, np.ndarray]:
    """What the field plots and summaries need from any fit.

    Args:
        fit: A :class:`~psyphy_pp.results.FitResult` (with or without data),
            or an InferenceData made by :func:`to_arviz`.

    Returns:
        ``(W by chain and draw, diag_term, input_dim, distinct reference points)``;
        a fit without data (a ground truth, a hierarchical population) has no
        reference points: shape ``(0, input_dim)``.
    """
    if isinstance(fit, FitResult):
        m = fit.model
        refs = (fit.data.unique_refs() if fit.data is not None
                else np.empty((0, m.input_dim), np.float64))
        return fit.weight_draws(), m.diag_term, m.input_dim, refs
    idata = to_arviz(fit)  # InferenceData passes through; anything else raises
    post = idata.posterior
    return (np.asarray(post[SITE_W].values), float(post.attrs["diag_term"]),
            int(post.attrs["input_dim"]), np.asarray(idata.constant_data["ref_points"].values))


def sigma_draws(fit: Any, points: ArrayLike | None = None) -> np.ndarray:
    """``Sigma(x)`` at ``points`` for every draw of a fit.

    Args:
        fit: A fit result or an InferenceData made by :func:`to_arviz`.
        points: Stimuli of shape ``(P, D)``; default: the data's distinct
            reference points (required for a fit without data).

    Returns:
        Array of shape ``(chains, draws, P, D, D)`` (a MAP fit has one of each).

    Raises:
        ValueError: If ``points`` does not have shape ``(P, D)`` with ``P >= 1``
            (``points`` is needed for a fit without data).
    """
    W, diag_term, D, ref_points = weights_and_field(fit)
    points = ref_points if points is None else np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != D or points.shape[0] == 0:
        why = (" (the fit has no data to take its reference points from)"
               if points.size == 0 and ref_points.size == 0 else "")
        raise ValueError(f"points must have shape (P, {D}) with P >= 1, got "
                         f"{points.shape}{why}")
    return _sigma(W, points, diag_term)


def _log_likelihood(
    model: WPPM, W: np.ndarray, data: Any, lam: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    flat, batch = _flat(W)
    lam_flat = None if lam is None else jnp.asarray(lam, flat.dtype).reshape(-1)
    refs = jnp.asarray(data.refs, flat.dtype)
    comps = jnp.asarray(data.comparisons, flat.dtype)
    y = jnp.asarray(data.responses, flat.dtype)
    if model.task.needs_key:
        key = jax.random.PRNGKey(LOG_LIKELIHOOD_SEED)
        note = (
            f"task {model.task!r} draws fresh Monte Carlo noise; the pointwise "
            f"log-likelihood used the fixed key PRNGKey({LOG_LIKELIHOOD_SEED})"
        )
    else:
        key = None
        note = f"deterministic task {model.task!r}"
    out = np.asarray(_log_lik_batch(model, flat, lam_flat, refs, comps, y, key, batch))
    return out.reshape(W.shape[:2] + out.shape[1:]), note


def to_arviz(result: Any) -> Any:
    """Convert a fit to an ``arviz.InferenceData`` with named dims.

    See the module docstring for the groups, variables and dims. ``W`` is not
    identifiable (a common right rotation of every ``W[i1..iD]`` changes
    nothing), so run ``az.summary`` / ``az.rhat`` / ``az.ess`` on ``Sigma``.

    Args:
        result: A :class:`~psyphy_pp.MapResult` (``method`` ``"svi"`` or
            ``"scratch"``; stored as 1 chain x 1 draw), a
            :class:`~psyphy_pp.NutsResult`, a :class:`~psyphy_pp.LaplaceResult`
            (1 chain of independent draws), a :class:`~psyphy_pp.HierarchicalFit`
            (see :func:`~psyphy_pp.hierarchical.hierarchical_to_arviz`: dims
            ``"observer"`` with the observer names), or an InferenceData
            (returned as is).

    Returns:
        ``arviz.InferenceData`` with groups ``posterior``, ``sample_stats``,
        ``log_likelihood``, ``observed_data`` and ``constant_data``.

    Raises:
        ValueError: If ``result`` is none of the above.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> data = pp.TrialData([[0.0, 0.0], [0.5, 0.5]], [[0.1, 0.0], [0.5, 0.6]], [1, 0])
        >>> fit = pp.fit_map(model, data, num_steps=3, progress_bar=False)
        >>> idata = pp.to_arviz(fit)
        >>> idata.posterior["Sigma"].dims
        ('chain', 'draw', 'ref_point', 'row', 'col')
        >>> idata.log_likelihood["y"].shape
        (1, 1, 2)
    """
    az = import_arviz()
    if isinstance(result, az.InferenceData):
        return result
    from psyphy_pp.hierarchical import HierarchicalFit, hierarchical_to_arviz

    if isinstance(result, HierarchicalFit):  # several observers: dim "observer"
        return hierarchical_to_arviz(result)
    if isinstance(result, NutsResult):
        W = result.weight_draws()
        s = result.sample_stats
        sample_stats = {
            "diverging": s["diverging"],
            "energy": s["energy"],
            "lp": s["lp"],
            "n_steps": s["num_steps"],
            "tree_depth": s["tree_depth"],
            "step_size": s["step_size"],
            "acceptance_rate": s["accept_prob"],
        }
        inference = "nuts"
    elif isinstance(result, LaplaceResult):
        W = result.weight_draws()
        sample_stats = None
        inference = "laplace"
    elif isinstance(result, MapResult):
        W = result.weight_draws()
        sample_stats = {"loss": np.asarray(result.losses)[None, None]}
        inference = result.method
    else:
        raise ValueError(
            "result must be a MapResult (fit_map, fit_map_scratch), a NutsResult "
            "(fit_nuts), a LaplaceResult (fit_laplace) or an arviz.InferenceData, got "
            f"{type(result).__name__}"
        )
    model, data = result.model, result.data
    D = model.input_dim
    ref_points = data.unique_refs()
    Sigma = _sigma(W, ref_points, model.diag_term)
    lam = lapse_draws(result)  # None unless the lapse rate is learnt
    log_lik, ll_note = _log_likelihood(model, W, data, lam)
    posterior = {SITE_W: W, "Sigma": Sigma}
    if lam is not None:
        posterior[SITE_LAPSE] = lam

    basis_dims = [f"basis_{k + 1}" for k in range(D)]
    coords = {name: np.arange(model.basis_degree + 1) for name in basis_dims}
    coords |= dict(
        row=np.arange(D),
        col=np.arange(D),
        W_col=np.arange(D + model.extra_dims),
        ref_point=np.arange(ref_points.shape[0]),
        trial=np.arange(data.num_trials),
        stimulus_dim=np.arange(D),
        step=np.arange(len(getattr(result, "losses", ()))),
    )
    dims = {
        SITE_W: basis_dims + ["row", "W_col"],
        "Sigma": ["ref_point", "row", "col"],
        SITE_Y: ["trial"],
        "loss": ["step"],
        "refs": ["trial", "stimulus_dim"],
        "comparisons": ["trial", "stimulus_dim"],
        "ref_points": ["ref_point", "stimulus_dim"],
    }
    if inference in ("nuts", "laplace"):
        del coords["step"], dims["loss"]
    attrs = _model_attrs(model) | dict(
        inference_method=inference,
        log_likelihood_note=ll_note,
    )
    if isinstance(result, NutsResult):
        attrs |= dict(
            task_note=result.task_note,
            num_warmup=result.settings["num_warmup"],
            chain_method=result.settings["chain_method"],
            wall_time=float(result.settings["wall_time"]),
        )
    if isinstance(result, LaplaceResult):
        attrs |= dict(
            task_note=result.task_note,
            newton_steps=int(result.settings["newton_steps"]),
            max_gradient=float(result.settings["max_gradient"]),
            rise_ratio=float(result.settings.get("rise_ratio", float("nan"))),
            gauge_dim=int(result.settings["gauge_dim"]),
            wall_time=float(result.settings["wall_time"]),
        )
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=sample_stats,
        log_likelihood={SITE_Y: log_lik},
        observed_data={SITE_Y: np.asarray(data.responses)},
        constant_data={
            "refs": np.asarray(data.refs),
            "comparisons": np.asarray(data.comparisons),
            "ref_points": ref_points,
        },
        coords=coords,
        dims=dims,
    )
    idata.posterior.attrs |= attrs
    idata.log_likelihood.attrs["note"] = ll_note
    return idata
