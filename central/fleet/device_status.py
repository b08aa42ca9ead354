"""Devices' connection status as the broker reports it: each device publishes
a retained ``online`` on ``<prefix>/<device>/status`` when it connects and the
broker publishes its last will ``offline`` when the connection drops
(:mod:`edge_agent.sync`). The collector subscribes to those topics (a plain
subscription, so the retained state arrives at every start) and this handler
records each device's status and when central saw it change; the console's
fleet pages show it.

A payload other than ``online`` / ``offline`` is counted and ignored.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import re
import sqlite3
import threading

from ..governance.audit import parse_ts, ts, utcnow
from ..store.database import connect

logger = logging.getLogger(__name__)

_DEVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
STATES = ("online", "offline")


@dataclasses.dataclass(frozen=True)
class ConnectionStatus:
    device_id: str
    status: str                 # online | offline
    since: dt.datetime          # when central first saw this status (a retained one: when central started)


class DeviceStatusHandler:
    def __init__(self, db_path, *, topic_prefix: str = "alpr/v1/devices", clock=utcnow) -> None:
        self.conn = connect(db_path)  # a SQLite file or a postgresql:// URL
        self.prefix = topic_prefix
        self._clock = clock
        self._lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()

    @property
    def subscription(self) -> str:
        return f"{self.prefix}/+/status"

    def device_of(self, topic: str) -> str | None:
        head, sep, rest = topic.partition(self.prefix + "/")
        parts = rest.split("/")
        if head or not sep or len(parts) != 2 or parts[1] != "status" or not _DEVICE_RE.match(parts[0]):
            return None
        return parts[0]

    def handle(self, topic: str, payload: bytes) -> bool:
        """Record one status message; True when the device's status changed."""
        device = self.device_of(topic)
        status = payload.decode("ascii", "replace").strip() if isinstance(payload, (bytes, bytearray)) else ""
        if device is None or status not in STATES:
            self.counters["status.malformed"] += 1
            return False
        with self._lock:
            cur = self.conn.execute(
                "INSERT INTO device_status (device_id, status, changed_at) VALUES (?,?,?) "
                "ON CONFLICT(device_id) DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at "
                "WHERE device_status.status <> excluded.status", [device, status, ts(self._clock())])
        self.counters[f"status.{status}"] += 1
        if cur.rowcount:
            logger.info("device %s is %s", device, status)
        return bool(cur.rowcount)

    def close(self) -> None:
        self.conn.close()


def connection_status(conn: sqlite3.Connection, device_id: str) -> ConnectionStatus | None:
    """The last status the broker reported for a device, or None if never heard."""
    row = conn.execute("SELECT status, changed_at FROM device_status WHERE device_id = ?", [device_id]).fetchone()
    return ConnectionStatus(device_id, row[0], parse_ts(row[1])) if row else None
