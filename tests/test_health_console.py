"""The console's fleet page shows what heartbeats report (camera errors and
tamper, buffer, versions) and still says "not reported" for a device that has
sent none."""

from __future__ import annotations

import datetime as dt

import pytest

from central.console.app import create_app
from central.fleet.health import HealthHandler
from console_env import make_world
from edge_agent.wire.health import CameraHealth, encode_health
from test_console import sign_in
from test_enrollment_env import Clock
from test_health import sample


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    """A console world on each backend (PostgreSQL: a fresh migrated database of the session cluster)."""
    w = make_world(request, tmp_path_factory, "console-health")
    yield w
    w.close()


def test_the_fleet_page_shows_heartbeat_fields(world):
    app = create_app(world.cfg, clock=Clock())
    try:
        device, quiet = world.devices["dept2"], world.devices["acme"]
        handler = HealthHandler(world.env.database)
        handler.handle(f"alpr/v1/devices/{device}/health", encode_health(sample(
            device, sent_at=dt.datetime.now(dt.timezone.utc), buffer_depth=7, buffer_oldest_age_days=2,
            cameras=(CameraHealth("lane-1", "failed", 0.0, 10, 4, "cannot open /dev/video0", ("moved",)),))))
        handler.close()
        rows = {d["device_id"]: d for d in sign_in(app, "tech").get("/api/v1/fleet").json()["devices"]}
        assert rows[device]["camera_errors"] == "lane-1: 4 errors (cannot open /dev/video0), tamper: moved"
        assert rows[device]["buffer"] == "7 reads, oldest 2 days" and rows[device]["versions"].startswith("agent 0.2.0")
        assert rows[quiet]["camera_errors"] is None and rows[quiet]["buffer"] is None
        page = sign_in(app, "tech").get("/fleet").text
        assert "7 reads, oldest 2 days" in page and "tamper: moved" in page and "not reported" in page
    finally:
        app.close()


def test_the_fleet_page_shows_each_devices_update_to_those_who_may_see_it(world, tmp_path):
    """Central offered a release; the device reported a rollback: field techs see it on the fleet page."""
    from central.fleet import release as rel
    from central.fleet.rollout import Rollouts
    from edge_agent.wire import update as wire
    from test_update import ROOT, make_wheel
    private, public, _ = rel.init_key(tmp_path / "keys" / "release-key.pem")
    bundle = tmp_path / "r.alpr"
    rel.build(bundle, rel.load_key(private), wheel=make_wheel(tmp_path / "w", "9.0.0", "pass\n"),
              models_dir=ROOT / "models")
    device = world.devices["dept2"]
    store = world.env.store()
    try:
        rollouts = Rollouts(store.db.conn, data_dir=world.env.data)
        from edge_agent.wire import release as fmt
        rid = rollouts.offer(world.env.user("ada"), bundle, fmt.load_public_key(public.read_bytes()),
                             device=device).rollout_id
        rollouts.record(wire.StateReport(device, rid, "9.0.0", "rolled-back", 1, "0.2.0", "camera lane-1 is failed"))
    finally:
        store.close()
    app = create_app(world.cfg, clock=Clock())
    try:
        rows = {d["device_id"]: d for d in sign_in(app, "tech").get("/api/v1/fleet").json()["devices"]}
        assert rows[device]["update_state"] == f"9.0.0 rolled-back (rollout {rid})"
        assert rows[device]["update_reason"] == "camera lane-1 is failed"
        assert rows[world.devices["acme"]]["update_state"] is None
        page = sign_in(app, "tech").get("/fleet").text
        assert "rolled-back" in page and "camera lane-1 is failed" in page and "none offered" in page
        assert page.count("<th scope=\"col\">Update</th>") == 1
        # a business sees its own devices' health, not the update state (no VIEW_RELEASES)
        rows = sign_in(app, "pat").get("/api/v1/fleet").json()["devices"]
        assert rows and all("update_state" not in r for r in rows)
    finally:
        app.close()


def test_the_alerts_page_shows_open_alerts_to_those_who_may_see_them(world):
    from central.config import Alerts as AlertsConfig
    from central.fleet.alert_feed import AlertFeed
    app = create_app(world.cfg, clock=Clock())
    try:
        tech = sign_in(app, "tech")
        doc = tech.get("/api/v1/alerts").json()
        assert doc["evaluating"] is False and doc["open"] == []          # no 'alpr-central run' yet
        assert "No 'alpr-central run' is evaluating alerts" in tech.get("/alerts").text
        # an hour after enrollment, no device of the world has been heard from: each is offline
        feed = AlertFeed(world.env.database, AlertsConfig(),
                         clock=Clock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)))
        feed.started_at -= dt.timedelta(hours=1)                           # past the start-up grace
        try:
            raised, _ = feed.check()
        finally:
            feed.stop()
        assert len(raised) >= 4
        doc = tech.get("/api/v1/alerts").json()
        assert doc["evaluating"] is True
        assert {a["device_id"] for a in doc["open"] if a["kind"] == "offline"} == set(world.devices.values())
        assert {e["event"] for e in doc["recent"]} == {"raised"}
        page = tech.get("/alerts").text
        assert 'href="/alerts"' in page and world.devices["bobs"] in page and "offline" in page
        # a business sees its own devices' alerts only; an operator has no fleet alerts
        acme = sign_in(app, "pat").get("/api/v1/alerts").json()
        assert {a["device_id"] for a in acme["open"]} == {e["device_id"] for e in acme["recent"]} == {
            world.devices["acme"]}
        assert sign_in(app, "otto").get("/api/v1/alerts").status_code == 403
        assert 'href="/alerts"' not in sign_in(app, "otto").get("/search").text
    finally:
        app.close()
