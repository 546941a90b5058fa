"""Trials sharded over a device mesh: one layout for every entry point.

The likelihood is a sum over trials, so data parallelism is the natural way to
use more than one device. :func:`fit_map`, :func:`fit_map_scratch`,
:func:`fit_nuts` and :meth:`WPPM.prob_correct` accept ``devices=`` and build
their layout here:

* a 1-D :class:`jax.sharding.Mesh` whose only axis is named :data:`TRIAL_AXIS`
  (``"trials"``);
* trial arrays (references, comparisons, responses, mask) placed with
  ``NamedSharding(mesh, PartitionSpec("trials"))``, the weights ``W`` replicated
  (``PartitionSpec()``); the sum over trials is reduced by XLA under ``jit``;
* ``N`` not divisible by the number of devices is padded *after* the real
  trials with copies of trial 0, and a boolean mask sets their log-likelihood to
  exactly zero (a ``where``, so their gradient is exactly zero too). The real
  trials keep their indices ``0 .. N-1``: a Monte Carlo likelihood, whose noise
  depends only on the key and the trial index, gives the same losses on any
  number of devices (up to the order of the floating-point sum).

``devices`` may be None (every device when there is more than one, otherwise
no sharding at all: the single-device code path is exactly the unsharded one),
a number of devices (the first ``n`` of ``jax.devices()``), a sequence of
``jax.Device``, a 1-D ``Mesh`` with axis ``"trials"``, or a
:class:`TrialSharding`.

Several processes (``jax.distributed.initialize``): the mesh spans the devices
of every process, and each process passes *its own slice* of the trials; the
global data set is the concatenation of the slices in process order (see the
"Scaling up" page of the documentation).
"""

from __future__ import annotations

__all__ = [
    "TRIAL_AXIS",
    "TrialSharding",
    "TrialArrays",
    "trial_sharding",
    "pad_trials",
    "place_trials",
    "run_on_trials",
]

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psyphy_pp._jit import jit
from psyphy_pp._padding import padded_index
from psyphy_pp._typing import Array, PRNGKey
from psyphy_pp._validation import is_concrete

#: Name of the mesh axis over which trials are sharded.
TRIAL_AXIS = "trials"

_EXPECTED = (
    "None, a positive number of devices, a sequence of jax.Device, "
    f"a 1-D jax.sharding.Mesh with axis {TRIAL_AXIS!r} or a psyphy_pp.TrialSharding"
)


