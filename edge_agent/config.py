"""Edge agent configuration: TOML into frozen dataclasses.

Unknown keys are errors that name their path (``sync.batchsize``). Secrets
never live in the TOML: TLS keys are files, and a relative key path is looked up
in systemd's ``$CREDENTIALS_DIRECTORY`` when that is set. Paths are resolved
relative to the config file's folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .wire.schema import CAMERA_ID_RE as _CAMERA_ID_RE
from .wire.schema import MAX_IMAGE_BYTES
from .wire.topics import DEVICE_ID_RE

SOURCE_TYPES = ("picamera2", "device", "stream", "file", "folder")


@dataclasses.dataclass(frozen=True)
class Device:
    id: str
    data_dir: str


@dataclasses.dataclass(frozen=True)
class Camera:
    id: str
    source: str
    uri: str = ""
    fps: float = 10.0          # highest rate frames are processed at; 0 = as fast as possible
    loop: bool = False         # replay a file/folder forever (demo)
    width: int = 0
    height: int = 0
    latitude: float | None = None
    longitude: float | None = None
    heading: float | None = None


@dataclasses.dataclass(frozen=True)
class Recognition:
    type: str = "tflite"
    motion_threshold: float = 0.0   # fraction of changed pixels below which a frame is skipped; 0 = off
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Tracking:
    window_seconds: float = 1.5     # a track ends after this long unseen
    max_track_seconds: float = 10.0  # a read is emitted at the latest this long after first sight
    reemit_seconds: float = 300.0   # same plate, same camera: suppressed for this long
    min_hits: int = 1


@dataclasses.dataclass(frozen=True)
class Images:
    crop: bool = True
    crop_max_bytes: int = 32_768
    context: bool = False
    context_max_bytes: int = 262_144


@dataclasses.dataclass(frozen=True)
class Buffer:
    max_reads: int = 2_000_000
    max_megabytes: float = 4096.0
    max_age_days: float = 730.0      # reads older than this are dropped (counted), never sent
    reserve_megabytes: float = 16.0  # disk kept free to delete acknowledged reads on a full disk; 0 = none


@dataclasses.dataclass(frozen=True)
class Sync:
    host: str = "localhost"
    port: int = 8883
    tls: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    central_public_key: str = ""
    batch_size: int = 500            # backlog batches: 200 made central commit in small groups (docs/scaling.md)
    max_in_flight: int = 8
    max_rate: float = 0.0            # reads/s while draining; 0 = unlimited
    ack_timeout: float = 30.0
    keepalive: int = 30
    topic_prefix: str = "alpr/v1/devices"


@dataclasses.dataclass(frozen=True)
class Health:
    interval_seconds: float = 60.0   # heartbeat period (alpr/v1/devices/<id>/health)
    tamper_check_seconds: float = 5.0  # how often each camera's view is compared with its reference; 0 = off
    black_level: float = 12.0        # mean brightness (0-255) below which a view is black (covered)
    blur_ratio: float = 0.25         # sharpness below this fraction of the reference's: blurred
    moved_ratio: float = 0.5         # similarity to the reference below this: the camera was turned away
    confirm_checks: int = 3          # consecutive checks before a tamper condition is reported (and cleared)


@dataclasses.dataclass(frozen=True)
class RemoteConfig:
    """Remote configuration from central (edge_agent/remote_config.py). Never settable remotely."""
    public_key: str = ""             # central's configuration-signing public key (PEM); empty = remote config off
    allow_broker_address: bool = False  # may central move the device to another broker (sync.host, sync.port)?
    trial_seconds: float = 120.0     # a new configuration must bring cameras and sync up within this, else rolled back


@dataclasses.dataclass(frozen=True)
class Update:
    """Updates offered by central over MQTT (edge_agent/update/fetcher.py)."""
    enabled: bool = True             # take offers; false: updates only by hand (alpr-edge update apply)
    app_dir: str = "/var/lib/alpr/app"  # where the root-side step installs releases (its state.json)
    release_key: str = "release-key.pub.pem"  # the trusted release public key (beside this file by default)
    fetch_window: int = 4            # chunks asked for at once
    fetch_timeout_seconds: float = 30.0  # a chunk not received by then is asked for again
    apply_timeout_minutes: float = 30.0  # the root-side step must report by then, or the update failed


@dataclasses.dataclass(frozen=True)
class EdgeConfig:
    device: Device
    cameras: tuple[Camera, ...]
    recognition: Recognition = Recognition()
    tracking: Tracking = Tracking()
    images: Images = Images()
    buffer: Buffer = Buffer()
    sync: Sync = Sync()
    health: Health = Health()
    remote_config: RemoteConfig = RemoteConfig()
    update: Update = Update()

    @property
    def data_dir(self) -> Path:
        return Path(self.device.data_dir)


def _build(cls, table: Any, path: str, base: Path):
    if not isinstance(table, dict):
        raise ConfigError(f"{path or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{path + '.' if path else ''}{unknown[0]}: unknown key")
    values = {}
    for field in dataclasses.fields(cls):
        key = f"{path}.{field.name}" if path else field.name
        if field.name not in table:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: required")
            continue
        values[field.name] = _coerce(hints[field.name], table[field.name], key)
    return cls(**values)


def _coerce(hint, value, key):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        return _coerce(next(a for a in args if a is not type(None)), value, key)
    if hint is float and type(value) in (int, float):
        if not math.isfinite(value):  # nan and inf pass every comparison wrongly
            raise ConfigError(f"{key}: must be a finite number")
        return float(value)
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        return value
    if hint in (str, int, bool) and type(value) is hint:
        return value
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__}")


def _resolve(p: str, base: Path, credential: bool = False) -> str:
    if not p:
        return p
    path = Path(p)
    if path.is_absolute():
        return str(path)
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if credential and creds and (Path(creds) / path).exists():
        return str(Path(creds) / path)
    return str(base / path)


def parse(doc: dict, base: Path) -> EdgeConfig:
    doc = dict(doc)
    unknown = sorted(set(doc) - {"device", "cameras", "recognition", "tracking", "images", "buffer", "sync",
                             "health", "remote_config", "update"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section")
    if "device" not in doc:
        raise ConfigError("device: required")
    device = _build(Device, doc["device"], "device", base)
    if not DEVICE_ID_RE.match(device.id):
        raise ConfigError("device.id: lower-case letters, digits and '-', at most 63 characters")
    device = dataclasses.replace(device, data_dir=_resolve(device.data_dir, base))
    cams = doc.get("cameras")
    if not isinstance(cams, list) or not cams:
        raise ConfigError("cameras: at least one [[cameras]] table is required")
    cameras = []
    for i, table in enumerate(cams):
        cam = _build(Camera, table, f"cameras[{i}]", base)
        if cam.source not in SOURCE_TYPES:
            raise ConfigError(f"cameras[{i}].source: one of {', '.join(SOURCE_TYPES)}")
        if cam.source in ("file", "folder"):
            cam = dataclasses.replace(cam, uri=_resolve(cam.uri, base))
        if not _CAMERA_ID_RE.match(cam.id):  # it names topics' payloads and files: what the wire accepts
            raise ConfigError(f"cameras[{i}].id: letters, digits, '_', '.' and '-', starting with a letter or "
                              "digit, at most 63 characters")
        if cam.fps < 0:
            raise ConfigError(f"cameras[{i}].fps: must be >= 0")
        if cam.width < 0 or cam.height < 0:
            raise ConfigError(f"cameras[{i}].width/height: must be >= 0 (0 = the camera's own)")
        for name, lo, hi in (("latitude", -90.0, 90.0), ("longitude", -180.0, 180.0), ("heading", 0.0, 360.0)):
            value = getattr(cam, name)
            if value is not None and not (lo <= value <= hi if name != "heading" else lo <= value < hi):
                raise ConfigError(f"cameras[{i}].{name}: must be in {lo:g}..{hi:g}")
        cameras.append(cam)
    if len({c.id for c in cameras}) != len(cameras):
        raise ConfigError("cameras: camera ids must be unique")
    sections = {name: _build(cls, doc.get(name, {}), name, base) for name, cls in
                (("recognition", Recognition), ("tracking", Tracking), ("images", Images),
                 ("buffer", Buffer), ("sync", Sync), ("health", Health), ("remote_config", RemoteConfig),
                 ("update", Update))}
    sync = sections["sync"]
    sync = dataclasses.replace(
        sync, ca_file=_resolve(sync.ca_file, base), cert_file=_resolve(sync.cert_file, base),
        key_file=_resolve(sync.key_file, base, credential=True),
        central_public_key=_resolve(sync.central_public_key, base))
    if sync.tls and not (sync.ca_file and sync.cert_file and sync.key_file):
        raise ConfigError("sync.ca_file, sync.cert_file and sync.key_file are required when sync.tls is true")
    if not sync.central_public_key:
        raise ConfigError("sync.central_public_key: required (central's data-encryption public key, PEM)")
    if not 1 <= sync.batch_size <= 1000:
        raise ConfigError("sync.batch_size: 1-1000")
    if sync.max_in_flight < 1:
        raise ConfigError("sync.max_in_flight: must be >= 1")
    if not 1 <= sync.port <= 65535:
        raise ConfigError("sync.port: 1-65535")
    if sync.keepalive < 5 or sync.ack_timeout <= 0 or sync.max_rate < 0:
        raise ConfigError("sync: keepalive must be >= 5 s, ack_timeout > 0 and max_rate >= 0")
    rec = sections["recognition"]
    if not 0.0 <= rec.motion_threshold <= 1.0:
        raise ConfigError("recognition.motion_threshold: a fraction of pixels, 0..1 (0 = off)")
    trk = sections["tracking"]
    if min(trk.window_seconds, trk.max_track_seconds, trk.reemit_seconds) <= 0 or trk.min_hits < 1:
        raise ConfigError("tracking: the times must be > 0 and min_hits >= 1")
    img = sections["images"]
    for name in ("crop_max_bytes", "context_max_bytes"):
        if not 1024 <= getattr(img, name) <= MAX_IMAGE_BYTES:
            raise ConfigError(f"images.{name}: 1024-{MAX_IMAGE_BYTES} (what a read may carry)")
    buf = sections["buffer"]
    if buf.max_reads < 1 or buf.max_megabytes <= 0 or buf.max_age_days <= 0:
        raise ConfigError("buffer: max_reads, max_megabytes and max_age_days must be positive")
    if not 0 <= buf.reserve_megabytes <= 4096:
        raise ConfigError("buffer.reserve_megabytes: must be 0-4096")
    hl = sections["health"]
    if not 5 <= hl.interval_seconds <= 3600:
        raise ConfigError("health.interval_seconds: 5-3600")
    if not (hl.tamper_check_seconds == 0 or 1 <= hl.tamper_check_seconds <= 3600):
        raise ConfigError("health.tamper_check_seconds: 0 (off) or 1-3600")
    if not (0 <= hl.black_level <= 255 and 0 < hl.blur_ratio < 1 and 0 < hl.moved_ratio < 1
            and 1 <= hl.confirm_checks <= 100):
        raise ConfigError("health: black_level 0-255, blur_ratio and moved_ratio between 0 and 1, "
                          "confirm_checks 1-100")
    rc = sections["remote_config"]
    if not 10 <= rc.trial_seconds <= 3600:
        raise ConfigError("remote_config.trial_seconds: 10-3600")
    sections["remote_config"] = dataclasses.replace(rc, public_key=_resolve(rc.public_key, base))
    up = sections["update"]
    if not (1 <= up.fetch_window <= 16 and 1 <= up.fetch_timeout_seconds <= 600
            and 1 <= up.apply_timeout_minutes <= 24 * 60):
        raise ConfigError("update: fetch_window 1-16, fetch_timeout_seconds 1-600, apply_timeout_minutes 1-1440")
    sections["update"] = dataclasses.replace(up, app_dir=_resolve(up.app_dir, base),
                                             release_key=_resolve(up.release_key, base))
    sections["sync"] = sync
    return EdgeConfig(device=device, cameras=tuple(cameras), **sections)


def incomplete(cfg: EdgeConfig) -> list[str]:
    """What ``config check`` finds missing beyond the parse rules: a camera but a
    picamera2 that names nothing to read (a provisioned config may leave the uri
    for the field tech to fill in; the agent then retries that camera)."""
    return [f"cameras[{i}].uri: not set for {cam.source} camera {cam.id!r} (the "
            f"{ {'file': 'video file', 'folder': 'folder of images'}.get(cam.source, 'stream or device')} it "
            "reads): set it in the config or with 'alpr-edge provision --camera-uri ID=URI'"
            for i, cam in enumerate(cfg.cameras) if cam.source != "picamera2" and not cam.uri.strip()]


def load(path: str | os.PathLike) -> EdgeConfig:
    """Read and validate a config file; every failure is a :class:`ConfigError`."""
    p = Path(path)
    return parse(read_doc(p), p.resolve().parent)


def read_doc(path: str | os.PathLike) -> dict:
    """The TOML document of a config file, unvalidated (:class:`ConfigError` if unreadable)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
