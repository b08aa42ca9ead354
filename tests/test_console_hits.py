"""Live hits and hotlists in the console, in-process (Starlette's test client
over HTTPS URLs) over a real SQLite central: reads sealed per device, stored
by the real collector and matched by the real matcher. Roles per page and API,
the verification order enforced through the console, CSRF, the server-sent
event stream, and the hotlist pages (search, add, expire, remove, CSV import)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json

import pytest

from central.console.app import create_app
from console_env import make_world
from hits_env import LISTED, HitWorld
from test_console import client, csrf_of, log, sign_in

VIEWERS = ("otto", "sue", "audrey")             # operator, supervisor, auditor
NO_HITS = ("ada", "tech", "pat")                # admin, field tech, business


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    """The console's central with hits on each backend (PostgreSQL: a fresh migrated database)."""
    w = make_world(request, tmp_path_factory, "console-hits")
    w.hits = HitWorld(w)
    yield w
    w.hits.close()
    w.close()


@pytest.fixture
def app(world):
    a = create_app(world.cfg, clock=world.clock)
    yield a
    a.close()


def hit_row(world, hit_id: int) -> tuple:
    store = world.env.store()
    try:
        return store.db.execute("SELECT visual, source, disposition FROM hits WHERE hit_id = ?", [hit_id]).fetchone()
    finally:
        store.close()


def post(c, path: str, data: dict, *, csrf: bool = True, **kw):
    headers = {"x-csrf-token": csrf_of(c)} if csrf else {}
    return c.post(path, data=data, headers=headers, **kw)


def test_hit_pages_and_their_api_by_role(app, world):
    hit_id = world.hits.hit()
    for name in VIEWERS:
        c = sign_in(app, name)
        page = c.get("/hits")
        assert page.status_code == 200 and f'href="/hits/{hit_id}"' in page.text, name
        assert 'src="/static/hits.js"' in page.text and 'data-stream="/api/v1/hits/stream"' in page.text
        assert '<a href="/hits"' in page.text and '<a href="/hotlists"' in page.text
        api = c.get("/api/v1/hits").json()
        assert api["hits"][0]["hit_id"] == hit_id and api["hits"][0]["status"] == "unverified"
        assert api["hits"][0]["listed_plate"] == LISTED[0]
        detail = c.get(f"/hits/{hit_id}")
        assert detail.status_code == 200
        assert detail.text.count('src="data:image/jpeg;base64,') == 2          # crop and context
        for shown in ("LAPD", "SV-26-1040", "stolen-vehicle), version 2", "Source reference", "Expires (UTC)"):
            assert shown in detail.text, (name, shown)
        j = c.get(f"/api/v1/hits/{hit_id}").json()
        assert j["hit"]["match_kind"] == "exact" and j["entry"]["source_agency"] == "LAPD"
        assert j["hit"]["list_version"] == 2 and j["entry_now"]["active"] is True and "_crop" not in j
        assert "crop_jpeg_base64" not in j["hit"]
        imgs = c.get(f"/api/v1/hits/{hit_id}", params={"images": "1"}).json()["hit"]
        assert base64.b64decode(imgs["crop_jpeg_base64"])[:2] == b"\xff\xd8" and imgs["context_jpeg_base64"]
        verify_forms = f'action="/hits/{hit_id}/visual"' in detail.text
        assert verify_forms == (name != "audrey"), name                  # the auditor reads, never verifies
        assert c.get("/hotlists").status_code == 200 and c.get("/api/v1/hotlists/stolen").status_code == 200
    for name in NO_HITS:
        c = sign_in(app, name)
        assert '<a href="/hits"' not in c.get("/api/v1/me").text and "/hits" not in c.get("/api/v1/me").json()["pages"]
        for path in ("/hits", f"/hits/{hit_id}"):
            assert c.get(path).status_code == 403, (name, path)
            r = c.get("/api/v1" + path)
            assert r.status_code == 403 and "may not see hotlist hits" in r.json()["error"], (name, path)
            assert LISTED[0] not in r.text
        r = c.get("/api/v1/hits/stream")
        assert r.status_code == 403 and LISTED[0] not in r.text
        assert post(c, f"/api/v1/hits/{hit_id}/visual", {"result": "yes"}).status_code == 403
    assert sign_in(app, "ada").get("/api/v1/hotlists/stolen").status_code == 200     # admin manages lists
    for name in ("tech", "pat"):
        c = sign_in(app, name)
        for path in ("/hotlists", "/hotlists/stolen"):
            assert c.get(path).status_code == 403 and c.get("/api/v1" + path).status_code == 403
    assert hit_row(world, hit_id) == (None, None, None)
    denied = [e for e in log(world, "console-denied") if e.user == "pat"]
    assert any(e.detail["path"] == f"/api/v1/hits/{hit_id}" for e in denied)


