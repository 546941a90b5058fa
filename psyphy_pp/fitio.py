"""Save a fit to one file and open it again later, in another session.

A fit file is a NumPy ``.npz`` archive (read without pickles) holding:

* ``W``: the weights, ``model.weights_shape`` for a point estimate (MAP, a
  ground truth) or ``(chains, draws) + weights_shape`` for posterior draws (NUTS);
* ``lapse_rate``: a learnt lapse rate (``Oddity(lapse_rate="learn")``), a
  scalar or ``(chains, draws)``; absent otherwise;
* ``losses``: the optimiser's loss trace, when there is one;
* ``refs``, ``comparisons``, ``responses`` (and ``meta:<name>`` columns): the
  trials, in model units, unless saved with ``include_data=False``;
* ``header``: a JSON document with the file format and its version, the
  psyphy_pp version that wrote it, the kind of fit, the model's settings
  (including the likelihood task), the normalisation from the user's units, and
  the fit settings.

:func:`save_fit` writes the file in one step (a temporary file next to it,
then a rename), so an interrupted save leaves no partial file, and it refuses
to replace an existing file unless asked to (``overwrite=True``).

:func:`load_fit` refuses files of another format version with an
:class:`IncompatibleFitError` that names both versions, and a file that is not
a fit file (empty, truncated, damaged, a CSV, another archive) with a one-line
:class:`ValueError` that names the file and what it is not.
"""

from __future__ import annotations

__all__ = ["FIT_FORMAT", "FIT_FORMAT_VERSION", "IncompatibleFitError", "SavedFit", "load_fit", "save_fit",
           "model_to_dict", "model_from_dict"]

import dataclasses
import json
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psyphy_pp._files import atomic_path, not_a_file_of, read_npz
from psyphy_pp._typing import Params
from psyphy_pp._version import __version__
from psyphy_pp.data import TrialData
from psyphy_pp.model import SITE_LAPSE, SITE_W, WPPM
from psyphy_pp.normalization import Normalization
from psyphy_pp.oddity import Oddity
from psyphy_pp.results import as_fit_result, lapse_summary, param_draws

#: Name of the file format, stored in every fit file.
FIT_FORMAT = "psyphy_pp.fit"
#: Version of the file format this psyphy_pp writes and reads.
FIT_FORMAT_VERSION = 1
_KINDS = ("point", "posterior")


class IncompatibleFitError(ValueError):
    """A fit file was written in a format version this psyphy_pp cannot read."""


