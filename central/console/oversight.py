"""Supervisors' and auditors' pages: approvals of legal holds and sharing
requests, account review, the access log with its verification, device audit
logs, the sharing record and transparency reports. Each checks the user's
permission here (or in the governance call it makes), for page and API alike."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from ..errors import QueryError
from ..fleet.device_audit import last_received, verify_device
from ..governance import report as report_mod
from ..governance.audit import AccessLog, verify
from ..governance.retention import Governor
from ..governance.sharing import SharingRegistry
from ..governance.users import Permission, User, UserDirectory, require
from .backend import Backend, page_number, when


def _any(user: User, *permissions: Permission) -> User:
    if not any(user.can(p) for p in permissions):
        require(user, permissions[0])  # raises, naming the role
    return user


def _sharing(b: Backend) -> SharingRegistry:
    return SharingRegistry(b.conn, b.cfg.sharing, purposes=b.cfg.query.purposes, clock=b.clock)


# -- supervisor ---------------------------------------------------------------------
def approvals(b: Backend, user: User, params) -> dict:
    _any(user, Permission.APPROVE_HOLD, Permission.APPROVE_SHARE)
    holds = [h for h in Governor(b.conn, b.cfg.retention, clock=b.clock).holds() if h.status == "pending"]
    requests = _sharing(b).requests("pending")
    today = b.now().date()
    agreements = {a.agreement_id: a for a in _sharing(b).agreements()}
    return {"holds": [{**_plain_hold(h), "own": h.requested_by == user.name} for h in holds],
            "requests": [{"request_id": r.request_id, "agreement_id": r.agreement_id,
                          "agency": agreements[r.agreement_id].agency if r.agreement_id in agreements else "?",
                          "agreement_in_force": r.agreement_id in agreements and
                          agreements[r.agreement_id].in_force(today),
                          "requesting_person": r.requesting_person, "case_number": r.case_number,
                          "purpose": r.purpose, "plates": list(r.plates), "since": r.since, "until": r.until,
                          "entered_by": r.entered_by, "entered_at": r.entered_at,
                          "own": r.entered_by == user.name} for r in requests]}


def _plain_hold(h) -> dict:
    return {"hold_id": h.hold_id, "case_number": h.case_number, "plates": list(h.plates), "since": h.since,
            "until": h.until, "reason": h.reason, "review_on": h.review_on, "requested_by": h.requested_by,
            "requested_at": h.requested_at, "status": h.status}


def _id(params, name: str) -> int:
    try:
        return int(params.get(name) or "")
    except ValueError:
        raise QueryError(f"{name}: a number") from None


def approve_hold(b: Backend, user: User, params) -> dict:
    hold = Governor(b.conn, b.cfg.retention, clock=b.clock).approve_hold(user, _id(params, "hold_id"))
    return {**approvals(b, user, params), "notice": f"Legal hold {hold.hold_id} approved."}


def decide_share(b: Backend, user: User, params) -> dict:
    decision = params.get("decision")
    if decision not in ("approve", "deny"):
        raise QueryError("decision: approve or deny")
    req = _sharing(b).decide(user, _id(params, "request_id"), approve=decision == "approve",
                             note=(params.get("note") or "").strip()[:500])
    return {**approvals(b, user, params), "notice": f"Sharing request {req.request_id} {req.status}."}


def accounts(b: Backend, user: User, params) -> dict:
    users = UserDirectory(b.conn, clock=b.clock).list(user)   # checks REVIEW_ACCOUNTS / READ_AUDIT
    days = 90
    cutoff = b.now() - dt.timedelta(days=days)
    out = []
    for u in users:
        out.append({"name": u.name, "organization": u.organization, "role": u.role.value, "disabled": u.disabled,
                    "created_at": u.created_at, "last_active_at": u.last_active_at,
                    "inactive": not u.disabled and (u.last_active_at or u.created_at) < cutoff,
                    "has_password": b.auth.has_password(u.name), "locked_until": b.auth.locked(u.name)})
    return {"users": out, "inactive_days": days, "inactive_count": sum(u["inactive"] for u in out)}


# -- auditor ------------------------------------------------------------------------
def audit_log(b: Backend, user: User, params) -> dict:
    require(user, Permission.READ_AUDIT)
    size = 50
    page = page_number(params)
    f = {k: (params.get(k) or "").strip() or None for k in ("user", "purpose", "case", "action")}
    since, until = when(params.get("since"), "from"), when(params.get("until"), "to")
    entries = AccessLog(b.conn).entries(user=f["user"], purpose=f["purpose"], case_number=f["case"],
                                        action=f["action"], since=since, until=until, limit=size + 1,
                                        offset=(page - 1) * size, newest_first=True)
    more = len(entries) > size
    AccessLog(b.conn, clock=b.clock).append(user=user.name, organization=user.organization, action="audit-read",
                                            detail={k: v for k, v in f.items() if v}, result_count=min(len(entries), size))
    keep = {k: v for k, v in params.items() if k in ("user", "purpose", "case", "action", "since", "until") and v}
    return {"filters": {**{k: v or "" for k, v in f.items()}, "since": params.get("since") or "",
                        "until": params.get("until") or ""},
            "purposes": list(b.cfg.query.purposes), "page": page,
            "entries": [{"seq": e.seq, "at": e.at, "user": e.user, "organization": e.organization,
                         "action": e.action, "purpose": e.purpose, "case_number": e.case_number,
                         "detail": e.detail, "result_count": e.result_count} for e in entries[:size]],
            "next": f"?{urlencode({**keep, 'page': page + 1})}" if more else None,
            "previous": f"?{urlencode({**keep, 'page': page - 1})}" if page > 1 else None}


def audit_verify(b: Backend, user: User, params) -> dict:
    require(user, Permission.READ_AUDIT)
    expect = None
    text = (params.get("expect_head") or "").strip()
    if text:
        seq, _, h = text.partition(":")
        if not seq.isdigit() or len(h) != 64:
            raise QueryError("published head: SEQ:HASH as printed by 'alpr-central audit head' or a report")
        expect = (int(seq), h)
    rep = verify(b.conn, expect_head=expect, retention_days=b.cfg.retention.access_log_days, now=b.now())
    AccessLog(b.conn, clock=b.clock).append(user=user.name, organization=user.organization, action="audit-verify",
                                            detail={"ok": rep.ok, "issues": len(rep.issues)},
                                            result_count=rep.entries)
    published = b.conn.execute("SELECT detail FROM audit_log WHERE action = 'report-transparency' "
                               "ORDER BY seq DESC LIMIT 1").fetchone()
    return {"ok": rep.ok, "entries": rep.entries, "head": f"{rep.head_seq}:{rep.head_hash}",
            "expect_head": text, "issues": [{"seq": i.seq, "kind": i.kind, "message": i.message}
                                            for i in rep.issues],
            "last_report": published[0] if published else None}


def device_logs(b: Backend, user: User, params) -> dict:
    require(user, Permission.READ_AUDIT)
    out = []
    for d in b.registry.devices():
        rep = verify_device(b.conn, d.device_id)
        out.append({"device_id": d.device_id, "status": d.status, "ok": rep.ok, "records": rep.records,
                    "first_seq": rep.first_seq, "last_seq": rep.last_seq, "last_received": last_received(
                        b.conn, d.device_id), "issues": [{"seq": i.seq, "kind": i.kind, "message": i.message}
                                                         for i in rep.issues], "notes": list(rep.notes)})
    AccessLog(b.conn, clock=b.clock).append(user=user.name, organization=user.organization, action="audit-device",
                                            detail={"devices": len(out), "ok": sum(d["ok"] for d in out)},
                                            result_count=len(out))
    return {"devices": out}


def sharing_record(b: Backend, user: User, params) -> dict:
    require(user, Permission.READ_REPORTS)
    s = _sharing(b)
    today = b.now().date()
    return {"agreements": [{"agreement_id": a.agreement_id, "agency": a.agency, "agency_type": a.agency_type,
                            "jurisdiction": a.jurisdiction, "effective_on": a.effective_on,
                            "expires_on": a.expires_on, "purposes": list(a.purposes), "in_force": a.in_force(today)}
                           for a in s.agreements()],
            "requests": [{"request_id": r.request_id, "agreement_id": r.agreement_id, "case_number": r.case_number,
                          "purpose": r.purpose, "plates": len(r.plates), "status": r.status,
                          "entered_by": r.entered_by, "decided_by": r.decided_by, "exported_at": r.exported_at,
                          "exported_reads": r.exported_reads} for r in s.requests()],
            "recipients": s.recipients(user)}


def report(b: Backend, user: User, params) -> dict:
    require(user, Permission.READ_REPORTS)
    period = (params.get("period") or "").strip()
    if not period:
        now = b.now()
        q = (now.month - 1) // 3
        period = f"{now.year - 1}-Q4" if q == 0 else f"{now.year}-Q{q}"   # the last full quarter
    try:
        start, end = report_mod.parse_period(period)
    except ValueError as exc:
        raise QueryError(f"period: {exc}") from None
    if start > b.now():
        raise QueryError("period: that period has not begun")
    return {"period": period, "report": report_mod.build(b.conn, b.cfg, user, period, start, end, now=b.now())}

