"""Fleet alerts, computed at central from each device's latest heartbeat
(:mod:`central.fleet.health`), its bounded heartbeat history, the broker's
online/offline (:mod:`central.fleet.device_status`) and the registry:

==========================  =====================================================================
``offline``                 an active device not heard from (no heartbeat, or the broker says
                            offline) for longer than ``offline_minutes``; never heard at all
                            since it was enrolled that long ago
``buffer-growing``          its outbox depth rose at every heartbeat over the last
                            ``buffer_growing_minutes`` (by at least ``buffer_growing_reads``):
                            reads are not leaving the device
``disk-low``                less than ``disk_free_megabytes`` free on the data folder, or full
``clock-off``               the device's clock off by more than ``clock_offset_seconds`` (its
                            own NTP estimate, else central's measurement at receipt)
``certificate-expiring``    the device certificate expires within ``certificate_days``
``camera-tampered``         a camera reports its view black, blurred or moved
==========================  =====================================================================

Thresholds come from the ``[alerts]`` section of central's config. Only
active devices raise alerts (a suspended or revoked device is expected to be
silent). :func:`fleet_alerts` computes them on demand (``alpr-central device
alerts``); :mod:`central.fleet.alert_feed` evaluates :func:`all_alerts` every
``check_seconds`` in ``alpr-central run``, records each alert once per episode
(raised, then cleared) and pushes them (``device alerts --watch``, webhooks).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3

from ..config import Alerts
from ..governance.audit import ts, utcnow
from .health import DeviceHealthView, device_views, fleet_health, recent_histories

KINDS = ("offline", "buffer-growing", "disk-low", "clock-off", "certificate-expiring", "camera-tampered")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The thresholds of the ``[alerts]`` section; its defaults are the config's."""
    offline_minutes: float = Alerts.offline_minutes
    buffer_growing_minutes: float = Alerts.buffer_growing_minutes
    buffer_growing_reads: int = Alerts.buffer_growing_reads
    disk_free_megabytes: float = Alerts.disk_free_megabytes
    clock_offset_seconds: float = Alerts.clock_offset_seconds
    certificate_days: float = Alerts.certificate_days

    @classmethod
    def from_config(cls, alerts) -> "Thresholds":
        """From central's ``[alerts]`` section (:class:`central.config.Alerts`)."""
        return cls(**{f.name: getattr(alerts, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class Alert:
    device_id: str
    owner: str
    kind: str
    message: str
    since: dt.datetime | None = None      # when the condition was first seen, where central knows
    subject: str = ""                     # what of the device: the camera id for camera-tampered

    @property
    def key(self) -> tuple[str, str, str]:
        """One episode's identity: the same key at the next evaluation is the same alert."""
        return (self.device_id, self.kind, self.subject)

    def to_doc(self) -> dict:
        return {"device_id": self.device_id, "owner": self.owner, "kind": self.kind, "message": self.message,
                "since": ts(self.since) if self.since else None, "subject": self.subject}


def _minutes(delta: dt.timedelta) -> str:
    m = int(delta.total_seconds() // 60)
    return f"{m} min" if m < 120 else f"{m // 60} h" if m < 48 * 60 else f"{m // 1440} days"


def device_alerts(view: DeviceHealthView, history, t: Thresholds, now: dt.datetime, *,
                  connection_since: dt.datetime | None = None, enrolled_at: dt.datetime | None = None) -> list[Alert]:
    """The alerts for one device (``history``: its recent heartbeats, oldest first)."""
    if view.status != "active":
        return []
    out = []

    def add(kind, message, since=None, subject=""):
        out.append(Alert(view.device_id, view.owner, kind, message, since, subject))

    latest = view.latest
    limit = dt.timedelta(minutes=t.offline_minutes)
    if view.connection == "offline" and connection_since is not None and now - connection_since > limit:
        add("offline", f"the broker has reported it offline for {_minutes(now - connection_since)}",
            connection_since)
    elif latest is not None and now - latest.received_at > limit:
        add("offline", f"no heartbeat for {_minutes(now - latest.received_at)}", latest.received_at)
    elif latest is None and view.connection != "online" and enrolled_at is not None and now - enrolled_at > limit:
        add("offline", "never heard from since it was enrolled", enrolled_at)
    cert = min([c for c in (view.cert_expires_at, latest.health.cert_expires_at if latest else None) if c],
               default=None)
    if cert is not None and cert - now < dt.timedelta(days=t.certificate_days):
        add("certificate-expiring", "its certificate expired" if cert <= now else
            f"its certificate expires in {_minutes(cert - now)} ({cert.date().isoformat()}); renew it "
            "(alpr-edge renew)", None)
    if latest is None:
        return out
    h = latest.health
    if h.disk_full or (h.disk_free_bytes is not None and h.disk_free_bytes < t.disk_free_megabytes * (1 << 20)):
        free = "full" if h.disk_full else f"{h.disk_free_bytes / (1 << 20):.0f} MB free"
        add("disk-low", f"the data folder's disk is low: {free}", latest.received_at)
    offset = latest.clock_offset_s
    if abs(offset) > t.clock_offset_seconds:
        source = "by its NTP" if h.clock_offset_s is not None else "measured at central"
        add("clock-off", f"its clock is {abs(offset):.1f} s {'ahead' if offset > 0 else 'behind'} ({source})",
            latest.received_at)
    window = [x for x in history if latest.received_at - x.received_at <= dt.timedelta(minutes=t.buffer_growing_minutes)]
    if len(window) >= 3 and latest.received_at - window[0].received_at >= dt.timedelta(
            minutes=t.buffer_growing_minutes * 0.8):
        depths = [x.health.buffer_depth for x in window]
        if all(b >= a for a, b in zip(depths, depths[1:])) and depths[-1] - depths[0] >= t.buffer_growing_reads:
            add("buffer-growing", f"its buffer grew from {depths[0]} to {depths[-1]} reads in "
                f"{_minutes(window[-1].received_at - window[0].received_at)}", window[0].received_at)
    for cam in h.cameras:
        if cam.tamper:
            add("camera-tampered", f"camera {cam.id}: view {', '.join(cam.tamper)}", latest.received_at, cam.id)
    return out


def fleet_alerts(registry, conn: sqlite3.Connection, user, thresholds: Thresholds, *, owner: str | None = None,
                 clock=utcnow) -> list[Alert]:
    """The alerts of every device ``user`` may see (the registry decides)."""
    return _evaluate(conn, fleet_health(registry, conn, user, owner=owner), thresholds, clock())


def all_alerts(registry, conn: sqlite3.Connection, thresholds: Thresholds, *, clock=utcnow) -> list[Alert]:
    """The alerts of every active device (the alert feed's evaluation; no
    user: what each user may see is decided when it is shown or sent)."""
    return _evaluate(conn, device_views(conn, registry.devices(status="active")), thresholds, clock())


def _evaluate(conn, views, thresholds: Thresholds, now: dt.datetime) -> list[Alert]:
    """Every view's alerts; the heartbeat histories come in one query per
    500 devices (a query per device cost 3.6 ms each on PostgreSQL)."""
    views = list(views)
    histories = recent_histories(conn, views, dt.timedelta(minutes=thresholds.buffer_growing_minutes))
    out = []
    for view in views:
        out += device_alerts(view, histories.get(view.device_id, []), thresholds, now,
                             connection_since=view.connection_since, enrolled_at=view.enrolled_at)
    return out
