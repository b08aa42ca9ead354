"""The MQTT side of rollouts (:mod:`central.fleet.rollout`), run by the
collector (``alpr-central run``): publishes due offers and withdrawals,
answers chunk fetches from the stored bundle (one chunk in memory at a time),
and records each device's state reports.

A fetch or a report on another device's topic cannot happen (the broker ACL
lets a device write only its own), but the payload's ``device_id`` is checked
against the topic anyway; refusals are counted and logged with the device id
and the reason, nothing else. Chunk answers are rate-limited per device
(``max_chunks_per_second``): a device cannot make central read and send the
bundle as fast as it can ask.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path

from edge_agent.wire import MalformedMessage, Topics
from edge_agent.wire import update as wire

from ..governance.audit import utcnow
from ..store.database import connect, dialect
from .rollout import Rollouts

logger = logging.getLogger(__name__)


class UpdateService:
    def __init__(self, db_path, *, topic_prefix: str = "alpr/v1/devices", resend_seconds: float = 30.0,
                 max_chunks_per_second: float = 16.0, clock=utcnow, monotonic=time.monotonic) -> None:
        self.conn = connect(db_path)  # a SQLite file or a postgresql:// URL
        if dialect(self.conn) == "sqlite":
            self.conn.execute("PRAGMA foreign_keys=ON")
        self.rollouts = Rollouts(self.conn, clock=clock)
        self.topics = Topics(topic_prefix)
        self.resend_seconds = resend_seconds
        self._lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()
        # Each device's chunk answers are rate-limited (a token bucket a second deep): a device
        # asking faster than an honest one would is answered at this rate; it asks again later.
        self.max_chunks_per_second = max_chunks_per_second
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}

    def close(self) -> None:
        self.conn.close()

    def subscriptions(self, share_group: str | None) -> list[str]:
        return [self.topics.update_subscription(leaf, share_group) for leaf in Topics.UPDATE_FROM_DEVICE]

    def accepts(self, topic: str) -> bool:
        parsed = self.topics.update_of(topic)
        return parsed is not None and parsed[1] in Topics.UPDATE_FROM_DEVICE

    def read_chunk(self, path: Path, offset: int, length: int) -> bytes:
        """The bytes of one chunk of a stored bundle (the seam a test uses to corrupt one)."""
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def handle(self, client, topic: str, payload: bytes) -> None:
        device, leaf = self.topics.update_of(topic)
        try:
            if leaf == "fetch":
                self._fetch(client, device, wire.decode_fetch(payload))
            else:
                report = wire.decode_state(payload)
                if report.device_id != device:
                    self.counters["update.wrong_device"] += 1
                    logger.warning("refused an update state on %s's topic naming another device", device)
                    return
                with self._lock:
                    outcome = self.rollouts.record(report)
                self.counters[f"update.state.{outcome}"] += 1
                logger.info("device %s: update %s of rollout %s is %s", device, report.version, report.rollout_id,
                            report.state)
        except MalformedMessage as exc:
            self.counters["update.malformed"] += 1
            logger.warning("refused an update %s from %s: %s", leaf, device, exc)

    def _allow(self, device: str) -> bool:
        now = self._monotonic()
        tokens, at = self._buckets.get(device, (self.max_chunks_per_second, now))
        tokens = min(self.max_chunks_per_second, tokens + (now - at) * self.max_chunks_per_second)
        if tokens < 1:
            self._buckets[device] = (tokens, now)
            return False
        self._buckets[device] = (tokens - 1, now)
        return True

    def _fetch(self, client, device: str, fetch: wire.Fetch) -> None:
        if not self._allow(device):
            self.counters["update.fetch_throttled"] += 1
            return
        with self._lock:
            source = self.rollouts.chunk_source(device, fetch)
        if source is None:
            self.counters["update.fetch_unknown"] += 1
            logger.warning("device %s asked for chunk %d of rollout %s, which it was not offered", device,
                           fetch.index, fetch.rollout_id)
            return
        if isinstance(source, wire.Offer):  # the rollout was paused or superseded meanwhile
            client.publish(self.topics.update(device, "offer"), wire.encode_offer(source), qos=1)
            return
        path, offset, length, sha = source
        try:
            data = self.read_chunk(path, offset, length)
        except OSError as exc:
            self.counters["update.bundle_unreadable"] += 1
            logger.error("cannot read the stored bundle %s: %s", path.name, exc.strerror)
            return
        client.publish(self.topics.update(device, "chunk"),
                       wire.encode_chunk(wire.Chunk(fetch.rollout_id, fetch.index, sha, data)), qos=1)
        self.counters["update.chunks_sent"] += 1

    def tick(self, client) -> int:
        """Publish what is due; the number of messages."""
        with self._lock:
            due = self.rollouts.due(self.resend_seconds)
        for device, offer in due:
            client.publish(self.topics.update(device, "offer"), wire.encode_offer(offer), qos=1)
            self.counters["update.withdrawals_sent" if offer.withdraw else "update.offers_sent"] += 1
        return len(due)
