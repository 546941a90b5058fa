"""A thin progress-bar wrapper (tqdm), off with ``progress_bar=False``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    """Yield a tqdm bar (or a no-op stand-in when disabled)."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, dynamic_ncols=True) as bar:
        yield bar


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass
