"""Sealed envelopes: one plate read encrypted to central's X25519 public key.

This is the only module in the project that composes cryptographic
primitives; all of them come from ``cryptography``.

Format (version 1), all integers big-endian::

    magic      4   b"ALE1"
    key_id     8   first 8 bytes of SHA-256(recipient public key) - selects central's key
    eph_pub   32   ephemeral X25519 public key of the sealing session
    read_id   16   UUID bytes of the read (lets central acknowledge what it cannot open)
    dev_len    1   length of the device id
    device     n   device id, ASCII
    nonce     12   random AES-GCM nonce
    ct         *   AES-256-GCM(plaintext), 16-byte tag; AAD = every byte above

The AES key is HKDF-SHA256(X25519(eph, recipient), info="alpr-envelope-v1" ||
eph_pub || recipient_pub). A :class:`Sealer` derives one key per session (a
bounded number of records, or a bounded time) and drops the ephemeral private
key at once, so nothing on the device - neither disk nor, after rotation, RAM -
can open a record again. An X25519 agreement per record would cost more than
everything else on a Pi; one per session keeps the seal cost at a single
AES-GCM operation.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import struct
import threading
import time
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import EnvelopeError, MalformedMessage

MAGIC = b"ALE1"
_INFO = b"alpr-envelope-v1"
_FIXED = struct.Struct(">4s8s32s16sB")
NONCE_LEN = 12
TAG_LEN = 16
MAX_ENVELOPE = 1 << 20


def key_id(public_key: X25519PublicKey) -> bytes:
    return hashlib.sha256(_raw_public(public_key)).digest()[:8]


def _raw_public(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + eph_pub + recipient_pub).derive(shared)
    return AESGCM(key)


def generate_keypair() -> tuple[bytes, bytes]:
    """A new central key pair as (private PEM, public PEM)."""
    private = X25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_public_key(pem: bytes) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, X25519PublicKey):
        raise ValueError("central's data key must be an X25519 public key")
    return key


def load_private_key(pem: bytes) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    if not isinstance(key, X25519PrivateKey):
        raise ValueError("central's data key must be an X25519 private key")
    return key


@dataclasses.dataclass(frozen=True)
class EnvelopeHeader:
    key_id: bytes
    eph_pub: bytes
    read_id: str
    device_id: str
    length: int  # bytes of header, nonce included

    @classmethod
    def parse(cls, envelope: bytes) -> "EnvelopeHeader":
        """Parse the clear-text header; raises :class:`MalformedMessage`."""
        if not isinstance(envelope, (bytes, bytearray, memoryview)):
            raise MalformedMessage("envelope is not bytes")
        if len(envelope) > MAX_ENVELOPE:
            raise MalformedMessage("envelope too large")
        if len(envelope) < _FIXED.size + NONCE_LEN + TAG_LEN:
            raise MalformedMessage("envelope truncated")
        magic, kid, eph, rid, dev_len = _FIXED.unpack_from(envelope)
        if magic != MAGIC:
            raise MalformedMessage("unknown envelope magic")
        end = _FIXED.size + dev_len
        if len(envelope) < end + NONCE_LEN + TAG_LEN:
            raise MalformedMessage("envelope truncated")
        try:
            device = bytes(envelope[_FIXED.size:end]).decode("ascii")
        except UnicodeDecodeError:
            raise MalformedMessage("device id in envelope is not ASCII") from None
        h = rid.hex()  # str(uuid.UUID(bytes=rid)), without building the UUID
        return cls(kid, eph, f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", device, end + NONCE_LEN)


class Sealer:
    """Seals records for one device to central's public key.

    The session key rotates after ``max_records`` seals or ``max_age`` seconds,
    whichever comes first. ``clock`` is injectable for tests.
    """

    def __init__(self, recipient: X25519PublicKey, device_id: str, *, max_records: int = 50_000,
                 max_age: float = 3600.0, clock=time.monotonic) -> None:
        if not isinstance(recipient, X25519PublicKey):
            raise TypeError("recipient must be an X25519PublicKey")
        dev = device_id.encode("ascii")
        if not 0 < len(dev) < 256:
            raise ValueError("device id must be 1-255 ASCII bytes")
        self._recipient_pub = _raw_public(recipient)
        self._recipient = recipient
        self._kid = key_id(recipient)
        self._device = dev
        self._max_records = max_records
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._aead: AESGCM | None = None
        self._eph_pub = b""
        self._count = 0
        self._born = 0.0

    def _rotate(self) -> None:
        eph = X25519PrivateKey.generate()
        self._eph_pub = _raw_public(eph.public_key())
        self._aead = _derive(eph.exchange(self._recipient), self._eph_pub, self._recipient_pub)
        del eph  # the only copy of the ephemeral private key
        self._count = 0
        self._born = self._clock()

    def forget(self) -> None:
        """Drop the session key now (e.g. before the agent idles for long)."""
        with self._lock:
            self._aead = None

    def seal(self, read_id: str, plaintext: bytes) -> bytes:
        rid = uuid.UUID(read_id).bytes
        with self._lock:
            if (self._aead is None or self._count >= self._max_records
                    or self._clock() - self._born >= self._max_age):
                self._rotate()
            self._count += 1
            aead, eph_pub = self._aead, self._eph_pub
        nonce = os.urandom(NONCE_LEN)
        header = _FIXED.pack(MAGIC, self._kid, eph_pub, rid, len(self._device)) + self._device + nonce
        return header + aead.encrypt(nonce, plaintext, header)


class Opener:
    """Opens envelopes with any of central's private keys (old keys stay
    listed after a rotation until every device has drained)."""

    def __init__(self, private_keys, *, cache_size: int = 4096) -> None:
        self._keys: dict[bytes, tuple[X25519PrivateKey, bytes]] = {}
        for key in private_keys:
            pub = key.public_key()
            self._keys[key_id(pub)] = (key, _raw_public(pub))
        if not self._keys:
            raise ValueError("at least one private key is needed")
        self._cache: collections.OrderedDict[tuple[bytes, bytes], AESGCM] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def open(self, envelope: bytes, header: EnvelopeHeader | None = None) -> tuple[EnvelopeHeader, bytes]:
        try:
            header = header or EnvelopeHeader.parse(envelope)
        except MalformedMessage:
            raise EnvelopeError() from None
        entry = self._keys.get(header.key_id)
        if entry is None:
            raise EnvelopeError()
        cache_key = (header.key_id, header.eph_pub)
        with self._lock:
            aead = self._cache.get(cache_key)
            if aead is not None:
                self._cache.move_to_end(cache_key)
        if aead is None:
            private, recipient_pub = entry
            try:
                shared = private.exchange(X25519PublicKey.from_public_bytes(header.eph_pub))
            except ValueError:
                raise EnvelopeError() from None
            aead = _derive(shared, header.eph_pub, recipient_pub)
            with self._lock:
                self._cache[cache_key] = aead
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        data = bytes(envelope)
        nonce_at = header.length - NONCE_LEN
        try:
            plaintext = aead.decrypt(data[nonce_at:header.length], data[header.length:], data[:header.length])
        except (InvalidTag, ValueError):
            raise EnvelopeError() from None
        return header, plaintext
