"""Payload schema (version 1): the plate read, the batch frame, the ack.

A read is serialised as ``u32 length | JSON | crop JPEG | context JPEG`` (then
sealed, see :mod:`.envelope`); the images ride as raw bytes after the JSON, so
they are neither base64-inflated nor scanned by the JSON codec::

    {"v": 1, "read_id": "<uuid4>", "device_id": "...", "camera_id": "...",
     "captured_at": "2026-11-22T02:37:21.123456Z", "plate": "7ABC123",
     "confidence": 0.97, "box": [x, y, w, h],
     "alternates": [{"plate": "7A8C123", "confidence": 0.4}],   # at most 5
     "crop_bytes": <int>, "context_bytes": <int>,               # 0 = no image
     "location": {"lat": 34.05, "lon": -118.24, "heading": 90.0}|null,
     "model_version": "..."}

A batch frame carries many sealed reads in one MQTT message::

    b"ALB1" | batch_id (16 bytes, UUID) | count (u16) | count x (u32 length | envelope)

The ack central sends after the batch is durably stored is JSON::

    {"v": 1, "batch": "<uuid>", "stored": ["<read_id>", ...],
     "rejected": [{"read_id": "<uuid>", "reason": "undecryptable"}, ...]}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import struct
import time
import uuid

from .errors import MalformedMessage
from .topics import DEVICE_ID_RE

SCHEMA_VERSION = 1
MAX_PLATE_LEN = 10
MAX_ALTERNATES = 5
MAX_IMAGE_BYTES = 512 * 1024
MAX_BATCH_READS = 1000
# A capture time outside these years is a broken clock or a forged read: refused,
# so every stored time sorts, searches and expires as a time (central also
# refuses reads from more than a day in its future).
EARLIEST_CAPTURE = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
LATEST_CAPTURE = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
# A device sends batches of at most this many bytes: half of what central and the
# broker take in one message (8 MiB), whatever the reads' images weigh.
MAX_BATCH_BYTES = 4 << 20
_PLATE_RE = re.compile(r"^[A-Z0-9]{1,10}\Z")
CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_CAMERA_RE = CAMERA_ID_RE
# The canonical text of a UUID (what str(uuid.UUID(x)) gives): lower-case hex, hyphenated.
_CANONICAL_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_BATCH_HEAD = struct.Struct(">4s16sH")
_LEN = struct.Struct(">I")
BATCH_MAGIC = b"ALB1"


def normalise_plate(text: str) -> str:
    """Upper-case letters and digits only: the form plates are stored and searched in."""
    if _PLATE_RE.match(text):  # already in that form (every read's plate): no per-character pass
        return text
    return "".join(ch for ch in text.upper() if ch.isascii() and ch.isalnum())


# Characters OCR (and people) confuse on plates, folded to one representative.
# Central's confusion-tolerant search and the edge's plate rules both use this.
CONFUSABLE_GROUPS = ("0ODQ", "1IL", "8B", "5S", "2Z")
_FOLD = str.maketrans({ch: group[0] for group in CONFUSABLE_GROUPS for ch in group})


def fold_confusables(plate: str) -> str:
    """Map every confusable character to its group's representative
    (``"SO1B"`` -> ``"5018"``). Wildcards ``*`` and ``?`` pass through."""
    return plate.translate(_FOLD)


def new_read_id() -> str:
    """A random UUID (version 4, 122 random bits from the OS).

    Not a UUIDv7: an id that encodes its creation time would tell anyone holding
    a stolen device's outbox (where ids and envelope headers are in clear) when
    each read was taken. Nothing orders reads by id: the device orders by its
    outbox ``seq``, central by the sealed ``captured_at``."""
    return str(uuid.uuid4())


@dataclasses.dataclass(frozen=True)
class Alternate:
    plate: str
    confidence: float


@dataclasses.dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    heading: float | None = None  # degrees clockwise from true north


@dataclasses.dataclass(frozen=True)
class PlateRead:
    """One plate seen by one camera: what the device seals and central stores.

    ``read_id`` is a random UUID (v4) string, unique across devices, so central
    stores a re-sent read exactly once; it carries no time.
    """

    read_id: str
    device_id: str
    camera_id: str
    captured_at: dt.datetime
    plate: str
    confidence: float
    box: tuple[int, int, int, int]
    alternates: tuple[Alternate, ...] = ()
    crop_jpeg: bytes | None = dataclasses.field(default=None, repr=False)
    context_jpeg: bytes | None = dataclasses.field(default=None, repr=False)
    location: Location | None = None
    model_version: str = ""

    def __post_init__(self) -> None:
        _check(self)

    def __repr__(self) -> str:  # never show plate text in logs or tracebacks
        return f"PlateRead(read_id={self.read_id!r}, device_id={self.device_id!r}, camera_id={self.camera_id!r})"


def _fail(msg: str):
    raise MalformedMessage(msg)


def _check(r: PlateRead) -> None:
    # "{...}", "urn:uuid:..." or upper case would store a second copy of one read
    if not isinstance(r.read_id, str) or not _CANONICAL_UUID_RE.match(r.read_id):
        try:
            uuid.UUID(r.read_id)
        except (ValueError, TypeError, AttributeError):
            _fail("read_id is not a UUID")
        _fail("read_id is not a UUID in canonical form")
    if not isinstance(r.device_id, str) or not DEVICE_ID_RE.match(r.device_id):
        _fail("device_id is invalid")
    if not isinstance(r.camera_id, str) or not _CAMERA_RE.match(r.camera_id):
        _fail("camera_id is invalid")
    if not isinstance(r.captured_at, dt.datetime) or r.captured_at.utcoffset() != dt.timedelta(0):
        _fail("captured_at must be an aware UTC datetime")
    if not EARLIEST_CAPTURE <= r.captured_at < LATEST_CAPTURE:
        _fail(f"captured_at must be in {EARLIEST_CAPTURE.year}-{LATEST_CAPTURE.year - 1}")
    if not isinstance(r.plate, str) or not _PLATE_RE.match(r.plate):
        _fail("plate must be 1-10 upper-case letters or digits")
    _check_conf(r.confidence, "confidence")
    if (not isinstance(r.box, tuple) or len(r.box) != 4
            or not all(type(v) is int and 0 <= v < 100_000 for v in r.box)):
        _fail("box must be four non-negative integers")
    if not isinstance(r.alternates, tuple) or len(r.alternates) > MAX_ALTERNATES:
        _fail("at most 5 alternates")
    for alt in r.alternates:
        if not isinstance(alt, Alternate) or not isinstance(alt.plate, str) or not _PLATE_RE.match(alt.plate):
            _fail("alternate plate is invalid")
        _check_conf(alt.confidence, "alternate confidence")
    for name in ("crop_jpeg", "context_jpeg"):
        img = getattr(r, name)
        if img is not None and (not isinstance(img, bytes) or not 0 < len(img) <= MAX_IMAGE_BYTES):
            _fail(f"{name} must be 1-{MAX_IMAGE_BYTES} bytes")
    loc = r.location
    if loc is not None:
        if not isinstance(loc, Location):
            _fail("location is invalid")
        for value, lim, name in ((loc.latitude, 90, "lat"), (loc.longitude, 180, "lon")):
            if type(value) not in (int, float) or not -lim <= value <= lim:
                _fail(f"location {name} out of range")
        if loc.heading is not None and (type(loc.heading) not in (int, float) or not 0 <= loc.heading < 360):
            _fail("location heading must be in [0, 360)")
    if not isinstance(r.model_version, str) or len(r.model_version) > 64 or not _is_text(r.model_version):
        _fail("model_version must be printable text of at most 64 characters")


def _is_text(value: str) -> bool:
    """Printable and encodable as UTF-8: a lone surrogate ("\\ud800", valid as
    escaped JSON) is neither, and would fail in the store, not here."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


