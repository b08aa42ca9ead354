"""Hits, the verify-before-action workflow, and the live event stream.

Every hit starts ``unverified``. A person with ``verify-hits`` (operator,
supervisor) records, in this order:

1. the **visual check** (:meth:`HitBook.check_image`): the image shows the
   listed plate (``yes``), or it is a misread, with the text the image really
   shows; either way the crop and its true text (the listed plate, or the
   corrected text) join the labelled set for site adaptation
   (:mod:`central.governance.labels`; an example goes with its read);
2. the **source check** (:meth:`HitBook.check_source`), after a ``yes``
   visual check: the entry is still current with its source (``yes``) or it
   is no longer wanted;
3. the **disposition** (:meth:`HitBook.dispose`): ``dispatched`` (only when
   both checks said yes: the hit is *actionable*), ``no-action``,
   ``misread`` (only after a misread visual check), ``stale-entry`` (only
   after the source said no longer wanted), ``duplicate``.

Each step names the user and the time and is written to the access log in
the same transaction. A later, better read of the hit's pass upgrades a hit
nobody has checked yet and is only noted on one that a person has (see
:mod:`.matcher`); :attr:`Hit.upgrades` lists them. ``view-hits`` (operator, supervisor, auditor) reads
hits; viewing is logged. Admins and business users see no hits.

**Event stream** (for the browser console's server-sent events)::

    book = HitBook(conn)
    for event in book.sse(user, last_event_id, stop):   # str chunks
        response.write(event)

:meth:`HitBook.after` returns the hits with an id above a given one (ids only
grow: ``AUTOINCREMENT``); :meth:`HitBook.follow` yields them as they come,
polling; :meth:`HitBook.sse` formats them as ``text/event-stream`` (``id:``
is the hit id, so a reconnecting browser's ``Last-Event-ID`` resumes where it
stopped; ``event: hit``; ``data:`` the JSON of :meth:`Hit.as_dict` without
images; a ``: keep-alive`` comment every 15 s; ``event: hit-upgraded``, with
no id, when a hit moves to a better read of its pass). Opening a stream is logged
once (``hits-watch``); an open stream ends within 10 s once its user is
disabled or loses ``view-hits``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator

from ..errors import PolicyError
from ..governance import labels
from ..store.database import dialect
from ..governance.audit import AccessLog, parse_ts, transaction, ts, utcnow
from ..governance.users import ROLE_PERMISSIONS, Permission, Role, User, require
from .csvimport import normalise_plate

logger = logging.getLogger(__name__)

DISPOSITIONS = ("dispatched", "no-action", "misread", "stale-entry", "duplicate")

_COLUMNS = ("h.hit_id, h.read_id, h.entry_id, h.list_id, h.list_name, h.list_version, h.category, h.match_kind, "
            "h.matched_text, h.device_id, h.camera_id, h.captured_at, h.stored_at, h.hit_at, h.entry, h.visual, "
            "h.visual_text, h.visual_by, h.visual_at, h.source, h.source_by, h.source_at, h.disposition, "
            "h.disposition_by, h.disposition_at, h.note, r.plate, r.confidence, r.latitude, r.longitude, r.heading")

# A hit's read (PostgreSQL: a uuid in a table partitioned by capture time).
_JOIN = {"sqlite": "r.read_id = h.read_id",
         "postgresql": "r.read_id = h.read_id::uuid AND r.captured_at = h.captured_at::timestamptz"}


@dataclasses.dataclass(frozen=True)
class Hit:
    hit_id: int
    read_id: str
    entry_id: int
    list_id: int
    list_name: str
    list_version: int
    category: str
    match_kind: str          # exact | alternate | confusable
    matched_text: str
    device_id: str
    camera_id: str
    captured_at: dt.datetime
    stored_at: dt.datetime
    hit_at: dt.datetime
    entry: dict              # the entry's fields when the hit was raised
    visual: str | None
    visual_text: str | None
    visual_by: str | None
    visual_at: dt.datetime | None
    source: str | None
    source_by: str | None
    source_at: dt.datetime | None
    disposition: str | None
    disposition_by: str | None
    disposition_at: dt.datetime | None
    note: str
    read_plate: str | None   # None once the read is purged
    confidence: float | None
    latitude: float | None
    longitude: float | None
    heading: float | None
    crop_jpeg: bytes | None = dataclasses.field(default=None, repr=False)
    context_jpeg: bytes | None = dataclasses.field(default=None, repr=False)
    # Later, better reads of the same pass (:meth:`HitBook.get` only), oldest first: dicts
    # with at, applied (the hit moved to that read) or not (noted after a step was recorded),
    # read_id, match_kind, matched_text, captured_at and the previous_* of the hit.
    upgrades: tuple = ()

    def __repr__(self) -> str:  # no plate text in logs or tracebacks
        return f"Hit(hit_id={self.hit_id}, read_id={self.read_id!r}, entry_id={self.entry_id})"

    @property
    def possible(self) -> bool:
        """A possible hit (alternate or confusable), not an exact one."""
        return self.match_kind != "exact"

    @property
    def actionable(self) -> bool:
        return self.visual == "yes" and self.source == "yes"

    @property
    def status(self) -> str:
        if self.disposition:
            return self.disposition
        if self.visual == "misread":
            return "misread"
        if self.source == "no-longer-wanted":
            return "stale-entry"
        if self.actionable:
            return "actionable"
        if self.visual == "yes":
            return "image-confirmed"
        return "unverified"

    def as_dict(self, *, images: bool = False) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("crop_jpeg", "context_jpeg")}
        for k, v in d.items():
            if isinstance(v, dt.datetime):
                d[k] = v.isoformat()
        d.update(status=self.status, possible=self.possible, actionable=self.actionable,
                 has_crop=self.crop_jpeg is not None, has_context=self.context_jpeg is not None)
        if images:
            d["crop_jpeg_base64"] = base64.b64encode(self.crop_jpeg).decode() if self.crop_jpeg else None
            d["context_jpeg_base64"] = base64.b64encode(self.context_jpeg).decode() if self.context_jpeg else None
        return d


# The event names of an upgrade (console stream, ``hits watch --json``, webhooks), by whether
# it moved the hit to the better read (applied) or only noted it beside a checked hit.
UPGRADE_EVENTS = {True: "hit-upgraded", False: "hit-better-read-noted"}


@dataclasses.dataclass(frozen=True)
class Upgraded:
    """In a stream: ``hit`` (as it is now) moved to a better read of its pass
    (``applied``), or, with ``follow(noted=True)``, a better read was noted
    beside the checked ``hit``. ``upgrade``: the ``hit_upgrades`` row as in
    :attr:`Hit.upgrades` (with ``upgrade_id``); empty when not fetched."""

    hit: Hit
    upgrade: dict = dataclasses.field(default_factory=dict)

    @property
    def applied(self) -> bool:
        return bool(self.upgrade.get("applied", True))

    @property
    def event(self) -> str:
        return UPGRADE_EVENTS[self.applied]


def _t(value):
    return parse_ts(value) if value else None


def _hit(row, crop=None, context=None, upgrades=()) -> Hit:
    r = list(row)
    for i in (11, 12, 13):
        r[i] = parse_ts(r[i])
    r[14] = json.loads(r[14])
    for i in (18, 21, 24):
        r[i] = _t(r[i])
    return Hit(*r, crop_jpeg=crop, context_jpeg=context, upgrades=upgrades)


_UPGRADE_COLUMNS = ("at", "applied", "read_id", "match_kind", "matched_text", "captured_at", "previous_read_id",
                    "previous_kind", "previous_text", "previous_captured_at")


class HitBook:
    """Hits in the store's SQLite database."""

    RECHECK_SECONDS = 10.0  # an open stream re-reads its user's record this often

    def __init__(self, conn: sqlite3.Connection, *, clock=utcnow) -> None:
        self.conn = conn
        self._clock = clock
        self.log = AccessLog(conn, clock=clock)

    # -- reading -------------------------------------------------------------
    def _select(self, where: str, args: list, *, limit: int, images: bool = False, order: str = "DESC") -> list[Hit]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM hits h LEFT JOIN reads r ON {_JOIN[dialect(self.conn)]} "
                                 f"WHERE {where} ORDER BY h.hit_id {order} LIMIT ?", [*args, limit]).fetchall()
        hits = []
        for row in rows:
            crop = context = None
            upgrades = ()
            if images:
                for kind, jpeg in self.conn.execute("SELECT kind, jpeg FROM read_images WHERE read_id = ?",
                                                    [row[1]]).fetchall():
                    crop, context = (jpeg, context) if kind == "crop" else (crop, jpeg)
                upgrades = tuple({**dict(zip(_UPGRADE_COLUMNS, u)), "applied": bool(u[1])} for u in self.conn.execute(
                    f"SELECT {', '.join(_UPGRADE_COLUMNS)} FROM hit_upgrades WHERE hit_id = ? ORDER BY upgrade_id",
                    [row[0]]).fetchall())
            hits.append(_hit(row, crop, context, upgrades))
        return hits

    def list(self, actor: User, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
             status: str | None = None, limit: int = 100) -> list[Hit]:
        """Hits newest first (by hit id); ``status`` filters on :attr:`Hit.status`. Logged."""
        return self.page(actor, since=since, until=until, status=status, limit=limit)[0]

    def page(self, actor: User, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
             status: str | None = None, limit: int = 100) -> tuple[list[Hit], bool]:
        """As :meth:`list`, and whether more hits match than ``limit`` let through."""
        require(actor, Permission.VIEW_HITS)
        where, args = ["TRUE"], []
        if since:
            where.append("h.captured_at >= ?")
            args.append(ts(since))
        if until:
            where.append("h.captured_at <= ?")
            args.append(ts(until))
        hits = self._select(" AND ".join(where), args, limit=100_000 if status else limit + 1)
        if status:
            hits = [h for h in hits if h.status == status]
        hits, more = hits[:limit], len(hits) > limit
        self.log.append(user=actor.name, organization=actor.organization, action="hits-list",
                        detail={k: v for k, v in {"since": since and ts(since), "until": until and ts(until),
                                                  "status": status, "limit": limit}.items() if v},
                        result_count=len(hits))
        return hits, more

    def get(self, actor: User, hit_id: int, *, log: bool = True) -> Hit:
        """One hit with its crop and context image. Logged."""
        require(actor, Permission.VIEW_HITS)
        found = self._select("h.hit_id = ?", [hit_id], limit=1, images=True)
        if not found:
            raise PolicyError(f"no hit {hit_id}")
        if log:
            self.log.append(user=actor.name, organization=actor.organization, action="hit-view",
                            detail={"hit": hit_id}, result_count=1)
        return found[0]

    def crop(self, actor: User, hit_id: int) -> bytes | None:
        """The crop of the read a hit shows now (for the hits list's thumbnails;
        None without one). Not logged per image: it belongs to the list or
        stream that shows it, whose opening is logged (``hits-list``,
        ``hits-watch``), as the plate text in them does."""
        require(actor, Permission.VIEW_HITS)
        hit = self.conn.execute("SELECT read_id FROM hits WHERE hit_id = ?", [hit_id]).fetchone()
        if hit is None:   # two statements: read ids are text here and uuid in PostgreSQL's read_images
            return None
        row = self.conn.execute("SELECT jpeg FROM read_images WHERE read_id = ? AND kind = 'crop'",
                                [hit[0]]).fetchone()
        return row[0] if row else None

    def after(self, actor: User, hit_id: int = 0, *, limit: int = 100, images: bool = False) -> list[Hit]:
        """Hits with an id above ``hit_id``, oldest first (for streams; not logged
        per call: :meth:`follow` logs the opening)."""
        require(actor, Permission.VIEW_HITS)
        return self._select("h.hit_id > ?", [hit_id], limit=limit, images=images, order="ASC")

    def last_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(hit_id), 0) FROM hits").fetchone()[0]

    def follow(self, actor: User, after: int | None, stop: threading.Event, *, poll: float = 0.25,
               images: bool = False, heartbeat: float | None = None,
               upgrades: bool = False, noted: bool = False) -> Iterator[Hit | Upgraded | None]:
        """Yield new hits as they are raised until ``stop`` is set; ``after``
        None starts with the next hit. With ``heartbeat``, yields None after
        that many quiet seconds (keep-alives). With ``upgrades``, also yields
        :class:`Upgraded` when a hit moves to a better read of its pass (from
        the opening on); with ``noted`` as well, also when a better read is
        noted beside a checked hit. The permission is checked and the opening
        logged when called, before the first item."""
        upgrades = upgrades or noted
        require(actor, Permission.VIEW_HITS)
        last = self.last_id() if after is None else after
        last_upgrade = self.conn.execute("SELECT coalesce(max(upgrade_id), 0) FROM hit_upgrades").fetchone()[0] \
            if upgrades else None
        self.log.append(user=actor.name, organization=actor.organization, action="hits-watch",
                        detail={"after": last})
        return self._follow(actor, last, stop, poll, images, heartbeat, last_upgrade, noted)

    def _still_allowed(self, actor: User) -> bool:
        """The user's current record (disabled or re-roled since the stream opened?)."""
        row = self.conn.execute("SELECT role, disabled FROM users WHERE name = ?", [actor.name]).fetchone()
        return row is not None and not row[1] and Permission.VIEW_HITS in ROLE_PERMISSIONS.get(Role(row[0]), ())

    def _follow(self, actor, last, stop, poll, images, heartbeat, last_upgrade,
                noted=False) -> Iterator[Hit | Upgraded | None]:
        quiet = checked = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - checked >= self.RECHECK_SECONDS:
                checked = time.monotonic()
                if not self._still_allowed(actor):
                    logger.info("hit stream of %s closed: the account is disabled or its role changed", actor.name)
                    return
            batch: list = self.after(actor, last, images=images)
            for hit in batch:
                last = hit.hit_id
                yield hit
            if last_upgrade is not None:
                moved = self.conn.execute(
                    f"SELECT upgrade_id, hit_id, {', '.join(_UPGRADE_COLUMNS)} FROM hit_upgrades "
                    f"WHERE upgrade_id > ? {'' if noted else 'AND applied = 1 '}ORDER BY upgrade_id",
                    [last_upgrade]).fetchall()
                for upgrade_id, hit_id, *row in moved:
                    last_upgrade = upgrade_id
                    if hit_id > last:  # not sent yet: it is sent as it is now, as a new hit
                        continue
                    upgrade = {"upgrade_id": upgrade_id, **dict(zip(_UPGRADE_COLUMNS, row)), "applied": bool(row[1])}
                    for hit in self._select("h.hit_id = ?", [hit_id], limit=1, images=images):
                        batch.append(hit)
                        yield Upgraded(hit, upgrade)
            if batch:
                quiet = time.monotonic()
            elif heartbeat is not None and time.monotonic() - quiet >= heartbeat:
                quiet = time.monotonic()
                yield None
            if not batch:
                stop.wait(poll)

    def sse(self, actor: User, last_event_id: str | int | None, stop: threading.Event, *,
            poll: float = 0.25) -> Iterator[str]:
        """``text/event-stream`` chunks for the console: one ``hit`` event per hit.
        Raises :class:`PermissionDenied` at the call, before any chunk."""
        try:
            after = int(last_event_id) if last_event_id not in (None, "") else None
        except (TypeError, ValueError):
            after = None
        hits = self.follow(actor, after, stop, poll=poll, heartbeat=15.0, upgrades=True)

        def chunks() -> Iterator[str]:
            yield "retry: 2000\n\n"
            for hit in hits:
                if hit is None:
                    yield ": keep-alive\n\n"
                elif isinstance(hit, Upgraded):  # no id: Last-Event-ID stays the last hit's
                    yield f"event: hit-upgraded\ndata: {json.dumps(hit.hit.as_dict(), sort_keys=True)}\n\n"
                else:
                    yield f"id: {hit.hit_id}\nevent: hit\ndata: {json.dumps(hit.as_dict(), sort_keys=True)}\n\n"
        return chunks()

    # -- the workflow --------------------------------------------------------
    def _step(self, actor: User, hit_id: int) -> Hit:
        require(actor, Permission.VERIFY_HITS)
        return self.get(actor, hit_id, log=False)

    def check_image(self, actor: User, hit_id: int, *, shows_plate: bool, true_text: str | None = None,
                    seen_read_id: str | None = None) -> Hit:
        """Step 1: does the image show the listed plate? If not, ``true_text`` is
        what it really shows (kept with the crop as a labelled example).
        ``seen_read_id``, the read whose image the checker looked at, is refused
        if the hit has moved to a better read of its pass since (an upgrade)."""
        now = self._clock()
        with transaction(self.conn):
            hit = self._step(actor, hit_id)
            if seen_read_id and seen_read_id != hit.read_id:
                raise PolicyError(f"hit {hit_id} now shows a better read of the same pass ({hit.match_kind} match): "
                                  f"look at its new image and record the visual check again")
            if hit.visual is not None:
                raise PolicyError(f"hit {hit_id}: the visual check was recorded already ({hit.visual}, "
                                  f"{hit.visual_by})")
            if hit.disposition is not None:
                raise PolicyError(f"hit {hit_id} is closed ({hit.disposition})")
            text = None
            if not shows_plate:
                try:
                    text = normalise_plate(true_text or "")
                except ValueError:
                    raise PolicyError("a misread needs the text the image really shows (1-10 letters and digits)"
                                      ) from None
                if text == hit.entry["plate"]:
                    raise PolicyError("the corrected text is the listed plate: record the visual check as yes")
            self.conn.execute("UPDATE hits SET visual = ?, visual_text = ?, visual_by = ?, visual_at = ? "
                              "WHERE hit_id = ?", ["yes" if shows_plate else "misread", text, actor.name, ts(now),
                                                   hit_id])
            if hit.crop_jpeg is not None:   # the labelled set (governance/labels.py): yes -> the listed plate
                labels.record(self.conn, source="hit-confirmed" if shows_plate else "hit-misread",
                              read_id=hit.read_id, hit_id=hit_id, crop=hit.crop_jpeg,
                              read_text=hit.read_plate or hit.matched_text,
                              true_text=hit.entry["plate"] if shows_plate else text,
                              captured_at=hit.captured_at, labelled_by=actor.name, labelled_at=now)
            self.log.append(user=actor.name, organization=actor.organization, action="hit-visual-check",
                            detail={"hit": hit_id, "result": "yes" if shows_plate else "misread"}, result_count=1)
        return self.get(actor, hit_id, log=False)

    def check_source(self, actor: User, hit_id: int, *, current: bool, note: str = "") -> Hit:
        """Step 2, after a ``yes`` visual check: is the entry still current with its source?"""
        now = self._clock()
        with transaction(self.conn):
            hit = self._step(actor, hit_id)
            if hit.disposition is not None:
                raise PolicyError(f"hit {hit_id} is closed ({hit.disposition})")
            if hit.visual != "yes":
                raise PolicyError(f"hit {hit_id}: record the visual check (the image shows the listed plate) "
                                  f"before the source check" if hit.visual is None else
                                  f"hit {hit_id} is a misread: close it with disposition misread")
            if hit.source is not None:
                raise PolicyError(f"hit {hit_id}: the source check was recorded already ({hit.source}, "
                                  f"{hit.source_by})")
            self.conn.execute("UPDATE hits SET source = ?, source_by = ?, source_at = ?, note = ? WHERE hit_id = ?",
                              ["yes" if current else "no-longer-wanted", actor.name, ts(now),
                               _note(hit.note, note), hit_id])
            self.log.append(user=actor.name, organization=actor.organization, action="hit-source-check",
                            detail={"hit": hit_id, "result": "yes" if current else "no-longer-wanted"},
                            result_count=1)
        return self.get(actor, hit_id, log=False)

    def dispose(self, actor: User, hit_id: int, disposition: str, *, note: str = "") -> Hit:
        """Step 3: close the hit. ``dispatched`` only when actionable."""
        if disposition not in DISPOSITIONS:
            raise PolicyError(f"disposition: one of {', '.join(DISPOSITIONS)}")
        now = self._clock()
        with transaction(self.conn):
            hit = self._step(actor, hit_id)
            if hit.disposition is not None:
                raise PolicyError(f"hit {hit_id} is closed already ({hit.disposition}, {hit.disposition_by})")
            if disposition == "dispatched" and not hit.actionable:
                raise PolicyError(f"hit {hit_id} is not actionable: both the visual check and the source check "
                                  f"must say yes before dispatch (now: {hit.status})")
            if disposition == "misread" and hit.visual != "misread":
                raise PolicyError(f"hit {hit_id}: record the visual check as a misread (with the true text) first")
            if disposition == "stale-entry" and hit.source != "no-longer-wanted":
                raise PolicyError(f"hit {hit_id}: record the source check as no longer wanted first")
            if hit.visual == "misread" and disposition not in ("misread", "duplicate"):
                raise PolicyError(f"hit {hit_id} is a misread: close it as misread (or duplicate)")
            if hit.source == "no-longer-wanted" and disposition not in ("stale-entry", "duplicate"):
                raise PolicyError(f"hit {hit_id}: the entry is no longer wanted: close it as stale-entry")
            self.conn.execute("UPDATE hits SET disposition = ?, disposition_by = ?, disposition_at = ?, note = ? "
                              "WHERE hit_id = ?", [disposition, actor.name, ts(now), _note(hit.note, note), hit_id])
            self.log.append(user=actor.name, organization=actor.organization, action="hit-disposition",
                            detail={"hit": hit_id, "disposition": disposition}, result_count=1)
        return self.get(actor, hit_id, log=False)

    # -- for the system (webhooks) -------------------------------------------
    def payload(self, hit_id: int) -> dict:
        """The outbound JSON of a hit (no permission: the dispatcher runs as central)."""
        found = self._select("h.hit_id = ?", [hit_id], limit=1, images=True)
        if not found:
            raise PolicyError(f"no hit {hit_id}")
        h = found[0]
        return {
            "type": "hit", "hit_id": h.hit_id, "read_id": h.read_id, "match_kind": h.match_kind,
            "possible": h.possible, "status": h.status,
            "read": {"plate": h.read_plate, "matched_text": h.matched_text, "confidence": h.confidence,
                     "captured_at": h.captured_at.isoformat(), "stored_at": h.stored_at.isoformat(),
                     "device_id": h.device_id, "camera_id": h.camera_id,
                     "location": None if h.latitude is None else {"latitude": h.latitude, "longitude": h.longitude,
                                                                  "heading": h.heading},
                     "crop_jpeg_base64": base64.b64encode(h.crop_jpeg).decode() if h.crop_jpeg else None,
                     "context_jpeg_base64": base64.b64encode(h.context_jpeg).decode() if h.context_jpeg else None},
            "entry": {"entry_id": h.entry_id, "list": h.list_name, "list_version": h.list_version,
                      "category": h.category, **h.entry},
            "hit_at": h.hit_at.isoformat(),
            "notice": "Unverified: confirm the image shows the listed plate and the entry is current with its "
                      "source before any action.",
        }

    def upgrade_payload(self, upgrade_id: int) -> dict:
        """The outbound JSON of an upgrade (a better read of a hit's pass; no
        permission: the dispatcher runs as central): ``type`` hit-upgraded (the
        hit moved to the better read) or hit-better-read-noted (the hit was
        checked and stays; the better read is noted), the reads before and
        after (id, match kind, matched text, capture time), and ``hit``: the
        hit as it is now, exactly as a hit delivery carries it."""
        row = self.conn.execute("SELECT hit_id, at, applied, read_id, match_kind, matched_text, captured_at, "
                                "previous_read_id, previous_kind, previous_text, previous_captured_at "
                                "FROM hit_upgrades WHERE upgrade_id = ?", [upgrade_id]).fetchone()
        if row is None:
            raise PolicyError(f"no hit upgrade {upgrade_id}")
        hit_id, at, applied, *reads = row
        better, previous = reads[:4], reads[4:]
        names = ("read_id", "match_kind", "matched_text", "captured_at")
        applied = bool(applied)
        return {
            "type": UPGRADE_EVENTS[applied], "upgrade_id": upgrade_id, "hit_id": hit_id, "applied": applied,
            "upgraded_at": parse_ts(at).isoformat(),
            "better_read": {k: (parse_ts(v).isoformat() if k == "captured_at" else v) for k, v in zip(names, better)},
            "previous_read": {k: (parse_ts(v).isoformat() if k == "captured_at" else v)
                              for k, v in zip(names, previous)},
            "hit": self.payload(hit_id),
            "notice": ("The hit now shows a better read of the same vehicle pass (its image, text and match "
                       "kind changed). Unverified: confirm the image shows the listed plate and the entry is "
                       "current with its source before any action." if applied else
                       "A better read of the same vehicle pass arrived after a person recorded a step on this hit; "
                       "the hit stays as it was checked (its status says how far)."),
        }


def _note(old: str, new: str) -> str:
    new = (new or "").strip()[:500]
    return f"{old}\n{new}".strip() if new else old
