"""Create (once) the private virtual environment that holds the psyphy peer.

The peer, ``psyphy==0.0.5`` (Flatiron Institute), is installed into
``benchmarks/.peer-venv`` (git-ignored) so that the project's own environment
stays clean.  The environment is created with ``python3 -m venv`` and filled
with pip; a stamp file records a successful install, so calling
:func:`ensure_peer_venv` again is cheap.

Usable as a module (``from peer_venv import ensure_peer_venv``) or as a script::

    python benchmarks/peer_venv.py          # prints the venv's python
    python benchmarks/peer_venv.py --force  # reinstall
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

VENV_DIR = Path(__file__).resolve().parent / ".peer-venv"
# psyphy 0.0.5 pulls in jax/optax itself; ask for the CPU build explicitly, and
# pin the same jax as psyphy_pp so that both sides run on one XLA version.
REQUIREMENTS = ["psyphy==0.0.5", "jax[cpu]==0.10.2", "jaxlib==0.10.2"]
STAMP = VENV_DIR / ".psyphy-peer-stamp"


def venv_python(venv_dir: Path = VENV_DIR) -> Path:
    """Path of the python executable inside ``venv_dir``."""
    return venv_dir / "bin" / "python"


def ensure_peer_venv(force: bool = False, quiet: bool = True) -> Path:
    """Create the peer venv if needed and return the path of its python.

    Idempotent: if the stamp file matches the requirement list, nothing runs.
    ``force`` deletes and rebuilds the environment.
    """
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if force and VENV_DIR.exists():
        shutil.rmtree(VENV_DIR)
    py = venv_python()
    if py.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return py
    if not py.exists():
        subprocess.run(["python3", "-m", "venv", str(VENV_DIR)], check=True)
    pip = [str(py), "-m", "pip", "install"] + (["-q"] if quiet else [])
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + REQUIREMENTS, check=True)
    # Fail early if the install is unusable.
    subprocess.run([str(py), "-c", "import psyphy, jax, optax"], check=True)
    STAMP.write_text(wanted)
    return py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild the venv")
    parser.add_argument("--verbose", action="store_true", help="show pip output")
    args = parser.parse_args()
    print(ensure_peer_venv(force=args.force, quiet=not args.verbose))


if __name__ == "__main__":
    sys.exit(main())
