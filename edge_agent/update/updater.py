"""``alpr-edge update apply``: verify, install beside, switch, check health,
roll back on failure. Every step is a record in the device's audit log:

- ``update-refused``      the bundle is unsigned, tampered, malformed or a downgrade (nothing changed)
- ``update-installed``    the release is installed beside the running one
- ``update-switched``     ``current`` points at it and the agent was restarted
- ``update-healthy``      the new agent passed its health check: done
- ``update-rolled-back``  it did not: ``current`` points at the previous release again
- ``update-failed``       a step failed before the switch (nothing changed)
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol

from ..errors import UpdateError
from ..wire import release as fmt
from .health import HealthCheck, HealthReport
from .releases import Releases

logger = logging.getLogger(__name__)


class Restarter(Protocol):
    def restart(self) -> None:
        """Restart the agent so it runs what ``current`` points at."""


class CommandRestarter:
    """Runs a command, by default ``systemctl restart alpr-edge.service``."""

    def __init__(self, argv=("systemctl", "restart", "alpr-edge.service"), timeout: float = 120) -> None:
        self.argv = list(argv)
        self.timeout = timeout

    def restart(self) -> None:
        try:
            r = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UpdateError(f"restarting the agent failed: {exc}") from None
        if r.returncode != 0:
            raise UpdateError(f"restarting the agent failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")


class _NoAudit:
    def append(self, event, detail=None, **_):
        return None


@dataclasses.dataclass(frozen=True)
class UpdateResult:
    version: str
    previous_version: str
    outcome: str                  # "switched" or "rolled-back"
    health: HealthReport


class Updater:
    def __init__(self, releases: Releases, trusted_key, restarter: Restarter, health: HealthCheck, *,
                 audit=None, health_timeout: float = 120.0, clock=time.time) -> None:
        self.releases = releases
        self.key = trusted_key
        self.restarter = restarter
        self.health = health
        self.audit = audit or _NoAudit()
        self.health_timeout = health_timeout
        self.clock = clock

    def _refuse(self, reason: str, **detail) -> None:
        self.audit.append("update-refused", {"reason": reason, **detail})
        self.releases.save_state(last={"result": "refused", "reason": reason, "at": self.clock(), **detail})

    def verify(self, bundle: str | Path, staging: Path | None = None) -> fmt.ReleaseManifest:
        """Signature, hashes and version rule; ``update-refused`` on any failure."""
        try:
            manifest = fmt.open_bundle(bundle, self.key, staging)
        except fmt.BundleRefused as exc:
            self._refuse(str(exc))
            raise
        running = self.releases.current_version()
        new, old = fmt.parse_version(manifest.version), fmt.parse_version(running)
        if new == old:
            msg = f"release {manifest.version} is the running version"
            self._refuse(msg, version=manifest.version)
            raise fmt.BundleRefused(msg)
        if new < old and not manifest.allow_downgrade:
            msg = (f"release {manifest.version} is older than the running {running} and its signed manifest does "
                   "not allow a downgrade")
            self._refuse(msg, version=manifest.version, running=running)
            raise fmt.BundleRefused(msg)
        return manifest

    def apply(self, bundle: str | Path) -> UpdateResult:
        """One update at a time per device (an flock on ``<app_dir>/.update.lock``)."""
        lock_path = _mkdir(self.releases.app_dir) / ".update.lock"
        with open(lock_path, "a") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UpdateError("another update is running on this device") from None
            return self._apply(bundle)

    def _apply(self, bundle: str | Path) -> UpdateResult:
        rel = self.releases
        previous = rel.current_target()
        previous_version = rel.current_version()
        with tempfile.TemporaryDirectory(prefix=".staging-", dir=_mkdir(rel.app_dir)) as tmp:
            manifest = self.verify(bundle, Path(tmp))
            detail = {"version": manifest.version, "previous_version": previous_version,
                      "key_id": manifest.key_id, "models_version": manifest.models_version}
            try:
                target = rel.install(Path(tmp), manifest)
            except UpdateError as exc:
                self.audit.append("update-failed", {**detail, "step": "install", "reason": str(exc)[:500]})
                rel.save_state(last={"result": "failed", "step": "install", "at": self.clock(), **detail})
                raise
        self.audit.append("update-installed", {**detail, "wheel_sha256": manifest.wheel.sha256})
        started = self.clock()
        rel.switch(target)
        try:
            self.restarter.restart()
            self.audit.append("update-switched", detail)
            report = self.health.wait(since=started, expect_version=manifest.version, timeout=self.health_timeout)
        except UpdateError as exc:
            report = HealthReport(False, (str(exc),))
        if report.ok:
            self.audit.append("update-healthy", detail)
            rel.save_state(current=manifest.version, previous=previous_version,
                           last={"result": "switched", "at": self.clock(), **detail})
            rel.prune(keep={target, previous})
            logger.info("update to %s done", manifest.version)
            return UpdateResult(manifest.version, previous_version, "switched", report)
        logger.error("release %s failed its health check (%s); rolling back to %s", manifest.version,
                     report.summary(), previous_version)
        rel.switch(previous)
        rollback_started = self.clock()
        back = HealthReport(False, ("not checked",))
        try:
            self.restarter.restart()
            back = self.health.wait(since=rollback_started, expect_version=None, timeout=self.health_timeout)
        except UpdateError as exc:
            back = HealthReport(False, (str(exc),))
        self.audit.append("update-rolled-back", {**detail, "problems": list(report.problems)[:10],
                                                 "previous_healthy": back.ok})
        rel.save_state(current=previous_version, last={"result": "rolled-back", "at": self.clock(),
                                                       "problems": list(report.problems)[:10], **detail})
        shutil.rmtree(target, ignore_errors=True)  # a failed release is not kept to be switched to by mistake
        return UpdateResult(manifest.version, previous_version, "rolled-back", report)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
