"""Remote configuration: what central may set on a device, the signed
message that carries it, and the state the device reports back.

Topics (:class:`.topics.Topics`)::

    alpr/v1/devices/<id>/config        central -> device, QoS 1, retained: the signed configuration
    alpr/v1/devices/<id>/config-state  device -> central, QoS 1, retained: what the device did with it

The message (at most 64 KiB) is JSON::

    {"format": "alpr-config/1", "key_id": "<16 hex>", "signature": "<base64 Ed25519>",
     "config": "<canonical JSON text>"}

``config`` is the signed text (sorted keys, no spaces, UTF-8) of
``{"device_id", "version", "issued_at", "issued_by", "settings"}``. The device
id is inside the signature, so a configuration made for one device cannot be
replayed to another; ``version`` rises by one per device at every push, and a
device refuses any version not above the highest it has accepted, so an older
or replayed message (the broker keeps the last one retained) is refused.

**What may be set remotely** (:data:`REMOTE_KEYS`): the cameras list (only
live sources: ``picamera2``, ``device``, ``stream``; a remote configuration
never points the agent at a file on the device), recognition's
``motion_threshold``, all of ``tracking``, ``images`` and ``health``, the
buffer's limits (retention on the device), and the sync loop's pacing
(``batch_size``, ``max_in_flight``, ``max_rate``, ``ack_timeout``,
``keepalive``). **Never**: ``device`` (identity, data folder), the TLS and
data-key files, ``tls``, ``topic_prefix``, the recognizer's type and options
(model files and their signing key) and ``remote_config`` itself (the trusted
key). The broker address (``sync.host``, ``sync.port``) only when the device's
own config says ``[remote_config] allow_broker_address = true``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import MalformedMessage
from .release import key_id
from .topics import DEVICE_ID_RE

FORMAT = "alpr-config/1"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CAMERAS = 32
STATE_VERSION = 1
STATES = ("applied", "trial", "rolled-back", "refused")

# section -> key -> type (float accepts integers too)
REMOTE_KEYS: dict[str, dict[str, type]] = {
    "recognition": {"motion_threshold": float},
    "tracking": {"window_seconds": float, "max_track_seconds": float, "reemit_seconds": float, "min_hits": int},
    "images": {"crop": bool, "crop_max_bytes": int, "context": bool, "context_max_bytes": int},
    "buffer": {"max_reads": int, "max_megabytes": float, "max_age_days": float, "reserve_megabytes": float},
    "sync": {"batch_size": int, "max_in_flight": int, "max_rate": float, "ack_timeout": float, "keepalive": int},
    "health": {"interval_seconds": float, "tamper_check_seconds": float, "black_level": float, "blur_ratio": float,
               "moved_ratio": float, "confirm_checks": int},
}
BROKER_KEYS: dict[str, type] = {"host": str, "port": int}
CAMERA_KEYS: dict[str, type] = {"id": str, "source": str, "uri": str, "fps": float, "width": int, "height": int,
                                "latitude": float, "longitude": float, "heading": float}
REMOTE_CAMERA_SOURCES = ("picamera2", "device", "stream")
_REASON_MAX = 300


class ConfigRefused(MalformedMessage):
    """A remote configuration the device must not apply. ``reason`` is a short
    code (unsigned, bad-signature, wrong-device, malformed, not-allowed, older,
    invalid, no-key, failed-start); the message says what, never a secret."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class DeviceConfig:
    device_id: str
    version: int
    issued_at: str
    issued_by: str
    settings_json: str  # canonical JSON of the settings (frozen; see :attr:`settings`)

    @property
    def settings(self) -> dict:
        return json.loads(self.settings_json)

    def to_bytes(self) -> bytes:
        return _canonical({"device_id": self.device_id, "version": self.version, "issued_at": self.issued_at,
                           "issued_by": self.issued_by, "settings": self.settings})


