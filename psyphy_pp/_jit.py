"""``jax.jit`` with the compiler options psyphy_pp's hot loops want on CPU.

On the CPUs we measured (jaxlib 0.10), XLA hands reductions to its YNNPACK
backend, which made value-and-grad of the likelihood 2-4x slower than XLA's own
code (benchmarks/quadrature_accuracy.py --no-ynn). The option is set per
compiled function, never through the process-wide ``XLA_FLAGS``. NumPyro's own
jits are not affected, which is why NUTS runs NumPyro's kernel in
:mod:`psyphy_pp._mcmc`'s loop, compiled here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@lru_cache(maxsize=1)
def compiler_options() -> dict | None:
    """The options for the default backend (None off CPU)."""
    return dict(_CPU_OPTIONS) if jax.default_backend() == "cpu" else None


def jit(fn: Callable | None = None, **kwargs: Any) -> Callable:
    """``jax.jit(fn, compiler_options=compiler_options(), **kwargs)``; usable as a decorator."""
    if fn is None:
        return lambda f: jit(f, **kwargs)
    return jax.jit(fn, compiler_options=compiler_options(), **kwargs)
