"""Live hits (verify before action) and hotlists, over :mod:`central.hotlist`.

Every permission is the library's: ``view-hits`` (operator, supervisor,
auditor) reads hits, ``verify-hits`` (operator, supervisor) records the
visual check, the source check and the disposition, in that order
(:class:`~central.hotlist.hits.HitBook` refuses anything else);
``view-hotlist`` reads lists, ``manage-hotlist`` (supervisor, admin) changes
them. The pages only choose which forms to show; the library decides.
"""

from __future__ import annotations

import io

from ..errors import PolicyError, QueryError
from ..governance.users import Permission, User
from ..hotlist.csvimport import EntryInput, normalise_plate, parse_expiry
from ..hotlist.hits import DISPOSITIONS, HitBook
from ..hotlist.lists import Hotlists
from . import geomap
from .backend import Backend, data_uri

STATUSES = ("unverified", "image-confirmed", "actionable", "misread", "stale-entry", "dispatched", "no-action",
            "duplicate")
LABELS = {"dispatched": "dispatched (both checks said yes)", "no-action": "no action",
          "misread": "misread (the image shows another plate)", "stale-entry": "stale entry (no longer wanted)",
          "duplicate": "duplicate of another hit"}
MAX_SHOWN = 500


def book(b: Backend) -> HitBook:
    return HitBook(b.conn, clock=b.clock)


def hotlists_of(b: Backend) -> Hotlists:
    return Hotlists(b.conn, b.cfg.hotlist, clock=b.clock)


