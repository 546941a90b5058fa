"""Run a NumPyro MCMC kernel (NUTS) in loops compiled by :func:`psyphy_pp._jit.jit`.

NumPyro's :class:`~numpyro.infer.MCMC` compiles its sampling loop with a plain
``jax.jit``, so on CPU XLA's YNNPACK fusions stay on inside it. On the
6,000-trial degree-4 observer of ``benchmarks/bench_nuts.py`` a leapfrog step
took 8.6 ms that way and 4.8 ms in this module's loop (NUTS at a fixed step size,
15,435 steps each). Compiler options can only be set on the outermost jit, so this
module drives the same kernel through NumPyro's public kernel interface
(``init``, ``sample``, ``postprocess_fn``) in chunks of iterations, each chunk one
call of a function compiled with psyphy_pp's options, and updates psyphy_pp's
progress bar between chunks.

Chains run one after another (``"sequential"``), at the same time in host
threads (``"threaded"``), in one ``vmap`` (``"vectorized"``), or one per device
(``"parallel"``, ``jax.pmap``, which takes no compiler options).

Threaded chains share one compiled chunk and one device; XLA runs calls from
different threads at the same time. One call of the 6,000-trial likelihood
gains only about 1.35x from a second core (6.8 ms on one core, about 5 ms on
two), so two chains side by side keep the cores busier and finish sooner than one after
another: 2 x (50 + 100) NUTS iterations took 84 s threaded against 111 s
sequential, with the same draws (``python -m benchmarks.bench_nuts --num-warmup
50 --num-draws 100 --baseline sequential``). Each thread's chain uses the same
key and arithmetic as in ``"sequential"``.
"""

from __future__ import annotations

import math
import operator
import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp._jit import jit
from psyphy_pp._progress import progress
from psyphy_pp._validation import check_choice
from psyphy_pp._warnings import PsyphyWarning

#: Accepted values of ``chain_method`` (``"auto"`` picks one of the others, see
#: :func:`resolve_chain_method`).
CHAIN_METHODS = ("auto", "parallel", "threaded", "sequential", "vectorized")

#: Progress-bar updates per chain (each is one call of the compiled chunk).
_CHUNKS = 50


class KernelDraws(NamedTuple):
    """What :func:`run_kernel` returns; every array has shape ``(chains, draws, ...)``."""

    #: Post-warmup draws of every site, constrained, deterministic sites included.
    samples: dict[str, np.ndarray]
    #: The requested state fields (e.g. ``"num_steps"``, ``"adapt_state.step_size"``).
    fields: dict[str, np.ndarray]


def run_kernel(
    kernel: Any,
    key: jax.Array,
    model_args: tuple,
    model_kwargs: dict,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    chain_method: str,
    fields: Sequence[str] = (),
    progress_bar: bool = True,
    desc: str = "NUTS",
) -> KernelDraws:
    """Warm up and sample ``num_chains`` chains of a NumPyro MCMC kernel.

    Args:
        kernel: A :class:`numpyro.infer.NUTS` (or another ``MCMCKernel``) whose
            ``init_strategy`` sets the start.
        key: The PRNG key; chain ``c`` uses ``split(key, num_chains)[c]`` (the key
            itself for one chain, as :class:`numpyro.infer.MCMC` does).
        model_args: Positional arguments of the model (arrays; they enter the
            compiled loop as arguments and keep their sharding).
        model_kwargs: Keyword arguments of the model.
        num_warmup: Adaptation iterations per chain (not kept).
        num_samples: Draws kept per chain.
        num_chains: Number of chains.
        chain_method: ``"sequential"``, ``"threaded"``, ``"vectorized"`` or
            ``"parallel"`` (see the module docstring).
        fields: Dotted names of kernel-state fields to keep per draw.
        progress_bar: Show a progress bar (iterations of all chains).
        desc: The bar's label.

    Returns:
        A :class:`KernelDraws`.
    """
    keys = jax.random.split(key, num_chains) if num_chains > 1 else key[None]
    total = num_warmup + num_samples
    size = max(1, math.ceil(total / _CHUNKS))
    getters = {f: operator.attrgetter(f) for f in fields}

    def record(state):
        return {"z": state.z, **{f: get(state) for f, get in getters.items()}}

    def chunk(state, n, args, kwargs):
        """Run ``n <= size`` iterations from ``state``; the records in a ``size`` buffer."""
        buf = jax.tree.map(lambda v: jnp.zeros((size, *jnp.shape(v)), jnp.result_type(v)),
                           record(state))

        def body(i, carry):
            state, buf = carry
            state = kernel.sample(state, args, kwargs)
            buf = jax.tree.map(lambda b, v: b.at[i].set(v), buf, record(state))
            return state, buf

        return jax.lax.fori_loop(0, n, body, (state, buf))

    def run(states, step, bar, stop=None) -> list:
        """Call the compiled ``step`` chunk by chunk; the records of every iteration, in order.

        A set ``stop`` event ends the loop between chunks (another chain failed).
        """
        out = []
        for start in range(0, total, size):
            if stop is not None and stop.is_set():
                raise _Stopped
            n = min(size, total - start)
            states, buf = step(states, n, model_args, model_kwargs)
            out.append(jax.tree.map(lambda b, n=n: np.asarray(b[:n]), buf))
            bar.update(n * (1 if chain_method in ("sequential", "threaded") else num_chains))
        return out

    with progress(num_chains * total, desc, progress_bar) as bar:
        if chain_method in ("sequential", "threaded"):
            states = [kernel.init(keys[c], num_warmup, None, model_args, model_kwargs)
                      for c in range(num_chains)]
            compiled: Any = jit(chunk)
            if chain_method == "sequential":
                per_chain = [_stack(run(state, compiled, bar)) for state in states]
            else:  # compiled once, before the threads call it
                compiled = compiled.lower(states[0], size, model_args, model_kwargs).compile()
                per_chain = _run_in_threads(run, states, compiled, bar)
            records = jax.tree.map(lambda *xs: np.stack(xs), *per_chain)  # (chains, iters, ...)
        else:
            if chain_method == "parallel":  # one unbatched kernel per device
                states = [kernel.init(keys[c], num_warmup, None, model_args, model_kwargs)
                          for c in range(num_chains)]
                state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
                mapped = jax.pmap(chunk, in_axes=(0, None, None, None), out_axes=(0, 1))
            else:  # vectorized: the batched init vmaps kernel.sample itself
                state = kernel.init(keys, num_warmup, None, model_args, model_kwargs)
                mapped = jit(chunk)
            records = jax.tree.map(lambda x: np.swapaxes(x, 0, 1), _stack(run(state, mapped, bar)))
    kept = jax.tree.map(lambda x: x[:, num_warmup:], records)
    return KernelDraws(_postprocess(kernel, kept.pop("z"), model_args, model_kwargs), kept)