def _check_conf(value, name: str) -> None:
    if type(value) not in (int, float) or not (0.0 <= value <= 1.0) or math.isnan(value):
        _fail(f"{name} must be a number in [0, 1]")


def encode_read(read: PlateRead) -> bytes:
    loc = read.location
    crop, context = read.crop_jpeg or b"", read.context_jpeg or b""
    doc = {
        "v": SCHEMA_VERSION,
        "read_id": read.read_id,
        "device_id": read.device_id,
        "camera_id": read.camera_id,
        "captured_at": read.captured_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "plate": read.plate,
        "confidence": read.confidence,
        "box": list(read.box),
        "alternates": [{"plate": a.plate, "confidence": a.confidence} for a in read.alternates],
        "crop_bytes": len(crop),
        "context_bytes": len(context),
        "location": None if loc is None else {"lat": loc.latitude, "lon": loc.longitude, "heading": loc.heading},
        "model_version": read.model_version,
    }
    head = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    return b"".join((_LEN.pack(len(head)), head, crop, context))


_KEYS = {"v", "read_id", "device_id", "camera_id", "captured_at", "plate", "confidence", "box",
         "alternates", "crop_bytes", "context_bytes", "location", "model_version"}


def decode_read(data: bytes) -> PlateRead:
    """Parse and validate one read payload; raises :class:`MalformedMessage`."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _LEN.size:
        _fail("read payload truncated")
    (n,) = _LEN.unpack_from(data)
    if _LEN.size + n > len(data):
        _fail("read payload truncated")
    try:
        doc = json.loads(data[_LEN.size:_LEN.size + n])
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        _fail("read payload is not JSON")
    if not isinstance(doc, dict):
        _fail("read payload is not an object")
    if doc.get("v") != SCHEMA_VERSION:
        _fail("unsupported read schema version")
    if set(doc) != _KEYS:
        _fail("read payload keys do not match schema version 1")
    stamp = doc["captured_at"]
    if not isinstance(stamp, str) or len(stamp) != 27 or stamp[-1] != "Z":
        _fail("captured_at is not an ISO 8601 UTC time")
    try:
        captured = dt.datetime.fromisoformat(stamp)  # 3.11 reads the trailing Z as UTC
    except ValueError:
        _fail("captured_at is not an ISO 8601 UTC time")
    box, alts, loc = doc["box"], doc["alternates"], doc["location"]
    if not isinstance(box, list) or not isinstance(alts, list) or not (loc is None or isinstance(loc, dict)):
        _fail("box, alternates or location has the wrong type")
    if not all(isinstance(a, dict) and set(a) == {"plate", "confidence"} for a in alts):
        _fail("alternate has the wrong shape")
    if loc is not None and set(loc) != {"lat", "lon", "heading"}:
        _fail("location has the wrong shape")
    crop_n, context_n = doc["crop_bytes"], doc["context_bytes"]
    if type(crop_n) is not int or type(context_n) is not int or crop_n < 0 or context_n < 0:
        _fail("image sizes must be non-negative integers")
    start = _LEN.size + n
    if start + crop_n + context_n != len(data):
        _fail("image sizes do not match the payload")
    return PlateRead(
        read_id=doc["read_id"], device_id=doc["device_id"], camera_id=doc["camera_id"],
        captured_at=captured, plate=doc["plate"], confidence=doc["confidence"], box=tuple(box),
        alternates=tuple(Alternate(a["plate"], a["confidence"]) for a in alts),
        crop_jpeg=bytes(data[start:start + crop_n]) or None, context_jpeg=bytes(data[start + crop_n:]) or None,
        location=None if loc is None else Location(loc["lat"], loc["lon"], loc["heading"]),
        model_version=doc["model_version"],
    )


@dataclasses.dataclass(frozen=True)
class Batch:
    batch_id: str
    envelopes: tuple[bytes, ...]


def encode_batch(batch_id: str, envelopes) -> bytes:
    envelopes = list(envelopes)
    if not 0 < len(envelopes) <= MAX_BATCH_READS:
        raise ValueError(f"a batch holds 1-{MAX_BATCH_READS} envelopes")
    parts = [_BATCH_HEAD.pack(BATCH_MAGIC, uuid.UUID(batch_id).bytes, len(envelopes))]
    for env in envelopes:
        parts.append(_LEN.pack(len(env)))
        parts.append(env)
    return b"".join(parts)


def decode_batch(data: bytes, max_bytes: int = 8 << 20) -> Batch:
    if not isinstance(data, (bytes, bytearray)):
        _fail("batch is not bytes")
    if len(data) > max_bytes:
        _fail("batch too large")
    if len(data) < _BATCH_HEAD.size:
        _fail("batch truncated")
    magic, bid, count = _BATCH_HEAD.unpack_from(data)
    if magic != BATCH_MAGIC:
        _fail("unknown batch magic")
    if not 0 < count <= MAX_BATCH_READS:
        _fail("batch count out of range")
    pos, out = _BATCH_HEAD.size, []
    for _ in range(count):
        if pos + _LEN.size > len(data):
            _fail("batch truncated")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if n == 0 or pos + n > len(data):
            _fail("batch truncated")
        out.append(bytes(data[pos:pos + n]))
        pos += n
    if pos != len(data):
        _fail("trailing bytes after batch")
    return Batch(str(uuid.UUID(bytes=bid)), tuple(out))


@dataclasses.dataclass(frozen=True)
class Ack:
    batch_id: str
    stored: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...] = ()  # (read_id, reason)


def encode_ack(ack: Ack) -> bytes:
    return json.dumps({
        "v": SCHEMA_VERSION, "batch": ack.batch_id, "stored": list(ack.stored),
        "rejected": [{"read_id": r, "reason": why} for r, why in ack.rejected],
    }, separators=(",", ":")).encode()


def decode_ack(data: bytes) -> Ack:
    try:
        doc = json.loads(data)
        if doc["v"] != SCHEMA_VERSION:
            raise ValueError
        stored = tuple(str(uuid.UUID(x)) for x in doc["stored"])
        rejected = tuple((str(uuid.UUID(r["read_id"])), str(r["reason"])[:64]) for r in doc["rejected"])
        return Ack(str(uuid.UUID(doc["batch"])), stored, rejected)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError):
        _fail("ack does not follow the schema")
