"""Device health heartbeat (schema version 1), published by the agent every
``[health] interval_seconds`` on ``alpr/v1/devices/<id>/health`` (QoS 1, not
retained, with an MQTT message expiry of one interval so a stale heartbeat is
never delivered late) and validated by central on receipt::

    {"v": 1, "device_id": "cam-a", "sent_at": "2026-12-04T22:40:00.123Z",
     "agent_version": "0.2.0", "model_version": "...", "os_version": "Debian GNU/Linux 12 (bookworm)",
     "agent_uptime_s": 3600, "system_uptime_s": 86400|null,
     "load_1m": 0.4|null, "cpu_temp_c": 51.2|null,
     "memory_total_bytes": 4096000000|null, "memory_available_bytes": 2048000000|null,
     "disk_free_bytes": 1234567|null, "disk_full": false,
     "buffer_depth": 12, "buffer_bytes": 40960, "buffer_oldest_age_days": 0|null,
     "last_read_at": "2026-12-04T22:39:00Z"|null,     # minute precision, from memory
     "clock_offset_s": 0.004|null,                    # the device's NTP offset, when it knows it
     "cert_expires_at": "2027-12-04T00:00:00Z"|null,
     "sync": {"connected": true, "resends": 0, "bad_acks": 0},
     "cameras": [{"id": "lane-1", "state": "running", "fps": 9.8, "frames": 35000, "errors": 0,
                  "last_error": null, "tamper": ["black"|"blurred"|"moved", ...]}]}

No plate text, image, read id or fine capture time ever travels in it: the
outbox keeps only capture days, so the oldest read's age is in whole days, and
the last read's time is rounded down to the minute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re

from .errors import MalformedMessage
from .topics import DEVICE_ID_RE

HEALTH_VERSION = 1
MAX_HEALTH_BYTES = 32 * 1024
MAX_CAMERAS = 32
TAMPER_KINDS = ("black", "blurred", "moved")
CAMERA_STATES = ("starting", "running", "failed", "finished", "stopped")
_CAMERA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_TS_FMT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z\Z")


@dataclasses.dataclass(frozen=True)
class CameraHealth:
    id: str
    state: str
    fps: float
    frames: int
    errors: int                       # frames refused, images unreadable, and capture failures
    last_error: str | None = None
    tamper: tuple[str, ...] = ()      # what the view looks like now: black, blurred, moved


@dataclasses.dataclass(frozen=True)
class Health:
    device_id: str
    sent_at: dt.datetime
    agent_version: str
    model_version: str
    os_version: str
    agent_uptime_s: int
    system_uptime_s: int | None
    load_1m: float | None
    cpu_temp_c: float | None
    memory_total_bytes: int | None
    memory_available_bytes: int | None
    disk_free_bytes: int | None
    disk_full: bool
    buffer_depth: int
    buffer_bytes: int
    buffer_oldest_age_days: int | None
    last_read_at: dt.datetime | None
    clock_offset_s: float | None
    cert_expires_at: dt.datetime | None
    sync_connected: bool
    sync_resends: int
    cameras: tuple[CameraHealth, ...]


def _ts(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.timezone.utc).strftime(_TS_FMT)


def _ts_ms(t: dt.datetime) -> str:
    """Millisecond precision: central measures the device's clock offset from it."""
    t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def coarse(t: dt.datetime | None) -> dt.datetime | None:
    """A time rounded down to the minute (what the heartbeat says of the last read)."""
    return None if t is None else t.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)


def encode_health(h: Health) -> bytes:
    doc = {
        "v": HEALTH_VERSION, "device_id": h.device_id, "sent_at": _ts_ms(h.sent_at),
        "agent_version": h.agent_version, "model_version": h.model_version, "os_version": h.os_version,
        "agent_uptime_s": h.agent_uptime_s, "system_uptime_s": h.system_uptime_s,
        "load_1m": h.load_1m, "cpu_temp_c": h.cpu_temp_c,
        "memory_total_bytes": h.memory_total_bytes, "memory_available_bytes": h.memory_available_bytes,
        "disk_free_bytes": h.disk_free_bytes, "disk_full": h.disk_full,
        "buffer_depth": h.buffer_depth, "buffer_bytes": h.buffer_bytes,
        "buffer_oldest_age_days": h.buffer_oldest_age_days, "last_read_at": _ts(coarse(h.last_read_at)),
        "clock_offset_s": h.clock_offset_s, "cert_expires_at": _ts(h.cert_expires_at),
        "sync": {"connected": h.sync_connected, "resends": h.sync_resends},
        "cameras": [{"id": c.id, "state": c.state, "fps": c.fps, "frames": c.frames, "errors": c.errors,
                     "last_error": c.last_error, "tamper": list(c.tamper)} for c in h.cameras],
    }
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    decode_health(data)  # the device never sends what central would refuse
    return data


# -- decoding: every field checked; the first problem named ---------------------
def _get(doc: dict, key: str, kinds, *, optional: bool = False):
    if key not in doc:
        raise MalformedMessage(f"health: {key} missing")
    value = doc[key]
    if value is None and optional:
        return None
    if type(value) not in kinds:
        raise MalformedMessage(f"health: {key} has the wrong type")
    return value


def _str(doc, key, max_len, *, optional=False) -> str | None:
    value = _get(doc, key, (str,), optional=optional)
    if value is not None and (len(value) > max_len or any(ord(ch) < 32 for ch in value)):
        raise MalformedMessage(f"health: {key} too long or holds control characters")
    return value