def _run_in_threads(run: Any, states: list, compiled: Any, bar: Any) -> list:
    """``run`` each chain's state in its own host thread; the stacked records, in chain order.

    The compiled chunk is shared; XLA runs calls from different threads at the
    same time, so the chains share the cores. A failure (or Ctrl-C) stops the
    other chains at their next chunk and is raised here.
    """
    stop, locked = threading.Event(), _LockedBar(bar)
    futures: list = []
    # A thread per chain even with more chains than cores: XLA schedules the work,
    # and a chain that fails stops the others at once rather than after a queue.
    with ThreadPoolExecutor(max_workers=len(states)) as pool:
        try:
            futures = [pool.submit(run, state, compiled, locked, stop) for state in states]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            if len(futures) < len(states) or not all(
                    f.done() and f.exception() is None for f in futures):
                stop.set()
    # Every chain has ended; the others stopped with _Stopped after a real failure.
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None and not isinstance(error, _Stopped):
            raise error
    return [_stack(f.result()) for f in futures]


def host_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_chain_method(chain_method: str, num_chains: int, num_devices: int | None = None,
                         *, auto_parallel: bool = True) -> str:
    """The way ``num_chains`` chains run, for ``chain_method`` (one of :data:`CHAIN_METHODS`).

    ``"auto"`` picks ``"parallel"`` (one chain per device) when there are at least
    as many devices as chains and ``auto_parallel``; else ``"threaded"`` (one host
    thread per chain) for several chains on one CPU device of a machine with more
    than one core; else ``"sequential"``. ``"parallel"`` with too few devices warns
    and falls back to that choice.

    Args:
        chain_method: The requested method.
        num_chains: Number of chains.
        num_devices: Devices available to the chains (default: every JAX device).
        auto_parallel: Whether ``"auto"`` may pick ``"parallel"``.

    Raises:
        ValueError: If ``chain_method`` is not one of :data:`CHAIN_METHODS`.
    """
    check_choice("chain_method", chain_method, CHAIN_METHODS)
    if num_devices is None:
        num_devices = len(jax.devices())
    if chain_method == "parallel" and num_chains > 1 and num_devices < num_chains:
        chain_method = resolve_chain_method("auto", num_chains, num_devices, auto_parallel=False)
        warnings.warn(
            f"chain_method='parallel' needs {num_chains} devices but JAX sees {num_devices}; "
            f"running the chains {'in threads' if chain_method == 'threaded' else 'sequentially'}."
            f" Call numpyro.set_host_device_count({num_chains}) before JAX is first used "
            "to have one device per chain.",
            PsyphyWarning,
            stacklevel=3,
        )
        return chain_method
    if chain_method == "threaded" and num_devices > 1:
        warnings.warn(
            f"chain_method='threaded' runs the chains on one device, but the trials are "
            f"sharded over {num_devices}; running the chains sequentially.",
            PsyphyWarning,
            stacklevel=3,
        )
        return "sequential"
    if chain_method != "auto":
        return chain_method
    if auto_parallel and num_chains > 1 and num_devices >= num_chains:
        return "parallel"
    if (num_chains > 1 and num_devices == 1 and jax.default_backend() == "cpu"
            and host_cores() > 1):
        return "threaded"
    return "sequential"


class _Stopped(Exception):
    """Raised in a chain's thread when another chain failed."""


class _LockedBar:
    """A progress bar that several threads update."""

    def __init__(self, bar: Any) -> None:
        self._bar, self._lock = bar, threading.Lock()

    def update(self, n: int) -> None:
        with self._lock:
            self._bar.update(n)


def _stack(chunks: list) -> dict:
    return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks)


def _postprocess(kernel: Any, z: dict, model_args: tuple, model_kwargs: dict) -> dict:
    """Constrained values (and deterministic sites) of unconstrained draws ``(chains, draws)``."""
    lead = next(iter(jax.tree.leaves(z))).shape[:2]
    flat = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), z)

    @jit
    def transform(flat, args, kwargs):
        return jax.lax.map(kernel.postprocess_fn(args, kwargs), flat)

    out = transform(flat, model_args, model_kwargs)
    return {k: np.asarray(v).reshape((*lead, *np.shape(v)[1:])) for k, v in out.items()}
