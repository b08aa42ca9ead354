"""The hotlist work that runs beside the collector: the matcher and one
webhook sender per receiver.

- :class:`HotlistService` runs them as threads of the calling process (the
  library form: tests and tools);
- :class:`HotlistProcess` runs a :class:`HotlistService` in a child process
  of its own (:mod:`.worker`), which ``alpr-central run`` and ``alpr-central
  demo`` use: matching then
  never competes with the collector for the interpreter lock (measured:
  ``bench/bench_hotlist.py``, docs/hotlists.md). The collector wakes it
  through a pipe after each commit; the child's matcher works from its
  durable cursor, so a child that dies (it is restarted with back-off) or is
  stopped loses nothing and raises no hit twice. The child ends when the pipe
  closes (asked to stop, or its parent is gone) or on SIGTERM.

Either way :meth:`attach` makes the collector wake the matcher after each
commit; the ack never waits for matching.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path

from ..config import Hotlist as HotlistConfig
from ..governance.audit import utcnow
from .matcher import Matcher
from .webhooks import Sender, read_secret

logger = logging.getLogger(__name__)

_COUNTERS = ("reads", "hits", "same_pass", "upgraded")


class HotlistService:
    """The matcher and the webhook senders as threads of this process."""

    def __init__(self, path: str | Path, cfg: HotlistConfig = HotlistConfig(), *, clock=utcnow) -> None:
        self.senders = [Sender(path, hook, clock=clock) for hook in cfg.webhooks]  # ConfigError: bad secret
        self.matcher = Matcher(path, cfg, clock=clock, on_hits=self._hits)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def counters(self) -> dict[str, int]:
        return {k: self.matcher.counters.get(k, 0) for k in _COUNTERS}

    def _hits(self, hit_ids: list[int]) -> None:
        for sender in self.senders:
            sender.wakeup.set()

    def attach(self, collector) -> "HotlistService":
        collector.on_stored.append(self.matcher.wake)
        return self

    def start(self) -> "HotlistService":
        self._threads = [threading.Thread(target=self.matcher.run, args=(self._stop,), name="hotlist-matcher",
                                          daemon=True)]
        self._threads += [threading.Thread(target=s.run, args=(self._stop,), name=f"webhook-{s.hook.name}",
                                           daemon=True) for s in self.senders]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.matcher.wake()
        for s in self.senders:
            s.wakeup.set()
        for t in self._threads:
            t.join(timeout=timeout)
        self.matcher.conn.close()


class HotlistProcess:
    """A :class:`HotlistService` in a child process (``python -m
    central.hotlist.worker``, a fresh interpreter), supervised: a child that
    ends unasked is started again after 1, 2, 4 ... 30 s.

    The pipe to the child's stdin carries its settings (first), then one byte
    per wake-up; closing it (or this process dying) stops the child. The
    child reports its counters on stdout; its log goes to the same stderr.
    """

    RESTART_MAX = 30.0

    def __init__(self, path: str | Path, cfg: HotlistConfig = HotlistConfig()) -> None:
        for hook in cfg.webhooks:  # refuse a bad secret here, as HotlistService does (ConfigError)
            read_secret(hook.secret_file)
        self.path, self.cfg = str(path), cfg
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._monitor: threading.Thread | None = None
        self.starts = 0

    @property
    def counters(self) -> dict[str, int]:
        """The running child's counters (a restarted child counts from 0 again)."""
        return dict(self._counters)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def wake(self, *_args) -> None:
        """After each commit: one byte down the pipe, never blocking (a full pipe
        already holds a wake-up; a dead child is restarted and starts with a round)."""
        p = self._process
        if p is None or p.stdin is None:
            return
        try:
            os.write(p.stdin.fileno(), b"w")
        except (BlockingIOError, BrokenPipeError, OSError, ValueError):
            pass

    def attach(self, collector) -> "HotlistProcess":
        collector.on_stored.append(self.wake)
        return self

    def _spawn(self) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent.parent)  # where ``central`` is importable from
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        p = subprocess.Popen([sys.executable, "-m", "central.hotlist.worker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env, close_fds=True)
        settings = pickle.dumps({"path": self.path, "cfg": self.cfg, "log_level": logging.getLogger().level})
        p.stdin.write(struct.pack(">I", len(settings)) + settings)
        p.stdin.flush()
        os.set_blocking(p.stdin.fileno(), False)
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._process = p
        self.starts += 1
        logger.info("hotlist matcher process %s started", p.pid)

    def start(self) -> "HotlistProcess":
        self._spawn()
        self._monitor = threading.Thread(target=self._supervise, name="hotlist-process", daemon=True)
        self._monitor.start()
        return self

    def _supervise(self) -> None:
        delay = 1.0
        while True:
            p = self._process
            for line in p.stdout:  # counters, until the child ends
                parts = line.split()
                if len(parts) == len(_COUNTERS) + 1 and parts[0] == b"counters":
                    self._counters = dict(zip(_COUNTERS, map(int, parts[1:])))
            code = p.wait()
            if self._stopping.is_set():
                return
            logger.error("hotlist matcher process %s ended (exit code %s); starting it again in %.0f s "
                         "(its cursor is durable: no read is skipped)", p.pid, code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(self.RESTART_MAX, delay * 2)
            try:
                self._spawn()
            except OSError:
                logger.exception("cannot start the hotlist matcher process")

    def stop(self, timeout: float = 10.0) -> None:
        """Close the pipe (the child finishes its round, saves its cursor and ends);
        terminate it if it has not ended within ``timeout``."""
        self._stopping.set()
        p = self._process
        if p is None:
            return
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # stuck: the cursor is durable, the next start redoes its round
            logger.warning("hotlist matcher process %s did not stop in %.0f s; terminating", p.pid, timeout)
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if self._monitor is not None:
            self._monitor.join(timeout=5)
