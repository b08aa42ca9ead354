"""Writing output files safely: the one way central creates a file.

Every file central writes by a name someone else could predict (keys,
certificates, the broker's configuration, ACL and CRL, export bundles,
transparency reports) goes through :func:`write_file` or :func:`new_file`:

- the data goes into a fresh file with a random name in the target's
  directory, created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a symbolic link
  (or any file) planted at a guessed temporary name makes the open fail
  instead of writing through it;
- the file gets its mode (and, when asked, its owner) before any data is
  written, then the data is fsynced;
- if the target itself is a symbolic link the write is refused
  (:class:`UnsafePathError`); otherwise the temporary file is renamed over
  the target (a rename replaces a name, it never follows a link) and the
  directory is fsynced.

A half-written file is never visible under the target's name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import UnsafePathError

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _check_target(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link; refusing to write through it (remove it first)")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path} exists and is not a regular file; refusing to replace it")


@contextlib.contextmanager
def new_file(path: str | os.PathLike, mode: int = 0o600, *,
             owner: tuple[int, int] | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file handle; on a clean exit the data replaces ``path``
    atomically (see the module docstring), on an exception nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_target(path)
    for _ in range(16):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, _FLAGS, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 16 collisions of 64 random bits
        raise UnsafePathError(f"cannot create a temporary file beside {path}")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _check_target(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_file(path: str | os.PathLike, data: bytes | str, mode: int = 0o600, *,
               owner: tuple[int, int] | None = None) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` safely and atomically with
    ``mode``; returns the path."""
    with new_file(path, mode, owner=owner) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
