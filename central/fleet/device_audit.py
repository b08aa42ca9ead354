"""Device audit logs at central: receive them, keep them, verify them.

:class:`DeviceAuditHandler` is subscribed by ``CollectorService`` to
``alpr/v1/devices/+/audit``. It stores every well-formed record as received
(``device_audit``, keyed by device and seq; a re-sent identical record is
stored once, a *different* record for a seq already held is counted as a
conflict and logged). It does not judge records on arrival: forged or broken
ones stay visible to :func:`verify_device`.

:func:`verify_device` (``alpr-central audit device DEVICE``) walks a device's
records in order and reports:

- ``gap``           seqs missing (not yet received, or deleted on the way)
- ``altered``       a record's content does not match its hash
- ``broken``        a record does not link to the one before it
- ``bad-signature`` the signature does not verify with the record's key
- ``unknown-key``   signed with a key never introduced in the log
- ``key-mismatch``  the newest key is not the one in the device certificate

Keys: the ``provisioned`` record introduces the first key (trust on first
use, or the certificate given with ``--cert``); ``key-rotated`` records
introduce later ones and are reported as such.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import json
import logging
import sqlite3
import threading

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge_agent.wire import MalformedMessage, Topics
from edge_agent.wire.audit import GENESIS, AuditAck, AuditRecord, decode_audit_batch, public_key_id, \
    record_from_dict, record_hash

from ..governance.audit import ts, utcnow
from ..store.database import connect, dialect

logger = logging.getLogger(__name__)


class DeviceAuditHandler:
    def __init__(self, db_path, *, topic_prefix: str = "alpr/v1/devices", clock=utcnow) -> None:
        self.conn = connect(db_path)  # a SQLite file or a postgresql:// URL
        if dialect(self.conn) == "sqlite":
            self.conn.execute("PRAGMA synchronous=FULL")
        self.topics = Topics(topic_prefix)
        self._clock = clock
        self._lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()
        self._last_new = 0

    def accepts(self, topic: str) -> bool:
        return self.topics.audit_device_of(topic) is not None

    def handle(self, topic: str, payload: bytes) -> int:
        """Store the records of one message; returns how many were new."""
        ack = self.receive(topic, payload)
        return self._last_new if ack is not None else 0

    def receive(self, topic: str, payload: bytes) -> AuditAck | None:
        """Store the records of one message once they are committed, the
        acknowledgement to send the device (on :meth:`Topics.audit_ack`): the
        seqs held, and those held with different content; None when the message
        is refused (nothing stored, nothing acknowledged: the device sends it
        again)."""
        self._last_new = 0
        device = self.topics.audit_device_of(topic)
        try:
            batch_device, records = decode_audit_batch(payload)
        except MalformedMessage as exc:
            self.counters["audit.malformed"] += 1
            logger.warning("rejected an audit message from %s: %s", device, exc)
            return None
        if batch_device != device:
            self.counters["audit.wrong-device"] += 1
            logger.warning("rejected an audit message on %s's topic naming another device", device)
            return None
        new = 0
        held, conflicted = [], []
        received = ts(self._clock())
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for r in records:
                    text = json.dumps(r.to_dict(), sort_keys=True)
                    cur = self.conn.execute("INSERT OR IGNORE INTO device_audit VALUES (?,?,?,?)",
                                            [device, r.seq, text, received])
                    if cur.rowcount:
                        new += 1
                        held.append(r.seq)
                    elif self.conn.execute("SELECT record FROM device_audit WHERE device_id = ? AND seq = ?",
                                           [device, r.seq]).fetchone()[0] != text:
                        conflicted.append(r.seq)
                    else:
                        held.append(r.seq)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
                    self.conn.execute("ROLLBACK")
                raise
        self.counters["audit.records"] += new
        if conflicted:
            self.counters["audit.conflicts"] += len(conflicted)
            logger.warning("device %s re-sent %d audit record(s) that differ from the ones held", device,
                           len(conflicted))
        self._last_new = new
        return AuditAck(device, tuple(held), tuple(conflicted))

    def close(self) -> None:
        self.conn.close()


@dataclasses.dataclass(frozen=True)
class DeviceIssue:
    seq: int
    kind: str
    message: str
    reason: str = ""        # a gap central can explain: "suspended", "offline"; "" = unexplained


@dataclasses.dataclass(frozen=True)
class DeviceAuditReport:
    device_id: str
    records: int
    first_seq: int | None
    last_seq: int | None
    keys: tuple[str, ...]
    events: dict
    issues: tuple[DeviceIssue, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.issues

    def as_dict(self) -> dict:
        return {"device_id": self.device_id, "ok": self.ok, "records": self.records, "first_seq": self.first_seq,
                "last_seq": self.last_seq, "keys": list(self.keys), "events": self.events,
                "issues": [dataclasses.asdict(i) for i in self.issues], "notes": list(self.notes)}


def _load_pem_key(pem: str):
    key = serialization.load_pem_public_key(pem.encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, public_key_id(der)


def verify_records(device_id: str, records: list[AuditRecord], *, cert_pem: bytes | None = None) -> DeviceAuditReport:
    issues: list[DeviceIssue] = []
    notes: list[str] = []
    keys: dict[str, object] = {}
    cert_key_id = None
    if cert_pem is not None:
        cert = x509.load_pem_x509_certificate(cert_pem)
        der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        cert_key_id = public_key_id(der)
        keys[cert_key_id] = cert.public_key()
    events: collections.Counter[str] = collections.Counter()
    prev: AuditRecord | None = None
    expected = 1
    for r in sorted(records, key=lambda x: x.seq):
        events[r.event] += 1
        if r.seq > expected:
            issues.append(DeviceIssue(r.seq, "gap", f"records {expected}-{r.seq - 1} are missing"
                                      if r.seq - 1 > expected else f"record {expected} is missing"))
        h = record_hash(r.device_id, r.seq, r.at, r.event, r.detail, r.prev_hash, r.key_id, r.public_key)
        if h != r.hash:
            issues.append(DeviceIssue(r.seq, "altered", f"record {r.seq} ({r.event}) was altered: its content does "
                                                        "not match its hash"))
        if prev is not None and r.seq == prev.seq + 1 and r.prev_hash != prev.hash:
            issues.append(DeviceIssue(r.seq, "broken", f"record {r.seq} does not link to record {prev.seq}"))
        if r.seq == 1 and r.prev_hash != GENESIS:
            issues.append(DeviceIssue(1, "broken", "record 1 does not start the chain"))
        if r.public_key:
            try:
                key, kid = _load_pem_key(r.public_key)
            except ValueError:
                issues.append(DeviceIssue(r.seq, "altered", f"record {r.seq} carries an unreadable public key"))
                key, kid = None, None
            if key is not None:
                if kid != r.key_id:
                    issues.append(DeviceIssue(r.seq, "altered", f"record {r.seq}: key id does not match its key"))
                elif r.event == "key-rotated":
                    notes.append(f"key rotated at record {r.seq} to {kid}")
                keys.setdefault(kid, key)
        key = keys.get(r.key_id)
        if key is None:
            issues.append(DeviceIssue(r.seq, "unknown-key", f"record {r.seq} is signed with key {r.key_id}, which "
                                                            "the log never introduced"))
        else:
            try:
                key.verify(base64.b64decode(r.signature), r.hash.encode(), ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError, TypeError):
                issues.append(DeviceIssue(r.seq, "bad-signature", f"record {r.seq} ({r.event}): the signature does "
                                                                  f"not verify with key {r.key_id}"))
        prev, expected = r, max(expected, r.seq + 1)
    if cert_key_id is not None and prev is not None and prev.key_id != cert_key_id:
        issues.append(DeviceIssue(prev.seq, "key-mismatch", f"the newest records are signed with {prev.key_id}, "
                                                            f"not the certificate's key {cert_key_id}"))
    ordered = sorted(records, key=lambda x: x.seq)
    return DeviceAuditReport(device_id, len(records), ordered[0].seq if ordered else None,
                             ordered[-1].seq if ordered else None, tuple(dict.fromkeys(r.key_id for r in ordered)),
                             dict(events), tuple(issues), tuple(notes))


def load_records(conn: sqlite3.Connection, device_id: str) -> list[AuditRecord]:
    out = []
    for seq, text in conn.execute("SELECT seq, record FROM device_audit WHERE device_id = ? ORDER BY seq",
                                  [device_id]).fetchall():
        try:
            record = record_from_dict(json.loads(text))
        except (ValueError, MalformedMessage):
            continue  # stored records passed this check on arrival; a row edited into junk shows as a gap
        if record.seq == seq:
            out.append(record)
    return out


def verify_device(conn: sqlite3.Connection, device_id: str, *, cert_pem: bytes | None = None) -> DeviceAuditReport:
    records = load_records(conn, device_id)
    report = verify_records(device_id, records, cert_pem=cert_pem)
    if not records:
        return dataclasses.replace(report, issues=(DeviceIssue(0, "gap", f"no audit records from {device_id}"),))
    return explain_gaps(conn, report, records)


def _parse_at(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _suspensions(conn: sqlite3.Connection, device_id: str) -> list[tuple[dt.datetime, dt.datetime | None, str]]:
    """(from, until or None, by whom) for each time the registry suspended the device."""
    try:
        rows = conn.execute("SELECT at, actor, action FROM registry_events WHERE subject = ? AND action IN "
                            "('device-suspended', 'device-active', 'business-withdraw') ORDER BY id",
                            [device_id]).fetchall()
    except sqlite3.OperationalError:   # a database without the registry
        return []
    out, start = [], None
    for at, actor, action in rows:
        t = _parse_at(at)
        if action == "device-suspended" and start is None:
            start = (t, actor)
        elif action == "device-active" and start is not None:
            out.append((start[0], t, start[1]))
            start = None
    if start is not None:
        out.append((start[0], None, start[1]))
    return out


def explain_gaps(conn: sqlite3.Connection, report: DeviceAuditReport, records: list[AuditRecord]) -> DeviceAuditReport:
    """Say why a gap exists when central knows: the registry had the device
    suspended (central refused what it sent) or the device itself recorded
    that the broker was unreachable (``sync-gap``) over the time the missing
    records were written. The gap stays an issue (the records are missing
    until the device sends them again); a gap central cannot explain is a
    possible break."""
    by_seq = {r.seq: r for r in records}
    suspended = _suspensions(conn, report.device_id)
    out = []
    for issue in report.issues:
        if issue.kind != "gap" or issue.seq not in by_seq:
            out.append(issue)
            continue
        after = by_seq[issue.seq]
        before = max((r for r in records if r.seq < issue.seq), key=lambda r: r.seq, default=None)
        start = _parse_at(before.at) if before else None
        end = _parse_at(after.at)
        why = ""
        for s_from, s_until, actor in suspended:
            if (end is None or s_from <= end) and (s_until is None or start is None or s_until >= start):
                why = (f"; central had the device suspended from {ts(s_from)} "
                       f"{'until ' + ts(s_until) if s_until else '(still suspended)'} (by {actor}) and refused what "
                       "it sent then: the device keeps those records and sends them again once it is accepted")
                out.append(dataclasses.replace(issue, message=issue.message + why, reason="suspended"))
                break
        if why:
            continue
        offline = [r for r in records if r.event == "sync-gap" and start is not None and end is not None
                   and (_parse_at(str(r.detail.get("to"))) or end) >= start
                   and (_parse_at(str(r.detail.get("from"))) or start) <= end]
        if offline:
            d = offline[0].detail
            out.append(dataclasses.replace(issue, reason="offline", message=issue.message + (
                f"; the device recorded the broker unreachable from {d.get('from')} to {d.get('to')}: records "
                "written then are sent when it reconnects")))
            continue
        out.append(dataclasses.replace(issue, message=issue.message + "; central knows no reason for it (no "
                                                                      "suspension, no recorded outage): a possible break"))
    return dataclasses.replace(report, issues=tuple(out))


def last_received(conn: sqlite3.Connection, device_id: str) -> dt.datetime | None:
    row = conn.execute("SELECT max(received_at) FROM device_audit WHERE device_id = ?", [device_id]).fetchone()
    return dt.datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc) if row[0] else None
