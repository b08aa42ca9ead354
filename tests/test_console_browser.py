"""Each role's main flow in real headless Chromium (Debian's /usr/bin/chromium
driven by Playwright; Playwright never downloads a browser here) against a
real console served over HTTPS by uvicorn on a free loopback port, over a
central holding reads stored by the real collector. Keyboard only where the
issue asks for it (search)."""

from __future__ import annotations

import os
import shutil

import pytest

from central.console.server import ConsoleServer
from central.fleet.broker import free_port
from console_env import PASSWORD, ConsoleWorld
from test_enrollment_env import Clock

CHROMIUM = os.environ.get("ALPR_CHROMIUM", "/usr/bin/chromium")
playwright = pytest.importorskip("playwright.sync_api")

if not shutil.which(CHROMIUM):
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing and CI must run the browser tests (apt-get install chromium)",
                    pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    world = ConsoleWorld(tmp_path_factory.mktemp("browser"), clock=Clock(),
                         console=f'port = {free_port()}\nbind = "127.0.0.1"\n')
    clock = Clock()
    server = ConsoleServer(world.cfg, clock=clock).start()
    server.clock = clock
    yield world, server
    server.stop()
    world.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser, served):
    # The console's certificate is issued by central's own CA, which this throwaway browser profile does not trust.
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 720},
                              base_url=served[1].url)
    ctx.set_default_timeout(15_000)
    p = ctx.new_page()
    yield p
    ctx.close()


def sign_in(page, name: str, password: str = PASSWORD) -> None:
    page.goto("/sign-in")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def test_operator_searches_by_keyboard_and_opens_a_read(page, served):
    world, _ = served
    sign_in(page, "otto")
    assert page.url.endswith("/search")
    # Without a purpose the browser's own check stops the form; the server refuses it too (below).
    page.get_by_label("Plate").fill("7AB*")
    page.get_by_label("Match").select_option("wildcard")
    page.get_by_label("Time").select_option("7d")
    page.get_by_label("Case or incident number").fill("26-004512")
    page.get_by_label("Purpose").focus()
    page.keyboard.press("ArrowDown")          # the first purpose, chosen by keyboard
    with page.expect_navigation():
        page.get_by_label("Case or incident number").press("Enter")
    assert page.get_by_role("status").first.inner_text().startswith("Reads 1–12 of 12")
    assert page.locator("img.crop").count() == 12
    assert page.locator("img.crop").first.evaluate("i => i.naturalWidth") > 0    # the crops really render
    link = page.get_by_role("link", name="Open read").first
    link.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/reads/" in page.url
    assert page.locator("h2.plate").inner_text() in ("7ABC123", "7ABD123")
    assert page.locator("svg.map").count() == 1 and page.locator("img.context").count() == 1


def test_search_without_purpose_is_refused_by_the_server(page, served):
    sign_in(page, "otto")
    page.goto("/search?plate=7ABC123&submitted=1&case=26-1")
    assert "a purpose is required" in page.locator("p.error").inner_text()
    assert page.locator("img.crop").count() == 0


def test_operator_opening_admin_and_auditor_urls_is_refused(page, served):
    sign_in(page, "otto")
    for path in ("/fleet", "/audit/log", "/accounts"):
        response = page.goto(path)
        assert response.status == 403 and "may not" in page.locator("p.error").inner_text()


def test_a_form_posted_without_its_csrf_token_is_refused(page, served):
    sign_in(page, "sue")
    page.goto("/approvals")
    page.locator('form[action="/approvals/hold"] input[name="csrf"]').first.evaluate("e => e.remove()")
    with page.expect_navigation():
        page.get_by_role("button", name="Approve hold").first.click()
    assert "CSRF" in page.content()


def test_supervisor_approves_a_hold(page, served):
    sign_in(page, "sue")
    assert page.url.endswith("/search")
    with page.expect_navigation():
        page.get_by_role("link", name="Approvals").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Approve hold").first.click()
    assert "approved" in page.locator("p.notice").inner_text(), page.content()[:3000]


def test_field_tech_sees_the_fleet_and_creates_a_token(page, served):
    world, _ = served
    sign_in(page, "tech")
    assert page.url.endswith("/fleet")
    assert page.locator("svg.map circle").count() == 4
    for device in world.devices.values():
        assert page.locator(f"#dev-{device}").count() == 1
    with page.expect_navigation():
        page.get_by_role("link", name="Enrollment").click()
    page.get_by_label("Cameras (ID:SOURCE, comma separated)").fill("lane-1:picamera2")
    page.get_by_label("Location").fill("Elm St")
    with page.expect_navigation():
        page.get_by_role("button", name="Create token").click()
    token, command = page.locator("pre").all_inner_texts()
    assert token.startswith("alpr1.")  # the one-time token, shown once
    assert "alpr-edge provision --central" in command and "--token-file -" in command and token not in command


def test_business_sees_only_its_own_cameras(page, served):
    world, _ = served
    sign_in(page, "pat")
    assert page.url.endswith("/business")
    text = page.content()
    assert world.devices["acme"] in text and world.devices["bobs"] not in text and world.devices["dept"] not in text
    assert page.goto("/business?business=bobs").status == 403


