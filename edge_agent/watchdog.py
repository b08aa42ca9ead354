"""systemd's service watchdog, petted only while the agent makes progress.

The unit says ``Type=notify`` and ``WatchdogSec=``; systemd restarts the
agent when no ``WATCHDOG=1`` arrives in time. :class:`SdNotifier` speaks the
sd_notify datagram protocol on ``$NOTIFY_SOCKET`` (no library needed).
:class:`ProgressWatchdog` pets only while every progress marker advances:

- ``capture:<camera>``: the camera's frame count (each frame was captured,
  recognized and its reads handed to the outbox in that thread); a camera
  that is not ``running`` (opening, failed and backing off, finished) is not
  stuck, it is idle;
- ``sync``: the sync loop's iterations (a loop that no longer turns is wedged,
  whether blocked on the broker client or on the outbox);
- the agent's housekeeping loop itself, which calls :meth:`ProgressWatchdog.tick`
  once a second after writing the status (outbox statistics): if it hangs,
  nothing is sent at all.

A marker that stops advancing for ``stall_after`` seconds stops the petting
and says which one in the unit's status line (``STATUS=``), so a stuck camera
thread or a wedged sync loop gets the agent restarted by systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

IDLE = object()  # a marker's value when there is nothing to make progress on


class SdNotifier:
    """sd_notify(3) over the unix datagram socket systemd names in
    ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).
    Without it (not under systemd) every call is a no-op returning False."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, state: str) -> bool:
        if self._sock is None:
            return False
        try:
            self._sock.sendto(state.encode(), self.address)
            return True
        except OSError as exc:  # systemd gone or the socket full: the watchdog will tell
            logger.debug("sd_notify failed: %s", exc)
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_seconds(env: Mapping[str, str] | None = None) -> float | None:
    """systemd's ``WatchdogSec`` for this process (``$WATCHDOG_USEC``, when
    ``$WATCHDOG_PID`` is unset or ours), or None."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6


class ProgressWatchdog:
    def __init__(self, notifier: SdNotifier, markers: Mapping[str, Callable[[], object]], *,
                 stall_after: float = 30.0, limits: Mapping[str, float] | None = None,
                 pet_every: float | None = None, clock=time.monotonic) -> None:
        """``limits``: a longer ``stall_after`` for some markers (a camera set
        to a frame every minute is not stalled after 30 s)."""
        self.notifier = notifier
        self.markers = dict(markers)
        self.stall_after = stall_after
        self.limits = {name: max(stall_after, limit) for name, limit in (limits or {}).items()}
        interval = watchdog_seconds()
        self.pet_every = pet_every if pet_every is not None else (interval / 3 if interval else 5.0)
        self.clock = clock
        self._last: dict[str, object] = {}
        self._changed: dict[str, float] = {}
        self._pet_at = float("-inf")
        self.stalled: tuple[str, ...] = ()
        self.pets = 0

    def ready(self) -> None:
        self.notifier.notify("READY=1\nSTATUS=running")

    def stopping(self) -> None:
        self.notifier.notify("STOPPING=1")

    def reloading(self, why: str) -> None:
        """The agent rebuilds itself in the same process (a new remote
        configuration): RELOADING=1, not STOPPING=1, which would make systemd
        wait for the process to end and then kill it; the next agent's
        :meth:`ready` ends the reload."""
        self.notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}\nSTATUS={why}")

    def tick(self) -> tuple[str, ...]:
        """Look at the markers; pet the watchdog if none is stalled. Returns the stalled ones."""
        now = self.clock()
        stalled = []
        for name, read in self.markers.items():
            try:
                value = read()
            except Exception:  # a marker that cannot be read is not progress
                logger.exception("progress marker %s failed", name)
                value = self._last.get(name)
            if value is IDLE or name not in self._last or value != self._last[name]:
                self._changed[name] = now
            self._last[name] = value
            if now - self._changed[name] > self.limits.get(name, self.stall_after):
                stalled.append(name)
        stalled_t = tuple(stalled)
        if stalled_t != self.stalled:
            if stalled_t:
                logger.error("no progress in %s: no longer petting the watchdog (systemd restarts the agent)",
                             ", ".join(stalled_t))
                self.notifier.notify(f"STATUS=stalled: {', '.join(stalled_t)}")
            else:
                self.notifier.notify("STATUS=running")
            self.stalled = stalled_t
        if not stalled_t and now - self._pet_at >= self.pet_every:
            if self.notifier.notify("WATCHDOG=1"):
                self.pets += 1
            self._pet_at = now
        return stalled_t


class LoopCounter:
    """Counts the turns of a loop by wrapping the function it calls each turn."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def wrap(self, fn):
        def counted(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.count += 1
        return counted


def for_agent(agent, *, stall_after: float = 30.0) -> ProgressWatchdog:
    """The watchdog of a running :class:`edge_agent.agent.Agent`: one marker
    per camera worker and one for the sync loop (its ``_step`` is counted)."""
    markers: dict[str, Callable[[], object]] = {}
    limits: dict[str, float] = {}
    for w in agent.workers:
        markers[f"capture:{w.camera.id}"] = (lambda w=w: w.frames if w.state == "running" else IDLE)
        if w.camera.fps > 0:
            limits[f"capture:{w.camera.id}"] = 3.0 / w.camera.fps  # three frame intervals of a slow camera
    step = getattr(agent.sync, "_step", None)
    if step is not None:
        sync_turns = LoopCounter()
        agent.sync._step = sync_turns.wrap(step)
        markers["sync"] = lambda: sync_turns.count
    return ProgressWatchdog(SdNotifier(), markers, stall_after=stall_after, limits=limits)
