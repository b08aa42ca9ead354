"""Update offers over MQTT (version 1): central offers a signed release bundle
to a device, the device fetches it in chunks and reports each state back.

Topics (all under the device's own prefix, see :class:`~edge_agent.wire.Topics`)::

    <prefix>/<device>/update/offer   central -> device  JSON :class:`Offer` (or a withdrawal)
    <prefix>/<device>/update/fetch   device -> central  JSON :class:`Fetch` (one chunk, by index)
    <prefix>/<device>/update/chunk   central -> device  binary :class:`Chunk`
    <prefix>/<device>/update/state   device -> central  JSON :class:`StateReport`

The offer names the bundle's size, its SHA-256 and the SHA-256 of every
``chunk_size`` piece: a device checks each chunk as it arrives (a bad one is
fetched again), the whole file at the end, and then the bundle's Ed25519
signature with the release key it trusts (:mod:`.release`) before it hands
anything over to be installed. The offer itself is not what is trusted: the
signature is; the chunk hashes let a device throw away a corrupted piece
without downloading the whole bundle again, and resume after a disconnect.

A chunk frame: 4 bytes big-endian header length, a canonical JSON header
(``v``, ``rollout_id``, ``index``, ``sha256``), then the chunk's bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct

from .errors import MalformedMessage
from .release import VERSION_RE
from .topics import DEVICE_ID_RE

WIRE_VERSION = 1
MAX_CHUNK_BYTES = 1 << 20
MIN_CHUNK_BYTES = 1 << 10
MAX_CHUNKS = 4096                 # 4 GiB at the largest chunk: a bundle is far smaller
MAX_REASON = 500
_SHA_RE = re.compile(r"^[0-9a-f]{64}\Z")

# What a device reports, in the order an update goes through them.
STATES = ("offered", "downloading", "verified", "applying", "healthy", "rolled-back", "refused", "failed",
          "withdrawn")
FINAL_STATES = ("healthy", "rolled-back", "refused", "failed", "withdrawn")
FAILED_STATES = ("rolled-back", "refused", "failed")


@dataclasses.dataclass(frozen=True)
class Offer:
    rollout_id: int
    version: str
    size: int
    sha256: str
    chunk_size: int
    chunks: tuple[str, ...]       # SHA-256 of each chunk, in order
    allow_downgrade: bool = False
    key_id: str = ""
    withdraw: bool = False        # True: stop this rollout on the device (it was paused)

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)


@dataclasses.dataclass(frozen=True)
class Fetch:
    rollout_id: int
    index: int


@dataclasses.dataclass(frozen=True)
class Chunk:
    rollout_id: int
    index: int
    sha256: str
    data: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class StateReport:
    device_id: str
    rollout_id: int
    version: str
    state: str
    at_ms: int                    # device clock, milliseconds
    running_version: str
    reason: str = ""
    progress: int = 0             # chunks held (downloading)


def _json(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _load(payload: bytes, what: str, limit: int = 1 << 20) -> dict:
    if len(payload) > limit:
        raise MalformedMessage(f"{what} too large")
    try:
        doc = json.loads(bytes(payload).decode())
    except (UnicodeDecodeError, ValueError):
        raise MalformedMessage(f"{what} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != WIRE_VERSION:
        raise MalformedMessage(f"{what}: not version {WIRE_VERSION}")
    return doc


def _int(doc: dict, key: str, what: str, low: int = 0, high: int = 1 << 62) -> int:
    value = doc.get(key)
    if type(value) is not int or not low <= value <= high:
        raise MalformedMessage(f"{what}: {key} must be an integer {low}-{high}")
    return value


def encode_offer(offer: Offer) -> bytes:
    doc = dataclasses.asdict(offer)
    doc["chunks"] = list(offer.chunks)
    doc["v"] = WIRE_VERSION
    data = _json(doc)
    decode_offer(data)  # never send what a device would refuse
    return data


def decode_offer(payload: bytes) -> Offer:
    doc = _load(payload, "update offer")
    rollout = _int(doc, "rollout_id", "update offer", 1)
    withdraw = doc.get("withdraw", False) is True
    version = doc.get("version")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise MalformedMessage("update offer: version must be MAJOR.MINOR.PATCH")
    if withdraw:
        return Offer(rollout, version, 0, "0" * 64, MIN_CHUNK_BYTES, (), withdraw=True)
    size = _int(doc, "size", "update offer", 1, MAX_CHUNK_BYTES * MAX_CHUNKS)
    chunk_size = _int(doc, "chunk_size", "update offer", MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
    sha, chunks, key = doc.get("sha256"), doc.get("chunks"), doc.get("key_id", "")
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise MalformedMessage("update offer: sha256 must be 64 lower-case hex digits")
    if not isinstance(chunks, list) or not all(isinstance(c, str) and _SHA_RE.match(c) for c in chunks):
        raise MalformedMessage("update offer: chunks must be a list of SHA-256s")
    if len(chunks) != -(-size // chunk_size):
        raise MalformedMessage("update offer: the number of chunk hashes does not match size / chunk_size")
    if not isinstance(key, str) or len(key) > 64:
        raise MalformedMessage("update offer: key_id must be a short string")
    return Offer(rollout, version, size, sha, chunk_size, tuple(chunks), doc.get("allow_downgrade") is True, key)


def encode_fetch(fetch: Fetch) -> bytes:
    return _json({"v": WIRE_VERSION, "rollout_id": fetch.rollout_id, "index": fetch.index})


def decode_fetch(payload: bytes) -> Fetch:
    doc = _load(payload, "update fetch", 1024)
    return Fetch(_int(doc, "rollout_id", "update fetch", 1), _int(doc, "index", "update fetch", 0, MAX_CHUNKS - 1))


def encode_chunk(chunk: Chunk) -> bytes:
    header = _json({"v": WIRE_VERSION, "rollout_id": chunk.rollout_id, "index": chunk.index,
                    "sha256": chunk.sha256})
    return struct.pack(">I", len(header)) + header + chunk.data


def decode_chunk(payload: bytes) -> Chunk:
    """The frame's fields; whether the data matches the *offer's* hash is the
    receiver's check (the header's own ``sha256`` says what central meant to send)."""
    payload = bytes(payload)
    if len(payload) < 4:
        raise MalformedMessage("update chunk: too short")
    (n,) = struct.unpack(">I", payload[:4])
    if n > 1024 or len(payload) < 4 + n:
        raise MalformedMessage("update chunk: bad header length")
    doc = _load(payload[4:4 + n], "update chunk", 1024)
    data = payload[4 + n:]
    if len(data) > MAX_CHUNK_BYTES:
        raise MalformedMessage("update chunk: too large")
    sha = doc.get("sha256")
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise MalformedMessage("update chunk: sha256 must be 64 lower-case hex digits")
    return Chunk(_int(doc, "rollout_id", "update chunk", 1), _int(doc, "index", "update chunk", 0, MAX_CHUNKS - 1),
                 sha, data)


def encode_state(report: StateReport) -> bytes:
    doc = dataclasses.asdict(report)
    doc["v"] = WIRE_VERSION
    data = _json(doc)
    decode_state(data)
    return data


def decode_state(payload: bytes) -> StateReport:
    doc = _load(payload, "update state", 4096)
    device, state = doc.get("device_id"), doc.get("state")
    if not isinstance(device, str) or not DEVICE_ID_RE.match(device):
        raise MalformedMessage("update state: bad device_id")
    if state not in STATES:
        raise MalformedMessage(f"update state: state must be one of {', '.join(STATES)}")
    version, running = doc.get("version"), doc.get("running_version")
    for name, value in (("version", version), ("running_version", running)):
        if not isinstance(value, str) or not VERSION_RE.match(value):
            raise MalformedMessage(f"update state: {name} must be MAJOR.MINOR.PATCH")
    reason = doc.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise MalformedMessage(f"update state: reason must be a string of at most {MAX_REASON} characters")
    return StateReport(device, _int(doc, "rollout_id", "update state", 1), version, state,
                       _int(doc, "at_ms", "update state"), running, reason,
                       _int(doc, "progress", "update state", 0, MAX_CHUNKS))


def chunk_hashes(path, chunk_size: int) -> tuple[str, int, tuple[str, ...]]:
    """(whole SHA-256, size, each chunk's SHA-256) of a file, reading one chunk at a time."""
    whole, chunks, size = hashlib.sha256(), [], 0
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(chunk_size), b""):
            whole.update(piece)
            chunks.append(hashlib.sha256(piece).hexdigest())
            size += len(piece)
    return whole.hexdigest(), size, tuple(chunks)
