"""The device's own audit log: append-only, hash-chained, every record signed
with the device's key (its TLS client key, ECDSA P-256), synced to central
on ``.../<device>/audit`` (format: :mod:`edge_agent.wire.audit`).

What is logged (never plates, images or keys; counts and ids only):

- ``provisioned``     first open: the device's public key
- ``key-rotated``     the key file holds a different key than the last record's
- ``config-changed``  the effective configuration's SHA-256 changed
- ``buffer-evicted``  reads dropped by the outbox (age: past the non-hit
                      retention; capacity: buffer full), with counts
- ``sync-gap``        the broker was unreachable for longer than a minute
- ``clock-jump``      wall clock moved against the monotonic clock, or went
                      backwards across a restart
- ``cli``             a local ``alpr-edge`` command was run
- ``agent-start`` / ``agent-stop``
- ``unrecorded``      events of the kinds counted could not be written (a
                      full disk); written before the next record that can be

The SQLite file (0600, WAL, ``synchronous=FULL``) keeps every record; a
record is marked published once central acknowledged holding it (on
``.../audit-ack``, after its commit) and is never deleted by the device. Central verifies chain and signatures and
reports gaps (``alpr-central audit device``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import BufferError_, ConfigError
from .wire.audit import (GENESIS, AuditRecord, decode_audit_ack, encode_audit_batch, public_key_id, record_from_dict,
                         record_hash)
from .wire.errors import MalformedMessage

logger = logging.getLogger(__name__)

SYNC_GAP_SECONDS = 60.0
CLOCK_JUMP_SECONDS = 30.0


def _load_key(key_file: str | os.PathLike) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"sync.key_file: cannot read {key_file}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"sync.key_file: {key_file} is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"sync.key_file: {key_file} is not an EC key")
    return key


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="microseconds")


class DeviceAuditLog:
    def __init__(self, path: str | os.PathLike, device_id: str, key_file: str | os.PathLike, *,
                 clock=time.time, unrecorded: dict[str, int] | None = None) -> None:
        self.path = Path(path)
        self.device_id = device_id
        self._clock = clock
        self._lock = threading.Lock()
        self._key = _load_key(key_file)
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = public_key_id(der)
        self._public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        # Events that could not be written (a full disk), by kind: the next record
        # that can be written is preceded, in the same transaction, by an
        # ``unrecorded`` record with these counts.
        self.unrecorded: dict[str, int] = dict(unrecorded or {})
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, record TEXT NOT NULL, "
                         "published INTEGER NOT NULL DEFAULT 0)")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("COMMIT")
            self.conn = conn
            last = self.last()
        except (sqlite3.DatabaseError, OSError) as exc:
            if conn is not None:
                conn.close()  # a failed open keeps no lock on the file
            raise BufferError_(f"cannot open the audit log {self.path}: {exc}") from exc
        if last is None:
            self.note("provisioned", {"key_id": self.key_id}, with_key=True)
        else:
            if last.key_id != self.key_id:
                self.note("key-rotated", {"previous_key_id": last.key_id, "key_id": self.key_id}, with_key=True)
            last_at = dt.datetime.fromisoformat(last.at).timestamp()
            if self._clock() < last_at - CLOCK_JUMP_SECONDS:
                self.note("clock-jump", {"kind": "backwards-across-restart",
                                         "seconds": round(self._clock() - last_at, 3)})
        self.flush_unrecorded()  # events counted while the log could not be opened

    # -- writing -----------------------------------------------------------------
    def append(self, event: str, detail: dict | None = None, *, with_key: bool = False) -> AuditRecord:
        """Write one record. BufferError_ if the file cannot be written (a full
        disk); nothing is half-written."""
        return self._write(event, json.loads(json.dumps(detail or {}, sort_keys=True)), with_key)

    def flush_unrecorded(self) -> AuditRecord | None:
        """Write the ``unrecorded`` record now, if events are counted (best effort)."""
        if not self.unrecorded:
            return None
        try:
            return self._write(None, {}, False)
        except BufferError_ as exc:
            logger.error("device audit: %s", exc)
            return None

    def _write(self, event: str | None, detail: dict, with_key: bool) -> AuditRecord:
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self.conn.execute("SELECT record FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                    prev = json.loads(row[0]) if row else None
                    if self.unrecorded:
                        prev = self._insert(prev, "unrecorded", {"counts": dict(sorted(self.unrecorded.items()))},
                                            False)
                    if event is not None:
                        prev = self._insert(prev, event, detail, with_key)
                    self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
                        self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise BufferError_(f"cannot write the audit log: {exc}") from exc
            if self.unrecorded:
                logger.warning("device audit: %d events that could not be written before are counted in "
                               "an unrecorded record", sum(self.unrecorded.values()))
                self.unrecorded.clear()
        record = record_from_dict(prev)
        logger.info("device audit: %s (seq %d)", record.event, record.seq)
        return record

    def _insert(self, prev: dict | None, event: str, detail: dict, with_key: bool) -> dict:
        seq, prev_hash = (prev["seq"] + 1, prev["hash"]) if prev else (1, GENESIS)
        at = _iso(self._clock())
        public_key = self._public_pem if with_key else ""
        h = record_hash(self.device_id, seq, at, event, detail, prev_hash, self.key_id, public_key)
        sig = self._key.sign(h.encode(), ec.ECDSA(hashes.SHA256()))
        record = AuditRecord(self.device_id, seq, at, event, detail, prev_hash, self.key_id, public_key, h,
                             base64.b64encode(sig).decode())
        doc = record.to_dict()
        self.conn.execute("INSERT INTO records (seq, record) VALUES (?, ?)", [seq, json.dumps(doc, sort_keys=True)])
        return doc

    def note(self, event: str, detail: dict | None = None, *, with_key: bool = False) -> AuditRecord | None:
        """Best effort :meth:`append`: an event that cannot be written (a full
        disk) is counted by kind, logged, and reported by the next record that
        can be (``unrecorded``); returns None then. The agent must run on."""
        try:
            return self.append(event, detail, with_key=with_key)
        except BufferError_ as exc:
            self.unrecorded[event] = self.unrecorded.get(event, 0) + 1
            logger.error("device audit: could not record %s (%s); %d events unrecorded", event, exc,
                         sum(self.unrecorded.values()))
            return None

    def note_config(self, config_repr: str) -> AuditRecord | None:
        """Log ``config-changed`` when the configuration differs from the one last seen."""
        digest = hashlib.sha256(config_repr.encode()).hexdigest()
        previous = self.meta("config_sha256")
        if previous == digest:
            return None
        record = self.note("config-changed", {"sha256": digest, "previous_sha256": previous})
        if record is not None:  # not written: noted again at the next start
            self.set_meta("config_sha256", digest)
        return record

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> bool:
        """False (logged) if it cannot be written (a full disk)."""
        with self._lock:
            try:
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])
            except sqlite3.DatabaseError as exc:
                logger.error("device audit: cannot write %s: %s", key, exc)
                return False
        return True

    # -- reading and syncing -------------------------------------------------------
    def last(self) -> AuditRecord | None:
        row = self.conn.execute("SELECT record FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return record_from_dict(json.loads(row[0])) if row else None

    def records(self) -> list[AuditRecord]:
        return [record_from_dict(json.loads(r[0]))
                for r in self.conn.execute("SELECT record FROM records ORDER BY seq").fetchall()]

    def pending(self, limit: int = 100) -> list[AuditRecord]:
        with self._lock:
            rows = self.conn.execute("SELECT record FROM records WHERE published = 0 ORDER BY seq LIMIT ?",
                                     [limit]).fetchall()
        return [record_from_dict(json.loads(r[0])) for r in rows]

    def mark_published(self, seqs) -> bool:
        """False (logged) on a full disk: the records are published again later
        (central stores a record once)."""
        with self._lock:
            try:
                self.conn.executemany("UPDATE records SET published = 1 WHERE seq = ?", [(s,) for s in seqs])
            except sqlite3.DatabaseError as exc:
                logger.error("device audit: cannot mark %d records published: %s", len(seqs), exc)
                return False
        return True

    def close(self) -> None:
        self.conn.close()


@dataclasses.dataclass
class AuditWatch:
    """Called once a second by the agent's housekeeping loop: turns outbox
    eviction counters (a dict, or a callable returning one, read every
    ``count_every`` seconds), broker connectivity and clock behaviour into
    records."""

    log: DeviceAuditLog
    wall: object = time.time
    mono: object = time.monotonic
    count_every: float = 10.0
    _last: tuple[float, float] | None = None
    _counted_at: float | None = None
    _down_since: float | None = None
    _down_wall: float | None = None

    def tick(self, counters, connected: bool) -> None:
        try:
            self._tick(counters, connected)
        except Exception:  # the agent's housekeeping loop must go on
            logger.exception("device audit watch failed")

    def _tick(self, counters, connected: bool) -> None:
        wall, mono = self.wall(), self.mono()
        if self._last is not None:
            skew = (wall - self._last[0]) - (mono - self._last[1])
            if abs(skew) > CLOCK_JUMP_SECONDS:
                self.log.note("clock-jump", {"kind": "while-running", "seconds": round(skew, 3)})
        self._last = (wall, mono)
        if self._counted_at is None or mono - self._counted_at >= self.count_every:
            self._counted_at = mono
            self._evictions(counters() if callable(counters) else counters)
        self._connectivity(connected, wall, mono)

    def _evictions(self, counters: dict) -> None:
        seen = json.loads(self.log.meta("evictions") or "{}")
        now = {k: int(counters.get(k, 0)) for k in ("evicted_age", "evicted_capacity")}
        delta = {k: v - seen.get(k, 0) for k, v in now.items() if v > seen.get(k, 0)}
        if delta:
            reasons = {"evicted_age": "older than the buffer age limit (non-hit retention)",
                       "evicted_capacity": "buffer full"}
            try:
                self.log.append("buffer-evicted", {"counts": delta, "reasons": [reasons[k] for k in delta]})
            except BufferError_ as exc:  # a full disk: the whole delta is recorded once it can be
                logger.error("device audit: cannot record buffer-evicted yet: %s", exc)
                return
        if now != seen:
            self.log.set_meta("evictions", json.dumps(now))

    def _connectivity(self, connected: bool, wall: float, mono: float) -> None:
        if not connected:
            if self._down_since is None:
                self._down_since, self._down_wall = mono, wall
        elif self._down_since is not None:
            gap = mono - self._down_since
            if gap > SYNC_GAP_SECONDS:
                self.log.note("sync-gap", {"seconds": round(gap, 1), "from": _iso(self._down_wall),
                                           "to": _iso(wall)})
            self._down_since = self._down_wall = None


class AuditPublisher:
    """Publishes unsent records (QoS 1) from the sync thread, one message in
    flight, and marks them sent only when central's acknowledgement on
    ``.../<device>/audit-ack`` names them (after central committed them): a
    record published while central refused the device (suspended), was not
    listening, or just before the agent stopped is sent again (after a
    reconnect, or ``timeout`` seconds without an ack), and central stores it
    once.

    If the broker refuses the ack subscription (a broker ACL generated before
    audit acks existed: regenerate it with ``alpr-central broker config``), the
    broker's PUBACK counts as sent, as before, with a warning."""

    def __init__(self, log: DeviceAuditLog, *, interval: float = 1.0, timeout: float = 30.0) -> None:
        self.log, self.interval, self.timeout = log, interval, timeout
        self._inflight = None          # (info, seqs, sent_at, generation)
        self._next = 0.0
        self._acks: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.acks_enabled = True       # False: the broker refused our audit-ack subscription
        self.counters = {"acked": 0, "bad_acks": 0, "resends": 0}

    def on_ack(self, payload: bytes) -> None:
        """Called from the MQTT thread with an audit-ack payload."""
        self._acks.put(payload)

    def _take_acks(self) -> set[int]:
        done: set[int] = set()
        while True:
            try:
                payload = self._acks.get_nowait()
            except queue.Empty:
                return done
            try:
                ack = decode_audit_ack(payload)
            except MalformedMessage:
                self.counters["bad_acks"] += 1
                continue
            if ack.device_id == self.log.device_id:
                done.update(ack.held)
                done.update(ack.conflicts)   # central holds another record there and said so: resending cannot help

    def step(self, client, topic: str, generation: int, now: float) -> None:
        acked = self._take_acks()
        if acked and self.log.mark_published(sorted(acked)):
            self.counters["acked"] += len(acked)
        if self._inflight is not None:
            info, seqs, sent_at, gen = self._inflight
            if acked.issuperset(seqs):
                self._inflight = None
            elif not self.acks_enabled and info.is_published():
                self.log.mark_published(seqs)
                self._inflight = None
            elif gen != generation or now - sent_at > self.timeout:
                self.counters["resends"] += 1
                self._inflight = None   # the session changed or central never acknowledged: send again
            else:
                return
        if now < self._next:
            return
        self._next = now + self.interval
        records = self.log.pending(100)
        if not records:
            return
        info = client.publish(topic, encode_audit_batch(self.log.device_id, records), qos=1)
        if info.rc == 0:
            self._inflight = (info, [r.seq for r in records], now, generation)


