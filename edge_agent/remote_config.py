"""Remote configuration on the device: receive, check, apply, confirm or roll back.

Central publishes a signed configuration (:mod:`edge_agent.wire.devconfig`)
retained on ``.../<id>/config``. The device keeps what it accepted in
``<data_dir>/remote-config/`` and lays it over its own config file at every
start; the file itself is never rewritten (the field tech's file, and the
settings central may never touch, stay as they are)::

    current.msg    the signed message in force (verified again at every start)
    previous.msg   the one before it (what a rollback returns to; none = the file alone)
    failed.msg     the last one rolled back
    state.json     applied and highest version, trial state, last refusal

A message is refused, logged, written to the device audit log and reported to
central when it is unsigned or its signature does not verify with the trusted
key (``[remote_config] public_key``, beside the config in root's folder, never
in the data folder the agent can write), names another device, sets a key
that may not be set remotely, is not newer than the highest version accepted
(older or replayed), or does not pass the ``config check`` rules laid over
this device's file. An accepted one is written beside the current one
(fsync, rename, the previous kept) and the agent restarts in place
(``alpr-edge run`` builds a new agent from the new configuration).

Until the new configuration has every camera delivering frames and sync
connected (within ``trial_seconds``) it is on trial: if it does not come up,
the agent puts the previous one back and restarts again. A start that never
reaches that point (the process dies) counts: the next start with the same
configuration still on trial rolls it back first. A stored configuration that
stops validating (the file was edited under it) is rolled back at start too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import config as config_mod
from .config import EdgeConfig
from .errors import ConfigError
from .wire import devconfig as wire
from .wire.devconfig import ConfigRefused, ConfigState, DeviceConfig

logger = logging.getLogger(__name__)

FOLDER = "remote-config"


def _now_iso(clock: Callable[[], float]) -> str:
    return dt.datetime.fromtimestamp(clock(), dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _write_atomic(path: Path, data: bytes) -> None:
    """Beside, fsync, rename, fsync the folder: the old or the new, never a half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_key(cfg: EdgeConfig):
    path = cfg.remote_config.public_key
    try:
        return wire.load_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"remote_config.public_key: cannot read {path}: {exc.strerror}") from None
    except ConfigRefused as exc:
        raise ConfigError(f"remote_config.public_key: {exc}") from None