@dataclass(frozen=True)
class TrialSharding:
    """Where trials live: a 1-D device mesh with the axis :data:`TRIAL_AXIS`.

    Build it with :func:`trial_sharding`. It is hashable, so it can be a static
    argument of a jitted function.

    Attributes:
        mesh: The mesh; ``mesh.axis_names == ("trials",)``.
    """

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        """Number of devices in the mesh (over all processes)."""
        return int(self.mesh.devices.size)

    @property
    def trials(self) -> NamedSharding:
        """Sharding of an array whose leading axis is the trial axis."""
        return NamedSharding(self.mesh, PartitionSpec(TRIAL_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        """Sharding of a replicated array (the weights ``W``)."""
        return NamedSharding(self.mesh, PartitionSpec())

    def replicate(self, tree: Any) -> Any:
        """Place every leaf of ``tree`` on all devices of the mesh."""
        return jax.device_put(tree, self.replicated)

    def constrain(self, x: Array) -> Array:
        """``with_sharding_constraint`` of a trial-axis array (inside ``jit``)."""
        return jax.lax.with_sharding_constraint(x, self.trials)

    def check_trials(self, num: int) -> None:
        """Raise ``ValueError`` unless ``num`` trials split evenly over the devices."""
        if num % self.num_devices:
            raise ValueError(
                f"the trial arrays must have a length divisible by the {self.num_devices} "
                f"devices of the mesh (pad them with psyphy_pp.sharding.place_trials), got {num}"
            )


DevicesLike = None | int | Sequence[jax.Device] | Mesh | TrialSharding


def trial_sharding(devices: DevicesLike = None) -> TrialSharding | None:
    """Resolve a ``devices=`` setting to a :class:`TrialSharding`, or None for one device.

    Args:
        devices: None (all devices, ``jax.devices()``, when there is more than
            one), a number ``n`` (the first ``n`` devices), a sequence of
            ``jax.Device``, a 1-D ``jax.sharding.Mesh`` whose axis is named
            ``"trials"``, or a :class:`TrialSharding` (returned as it is).

    Returns:
        None when the setting amounts to a single device (the unsharded code
        path), else a :class:`TrialSharding`.

    Raises:
        ValueError: For a setting that is none of the above, a number of devices
            below 1 or above ``jax.device_count()``, repeated devices, or a mesh
            with other axes. Nothing is compiled before the check.

    Examples:
        >>> trial_sharding(1) is None
        True
        >>> trial_sharding(0)
        Traceback (most recent call last):
        ...
        ValueError: devices must be ... got 0
    """
    if isinstance(devices, TrialSharding):
        return devices if devices.num_devices > 1 else None
    if isinstance(devices, Mesh):
        if tuple(devices.axis_names) != (TRIAL_AXIS,):
            raise ValueError(
                f"devices: a Mesh must have exactly one axis, named {TRIAL_AXIS!r}; "
                f"got axis names {tuple(devices.axis_names)}"
            )
        return TrialSharding(devices) if devices.devices.size > 1 else None
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices must be {_EXPECTED}; as a number it must be between 1 and the "
                f"{len(available)} device(s) JAX sees (jax.devices()), got {devices!r}"
            )
        chosen = list(available[: int(devices)])
    elif isinstance(devices, Sequence) and not isinstance(devices, str):
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise ValueError(f"devices must be {_EXPECTED}; got the sequence {devices!r}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"devices must not repeat a device, got {devices!r}")
    else:
        raise ValueError(f"devices must be {_EXPECTED}; got {devices!r}")
    if len(chosen) == 1:
        return None
    return TrialSharding(Mesh(np.array(chosen), (TRIAL_AXIS,)))


def pad_trials(arrays: Sequence[np.ndarray], multiple: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Pad trial arrays to a length divisible by ``multiple``; padding goes last.

    The padding rows copy trial 0 (a valid stimulus whose likelihood is finite),
    the one padding of the package (the likelihood pads its blocks the same way);
    the returned mask is True for the real trials, which keep their indices.

    Args:
        arrays: Arrays with the same leading length ``N >= 1``.
        multiple: The padded length is the smallest multiple of this ``>= N``.

    Returns:
        ``(padded arrays, mask)`` with ``mask.shape == (padded length,)``.

    Examples:
        >>> (x,), mask = pad_trials([np.arange(5.0)], 4)
        >>> x.tolist(), mask.tolist()
        ([0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0], [True, True, True, True, True, False, False, False])
    """
    n = len(arrays[0])
    take = padded_index(n, multiple)
    out = []
    for a in arrays:
        a = np.asarray(a)
        if len(a) != n:
            raise ValueError(f"all trial arrays must have length {n}, got {len(a)}")
        out.append(a[take])
    return out, np.arange(len(take)) < n


class TrialArrays(NamedTuple):
    """Trial arrays ready for a (possibly sharded) jitted computation."""

    refs: Array
    comparisons: Array
    responses: Array | None
    #: True for real trials, False for padding; None when nothing is padded or sharded.
    mask: Array | None
    #: The number of real trials (over all processes).
    num_trials: int


def place_trials(
    sharding: TrialSharding | None,
    refs: np.ndarray,
    comparisons: np.ndarray,
    responses: np.ndarray | None = None,
    *,
    dtype: Any = None,
) -> TrialArrays:
    """Pad and place trial arrays for ``sharding`` (unchanged when it is None).

    With one process, the arrays hold all trials. With several processes
    (``jax.process_count() > 1``), each process passes its own slice; every
    slice is padded to a common length divisible by the process's device count,
    and the global arrays are assembled with
    ``jax.make_array_from_process_local_data``. Real trials then sit in process
    order with each process's padding after its slice; give every process the
    same number of trials, a multiple of its device count, for trial indices
    (and so Monte Carlo noise) identical to a one-process run.

    Args:
        sharding: From :func:`trial_sharding`; None means one device, no mask.
        refs: Reference stimuli ``(N, D)``.
        comparisons: Comparison stimuli ``(N, D)``.
        responses: Responses ``(N,)`` or None.
        dtype: Floating dtype of the placed arrays (default: JAX's float).

    Returns:
        A :class:`TrialArrays`.
    """
    dtype = dtype or jnp.result_type(float)
    arrays = [np.asarray(refs, dtype), np.asarray(comparisons, dtype)]
    if responses is not None:
        arrays.append(np.asarray(responses, dtype))
    if sharding is None:
        placed = [jnp.asarray(a) for a in arrays]
        return TrialArrays(placed[0], placed[1], placed[2] if responses is not None else None,
                           None, len(arrays[0]))
    if jax.process_count() == 1:
        padded, mask = pad_trials(arrays, sharding.num_devices)
        placed = jax.device_put(padded + [mask], sharding.trials)
        num_trials = len(arrays[0])
    else:
        from jax.experimental import multihost_utils

        local = len(sharding.mesh.local_devices)
        counts = np.asarray(multihost_utils.process_allgather(np.array([len(arrays[0])]))).ravel()
        length = int(max(math.ceil(c / local) for c in counts)) * local
        padded, mask = pad_trials(arrays, local)
        if len(mask) < length:  # pad every slice to the longest one
            padded, mask2 = pad_trials(padded, length)
            mask = mask2 & np.concatenate([mask, np.zeros(len(mask2) - len(mask), bool)])
        placed = [
            jax.make_array_from_process_local_data(
                sharding.trials, a, (length * jax.process_count(),) + a.shape[1:])
            for a in padded + [mask]
        ]
        num_trials = int(counts.sum())
    return TrialArrays(placed[0], placed[1], placed[2] if responses is not None else None,
                       placed[-1], num_trials)


#: ``logits(W, refs, comparisons, key, trial_index, block_size)`` of a model.
LogitsFn = Callable[..., Array]


def run_on_trials(
    logits: LogitsFn,
    sharding: TrialSharding | None,
    W: Array,
    refs: Array,
    comparisons: Array,
    key: PRNGKey | None,
    *,
    block_size: int,
    fixed_block: bool = False,
) -> Array:
    """Evaluate ``logits`` on trial arrays placed for ``sharding``, through ``jax.jit``.

    Args:
        logits: ``logits(W, refs, comparisons, key, trial_index=None, block_size=None)``,
            hashable (a bound method of a frozen model): it is a static argument of
            the compiled function.
        sharding: From :func:`trial_sharding`; None runs ``logits`` as it is.
        W: The weights (replicated).
        refs: Reference stimuli ``(N, D)``, placed (:func:`place_trials`).
        comparisons: Comparison stimuli ``(N, D)``, placed.
        key: The noise key the task uses (None for a deterministic task).
        block_size: Trials the task evaluates at once.
        fixed_block: True when the user chose ``block_size``; it is then kept.

    Returns:
        The logits, shape ``(N,)``, sharded like ``refs``.
    """
    # Always through a jit. Traced arguments get the plain jax.jit (compiler
    # options belong to the outermost jit only): inside an outer jit it is
    # inlined, and under an eager grad (NumPyro traces its model that way to
    # initialise) it runs as one compiled call instead of hundreds of separately
    # compiled primitives.
    args = (W, refs, comparisons, key)
    run = _run_jit if all(is_concrete(a) for a in args) else _run_nested
    return run(logits, sharding, *args, block_size=block_size, fixed_block=fixed_block)


def _run(
    logits: LogitsFn, sharding: TrialSharding | None, W: Array, refs: Array,
    comparisons: Array, key: PRNGKey | None, *, block_size: int, fixed_block: bool,
) -> Array:
    """:func:`run_on_trials`, not jitted.

    The task evaluates its trials block by block (``jax.lax.map``), a sequential
    loop that XLA cannot split across devices. So:

    * when each device holds at most one block of trials, the task sees the
      global arrays as one block, and XLA partitions the trial axis itself
      (cheap to compile);
    * otherwise each device runs the task's block loop on its own shard
      (``jax.shard_map``), passing the shard's global trial indices, so that a
      Monte Carlo trial's noise is the same on any number of devices.
    """
    if sharding is None:
        return logits(W, refs, comparisons, key)
    n = refs.shape[0]
    sharding.check_trials(n)
    if n <= block_size or (n // sharding.num_devices <= block_size and not fixed_block):
        z = logits(W, sharding.constrain(refs), sharding.constrain(comparisons), key,
                   block_size=n)
        return sharding.constrain(z)
    trials = PartitionSpec(TRIAL_AXIS)

    def shard(W: Array, r: Array, c: Array, key: PRNGKey | None) -> Array:
        local = r.shape[0]
        index = jax.lax.axis_index(TRIAL_AXIS) * local + jnp.arange(local)
        return logits(W, r, c, key, index)

    if key is None:  # a deterministic task: nothing to pass
        return jax.shard_map(
            lambda W, r, c: shard(W, r, c, None), mesh=sharding.mesh,
            in_specs=(PartitionSpec(), trials, trials), out_specs=trials,
        )(W, refs, comparisons)
    return jax.shard_map(
        shard, mesh=sharding.mesh,
        in_specs=(PartitionSpec(), trials, trials, PartitionSpec()), out_specs=trials,
    )(W, refs, comparisons, key)


_run_jit = jit(_run, static_argnums=(0, 1), static_argnames=("block_size", "fixed_block"))
_run_nested = jax.jit(_run, static_argnums=(0, 1), static_argnames=("block_size", "fixed_block"))
