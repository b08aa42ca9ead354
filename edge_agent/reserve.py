"""A reserve of disk space the agent gives back when its data folder is full.

SQLite needs disk to *delete* as well as to insert: an acknowledgement writes
the changed pages to the WAL, and a WAL that cannot be checkpointed (the main
file may not grow) is a full disk that no acknowledgement can ever relieve.
The agent would hold every read, unable to send and delete any of them, until
someone frees space by hand (found by a fault campaign, issue 26).

So the agent keeps a plain file of ``size`` zero bytes (``<data_dir>/reserve``,
``[buffer] reserve_megabytes``) while there is room, and deletes it when a
start-up open, an acknowledgement, a park or an expiry fails for lack of
space; the freed space lets the outbox checkpoint its WAL and delete what
central has stored. New reads never spend the reserve (they are counted as
lost instead). The reserve is written again once the folder has room for it
twice over. The same idea is CockroachDB's "ballast file".
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


class Reserve:
    def __init__(self, path: str | os.PathLike, size: int) -> None:
        self.path = Path(path)
        self.size = max(0, int(size))
        self.releases = 0   # times the reserve was given up to relieve a full disk

    @property
    def held(self) -> bool:
        try:
            return self.size > 0 and self.path.stat().st_size >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Write the reserve if it is missing and the folder has room for it
        twice over (so writing it never fills the disk itself). True if held."""
        if self.size <= 0 or self.held:
            return self.size > 0
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        if st.f_bavail * st.f_frsize < 2 * self.size:
            return False
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
            try:
                block = b"\0" * _CHUNK
                left = self.size
                while left > 0:  # real blocks, not a sparse file: the space must be ours
                    left -= os.write(fd, block[:min(left, _CHUNK)])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("cannot write the disk reserve %s: %s", self.path, exc.strerror)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        logger.info("disk reserve of %d bytes held at %s", self.size, self.path)
        return True

    def release(self) -> bool:
        """Delete the reserve; True if it freed space."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            logger.error("cannot release the disk reserve %s: %s", self.path, exc.strerror)
            return False
        self.releases += 1
        logger.warning("data folder full: released the %d-byte disk reserve so acknowledged reads can be deleted",
                       self.size)
        return True


def is_disk_full(exc: BaseException) -> bool:
    """True if ``exc`` (an ``sqlite3`` or OS error) means the disk is full or
    a file may not grow (``SQLITE_FULL``, or an I/O error such as a WAL index
    that cannot be sized)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_FULL") or name.startswith("SQLITE_IOERR")
