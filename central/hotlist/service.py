"""The hotlist threads that run beside the collector: the matcher and one
webhook sender per receiver. :meth:`HotlistService.attach` makes the
collector wake the matcher after each commit (the ack never waits for it)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..config import Hotlist as HotlistConfig
from ..governance.audit import utcnow
from .matcher import Matcher
from .webhooks import Sender

logger = logging.getLogger(__name__)


class HotlistService:
    def __init__(self, path: str | Path, cfg: HotlistConfig = HotlistConfig(), *, clock=utcnow) -> None:
        self.senders = [Sender(path, hook, clock=clock) for hook in cfg.webhooks]  # ConfigError: bad secret
        self.matcher = Matcher(path, cfg, clock=clock, on_hits=self._hits)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

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
