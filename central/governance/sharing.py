"""Sharing under Civil Code 1798.90.55(b): a registry of agreements, requests
approved by a second person, signed export bundles, and the published list
of recipients.

- An **agreement** names the agency, its type (``public-agency``,
  ``federal-agency``, ``commercial``, ...), its jurisdiction (state code), an
  agreement id, effective and expiry dates and the authorized purposes
  (scope). A recipient is eligible only when its type and jurisdiction are in
  config ``[sharing]`` (California public agencies by default) and the
  agreement is in force on the day; otherwise :class:`SharingRefused` says why.
- A **request** records the requesting agency (through its agreement) and
  person, case number, purpose and scope (plates and a capture time range).
  It is entered by an operator or supervisor and approved or denied by a
  supervisor who is not the one who entered it. Eligibility is checked again
  at approval and at export.
- The **export** is a zip bundle (see :mod:`central.governance.bundle`) signed with
  central's Ed25519 key, verifiable offline with the public key alone.
- Every step is written to the access log in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .audit import AccessLog, parse_ts, transaction, ts, utcnow
from .bundle import write_bundle
from ..config import Sharing
from ..store.database import IntegrityError
from ..errors import PolicyError, SharingRefused
from ..config import DEFAULT_CASE_PATTERN
from .search import check_case_number, check_purpose
from ..store import Search, Store
from .users import Permission, User, require

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Agreement:
    agreement_id: str
    agency: str
    agency_type: str
    jurisdiction: str
    effective_on: dt.date
    expires_on: dt.date
    purposes: tuple[str, ...]
    created_by: str
    revoked_at: dt.datetime | None = None

    def in_force(self, day: dt.date) -> bool:
        return self.revoked_at is None and self.effective_on <= day <= self.expires_on


@dataclasses.dataclass(frozen=True)
class ShareRequest:
    request_id: int
    agreement_id: str
    requesting_person: str
    case_number: str
    purpose: str
    plates: tuple[str, ...]
    since: dt.datetime
    until: dt.datetime
    entered_by: str
    entered_at: dt.datetime
    status: str                    # pending | approved | denied | exported
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None
    exported_at: dt.datetime | None
    exported_reads: int | None
    bundle_sha256: str | None


@dataclasses.dataclass(frozen=True)
class Recipient:
    agency: str
    agency_type: str
    jurisdiction: str
    agreement_id: str
    exports: int
    reads: int
    first_shared: str
    last_shared: str


def _agreement(row) -> Agreement:
    aid, agency, atype, juris, eff, exp, scope, by, _at, revoked = row
    return Agreement(aid, agency, atype, juris, dt.date.fromisoformat(eff), dt.date.fromisoformat(exp),
                     tuple(json.loads(scope).get("purposes", [])), by, parse_ts(revoked) if revoked else None)


def _request(row) -> ShareRequest:
    (rid, aid, person, case, purpose, plates, since, until, eby, eat, status, dby, dat, note, xat, xn, sha) = row
    return ShareRequest(rid, aid, person, case, purpose, tuple(json.loads(plates)), parse_ts(since),
                        parse_ts(until), eby, parse_ts(eat), status, dby, parse_ts(dat) if dat else None, note,
                        parse_ts(xat) if xat else None, xn, sha)


class SharingRegistry:
    def __init__(self, conn: sqlite3.Connection, settings: Sharing = Sharing(), *,
                 purposes: tuple[str, ...], clock=utcnow, case_number_pattern: str = DEFAULT_CASE_PATTERN) -> None:
        self.conn = conn
        self.case_number_pattern = case_number_pattern
        self.settings = settings
        self.purposes = purposes
        self._clock = clock
        self.log = AccessLog(conn, clock=clock)

    def _log(self, actor: User, action: str, **kw) -> None:
        self.log.append(user=actor.name, organization=actor.organization, action=action, **kw)

    # -- agreements --------------------------------------------------------------
    def add_agreement(self, actor: User, *, agreement_id: str, agency: str, agency_type: str, jurisdiction: str,
                      effective_on: dt.date, expires_on: dt.date, purposes: tuple[str, ...] = ()) -> Agreement:
        require(actor, Permission.MANAGE_AGREEMENTS)
        if not agreement_id or not agency or not agency_type or not jurisdiction:
            raise PolicyError("an agreement names its id, agency, agency type and jurisdiction")
        if expires_on < effective_on:
            raise PolicyError("an agreement expires after it takes effect")
        for p in purposes:
            check_purpose(p, self.purposes, PolicyError)
        scope = {"purposes": sorted(set(purposes or self.purposes))}
        with transaction(self.conn):
            try:
                self.conn.execute("INSERT INTO agreements VALUES (?,?,?,?,?,?,?,?,?,?)",
                                  [agreement_id, agency, agency_type, jurisdiction.upper(), effective_on.isoformat(),
                                   expires_on.isoformat(), json.dumps(scope), actor.name, ts(self._clock()), None])
            except IntegrityError:
                raise PolicyError(f"agreement {agreement_id} exists already") from None
            self._log(actor, "agreement-add", detail={"agreement": agreement_id, "agency": agency,
                                                      "agency_type": agency_type, "jurisdiction": jurisdiction})
        return self.agreement(agreement_id)

    def revoke_agreement(self, actor: User, agreement_id: str) -> Agreement:
        require(actor, Permission.MANAGE_AGREEMENTS)
        with transaction(self.conn):
            self.agreement(agreement_id)
            self.conn.execute("UPDATE agreements SET revoked_at = ? WHERE agreement_id = ? AND revoked_at IS NULL",
                              [ts(self._clock()), agreement_id])
            self._log(actor, "agreement-revoke", detail={"agreement": agreement_id})
        return self.agreement(agreement_id)

    def agreement(self, agreement_id: str) -> Agreement:
        row = self.conn.execute("SELECT * FROM agreements WHERE agreement_id = ?", [agreement_id]).fetchone()
        if row is None:
            raise SharingRefused(f"no agreement {agreement_id!r}: agencies without an agreement may not receive data")
        return _agreement(row)

    def agreements(self) -> list[Agreement]:
        return [_agreement(r) for r in self.conn.execute("SELECT * FROM agreements ORDER BY agreement_id")]

    def check_eligible(self, agreement_id: str, *, purpose: str | None = None, day: dt.date | None = None) -> Agreement:
        """The agreement if its agency may receive data today, else
        :class:`SharingRefused` with the reason."""
        a = self.agreement(agreement_id)
        day = day or self._clock().date()
        if a.agency_type not in self.settings.eligible_agency_types:
            kind = "a commercial entity" if a.agency_type in ("commercial", "private") else f"a {a.agency_type}"
            raise SharingRefused(f"{a.agency} is {kind}; data may be shared only with: "
                                 f"{', '.join(self.settings.eligible_agency_types)} (Civ. Code 1798.90.55(b); "
                                 "ALPR data is never sold)")
        if a.jurisdiction not in self.settings.eligible_jurisdictions:
            raise SharingRefused(f"{a.agency} is out of state ({a.jurisdiction}); eligible jurisdictions: "
                                 f"{', '.join(self.settings.eligible_jurisdictions)}")
        if a.revoked_at is not None:
            raise SharingRefused(f"agreement {a.agreement_id} with {a.agency} was revoked")
        if day < a.effective_on:
            raise SharingRefused(f"agreement {a.agreement_id} takes effect on {a.effective_on}")
        if day > a.expires_on:
            raise SharingRefused(f"agreement {a.agreement_id} with {a.agency} expired on {a.expires_on}")
        if purpose is not None and purpose not in a.purposes:
            raise SharingRefused(f"purpose {purpose!r} is outside agreement {a.agreement_id} "
                                 f"(allowed: {', '.join(a.purposes)})")
        return a

    # -- requests ----------------------------------------------------------------
    def request(self, actor: User, *, agreement_id: str, requesting_person: str, case_number: str, purpose: str,
                plates: tuple[str, ...] | list[str], since: dt.datetime, until: dt.datetime) -> ShareRequest:
        require(actor, Permission.REQUEST_SHARE)
        check_purpose(purpose, self.purposes, PolicyError)
        check_case_number(case_number, PolicyError, self.case_number_pattern)
        if not requesting_person:
            raise PolicyError("name the person at the requesting agency")
        if since > until:
            raise PolicyError("since is after until")
        norm = sorted({"".join(ch for ch in p.upper() if ch.isalnum()) for p in plates} - {""})
        if not norm:
            raise PolicyError("a request names the plates it is about (no bulk exports)")
        try:
            self.check_eligible(agreement_id, purpose=purpose)
        except SharingRefused as exc:
            self._log(actor, "share-refused", purpose=purpose, case_number=case_number,
                      detail={"agreement": agreement_id, "reason": str(exc)})
            raise
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO share_requests (agreement_id, requesting_person, case_number, purpose, plates, since, "
                "until, entered_by, entered_at, status) VALUES (?,?,?,?,?,?,?,?,?, 'pending')",
                [agreement_id, requesting_person, case_number, purpose, json.dumps(norm), ts(since), ts(until),
                 actor.name, ts(self._clock())])
            self._log(actor, "share-request", purpose=purpose, case_number=case_number,
                      detail={"request": cur.lastrowid, "agreement": agreement_id, "requesting_person":
                              requesting_person, "plates": norm, "since": ts(since), "until": ts(until)})
        return self.get(cur.lastrowid)

    def get(self, request_id: int) -> ShareRequest:
        row = self.conn.execute("SELECT * FROM share_requests WHERE request_id = ?", [request_id]).fetchone()
        if row is None:
            raise PolicyError(f"no sharing request {request_id}")
        return _request(row)

    def requests(self, status: str | None = None) -> list[ShareRequest]:
        sql, args = "SELECT * FROM share_requests", []
        if status:
            sql, args = sql + " WHERE status = ?", [status]
        return [_request(r) for r in self.conn.execute(sql + " ORDER BY request_id", args).fetchall()]

    def decide(self, actor: User, request_id: int, *, approve: bool, note: str = "") -> ShareRequest:
        require(actor, Permission.APPROVE_SHARE)
        req = self.get(request_id)
        if req.status != "pending":
            raise PolicyError(f"request {request_id} is {req.status}, not pending")
        if req.entered_by == actor.name:
            self._log(actor, "share-refused", purpose=req.purpose, case_number=req.case_number,
                      detail={"request": request_id, "reason": "self-approval"})
            raise PolicyError(f"request {request_id}: a supervisor other than the one who entered it must decide")
        if approve:
            try:
                self.check_eligible(req.agreement_id, purpose=req.purpose)
            except SharingRefused as exc:
                self._log(actor, "share-refused", purpose=req.purpose, case_number=req.case_number,
                          detail={"request": request_id, "reason": str(exc)})
                raise
        with transaction(self.conn):
            cur = self.conn.execute("UPDATE share_requests SET status = ?, decided_by = ?, decided_at = ?, "
                                    "decision_note = ? WHERE request_id = ? AND status = 'pending'",
                                    ["approved" if approve else "denied", actor.name, ts(self._clock()), note,
                                     request_id])
            if cur.rowcount != 1:
                raise PolicyError(f"request {request_id} was decided meanwhile")
            self._log(actor, "share-approve" if approve else "share-deny", purpose=req.purpose,
                      case_number=req.case_number, detail={"request": request_id, "note": note})
        return self.get(request_id)

    def export(self, actor: User, request_id: int, store: Store, out_path: str | Path,
               signing_key: Ed25519PrivateKey, *, include_images: bool = True) -> ShareRequest:
        """Write the signed bundle of an approved request; one export per request."""
        require(actor, Permission.EXPORT_SHARE)
        req = self.get(request_id)
        if req.status != "approved":
            raise PolicyError(f"request {request_id} is {req.status}; only approved requests are exported")
        try:
            agreement = self.check_eligible(req.agreement_id, purpose=req.purpose)
        except SharingRefused as exc:
            self._log(actor, "share-refused", purpose=req.purpose, case_number=req.case_number,
                      detail={"request": request_id, "reason": str(exc)})
            raise
        reads = []
        for plate in req.plates:
            reads.extend(r.read for r in store.search(Search(plate=plate, since=req.since, until=req.until,
                                                             limit=self.settings.max_reads_per_export)))
        now = self._clock()
        manifest = {
            "request_id": req.request_id, "case_number": req.case_number, "purpose": req.purpose,
            "recipient": {"agency": agreement.agency, "agency_type": agreement.agency_type,
                          "jurisdiction": agreement.jurisdiction, "agreement_id": agreement.agreement_id},
            "requesting_person": req.requesting_person, "entered_by": req.entered_by,
            "approved_by": req.decided_by, "exported_by": actor.name, "exported_at": ts(now),
            "scope": {"plates": list(req.plates), "since": ts(req.since), "until": ts(req.until)},
        }
        out_path = Path(out_path)
        write_bundle(out_path, manifest, reads, signing_key, include_images=include_images)
        digest = hashlib.sha256(out_path.read_bytes()).hexdigest()
        with transaction(self.conn):
            cur = self.conn.execute("UPDATE share_requests SET status = 'exported', exported_at = ?, "
                                    "exported_reads = ?, bundle_sha256 = ? WHERE request_id = ? AND "
                                    "status = 'approved'", [ts(now), len(reads), digest, request_id])
            if cur.rowcount != 1:
                out_path.unlink(missing_ok=True)
                raise PolicyError(f"request {request_id} was exported meanwhile")
            self._log(actor, "share-export", purpose=req.purpose, case_number=req.case_number,
                      detail={"request": request_id, "agreement": agreement.agreement_id,
                              "recipient": agreement.agency, "bundle_sha256": digest}, result_count=len(reads))
        logger.info("exported request %s: %d reads", request_id, len(reads))
        return self.get(request_id)

    # -- published list ----------------------------------------------------------
    def recipients(self, actor: User | None = None, *, since: dt.datetime | None = None,
                   until: dt.datetime | None = None) -> list[Recipient]:
        """Entities data was shared with (exports), for the published policy."""
        if actor is not None:
            require(actor, Permission.READ_REPORTS)
        rows = self.conn.execute(
            "SELECT a.agency, a.agency_type, a.jurisdiction, a.agreement_id, count(*), "
            "coalesce(sum(s.exported_reads), 0), min(s.exported_at), max(s.exported_at) "
            "FROM share_requests s JOIN agreements a USING (agreement_id) "
            "WHERE s.status = 'exported' AND s.exported_at >= ? AND s.exported_at < ? "
            "GROUP BY a.agreement_id ORDER BY a.agency",
            [ts(since) if since else "", ts(until) if until else "9999"]).fetchall()
        return [Recipient(*r[:6], r[6][:10], r[7][:10]) for r in rows]
