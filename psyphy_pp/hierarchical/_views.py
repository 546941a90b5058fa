"""A :class:`HierarchicalFit` for ArviZ and as a figure of one panel per observer."""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
import numpy as np

from psyphy_pp._typing import ArrayLike
from psyphy_pp._validation import check_positive
from psyphy_pp.hierarchical._map import canonical
from psyphy_pp.hierarchical._model import SITE_DELTA, SITE_TAU, SITE_W_SHARED, HierarchicalWPPM
from psyphy_pp.hierarchical._result import HierarchicalFit
from psyphy_pp.model import SITE_Y


# -- ArviZ and plots ----------------------------------------------------------------
def hierarchical_to_arviz(fit: HierarchicalFit) -> Any:
    """A :class:`HierarchicalFit` as ``arviz.InferenceData`` (what ``to_arviz`` returns).

    ``posterior``: ``W_shared`` (dims ``basis_1 .. basis_D, row, W_col``),
    ``Delta`` and ``W`` (each observer's weights; dims ``observer, basis_1 ..,
    row, W_col``), ``tau``, ``Sigma`` (``observer, ref_point, row, col``: each
    observer's field at the data's distinct references) and
    ``Sigma_population`` (``ref_point, row, col``). The ``observer``
    coordinate holds the observer names. ``log_likelihood`` has ``y`` by
    ``trial``; ``constant_data`` has ``refs``, ``comparisons`` and ``observer``
    (each trial's observer index); a MAP fit's loss trace is in
    ``sample_stats.loss``.
    """
    from psyphy_pp._optional import import_arviz
    from psyphy_pp.field import covariance

    az = import_arviz()
    model, data = fit.model, fit.data
    base = model.base
    D = base.input_dim
    ref_points = data.unique_refs()
    W_shared = np.asarray(fit.samples[SITE_W_SHARED])
    Ws = fit.observer_weight_draws()
    C, K = W_shared.shape[:2]
    flat = Ws.reshape(C * K, *Ws.shape[2:])
    sigma = np.stack([np.asarray(covariance(w, ref_points, base.diag_term)) for w in
                      flat.reshape(-1, *model.weights_shape)])
    sigma = sigma.reshape(C, K, Ws.shape[2], *sigma.shape[1:])
    sigma_pop = np.stack([np.asarray(covariance(w, ref_points, base.diag_term))
                          for w in W_shared.reshape(-1, *model.weights_shape)])
    log_lik = _log_lik_draws(model, fit).reshape(C, K, data.num_trials)
    basis_dims = [f"basis_{k + 1}" for k in range(D)]
    coords: dict[str, Any] = {name: np.arange(base.basis_degree + 1) for name in basis_dims}
    coords |= dict(observer=list(fit.observer_names), row=np.arange(D), col=np.arange(D),
                   W_col=np.arange(D + base.extra_dims),
                   ref_point=np.arange(ref_points.shape[0]), trial=np.arange(data.num_trials),
                   stimulus_dim=np.arange(D))
    w_dims = basis_dims + ["row", "W_col"]
    dims = {SITE_W_SHARED: w_dims, SITE_DELTA: ["observer"] + w_dims, "W": ["observer"] + w_dims,
            "Sigma": ["observer", "ref_point", "row", "col"],
            "Sigma_population": ["ref_point", "row", "col"], SITE_Y: ["trial"],
            "refs": ["trial", "stimulus_dim"], "comparisons": ["trial", "stimulus_dim"],
            "observer_index": ["trial"], "ref_points": ["ref_point", "stimulus_dim"],
            "loss": ["step"]}
    sample_stats = None
    if fit.kind == "point" and fit.losses is not None:
        sample_stats = {"loss": np.asarray(fit.losses)[None, None]}
        coords["step"] = np.arange(len(fit.losses))
    elif fit.sample_stats:
        sample_stats = {"diverging": fit.sample_stats["diverging"],
                        "n_steps": fit.sample_stats["num_steps"]}
    idata = az.from_dict(
        posterior={SITE_W_SHARED: W_shared, SITE_DELTA: np.asarray(fit.samples[SITE_DELTA]),
                   "W": Ws, SITE_TAU: fit.tau, "Sigma": sigma,
                   "Sigma_population": sigma_pop.reshape(C, K, *sigma_pop.shape[1:])},
        sample_stats=sample_stats,
        log_likelihood={SITE_Y: log_lik},
        observed_data={SITE_Y: np.asarray(data.responses)},
        constant_data={"refs": np.asarray(data.refs), "comparisons": np.asarray(data.comparisons),
                       "observer_index": np.asarray(data.observer), "ref_points": ref_points},
        coords=coords, dims=dims)
    idata.posterior.attrs |= dict(
        inference_method=fit.method, hierarchical=1, tau_fixed=float(model.tau or 0.0),
        tau_scale=float(model.tau_scale), parameterization=model.parameterization,
        input_dim=D, basis_degree=base.basis_degree, extra_dims=base.extra_dims,
        variance_scale=base.variance_scale, decay_rate=base.decay_rate,
        diag_term=base.diag_term)
    return idata


