"""Writing files safely: never a silent overwrite, never a half-written file.

Every file psyphy_pp writes goes through :func:`atomic_path`: the content is
written to a temporary file next to the target, which then replaces the target
in one step (:func:`os.replace`). If writing fails, or the process is
interrupted, the temporary file is removed and an existing file is left as it
was.
"""

from __future__ import annotations

__all__ = ["atomic_path", "check_writable"]

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager


def check_writable(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to write over a directory, or over an existing file unless ``overwrite``.

    Args:
        path: The file that is about to be written.
        overwrite: Whether an existing file may be replaced.

    Raises:
        IsADirectoryError: If ``path`` is a directory.
        FileExistsError: If ``path`` exists and ``overwrite`` is False; the
            message names the file and says to pass ``overwrite=True``.

    Examples:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as f:
        ...     check_writable(f.name, overwrite=False)
        Traceback (most recent call last):
        ...
        FileExistsError: ... already exists; pass overwrite=True to replace it
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", target)
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")


def _create_temporary(target: str) -> str:
    """Create an empty, new file next to ``target`` (permissions as ``open`` gives)."""
    directory, name = os.path.split(target)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as err:  # e.g. no such directory: name the user's file
            raise type(err)(err.errno, err.strerror, target) from None
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name next to", target)


def _flush_to_disk(tmp: str) -> None:
    """Ask the system to put the temporary file on disk before it replaces the target."""
    try:
        fd = os.open(tmp, os.O_RDWR)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot; the replace is still atomic
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Write a file in one step: yield a temporary path, then move it onto ``path``.

    Write the whole content to the yielded path (it exists, empty, in the
    directory of ``path``). When the ``with`` block ends normally, the temporary
    file replaces ``path``; if it raises (or is interrupted), the temporary file
    is removed and ``path`` is untouched.

    Args:
        path: The file to write, exactly as named (no suffix is added).
        overwrite: Whether an existing file may be replaced.

    Yields:
        The temporary path to write to.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is False (checked
            before and after writing).
        IsADirectoryError: If ``path`` is a directory.

    Examples:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "out.txt")
        >>> with atomic_path(path) as part:
        ...     with open(part, "w") as f:
        ...         _ = f.write("done")
        >>> open(path).read(), os.listdir(tmp.name)
        ('done', ['out.txt'])
        >>> tmp.cleanup()
    """
    target = os.fspath(path)
    check_writable(target, overwrite)
    tmp = _create_temporary(target)
    try:
        yield tmp
        _flush_to_disk(tmp)
        check_writable(target, overwrite)  # it may have appeared meanwhile
        os.replace(tmp, target)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
