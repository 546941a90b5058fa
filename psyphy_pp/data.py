"""Trial data: a validated container for oddity-task responses."""

from __future__ import annotations

__all__ = ["TrialData"]

import os
from dataclasses import dataclass

import numpy as np

from psyphy_pp._validation import check_stimuli


@dataclass(frozen=True)
class TrialData:
    """Oddity-task trials: references, comparisons and binary responses.

    Arrays are validated and stored as numpy (float64 stimuli, int responses):
    shapes ``(N, D)``, ``(N, D)`` and ``(N,)``, finite stimuli in ``[-1, 1]``,
    responses in {0, 1} (1 = correct).

    Args:
        refs: Reference stimuli, shape ``(N, D)``.
        comparisons: Comparison stimuli, shape ``(N, D)``.
        responses: 1 if the observer picked the comparison as the odd one.

    Examples:
        >>> data = TrialData([[0.0, 0.0]], [[0.1, 0.0]], [1])
        >>> data.num_trials, data.input_dim
        (1, 2)
    """

    refs: np.ndarray
    comparisons: np.ndarray
    responses: np.ndarray

    def __post_init__(self) -> None:
        refs = check_stimuli("refs", self.refs)
        comps = check_stimuli("comparisons", self.comparisons)
        if comps.shape != refs.shape:
            raise ValueError(
                f"comparisons must have the same shape as refs {refs.shape}, got {comps.shape}"
            )
        y = np.asarray(self.responses)
        if y.shape != (refs.shape[0],):
            raise ValueError(
                f"responses must have shape ({refs.shape[0]},) to match refs, got {y.shape}"
            )
        if y.size and not np.isin(y, (0, 1)).all():
            i = int(np.flatnonzero(~np.isin(y, (0, 1)))[0])
            raise ValueError(f"responses must be 0 or 1, got {y[i].item()!r} at index {i}")
        if refs.shape[0] == 0:
            raise ValueError("TrialData needs at least one trial, got N = 0")
        object.__setattr__(self, "refs", refs)
        object.__setattr__(self, "comparisons", comps)
        object.__setattr__(self, "responses", y.astype(np.int32))

    @property
    def num_trials(self) -> int:
        """Number of trials ``N``."""
        return self.refs.shape[0]

    @property
    def input_dim(self) -> int:
        """Stimulus dimension ``D``."""
        return self.refs.shape[1]

    def check_model(self, input_dim: int) -> None:
        """Raise ``ValueError`` if the data's ``D`` differs from the model's."""
        if self.input_dim != input_dim:
            raise ValueError(
                f"data has input_dim {self.input_dim} but the model expects "
                f"input_dim={input_dim}"
            )

    def unique_refs(self) -> np.ndarray:
        """The distinct reference points, shape ``(R, D)``, in sorted order."""
        return np.unique(self.refs, axis=0)

    def save(self, path: str | os.PathLike) -> None:
        """Write the trials to an ``.npz`` file."""
        np.savez(path, refs=self.refs, comparisons=self.comparisons, responses=self.responses)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrialData:
        """Read trials written by :meth:`save` (validated again)."""
        with np.load(path) as f:
            missing = [k for k in ("refs", "comparisons", "responses") if k not in f.files]
            if missing:
                raise ValueError(f"{os.fspath(path)!r} lacks arrays {missing}")
            return cls(f["refs"], f["comparisons"], f["responses"])