def test_auditor_may_not_verify(app, world):
    hit_id = world.hits.hit()
    c = sign_in(app, "audrey")
    r = post(c, f"/api/v1/hits/{hit_id}/visual", {"result": "yes"})
    assert r.status_code == 403 and "may not verify hotlist hits" in r.json()["error"]
    assert hit_row(world, hit_id) == (None, None, None)


def test_verification_order_is_enforced_through_the_console(app, world):
    hit_id = world.hits.hit()
    c = sign_in(app, "otto")
    base = f"/api/v1/hits/{hit_id}"
    r = post(c, base + "/source", {"result": "yes"})
    assert r.status_code == 400 and "visual check" in r.json()["error"]
    r = post(c, base + "/disposition", {"disposition": "dispatched"})
    assert r.status_code == 400 and "not actionable" in r.json()["error"]
    page = c.get(f"/hits/{hit_id}").text                 # the page offers only what the library allows now
    assert 'value="dispatched"' not in page and f'action="/hits/{hit_id}/source"' not in page
    r = post(c, f"/hits/{hit_id}/visual", {"result": "yes"})            # the HTML form
    assert r.status_code == 200 and "Visual check recorded." in r.text
    assert f'action="/hits/{hit_id}/source"' in r.text
    r = post(c, base + "/visual", {"result": "misread", "true_text": "7ABC128"})
    assert r.status_code == 400 and "recorded already" in r.json()["error"]
    r = post(c, base + "/disposition", {"disposition": "dispatched"})
    assert r.status_code == 400 and "not actionable" in r.json()["error"]
    r = post(c, base + "/source", {"result": "yes", "note": "confirmed with LAPD records, Ofc. 4411"})
    assert r.status_code == 200 and r.json()["hit"]["status"] == "actionable"
    assert [d for d, _ in r.json()["dispositions"]] == ["dispatched", "no-action", "duplicate"]
    r = post(c, base + "/disposition", {"disposition": "dispatched"})
    assert r.status_code == 200 and r.json()["hit"]["status"] == "dispatched"
    assert r.json()["hit"]["disposition_by"] == "otto"
    assert post(c, base + "/disposition", {"disposition": "no-action"}).status_code == 400
    assert hit_row(world, hit_id) == ("yes", "yes", "dispatched")
    for action in ("hit-visual-check", "hit-source-check", "hit-disposition"):
        assert log(world, action)[-1].detail["hit"] == hit_id


def test_a_misread_from_the_form_offers_only_a_misread_close(app, world):
    hit_id = world.hits.hit(LISTED[1])
    c = sign_in(app, "sue")
    r = post(c, f"/hits/{hit_id}/visual", {"result": "misread", "true_text": "4GHJ558"})
    assert r.status_code == 200 and "Misread: the image shows" in r.text
    assert 'value="misread"' in r.text and 'value="dispatched"' not in r.text
    assert post(c, f"/api/v1/hits/{hit_id}/source", {"result": "yes"}).status_code == 400
    r = post(c, f"/api/v1/hits/{hit_id}/disposition", {"disposition": "misread"})
    assert r.json()["hit"]["status"] == "misread"


