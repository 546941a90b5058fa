"""Writing files safely: never a silent overwrite, never a half-written file.

Every file psyphy_pp writes goes through :func:`atomic_path`: the content is
written to a temporary file next to the target, which then replaces the target
in one step (:func:`os.replace`). If writing fails, or the process is
interrupted, the temporary file is removed and an existing file is left as it
was. Every ``.npz`` file psyphy_pp reads back (fits, checkpoints) goes through
:func:`read_npz`, which turns a damaged or foreign file into one line naming it.
"""

from __future__ import annotations

__all__ = ["atomic_path", "check_writable", "not_a_file_of", "read_npz"]

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


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


def not_a_file_of(kind: str, source: str, reason: str, hint: str) -> ValueError:
    """The one-line error for a file that is not a psyphy_pp ``kind`` (``"fit file"``, ...)."""
    return ValueError(f"{source} is not a psyphy_pp {kind} ({reason}); {hint}")


def read_npz(source: str, kind: str, *, rewrite: str, foreign: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``source``, read now, or a one-line ``ValueError``.

    Empty, truncated and damaged archives, text files, ``.npy`` files, random bytes
    and archives holding pickled objects each get a message naming ``source`` and
    what it is not (:func:`not_a_file_of`), never numpy's advice to allow pickles.

    Args:
        source: The file.
        kind: What it should be, e.g. ``"fit file"`` or ``"checkpoint"``.
        rewrite: The hint for a damaged file (how to write it again).
        foreign: The hint for another kind of file (what writes this kind).

    Raises:
        ValueError: As above.
        FileNotFoundError: If ``source`` does not exist.
    """
    refused = _sniff(source, kind, rewrite, foreign)
    if refused is not None:
        raise refused
    return _read_arrays(source, kind, rewrite, foreign)


def _sniff(source: str, kind: str, rewrite: str, foreign: str) -> ValueError | None:
    """The error for a file that is plainly not an ``.npz`` archive, or None."""
    with open(source, "rb") as fh:
        head = fh.read(512)
    if not head:
        return not_a_file_of(kind, source, "it is empty: 0 bytes", rewrite)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip archive, as .npz files are
        return None
    if head.startswith(b"\x93NUMPY"):
        return not_a_file_of(kind, source, "it is a single .npy array, not an .npz archive", foreign)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # a character cut at the end of the 512 bytes is fine
        text = head[: err.start].decode("utf-8") if err.start >= len(head) - 3 else ""
    if text and all(c.isprintable() or c in "\t\n\r\f" for c in text):
        first = text.splitlines()[0][:40] if text.strip() else ""
        return not_a_file_of(kind, source, f"it is a text file, not an .npz archive; it begins {first!r}",
                             foreign)
    return not_a_file_of(kind, source, "not an .npz archive", foreign)


def _read_arrays(source: str, kind: str, rewrite: str, foreign: str) -> dict[str, np.ndarray]:
    """Every entry of the archive, read now (so damage anywhere shows here)."""
    try:
        loaded = np.load(source, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return {}
        with loaded as f:
            return {k: np.asarray(f[k]) for k in f.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except ValueError as err:
        if "pickle" in str(err):  # numpy's advice to allow pickles is wrong here
            raise not_a_file_of(kind, source, f"it holds pickled Python objects, which {kind}s "
                                "never do", foreign) from None
        raise not_a_file_of(kind, source, "not a readable .npz archive: truncated or damaged?",
                            rewrite) from err
    except Exception as err:  # BadZipFile, EOFError, zlib.error, CRC errors, ...
        raise not_a_file_of(kind, source, "not a readable .npz archive: truncated or damaged?",
                            rewrite) from err