def _canonical(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _typed(value, kind: type, key: str):
    if kind is float and type(value) in (int, float):
        if not math.isfinite(value):
            raise ConfigRefused("not-allowed", f"{key}: must be a finite number")
        return value
    if type(value) is not kind:
        raise ConfigRefused("not-allowed", f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def check_settings(settings, *, allow_broker_address: bool = False) -> dict:
    """``settings`` if every key in it may be set remotely with a value of the
    right type; :class:`ConfigRefused` (``not-allowed``) naming the first key
    that may not. Ranges and the whole configuration are checked by the
    device with the ``config check`` rules."""
    if not isinstance(settings, dict) or not settings:
        raise ConfigRefused("not-allowed", "settings: a non-empty table of sections")
    for section, table in settings.items():
        if section == "cameras":
            _check_cameras(table)
            continue
        allowed = dict(REMOTE_KEYS.get(section, {}))
        if section == "sync" and allow_broker_address:
            allowed.update(BROKER_KEYS)
        if not allowed:
            raise ConfigRefused("not-allowed", f"{section}: may not be set remotely")
        if not isinstance(table, dict) or not table:
            raise ConfigRefused("not-allowed", f"{section}: expected a non-empty table")
        for key, value in table.items():
            if key not in allowed:
                why = ("the device's config does not allow remote broker changes ([remote_config] "
                       "allow_broker_address)" if section == "sync" and key in BROKER_KEYS else "may not be set remotely")
                raise ConfigRefused("not-allowed", f"{section}.{key}: {why}")
            _typed(value, allowed[key], f"{section}.{key}")
    return settings


def _check_cameras(cams) -> None:
    if not isinstance(cams, list) or not cams or len(cams) > MAX_CAMERAS:
        raise ConfigRefused("not-allowed", f"cameras: a list of 1-{MAX_CAMERAS} camera tables")
    for i, cam in enumerate(cams):
        if not isinstance(cam, dict):
            raise ConfigRefused("not-allowed", f"cameras[{i}]: expected a table")
        for key, value in cam.items():
            if key not in CAMERA_KEYS:
                raise ConfigRefused("not-allowed", f"cameras[{i}].{key}: may not be set remotely")
            _typed(value, CAMERA_KEYS[key], f"cameras[{i}].{key}")
        if cam.get("source") not in REMOTE_CAMERA_SOURCES:
            raise ConfigRefused("not-allowed", f"cameras[{i}].source: remotely one of "
                                f"{', '.join(REMOTE_CAMERA_SOURCES)} (never a file on the device)")


def merge(base: dict, settings: dict) -> dict:
    """The device's own configuration document with the remote settings laid
    over it: a section's keys replace the same keys; ``cameras`` replaces the
    whole list."""
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, table in settings.items():
        if section == "cameras":
            doc["cameras"] = [dict(c) for c in table]
        else:
            doc[section] = {**doc.get(section, {}), **table}
    return doc


# -- signing and opening --------------------------------------------------------------
def sign(private_key: Ed25519PrivateKey, config: DeviceConfig) -> bytes:
    data = config.to_bytes()
    return _canonical({"format": FORMAT, "key_id": key_id(private_key.public_key()),
                       "signature": base64.b64encode(private_key.sign(data)).decode(), "config": data.decode()})


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ConfigRefused("no-key", "the configuration public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigRefused("no-key", "the configuration public key is not an Ed25519 key")
    return key


def _outer(message: bytes) -> dict:
    if len(message) > MAX_MESSAGE_BYTES:
        raise ConfigRefused("malformed", f"a configuration message is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        doc = json.loads(message.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ConfigRefused("malformed", "the configuration message is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("config"), str):
        raise ConfigRefused("malformed", f"not an {FORMAT} message")
    return doc


def claimed_version(message: bytes) -> int | None:
    """The version a message claims, *unverified*: for the refusal report only."""
    try:
        version = json.loads(_outer(message)["config"]).get("version")
    except (ConfigRefused, ValueError, AttributeError):
        return None
    return version if type(version) is int and 0 < version < 2**53 else None


def open_config(message: bytes, public_key: Ed25519PublicKey, device_id: str, *,
                allow_broker_address: bool = False) -> DeviceConfig:
    """The configuration in ``message`` if central's configuration key signed
    it for ``device_id`` and every setting may be set remotely; else
    :class:`ConfigRefused`. The signature is checked before anything inside."""
    doc = _outer(message)
    signature = doc.get("signature")
    if not signature:
        raise ConfigRefused("unsigned", "the configuration is not signed")
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    data = doc["config"].encode()
    try:
        public_key.verify(raw, data)
    except InvalidSignature:
        raise ConfigRefused("bad-signature", "the configuration's signature does not verify with the trusted "
                            "configuration key (tampered, or signed with another key)") from None
    try:
        inner = json.loads(data)
    except ValueError:
        raise ConfigRefused("malformed", "the signed configuration is not JSON") from None
    if not isinstance(inner, dict) or set(inner) != {"device_id", "version", "issued_at", "issued_by", "settings"}:
        raise ConfigRefused("malformed", "the signed configuration lacks or adds fields")
    version = inner["version"]
    if type(version) is not int or not 0 < version < 2**53:
        raise ConfigRefused("malformed", "version: a positive integer")
    if not all(isinstance(inner[k], str) for k in ("device_id", "issued_at", "issued_by")):
        raise ConfigRefused("malformed", "device_id, issued_at and issued_by are strings")
    if inner["device_id"] != device_id:
        raise ConfigRefused("wrong-device", "the configuration was made for another device")
    check_settings(inner["settings"], allow_broker_address=allow_broker_address)
    return DeviceConfig(device_id, version, inner["issued_at"], inner["issued_by"],
                        _canonical(inner["settings"]).decode())


# -- the device's report ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConfigState:
    """What the device did: ``applied_version`` is the configuration it runs
    (0: its own file only); ``state`` the last event (applied, trial: applied
    and starting, rolled-back, refused), ``offered_version`` the version that
    event was about, ``reason`` why it was refused or rolled back."""
    device_id: str
    applied_version: int
    state: str
    offered_version: int | None = None
    reason: str | None = None
    at: str = ""


def encode_state(state: ConfigState) -> bytes:
    data = _canonical({"v": STATE_VERSION, **dataclasses.asdict(state)})
    decode_state(data)  # never send what central refuses
    return data


def decode_state(payload: bytes) -> ConfigState:
    if len(payload) > 4096:
        raise MalformedMessage("config-state: at most 4096 bytes")
    try:
        doc = json.loads(payload.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedMessage("config-state: not JSON") from None
    fields = {f.name for f in dataclasses.fields(ConfigState)}
    if not isinstance(doc, dict) or doc.get("v") != STATE_VERSION or set(doc) != fields | {"v"}:
        raise MalformedMessage("config-state: wrong version or fields")
    if not isinstance(doc["device_id"], str) or not DEVICE_ID_RE.match(doc["device_id"]):
        raise MalformedMessage("config-state: device_id")
    if type(doc["applied_version"]) is not int or doc["applied_version"] < 0:
        raise MalformedMessage("config-state: applied_version")
    if doc["state"] not in STATES:
        raise MalformedMessage(f"config-state: state one of {', '.join(STATES)}")
    if doc["offered_version"] is not None and (type(doc["offered_version"]) is not int or doc["offered_version"] < 1):
        raise MalformedMessage("config-state: offered_version")
    if doc["reason"] is not None and (not isinstance(doc["reason"], str) or len(doc["reason"]) > _REASON_MAX):
        raise MalformedMessage(f"config-state: reason, at most {_REASON_MAX} characters")
    if not isinstance(doc["at"], str) or not re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)$", doc["at"]):
        raise MalformedMessage("config-state: at, an ISO 8601 time")
    del doc["v"]
    return ConfigState(**doc)


def short_reason(text: str) -> str:
    return text if len(text) <= _REASON_MAX else text[:_REASON_MAX - 1] + "…"
