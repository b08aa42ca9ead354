"""Confirming or correcting a read from its console page (and the JSON twin)
over a real central on each backend: the labelled example, the access log, CSRF and
roles."""

from __future__ import annotations

import re

import pytest

from central.console.app import create_app
from console_env import make_world
from test_console import WHY, csrf_of, log, sign_in


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    """The console's central on each backend (PostgreSQL: a fresh migrated database)."""
    w = make_world(request, tmp_path_factory, "console-labels")
    yield w
    w.close()


@pytest.fixture
def app(world):
    a = create_app(world.cfg, clock=world.clock)
    yield a
    a.close()


def examples(world, read_id):
    store = world.env.store()
    try:
        return store.db.execute("SELECT source, read_text, true_text, labelled_by FROM labelled_examples "
                                "WHERE read_id = ? ORDER BY example_id", [read_id]).fetchall()
    finally:
        store.close()


def plate_of(page_text: str) -> str:
    return re.search(r'<h2 class="plate big">([A-Z0-9]+)</h2>', page_text).group(1)


def test_an_operator_confirms_then_corrects_a_read_from_its_page(app, world):
    c = sign_in(app, "otto")
    rid = world.read_ids[1]
    page = c.get(f"/reads/{rid}", params=WHY)
    assert page.status_code == 200 and f'action="/reads/{rid}"' in page.text and 'name="text"' in page.text
    plate = plate_of(page.text)
    r = c.post(f"/reads/{rid}", data={**WHY, "text": plate.lower(), "csrf": csrf_of(c)})
    assert r.status_code == 200 and f"Confirmed: the image shows {plate}." in r.text
    corrected = plate[:-1] + ("8" if plate[-1] != "8" else "3")
    r = c.post(f"/api/v1/reads/{rid}", data={**WHY, "text": corrected}, headers={"x-csrf-token": csrf_of(c)})
    assert r.status_code == 200 and r.json()["label"]["result"] == "corrected"
    assert examples(world, rid) == [("search-corrected", plate, corrected, "otto")]   # the second replaced the first
    assert [e.detail["result"] for e in log(world, "read-label") if e.detail["read_id"] == rid] == \
        ["confirmed", "corrected"]


def test_confirming_from_the_console_needs_csrf_purpose_and_a_role_that_searches(app, world):
    rid = world.read_ids[2]
    c = sign_in(app, "otto")
    assert c.post(f"/api/v1/reads/{rid}", data={**WHY, "text": "7ABC123"}).status_code == 403   # no CSRF token
    r = c.post(f"/api/v1/reads/{rid}", data={"text": "7ABC123"}, headers={"x-csrf-token": csrf_of(c)})
    assert r.status_code == 400 and "purpose is required" in r.json()["error"]
    for who in ("audrey", "pat", "ada"):
        o = sign_in(app, who)
        r = o.post(f"/api/v1/reads/{rid}", data={**WHY, "text": "7ABC123"}, headers={"x-csrf-token": csrf_of(o)})
        assert r.status_code == 403, who
    assert examples(world, rid) == []
