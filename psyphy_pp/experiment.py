"""Run an experiment: an ask/tell loop that places trials where the WPPM is unsure.

:class:`Experiment` drives an oddity experiment one batch at a time::

    exp = pp.Experiment(pp.WPPM(basis_degree=4, extra_dims=1), "session.db")
    while exp.num_told < 3000:
        trials = exp.ask(20)                   # the next 20 (reference, comparison) pairs
        responses = run_trials(trials)         # show them; 1 = correct, 0 = wrong
        exp.tell(trials, responses)            # committed to session.db before it returns

How trials are placed (:mod:`psyphy_pp.placement`). The first ``start_trials``
come from a space-filling design (scrambled Sobol, or a grid). Once they are
told, the session fits the MAP (the objective of :func:`~psyphy_pp.fit_map`)
and a Gauss-Newton Laplace posterior at it, and every later ``ask`` scores
random candidate trials by the expected drop in the posterior variance of the
readout thresholds (``strategy="thresholds"``, the default) or by the expected
information gain of their responses (``"information"``), and returns the best. The fit is renewed in
``tell`` every ``refit_every`` trials, warm-started from the previous MAP.

Time. ``ask`` stops scoring candidates after ``time_budget`` seconds and takes
the best of those it scored (at least one chunk of :data:`CANDIDATE_CHUNK` is
always scored); the first ``ask`` with a new fit size excludes compilation from
the budget. A refit (in ``tell``) takes seconds: the MAP from a warm start and
one Hessian (see ``docs/experiment.md`` for measured times).

Crash safety and resuming (:mod:`psyphy_pp.trial_store`). Every ``ask`` and
``tell`` is one SQLite transaction, committed before the call returns. Opening
the same file again resumes the session: its model, settings, trials, fits and
random state (the ``k``-th ask draws its candidates from
``fold_in(PRNGKey(seed), k)``), so that the next ``ask`` is the one the closed
session would have made.
"""

from __future__ import annotations

__all__ = [
    "Experiment",
    "AskedTrials",
    "STRATEGIES",
    "ADAPTIVE",
    "CANDIDATE_CHUNK",
    "DEFAULT_STRATEGY",
    "DEFAULT_START_TRIALS",
    "DEFAULT_REFIT_EVERY",
    "DEFAULT_CANDIDATES",
    "DEFAULT_DRAWS",
    "DEFAULT_TIME_BUDGET",
]

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp import defaults
from psyphy_pp._jit import jit
from psyphy_pp._masked_map import (
    TRIAL_CHUNK,
    gauss_newton_factor,
    logit_jacobian,
    padded_trials,
    prior_std,
    programs,
    structure,
)
from psyphy_pp._validation import check_choice, check_nonnegative, check_positive
from psyphy_pp._version import __version__
from psyphy_pp.data import TrialData
from psyphy_pp.fitio import model_from_dict, model_to_dict
from psyphy_pp.model import SITE_W, WPPM
from psyphy_pp.normalization import Normalization
from psyphy_pp.placement import (
    START_DESIGNS,
    candidate_trials,
    information_gain,
    readout_sensitivities,
    select_batch,
    start_trials,
    threshold_batch,
)
from psyphy_pp.trial_store import StoredFit, TrialStore

logger = logging.getLogger(__name__)

#: Posterior-driven placement after a space-filling start: ``"thresholds"``
#: (expected drop of the readout thresholds' variance) or ``"information"``
#: (expected information gain about the field).
ADAPTIVE = ("thresholds", "information")

#: The placement strategies: adaptive, or a space-filling design all the way
#: (``"sobol"``, ``"grid"``).
STRATEGIES = ADAPTIVE + START_DESIGNS

#: Candidates scored per compiled call of ``ask`` (the time budget is checked between calls).
CANDIDATE_CHUNK = TRIAL_CHUNK

DEFAULT_STRATEGY = "thresholds"
DEFAULT_START_TRIALS = 500
DEFAULT_REFIT_EVERY = 200
DEFAULT_CANDIDATES = 2048
DEFAULT_DRAWS = 32
DEFAULT_TIME_BUDGET = 1.0

