"""Devices' health heartbeats (:mod:`edge_agent.wire.health`): the collector
hands each message on ``<prefix>/<device>/health`` to :class:`HealthHandler`,
which validates it against the wire schema, keeps the latest per device and a
bounded history (``HISTORY_PER_DEVICE`` heartbeats: a day at the default 60 s),
and counts and logs (device id and reason, nothing else) every one it refuses:
not JSON, wrong schema version, a field out of range, or a ``device_id`` other
than the topic's (the broker ACL lets a device publish only on its own topic).

Central also measures each device's clock: ``skew_s`` is the heartbeat's
``sent_at`` minus when central received it (the broker drops a heartbeat older
than its interval, so a late delivery cannot pass for a skewed clock for long).

:func:`fleet_health` is what ``alpr-central device health`` and the console
show: each device the user may see (the registry decides) with its latest
heartbeat, if any.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import sqlite3
import threading

from edge_agent.wire import MalformedMessage, Topics
from edge_agent.wire.health import Health, decode_health

from ..governance.audit import parse_ts, ts, utcnow
from ..store.database import connect

logger = logging.getLogger(__name__)

HISTORY_PER_DEVICE = 1440


@dataclasses.dataclass(frozen=True)
class StoredHealth:
    device_id: str
    received_at: dt.datetime
    skew_s: float                 # device clock minus central's at receipt (positive: the device is ahead)
    health: Health

    @property
    def clock_offset_s(self) -> float:
        """The device's own NTP estimate when it has one, else central's measurement."""
        return self.health.clock_offset_s if self.health.clock_offset_s is not None else self.skew_s


class HealthHandler:
    def __init__(self, db_path, *, topic_prefix: str = "alpr/v1/devices", clock=utcnow,
                 history: int = HISTORY_PER_DEVICE) -> None:
        self.conn = connect(db_path)  # a SQLite file or a postgresql:// URL
        self.topics = Topics(topic_prefix)
        self._clock = clock
        self._history = history
        self._lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()

    def subscription(self, share_group: str | None = None) -> str:
        return self.topics.health_subscription(share_group)

    def accepts(self, topic: str) -> bool:
        return self.topics.health_device_of(topic) is not None

    def handle(self, topic: str, payload: bytes) -> bool:
        """Validate and store one heartbeat; False (counted, logged) if refused."""
        device = self.topics.health_device_of(topic)
        if device is None:
            self.counters["health.malformed"] += 1
            return False
        try:
            health = decode_health(bytes(payload))
        except MalformedMessage as exc:
            self.counters["health.malformed"] += 1
            logger.warning("refused a heartbeat from %s: %s", device, exc)
            return False
        if health.device_id != device:
            self.counters["health.wrong_device"] += 1
            logger.warning("refused a heartbeat on %s's topic naming another device", device)
            return False
        now = self._clock()
        skew = round((health.sent_at - now).total_seconds(), 3)
        doc = payload.decode() if isinstance(payload, (bytes, bytearray)) else str(payload)
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute(
                    "INSERT INTO device_health (device_id, received_at, skew_s, doc) VALUES (?,?,?,?) "
                    "ON CONFLICT(device_id) DO UPDATE SET received_at = excluded.received_at, "
                    "skew_s = excluded.skew_s, doc = excluded.doc", [device, ts(now), skew, doc])
                self.conn.execute("INSERT INTO device_health_history (device_id, received_at, skew_s, doc) "
                                  "VALUES (?,?,?,?)", [device, ts(now), skew, doc])
                self.conn.execute(
                    "DELETE FROM device_health_history WHERE device_id = ? AND id <= (SELECT id FROM "
                    "device_health_history WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    [device, device, self._history])
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                    self.conn.execute("ROLLBACK")
                raise
        self.counters["health.stored"] += 1
        return True

    def close(self) -> None:
        self.conn.close()


def _stored(device_id: str, row) -> StoredHealth:
    return StoredHealth(device_id, parse_ts(row[0]), float(row[1]), decode_health(row[2].encode()))


def latest_health(conn: sqlite3.Connection, device_id: str) -> StoredHealth | None:
    row = conn.execute("SELECT received_at, skew_s, doc FROM device_health WHERE device_id = ?",
                       [device_id]).fetchone()
    return _stored(device_id, row) if row else None


def health_history(conn: sqlite3.Connection, device_id: str, limit: int = 60) -> list[StoredHealth]:
    """The device's last ``limit`` heartbeats, oldest first."""
    rows = conn.execute("SELECT received_at, skew_s, doc FROM device_health_history WHERE device_id = ? "
                        "ORDER BY id DESC LIMIT ?", [device_id, limit]).fetchall()
    return [_stored(device_id, r) for r in reversed(rows)]


