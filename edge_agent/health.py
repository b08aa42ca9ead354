"""The health heartbeat: what the agent tells central about itself every
``[health] interval_seconds`` (format: :mod:`edge_agent.wire.health`).

:class:`SystemProbe` reads what the platform offers (``/proc``, ``/sys``,
``chronyc``); anything a platform lacks is ``None``, never a guess.
:class:`HealthReporter` builds the heartbeat from the running agent and
publishes it through the sync client's MQTT connection while that is up (a
heartbeat is a snapshot, not evidence: one missed while offline is not resent,
and the MQTT message expiry keeps the broker from delivering a stale one).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import __version__
from .wire import MalformedMessage
from .wire.health import CameraHealth, Health, encode_health

logger = logging.getLogger(__name__)


class SystemProbe:
    """Platform facts; each method returns None where the platform does not tell."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def _read(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def os_version(self) -> str:
        text = self._read("etc/os-release") or ""
        name = next((line.split("=", 1)[1].strip().strip('"') for line in text.splitlines()
                     if line.startswith("PRETTY_NAME=")), platform.system())
        return f"{name}; kernel {platform.release()}"[:128]

    def uptime(self) -> int | None:
        text = self._read("proc/uptime")
        try:
            return int(float(text.split()[0])) if text else None
        except (ValueError, IndexError):
            return None

    def load_1m(self) -> float | None:
        try:
            return round(os.getloadavg()[0], 2)
        except OSError:
            return None

    def cpu_temp_c(self) -> float | None:
        """The CPU/SoC thermal zone (Raspberry Pi: zone 0, ``cpu-thermal``;
        Jetson: ``cpu-thermal`` or ``CPU-therm``); None on a machine without one."""
        zones = sorted((self.root / "sys/class/thermal").glob("thermal_zone*"))
        best = None
        for zone in zones:
            kind = (self._read(str(zone.relative_to(self.root) / "type")) or "").strip().lower()
            temp = self._read(str(zone.relative_to(self.root) / "temp"))
            try:
                value = round(int(temp.strip()) / 1000.0, 1) if temp else None
            except ValueError:
                continue
            if value is None or not -100 <= value <= 200:
                continue
            if "cpu" in kind or "soc" in kind:
                return value
            best = value if best is None else best
        return best

    def memory(self) -> tuple[int | None, int | None]:
        text = self._read("proc/meminfo") or ""
        found = {}
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                try:
                    found[key] = int(rest.split()[0]) * 1024
                except (ValueError, IndexError):
                    pass
        return found.get("MemTotal"), found.get("MemAvailable")

    def clock_offset_s(self) -> float | None:
        """chrony's estimate of how far the system clock is from NTP time
        (positive: fast), or None without chrony or before it has synchronised."""
        chronyc = shutil.which("chronyc")
        if not chronyc:
            return None
        try:
            out = subprocess.run([chronyc, "-c", "tracking"], capture_output=True, text=True, timeout=2,
                                 check=False).stdout
            fields = out.strip().split(",")
            return round(float(fields[4]), 6) if len(fields) > 4 and fields[2] not in ("0", "") else None
        except (OSError, subprocess.SubprocessError, ValueError):
            return None


def certificate_expiry(cert_file: str) -> dt.datetime | None:
    if not cert_file:
        return None
    try:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.replace(microsecond=0)


class HealthReporter:
    """Builds and publishes heartbeats for one agent; :meth:`tick` is called
    from the agent's housekeeping loop (every second)."""

    def __init__(self, agent, *, interval: float, probe: SystemProbe | None = None, wall=time.time,
                 monotonic=time.monotonic) -> None:
        self.agent = agent
        self.interval = interval
        self.probe = probe or SystemProbe()
        self._wall = wall
        self._monotonic = monotonic
        self._started = monotonic()
        self._last_sent: float | None = None
        self._os = self.probe.os_version()
        self.counters = {"sent": 0, "refused": 0, "invalid": 0}

    def build(self) -> Health:
        a = self.agent
        now = dt.datetime.fromtimestamp(self._wall(), dt.timezone.utc)
        stats = a.outbox.stats()
        age = None
        if stats.oldest_day is not None:
            oldest = dt.datetime.fromtimestamp(stats.oldest_day, dt.timezone.utc).date()
            age = max(0, (now.date() - oldest).days)
        disk = a.disk_status()
        total, available = self.probe.memory()
        last = a.writer.last_written_at
        cameras = tuple(
            CameraHealth(w.camera.id, w.state, round(w.fps, 2), w.frames,
                         w.bad_frames + w.unreadable + w.failures, (w.last_error or None) and w.last_error[:200],
                         w.tamper.flags)
            for w in a.workers)
        return Health(
            device_id=a.config.device.id, sent_at=now, agent_version=__version__[:64],
            model_version=a.recognizer.model_version[:64], os_version=self._os,
            agent_uptime_s=int(self._monotonic() - self._started), system_uptime_s=self.probe.uptime(),
            load_1m=self.probe.load_1m(), cpu_temp_c=self.probe.cpu_temp_c(),
            memory_total_bytes=total, memory_available_bytes=available,
            disk_free_bytes=disk["free_bytes"], disk_full=bool(disk["full"]),
            buffer_depth=stats.depth, buffer_bytes=stats.bytes, buffer_oldest_age_days=age,
            last_read_at=None if last is None else dt.datetime.fromtimestamp(last, dt.timezone.utc),
            clock_offset_s=self.probe.clock_offset_s(),
            cert_expires_at=certificate_expiry(a.config.sync.cert_file),
            sync_connected=a.sync.connected, sync_resends=int(a.sync.counters.get("resends", 0)),
            cameras=cameras)

    def tick(self) -> bool:
        """Publish a heartbeat if one is due and the broker connection is up;
        never raises (the housekeeping loop that calls it also pets the watchdog)."""
        try:
            return self._tick()
        except Exception:
            self.counters["invalid"] += 1
            self._last_sent = self._monotonic()
            logger.exception("heartbeat failed; next one in %.0fs", self.interval)
            return False

    def _tick(self) -> bool:
        now = self._monotonic()
        if self._last_sent is not None and now - self._last_sent < self.interval:
            return False
        sync = self.agent.sync
        if not sync.connected:
            return False
        try:
            data = encode_health(self.build())
        except MalformedMessage as exc:  # a value out of the contract's range: say so, never crash the loop
            self.counters["invalid"] += 1
            self._last_sent = now
            logger.error("heartbeat not sent: %s", exc)
            return False
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = max(1, int(self.interval))
        info = sync.client.publish(sync.topics.health(self.agent.config.device.id), data, qos=1,
                                   properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.counters["refused"] += 1
            return False
        self._last_sent = now
        self.counters["sent"] += 1
        return True