_SETTINGS = {  # name -> (default, check)
    "strategy": (DEFAULT_STRATEGY, lambda v: check_choice("strategy", v, STRATEGIES)),
    "start_design": ("sobol", lambda v: check_choice("start_design", v, START_DESIGNS)),
    "start_trials": (DEFAULT_START_TRIALS,
                     lambda v: check_positive("start_trials", v, integer=True)),
    "refit_every": (DEFAULT_REFIT_EVERY, lambda v: check_positive("refit_every", v, integer=True)),
    "seed": (0, lambda v: check_nonnegative("seed", v, integer=True)),
    "candidates": (DEFAULT_CANDIDATES, lambda v: check_positive("candidates", v, integer=True)),
    "draws": (DEFAULT_DRAWS, lambda v: check_positive("draws", v, integer=True)),
    "time_budget": (DEFAULT_TIME_BUDGET, lambda v: check_positive("time_budget", v)),
}

#: Padded data sizes of a refit: one compiled program per power of two from here.
_MIN_BUCKET = 512


@dataclass(frozen=True)
class AskedTrials:
    """Trials returned by :meth:`Experiment.ask`, to be shown and then told.

    Attributes:
        ids: The session's trial ids (pass them back to :meth:`Experiment.tell`).
        refs: References in model units, shape ``(n, D)``.
        comparisons: Comparisons in model units, shape ``(n, D)``.
        sources: How each trial was placed: ``"sobol"``, ``"grid"`` or ``"information"``.
        normalization: The session's units, or None.
    """

    ids: np.ndarray
    refs: np.ndarray
    comparisons: np.ndarray
    sources: np.ndarray
    normalization: Normalization | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def user_refs(self) -> np.ndarray:
        """References in the user's units (model units without a normalization)."""
        n = self.normalization
        return self.refs if n is None else n.to_user_exact(self.refs)

    @property
    def user_comparisons(self) -> np.ndarray:
        """Comparisons in the user's units (model units without a normalization)."""
        n = self.normalization
        return self.comparisons if n is None else n.to_user_exact(self.comparisons)