@dataclasses.dataclass(frozen=True)
class DeviceHealthView:
    device_id: str
    owner: str
    status: str                          # the registry's: active, suspended, ...
    connection: str | None               # the broker's: online / offline / None (never heard)
    cert_expires_at: dt.datetime | None  # the registry's copy of the certificate
    latest: StoredHealth | None
    connection_since: dt.datetime | None = None  # when the broker last changed ``connection``
    enrolled_at: dt.datetime | None = None       # the registry's


def fleet_health(registry, conn: sqlite3.Connection, user, *, owner: str | None = None) -> list[DeviceHealthView]:
    """Every device ``user`` may see (admins, auditors, field techs: all; a
    business: its own) with its latest heartbeat."""
    return device_views(conn, registry.list_devices(user, owner=owner))


# Devices per ``IN (...)`` list: well under SQLite's 32,766 bound parameters.
_CHUNK = 500


def _by_device(conn: sqlite3.Connection, sql: str, ids: list[str], args=()) -> list[tuple]:
    """Rows of ``sql`` (its ``{ids}`` a placeholder list, first in its WHERE)
    for the given devices, a chunk of them per query."""
    rows = []
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        rows += conn.execute(sql.format(ids=",".join("?" * len(chunk))), [*chunk, *args]).fetchall()
    return rows


def device_views(conn: sqlite3.Connection, devices) -> list[DeviceHealthView]:
    """Registry devices with their connection status and latest heartbeat
    (two queries for the whole list, not two per device)."""
    devices = list(devices)
    ids = [d.device_id for d in devices]
    status = {r[0]: (r[1], parse_ts(r[2])) for r in _by_device(
        conn, "SELECT device_id, status, changed_at FROM device_status WHERE device_id IN ({ids})", ids)}
    latest = {r[0]: _stored(r[0], r[1:]) for r in _by_device(
        conn, "SELECT device_id, received_at, skew_s, doc FROM device_health WHERE device_id IN ({ids})", ids)}
    out = []
    for d in devices:
        connection, since = status.get(d.device_id, (None, None))
        out.append(DeviceHealthView(d.device_id, d.owner, d.status, connection, d.cert_expires_at,
                                    latest.get(d.device_id), since, d.enrolled_at))
    return out


def recent_histories(conn: sqlite3.Connection, views: list[DeviceHealthView], window: dt.timedelta,
                     limit: int = 500) -> dict[str, list[StoredHealth]]:
    """Each device's heartbeats within ``window`` before its latest one (at
    most ``limit``, oldest first), for every view with a latest heartbeat, in
    one query per chunk of devices."""
    heard = [v for v in views if v.latest is not None]
    if not heard:
        return {}
    cutoffs = {v.device_id: v.latest.received_at - window for v in heard}
    rows = _by_device(conn, "SELECT device_id, received_at, skew_s, doc FROM device_health_history "
                            "WHERE device_id IN ({ids}) AND received_at >= ? ORDER BY device_id, id",
                      list(cutoffs), [ts(min(cutoffs.values()))])
    out: dict[str, list[StoredHealth]] = {device: [] for device in cutoffs}
    for device, received_at, skew_s, doc in rows:
        if parse_ts(received_at) >= cutoffs[device]:
            out[device].append(_stored(device, (received_at, skew_s, doc)))
    return {device: history[-limit:] for device, history in out.items()}


def _iso(t: dt.datetime | None) -> str | None:
    return ts(t) if t else None


def to_doc(view: DeviceHealthView) -> dict:
    """The JSON form ``device health --json`` prints, one object per device."""
    doc = {"device_id": view.device_id, "owner": view.owner, "status": view.status,
           "connection": view.connection, "certificate_expires": _iso(view.cert_expires_at), "health": None}
    if view.latest is not None:
        h = view.latest
        body = json.loads(_health_json(h.health))
        body.update({"received_at": _iso(h.received_at), "central_measured_skew_s": h.skew_s,
                     "clock_offset_used_s": h.clock_offset_s})
        doc["health"] = body
    return doc


def _health_json(h: Health) -> str:
    from edge_agent.wire.health import encode_health
    return encode_health(h).decode()
