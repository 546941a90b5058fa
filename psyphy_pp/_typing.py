"""Type aliases shared across psyphy_pp."""

from __future__ import annotations

__all__ = ["Array", "ArrayLike", "PRNGKey", "Params"]


import jax

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
Params = dict[str, jax.Array]
