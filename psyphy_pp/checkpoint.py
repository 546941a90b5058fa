"""Where a MAP fit stopped, so that it can go on: the optimiser state and the stopping rule.

Every :class:`~psyphy_pp.MapResult` carries a :class:`Checkpoint`: the step the
loop reached, the leaves of its state (parameters and optimiser state, for
example L-BFGS's memory), the parameter vectors the stopping rule's window holds,
and the losses so far. ``fit_map(model, data, resume=result)`` (or
``fit_map_scratch``) rebuilds the loop's state from it and continues with the same
key schedule, so a fit on a deterministic likelihood that was interrupted and
resumed ends where an uninterrupted one does. :meth:`Checkpoint.save` and
:meth:`Checkpoint.load` keep it in an ``.npz`` file (``psyphy-pp fit`` writes
``checkpoint.npz`` next to ``fit.npz``).

Examples:
    >>> import numpy as np
    >>> c = Checkpoint(method="scratch", step=3, leaves=[np.zeros(2)], window=[],
    ...                losses=np.array([1.0, 0.9, 0.8]))
    >>> c.step, len(c.leaves)
    (3, 1)
"""

from __future__ import annotations

__all__ = ["Checkpoint", "CHECKPOINT_FILE"]

import os
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from psyphy_pp._files import atomic_path, not_a_file_of, read_npz

#: The file name ``psyphy-pp fit`` gives the checkpoint in its output directory.
CHECKPOINT_FILE = "checkpoint.npz"
_FORMAT = 1
_AGAIN = "start the fit again without resume"


@dataclass(frozen=True)
class Checkpoint:
    """The state of a MAP loop after ``step`` steps.

    Attributes:
        method: ``"svi"`` (:func:`~psyphy_pp.fit_map`) or ``"scratch"``
            (:func:`~psyphy_pp.fit_map_scratch`); a checkpoint resumes the same loop.
        step: The number of steps run; the next step is ``step``.
        leaves: The leaves of the loop's state (``jax.tree_util.tree_leaves``),
            as numpy arrays.
        window: The flattened parameter vectors in the stopping rule's window,
            oldest first.
        losses: The losses of the steps run.
        settings: What must match to resume: ``optimizer``, ``seed``, ``tol``,
            ``num_trials``.
    """

    method: str
    step: int
    leaves: list[np.ndarray]
    window: list[np.ndarray]
    losses: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Checkpoint(method={self.method!r}, step={self.step}, "
                f"{len(self.leaves)} state arrays, window of {len(self.window)})")

    def restore(self, fresh_state: Any) -> Any:
        """This checkpoint's state in the structure (and placement) of ``fresh_state``.

        Raises:
            ValueError: If the structure differs (another optimiser or model).
        """
        fresh, treedef = jax.tree_util.tree_flatten(fresh_state)
        shapes = [tuple(np.shape(a)) for a in fresh]
        saved = [tuple(a.shape) for a in self.leaves]
        if shapes != saved:
            raise ValueError(
                "resume: the checkpoint's optimiser state does not fit this fit (another "
                f"optimizer or model?): {len(saved)} arrays of shapes {saved[:4]}..., "
                f"expected {len(shapes)} of shapes {shapes[:4]}..."
            )
        leaves = [jax.device_put(np.asarray(a, dtype=np.asarray(f).dtype),
                                 getattr(f, "sharding", None))
                  for a, f in zip(self.leaves, fresh)]
        return jax.tree_util.tree_unflatten(treedef, leaves)

    def check_settings(self, method: str, settings: dict[str, Any]) -> None:
        """Raise ``ValueError`` unless this checkpoint can resume a fit with ``settings``."""
        if method != self.method:
            raise ValueError(
                f"resume: the checkpoint comes from method={self.method!r}, so resume it "
                f"with {'fit_map' if self.method == 'svi' else 'fit_map_scratch'}, "
                f"not method={method!r}"
            )
        for name, saved in self.settings.items():
            if settings.get(name) != saved:
                raise ValueError(
                    f"resume: {name} must be what the interrupted fit used, {saved!r}; "
                    f"got {settings.get(name)!r}"
                )

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the checkpoint to an ``.npz`` file, in one step (atomically).

        Raises:
            FileExistsError: If ``path`` exists and ``overwrite`` is False.
        """
        arrays = {f"leaf_{i}": a for i, a in enumerate(self.leaves)}
        arrays.update({f"window_{i}": a for i, a in enumerate(self.window)})
        meta = dict(self.settings, method=self.method, step=self.step, format=_FORMAT,
                    num_leaves=len(self.leaves), num_window=len(self.window))
        arrays["losses"] = np.asarray(self.losses)
        arrays["meta"] = np.array(repr(sorted(meta.items())))
        with atomic_path(path, overwrite) as part, open(part, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # the stubs read it as allow_pickle

    @classmethod
    def load(cls, path: str | os.PathLike) -> Checkpoint:
        """Read a checkpoint written by :meth:`save`.

        Raises:
            ValueError: If the file is missing, damaged or not a checkpoint.
        """
        import ast

        source = os.fspath(path)
        if not os.path.isfile(source):
            raise ValueError(f"no checkpoint at {source!r}")
        arrays = read_npz(source, "checkpoint", rewrite=_AGAIN, foreign=_AGAIN)
        try:
            meta = dict(ast.literal_eval(str(arrays["meta"])))
            leaves = [arrays[f"leaf_{i}"] for i in range(meta.pop("num_leaves"))]
            window = [arrays[f"window_{i}"] for i in range(meta.pop("num_window"))]
            losses = arrays["losses"]
            method, step = meta.pop("method"), int(meta.pop("step"))
        except (KeyError, ValueError, SyntaxError, TypeError) as err:
            raise not_a_file_of("checkpoint", source, f"damaged: {err}", _AGAIN) from None
        meta.pop("format", None)
        return cls(method=method, step=step, leaves=leaves, window=window,
                   losses=losses, settings=meta)
