"""The package's version, in one place (``psyphy_pp.__version__`` re-exports it)."""

__version__ = "0.1.0"
