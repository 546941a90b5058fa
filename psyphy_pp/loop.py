"""The loop both MAP fits run: steps until converged, stopped, interrupted or diverged.

:func:`run_loop` drives ``state, loss = step(state, t)`` for
:func:`~psyphy_pp.fit_map` (NumPyro SVI) and :func:`~psyphy_pp.fit_map_scratch`
(the hand-written optax loop) alike. It owns every decision about when a fit
stops and what it reports:

* **converged:** the stopping rule (:class:`~psyphy_pp.optim.Convergence`) is met;
* **ran out:** ``num_steps`` steps ran first;
* **interrupted:** SIGINT (Ctrl-C) arrived; the loop stops at the next step
  boundary, never inside a compiled step (a second Ctrl-C stops at once);
* **diverged:** a loss became non-finite, or (on a deterministic objective, the
  default) the loss ended higher than it started: :class:`FitDivergedError`, with
  the last good parameters.

Whatever the outcome, the loop leaves a :class:`~psyphy_pp.checkpoint.Checkpoint`
from which ``resume=`` continues.
"""

from __future__ import annotations

__all__ = ["run_loop", "FitDivergedError", "RESUME_SETTINGS"]

import collections
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from psyphy_pp._progress import progress
from psyphy_pp._typing import Params
from psyphy_pp.checkpoint import Checkpoint
from psyphy_pp.optim import Convergence

logger = logging.getLogger(__name__)

#: The settings a resumed fit must share with its checkpoint.
RESUME_SETTINGS = ("optimizer", "seed", "tol", "num_trials")


class FitDivergedError(FloatingPointError):
    """A fit diverged: its loss became non-finite, or ended higher than it started.

    Attributes:
        step: The first step with a non-finite loss, or the number of steps run
            when the loss ended higher than it started.
        last_params: The last parameters whose loss was finite (the parameters
            of the lowest loss, when the loss ended higher than it started).
        losses: The losses of the steps before ``step``.
        result: A :class:`MapResult` of the fit up to ``last_params``
            (``converged=False``), for saving what was done; set by the fit
            functions.
    """

    def __init__(self, step: int, last_params: Params, learning_rate: float | None,
                 losses: np.ndarray | None = None, *, worse: tuple[float, float] | None = None):
        self.step = step
        self.last_params = last_params
        self.losses = np.empty(0) if losses is None else losses
        self.result: Any = None  # a psyphy_pp.MapResult
        hint = (
            f"try a smaller learning_rate than {learning_rate}"
            if learning_rate is not None
            else "try a smaller learning rate"
        )
        if worse is None:
            what = f"the loss became non-finite at step {step}"
        else:
            what = (f"the loss ended higher than it started ({worse[1]:.6g} > {worse[0]:.6g} "
                    f"nats per trial after {step} steps; last_params are those of the lowest "
                    "loss)")
        super().__init__(f"{what}; {hint} or enable gradient clipping (clip_norm=1.0)")