@dataclass(frozen=True)
class SavedFit:
    """A fit as stored on disk: everything needed to compute thresholds and plots.

    Attributes:
        model: The :class:`~psyphy_pp.WPPM` (with the task that was fitted).
        params: ``{"W": W}``: one weight array, or draws with leading
            ``(chains, draws)`` axes when ``kind == "posterior"``; with
            ``"lapse_rate"`` (a scalar, or ``(chains, draws)``) when the model's
            task learns the lapse rate.
        kind: ``"point"`` (MAP or a ground truth) or ``"posterior"`` (draws).
        method: How it was made: ``"svi"``, ``"scratch"``, ``"nuts"``,
            ``"truth"``, ...
        losses: The loss trace of an optimiser, or None.
        data: The trials, or None.
        normalization: The map from the user's units, or None (model units).
        settings: Fit settings (JSON values).
        library_version: The psyphy_pp version that made the fit.
        path: The file it was read from (set by :func:`load_fit`), or None.

    Its ``repr`` is a short summary (model, method, trials, kind,
    normalisation, file), not the arrays.

    Examples:
        >>> import jax, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> fit = pp.SavedFit(model, model.sample_prior(jax.random.PRNGKey(0)), method="truth")
        >>> fit.kind, fit.sample_shape
        ('point', ())
    """

    model: WPPM
    params: Params
    kind: str = "point"
    method: str = "params"
    losses: np.ndarray | None = None
    data: TrialData | None = None
    normalization: Normalization | None = None
    settings: dict = field(default_factory=dict)
    library_version: str = ""
    path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, WPPM):
            raise ValueError(f"model must be a psyphy_pp.WPPM, got {type(self.model).__name__}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if not isinstance(self.params, dict) or SITE_W not in self.params:
            raise ValueError(f"params must be a dict with key {SITE_W!r}, got {type(self.params).__name__}")
        W = np.asarray(self.params[SITE_W])
        ws = self.model.weights_shape
        lead = 2 if self.kind == "posterior" else 0
        if W.shape[lead:] != ws or W.ndim != len(ws) + lead:
            expected = ("(chains, draws, " if lead else "(") + ", ".join(map(str, ws)) + ")"
            m = self.model
            raise ValueError(
                f"params['W'] must have shape {expected} for kind={self.kind!r} and this model "
                f"(input_dim={m.input_dim}, basis_degree={m.basis_degree}, "
                f"extra_dims={m.extra_dims}), got {W.shape}"
            )
        if self.data is not None:
            self.data.check_model(self.model.input_dim)
        norm = self.normalization
        if norm is None and self.data is not None:
            norm = self.data.normalization
        if norm is not None and norm.input_dim != self.model.input_dim:
            raise ValueError(
                f"normalization must have input_dim {self.model.input_dim}, got {norm.input_dim}"
            )
        object.__setattr__(self, "normalization", norm)
        params = {SITE_W: W}
        if self.model.task.learns_lapse:
            if SITE_LAPSE not in self.params:
                raise ValueError(
                    f"params must have key {SITE_LAPSE!r}: the model learns the lapse rate "
                    f"(task {self.model.task!r}), got keys {sorted(self.params)}")
            lam = np.asarray(self.params[SITE_LAPSE])
            if lam.shape != W.shape[:lead]:
                raise ValueError(f"params[{SITE_LAPSE!r}] must have shape {W.shape[:lead]} for "
                                 f"kind={self.kind!r}, got {lam.shape}")
            if not np.all((lam >= 0) & (lam < 1)):
                raise ValueError(f"params[{SITE_LAPSE!r}] must lie in [0, 1)")
            params[SITE_LAPSE] = lam
        object.__setattr__(self, "params", params)
        if not self.library_version:
            object.__setattr__(self, "library_version", __version__)

    def __repr__(self) -> str:
        kind = (f"posterior draws {self.sample_shape}" if self.kind == "posterior"
                else "point estimate")
        source = "" if self.path is None else f", from {self.path!r}"
        trials = "no trials" if self.data is None else f"{self.data.num_trials} trials"
        units = ("model units" if self.normalization is None
                 else f"normalization {self.normalization!r}")
        lapse = f"  {lapse_summary(self)}\n" if self.model.task.learns_lapse else ""
        return (
            f"SavedFit({kind}, method={self.method!r}{source}\n"
            f"  model {self.model!r}\n{lapse}"
            f"  {trials}, {units}\n"
            f"  made by psyphy_pp {self.library_version})"
        )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(chains, draws)`` for posterior draws, ``()`` for a point estimate."""
        return self.params[SITE_W].shape[: self.params[SITE_W].ndim - len(self.model.weights_shape)]

    def weight_draws(self) -> np.ndarray:
        """``W`` by chain and draw, ``(chains, draws, *weights_shape)`` (a point is 1 x 1)."""
        W = np.asarray(self.params[SITE_W])
        return W if self.kind == "posterior" else W[None, None]

    @classmethod
    def from_result(cls, result: Any, *, normalization: Normalization | None = None) -> SavedFit:
        """Wrap any :class:`~psyphy_pp.results.FitResult` (MapResult, NutsResult, SavedFit).

        A result of kind ``"posterior"`` (:func:`~psyphy_pp.fit_nuts`) is stored
        as its draws of ``W``; a point estimate as its one ``W``, with its losses
        and, for a MAP fit, its convergence verdict and fit quality in
        ``settings``.
        """
        if isinstance(result, SavedFit):
            if normalization is None:
                return result
            return dataclasses.replace(result, normalization=normalization)
        result = as_fit_result(result)
        model, data, method = result.model, result.data, str(result.method)
        settings = dict(result.settings or {})
        draws = param_draws(result)  # W, and a learnt lapse rate
        if result.kind == "posterior":
            return cls(model, draws, kind="posterior",
                       method=method, data=data, normalization=normalization, settings=settings)
        params = {k: v[0, 0] for k, v in draws.items()}
        for name in ("converged", "convergence", "nll_per_trial", "constant_nll_per_trial"):
            if hasattr(result, name):  # a MapResult's verdict and fit quality
                settings[name] = getattr(result, name)
        losses = getattr(result, "losses", None)
        return cls(model, params, kind="point", method=method,
                   losses=None if losses is None else np.asarray(losses), data=data,
                   normalization=normalization, settings=settings)


def _json_value(v: Any) -> Any:
    """A JSON-ready version of a settings value (unknown objects become ``repr``)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, Oddity):
        return {"Oddity": dataclasses.asdict(v)}
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, np.ndarray) and v.size <= 16:
        return _json_value(v.tolist())
    return repr(v)