def test_verification_needs_the_csrf_token(app, world):
    hit_id = world.hits.hit()
    c = sign_in(app, "otto")
    r = c.post(f"/hits/{hit_id}/visual", data={"result": "yes"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post(f"/api/v1/hits/{hit_id}/visual", data={"result": "yes", "csrf": "forged"})
    assert r.status_code == 403
    r = c.post(f"/api/v1/hits/{hit_id}/visual", data={"result": "yes"},
               headers={"x-csrf-token": csrf_of(c), "origin": "https://evil.example"})
    assert r.status_code == 403
    assert hit_row(world, hit_id) == (None, None, None)
    assert log(world, "console-denied")[-1].detail["reason"] == "CSRF token missing or wrong"
    assert post(c, f"/api/v1/hits/{hit_id}/visual", {"result": "yes"}).status_code == 200


async def _stream(app, cookie: str, *, after: str | None, until, timeout: float = 20.0):
    """Call the ASGI app's event stream directly; collect body chunks until
    ``until(text)``; then disconnect. Returns (status, headers, text)."""
    gone = asyncio.Event()
    sent = False
    start, chunks = {}, []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if until(b"".join(chunks).decode()) or not message.get("more_body"):
                gone.set()

    headers = [(b"host", b"testserver"), (b"cookie", f"__Host-alpr_session={cookie}".encode())]
    if after is not None:
        headers.append((b"last-event-id", after.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "https",
             "path": "/api/v1/hits/stream", "raw_path": b"/api/v1/hits/stream", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000), "server": ("testserver", 443)}
    await asyncio.wait_for(app(scope, receive, send), timeout)
    return start.get("status"), dict(start.get("headers", [])), b"".join(chunks).decode()


def test_event_stream_yields_a_new_hit(app, world):
    c = sign_in(app, "otto")
    cookie = c.cookies.get("__Host-alpr_session")
    last = c.get("/api/v1/hits").json()["last_id"]
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(_stream(app, cookie, after=str(last), until=lambda t: "event: hit" in t))
        loop.run_until_complete(asyncio.sleep(0.5))        # the stream is open and waiting
        hit_id = world.hits.hit()                           # collector stores, matcher raises the hit
        status, headers, text = loop.run_until_complete(task)
    finally:
        loop.close()
    assert status == 200 and headers[b"content-type"].startswith(b"text/event-stream")
    assert text.startswith("retry: 2000")
    event = [block for block in text.split("\n\n") if "event: hit" in block][0]
    assert f"id: {hit_id}\n" in event
    data = json.loads(event.split("data: ", 1)[1])
    assert data["hit_id"] == hit_id and data["status"] == "unverified" and data["entry"]["plate"] == LISTED[0]
    assert "crop_jpeg_base64" not in data
    assert log(world, "hits-watch")[-1].user == "otto"


def test_event_stream_resumes_after_last_event_id(app, world):
    first, second = world.hits.hit(), world.hits.hit()
    c = sign_in(app, "sue")
    cookie = c.cookies.get("__Host-alpr_session")
    status, _, text = asyncio.run(_stream(app, cookie, after=str(first), until=lambda t: f"id: {second}" in t))
    assert status == 200 and f"id: {second}\n" in text and f"id: {first}\n" not in text


def test_event_stream_ends_with_its_session(app, world):
    """Signed out (or timed out) elsewhere: the open stream delivers no further hit and ends."""
    app.STREAM_SESSION_CHECK = 0.0
    c = sign_in(app, "otto")
    cookie = c.cookies.get("__Host-alpr_session")
    last = c.get("/api/v1/hits").json()["last_id"]
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(_stream(app, cookie, after=str(last), until=lambda t: False))
        loop.run_until_complete(asyncio.sleep(0.5))
        assert c.post("/sign-out", data={"csrf": csrf_of(c)}).status_code == 303
        world.hits.hit()
        status, _, text = loop.run_until_complete(task)     # ends by itself (no disconnect from us)
    finally:
        loop.close()
    assert status == 200 and "event: hit" not in text and LISTED[0] not in text


def test_event_stream_refuses_before_any_byte(app, world):
    for name in ("pat", "ada"):
        cookie = sign_in(app, name).cookies.get("__Host-alpr_session")
        status, headers, text = asyncio.run(_stream(app, cookie, after="0", until=lambda t: True))
        assert status == 403 and headers[b"content-type"] == b"application/json"
        assert "event:" not in text and LISTED[0] not in text


def test_hotlist_pages_search_add_expire_remove(app, world):
    c = sign_in(app, "sue")
    page = c.get("/hotlists")
    assert 'href="/hotlists/stolen"' in page.text
    found = c.get("/api/v1/hotlists/stolen", params={"plate": "GHJ"}).json()
    assert [e["plate"] for e in found["entries"]] == [LISTED[1]] and found["can_manage"] is True
    before = found["list"]["version"]
    r = post(c, "/hotlists/stolen/add", {"plate": "9 QRS-771", "state": "ca", "reason": "stolen vehicle",
                                         "source_agency": "LASD", "source_ref": "SV-9", "expires": "2099-01-01"})
    assert r.status_code == 400 and "expires" in r.text                    # later than the category allows
    expires = (world.clock().date().replace(day=1)).isoformat()
    r = post(c, "/api/v1/hotlists/stolen/add", {"plate": "9 QRS-771", "state": "ca", "reason": "stolen vehicle",
                                                "source_agency": "LASD", "source_ref": "SV-9", "expires": expires})
    assert r.status_code == 400                                            # in the past
    expires = (world.clock() + dt.timedelta(days=20)).date().isoformat()
    r = post(c, "/hotlists/stolen/add", {"plate": "9 QRS-771", "state": "ca", "reason": "stolen vehicle",
                                         "source_agency": "LASD", "source_ref": "SV-9", "expires": expires})
    assert r.status_code == 200 and "9QRS771" in r.text and f"(version {before + 1})" in r.text
    entry = [e for e in c.get("/api/v1/hotlists/stolen", params={"plate": "9QRS771"}).json()["entries"]][0]
    assert entry["state"] == "CA" and entry["added_version"] == before + 1
    r = post(c, "/api/v1/hotlists/stolen/remove", {"entry_id": str(entry["entry_id"]), "kind": "expire",
                                                   "reason": ""})
    assert r.status_code == 400 and "say why" in r.json()["error"]
    r = post(c, "/api/v1/hotlists/stolen/remove", {"entry_id": str(entry["entry_id"]), "kind": "expire",
                                                   "reason": "vehicle recovered"})
    assert r.status_code == 200 and r.json()["list"]["version"] == before + 2
    assert c.get("/api/v1/hotlists/stolen", params={"plate": "9QRS771"}).json()["entries"] == []
    old = c.get("/api/v1/hotlists/stolen", params={"plate": "9QRS771", "version": str(before + 1)}).json()
    assert [e["plate"] for e in old["entries"]] == ["9QRS771"] and old["can_manage"] is False
    every = c.get("/api/v1/hotlists/stolen", params={"plate": "9QRS771", "show": "all"}).json()["entries"]
    assert every[0]["removed_version"] == before + 2 and every[0]["active"] is False
    versions = [v["action"] for v in c.get("/api/v1/hotlists/stolen").json()["versions"]]
    assert versions[-2:] == ["add", "expire"]
    # an operator reads lists but may not change them; the form is not even shown
    o = sign_in(app, "otto")
    assert 'action="/hotlists/stolen/add"' not in o.get("/hotlists/stolen").text
    r = post(o, "/api/v1/hotlists/stolen/add", {"plate": "1AAA111", "reason": "x", "source_agency": "x",
                                                "source_ref": "x", "expires": expires})
    assert r.status_code == 403 and "may not change hotlists" in r.json()["error"]
    assert post(o, "/hotlists/stolen/add", {"plate": "1AAA111"}, csrf=False).status_code == 403   # no CSRF


def test_csv_import_is_atomic_and_names_bad_lines(app, world):
    c = sign_in(app, "sue")
    before = c.get("/api/v1/hotlists/stolen").json()["list"]
    exp = (world.clock() + dt.timedelta(days=10)).date().isoformat()
    bad = (f"plate,state,reason,agency,reference,expires,owner_name\n"
           f"2BBB222,CA,stolen vehicle,LAPD,R-1,{exp},Jane Roe\n"
           f"3C*C333,CA,stolen vehicle,LAPD,R-2,{exp},\n"
           f"2BBB222,CA,stolen vehicle,LAPD,R-3,{exp},\n"
           f"4DDD444,CA,stolen vehicle,LAPD,R-4,,\n").encode()
    files = {"file": ("list.csv", bad, "text/csv")}
    r = c.post("/api/v1/hotlists/stolen/import", data={"mode": "delta"}, files=files,
               headers={"x-csrf-token": csrf_of(c)})
    assert r.status_code == 400
    lines = {p["line"]: p["why"] for p in r.json()["problems"]}
    assert sorted(lines) == [3, 4, 5] and "as line 2" in lines[4] and "expires" in lines[5]
    page = c.post("/hotlists/stolen/import", data={"mode": "delta", "csrf": csrf_of(c)}, files=files)
    assert page.status_code == 400 and "Bad lines (nothing was imported)" in page.text
    assert "<td>3</td>" in page.text and "<td>5</td>" in page.text
    assert c.get("/api/v1/hotlists/stolen").json()["list"] == before       # nothing half-imported
    r = c.post("/hotlists/stolen/import", data={"mode": "delta", "skip_bad": "1", "csrf": csrf_of(c)}, files=files)
    assert r.status_code == 200 and "1 added" in r.text and "3 skipped" in r.text
    assert "owner_name" in r.text and "Jane Roe" not in r.text             # ignored, never stored
    now = c.get("/api/v1/hotlists/stolen", params={"plate": "2BBB222"}).json()
    assert now["list"]["version"] == before["version"] + 1 and len(now["entries"]) == 1
    o = sign_in(app, "otto")                                               # views lists, may not import
    r = o.post("/api/v1/hotlists/stolen/import", data={"mode": "delta"}, files=files,
               headers={"x-csrf-token": csrf_of(o)})
    assert r.status_code == 403 and "may not change hotlists" in r.json()["error"]


def test_hit_pages_are_in_the_openapi_document(app, world):
    doc = sign_in(app, "otto").get("/api/v1/openapi.json").json()
    for path in ("/api/v1/hits", "/api/v1/hits/{hit_id}", "/api/v1/hits/stream", "/api/v1/hotlists",
                 "/api/v1/hotlists/{name}"):
        assert path in doc["paths"], path
    for path in ("/api/v1/hits/{hit_id}/visual", "/api/v1/hits/{hit_id}/source", "/api/v1/hits/{hit_id}/disposition",
                 "/api/v1/hotlists/{name}/add", "/api/v1/hotlists/{name}/remove"):
        assert "post" in doc["paths"][path], path
    imp = doc["paths"]["/api/v1/hotlists/{name}/import"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in imp


def test_static_hits_script_is_served_from_the_package(app):
    r = client(app).get("/static/hits.js")
    assert r.status_code == 200 and "EventSource" in r.text and "textContent" in r.text and "innerHTML" not in r.text


def test_hits_list_shows_each_hits_crop_as_a_lazy_thumbnail_for_hit_viewers_only(app, world):
    hit_id = world.hits.hit()
    crop = base64.b64decode(sign_in(app, "otto").get(f"/api/v1/hits/{hit_id}",
                                                     params={"images": "1"}).json()["hit"]["crop_jpeg_base64"])
    for name in VIEWERS:
        c = sign_in(app, name)
        page = c.get("/hits").text
        assert (f'<img class="thumb" src="/hits/{hit_id}/thumb" loading="lazy" decoding="async" '
                f'alt="plate crop of hit {hit_id}">') in page, name
        assert c.get("/api/v1/hits").json()["hits"][0]["thumb"] == f"/hits/{hit_id}/thumb"
        for path in (f"/hits/{hit_id}/thumb", f"/api/v1/hits/{hit_id}/thumb"):
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", (name, path)
            assert r.content == crop and r.headers["cache-control"] == "no-store"
        assert c.get("/hits/999999/thumb").status_code == 404
    for name in NO_HITS:                                              # admin, field tech, business
        c = sign_in(app, name)
        for path in (f"/hits/{hit_id}/thumb", f"/api/v1/hits/{hit_id}/thumb"):
            r = c.get(path)
            assert r.status_code == 403 and crop not in r.content and b"\xff\xd8" not in r.content[:2], (name, path)
        assert log(world, "console-denied")[-1].user == name
    assert "/thumb" in sign_in(app, "otto").get("/static/hits.js").text   # live rows get their thumbnail too


def test_a_hit_upgraded_by_a_better_read_shows_it_and_refuses_a_check_of_the_old_image(app, world):
    at = world.clock() - dt.timedelta(hours=3)                        # a pass of its own
    first = world.hits.read("7A8C123", at=at)                         # B read as 8: a possible hit
    [hit_id] = world.hits.matcher.match_pending()
    c = sign_in(app, "otto")
    page = c.get(f"/hits/{hit_id}").text                              # the operator looks at the first image
    assert f'<input type="hidden" name="read_id" value="{first.read_id}">' in page
    better = world.hits.read(LISTED[0], at=at + dt.timedelta(seconds=8))  # the same car, read right
    assert world.hits.matcher.match_pending() == [hit_id]
    r = post(c, f"/hits/{hit_id}/visual", {"result": "yes", "read_id": first.read_id})
    assert r.status_code == 400 and "better read" in r.text and hit_row(world, hit_id) == (None, None, None)
    j = c.get(f"/api/v1/hits/{hit_id}").json()["hit"]
    assert (j["read_id"], j["match_kind"], j["upgrades"][0]["previous_read_id"]) == \
        (better.read_id, "exact", first.read_id)
    page = c.get(f"/hits/{hit_id}").text
    assert "Upgraded" in page and first.read_id in page
    r = post(c, f"/hits/{hit_id}/visual", {"result": "yes", "read_id": better.read_id})
    assert r.status_code == 200 and hit_row(world, hit_id) == ("yes", None, None)


def test_create_list_form_for_list_managers_refused_to_others(app, world):
    for name in ("sue", "ada"):                                       # supervisor, admin: manage-hotlist
        c = sign_in(app, name)
        page = c.get("/hotlists").text
        assert '<form method="post" action="/hotlists"' in page and 'name="category"' in page
        r = post(c, "/hotlists", {"name": f"bolo-{name}", "category": "bolo", "description": "BOLO, day shift"})
        assert r.status_code == 200 and f"List bolo-{name} created" in r.text
        listed = {x["name"]: x for x in c.get("/api/v1/hotlists").json()["lists"]}
        assert listed[f"bolo-{name}"]["category"] == "bolo" and listed[f"bolo-{name}"]["version"] == 0
        entry = log(world, "hotlist-create")[-1]                      # the record 'hotlist create' writes
        assert (entry.user, entry.detail) == (name, {"list": f"bolo-{name}", "category": "bolo"})
    c = sign_in(app, "sue")
    r = post(c, "/api/v1/hotlists", {"name": "bolo-sue", "category": "bolo"})
    assert r.status_code == 400 and "exists already" in r.json()["error"]
    r = post(c, "/hotlists", {"name": "svs-2", "category": "parking"})
    assert r.status_code == 400 and "not configured" in r.text
    r = post(c, "/api/v1/hotlists", {"name": "../etc", "category": "bolo"})
    assert r.status_code == 400 and "list name" in r.json()["error"]
    assert post(c, "/hotlists", {"name": "no-csrf", "category": "bolo"}, csrf=False).status_code == 403
    created = len(log(world, "hotlist-create"))
    for name in ("otto", "audrey", "tech", "pat"):                    # operator, auditor, field tech, business
        o = sign_in(app, name)
        assert '<form method="post" action="/hotlists"' not in o.get("/hotlists").text
        r = post(o, "/api/v1/hotlists", {"name": f"mine-{name}", "category": "bolo"})
        assert r.status_code == 403, name
        assert log(world, "console-denied")[-1].user == name
    assert len(log(world, "hotlist-create")) == created
    names = {x["name"] for x in sign_in(app, "sue").get("/api/v1/hotlists").json()["lists"]}
    assert not any(n.startswith("mine-") or n == "no-csrf" for n in names)
