"""Type aliases shared across psyphy_pp."""

from __future__ import annotations

__all__ = ["Array", "ArrayLike", "PRNGKey", "Params"]

from typing import Dict

import jax

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
Params = Dict[str, jax.Array]
