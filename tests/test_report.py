"""The transparency report: figures from the store and the access log, a
self-contained HTML page rendered in headless Chromium, and its JSON twin."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from central.cli import main
from central.config import Sharing
from central.governance.report import parse_period
from central.governance.retention import Governor
from central.governance.search import search
from central.governance.sharing import SharingRegistry
from central.store import Search
from test_governance_support import listed, PURPOSES, world  # noqa: F401

Q3 = dt.datetime(2026, 8, 15, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def test_parse_period():
    assert parse_period("2026-Q3") == (dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc),
                                       dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc))
    assert parse_period("2026-Q4")[1] == dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_period("2026-12") == (dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
                                       dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    assert parse_period("2026")[1].year == 2027
    for bad in ("2026-Q5", "2026-13", "Q3", ""):
        with pytest.raises(ValueError):
            parse_period(bad)


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed, and CI must render the transparency report (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); the HTML rendering check is skipped")


@pytest.fixture
def populated(world):
    """A quarter of activity: reads (one a hit), searches by purpose, one
    refused search, one disclosure, one purge."""
    w = world
    w.clock.now = Q3
    for i, plate in enumerate(["7ABC123", "8XYZ999", "5KLM456"]):
        w.add_read(plate, Q3 - (i + 1) * DAY, device="cam-a" if i else "cam-b")
    w.add_read("OUTSIDE1", dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc))   # Q2: not counted
    gov = Governor(w.conn, clock=w.clock)
    listed(w, "7ABC123", added_at=Q3 - 30 * DAY, expires_at=Q3 + 30 * DAY)
    from central.hotlist.matcher import Matcher
    matcher = Matcher(w.database, clock=w.clock)
    assert len(matcher.match_pending()) == 1  # the listed plate's read raises a hit
    matcher.close()
    for purpose, n in (("stolen-vehicle", 2), ("criminal-investigation", 1)):
        for _ in range(n):
            search(w.store, Search(plate="7AB*"), user=w.operator, purpose=purpose, case_number="C-1",
                   purposes=PURPOSES, now=Q3)
    with pytest.raises(Exception):
        search(w.store, Search(plate="7AB*"), user=w.operator, purpose=None, case_number="C-1", purposes=PURPOSES,
               now=Q3)
    reg = SharingRegistry(w.conn, Sharing(), purposes=PURPOSES, clock=w.clock)
    reg.add_agreement(w.admin, agreement_id="MOU-1", agency="Glendale Police Department", agency_type="public-agency",
                      jurisdiction="CA", effective_on=Q3.date() - 10 * DAY, expires_on=Q3.date() + 10 * DAY)
    from central.governance.bundle import Ed25519PrivateKey
    req = reg.request(w.operator, agreement_id="MOU-1", requesting_person="Det. Diaz", case_number="G-1",
                      purpose="stolen-vehicle", plates=["7ABC123"], since=Q3 - 5 * DAY, until=Q3)
    reg.decide(w.supervisor, req.request_id, approve=True)
    return w, reg, req, Ed25519PrivateKey.generate()


def test_transparency_report_renders_in_chromium(populated, tmp_path, monkeypatch):
    w, reg, req, key = populated
    reg.export(w.supervisor, req.request_id, w.store, tmp_path / "b.zip", key)
    Governor(w.conn, clock=w.clock).purge(w.admin)
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n' + w.store_toml +
                   '[query]\npurposes = ["stolen-vehicle", "criminal-investigation"]\n'
                   '[policy]\nagency = "City of Example Police"\ncustodian = "Lt. A. Custodian"\n')
    monkeypatch.setenv("ALPR_TOKEN", w.tokens["audrey"])
    res = CliRunner().invoke(main, ["report", "transparency", "--config", str(cfg), "--period", "2026-Q3",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "out" / "transparency-2026-Q3.json").read_text())
    assert (data["reads"], data["hits"], data["searches_total"], data["searches_refused"]) == (3, 1, 3, 1)
    assert data["searches_by_purpose"] == [{"purpose": "criminal-investigation", "searches": 1, "results": 1},
                                           {"purpose": "stolen-vehicle", "searches": 2, "results": 2}]
    assert data["sharing_by_recipient"][0]["agency"] == "Glendale Police Department"
    assert data["cameras_total"] == 2 and data["purges"]["runs"] == 1
    assert data["policy"]["retention_days"]["non-hit reads"] == 730
    assert data["policy"]["retention_days"]["access logs"] == 1825
    html_path = tmp_path / "out" / "transparency-2026-Q3.html"
    page = html_path.read_text()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    for plate in ("7ABC123", "8XYZ999"):
        assert plate not in page   # a transparency report carries figures, never plates

    exe = chromium_binary()
    profile = tmp_path / "chromium-profile"
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={profile}", "--dump-dom", html_path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert out.returncode == 0 and "</html>" in dom, out.stderr[-2000:]
    assert re.search(r'id="kpi-reads"><b>3</b>', dom) and re.search(r'id="kpi-hits"><b>1</b>', dom)
    searches = dom[dom.index('id="chart-searches"'):]
    searches = searches[:searches.index("</figure>")]
    assert "<svg" in searches and ">stolen-vehicle</text>" in searches and ">2</text>" in searches
    assert ">criminal-investigation</text>" in searches and ">1</text>" in searches
    sharing = dom[dom.index('id="chart-sharing"'):]
    # one recipient: the figure in words, not a one-bar chart
    assert "<b class=\"figure\">1</b> Glendale Police Department (MOU-1): the only one in this period" in \
        sharing[:sharing.index("</figure>")]
    refusals = dom[dom.index('id="chart-searches-refused"'):]
    assert "<b>1</b> refused (25%)" in refusals[:refusals.index("</figure>")]
    assert re.search(r'id="kpi-refused"><b>1</b>', dom)
    assert "Lt. A. Custodian" in dom and "City of Example Police" in dom
    assert "Searches refused (no or unauthorized purpose, no case number, no permission): 1" in dom
    # And the charts are drawn: the screenshot holds the bars' colour.
    shot = tmp_path / "page.png"
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                          f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=900,2600",
                          html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    import cv2
    import numpy as np
    img = cv2.imread(str(shot))
    bars = np.all(np.abs(img.astype(int) - np.array([159, 111, 47])) <= 8, axis=2).sum()
    assert bars > 2000, f"only {bars} bar-coloured pixels in the screenshot"


def test_cameras_by_owner_come_from_the_registry(populated, tmp_path):
    from central.config import CentralConfig, Policy
    from central.governance.report import build
    w, *_ = populated
    at = "2026-08-01T00:00:00.000000Z"
    w.conn.execute("INSERT INTO businesses (business_id, name, contact_name, contact_email, contact_phone, mou_id, "
                   "shared_data, share_with, retention_days, consent_at, status, enrolled_at, enrolled_by) "
                   "VALUES ('bobs', 'Bob''s Garage', 'Bob', 'b@x', '1', 'MOU-B', 'reads', 'PD', 30, ?, 'active', ?, "
                   "'ada')", [at, at])
    for device, owner, cams, status in (("cam-a", "department", 2, "active"), ("cam-b", "bobs", 1, "active"),
                                        ("cam-c", "department", 4, "revoked")):
        cameras = json.dumps([{"id": f"lane-{i}"} for i in range(cams)])
        w.conn.execute("INSERT INTO devices (device_id, owner, location, cameras, status, enrolled_by, enrolled_at, "
                       "updated_at) VALUES (?, ?, 'Main St', ?, ?, 'ada', ?, ?)", [device, owner, cameras, status, at, at])
    cfg = CentralConfig(str(tmp_path), policy=Policy(agency="City PD"))
    data = build(w.conn, cfg, w.auditor, "2026-Q3", *parse_period("2026-Q3"))
    assert data["cameras_by_owner"] == [{"owner": "Bob's Garage", "cameras": 1}, {"owner": "City PD", "cameras": 2}]
    assert data["cameras_total"] == 3


def test_report_needs_a_role_that_reads_reports(populated, tmp_path, monkeypatch):
    w, *_ = populated
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n' + w.store_toml)
    monkeypatch.setenv("ALPR_TOKEN", w.tokens["otto"])
    res = CliRunner().invoke(main, ["report", "transparency", "--config", str(cfg), "--period", "2026-Q3",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "may not read reports" in res.output
    assert not (tmp_path / "out").exists()


def test_cameras_are_counted_when_active_during_the_period_not_on_generation_day(world, tmp_path):
    """Q3 2026: a camera withdrawn with its business in August still counts; one
    suspended before the quarter and never resumed, or enrolled after it, does not."""
    from central.config import CentralConfig, Policy
    from central.governance.report import build
    w = world
    at = "2026-01-05T00:00:00.000000Z"
    w.conn.execute("INSERT INTO businesses (business_id, name, contact_name, contact_email, contact_phone, mou_id, "
                   "shared_data, share_with, retention_days, consent_at, status, enrolled_at, enrolled_by) "
                   "VALUES ('bobs', 'Bob''s Garage', 'Bob', 'b@x', '1', 'MOU-B', 'reads', 'PD', 30, ?, 'withdrawn', "
                   "?, 'ada')", [at, at])
    devices = {"gone-in-aug": ("bobs", "suspended", 2), "off-before": ("department", "suspended", 4),
               "after-q3": ("department", "active", 8), "revoked-in-jul": ("department", "revoked", 1),
               "all-along": ("department", "active", 16)}
    for device, (owner, status, cams) in devices.items():
        w.conn.execute("INSERT INTO devices (device_id, owner, location, cameras, status, enrolled_by, enrolled_at, "
                       "updated_at) VALUES (?, ?, 'x', ?, ?, 'ada', ?, ?)",
                       [device, owner, json.dumps([{"id": f"l{i}"} for i in range(cams)]), status, at, at])
    for when, action, subject, detail in (
            ("2026-02-01", "provision", "gone-in-aug", {}), ("2026-02-01", "provision", "off-before", {}),
            ("2026-03-01", "provision", "revoked-in-jul", {}), ("2026-03-01", "provision", "all-along", {}),
            ("2026-05-01", "device-suspended", "off-before", {}),
            ("2026-07-10", "device-revoked", "revoked-in-jul", {}),
            ("2026-08-15", "business-withdraw", "bobs", {"suspended": ["gone-in-aug"]}),
            ("2026-10-02", "provision", "after-q3", {})):
        w.conn.execute("INSERT INTO registry_events (at, actor, action, subject, detail) VALUES (?, 'ada', ?, ?, ?)",
                       [f"{when}T00:00:00.000000Z", action, subject, json.dumps(detail)])
    cfg = CentralConfig(str(tmp_path), policy=Policy(agency="City PD"))
    data = build(w.conn, cfg, w.auditor, "2026-Q3", *parse_period("2026-Q3"),
                 now=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    assert data["cameras_by_owner"] == [{"owner": "Bob's Garage", "cameras": 2}, {"owner": "City PD", "cameras": 17}]
    assert data["cameras_total"] == 19


def test_charts_say_something_with_one_category_and_refusals_have_their_own_figure():
    from central.governance.report import bar_chart, share_chart
    one = bar_chart("c", "Hits by hotlist category", [("stolen-vehicle", 12)])
    assert "<svg" not in one and "<b class=\"figure\">12</b> stolen-vehicle: the only one in this period" in one
    assert "<svg" in bar_chart("c", "t", [("a", 1), ("b", 2)])
    refused = share_chart("r", "Searches answered and refused", [("answered", 30), ("refused", 10)])
    assert "<svg" in refused and "<b>10</b> refused (25%)" in refused and "<b>30</b> answered (75%)" in refused
    none_refused = share_chart("r", "t", [("answered", 5), ("refused", 0)])
    assert "<b>0</b> refused (0%)" in none_refused


def test_the_labelled_set_is_counted_by_source_and_none_is_kept_past_its_deletion_date(world, tmp_path):
    """Confirmed reads kept to adapt the OCR are shown to the public: held by
    source, labelled in the period, and past their deletion date (a crop past
    image_days), which the purge brings back to 0."""
    from central.config import CentralConfig, Policy, Retention
    from central.governance.labels import LabelledSet
    from central.governance.report import build, render_html
    from edge_agent.wire import PlateRead, new_read_id
    w = world
    w.clock.now = Q3

    def add(plate, at):
        r = PlateRead(new_read_id(), "cam-a", "lane-1", at, plate, 0.9, (1, 2, 3, 4), crop_jpeg=b"\xff\xd8crop")
        w.store.add_reads([r], at)
        return r

    labels = LabelledSet(w.store, clock=w.clock)
    args = {"purpose": PURPOSES[0], "case_number": "26-0042", "purposes": PURPOSES}
    old = add("6DEF456", Q3 - 50 * DAY)             # its crop is past image_days (120) at Q3 + 100 days: overdue
    labels.confirm(w.operator, old.read_id, "6DEF456", **args)
    labels.confirm(w.operator, add("8XY0999", Q3 - 2 * DAY).read_id, "8XYO999", **args)
    labels.confirm(w.supervisor, add("7ABC123", Q3 - DAY).read_id, "7ABC123", **args)
    w.clock.now = Q3 + 100 * DAY                    # labelled in Q3; one more in Q4
    labels.confirm(w.operator, add("5KLM456", Q3 + 99 * DAY).read_id, "5KLM456", **args)
    retention = Retention(image_days=120)
    cfg = CentralConfig(str(tmp_path), policy=Policy(agency="City PD"), retention=retention)

    def labelled():
        return build(w.conn, cfg, w.auditor, "2026-Q3", *parse_period("2026-Q3"), now=w.clock.now)["labelled_set"]

    got = labelled()
    assert got == {"examples": 4, "labelled_in_period": 3, "past_deletion_date": 1,
                   "by_source": [{"source": "hit-confirmed", "examples": 0}, {"source": "hit-misread", "examples": 0},
                                 {"source": "search-confirmed", "examples": 3},
                                 {"source": "search-corrected", "examples": 1}]}
    page = render_html(build(w.conn, cfg, w.auditor, "2026-Q3", *parse_period("2026-Q3"), now=w.clock.now))
    assert "Held past their deletion date: 1 (the next retention purge deletes them)" in page
    assert "Labelled in this period: 3" in page and "8XYO999" not in page and "8XY0999" not in page
    assert Governor(w.conn, retention, clock=w.clock).purge(w.admin).counts["labelled_examples"] == 1
    got = labelled()
    assert (got["examples"], got["labelled_in_period"], got["past_deletion_date"]) == (3, 2, 0)
    assert "Held past their deletion date: 0</p>" in render_html(
        build(w.conn, cfg, w.auditor, "2026-Q3", *parse_period("2026-Q3"), now=w.clock.now))
