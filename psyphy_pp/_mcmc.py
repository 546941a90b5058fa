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

Chains run one after another (``"sequential"``), in one ``vmap``
(``"vectorized"``), or one per device (``"parallel"``, ``jax.pmap``, which takes
no compiler options).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp._jit import jit
from psyphy_pp._progress import progress

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
        chain_method: ``"sequential"``, ``"vectorized"`` or ``"parallel"``.
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

    def run(states, step, bar) -> list:
        """Call the compiled ``step`` chunk by chunk; the records of every iteration, in order."""
        out = []
        for start in range(0, total, size):
            n = min(size, total - start)
            states, buf = step(states, n, model_args, model_kwargs)
            out.append(jax.tree.map(lambda b, n=n: np.asarray(b[:n]), buf))
            bar.update(n * (1 if chain_method == "sequential" else num_chains))
        return out

    with progress(num_chains * total, desc, progress_bar) as bar:
        if chain_method == "sequential":
            compiled = jit(chunk)
            per_chain = []
            for c in range(num_chains):
                state = kernel.init(keys[c], num_warmup, None, model_args, model_kwargs)
                per_chain.append(_stack(run(state, compiled, bar)))
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