def _int(doc, key, *, optional=False, low=0, high=1 << 62) -> int | None:
    value = _get(doc, key, (int,), optional=optional)
    if value is not None and not low <= value <= high:
        raise MalformedMessage(f"health: {key} out of range")
    return value


def _float(doc, key, *, optional=False, low=-1e12, high=1e12) -> float | None:
    value = _get(doc, key, (int, float), optional=optional)
    if value is None:
        return None
    if not math.isfinite(value) or not low <= value <= high:
        raise MalformedMessage(f"health: {key} out of range")
    return float(value)


def _time(doc, key, *, optional=False) -> dt.datetime | None:
    value = _get(doc, key, (str,), optional=optional)
    if value is None:
        return None
    try:
        if _TIME_RE.match(value):  # the two forms devices write: fromisoformat is 10x faster than strptime
            t = dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=dt.timezone.utc)
        else:
            fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if len(value) == 24 else _TS_FMT
            t = dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise MalformedMessage(f"health: {key} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)") from None
    if not 2000 <= t.year < 2100:
        raise MalformedMessage(f"health: {key} out of range")
    return t


def _camera(doc) -> CameraHealth:
    if not isinstance(doc, dict):
        raise MalformedMessage("health: a camera is not an object")
    unknown = set(doc) - {"id", "state", "fps", "frames", "errors", "last_error", "tamper"}
    if unknown:
        raise MalformedMessage(f"health: camera key {sorted(unknown)[0]} unknown")
    cid = _str(doc, "id", 63)
    if not _CAMERA_RE.match(cid):
        raise MalformedMessage("health: camera id invalid")
    state = _str(doc, "state", 16)
    if state not in CAMERA_STATES:
        raise MalformedMessage("health: camera state unknown")
    tamper = _get(doc, "tamper", (list,))
    if len(tamper) > len(TAMPER_KINDS) or any(t not in TAMPER_KINDS for t in tamper) or len(set(tamper)) != len(tamper):
        raise MalformedMessage("health: camera tamper holds an unknown or repeated kind")
    return CameraHealth(cid, state, _float(doc, "fps", low=0, high=1000), _int(doc, "frames"), _int(doc, "errors"),
                        _str(doc, "last_error", 200, optional=True), tuple(tamper))


_KEYS = {"v", "device_id", "sent_at", "agent_version", "model_version", "os_version", "agent_uptime_s",
         "system_uptime_s", "load_1m", "cpu_temp_c", "memory_total_bytes", "memory_available_bytes",
         "disk_free_bytes", "disk_full", "buffer_depth", "buffer_bytes", "buffer_oldest_age_days", "last_read_at",
         "clock_offset_s", "cert_expires_at", "sync", "cameras"}


def decode_health(data: bytes) -> Health:
    """Parse and validate a heartbeat; :class:`MalformedMessage` names the first problem."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_HEALTH_BYTES:
        raise MalformedMessage("health: not bytes or larger than 32 KiB")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise MalformedMessage("health: not JSON") from None
    if not isinstance(doc, dict):
        raise MalformedMessage("health: not a JSON object")
    if doc.get("v") != HEALTH_VERSION:
        raise MalformedMessage(f"health: unsupported version {doc.get('v')!r}")
    unknown = set(doc) - _KEYS
    if unknown:
        raise MalformedMessage(f"health: key {sorted(unknown)[0]} unknown")
    device = _str(doc, "device_id", 63)
    if not DEVICE_ID_RE.match(device):
        raise MalformedMessage("health: device_id invalid")
    sync = _get(doc, "sync", (dict,))
    if set(sync) != {"connected", "resends"}:
        raise MalformedMessage("health: sync must hold connected and resends")
    cameras = _get(doc, "cameras", (list,))
    if len(cameras) > MAX_CAMERAS:
        raise MalformedMessage(f"health: more than {MAX_CAMERAS} cameras")
    cams = tuple(_camera(c) for c in cameras)
    if len({c.id for c in cams}) != len(cams):
        raise MalformedMessage("health: camera ids repeat")
    last_read = _time(doc, "last_read_at", optional=True)
    if last_read is not None and (last_read.second or last_read.microsecond):
        raise MalformedMessage("health: last_read_at must be rounded to the minute")
    return Health(
        device_id=device, sent_at=_time(doc, "sent_at"),
        agent_version=_str(doc, "agent_version", 64), model_version=_str(doc, "model_version", 64),
        os_version=_str(doc, "os_version", 128), agent_uptime_s=_int(doc, "agent_uptime_s"),
        system_uptime_s=_int(doc, "system_uptime_s", optional=True),
        load_1m=_float(doc, "load_1m", optional=True, low=0, high=10_000),
        cpu_temp_c=_float(doc, "cpu_temp_c", optional=True, low=-100, high=200),
        memory_total_bytes=_int(doc, "memory_total_bytes", optional=True),
        memory_available_bytes=_int(doc, "memory_available_bytes", optional=True),
        disk_free_bytes=_int(doc, "disk_free_bytes", optional=True),
        disk_full=_get(doc, "disk_full", (bool,)),
        buffer_depth=_int(doc, "buffer_depth"), buffer_bytes=_int(doc, "buffer_bytes"),
        buffer_oldest_age_days=_int(doc, "buffer_oldest_age_days", optional=True, high=100_000),
        last_read_at=last_read, clock_offset_s=_float(doc, "clock_offset_s", optional=True, low=-1e9, high=1e9),
        cert_expires_at=_time(doc, "cert_expires_at", optional=True),
        sync_connected=_get(sync, "connected", (bool,)), sync_resends=_int(sync, "resends"), cameras=cams)