def _bucket(n: int) -> int:
    return max(_MIN_BUCKET, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


@lru_cache(maxsize=4)
def _scorer(model: WPPM) -> Any:
    """``p[s, c]``: P(correct) of candidates ``c`` under weight draws ``s`` (compiled)."""
    def p(Ws, refs, comps):
        return jax.vmap(lambda W: model.prob_correct({SITE_W: W}, refs, comps, devices=None))(Ws)
    return jit(p)


_WARM: set[tuple] = set()  # (model, draws, candidates) already asked in this process


class Experiment:
    """An adaptive oddity experiment stored in one SQLite file (module docstring).

    A new file is created with ``model`` and the settings given (defaults for
    the rest); an existing one is resumed with its own model and settings, and
    a ``model`` or setting passed that differs from the stored one is an error.

    Args:
        model: The :class:`~psyphy_pp.WPPM` (None to resume an existing file).
            Its task must be deterministic (the 2D/3D quadrature default) with a
            fixed lapse rate.
        path: The session file.
        strategy: ``"information"`` (default: space-filling start, then
            posterior-driven), or ``"sobol"`` / ``"grid"`` all the way.
        start_design: The start: ``"sobol"`` (default) or ``"grid"``.
        start_trials: Trials of the start before the first fit (default 500).
        refit_every: Refit after this many new told trials (default 200).
        seed: Seeds the start design, the candidates and the posterior draws.
        candidates: Candidate trials scored per ``ask`` (default 2048).
        draws: Posterior draws they are scored on (default 32).
        time_budget: Seconds an ``ask`` may spend scoring (default 1).
        normalization: The user's units (stored; :class:`AskedTrials` and the
            export give stimuli in them).
        timeout: Seconds to wait for another process's write lock.

    Raises:
        ValueError: For a bad setting or model, or one that differs from the
            stored session's.
        psyphy_pp.trial_store.SessionFileError: For a file that is not a session.

    Examples:
        >>> import tempfile, os, psyphy_pp as pp
        >>> tmp = tempfile.TemporaryDirectory()
        >>> exp = pp.Experiment(pp.WPPM(basis_degree=1), os.path.join(tmp.name, "s.db"),
        ...                     start_trials=4)
        >>> trials = exp.ask(4)
        >>> trials.sources.tolist()
        ['sobol', 'sobol', 'sobol', 'sobol']
        >>> exp.tell(trials, [1, 0, 1, 1])
        4
        >>> exp.num_told
        4
        >>> exp.close(); tmp.cleanup()
    """

    def __init__(self, model: WPPM | None = None, path: str | os.PathLike = "session.db", *,
                 strategy: str | None = None, start_design: str | None = None,
                 start_trials: int | None = None, refit_every: int | None = None,
                 seed: int | None = None, candidates: int | None = None,
                 draws: int | None = None, time_budget: float | None = None,
                 normalization: Normalization | None = None, timeout: float = 10.0) -> None:
        self._readout: tuple[int, np.ndarray] | None = None  # (fit id, readout sensitivities)
        given: dict[str, Any] = dict(strategy=strategy, start_design=start_design, start_trials=start_trials,
                     refit_every=refit_every, seed=seed, candidates=candidates, draws=draws,
                     time_budget=time_budget)
        for name, value in given.items():
            if value is not None:
                _SETTINGS[name][1](value)
        if model is not None:
            _check_model(model)
        if normalization is not None and not isinstance(normalization, Normalization):
            raise ValueError(f"normalization must be a psyphy_pp.Normalization or None, "
                             f"got {type(normalization).__name__}")
        check_positive("timeout", timeout)
        path = os.fspath(path)
        if os.path.exists(path):
            self._store = TrialStore(path, timeout=timeout)
            self._resume(model, given, normalization)
        else:
            if model is None:
                raise FileNotFoundError(
                    f"no experiment session at {path!r}; pass a model to create one")
            settings: dict[str, Any] = {k: (_SETTINGS[k][0] if v is None else v)
                                        for k, v in given.items()}
            if normalization is not None and normalization.input_dim != model.input_dim:
                raise ValueError(f"normalization must have input_dim {model.input_dim} to "
                                 f"match the model, got {normalization.input_dim}")
            meta = {"model": model_to_dict(model), "input_dim": model.input_dim,
                    "settings": settings, "created_at": time.time(),
                    "normalization": None if normalization is None else normalization.to_dict(),
                    "psyphy_pp_version": __version__}
            self._store = TrialStore(path, timeout=timeout, create=True, meta=meta)
            self.model, self.settings, self.normalization = model, settings, normalization

    def _resume(self, model: WPPM | None, given: dict, normalization: Normalization | None
                ) -> None:
        meta = self._store.meta
        stored = model_from_dict(meta["model"], self._store.path,
                                 meta.get("psyphy_pp_version", "?"))
        if model is not None and json.dumps(model_to_dict(model)) != json.dumps(meta["model"]):
            raise ValueError(f"model differs from the one stored in {self._store.path!r}: "
                             f"got {model!r}, the session has {stored!r}")
        settings: dict[str, Any] = dict(meta["settings"])
        for name, value in given.items():
            if value is not None and value != settings[name]:
                raise ValueError(f"{name}={value!r} differs from the session's "
                                 f"{name}={settings[name]!r} in {self._store.path!r}")
        norm = meta.get("normalization")
        stored_norm = None if norm is None else Normalization.from_dict(norm)
        if normalization is not None and normalization != stored_norm:
            raise ValueError(f"normalization differs from the session's {stored_norm!r}")
        self.model, self.settings, self.normalization = stored, settings, stored_norm

    # -- state -------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The session file."""
        return self._store.path

    @property
    def num_asked(self) -> int:
        """Trials asked so far (told or not)."""
        return self._store.counts()[0]

    @property
    def num_told(self) -> int:
        """Trials told so far."""
        return self._store.counts()[1]

    @property
    def fit(self) -> StoredFit | None:
        """The latest fit (MAP and Laplace factor), or None before the first."""
        return self._store.latest_fit()

    @property
    def data(self) -> TrialData | None:
        """The told trials as :class:`~psyphy_pp.TrialData` (None before the first),
        with ``trial_id`` and ``source`` columns in its metadata."""
        t = self._store.trials(told=True)
        if len(t["id"]) == 0:
            return None
        return TrialData(t["refs"], t["comparisons"], t["response"],
                         normalization=self.normalization,
                         metadata={"trial_id": t["id"].astype(str),
                                   "source": t["source"].astype(str)})

    @property
    def pending(self) -> AskedTrials:
        """Trials asked but not yet told."""
        t = self._store.trials(told=False)
        return AskedTrials(t["id"], t["refs"], t["comparisons"], t["source"].astype(str),
                           self.normalization)

    def trial_table(self) -> dict[str, np.ndarray]:
        """Every asked trial in id order: ``id``, ``batch``, ``source``, ``refs``,
        ``comparisons`` (model units) and ``response`` (-1 while not told)."""
        return self._store.trials()

    def ask_log(self) -> dict[str, np.ndarray]:
        """One entry per ``ask``: ``batch``, ``num_trials``, ``strategy``, ``fit_id``,
        ``seconds`` (wall time, compilation excluded) and ``fallback`` (the time
        budget cut the scoring short)."""
        return self._store.asks()

    def fit_log(self) -> list[dict]:
        """One entry per fit: ``id``, ``num_trials``, L-BFGS ``steps``, ``converged``,
        ``map_seconds`` and ``hessian_seconds`` (compilation included)."""
        return self._store.fit_log()

    def export(self, path: str | os.PathLike, *, overwrite: bool = False) -> TrialData:
        """Write the told trials as a TrialData CSV file (in the user's units) and return them.

        Raises:
            ValueError: If no trial has been told yet.
            FileExistsError: If ``path`` exists and ``overwrite`` is False.
        """
        data = self.data
        if data is None:
            raise ValueError(f"no trial of {self.path!r} has been told yet: nothing to export")
        data.to_csv(path, overwrite=overwrite)
        return data

    def close(self) -> None:
        """Close the session file (everything is already committed)."""
        self._store.close()

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        asked, told, _ = self._store.counts()
        fit = self.fit
        return (f"Experiment({self.path!r}, strategy={self.settings['strategy']!r}, "
                f"asked={asked}, told={told}, "
                f"fit={'none' if fit is None else f'{fit.num_trials} trials'})")

    # -- ask -----------------------------------------------------------------------------
    def ask(self, n: int = 1) -> AskedTrials:
        """The next ``n`` trials, recorded in the session as pending.

        Args:
            n: How many trials.

        Returns:
            :class:`AskedTrials`; show them, then pass them to :meth:`tell`.

        Raises:
            psyphy_pp.trial_store.SessionBusyError: If another process held the
                session for longer than ``timeout``.
        """
        check_positive("n", n, integer=True)
        s = self.settings
        with self._store.write() as conn:
            asked, _, batch = self._store.counts()
            fit = self._store.latest_fit()
            t0 = time.perf_counter()
            adaptive = s["strategy"] in ADAPTIVE and asked >= s["start_trials"]
            fallback = False
            if adaptive and fit is not None:
                acquire = (self._acquire_thresholds if s["strategy"] == "thresholds"
                           else self._acquire_information)
                refs, comps, compile_s, fallback = acquire(fit, n, batch)
                strategy = s["strategy"]
                sources = [strategy] * n
            else:
                if adaptive:
                    logger.warning("ask: no fit yet (the start trials are not all told): "
                                   "placing by the start design")
                design = s["start_design"] if s["strategy"] in ADAPTIVE else s["strategy"]
                skip = self._store.count_source(design)
                refs, comps = start_trials(self.model, n, seed=s["seed"], skip=skip,
                                           design=design)
                sources, strategy, compile_s = [design] * n, design, 0.0
            seconds = time.perf_counter() - t0 - compile_s
            ids = self._store.add_ask(conn, batch, refs, comps, sources, strategy,
                                      None if fit is None else fit.id, seconds, fallback)
        logger.info("ask %d: %d trials by %s in %.3f s%s", batch, n, strategy, seconds,
                    " (time budget reached)" if fallback else "")
        return AskedTrials(ids, refs, comps, np.asarray(sources), self.normalization)

    def _posterior_draws(self, fit: StoredFit, num: int, key: jax.Array) -> jax.Array:
        std = np.asarray(self.model.prior_std())
        z = np.asarray(jax.random.normal(key, (num, fit.factor.shape[1])), np.float64)
        Z = (fit.W / std).reshape(-1) + z @ fit.factor.T
        return jnp.asarray(Z.reshape((num,) + fit.W.shape) * std, jnp.result_type(float))

    def _in_chunks(self, refs: np.ndarray, comps: np.ndarray, score: Any, warm: tuple,
                   start: float, first: bool) -> tuple[list, float]:
        """``score(refs, comps)`` of the candidates, :data:`CANDIDATE_CHUNK` at a time,
        until the time budget is spent; returns the scores and the preparation time
        (compilation) that the budget does not count."""
        out: list = []
        prepare_s = 0.0
        for i in range(0, len(refs), CANDIDATE_CHUNK):
            out.append(score(refs[i:i + CANDIDATE_CHUNK], comps[i:i + CANDIDATE_CHUNK]))
            if first:
                prepare_s, first = time.perf_counter() - start, False
                _WARM.add(warm)
            elif time.perf_counter() - start - prepare_s > self.settings["time_budget"]:
                break
        return out, prepare_s

    def _fallback(self, n: int, batch: int, why: str) -> tuple[np.ndarray, np.ndarray]:
        logger.warning("ask: %s; placing by the start design", why)
        s = self.settings
        return start_trials(self.model, n, seed=s["seed"] + batch + 1, design=s["start_design"])

    def _acquire_information(self, fit: StoredFit, n: int, batch: int
                 ) -> tuple[np.ndarray, np.ndarray, float, bool]:
        """``"information"``: BALD on posterior draws, the best far apart."""
        s = self.settings
        k_cand, k_draw = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(s["seed"]),
                                                             batch))
        start = time.perf_counter()
        warm = ("information", structure(self.model), s["draws"], s["candidates"])
        Ws = self._posterior_draws(fit, s["draws"], k_draw)
        refs, comps = candidate_trials(self.model, {SITE_W: jnp.asarray(fit.W)},
                                       s["candidates"], k_cand)
        scorer = _scorer(structure(self.model))

        def score(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            m = len(r)
            r, c = (np.concatenate([a, a[:1].repeat(CANDIDATE_CHUNK - m, 0)]) for a in (r, c))
            p = scorer(Ws, jnp.asarray(r, Ws.dtype), jnp.asarray(c, Ws.dtype))
            return np.asarray(information_gain(p))[:m]

        scores, prepare_s = self._in_chunks(refs, comps, score, warm, start, warm not in _WARM)
        gain = np.concatenate(scores)
        if len(gain) < n:
            r, c = self._fallback(n, batch, "too few candidates scored in the time budget")
            return r, c, prepare_s, True
        idx = select_batch(refs[: len(gain)], gain, n)
        return refs[idx], comps[idx], prepare_s, len(gain) < len(refs)

    def _acquire_thresholds(self, fit: StoredFit, n: int, batch: int
                            ) -> tuple[np.ndarray, np.ndarray, float, bool]:
        """``"thresholds"``: the greedy drop of the readout thresholds' variance."""
        s = self.settings
        k_cand, _ = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(s["seed"]), batch))
        start = time.perf_counter()
        warm = ("thresholds", structure(self.model), s["candidates"])
        first = warm not in _WARM  # compiles: the time budget does not apply
        if self._readout is None or self._readout[0] != fit.id:  # once per fit
            self._readout = (fit.id, readout_sensitivities(self.model, fit.W, fit.factor))
            first = True
        A = self._readout[1]
        dtype = jnp.result_type(float)
        W, std = jnp.asarray(fit.W, dtype), prior_std(self.model, dtype)
        refs, comps = candidate_trials(self.model, {SITE_W: W}, s["candidates"], k_cand)

        def score(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return logit_jacobian(structure(self.model), W, std, r, c, np.ones(len(r), bool))

        scores, prepare_s = self._in_chunks(refs, comps, score, warm, start, first)
        J = np.concatenate([j for j, _ in scores], axis=1)
        w = np.concatenate([f for _, f in scores])
        if A.shape[1] == 0 or len(w) < n:
            why = ("no readout threshold inside the box" if A.shape[1] == 0
                   else "too few candidates scored in the time budget")
            r, c = self._fallback(n, batch, why)
            return r, c, prepare_s, True
        idx, _ = threshold_batch(J, w, fit.factor, A, n)
        return refs[idx], comps[idx], prepare_s, len(w) < len(refs)

    # -- tell ----------------------------------------------------------------------------
    def tell(self, trials: AskedTrials | Any, responses: Any, *, refit: bool = True) -> int:
        """Record the responses to asked trials (committed before this returns).

        Args:
            trials: The :class:`AskedTrials` from :meth:`ask`, or their ids.
            responses: 1 (correct: the comparison was picked as the odd one) or 0,
                one per trial.
            refit: Refit when ``refit_every`` new trials have been told since the
                last fit (default True).

        Returns:
            How many of the trials were new (a trial told again with the same
            response is accepted and not counted).

        Raises:
            ValueError: For an unknown trial id, an id twice, a response that is
                not 0/1 or that changes an earlier one, or mismatched lengths;
                nothing is recorded then.
        """
        ids = np.asarray(trials.ids if isinstance(trials, AskedTrials) else trials)
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise ValueError(f"trials must be AskedTrials or a 1-D array of integer trial ids, "
                             f"got shape {ids.shape} of {ids.dtype}")
        y = np.asarray(responses)
        if y.shape != ids.shape:
            raise ValueError(f"responses must have shape {ids.shape} (one per trial), "
                             f"got {y.shape}")
        if y.size and (y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all()):
            bad = y.reshape(-1)[0] if y.dtype.kind not in "biuf" else y[~np.isin(y, (0, 1))][0]
            raise ValueError(f"responses must be 0 or 1, got {np.asarray(bad).item()!r}")
        with self._store.write() as conn:
            new = self._store.add_responses(conn, ids.astype(np.int64), y.astype(np.int64))
        if refit and self._refit_due():
            self.refit()
        return new

    def _refit_due(self) -> bool:
        s = self.settings
        if s["strategy"] not in ADAPTIVE:
            return False
        told = self._store.counts()[1]
        fit = self._store.latest_fit()
        if fit is None:
            return told >= s["start_trials"]
        return told - fit.num_trials >= s["refit_every"]

    # -- fit -----------------------------------------------------------------------------
    def refit(self) -> StoredFit:
        """Fit the MAP and its Laplace posterior to the told trials, and store them.

        Warm-started from the previous fit (the first from
        :func:`~psyphy_pp.fit_map`'s default start). The Laplace covariance is
        the inverse of the Gauss-Newton (Fisher) curvature in whitened weights,
        taken off the rotation gauge as :func:`~psyphy_pp.fit_laplace` does. It
        is positive definite even where the MAP of few trials is not a clean
        minimum, and three times cheaper than the exact Hessian; the draws only
        rank candidate trials.

        Raises:
            ValueError: If no trial has been told yet.
        """
        t = self._store.trials(told=True)
        n = len(t["id"])
        if n == 0:
            raise ValueError(f"no trial of {self.path!r} has been told yet: nothing to fit")
        t0 = time.perf_counter()
        dtype = jnp.result_type(float)
        model = structure(self.model)
        std = prior_std(self.model, dtype)
        arrays = padded_trials([t["refs"], t["comparisons"], t["response"]],
                               np.ones(n, bool), _bucket(n), dtype)
        previous = self._store.latest_fit()
        if previous is None:
            key = jax.random.split(jax.random.PRNGKey(self.settings["seed"]))[0]
            W0 = self.model.sample_prior(key)[SITE_W]
        else:
            W0 = jnp.asarray(previous.W, dtype)
        solve, _ = programs(model)
        W, steps, converged = solve(W0, std, *arrays, defaults.DEFAULT_NUM_STEPS,
                                    defaults.DEFAULT_TOL)
        W = W.block_until_ready()
        t1 = time.perf_counter()
        factor = gauss_newton_factor(model, W, std, arrays)
        info = {"steps": int(steps), "converged": bool(converged),
                "map_seconds": t1 - t0, "hessian_seconds": time.perf_counter() - t1}
        with self._store.write() as conn:
            fit_id = self._store.add_fit(conn, n, np.asarray(W, np.float64), factor, info)
        if not converged:
            logger.warning("refit on %d trials: the MAP did not converge in %d steps", n,
                           int(steps))
        logger.info("refit on %d trials: %s", n, info)
        return StoredFit(fit_id, n, np.asarray(W, np.float64), factor, info)


def _check_model(model: WPPM) -> None:
    if not isinstance(model, WPPM):
        raise ValueError(f"model must be a psyphy_pp.WPPM, got {type(model).__name__}")
    if model.task.method != "quadrature":
        raise ValueError(
            f"Experiment needs the quadrature likelihood (the default of 2D and 3D models), "
            f"whose Hessian its Laplace posterior takes; got task {model.task!r} for "
            f"input_dim {model.input_dim}")
    if model.task.learns_lapse:
        raise ValueError(f"Experiment needs a fixed lapse rate (e.g. Oddity(lapse_rate=0.02)), "
                         f"got task {model.task!r}")