def model_to_dict(model: WPPM) -> dict:
    """The model's settings as a JSON-ready dict (read back by :func:`model_from_dict`)."""
    d = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    task = dataclasses.asdict(model.task)
    for f in dataclasses.fields(Oddity):  # no lapse term: readable by versions without one
        if f.name in ("lapse_rate", "lapse_prior") and task[f.name] == f.default:
            del task[f.name]
    d["task"] = task
    return d


def model_from_dict(d: dict, source: str, written_by: str) -> WPPM:
    """The model of :func:`model_to_dict`; ``source`` and ``written_by`` name the file and
    the psyphy_pp version that wrote it in the error for settings this version does not know."""
    task_d = dict(d.get("task", {}))
    known = {f.name for f in dataclasses.fields(Oddity)}
    unknown = sorted(set(task_d) - known)
    model_known = {f.name for f in dataclasses.fields(WPPM)}
    unknown_model = sorted(set(d) - model_known)
    if unknown or unknown_model:
        raise IncompatibleFitError(
            f"{source} was written by psyphy_pp {written_by} with model settings this psyphy_pp "
            f"{__version__} does not know ({', '.join(unknown_model + unknown)}); "
            "open it with the psyphy_pp version that wrote it"
        )
    model_d = {k: v for k, v in d.items() if k != "task"}
    return WPPM(**model_d, task=Oddity(**task_d))


def save_fit(
    path: str | os.PathLike,
    result: Any,
    *,
    normalization: Normalization | None = None,
    include_data: bool = True,
    overwrite: bool = False,
) -> None:
    """Write a fit to ``path`` (an ``.npz`` archive; see the module docstring).

    The file is written under exactly the name given (no ``.npz`` is added),
    in one step: if writing fails, no partial file is left and an existing
    file is untouched.

    Args:
        path: The file to write.
        result: A :class:`~psyphy_pp.MapResult`, the result of
            :func:`~psyphy_pp.fit_nuts`, or a :class:`SavedFit`.
        normalization: The map from the user's units (default: the data's).
        include_data: Also store the trials.
        overwrite: Replace ``path`` if it exists.

    Raises:
        ValueError: If ``result`` is none of the above.
        FileExistsError: If ``path`` exists and ``overwrite`` is False.

    Examples:
        >>> import jax, os, tempfile, psyphy_pp as pp
        >>> model = pp.WPPM(basis_degree=1)
        >>> fit = pp.SavedFit(model, model.sample_prior(jax.random.PRNGKey(0)))
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "fit.npz")
        >>> pp.save_fit(path, fit)
        >>> pp.load_fit(path).model == model
        True
        >>> pp.save_fit(path, fit)
        Traceback (most recent call last):
        ...
        FileExistsError: .../fit.npz already exists; pass overwrite=True to replace it
        >>> pp.save_fit(path, fit, overwrite=True)
        >>> tmp.cleanup()
    """
    fit = SavedFit.from_result(result, normalization=normalization)
    header = {
        "format": FIT_FORMAT,
        "format_version": FIT_FORMAT_VERSION,
        "library_version": fit.library_version,
        "saved_by": __version__,
        "kind": fit.kind,
        "method": fit.method,
        "model": model_to_dict(fit.model),
        "normalization": None if fit.normalization is None else fit.normalization.to_dict(),
        "settings": _json_value(fit.settings),
    }
    arrays: dict[str, np.ndarray] = {"header": np.asarray(json.dumps(header)),
                                     SITE_W: np.asarray(fit.params[SITE_W])}
    if SITE_LAPSE in fit.params:
        arrays[SITE_LAPSE] = np.asarray(fit.params[SITE_LAPSE])
    if fit.losses is not None:
        arrays["losses"] = np.asarray(fit.losses)
    if include_data and fit.data is not None:
        arrays["refs"] = fit.data.refs
        arrays["comparisons"] = fit.data.comparisons
        arrays["responses"] = fit.data.responses
        for key, values in fit.data.metadata.items():
            arrays[f"meta:{key}"] = values
    with atomic_path(path, overwrite) as part, open(part, "wb") as f:
        np.savez(f, **arrays)


