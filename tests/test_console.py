"""The console in-process (Starlette's test client over HTTPS URLs, a real
SQLite central built by the CLI, reads stored by the real collector): sign-in,
sessions and their timeouts, lockout, CSRF, and every role's permissions in
the pages and their JSON twins."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from starlette.testclient import TestClient

from central.console.app import SESSION_COOKIE, create_app
from central.governance.audit import AccessLog, verify
from console_env import PASSWORD, ConsoleWorld, make_world
from test_enrollment_env import Clock

WHY = {"purpose": "stolen-vehicle", "case": "26-004512"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    """The console's central on each backend (PostgreSQL: a fresh migrated database)."""
    w = make_world(request, tmp_path_factory, "console")
    yield w
    w.close()


@pytest.fixture
def app(world):
    """A console with its own clock (``app.clock.advance``) starting now."""
    a = create_app(world.cfg, clock=Clock())
    yield a
    a.close()


def client(app) -> TestClient:
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


def sign_in(app, name: str, password: str = PASSWORD) -> TestClient:
    c = client(app)
    page = c.get("/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = c.post("/sign-in", data={"name": name, "password": password, "csrf": csrf})
    assert r.status_code == 303, r.text
    return c


def csrf_of(c: TestClient, path: str = "/") -> str:
    return c.get("/api/v1/me").json()["csrf"]


def log(world, action: str) -> list:
    store = world.env.store()
    try:
        return AccessLog(store.db.conn).entries(action=action)
    finally:
        store.close()


def test_sign_in_sets_a_hardened_session_cookie_and_is_logged(app, world):
    c = client(app)
    page = c.get("/sign-in")
    assert 'autocomplete="current-password"' in page.text and "<label for=\"password\"" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    before = len(log(world, "sign-in"))
    r = c.post("/sign-in", data={"name": "otto", "password": PASSWORD, "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)][0].lower()
    for flag in ("secure", "httponly", "samesite=strict", "path=/"):
        assert flag in cookie
    assert len(log(world, "sign-in")) == before + 1
    assert c.get("/").headers["location"] == "/search"             # the operator's start page
    headers = c.get("/search").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["referrer-policy"] == "same-origin"


def test_sign_in_form_without_its_token_is_refused(app):
    c = client(app)
    c.get("/sign-in")
    assert c.post("/sign-in", data={"name": "otto", "password": PASSWORD}).status_code == 403


def test_wrong_passwords_lock_the_account_and_are_logged_without_the_password(app, world):
    c = client(app)
    failures = len(log(world, "sign-in-failed"))
    for _ in range(3):   # lockout_failures = 3
        page = c.get("/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = c.post("/sign-in", data={"name": "sam", "password": "not the password at all", "csrf": csrf})
        assert r.status_code == 401 and "sign-in failed" in r.text
    page = c.get("/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = c.post("/sign-in", data={"name": "sam", "password": PASSWORD, "csrf": csrf})
    assert r.status_code == 401                                     # locked: even the right password fails
    entries = log(world, "sign-in-failed")[failures:]
    assert [e.detail["reason"] for e in entries] == ["wrong password"] * 3 + ["account locked"]
    assert log(world, "account-locked")[-1].user == "sam"
    store = world.env.store()
    text = "\n".join(str(r) for r in store.db.execute("SELECT * FROM audit_log").fetchall())
    store.close()
    assert "not the password" not in text and PASSWORD not in text
    app.clock.advance(minutes=31)                                 # lockout_minutes = 30
    sign_in(app, "sam")


def test_failed_sign_ins_from_one_address_are_rate_limited(world):
    app = create_app(world.cfg)
    app.throttle.per_minute = 2
    c = client(app)
    codes = []
    for _ in range(3):
        page = c.get("/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        codes.append(c.post("/sign-in", data={"name": "nobody", "password": "x" * 12, "csrf": csrf}).status_code)
    assert codes == [401, 401, 429]
    app.close()


def test_session_ends_after_idle_and_absolute_timeouts(app, world):
    c = sign_in(app, "otto")
    assert c.get("/search").status_code == 200
    app.clock.advance(minutes=16)                                 # idle 15 min
    r = c.get("/search")
    assert r.status_code == 303 and r.headers["location"].startswith("/sign-in")
    assert c.get("/api/v1/search").status_code == 401
    assert log(world, "session-expired")[-1].detail["reason"] == "idle"
    c = sign_in(app, "otto")
    for _ in range(8 * 6 + 1):                                      # active every 10 min, past 8 h
        app.clock.advance(minutes=10)
        if c.get("/search").status_code != 200:
            break
    assert c.get("/search").status_code == 303
    assert log(world, "session-expired")[-1].detail["reason"] == "absolute"


def test_sign_out_ends_the_session(app):
    c = sign_in(app, "otto")
    token = c.cookies.get(SESSION_COOKIE)
    r = c.post("/sign-out", data={"csrf": csrf_of(c)})
    assert r.status_code == 303
    assert client(app).get("/api/v1/me", headers={"cookie": f"{SESSION_COOKIE}={token}"}).status_code == 401


def test_search_without_purpose_or_case_is_refused_in_page_and_api(app, world):
    c = sign_in(app, "otto")
    refused = len(log(world, "search-refused"))
    page = c.get("/search", params={"plate": "7ABC123", "submitted": "1", "case": "26-1"})
    assert page.status_code == 400 and "purpose is required" in page.text and "7ABC123</td>" not in page.text
    api = c.get("/api/v1/search", params={"plate": "7ABC123", "purpose": "stolen-vehicle"})
    assert api.status_code == 400 and "case or incident number" in api.json()["error"]
    assert "results" not in api.json()
    assert len(log(world, "search-refused")) == refused + 2


def test_search_pages_show_crops_and_what_is_left(app, world):
    c = sign_in(app, "otto")
    page = c.get("/search", params={"plate": "7AB*", "match": "wildcard", "range": "7d", **WHY})
    assert page.status_code == 200
    assert page.text.count('src="data:image/jpeg;base64,') >= 1
    assert "Map of the reads on this page" in page.text and 'class="pt pt-read"' in page.text
    data = c.get("/api/v1/search", params={"plate": "7AB*", "match": "wildcard", "range": "7d", **WHY}).json()
    res = data["results"]
    assert {r["plate"] for r in res["reads"]} == {"7ABC123", "7ABD123"}
    assert res["matched"] == 12 and res["remaining"] == 0
    assert "_crop" not in res["reads"][0] and res["reads"][0]["crop_url"].startswith("/api/v1/reads/")
    small = c.get("/api/v1/search", params={"range": "7d", **WHY}).json()["results"]   # 25 a page of 36
    assert (len(small["reads"]), small["matched"], small["remaining"]) == (25, 36, 11)
    second = c.get("/api/v1/search", params={"range": "7d", "page": "2", **WHY}).json()["results"]
    assert len(second["reads"]) == 11 and second["remaining"] == 0
    assert not {r["read_id"] for r in small["reads"]} & {r["read_id"] for r in second["reads"]}
    tolerant = c.get("/api/v1/search", params={"plate": "7A8C1Z3", "match": "tolerant", "range": "7d", **WHY})
    assert {r["plate"] for r in tolerant.json()["results"]["reads"]} == {"7ABC123"}
    last_hour = c.get("/api/v1/search", params={"range": "last 1 h", **WHY}).json()["results"]
    hour_ago = app.clock() - dt.timedelta(hours=1)
    assert last_hour["matched"] == sum(t >= hour_ago for t in world.read_times) >= 1
    cam = c.get("/api/v1/search", params={"range": "7d", "camera": f"{world.devices['acme']}/lane-1", **WHY})
    assert {r["device_id"] for r in cam.json()["results"]["reads"]} == {world.devices["acme"]}


def test_read_detail_and_images_need_purpose_and_are_logged(app, world):
    c = sign_in(app, "otto")
    rid = world.read_ids[0]
    views = len(log(world, "read-view"))
    page = c.get(f"/reads/{rid}", params=WHY)
    assert page.status_code == 200 and "<svg" in page.text and "Alternates" in page.text
    assert len(log(world, "read-view")) == views + 1
    img = c.get(f"/api/v1/reads/{rid}/crop", params=WHY)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg" and img.content[:2] == b"\xff\xd8"
    assert log(world, "image-view")[-1].detail == {"read_id": rid, "part": "crop"}
    assert c.get(f"/api/v1/reads/{rid}/context").status_code == 400
    assert c.get(f"/reads/{rid}").status_code == 400


@pytest.mark.parametrize("path", ["/fleet", "/audit/log", "/audit/verify", "/audit/devices", "/accounts",
                                  "/enrollment", "/approvals", "/sharing", "/reports", "/business", "/alerts"])
def test_an_operator_is_refused_admin_and_auditor_pages_in_page_and_api(app, world, path):
    c = sign_in(app, "otto")
    denied = len(log(world, "console-denied"))
    page = c.get(path)
    assert page.status_code == 403 and "may not" in page.text
    assert c.get("/api/v1" + path).status_code == 403
    assert len(log(world, "console-denied")) == denied + 2
    assert f'href="{path}"' not in c.get("/search").text             # nor in the navigation


@pytest.mark.parametrize("who", ["ada", "audrey", "tech", "pat"])
def test_only_operators_and_supervisors_search(app, who):
    c = sign_in(app, who)
    assert c.get("/api/v1/search", params={"range": "7d", **WHY}).status_code == 403
    assert c.get(f"/api/v1/reads/x/crop", params=WHY).status_code == 403


def test_a_business_sees_only_its_own_devices(app, world):
    c = sign_in(app, "pat")
    assert c.get("/").headers["location"] == "/business"
    data = c.get("/api/v1/business").json()
    assert [d["device_id"] for d in data["devices"]] == [world.devices["acme"]]
    assert data["business"]["business_id"] == "acme"
    page = c.get("/business").text
    assert world.devices["acme"] in page and world.devices["bobs"] not in page and world.devices["dept"] not in page
    assert c.get("/api/v1/business", params={"business": "bobs"}).status_code == 403
    fleet = c.get("/api/v1/fleet").json()                            # the fleet view, narrowed by the registry
    assert [d["device_id"] for d in fleet["devices"]] == [world.devices["acme"]]
    assert "plate" not in str(data["devices"]).lower()


def test_fleet_for_field_techs_and_admins(app, world):
    for who in ("tech", "ada", "audrey"):
        data = sign_in(app, who).get("/api/v1/fleet").json()
        assert {d["device_id"] for d in data["devices"]} == set(world.devices.values())
        assert all(d["status"] == "active" and d["cert_days_left"] > 300 for d in data["devices"])
        assert data["online"] == 4                                   # every device sent a read minutes ago
    page = sign_in(app, "tech").get("/fleet").text
    assert '<svg class="map"' in page and "plain basemap" in page
    # once the broker reports a device offline (its last will), that wins over recent reads
    from central.fleet.device_status import DeviceStatusHandler
    handler = DeviceStatusHandler(world.env.database)
    device = world.devices["dept2"]
    handler.handle(f"alpr/v1/devices/{device}/status", b"offline")
    handler.close()
    data = sign_in(app, "tech").get("/api/v1/fleet").json()
    row = {d["device_id"]: d for d in data["devices"]}[device]
    assert row["connection"] == "offline" and row["online"] is False and data["online"] == 3
    # each device's audit-log state, from the seqs central holds (gaps shown; signatures on Device logs)
    from central.store.database import connect
    db = connect(world.env.database)
    with db:
        db.executemany("INSERT INTO device_audit VALUES (?,?,?,?)",
                       [(device, seq, "{}", "2026-12-01T10:00:0%d.000000Z" % seq) for seq in (1, 2, 4)])
    db.close()
    data = sign_in(app, "tech").get("/api/v1/fleet").json()
    rows = {d["device_id"]: d for d in data["devices"]}
    assert (rows[device]["audit_records"], rows[device]["audit_range"], rows[device]["audit_missing"]) == (3, "1-4", 1)
    assert rows[world.devices["acme"]]["audit_records"] == 0
    page = sign_in(app, "tech").get("/fleet").text
    assert "3 records (seq 1-4)" in page and "1 missing" in page and "none received" in page


def test_state_changes_need_the_csrf_token(app, world):
    c = sign_in(app, "sue")
    hold = c.get("/api/v1/approvals").json()["holds"][0]
    r = c.post("/approvals/hold", data={"hold_id": str(hold["hold_id"])})
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post("/approvals/hold", data={"hold_id": str(hold["hold_id"]), "csrf": "forged"})
    assert r.status_code == 403
    r = c.post("/approvals/hold", data={"hold_id": str(hold["hold_id"]), "csrf": csrf_of(c)},
               headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    assert c.get("/api/v1/approvals").json()["holds"][0]["status"] == "pending"
    assert log(world, "console-denied")[-1].detail["reason"].startswith("CSRF")
    r = c.post("/approvals/hold", data={"hold_id": str(hold["hold_id"]), "csrf": csrf_of(c)})
    assert r.status_code == 200 and "approved" in r.text
    assert c.get("/api/v1/approvals").json()["holds"] == []
    assert log(world, "hold-approve")[-1].user == "sue"


def test_sharing_request_decided_by_another_supervisor(app, world):
    otto_req = sign_in(app, "sam").get("/api/v1/approvals").json()["requests"][0]
    assert otto_req["own"] is False
    c = sign_in(app, "sam")
    r = c.post("/api/v1/approvals/share", data={"request_id": str(otto_req["request_id"]), "decision": "approve",
                                                "note": "checked the agreement"},
               headers={"x-csrf-token": csrf_of(c)})
    assert r.status_code == 200 and r.json()["requests"] == []


def test_bearer_tokens_work_for_the_api_without_csrf(app, world):
    c = client(app)
    auth = {"authorization": f"Bearer {world.env.tokens['otto']}"}
    assert c.get("/api/v1/me", headers=auth).json()["role"] == "operator"
    assert c.get("/api/v1/search", params={"range": "7d", **WHY}, headers=auth).status_code == 200
    assert c.get("/api/v1/search", headers={"authorization": "Bearer alpr_nope"}).status_code == 401


def test_auditor_pages_filter_verify_and_report(app, world):
    app.clock.advance(days=1)   # past the entries other tests' clocks dated ahead (verify names those)
    c = sign_in(app, "audrey")
    entries = c.get("/api/v1/audit/log", params={"purpose": "stolen-vehicle", "case": "26-004512"}).json()["entries"]
    assert entries and all(e["purpose"] == "stolen-vehicle" and e["case_number"] == "26-004512" for e in entries)
    assert all(e["user"] == "otto" for e in c.get("/api/v1/audit/log", params={"user": "otto"}).json()["entries"])
    v = c.get("/api/v1/audit/verify").json()
    assert v["ok"] and v["issues"] == []
    seq, h = v["head"].split(":")
    bad = c.get("/api/v1/audit/verify", params={"expect_head": f"{seq}:{'0' * 64}"}).json()
    assert not bad["ok"] and bad["issues"][0]["kind"] == "broken"
    devices = c.get("/api/v1/audit/devices").json()["devices"]
    assert {d["device_id"] for d in devices} == set(world.devices.values())
    assert all(not d["ok"] and d["issues"][0]["kind"] == "gap" for d in devices)   # no device log received yet
    assert c.get("/api/v1/sharing").json()["agreements"][0]["agreement_id"] == "AGR-LASD"
    rep = c.get("/api/v1/reports", params={"period": str(world.clock().year)}).json()
    assert rep["report"]["searches_total"] >= 1
    assert rep["report"]["labelled_set"]["past_deletion_date"] == 0
    page = c.get("/reports", params={"period": str(world.clock().year)}).text
    assert f"Labelled examples held</dt><dd>{rep['report']['labelled_set']['examples']} (" in page
    assert c.get("/api/v1/reports", params={"period": "garbage"}).status_code == 400
    store = world.env.store()
    try:
        assert verify(store.db.conn, now=app.clock()).ok                # everything above kept the chain
    finally:
        store.close()


def test_supervisors_review_accounts(app):
    data = sign_in(app, "sue").get("/api/v1/accounts").json()
    names = {u["name"]: u for u in data["users"]}
    assert names["otto"]["has_password"] and names["otto"]["role"] == "operator"


def test_openapi_document_lists_every_api_path(app):
    doc = client(app).get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/search", "/api/v1/reads/{read_id}", "/api/v1/fleet", "/api/v1/audit/log",
                 "/api/v1/business", "/api/v1/reads/{read_id}/crop"):
        assert path in doc["paths"]
    assert "post" in doc["paths"]["/api/v1/approvals/share"]


def test_static_assets_are_served_by_the_package(app):
    css = client(app).get("/static/console.css")
    assert css.status_code == 200 and "font" in css.text


def test_a_business_withdraws_with_confirmation(tmp_path):
    world = ConsoleWorld(tmp_path, clock=Clock())
    app = create_app(world.cfg)
    try:
        c = sign_in(app, "bob")
        r = c.post("/business/withdraw", data={"confirm": "acme", "csrf": csrf_of(c)})
        assert r.status_code == 400 and "type the business id" in r.text
        r = c.post("/business/withdraw", data={"confirm": "bobs", "csrf": csrf_of(c)})
        assert r.status_code == 200 and "has withdrawn" in r.text
        assert c.get("/api/v1/business").status_code == 401              # bob's account ends with it
        admin = sign_in(app, "ada").get("/api/v1/fleet").json()
        assert {d["device_id"]: d["status"] for d in admin["devices"]}[world.devices["bobs"]] == "suspended"
        assert {d["device_id"]: d["status"] for d in admin["devices"]}[world.devices["acme"]] == "active"
    finally:
        app.close()
        world.close()


def test_a_user_changes_their_own_password_in_the_browser(tmp_path):
    world = ConsoleWorld(tmp_path, clock=Clock())
    app = create_app(world.cfg)
    try:
        c = sign_in(app, "otto")
        form = {"current": PASSWORD, "new": "a brand new passphrase", "confirm": "a brand new passphrase"}
        assert c.post("/account/password", data=form).status_code == 403               # no CSRF token
        csrf = csrf_of(c)
        bad = c.post("/account/password", data={**form, "current": "wrong wrong wrong", "csrf": csrf})
        assert bad.status_code == 400 and "current password is wrong" in bad.text
        assert log(world, "sign-in-failed")[-1].detail["reason"] == "wrong current password"
        differ = c.post("/account/password", data={**form, "confirm": "something else!!", "csrf": csrf})
        assert differ.status_code == 400 and "differ" in differ.text
        r = c.post("/account/password", data={**form, "csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/sign-in?note=changed"
        assert c.get("/api/v1/me").status_code == 401                                   # signed out
        sign_in(app, "otto", "a brand new passphrase")
        assert log(world, "password-set")[-1].user == "otto"
    finally:
        app.close()
        world.close()
