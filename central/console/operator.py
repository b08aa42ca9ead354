"""The operator's pages over :mod:`central.governance.search`: the search form,
a page of results with crops, one read's detail and its images. Purpose and
case number are checked (and every page, read and image logged) by the
library, whatever front end asks. On a read's page an operator may type the
text its image shows (a confirmation or a correction, kept as a labelled
example for site adaptation)."""

from __future__ import annotations

from urllib.parse import urlencode

from ..errors import QueryError, RegistryError
from ..governance.labels import LabelledSet
from ..governance.search import refused, search_page, view_read
from ..governance.users import Permission, User, require
from ..store import Search
from . import geomap
from .backend import RANGES, Backend, data_uri, page_number, span

MATCHES = (("exact", "exact"), ("wildcard", "wildcard (* any run, ? one character)"),
           ("tolerant", "tolerant (0/O/D/Q, 1/I/L, 8/B, 5/S, 2/Z alike)"))


def cameras(b: Backend) -> list[dict]:
    """Every registered camera, for the camera filter (registry facts only)."""
    out = []
    for d in b.registry.devices():
        for c in d.cameras:
            out.append({"value": f"{d.device_id}/{c.id}", "label": f"{d.device_id} / {c.id} ({d.location})"})
    return out


def _form(b: Backend, params) -> dict:
    return {"purposes": list(b.cfg.query.purposes), "ranges": [list(r) for r in RANGES],
            "matches": [list(m) for m in MATCHES], "cameras": cameras(b),
            "asked": {k: params.get(k, "") for k in ("plate", "match", "range", "since", "until", "camera",
                                                     "purpose", "case")}}


def _query(b: Backend, params, offset: int, limit: int) -> Search:
    match = params.get("match") or "exact"
    if match not in dict(MATCHES):
        raise QueryError("match: exact, wildcard or tolerant")
    plate = (params.get("plate") or "").strip() or None
    if plate and match == "exact" and any(ch in plate for ch in "*?"):
        raise QueryError("an exact search takes letters and digits only; choose wildcard for * and ?")
    since, until = span(params, b.now())
    device = camera = None
    if params.get("camera"):
        device, _, camera = params["camera"].partition("/")
        if not camera:
            raise QueryError("camera: DEVICE/CAMERA as listed")
    return Search(plate=plate, tolerant=match == "tolerant", since=since, until=until, camera_id=camera,
                  device_id=device, limit=limit, offset=offset)


def search(b: Backend, user: User, params) -> dict:
    """The search page. With no ``purpose``/``case``/criteria it is the empty
    form; otherwise a page of results. Purpose and case are required before
    any result (a refusal is logged)."""
    require(user, Permission.SEARCH)
    out = _form(b, params)
    if not params.get("submitted") and not any(params.get(k) for k in ("plate", "purpose", "case", "camera")):
        return out
    size = b.cfg.console.page_size
    page = page_number(params)
    asked = {k: params.get(k) for k in ("plate", "match", "range", "since", "until", "camera", "page")
             if params.get(k)}
    purpose, case = params.get("purpose") or None, (params.get("case") or "").strip() or None
    try:
        query = _query(b, params, (page - 1) * size, min(size, b.cfg.query.max_results))
    except QueryError as exc:  # a malformed option is a refused search, logged like the others
        refused(b.store, user, asked, exc, purpose=purpose, case_number=case, now=b.now())
        raise
    result = search_page(b.store, query, user=user, purpose=purpose, case_number=case,
                         purposes=b.cfg.query.purposes, now=b.now())
    keep = {k: v for k, v in params.items() if k in ("plate", "match", "range", "since", "until", "camera",
                                                      "purpose", "case") and v}
    why = urlencode({"purpose": purpose, "case": case})
    reads = []
    for item in result.reads:
        r = item.read
        reads.append({"read_id": r.read_id, "plate": r.plate, "confidence": round(r.confidence, 3),
                      "captured_at": r.captured_at, "camera_id": r.camera_id, "device_id": r.device_id,
                      "has_crop": r.crop_jpeg is not None, "has_context": r.context_jpeg is not None,
                      "location": None if r.location is None else {"lat": r.location.latitude,
                                                                    "lon": r.location.longitude},
                      "url": f"/reads/{r.read_id}?{why}",
                      "crop_url": f"/api/v1/reads/{r.read_id}/crop?{why}" if r.crop_jpeg else None,
                      "_crop": data_uri(r.crop_jpeg)})
    points = [geomap.Point(x["location"]["lat"], x["location"]["lon"], f"{x['plate']} {x['captured_at']:%H:%M}",
                           "read", x["url"]) for x in reads if x["location"]]
    out["_map"] = geomap.render(points, tile_url=b.cfg.console.tile_url,
                                title="Where the reads on this page were taken")
    out.update(results={
        "reads": reads, "page": page, "page_size": size, "matched": result.matched, "capped": result.capped,
        "remaining": result.remaining, "first": result.offset + 1 if reads else 0,
        "last": result.offset + len(reads),
        "next": f"?{urlencode({**keep, 'page': page + 1})}" if result.remaining else None,
        "previous": f"?{urlencode({**keep, 'page': page - 1})}" if page > 1 else None})
    return out