_REWRITE = "write it again with psyphy-pp fit or pp.save_fit"
_FOREIGN = "fit files are written by psyphy-pp fit or pp.save_fit"


def _not_a_fit(source: str, reason: str, hint: str = _FOREIGN) -> ValueError:
    return not_a_file_of("fit file", source, reason, hint)


def load_fit(path: str | os.PathLike) -> SavedFit:
    """Read a fit written by :func:`save_fit`.

    Args:
        path: The fit file.

    Returns:
        The :class:`SavedFit` (its ``path`` is the file it was read from).

    Raises:
        IncompatibleFitError: If the file was written in another format version
            (or with settings this version does not know); the message names the
            psyphy_pp version that wrote it and the one reading it.
        ValueError: If the file is not a psyphy_pp fit file: empty, truncated
            or damaged, or another kind of file (a CSV, another ``.npz``). The
            message is one line naming the file and what it is not.
        FileNotFoundError: If ``path`` does not exist.

    Examples:
        >>> import os, tempfile, psyphy_pp as pp
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "trials.csv")
        >>> with open(path, "w") as f:
        ...     _ = f.write("ref_0,ref_1,comp_0,comp_1,response\\n")
        >>> pp.load_fit(path)
        Traceback (most recent call last):
        ...
        ValueError: .../trials.csv is not a psyphy_pp fit file (it is a text file, not an .npz archive; it begins 'ref_0,ref_1,comp_0,comp_1,response'); fit files are written by psyphy-pp fit or pp.save_fit
        >>> tmp.cleanup()
    """
    source = os.fspath(path)
    if os.path.isdir(source):
        raise IsADirectoryError(f"{source} is a directory, not a fit file")
    arrays = read_npz(source, "fit file", rewrite=_REWRITE, foreign=_FOREIGN)
    if "header" not in arrays:
        raise _not_a_fit(source, "it has no header")
    try:
        header = json.loads(str(arrays["header"]))
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict):
        raise _not_a_fit(source, "its header is not a psyphy_pp fit header")
    if header.get("format") != FIT_FORMAT:
        raise _not_a_fit(source, f"format {header.get('format')!r}")
    written_by = header.get("saved_by", header.get("library_version", "unknown"))
    version = header.get("format_version")
    if version != FIT_FORMAT_VERSION:
        hint = ("upgrade psyphy_pp to read it" if isinstance(version, int)
                and version > FIT_FORMAT_VERSION else
                "open it with the psyphy_pp version that wrote it, or refit")
        raise IncompatibleFitError(
            f"{source} was written by psyphy_pp {written_by} in fit format version "
            f"{version}; this psyphy_pp {__version__} reads fit format version "
            f"{FIT_FORMAT_VERSION} only; {hint}"
        )
    try:
        return _fit_from_arrays(arrays, header, source, written_by)
    except IncompatibleFitError:
        raise
    except KeyError as err:
        raise _not_a_fit(source, f"damaged: it has no {err.args[0]!r} entry", _REWRITE) from err
    except (TypeError, ValueError, AttributeError) as err:
        detail = " ".join(str(err).split())
        raise _not_a_fit(source, f"damaged: {detail}", _REWRITE) from err


def _fit_from_arrays(arrays: dict[str, np.ndarray], header: dict, source: str,
                     written_by: str) -> SavedFit:
    model = model_from_dict(header["model"], source, written_by)
    norm = header.get("normalization")
    norm = None if norm is None else Normalization.from_dict(norm)
    data = None
    if "refs" in arrays:
        meta = {k[len("meta:"):]: v for k, v in arrays.items() if k.startswith("meta:")}
        data = TrialData(arrays["refs"], arrays["comparisons"], arrays["responses"],
                         normalization=norm, metadata=meta)
    return SavedFit(
        model=model,
        params={SITE_W: arrays[SITE_W],
                **({SITE_LAPSE: arrays[SITE_LAPSE]} if SITE_LAPSE in arrays else {})},
        kind=header["kind"],
        method=header.get("method", "unknown"),
        losses=arrays.get("losses"),
        data=data,
        normalization=norm,
        settings=header.get("settings") or {},
        library_version=header.get("library_version", "unknown"),
        path=source,
    )
