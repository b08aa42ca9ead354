"""One agent per data folder: an exclusive ``flock`` on ``<data_dir>/agent.lock``.

Two agents on one outbox would send the same reads twice and interleave their
audit chains. The lock is held for the agent's life and released by the
kernel when the process ends, however it ends (no stale lock after a crash or
power cut). The file records the holder's pid for the message the second
agent prints.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from .errors import AlreadyRunning

logger = logging.getLogger(__name__)

LOCK_NAME = "agent.lock"


class DataDirLock:
    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "DataDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # A full disk with no lock file yet: run unlocked (systemd still runs one
            # instance of the unit) rather than not at all, so the agent can sync and
            # free space; said in the log.
            logger.warning("cannot create %s (%s): running without the one-agent lock", self.path, exc.strerror)
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another alpr-edge agent (pid {holder}) is already running on the data folder "
                f"{self.path.parent}; stop it first (systemctl stop alpr-edge), or give this one another "
                "device.data_dir") from None
        self._fd = fd
        try:  # the holder's pid, for the second agent's message only: a full disk must not stop the start
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            logger.warning("cannot write the pid into %s: %s", self.path, exc.strerror)
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:  # an Agent dropped without run() must not keep the folder locked
        self.release()
