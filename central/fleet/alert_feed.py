"""Fleet alerts pushed, not only computed on demand.

:class:`AlertFeed` runs in ``alpr-central run``: every ``[alerts]
check_seconds`` it evaluates the alerts of every active device
(:func:`central.fleet.alerts.all_alerts`) and compares them with the open
episodes in ``device_alerts``:

- an alert not open yet is **raised**: a ``device_alerts`` row and a
  ``raised`` event;
- an open alert still present stays open (its message is refreshed, no event);
- an open alert no longer present is **cleared**: ``cleared_at`` and a
  ``cleared`` event.

So each alert is announced once per episode, however often it is evaluated,
and its end is announced too; episodes open when central stopped stay open
across its restart. For ``offline_minutes`` after the feed starts no new
``offline`` alert is raised: while central was down no heartbeat was received,
and every device must have had the time to be heard from again. An episode's identity is (device, kind,
subject), the subject being the camera id for ``camera-tampered``. Each
event is queued, in the same transaction, for every ``[[alerts.webhooks]]``
receiver whose ``owner`` and ``kinds`` match; :class:`AlertSender` (the
hotlist webhook sender pointed at these tables) posts it, signed with
HMAC-SHA256 (``X-ALPR-Event: alert``), with retries and a record of each
attempt. ``alpr-central device alerts --watch`` follows the events
(:func:`events_after`), each user seeing only the devices the registry lets
them see.

Nothing here holds plate data: device and camera ids, kinds, messages. Ended
alerts are deleted ``keep_days`` after they ended, with their events and
deliveries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from pathlib import Path

from ..config import Alerts as AlertsConfig
from ..config import AlertWebhook
from ..errors import PolicyError
from ..governance.audit import parse_ts, transaction, ts, utcnow
from ..hotlist.webhooks import WebhookSender
from .alerts import Alert, Thresholds, all_alerts

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AlertEvent:
    event_id: int
    event: str                   # raised / cleared
    at: dt.datetime
    alert_id: int
    device_id: str
    owner: str
    kind: str
    subject: str
    message: str
    since: dt.datetime | None
    raised_at: dt.datetime
    cleared_at: dt.datetime | None

    def to_doc(self) -> dict:
        return {"event_id": self.event_id, "event": self.event, "at": ts(self.at), "alert_id": self.alert_id,
                "device_id": self.device_id, "owner": self.owner, "kind": self.kind, "subject": self.subject,
                "message": self.message, "since": ts(self.since) if self.since else None,
                "raised_at": ts(self.raised_at), "cleared_at": ts(self.cleared_at) if self.cleared_at else None}


_EVENT_SQL = ("SELECT e.event_id, e.event, e.at, a.alert_id, a.device_id, a.owner, a.kind, a.subject, a.message, "
              "a.since, a.raised_at, a.cleared_at FROM alert_events e JOIN device_alerts a USING (alert_id) ")


def _event(row) -> AlertEvent:
    return AlertEvent(row[0], row[1], parse_ts(row[2]), row[3], row[4], row[5], row[6], row[7], row[8],
                      parse_ts(row[9]) if row[9] else None, parse_ts(row[10]), parse_ts(row[11]) if row[11] else None)


def events_after(conn, event_id: int, *, limit: int = 500) -> list[AlertEvent]:
    """Events after ``event_id``, oldest first (the caller filters by what the user may see)."""
    return [_event(r) for r in conn.execute(_EVENT_SQL + "WHERE e.event_id > ? ORDER BY e.event_id LIMIT ?",
                                            [event_id, limit]).fetchall()]


def last_event_id(conn) -> int:
    return conn.execute("SELECT coalesce(max(event_id), 0) FROM alert_events").fetchone()[0]


def open_alerts(conn) -> list[AlertEvent]:
    """Every open episode, as its ``raised`` event."""
    return [_event(r) for r in conn.execute(_EVENT_SQL + "WHERE a.cleared_at IS NULL AND e.event = 'raised' "
                                            "ORDER BY e.event_id").fetchall()]


def last_check(conn) -> tuple[dt.datetime, float] | None:
    """When the feed last evaluated the alerts, and how often it does; None: never."""
    row = conn.execute("SELECT checked_at, check_seconds FROM alert_monitor WHERE id = 1").fetchone()
    return (parse_ts(row[0]), float(row[1])) if row else None


def _wants(hook: AlertWebhook, owner: str, kind: str) -> bool:
    return (not hook.owner or hook.owner == owner) and (not hook.kinds or kind in hook.kinds)


class AlertFeed:
    """Evaluates, records and queues alerts; :meth:`run` in its own thread."""

    def __init__(self, path: str | Path, cfg: AlertsConfig = AlertsConfig(), *, clock=utcnow) -> None:
        """``path``: the SQLite file or a ``postgresql://`` URL (``cfg.store.database``)."""
        from .registry import Registry
        self.cfg = cfg
        self.thresholds = Thresholds.from_config(cfg)
        self.senders = [AlertSender(path, hook, clock=clock) for hook in cfg.webhooks]  # ConfigError: bad secret
        self.registry = Registry(path, clock=clock)
        self.conn = self.registry.db
        self._clock = clock
        self.started_at = clock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def check(self) -> tuple[list[int], list[int]]:
        """One evaluation: returns the alert ids raised and cleared."""
        now = self._clock()
        current = {a.key: a for a in all_alerts(self.registry, self.conn, self.thresholds, clock=lambda: now)}
        # Central itself was down (no heartbeats were received): a device is not offline
        # until it has had offline_minutes to be heard from since this feed started.
        settling = now - self.started_at < dt.timedelta(minutes=self.thresholds.offline_minutes)
        raised, cleared = [], []
        with transaction(self.conn):
            open_rows = {(r[1], r[2], r[3]): r[0] for r in self.conn.execute(
                "SELECT alert_id, device_id, kind, subject FROM device_alerts WHERE cleared_at IS NULL")}
            for key, alert in current.items():
                if settling and alert.kind == "offline" and key not in open_rows:
                    continue
                if key in open_rows:
                    self.conn.execute("UPDATE device_alerts SET message = ? WHERE alert_id = ?",
                                      [alert.message, open_rows[key]])
                else:
                    raised.append(self._record_raised(alert, now))
            for key, alert_id in sorted(open_rows.items(), key=lambda kv: kv[1]):  # oldest first
                if key not in current:
                    self.conn.execute("UPDATE device_alerts SET cleared_at = ? WHERE alert_id = ?", [ts(now), alert_id])
                    self._event(alert_id, "cleared", now)
                    cleared.append(alert_id)
            self.conn.execute("INSERT INTO alert_monitor (id, checked_at, check_seconds) VALUES (1, ?, ?) "
                              "ON CONFLICT(id) DO UPDATE SET checked_at = excluded.checked_at, "
                              "check_seconds = excluded.check_seconds", [ts(now), self.cfg.check_seconds])
            self._prune(now)
        if raised or cleared:
            logger.info("alerts: %d raised, %d cleared", len(raised), len(cleared))
            for s in self.senders:
                s.wakeup.set()
        return raised, cleared

    def _record_raised(self, alert: Alert, now: dt.datetime) -> int:
        cur = self.conn.execute(
            "INSERT INTO device_alerts (device_id, owner, kind, subject, message, since, raised_at) "
            "VALUES (?,?,?,?,?,?,?)", [alert.device_id, alert.owner, alert.kind, alert.subject, alert.message,
                                       ts(alert.since) if alert.since else None, ts(now)])
        self._event(cur.lastrowid, "raised", now, alert)
        return cur.lastrowid

    def _event(self, alert_id: int, event: str, now: dt.datetime, alert: Alert | None = None) -> None:
        cur = self.conn.execute("INSERT INTO alert_events (alert_id, event, at) VALUES (?,?,?)",
                                [alert_id, event, ts(now)])
        if alert is None:
            owner, kind = self.conn.execute("SELECT owner, kind FROM device_alerts WHERE alert_id = ?",
                                            [alert_id]).fetchone()
        else:
            owner, kind = alert.owner, alert.kind
        for s in self.senders:
            if _wants(s.hook, owner, kind):
                self.conn.execute("INSERT INTO alert_deliveries (event_id, endpoint, status, next_at, created_at) "
                                  "VALUES (?,?,'pending',?,?)", [cur.lastrowid, s.hook.name, ts(now), ts(now)])

    def _prune(self, now: dt.datetime) -> None:
        old = "SELECT alert_id FROM device_alerts WHERE cleared_at IS NOT NULL AND cleared_at < ?"
        events = f"SELECT event_id FROM alert_events WHERE alert_id IN ({old})"
        deliveries = f"SELECT delivery_id FROM alert_deliveries WHERE event_id IN ({events})"
        cutoff = [ts(now - dt.timedelta(days=self.cfg.keep_days))]
        self.conn.execute(f"DELETE FROM alert_attempts WHERE delivery_id IN ({deliveries})", cutoff)
        self.conn.execute(f"DELETE FROM alert_deliveries WHERE event_id IN ({events})", cutoff)
        self.conn.execute(f"DELETE FROM alert_events WHERE alert_id IN ({old})", cutoff)
        self.conn.execute(f"DELETE FROM device_alerts WHERE alert_id IN ({old})", cutoff)

    def run(self, stop: threading.Event) -> None:
        while True:
            try:
                self.check()
            except Exception:
                logger.exception("alerts: evaluation failed; trying again in %.0fs", self.cfg.check_seconds)
            if stop.wait(self.cfg.check_seconds):
                return

    def start(self) -> "AlertFeed":
        self._threads = [threading.Thread(target=self.run, args=(self._stop,), name="alert-feed", daemon=True)]
        self._threads += [threading.Thread(target=s.run, args=(self._stop,), name=f"alert-webhook-{s.hook.name}",
                                           daemon=True) for s in self.senders]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for s in self.senders:
            s.wakeup.set()
        for t in self._threads:
            t.join(timeout=timeout)
        self.registry.close()


class AlertSender(WebhookSender):
    """The hotlist webhook sender (signature, retries, attempt records)
    delivering alert events from ``alert_deliveries``."""

    event = "alert"
    deliveries = "alert_deliveries"
    attempts_table = "alert_attempts"
    subject = "event_id"

    def payload(self, event_id: int) -> dict:
        row = self.conn.execute(_EVENT_SQL + "WHERE e.event_id = ?", [event_id]).fetchone()
        if row is None:
            raise PolicyError("the alert was pruned")
        return {"type": "alert", **_event(row).to_doc()}
