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
from edge_agent.wire.audit import GENESIS, AuditRecord, decode_audit_batch, public_key_id, record_from_dict, \
    record_hash

from ..governance.audit import ts, utcnow

logger = logging.getLogger(__name__)


class DeviceAuditHandler:
    def __init__(self, db_path, *, topic_prefix: str = "alpr/v1/devices", clock=utcnow) -> None:
        self.conn = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA synchronous=FULL")
        self.topics = Topics(topic_prefix)
        self._clock = clock
        self._lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()

    def accepts(self, topic: str) -> bool:
        return self.topics.audit_device_of(topic) is not None

    def handle(self, topic: str, payload: bytes) -> int:
        """Store the records of one message; returns how many were new."""
        device = self.topics.audit_device_of(topic)
        try:
            batch_device, records = decode_audit_batch(payload)
        except MalformedMessage as exc:
            self.counters["audit.malformed"] += 1
            logger.warning("rejected an audit message from %s: %s", device, exc)
            return 0
        if batch_device != device:
            self.counters["audit.wrong-device"] += 1
            logger.warning("rejected an audit message on %s's topic naming another device", device)
            return 0
        new = conflicts = 0
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
                    elif self.conn.execute("SELECT record FROM device_audit WHERE device_id = ? AND seq = ?",
                                           [device, r.seq]).fetchone()[0] != text:
                        conflicts += 1
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
                    self.conn.execute("ROLLBACK")
                raise
        self.counters["audit.records"] += new
        if conflicts:
            self.counters["audit.conflicts"] += conflicts
            logger.warning("device %s re-sent %d audit record(s) that differ from the ones held", device, conflicts)
        return new

    def close(self) -> None:
        self.conn.close()


@dataclasses.dataclass(frozen=True)
class DeviceIssue:
    seq: int
    kind: str
    message: str


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
    return report


def last_received(conn: sqlite3.Connection, device_id: str) -> dt.datetime | None:
    row = conn.execute("SELECT max(received_at) FROM device_audit WHERE device_id = ?", [device_id]).fetchone()
    return dt.datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc) if row[0] else None
