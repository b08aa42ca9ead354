"""Remote device configuration at central: the configuration-signing key,
pushing a signed configuration to devices, and what each device reports.

The configuration-signing key is an Ed25519 key of its own (not the CA, the
data key, the export-signing key, the model-signing key or the release key):
a stolen one can change cameras and thresholds on devices, never open reads
or enroll a device. It lives in a folder of its own (default
``<data_dir>/config-signing/config-key.pem``, 0600 in a 0700 folder);
:func:`init_key` refuses a folder holding other keys and never overwrites.
Devices get its public half at enrollment (``config_public_key`` in the
answer) and keep it beside their config, in root's folder.

:meth:`RemoteConfigs.push` (admins only, ``CONFIGURE_DEVICES``) checks the
settings against what may be set remotely (:mod:`edge_agent.wire.devconfig`),
gives each device its next version, signs one message per device, and stores
it with one access-log entry, in one transaction. The collector
(:class:`RemoteConfigHandler`, run by ``alpr-central run``) publishes stored
messages retained on each device's ``config`` topic, so a device offline now
gets it when it connects, and records the state each device reports on its
``config-state`` topic.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import os
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.wire import MalformedMessage, Topics
from edge_agent.wire import devconfig as wire
from edge_agent.wire.release import key_id

from ..errors import RegistryError, RemoteConfigError
from ..governance.audit import AccessLog, parse_ts, transaction, ts, utcnow
from ..governance.users import Permission, User, require
from ..store.database import connect
from .pki import write_public, write_secret

logger = logging.getLogger(__name__)

_KEY_PATTERNS = ("*.key", "*key*.pem", "ca.*")


# -- the key ---------------------------------------------------------------------------
def init_key(private_path: str | os.PathLike, public_file: str | os.PathLike | None = None) -> tuple[Path, Path, str]:
    """Make the configuration-signing key pair; returns (private, public, key id)."""
    private = Path(private_path)
    public = Path(public_file) if public_file else public_path(private)
    if private == public:
        raise RemoteConfigError("the private and public key paths are the same")
    if private.exists():
        raise RemoteConfigError(f"{private} exists; refusing to overwrite the configuration-signing key "
                                "(devices trust it)")
    folder = private.resolve().parent
    if folder.is_dir():
        others = sorted({p.name for pattern in _KEY_PATTERNS for p in folder.glob(pattern) if p.is_file()}
                        - {private.name, public.name})
        if others:
            raise RemoteConfigError(f"{folder} already holds other keys ({', '.join(others)}); keep the "
                                    "configuration-signing key in a folder of its own")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    write_secret(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    write_public(public, public_pem(key))
    kid = key_id(key.public_key())
    logger.info("configuration-signing key %s written (private 0600)", kid)
    return private, public, kid


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise RemoteConfigError(f"cannot read the configuration-signing key {path}: {exc.strerror} (create it "
                                "with: alpr-central device config init-key)") from None
    if mode & 0o077:
        raise RemoteConfigError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError):
        raise RemoteConfigError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RemoteConfigError(f"{path} is not an Ed25519 key")
    return key


def public_path(private_path: str | os.PathLike) -> Path:
    private = Path(private_path)
    return private.with_name(private.name.replace(".pem", ".pub.pem"))


def public_key_pem_if_any(private_path: str | os.PathLike) -> bytes | None:
    """The public half (the ``.pub.pem`` file beside the key) for the
    enrollment answer, or None when there is none yet: the enrollment
    endpoint never reads the private key."""
    try:
        data = public_path(private_path).read_bytes()
        wire.load_public_key(data)
    except (OSError, wire.ConfigRefused):
        return None
    return data


# -- pushing and showing ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Pushed:
    device_id: str
    version: int


@dataclasses.dataclass(frozen=True)
class ConfigStatus:
    device_id: str
    owner: str
    device_status: str
    latest_version: int | None      # the newest configuration pushed
    pushed_by: str | None
    pushed_at: dt.datetime | None
    published: bool                 # handed to the broker (retained) by the collector
    applied_version: int | None     # what the device says it runs (None: never reported)
    state: str | None               # applied, trial, rolled-back, refused
    offered_version: int | None
    reason: str | None
    reported_at: dt.datetime | None

    @property
    def in_sync(self) -> bool:
        return (self.latest_version or 0) == (self.applied_version or 0) and self.state in (None, "applied")


class RemoteConfigs:
    def __init__(self, conn, *, clock=utcnow) -> None:
        """``conn``: the governance connection of either backend (``registry.db``)."""
        self.conn, self._clock = conn, clock
        self._log = AccessLog(conn, clock=clock)

    def push(self, user: User, devices, settings: dict, signing_key: Ed25519PrivateKey, *,
             allow_broker_address: bool = False) -> list[Pushed]:
        """Sign ``settings`` for each of ``devices`` (registry Device objects)
        with its next version; store them and the access-log entry in one
        transaction. The collector publishes them."""
        require(user, Permission.CONFIGURE_DEVICES)
        try:
            wire.check_settings(settings, allow_broker_address=allow_broker_address)
        except wire.ConfigRefused as exc:
            raise RemoteConfigError(str(exc)) from None
        devices = list(devices)
        if not devices:
            raise RemoteConfigError("no device to configure")
        for d in devices:
            if d.status == "revoked":
                raise RegistryError(f"device {d.device_id} is revoked")
        now = self._clock()
        settings_json = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        kid = key_id(signing_key.public_key())
        pushed = []
        with transaction(self.conn):
            for d in devices:
                row = self.conn.execute("SELECT MAX(version) FROM device_configs WHERE device_id = ?",
                                        [d.device_id]).fetchone()
                version = (row[0] or 0) + 1
                message = wire.sign(signing_key, wire.DeviceConfig(d.device_id, version, ts(now), user.name,
                                                                   settings_json))
                self.conn.execute("INSERT INTO device_configs VALUES (?,?,?,?,?,?,?,NULL)",
                                  [d.device_id, version, settings_json, message, kid, user.name, ts(now)])
                pushed.append(Pushed(d.device_id, version))
            # the keys changed, never their values (a stream URL may carry a password)
            keys = sorted(f"{s}.{k}" for s, t in settings.items() if isinstance(t, dict) for k in t)
            if "cameras" in settings:
                keys.append(f"cameras[{len(settings['cameras'])}]")
            self._log.append(user=user.name, organization=user.organization, action="device-config-push",
                             detail={"devices": {p.device_id: p.version for p in pushed}, "keys": keys,
                                     "key_id": kid}, result_count=len(pushed), at=now)
        logger.info("configuration pushed by %s to %d device(s)", user.name, len(pushed))
        return pushed

    def status(self, devices) -> list[ConfigStatus]:
        """Per device (registry Device objects the caller may see): newest
        configuration pushed and what the device reports."""
        out = []
        for d in devices:
            pushed = self.conn.execute(
                "SELECT version, issued_by, issued_at, published_at FROM device_configs WHERE device_id = ? "
                "ORDER BY version DESC LIMIT 1", [d.device_id]).fetchone()
            state = self.conn.execute(
                "SELECT applied_version, state, offered_version, reason, reported_at FROM device_config_state "
                "WHERE device_id = ?", [d.device_id]).fetchone()
            out.append(ConfigStatus(
                d.device_id, d.owner, d.status, pushed[0] if pushed else None, pushed[1] if pushed else None,
                parse_ts(pushed[2]) if pushed else None, bool(pushed and pushed[3]),
                state[0] if state else None, state[1] if state else None, state[2] if state else None,
                state[3] if state else None, parse_ts(state[4]) if state else None))
        return out


def to_doc(s: ConfigStatus) -> dict:
    doc = dataclasses.asdict(s)
    for k in ("pushed_at", "reported_at"):
        doc[k] = doc[k].isoformat() if doc[k] else None
    doc["in_sync"] = s.in_sync
    return doc


# -- the collector's part ---------------------------------------------------------------
class RemoteConfigHandler:
    """Publishes pushed configurations (retained) and records devices' reports."""

    def __init__(self, db_path, *, topic_prefix: str = "alpr/v1/devices", clock=utcnow) -> None:
        self.conn = connect(db_path)  # a SQLite file or a postgresql:// URL
        self.topics = Topics(topic_prefix)
        self._clock = clock
        self._lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()

    def close(self) -> None:
        self.conn.close()

    @property
    def subscription(self) -> str:
        return self.topics.config_state_subscription()

    def accepts(self, topic: str) -> bool:
        return self.topics.config_state_device_of(topic) is not None

    def handle(self, topic: str, payload: bytes) -> bool:
        device = self.topics.config_state_device_of(topic)
        try:
            state = wire.decode_state(bytes(payload))
        except MalformedMessage as exc:
            self.counters["config_state.malformed"] += 1
            logger.warning("refused a configuration state from %s: %s", device, exc)
            return False
        if state.device_id != device:
            self.counters["config_state.wrong_device"] += 1
            logger.warning("refused a configuration state on %s's topic naming another device", device)
            return False
        with self._lock:
            self.conn.execute(
                "INSERT INTO device_config_state VALUES (?,?,?,?,?,?,?) ON CONFLICT(device_id) DO UPDATE SET "
                "applied_version=excluded.applied_version, state=excluded.state, "
                "offered_version=excluded.offered_version, reason=excluded.reason, "
                "reported_at=excluded.reported_at, received_at=excluded.received_at",
                [device, state.applied_version, state.state, state.offered_version, state.reason, state.at,
                 ts(self._clock())])
        if state.state in ("refused", "rolled-back"):
            logger.warning("device %s %s configuration version %s: %s", device, state.state, state.offered_version,
                           state.reason)
        self.counters[f"config_state.{state.state}"] += 1
        return True

    def publish_pending(self, client, timeout: float = 5.0) -> int:
        """Hand each device's newest unpublished configuration to the broker,
        retained; marked published once the broker has it (PUBACK)."""
        rows = self.conn.execute(
            "SELECT c.device_id, c.version, c.message FROM device_configs c WHERE c.published_at IS NULL "
            "AND c.version = (SELECT MAX(version) FROM device_configs d WHERE d.device_id = c.device_id) "
            "ORDER BY c.device_id").fetchall()
        done = 0
        for device, version, message in rows:
            info = client.publish(self.topics.config(device), bytes(message), qos=1, retain=True)
            info.wait_for_publish(timeout)
            if not info.is_published():
                logger.warning("the broker has not taken configuration version %s for %s yet; trying again",
                               version, device)
                break
            with self._lock:
                self.conn.execute("UPDATE device_configs SET published_at = ? WHERE device_id = ? AND version <= ? "
                                  "AND published_at IS NULL", [ts(self._clock()), device, version])
            done += 1
        if done:
            logger.info("published %d configuration(s) to the broker", done)
        return done