def _log_lik_draws(model: HierarchicalWPPM, fit: HierarchicalFit) -> np.ndarray:
    """The pointwise log-likelihood at every draw, shape ``(C * K, N)``."""
    data = fit.data
    dtype = jnp.result_type(float)
    refs = jnp.asarray(data.refs, dtype)
    comps = jnp.asarray(data.comparisons, dtype)
    y = jnp.asarray(data.responses, dtype)
    obs = jnp.asarray(data.observer)
    run = _log_lik_program(canonical(model))
    W = np.asarray(fit.samples[SITE_W_SHARED])
    Dl = np.asarray(fit.samples[SITE_DELTA])
    W = W.reshape(-1, *W.shape[2:])
    Dl = Dl.reshape(-1, *Dl.shape[2:])
    return np.stack([np.asarray(run(jnp.asarray(w, dtype), jnp.asarray(d, dtype), refs, comps,
                                    y, obs)) for w, d in zip(W, Dl)])


@functools.lru_cache(maxsize=8)
def _log_lik_program(model: HierarchicalWPPM) -> Any:
    from psyphy_pp._jit import jit

    def run(W, Delta, refs, comps, y, obs):
        return model.log_likelihood({SITE_W_SHARED: W, SITE_DELTA: Delta}, refs, comps, y, obs)

    return jit(run)


def plot_observers(fit: HierarchicalFit, refs: ArrayLike | None = None, *,
                   num_directions: int = 16, prob: float = 0.9, ncols: int = 3,
                   truth: dict | None = None, **kwargs: Any) -> Any:
    """Threshold ellipses: one panel for the population, then one per observer (2D).

    Each panel is :func:`~psyphy_pp.plotting.plot_threshold_field` of that
    fit (with the ``prob`` band for draws), in the data's units.

    Args:
        fit: The :class:`HierarchicalFit`.
        refs: Reference points in model units (default the data's distinct
            references, at most 25 of them).
        num_directions: Directions per reference.
        prob: Mass of the bands.
        ncols: Panels per row.
        truth: Optional ``{name: Thresholds}`` of true thresholds (in the same
            units), drawn dashed in the matching panels.
        **kwargs: Passed to ``plot_threshold_field``.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ValueError: If the model is not 2D, or ``ncols`` is not a positive integer.
    """
    import matplotlib.pyplot as plt

    from psyphy_pp.plotting import plot_threshold_field

    if fit.model.input_dim != 2:
        raise ValueError(f"plot_observers needs input_dim 2, got {fit.model.input_dim}")
    check_positive("ncols", ncols, integer=True)
    if refs is None:
        refs = fit.data.unique_refs()
        if len(refs) > 25:
            refs = refs[np.linspace(0, len(refs) - 1, 25).round().astype(int)]
    ths = fit.thresholds(refs, num_directions)
    n = len(ths)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 4 * nrows), squeeze=False)
    for ax, (name, th) in zip(axes.ravel(), ths.items()):
        th = th.to_user(fit.data.normalization)
        plot_threshold_field(th, ax=ax, prob=prob, truth=(truth or {}).get(name), **kwargs)
        ax.set_title(f"{name} ({ax.get_title()})" if ax.get_title() else name)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