def read_detail(b: Backend, user: User, params, read_id: str) -> dict:
    stored = view_read(b.store, read_id, user=user, purpose=params.get("purpose") or None,
                       case_number=(params.get("case") or "").strip() or None, purposes=b.cfg.query.purposes,
                       now=b.now())
    r = stored.read
    why = urlencode({"purpose": params.get("purpose"), "case": params.get("case")})
    try:
        device = b.registry.device(r.device_id)
    except RegistryError:  # a read from a device no longer in the registry still shows
        device = None
    points = []
    if device and device.latitude is not None:
        points.append(geomap.Point(device.latitude, device.longitude, f"camera {r.device_id}", "camera"))
    if r.location:
        points.append(geomap.Point(r.location.latitude, r.location.longitude, f"read {r.plate}", "read"))
    return {"read": {"read_id": r.read_id, "plate": r.plate, "confidence": r.confidence,
                     "captured_at": r.captured_at, "stored_at": stored.stored_at, "camera_id": r.camera_id,
                     "device_id": r.device_id, "device_location": device.location if device else None,
                     "box": list(r.box), "model_version": r.model_version,
                     "alternates": [{"plate": a.plate, "confidence": a.confidence} for a in r.alternates],
                     "location": None if r.location is None else {
                         "lat": r.location.latitude, "lon": r.location.longitude, "heading": r.location.heading},
                     "crop_url": f"/api/v1/reads/{r.read_id}/crop?{why}" if r.crop_jpeg else None,
                     "context_url": f"/api/v1/reads/{r.read_id}/context?{why}" if r.context_jpeg else None},
            "purpose": params.get("purpose"), "case": params.get("case"),
            "_crop": data_uri(r.crop_jpeg), "_context": data_uri(r.context_jpeg),
            "_map": geomap.render(points, tile_url=b.cfg.console.tile_url, title=f"Where read {r.read_id} was taken")}


def confirm_read(b: Backend, user: User, params, read_id: str) -> dict:
    """POST on a read's page: the text its image shows, a confirmation or a
    correction of the read (central/governance/labels.py)."""
    why = {"purpose": params.get("purpose") or None, "case_number": (params.get("case") or "").strip() or None}
    e = LabelledSet(b.store, clock=b.clock).confirm(user, read_id, params.get("text") or "", **why,
                                                    purposes=b.cfg.query.purposes,
                                                    case_number_pattern=b.cfg.query.case_number_pattern)
    notice = (f"Confirmed: the image shows {e.true_text}." if e.source == "search-confirmed" else
              f"Corrected: the image shows {e.true_text}, the camera read {e.read_text}.")
    out = read_detail(b, user, params, read_id)
    out["notice"] = notice + " Kept as a labelled example for site adaptation (it goes with the read)."
    out["label"] = {"example_id": e.example_id, "result": e.source.split("-")[1], "text": e.true_text}
    return out


def read_image(b: Backend, user: User, params, read_id: str, part: str) -> bytes:
    if part not in ("crop", "context"):
        raise QueryError("image: crop or context")
    stored = view_read(b.store, read_id, user=user, purpose=params.get("purpose") or None,
                       case_number=(params.get("case") or "").strip() or None, purposes=b.cfg.query.purposes,
                       part=part, now=b.now())
    jpeg = stored.read.crop_jpeg if part == "crop" else stored.read.context_jpeg
    if not jpeg:
        raise QueryError(f"read {read_id} has no {part} image")
    return jpeg


def form_only(b: Backend, params) -> dict:
    """The search form filled in with what was asked (to show it again with a refusal)."""
    return _form(b, params)
