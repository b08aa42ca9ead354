"""Field techs', admins' and businesses' pages over :mod:`central.fleet.registry`:
the fleet (status, last seen, last read, certificate expiry), enrollment
tokens, and a business's own window (its cameras' health, its agreement's
terms, how its cameras' data was shared, withdrawal). The registry checks the
user on every call; a business user only ever reaches its own devices."""

from __future__ import annotations

import datetime as dt
import json
import logging

from ..errors import ConfigError, PolicyError, QueryError
from ..fleet.activity import read_activity
from ..fleet.device_audit import last_received
from ..fleet.device_status import connection_status
from ..fleet.health import latest_health
from ..fleet.registry import DEPARTMENT, CameraSpec
from ..governance.audit import ts
from ..governance.users import Permission, User, require
from . import geomap
from .backend import Backend, relative

logger = logging.getLogger(__name__)
ONLINE_WITHIN = dt.timedelta(minutes=15)


def _device_row(b: Backend, d, now: dt.datetime) -> dict:
    activity = read_activity(b.conn, d, now)
    last_read, last_stored = activity.last_captured_at, activity.last_stored_at
    seen = max([t for t in (last_stored, last_received(b.conn, d.device_id)) if t], default=None)
    conn = connection_status(b.conn, d.device_id)   # the broker's retained online/offline, if heard
    if conn is not None:
        online = d.status == "active" and conn.status == "online"
    else:  # no status from the broker yet: judged by when central last heard from it
        online = d.status == "active" and seen is not None and now - seen <= ONLINE_WITHIN
    days = (d.cert_expires_at - now).days if d.cert_expires_at else None
    health = latest_health(b.conn, d.device_id)     # the last heartbeat, if the device has sent one
    return _health_fields(health) | _audit_state(b, d.device_id) | _config_state(b, d.device_id) | {"device_id": d.device_id, "owner": d.owner, "location": d.location, "status": d.status,
            "status_reason": d.status_reason, "cameras": [c.id for c in d.cameras],
            "online": online, "last_seen": seen, "last_read": last_read,
            "connection": conn.status if conn else None, "connection_since": conn.since if conn else None,
            "cert_expires_at": d.cert_expires_at, "cert_days_left": days,
            "cert_warning": days is not None and days < 30,
            "latitude": d.latitude, "longitude": d.longitude}


def _audit_state(b: Backend, device_id: str) -> dict:
    """What central holds of the device's signed audit log, from the sequence
    numbers alone (cheap for a whole fleet): records, the seq range, when the
    last arrived, and how many seqs in the range are missing. Signatures and
    the chain are verified on the auditor's Device logs page."""
    n, first, last, at = b.conn.execute(
        "SELECT count(*), min(seq), max(seq), max(received_at) FROM device_audit WHERE device_id = ?",
        [device_id]).fetchone()
    if not n:
        return {"audit_records": 0, "audit_range": None, "audit_missing": None, "audit_last_at": None}
    missing = (last - first + 1 - n) + (first - 1)  # gaps inside the range, and records before the first held
    return {"audit_records": n, "audit_range": f"{first}-{last}", "audit_missing": missing,
            "audit_last_at": dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)}


def _config_state(b: Backend, device_id: str) -> dict:
    """Remote configuration (central/fleet/remote_config.py): the newest
    version pushed and what the device reports it runs."""
    pushed = b.conn.execute("SELECT MAX(version) FROM device_configs WHERE device_id = ?", [device_id]).fetchone()[0]
    row = b.conn.execute("SELECT applied_version, state, offered_version, reason FROM device_config_state "
                         "WHERE device_id = ?", [device_id]).fetchone()
    return {"config_pushed": pushed, "config_applied": row[0] if row else None,
            "config_state": row[1] if row else None, "config_reason": row[3] if row else None}


