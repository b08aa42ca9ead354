"""The alerts page: what needs attention in the fleet, as ``alpr-central run``
records it (:mod:`central.fleet.alert_feed`: each alert once when raised,
once when cleared): the open alerts and the latest changes, of the devices
the user may see (admins, auditors, field techs: all; a business: its own),
and whether anything is evaluating alerts at all."""

from __future__ import annotations

from ..fleet.alert_feed import events_after, last_check, last_event_id, open_alerts
from ..governance.users import User
from .backend import Backend

RECENT = 50   # changes shown below the open alerts


def alerts(b: Backend, user: User, params) -> dict:
    visible = {d.device_id: d.owner for d in b.registry.list_devices(user)}   # DEVICE_HEALTH_ALL, or its own
    now = b.now()
    open_now = [e.to_doc() for e in open_alerts(b.conn) if e.device_id in visible]
    last = last_event_id(b.conn)
    # The latest changes: a window of the log, newest first (a business sees only its devices' among them).
    recent = [e.to_doc() for e in reversed(events_after(b.conn, max(0, last - 20 * RECENT), limit=20 * RECENT))
              if e.device_id in visible][:RECENT]
    checked = last_check(b.conn)
    stale = checked is None or (now - checked[0]).total_seconds() > 3 * checked[1] + 5
    return {"open": open_now, "recent": recent, "devices": len(visible),
            "checked_at": checked[0] if checked else None, "check_seconds": checked[1] if checked else None,
            "evaluating": not stale}