class _StopOnSigint:
    """While active, the first SIGINT (Ctrl-C) asks the loop to stop at the next
    step boundary instead of raising inside a step; a second one raises as usual.
    Only the main thread can handle signals; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # asked twice: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_loop(
    step: Callable[[Any, int], tuple[Any, jax.Array]],
    state: Any,
    get_params: Callable[[Any], Params],
    num_steps: int,
    *,
    desc: str,
    progress_bar: bool,
    settings: dict,
    method: str = "scratch",
    resume: Checkpoint | None = None,
) -> tuple[Any, Any, np.ndarray, dict]:
    """Drive ``state, loss = step(state, t)`` until converged or ``num_steps`` ran.

    Shows a progress bar, applies ``settings["convergence"]`` (the stopping
    rule, or None to run every step), stops with :class:`FitDivergedError` at
    the first non-finite loss (the state before that step is kept on the
    exception) or when the loss ends higher than it started, and stops at a step
    boundary on SIGINT (Ctrl-C), with ``info["interrupted"]`` True. With
    ``resume``, ``state`` is already the checkpoint's and the loop continues from
    ``resume.step`` with its stopping-rule window and losses.

    Returns:
        ``(state, last_state, losses, info)``: the final state, the state at
        which the last loss was evaluated, the losses of the steps that ran,
        and ``info`` with ``converged``, ``convergence`` (in words),
        ``interrupted``, ``checkpoint`` (a :class:`~psyphy_pp.checkpoint.Checkpoint`),
        ``first_step_seconds`` (including compilation) and ``seconds_per_step``
        (the mean of the others).
    """
    rule: Convergence | None = settings["convergence"]
    learning_rate = settings["learning_rate"]
    losses = np.full(num_steps, np.nan)
    recent: collections.deque = collections.deque(maxlen=1 if rule is None else rule.window + 1)
    begin = 0
    if resume is not None:
        begin = resume.step
        losses[:begin] = resume.losses[:begin]
        recent.extend(resume.window)
    converged = interrupted = False
    start = time.perf_counter()
    first = start
    t = begin - 1
    last_state = state
    best_state, best_loss = state, math.inf
    change = math.nan
    with progress(num_steps, desc, progress_bar) as bar, _StopOnSigint() as sigint:
        bar.update(begin)
        for t in range(begin, num_steps):
            if sigint.requested:
                interrupted, t = True, t - 1
                break
            new_state, loss = step(state, t)
            losses[t] = loss  # waits for the step to finish
            if t == begin:
                first = time.perf_counter()
            if not np.isfinite(losses[t]):  # at params(state); losses[t - 1] at last_state's
                good = get_params(last_state if t else state)
                raise FitDivergedError(t, good, learning_rate, losses[:t].copy())
            if losses[t] < best_loss:
                best_state, best_loss = state, losses[t]
            last_state, state = state, new_state
            bar.update(1)
            if t % 10 == 0:
                bar.set_postfix_str(f"loss {losses[t]:.6g}")
            if rule is not None:
                flat = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(get_params(state))])
                recent.append(flat)
                if len(recent) == recent.maxlen:  # window + 1 parameter vectors
                    change = rule.change(flat, recent[0])
                    if rule.converged(change):
                        converged = True
                        break
    num_run = t + 1
    if num_run == 0:  # interrupted before the first step: nothing to keep
        raise KeyboardInterrupt
    losses = losses[:num_run]
    params = get_params(state)
    if not all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(params)):
        raise FitDivergedError(num_run, get_params(last_state), learning_rate, losses)
    # Judged on a deterministic objective only: with fresh Monte Carlo noise each
    # loss is a noisy estimate (0.62 -> 0.87 nats per trial in 3 steps with 50
    # samples on 40 trials), and a rise says nothing about divergence.
    if rule is not None and num_run > 1 and losses[-1] > losses[0] + 1e-6 * abs(losses[0]):
        raise FitDivergedError(num_run, get_params(best_state), learning_rate, losses,
                               worse=(float(losses[0]), float(losses[-1])))
    end = time.perf_counter()
    if interrupted:
        note = (f"interrupted (SIGINT) after {num_run} steps; continue with "
                "resume=result (psyphy-pp fit --resume DIR)")
        converged_flag: bool | None = False
    elif rule is None:
        note = ("not assessed: with fresh Monte Carlo noise the loss is a noisy estimate, "
                f"so all {num_steps} steps ran")
        converged_flag = None
    elif converged:
        note = (f"converged at step {num_run}: the parameters moved by {change:.2g} <= tol "
                f"{rule.tol:g} (relative) over the last {rule.window} steps")
        converged_flag = True
    else:
        note = (f"did not converge in num_steps={num_steps}: the parameters still moved by "
                f"{change:.2g} (relative; tol {rule.tol}) over the last {rule.window} steps; "
                "raise num_steps, or continue with resume=result")
        converged_flag = False
    checkpoint = Checkpoint(
        method=method, step=num_run,
        leaves=[np.asarray(a) for a in jax.tree_util.tree_leaves(state)],
        window=list(recent), losses=losses.copy(),
        settings={k: settings[k] for k in RESUME_SETTINGS},
    )
    ran = num_run - begin
    info = {
        "converged": converged_flag,
        "convergence": note,
        "interrupted": interrupted,
        "checkpoint": checkpoint,
        "first_step_seconds": first - start,  # includes compilation
        "seconds_per_step": (end - first) / (ran - 1) if ran > 1 else None,
    }
    logger.info("%s: %d steps, loss %.6g -> %.6g; %s", desc, num_run, losses[0], losses[-1], note)
    return state, last_state, losses, info