def test_auditor_filters_the_access_log_and_verifies(page, served):
    sign_in(page, "audrey")
    assert page.url.endswith("/audit/log")
    page.get_by_label("User").fill("otto")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    users = page.locator("table.log tbody tr td:nth-child(3)").all_inner_texts()
    assert users and set(users) == {"otto"}
    with page.expect_navigation():
        page.get_by_role("link", name="Verify").click()
    assert "The chain is intact" in page.get_by_role("status").first.inner_text()


def test_a_session_past_its_idle_timeout_is_signed_out(page, served):
    _, server = served
    sign_in(page, "otto")
    assert page.url.endswith("/search")
    server.clock.advance(minutes=16)
    page.goto("/search")
    assert "/sign-in" in page.url and "Your session ended" in page.content()
    server.clock.advance(days=1)   # later tests sign in afresh


def test_an_upgraded_hit_changes_in_the_live_list(page, served):
    """A possible (confusable) hit arrives live; a better read of the same pass upgrades it, and its row
    shows the exact match, the read text and the new crop without a reload."""
    import datetime as dt

    from hits_env import LISTED, HitWorld
    world, _ = served
    hits = HitWorld(world)
    try:
        sign_in(page, "otto")
        with page.expect_navigation():
            page.get_by_role("link", name="Live hits").click()
        page.locator("#live-status", has_text="Live:").wait_for()
        at = world.clock() - dt.timedelta(hours=5)                    # a pass of its own
        hits.read("7A8C123", at=at)                                    # B read as 8
        [hit_id] = hits.matcher.match_pending()
        row = page.locator(f'#hits-live tr[data-hit-id="{hit_id}"]')
        row.get_by_role("link", name=f"Open hit {hit_id}").wait_for()
        assert "possible · confusable" in row.locator("td.match").inner_text()
        better = hits.read(LISTED[0], at=at + dt.timedelta(seconds=6))
        assert hits.matcher.match_pending() == [hit_id]
        row.locator("td.match", has_text="exact").wait_for()
        assert row.locator("td.read").inner_text() == LISTED[0]
        assert f"Hit {hit_id} upgraded" in page.locator("#live-status").inner_text()
        assert better.read_id in row.locator("img.thumb").get_attribute("src")
        assert page.locator(f'#hits-live tr[data-hit-id="{hit_id}"]').count() == 1   # still one row, one hit
    finally:
        hits.close()


def test_operator_sees_a_hit_arrive_live_and_verifies_it_by_keyboard(page, served):
    """The hits page is open; a listed plate is read (sealed by its device, stored by the collector, matched
    by the matcher); the hit appears at the top of the table without a reload (server-sent events), and the
    operator completes the three steps with the keyboard alone."""
    from hits_env import LISTED, HitWorld
    world, _ = served
    hits = HitWorld(world)
    try:
        sign_in(page, "otto")
        with page.expect_navigation():
            page.get_by_role("link", name="Live hits").click()
        # (not wait_for_function: its polling evaluates a string, which the console's CSP refuses)
        page.locator("#live-status", has_text="Live:").wait_for()
        shown = page.locator("#hits-live tr").count()
        hit_id = hits.hit(LISTED[0])
        row = page.locator("#hits-live tr").first
        row.get_by_role("link", name=f"Open hit {hit_id}").wait_for()          # arrived live, no reload
        assert page.locator("#hits-live tr").count() == shown + 1
        assert row.locator("td.plate").first.inner_text() == LISTED[0]
        assert "unverified" in row.inner_text()
        assert f"New hit {hit_id}" in page.locator("#live-status").inner_text()
        # its crop's thumbnail, fetched from /hits/ID/thumb under the session, decodes
        thumb = row.locator("img.thumb")
        for _ in range(300):                                                  # up to 15 s on a loaded machine
            if thumb.evaluate("i => i.complete && i.naturalWidth"):
                break
            page.wait_for_timeout(50)
        assert thumb.evaluate("i => i.naturalWidth") > 0
        # keyboard only from here: open the hit, confirm the image, the source, and dispatch
        row.get_by_role("link", name=f"Open hit {hit_id}").focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url.endswith(f"/hits/{hit_id}")
        assert page.locator("img.crop-big").evaluate("i => i.naturalWidth") > 0
        assert page.locator("img.context").evaluate("i => i.naturalWidth") > 0
        page.get_by_role("button", name=f"Yes, the image shows {LISTED[0]}").focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "Visual check recorded." in page.get_by_role("status").first.inner_text()
        page.get_by_label("Note (who confirmed it, how; recorded)").focus()
        page.keyboard.type("LAPD records confirm, Ofc. 4411")
        page.keyboard.press("Tab")                                           # to "Yes, ... still wanted"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "Source check recorded." in page.get_by_role("status").first.inner_text()
        assert page.get_by_label("Disposition").input_value() == "dispatched"   # offered first once actionable
        page.get_by_label("Disposition").focus()
        page.keyboard.press("Tab")
        page.keyboard.type("unit 3A dispatched")
        page.keyboard.press("Tab")                                           # to "Close hit N"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "Hit closed." in page.get_by_role("status").first.inner_text()
        assert "dispatched — otto" in page.locator("ol.steps").inner_text()
    finally:
        hits.close()
