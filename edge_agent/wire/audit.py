"""Device audit records on the wire (topic ``alpr/v1/devices/<id>/audit``).

Each device keeps an append-only, hash-chained log of what happened to it
(provisioning, config changes, key rotation, buffer evictions, sync gaps,
local CLI use, clock jumps), each record signed with the device's own key
(its TLS client key, ECDSA P-256). Both sides compute the hash here::

    hash = SHA-256(prev_hash "\\n" canonical JSON [v, device_id, seq, at, event, detail, key_id, public_key])

``signature`` is ECDSA-SHA256 (DER, base64) over the ASCII hex ``hash``.
``public_key`` (PEM) is present on ``provisioned`` and ``key-rotated``
records only; ``key_id`` is the first 16 hex digits of SHA-256 of the
key's DER SubjectPublicKeyInfo. A message is a JSON object
``{"v": 1, "device_id": ..., "records": [...]}``; records never hold plates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from .errors import MalformedMessage
from .topics import DEVICE_ID_RE

AUDIT_VERSION = 1
GENESIS = "0" * 64
EVENTS = ("provisioned", "key-rotated", "config-changed", "buffer-evicted", "sync-gap", "cli", "clock-jump",
          "agent-start", "agent-stop",
          # remote configuration (edge_agent/remote_config.py)
          "config-accepted", "config-applied", "config-refused", "config-rolled-back")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_HEX16 = re.compile(r"^[0-9a-f]{16}\Z")
_EVENT = re.compile(r"^[a-z][a-z-]{0,31}\Z")
MAX_RECORDS = 500


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    device_id: str
    seq: int
    at: str                 # ISO 8601 UTC, from the device's clock
    event: str
    detail: dict
    prev_hash: str
    key_id: str
    public_key: str         # PEM on provisioned / key-rotated, else ""
    hash: str
    signature: str          # base64 DER ECDSA-SHA256 over the hex hash

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def record_hash(device_id: str, seq: int, at: str, event: str, detail: dict, prev_hash: str, key_id: str,
                public_key: str) -> str:
    body = json.dumps([AUDIT_VERSION, device_id, seq, at, event, detail, key_id, public_key],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(prev_hash.encode() + b"\n" + body.encode()).hexdigest()


def public_key_id(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:16]


def record_from_dict(doc) -> AuditRecord:
    if not isinstance(doc, dict):
        raise MalformedMessage("audit record: expected an object")
    fields = {f.name for f in dataclasses.fields(AuditRecord)}
    if set(doc) != fields:
        raise MalformedMessage(f"audit record: fields must be exactly {sorted(fields)}")
    r = AuditRecord(**doc)
    if not isinstance(r.device_id, str) or not DEVICE_ID_RE.match(r.device_id):
        raise MalformedMessage("audit record: bad device_id")
    if type(r.seq) is not int or not 1 <= r.seq < 2 ** 63:  # SQLite's INTEGER: a bigger seq failed to store
        raise MalformedMessage("audit record: seq must be a positive 64-bit integer")
    if not isinstance(r.event, str) or not _EVENT.match(r.event):
        raise MalformedMessage("audit record: bad event name")
    if not isinstance(r.detail, dict):
        raise MalformedMessage("audit record: detail must be an object")
    for name, rx in (("prev_hash", _HEX64), ("hash", _HEX64), ("key_id", _HEX16)):
        if not isinstance(getattr(r, name), str) or not rx.match(getattr(r, name)):
            raise MalformedMessage(f"audit record: bad {name}")
    for name in ("at", "public_key", "signature"):
        if not isinstance(getattr(r, name), str) or len(getattr(r, name)) > 4096:
            raise MalformedMessage(f"audit record: bad {name}")
    return r


def encode_audit_batch(device_id: str, records: list[AuditRecord]) -> bytes:
    return json.dumps({"v": AUDIT_VERSION, "device_id": device_id,
                       "records": [r.to_dict() for r in records]}, separators=(",", ":")).encode()


def decode_audit_batch(payload: bytes, max_bytes: int = 4 << 20) -> tuple[str, list[AuditRecord]]:
    if len(payload) > max_bytes:
        raise MalformedMessage("audit batch too large")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedMessage("audit batch: not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != AUDIT_VERSION or not isinstance(doc.get("records"), list):
        raise MalformedMessage("audit batch: expected {v: 1, device_id, records: [...]}")
    device = doc.get("device_id")
    if not isinstance(device, str) or not DEVICE_ID_RE.match(device):
        raise MalformedMessage("audit batch: bad device_id")
    if len(doc["records"]) > MAX_RECORDS:
        raise MalformedMessage("audit batch: too many records")
    records = [record_from_dict(r) for r in doc["records"]]
    if any(r.device_id != device for r in records):
        raise MalformedMessage("audit batch: a record names another device")
    return device, records


# -- the acknowledgement (central -> device, ``alpr/v1/devices/<id>/audit-ack``) ----------------
# Central sends it after the batch's records are committed: ``held`` names the
# seqs it now holds as sent (new, or an identical copy already held);
# ``conflicts`` the seqs for which it holds a *different* record (logged at
# central; resending cannot help). The device marks both sent, and sends
# everything else again, so a record published while central refused the
# device or was not listening is never lost.
@dataclasses.dataclass(frozen=True)
class AuditAck:
    device_id: str
    held: tuple[int, ...]
    conflicts: tuple[int, ...] = ()


def encode_audit_ack(ack: AuditAck) -> bytes:
    return json.dumps({"v": AUDIT_VERSION, "device_id": ack.device_id, "held": list(ack.held),
                       "conflicts": list(ack.conflicts)}, separators=(",", ":")).encode()


def decode_audit_ack(payload: bytes) -> AuditAck:
    if not isinstance(payload, (bytes, bytearray)) or len(payload) > 64 * 1024:
        raise MalformedMessage("audit ack: not bytes or too large")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedMessage("audit ack: not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != AUDIT_VERSION or set(doc) != {"v", "device_id", "held",
                                                                                   "conflicts"}:
        raise MalformedMessage("audit ack: expected {v: 1, device_id, held: [...], conflicts: [...]}")
    device = doc["device_id"]
    if not isinstance(device, str) or not DEVICE_ID_RE.match(device):
        raise MalformedMessage("audit ack: bad device_id")
    lists = []
    for name in ("held", "conflicts"):
        seqs = doc[name]
        if (not isinstance(seqs, list) or len(seqs) > MAX_RECORDS
                or any(type(s) is not int or s < 1 for s in seqs)):
            raise MalformedMessage(f"audit ack: {name} must be a list of at most {MAX_RECORDS} positive seqs")
        lists.append(tuple(seqs))
    return AuditAck(device, lists[0], lists[1])
