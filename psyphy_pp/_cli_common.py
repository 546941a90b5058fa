"""Command-line pieces shared by ``psyphy-pp`` and ``psyphy-pp experiment``: the model
and stimulus-box options, and the checks of output files made before anything runs."""

from __future__ import annotations

__all__ = ["add_box", "add_model", "normalization_from_args", "check_writable_dir",
           "check_new_file", "model_from_args"]

import argparse
import os
from pathlib import Path
from typing import Any


def add_box(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("stimulus units (affine map of a box to [-1, 1]^D)")
    g.add_argument("--low", type=float, nargs="+", metavar="X",
                   help="lower bound of each stimulus dimension in your units")
    g.add_argument("--high", type=float, nargs="+", metavar="X",
                   help="upper bound of each stimulus dimension in your units")
    g.add_argument("--names", nargs="+", metavar="NAME", help="names of the dimensions (axis labels)")


def add_model(p: argparse.ArgumentParser, *, diag_term: float) -> None:
    g = p.add_argument_group("model (DESIGN.md section 1)")
    g.add_argument("--basis-degree", type=int, default=4, help="Chebyshev degree K (default 4)")
    g.add_argument("--extra-dims", type=int, default=1, help="extra columns E of U(x) (default 1)")
    g.add_argument("--variance-scale", type=float, default=4e-3, help="prior variance scale (default 4e-3)")
    g.add_argument("--decay-rate", type=float, default=0.4, help="prior decay rate (default 0.4)")
    g.add_argument("--diag-term", type=float, default=diag_term,
                   help=f"diagonal floor of Sigma(x) (default {diag_term:g})")
    g.add_argument("--likelihood", choices=("auto", "quadrature", "mc"), default="auto",
                   help="P(correct) by quadrature (2D and 3D) or Monte Carlo; auto = quadrature "
                        "where it exists, Monte Carlo otherwise")
    g.add_argument("--mc-samples", type=int, default=500, help="Monte Carlo samples per trial (default 500)")


def normalization_from_args(args: argparse.Namespace) -> Any:
    from psyphy_pp.normalization import Normalization

    if args.low is None and args.high is None:
        if args.names:
            raise ValueError("--names needs --low and --high")
        return None
    if args.low is None or args.high is None:
        raise ValueError("--low and --high must be given together")
    return Normalization(args.low, args.high, args.names)


def check_writable_dir(directory: Path) -> None:
    """Raise ``ValueError`` unless files can be written into ``directory`` (made if missing)."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot write into {directory}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write into {directory}: {existing} is not writable")


def check_new_file(path: Path, force: bool, what: str) -> None:
    """Refuse an existing ``path`` (unless ``force``) or an unwritable place, before computing."""
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not force:
        raise ValueError(f"{what} {path} already exists; pass --force to replace it")
    check_writable_dir(path.parent)


def model_from_args(args: argparse.Namespace, input_dim: int, lapse_rate: float | str = 0.0) -> Any:
    from psyphy_pp.defaults import QUADRATURE_DIMS, likelihood_method
    from psyphy_pp.model import WPPM
    from psyphy_pp.oddity import Oddity

    method = args.likelihood
    if method == "quadrature" and input_dim not in QUADRATURE_DIMS:
        raise ValueError(f"--likelihood quadrature needs 2D or 3D data, got input_dim {input_dim}")
    if method == "auto":
        method = likelihood_method(input_dim)
    task = (Oddity(method=method, lapse_rate=lapse_rate) if method == "quadrature"
            else Oddity(method="mc", num_samples=args.mc_samples, lapse_rate=lapse_rate))
    return WPPM(input_dim=input_dim, basis_degree=args.basis_degree, extra_dims=args.extra_dims,
                variance_scale=args.variance_scale, decay_rate=args.decay_rate,
                diag_term=args.diag_term, task=task)