def open_for(config, *, clock=time.time, unrecorded: dict[str, int] | None = None) -> DeviceAuditLog | None:
    """The audit log of a configured device (``<data_dir>/audit.sqlite``), or
    None when the device has no key (TLS off, e.g. a bench setup)."""
    if not config.sync.key_file:
        return None
    log = DeviceAuditLog(config.data_dir / "audit.sqlite", config.device.id, config.sync.key_file, clock=clock,
                         unrecorded=unrecorded)
    log.note_config(repr(config))
    return log


def log_cli_use(config, command: str, *, clock=time.time) -> None:
    """Record a local CLI command in the device's audit log (best effort: a
    CLI must keep working when the log cannot be opened).

    The log is never *created* by another account than the one owning the
    data folder (root running ``alpr-edge status`` must not leave a root-owned
    file the agent cannot write); SQLite side files left by root are handed
    back to the log's owner."""
    path = config.data_dir / "audit.sqlite"
    try:
        owner = path.stat() if path.exists() else config.data_dir.stat()
    except OSError:
        return  # no data folder yet: nothing to record into
    if not path.exists() and os.geteuid() != owner.st_uid:
        return
    try:
        log = open_for(config, clock=clock)
    except Exception as exc:  # the CLI must not fail because of the audit log
        logger.debug("cannot record CLI use in the audit log: %s", exc)
        return
    if log is None:
        return
    try:
        log.append("cli", {"command": command, "uid": os.getuid()})
    except Exception as exc:
        logger.debug("cannot record CLI use in the audit log: %s", exc)
    finally:
        log.close()
        if os.geteuid() == 0 and owner.st_uid != 0:
            for side in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                try:
                    os.chown(side, owner.st_uid, owner.st_gid)
                except OSError:
                    pass


def install_cli_audit(group) -> None:
    """Wrap every command of a click group that takes ``--config`` so its use
    is logged. Called once at the bottom of ``edge_agent/cli.py``."""
    import functools

    from .config import load

    def wrap(cmd, path):
        inner = cmd.callback

        @functools.wraps(inner)
        def logged(*args, **kwargs):
            config_path = kwargs.get("config_path")
            if config_path:
                try:
                    log_cli_use(load(config_path), path)
                except Exception as exc:  # a bad config is reported by the command itself
                    logger.debug("CLI audit skipped: %s", exc)
            return inner(*args, **kwargs)

        cmd.callback = logged

    def walk(g, prefix):
        for name, cmd in g.commands.items():
            if hasattr(cmd, "commands"):
                walk(cmd, prefix + [name])
            elif cmd.callback is not None and name != "run":  # 'run' logs agent-start itself
                wrap(cmd, " ".join(prefix + [name]))

    walk(group, [])