def _hit_id(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise QueryError("hit: a hit number") from None


def summary(hit) -> dict:
    """A hit for lists and the live stream (no images)."""
    return {"hit_id": hit.hit_id, "url": f"/hits/{hit.hit_id}", "thumb": f"/hits/{hit.hit_id}/thumb",
            "captured_at": hit.captured_at, "hit_at": hit.hit_at,
            "read_plate": hit.read_plate or hit.matched_text, "listed_plate": hit.entry.get("plate"),
            "list_name": hit.list_name, "category": hit.category, "match_kind": hit.match_kind,
            "possible": hit.possible, "device_id": hit.device_id, "camera_id": hit.camera_id, "status": hit.status}


def hits(b: Backend, user: User, params) -> dict:
    """Recent hits, newest first (the page without JavaScript; with it, new hits arrive live)."""
    status = params.get("status") or None
    if status and status not in STATUSES:
        raise QueryError(f"status: one of {', '.join(STATUSES)}")
    try:
        limit = min(max(int(params.get("limit") or 50), 1), MAX_SHOWN)
    except ValueError:
        raise QueryError("limit: a whole number") from None
    hb = book(b)
    found = hb.list(user, status=status, limit=limit)
    return {"hits": [summary(h) for h in found], "status": status, "statuses": list(STATUSES), "limit": limit,
            "last_id": hb.last_id(), "can_verify": user.can(Permission.VERIFY_HITS),
            "stream": "/api/v1/hits/stream"}


def hit_thumb(b: Backend, user: User, params, hit_id) -> bytes:
    """The crop of a hit's read for the list's thumbnail (``view-hits``, as the list)."""
    jpeg = book(b).crop(user, _hit_id(hit_id))
    if not jpeg:
        raise LookupError(f"hit {hit_id} has no crop")
    return jpeg


def _dispositions(hit) -> list[str]:
    """The dispositions the library will accept now (it checks again)."""
    if hit.visual == "misread":
        return ["misread", "duplicate"]
    if hit.source == "no-longer-wanted":
        return ["stale-entry", "duplicate"]
    if hit.actionable:
        return ["dispatched", "no-action", "duplicate"]
    return ["no-action", "duplicate"]


def hit_detail(b: Backend, user: User, params, hit_id) -> dict:
    hit = book(b).get(user, _hit_id(hit_id))
    entry_now = None
    try:
        e = hotlists_of(b).entry(user, hit.entry_id)
        entry_now = {"active": e.active(b.now()), "expires_at": e.expires_at, "removed_at": e.removed_at,
                     "removed_by": e.removed_by, "removed_version": e.removed_version}
    except PolicyError:   # purged by retention since the hit was raised
        pass
    points = []
    if hit.latitude is not None:
        points.append(geomap.Point(hit.latitude, hit.longitude, f"hit {hit.hit_id}", "read"))
    if hit.disposition:
        step = "closed"
    elif hit.visual is None:
        step = "visual"
    elif hit.visual == "yes" and hit.source is None:
        step = "source"
    else:
        step = "disposition"
    return {"hit": hit.as_dict(images=params.get("images") == "1"), "entry": hit.entry, "entry_now": entry_now, "step": step,
            "can_verify": user.can(Permission.VERIFY_HITS),
            "dispositions": [[d, LABELS[d]] for d in _dispositions(hit) if d in DISPOSITIONS],
            "notice": params.get("_notice"),
            "_crop": data_uri(hit.crop_jpeg), "_context": data_uri(hit.context_jpeg),
            "_map": geomap.render(points, tile_url=b.cfg.console.tile_url, title=f"Where hit {hit.hit_id} was read")
            if points else ""}


def check_visual(b: Backend, user: User, params, hit_id) -> dict:
    result = params.get("result")
    if result not in ("yes", "misread"):
        raise QueryError("visual check: yes or misread")
    book(b).check_image(user, _hit_id(hit_id), shows_plate=result == "yes", true_text=params.get("true_text"),
                        seen_read_id=params.get("read_id") or None)
    return hit_detail(b, user, {"_notice": "Visual check recorded."}, hit_id)


def check_source(b: Backend, user: User, params, hit_id) -> dict:
    result = params.get("result")
    if result not in ("yes", "no-longer-wanted"):
        raise QueryError("source check: yes or no-longer-wanted")
    book(b).check_source(user, _hit_id(hit_id), current=result == "yes", note=params.get("note", ""))
    return hit_detail(b, user, {"_notice": "Source check recorded."}, hit_id)


def dispose(b: Backend, user: User, params, hit_id) -> dict:
    book(b).dispose(user, _hit_id(hit_id), params.get("disposition", ""), note=params.get("note", ""))
    return hit_detail(b, user, {"_notice": "Hit closed."}, hit_id)


# -- hotlists ------------------------------------------------------------------
def hotlists(b: Backend, user: User, params) -> dict:
    hl = hotlists_of(b)
    return {"notice": params.get("_notice"),
            "lists": [{"name": h.name, "category": h.category, "description": h.description, "version": h.version,
                       "active_entries": h.active_entries, "created_by": h.created_by, "created_at": h.created_at,
                       "url": f"/hotlists/{h.name}"} for h in hl.lists(user)],
            "categories": [list(c) for c in b.cfg.hotlist.categories],
            "can_manage": user.can(Permission.MANAGE_HOTLIST)}


def create_list(b: Backend, user: User, params) -> dict:
    """A new, empty list (``manage-hotlist``; the library call and access-log
    record of ``alpr-central hotlist create``)."""
    h = hotlists_of(b).create(user, (params.get("name") or "").strip(), params.get("category") or "",
                              description=params.get("description") or "")
    return hotlists(b, user, {"_notice": f"List {h.name} created ({h.category}). Add entries or import a CSV "
                                         f"on its page."})


def hotlist(b: Backend, user: User, params, name: str) -> dict:
    """One list: its versions, and its entries (current active ones, all, or
    an earlier version), searchable by plate."""
    hl = hotlists_of(b)
    h = hl.get(user, name)
    version = None
    if params.get("version"):
        try:
            version = int(params["version"])
        except ValueError:
            raise QueryError("version: a whole number") from None
    show_all = params.get("show") == "all"
    plate = (params.get("plate") or "").strip()
    if plate:
        try:
            plate = normalise_plate(plate.replace("*", ""))
        except ValueError as exc:
            raise QueryError(str(exc)) from None
    entries = hl.entries(user, name, version=version, include_inactive=show_all and version is None)
    now = b.now()
    matched = [e for e in entries if not plate or plate in e.plate]
    rows = [{**e.as_dict(), "active": e.active(now)} for e in matched[:MAX_SHOWN]]
    return {"list": {"name": h.name, "category": h.category, "description": h.description, "version": h.version,
                     "active_entries": h.active_entries},
            "max_days": b.cfg.hotlist.max_days(h.category),
            "versions": [{"version": v.version, "at": v.at, "user": v.user, "action": v.action, "counts": v.counts}
                         for v in hl.versions(user, name)],
            "asked": {"plate": params.get("plate", ""), "version": params.get("version", ""),
                      "show": params.get("show", "")},
            "entries": rows, "matched": len(matched), "shown": len(rows),
            "can_manage": user.can(Permission.MANAGE_HOTLIST) and version is None,
            "notice": params.get("_notice"), "result": params.get("_result")}


def add_entry(b: Backend, user: User, params, name: str) -> dict:
    try:
        expires = parse_expiry(params.get("expires", ""))
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    e = hotlists_of(b).add(user, name, EntryInput(params.get("plate", ""), params.get("reason", ""),
                                                  params.get("source_agency", ""), params.get("source_ref", ""),
                                                  expires, params.get("state", ""), params.get("case_number", "")))
    return hotlist(b, user, {"_notice": f"Entry {e.entry_id} added (version {e.added_version})."}, name)


def remove_entry(b: Backend, user: User, params, name: str) -> dict:
    hl = hotlists_of(b)
    try:
        entry_id = int(params.get("entry_id", ""))
    except ValueError:
        raise QueryError("entry_id: a whole number") from None
    kind = params.get("kind") or "remove"
    if kind not in ("remove", "expire"):
        raise QueryError("kind: remove or expire")
    listed = {h.name: h for h in hl.lists(user)}
    entry = hl.entry(user, entry_id)
    if name not in listed or b.conn.execute("SELECT list_id FROM hotlists WHERE name = ?",
                                            [name]).fetchone()[0] != entry.list_id:
        raise PolicyError(f"entry {entry_id} is not on {name}")
    e = hl.remove(user, entry_id, reason=params.get("reason", ""), expire=kind == "expire")
    done = "expired" if kind == "expire" else "removed"
    return hotlist(b, user, {"_notice": f"Entry {entry_id} {done} (version {e.removed_version})."}, name)


def import_csv(b: Backend, user: User, params, name: str) -> dict:
    """A CSV upload (field ``file``), atomic: a file with bad lines is refused
    whole, each line named (:class:`~central.hotlist.lists.ImportRefused`),
    unless ``skip_bad``."""
    data = params.get("file")
    if not isinstance(data, bytes) or not data:
        raise QueryError("choose a CSV file to import")
    mode = params.get("mode") or "delta"
    result = hotlists_of(b).import_csv(user, name, io.BytesIO(data), mode=mode,
                                       skip_bad=params.get("skip_bad") in ("1", "on", "true"))
    summary_ = {"version": result.version, "mode": result.mode, "counts": result.counts,
                "skipped": [{"line": n, "why": why} for n, why in result.skipped],
                "ignored_columns": list(result.ignored_columns)}
    c = result.counts
    return hotlist(b, user, {"_notice": f"Imported ({mode}): {c['added']} added, {c['updated']} updated, "
                                        f"{c['removed']} removed, {c['unchanged']} unchanged, "
                                        f"{c['skipped']} skipped; version {result.version}.",
                             "_result": summary_}, name)
