"""Argument checks shared by the public API; they run before any tracing."""

from __future__ import annotations

import numbers

import numpy as np


def check_positive(name: str, value: object, *, integer: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (an int if asked)."""
    kind = "integer" if integer else "number"
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive {kind}, got {value!r}")


def check_nonnegative(name: str, value: object, *, integer: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0 (an int if asked)."""
    kind = "integer" if integer else "number"
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative {kind}, got {value!r}")


def check_tree_depth(name: str, value: object) -> tuple[int, int]:
    """``value`` as ``(warmup, sampling)`` NUTS tree depths: a positive int caps both.

    Raises:
        ValueError: Unless ``value`` is a positive integer or a pair of them.
    """
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(pair) == 2 and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in pair)
    if not ok:
        raise ValueError(f"{name} must be a positive integer or a pair (warmup, sampling) "
                         f"of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_bool(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is ``True`` or ``False`` (not merely truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_stimuli(name: str, x: object, input_dim: int | None = None) -> np.ndarray:
    """Validate an ``(N, D)`` array of stimuli in ``[-1, 1]``; return it as float64 numpy.

    Concrete arrays only: call this at the API boundary, never inside ``jit``.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {arr.shape}")
    if input_dim is not None and arr.shape[1] != input_dim:
        raise ValueError(
            f"{name} must have shape (N, {input_dim}) to match the model's input_dim, "
            f"got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name} must be finite, got {arr[i, j]} at row {i}, column {j}")
    out = np.abs(arr) > 1.0
    if out.any():
        i, j = np.argwhere(out)[0]
        raise ValueError(
            f"{name} must lie in [-1, 1] (normalise stimuli to the model box first), "
            f"got {arr[i, j]} at row {i}, column {j}"
        )
    return arr


def covariance_triplet(S0: object, S1: object, delta: object, input_dim: int) -> tuple:
    """``S0, S1, delta`` as JAX arrays of one float dtype, shapes ``(..., D, D)`` and ``(..., D)``.

    The dtype is the inputs' common type, at least float32. Raises ``ValueError``
    naming the argument when a trailing shape is not ``(D, D)`` or ``(D,)``.
    """
    import jax.numpy as jnp

    S0, S1, delta = jnp.asarray(S0), jnp.asarray(S1), jnp.asarray(delta)
    d = input_dim
    for name, shape, expected in (("S0", S0.shape, (d, d)), ("S1", S1.shape, (d, d)),
                                  ("delta", delta.shape, (d,))):
        if len(shape) < len(expected) or tuple(shape[len(shape) - len(expected):]) != expected:
            spec = ", ".join(("...",) + tuple(map(str, expected)))
            raise ValueError(
                f"{name} must have shape ({spec}) (only input_dim {d} is supported), "
                f"got {tuple(shape)}"
            )
    dtype = jnp.result_type(S0.dtype, S1.dtype, delta.dtype, jnp.float32)
    return S0.astype(dtype), S1.astype(dtype), delta.astype(dtype)


def is_concrete(x: object) -> bool:
    """True unless ``x`` is a JAX tracer (i.e. we are inside a transformation)."""
    import jax

    return not isinstance(x, jax.core.Tracer)