def _health_fields(latest) -> dict:
    """Camera errors, buffer and versions from the last heartbeat (None: not reported)."""
    if latest is None:
        return {"camera_errors": None, "buffer": None, "versions": None, "health_at": None}
    h = latest.health
    errors = "; ".join(f"{c.id}: {c.errors} errors" + (f" ({c.last_error})" if c.last_error else "")
                       + (f", tamper: {', '.join(c.tamper)}" if c.tamper else "")
                       for c in h.cameras if c.errors or c.last_error or c.tamper) or "none"
    oldest = "" if h.buffer_depth == 0 or h.buffer_oldest_age_days is None else \
        f", oldest {h.buffer_oldest_age_days} days"
    return {"camera_errors": errors, "buffer": f"{h.buffer_depth} reads{oldest}",
            "versions": f"agent {h.agent_version}, model {h.model_version or '-'}", "health_at": latest.received_at}


def _update_fields(b: Backend, device_id: str) -> dict:
    """The device's application update, if central offered one (central/fleet/rollout.py)."""
    row = b.conn.execute("SELECT rollout_id, version, state, reason, state_at FROM device_updates WHERE device_id=?",
                         [device_id]).fetchone()
    if row is None:
        return {"update_state": None, "update_reason": "", "update_at": None}
    at = dt.datetime.strptime(row[4], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return {"update_state": f"{row[1]} {row[2]} (rollout {row[0]})", "update_reason": row[3], "update_at": at}


def _ca(b: Backend):
    from ..fleet.ca import CertificateAuthority, read_passphrase
    try:
        return CertificateAuthority.load(b.cfg.ca.key_file, b.cfg.ca.cert_file,
                                         read_passphrase(b.cfg.ca.passphrase_file or None))
    except (OSError, ValueError, ConfigError) as exc:
        raise PolicyError(f"central's CA cannot be loaded ({exc}); run 'alpr-central ca init'") from None


def _map(b: Backend, rows: list[dict], title: str):
    points = [geomap.Point(r["latitude"], r["longitude"], r["device_id"],
                           "camera" if r["online"] else "offline", f"#dev-{r['device_id']}")
              for r in rows if r["latitude"] is not None]
    return geomap.render(points, tile_url=b.cfg.console.tile_url, title=title)


def fleet(b: Backend, user: User, params) -> dict:
    devices = b.registry.list_devices(user)          # DEVICE_HEALTH_ALL, or a business's own
    now = b.now()
    rows = [_device_row(b, d, now) for d in devices]
    if user.can(Permission.VIEW_RELEASES):  # admins, auditors, field techs: how each device's update went
        rows = [r | _update_fields(b, r["device_id"]) for r in rows]
    return {"devices": rows, "online": sum(r["online"] for r in rows), "total": len(rows),
            "online_within_minutes": int(ONLINE_WITHIN.total_seconds() // 60),
            "_map": _map(b, rows, "Cameras: online (green), offline (grey)")}


def enrollment(b: Backend, user: User, params) -> dict:
    tokens = b.registry.pending_tokens(user)        # ENROLL or DEVICE_HEALTH_ALL
    owners = [DEPARTMENT]
    if user.can(Permission.DEVICE_HEALTH_ALL):
        owners += [x.business_id for x in b.registry.businesses(user) if x.status == "active"]
    return {"tokens": tokens, "owners": owners, "can_enroll": user.can(Permission.ENROLL),
            "max_hours": b.cfg.enrollment.max_token_hours}


def create_enrollment(b: Backend, user: User, params) -> dict:
    require(user, Permission.ENROLL)
    from ..fleet.enrollment import Token, ca_pin
    ttl = relative(params.get("expires") or "24h")
    if ttl > dt.timedelta(hours=b.cfg.enrollment.max_token_hours):
        raise QueryError(f"expires: at most {b.cfg.enrollment.max_token_hours} h")
    specs = [c.strip() for c in (params.get("cameras") or "").replace("\n", ",").split(",") if c.strip()]
    try:
        cams = [CameraSpec.parse(c) for c in specs]
        coords = [float(params[k]) if params.get(k) else None for k in ("latitude", "longitude")]
    except ValueError as exc:
        raise QueryError(f"camera or position: {exc}") from None
    ca = _ca(b)
    new = b.registry.create_enrollment(owner=params.get("owner") or DEPARTMENT, cameras=cams,
                                       location=(params.get("location") or "").strip(), ttl=ttl, user=user,
                                       device_id=(params.get("device_id") or "").strip() or None,
                                       latitude=coords[0], longitude=coords[1])
    out = enrollment(b, user, params)
    out["new"] = {"device_id": new.device.device_id, "expires_at": new.expires_at,
                  "token": str(Token(new.token_id, new.secret, ca_pin(ca.cert_pem))),
                  "central": f"https://{b.cfg.enrollment.server_names[0]}:{b.cfg.enrollment.port}"}
    return out


def business(b: Backend, user: User, params) -> dict:
    """A business's own window; admins and auditors may name one (``business``)."""
    owner = params.get("business") or user.organization
    health = b.registry.health(user, owner)          # refuses anyone else's business
    biz = b.registry.business(owner)
    now = b.now()
    rows = [_device_row(b, b.registry.device(h.device_id), now) | {"reads_last_24h": h.reads_last_24h}
            for h in health]
    shared = b.conn.execute(
        "SELECT s.request_id, a.agency, a.agency_type, s.purpose, s.case_number, s.exported_at, s.plates, s.since, "
        "s.until FROM share_requests s JOIN agreements a USING (agreement_id) WHERE s.status = 'exported' "
        "ORDER BY s.exported_at DESC").fetchall()
    ids = [r["device_id"] for r in rows]
    sharing = []
    for rid, agency, atype, purpose, case, at, plates, since, until in shared:
        n = 0
        if ids:
            marks = ",".join("?" * len(ids))
            pl = json.loads(plates)
            n = b.conn.execute(f"SELECT count(*) FROM reads WHERE device_id IN ({marks}) AND plate IN "
                               f"({','.join('?' * len(pl))}) AND captured_at >= ? AND captured_at <= ?",
                               [*ids, *pl, since, until]).fetchone()[0] if pl else 0
        if n:
            sharing.append({"request_id": rid, "agency": agency, "agency_type": atype, "purpose": purpose,
                            "case_number": case, "exported_at": at, "reads_from_your_cameras": n})
    return {"business": {"business_id": biz.business_id, "name": biz.name, "status": biz.status,
                         "mou_id": biz.mou_id, "shared_data": biz.terms.shared_data,
                         "share_with": biz.terms.share_with, "retention_days": biz.terms.retention_days,
                         "consent_at": biz.consent_at, "withdrawn_at": biz.withdrawn_at,
                         "contact_name": biz.contact_name, "contact_email": biz.contact_email},
            "devices": rows, "sharing": sharing, "can_withdraw": biz.status == "active",
            "_map": _map(b, rows, f"{biz.name}'s cameras")}


def withdraw(b: Backend, user: User, params) -> dict:
    owner = params.get("business") or user.organization
    if (params.get("confirm") or "").strip() != owner:
        raise QueryError(f"to withdraw, type the business id ({owner}) in the confirmation box")
    suspended = b.registry.withdraw_business(owner, user=user, reason=(params.get("reason") or
                                                                        "business withdrew (console)")[:200])
    from ..fleet import broker as broker_mod
    try:  # the collector refuses the suspended devices' reads already; the broker ACL follows
        pid = broker_mod.refresh(b.cfg.broker.dir, b.cfg.broker.pid_file or None, b.registry.active_device_ids(),
                                 _ca(b).crl(b.registry.revoked_certificates()), b.cfg.mqtt.topic_prefix)
        broker = "broker reloaded" if pid else "broker ACL rewritten; the administrator reloads the broker"
    except (OSError, ValueError, PolicyError) as exc:
        logger.warning("business %s withdrew; broker ACL not rewritten: %s", owner, exc)
        broker = "the administrator rewrites the broker ACL (alpr-central broker reload)"
    return {"withdrawn": owner, "suspended": suspended, "at": ts(b.now()), "broker": broker}