class ConfigStore:
    """The files in ``<data_dir>/remote-config/`` and the rules for changing them."""

    def __init__(self, folder: str | os.PathLike, public_key, device_id: str, *, allow_broker_address: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.key, self.device_id = public_key, device_id
        self.allow_broker_address = allow_broker_address
        self._clock = clock
        self._lock = threading.Lock()
        self.state = self._load_state()

    @classmethod
    def for_config(cls, cfg: EdgeConfig, **kw) -> "ConfigStore":
        return cls(cfg.data_dir / FOLDER, load_key(cfg), cfg.device.id,
                   allow_broker_address=cfg.remote_config.allow_broker_address, **kw)

    # -- files ----------------------------------------------------------------------
    def _load_state(self) -> dict:
        blank = {"applied_version": 0, "highest_version": 0, "status": "none", "trial": False, "attempts": 0,
                 "offered_version": None, "reason": None, "at": None, "last_digest": None}
        try:
            doc = json.loads((self.folder / "state.json").read_text())
        except FileNotFoundError:
            return blank
        except (OSError, ValueError) as exc:
            logger.error("remote configuration state unreadable (%s); starting from the config file alone", exc)
            return blank
        return {**blank, **doc} if isinstance(doc, dict) else blank

    def _save(self, **changes) -> None:
        self.state.update(changes, at=_now_iso(self._clock))
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(self.folder / "state.json", json.dumps(self.state, sort_keys=True).encode())

    def _read(self, name: str) -> DeviceConfig | None:
        try:
            message = (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return wire.open_config(message, self.key, self.device_id, allow_broker_address=self.allow_broker_address)
        except ConfigRefused as exc:  # the file was changed, or the trusted key was replaced since
            logger.error("stored remote configuration %s no longer verifies (%s); ignored", name, exc)
            return None

    def current(self) -> DeviceConfig | None:
        return self._read("current.msg")

    @property
    def status(self) -> str:
        """The last event: none, trial, applied, refused, rolled-back."""
        return self.state["status"]

    @property
    def in_trial(self) -> bool:
        """The configuration in force has not come up yet (a refusal meanwhile does not change that)."""
        return bool(self.state["trial"])

    # -- changes --------------------------------------------------------------------
    def offer(self, message: bytes, validate: Callable[[dict], object]) -> DeviceConfig | None:
        """Accept ``message`` (it becomes current, on trial) or raise
        :class:`ConfigRefused`. None when this very message was handled before
        (the broker hands the retained one over again at every reconnect)."""
        with self._lock:
            digest = hashlib.sha256(message).hexdigest()
            if digest == self.state["last_digest"]:
                return None
            try:
                cfg = self._check(message, validate)
            except ConfigRefused as exc:
                self._save(last_digest=digest, status="refused", offered_version=wire.claimed_version(message),
                           reason=wire.short_reason(f"{exc.reason}: {exc}"))
                raise
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            current = self.folder / "current.msg"
            if not self.state["trial"]:  # on trial: what a rollback returns to stays the last one that came up
                if current.exists():
                    _write_atomic(self.folder / "previous.msg", current.read_bytes())
                else:
                    (self.folder / "previous.msg").unlink(missing_ok=True)
            _write_atomic(current, message)
            self._save(last_digest=digest, status="trial", trial=True, attempts=0, applied_version=cfg.version,
                       highest_version=cfg.version, offered_version=cfg.version, reason=None)
            return cfg

    def _check(self, message: bytes, validate) -> DeviceConfig:
        if self.key is None:
            raise ConfigRefused("no-key", "no trusted configuration key ([remote_config] public_key)")
        cfg = wire.open_config(message, self.key, self.device_id, allow_broker_address=self.allow_broker_address)
        if cfg.version <= self.state["highest_version"]:
            raise ConfigRefused("older", f"version {cfg.version} is not newer than version "
                                f"{self.state['highest_version']} already accepted (older or replayed)")
        try:
            validate(cfg.settings)
        except ConfigError as exc:
            raise ConfigRefused("invalid", f"version {cfg.version} fails the config check rules: {exc}") from None
        return cfg

    def begin_start(self) -> str | None:
        """At every agent start: a configuration still on trial from a start
        that never confirmed it is rolled back (returns why); else the attempt
        is counted."""
        with self._lock:
            if not self.state["trial"]:
                return None
            if self.state["attempts"] >= 1:
                why = (f"the agent stopped before version {self.state['applied_version']} came up "
                       "(crashed or killed during its trial)")
                self._rollback(why)
                return why
            self._save(attempts=1)
            return None

    def confirm(self) -> None:
        with self._lock:
            if self.state["trial"]:
                self._save(status="applied", trial=False, attempts=0, offered_version=self.state["applied_version"],
                           reason=None)

    def rollback(self, reason: str) -> None:
        with self._lock:
            self._rollback(reason)

    def _rollback(self, reason: str) -> None:
        failed = self.state["applied_version"]
        current, previous = self.folder / "current.msg", self.folder / "previous.msg"
        if current.exists():
            _write_atomic(self.folder / "failed.msg", current.read_bytes())
        if previous.exists():
            os.replace(previous, current)
            _fsync_dir(self.folder)
        else:
            current.unlink(missing_ok=True)
        back = self.current()
        self._save(status="rolled-back", trial=False, attempts=0, applied_version=back.version if back else 0,
                   offered_version=failed or None, reason=wire.short_reason(reason))
        logger.warning("remote configuration version %s rolled back to %s: %s", failed,
                       f"version {back.version}" if back else "the config file alone", reason)

    def report(self) -> ConfigState:
        s = self.state
        state = {"none": "applied", "rolled-back": "rolled-back", "refused": "refused"}.get(s["status"], s["status"])
        return ConfigState(self.device_id, s["applied_version"], state, s["offered_version"], s["reason"],
                           s["at"] or _now_iso(self._clock))


# -- the configuration in force -------------------------------------------------------
def validator(config_path: str | os.PathLike) -> Callable[[dict], EdgeConfig]:
    """The ``config check`` rules for remote settings laid over this file."""
    path = Path(config_path)
    base_doc, base_dir = config_mod.read_doc(path), path.resolve().parent

    def validate(settings: dict) -> EdgeConfig:
        cfg = config_mod.parse(wire.merge(base_doc, settings), base_dir)
        problems = config_mod.incomplete(cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        return cfg
    return validate


@dataclasses.dataclass(frozen=True)
class Effective:
    config: EdgeConfig
    store: ConfigStore | None
    version: int = 0
    state: str = ""
    error: str | None = None
    rolled_back: str | None = None


def check(config_path: str | os.PathLike, base: EdgeConfig) -> Effective:
    """What ``config check`` reports: the file with the stored remote
    configuration over it; nothing is changed."""
    if not base.remote_config.public_key:
        return Effective(base, None)
    try:
        store = ConfigStore.for_config(base)
    except ConfigError as exc:
        return Effective(base, None, error=str(exc))
    current = store.current()
    if current is None:
        return Effective(base, store)
    try:
        return Effective(validator(config_path)(current.settings), store, current.version, store.status)
    except ConfigError as exc:
        return Effective(base, store, current.version, store.status,
                         error=f"remote configuration version {current.version} does not validate over this file: "
                               f"{exc} (the agent rolls it back at its next start)")


def load_for_start(config_path: str | os.PathLike, base: EdgeConfig) -> Effective:
    """At agent start: roll back a configuration whose earlier start never
    came up, then one that no longer validates, and return what to run."""
    if not base.remote_config.public_key:
        return Effective(base, None)
    store = ConfigStore.for_config(base)
    why = store.begin_start()
    validate = validator(config_path)
    while (current := store.current()) is not None:
        try:
            return Effective(validate(current.settings), store, current.version, store.status, rolled_back=why)
        except ConfigError as exc:
            why = f"version {current.version} does not validate at start: {exc}"
            store.rollback(why)
    return Effective(base, store, rolled_back=why)


class RemoteConfigAgent:
    """The running agent's side: takes messages from sync, watches a trial,
    reports to central. ``restart`` is set when the agent must be rebuilt."""

    def __init__(self, store: ConfigStore, config_path: str | os.PathLike, *, trial_seconds: float,
                 note: Callable[[str, dict], object] = lambda event, detail: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.trial_seconds, self.note = store, trial_seconds, note
        self._validate = validator(config_path)
        self._clock = clock
        self._started = clock()
        self.restart = threading.Event()
        self.publish: Callable[[bytes], object] | None = None  # set by sync while connected

    def state_payload(self) -> bytes:
        return wire.encode_state(self.store.report())

    def _report(self) -> None:
        if self.publish is not None:
            try:
                self.publish(self.state_payload())
            except Exception:  # the report goes again at the next connect
                logger.exception("could not report the configuration state")

    def on_message(self, payload: bytes) -> None:
        """A message on our config topic (paho's thread)."""
        if self.restart.is_set():
            return  # a new configuration is being put in place; the broker offers this again after the restart
        try:
            cfg = self.store.offer(payload, self._validate)
        except ConfigRefused as exc:
            offered = wire.claimed_version(payload)
            logger.warning("remote configuration refused (device %s, version %s): %s: %s", self.store.device_id,
                           offered, exc.reason, exc)
            self.note("config-refused", {"version": offered, "reason": exc.reason})
            self._report()
            return
        except OSError as exc:  # a full disk: not applied, not recorded as handled; offered again on reconnect
            logger.error("cannot store the remote configuration: %s", exc.strerror)
            return
        if cfg is None:
            return
        logger.info("remote configuration version %s accepted (issued by %s); restarting with it", cfg.version,
                    cfg.issued_by)
        self.note("config-accepted", {"version": cfg.version, "issued_by": cfg.issued_by})
        self._report()
        self.restart.set()

    def started(self, rolled_back: str | None) -> None:
        """The agent is running: report (and record a rollback done at start)."""
        self._started = self._clock()
        if rolled_back:
            self.note("config-rolled-back", {"version": self.store.state["offered_version"],
                                             "reason": rolled_back[:200]})

    def tick(self, agent) -> None:
        """Housekeeping loop: confirm the configuration on trial once cameras
        and sync are up, or roll it back when they are not within the trial."""
        if not self.store.in_trial or self.restart.is_set():
            return
        problems = [f"camera {w.camera.id} has delivered no frame ({w.state}"
                    + (f": {w.last_error})" if w.last_error else ")") for w in agent.workers if w.frames == 0]
        if not agent.sync.connected:
            problems.append(f"sync is not connected ({agent.sync.last_error or 'no connection yet'})")
        version = self.store.state["applied_version"]
        if not problems:
            self.store.confirm()
            logger.info("remote configuration version %s is up: cameras deliver frames, sync connected", version)
            self.note("config-applied", {"version": version})
            self._report()
        elif self._clock() - self._started > self.trial_seconds:
            why = f"version {version} did not come up within {self.trial_seconds:g} s: " + "; ".join(problems)
            self.store.rollback(why)
            self.note("config-rolled-back", {"version": version, "reason": why[:200]})
            self._report()
            self.restart.set()
