"""Fleet alerts from heartbeats: missed heartbeats raise an offline alert (the
clock injected), a covered and a moved camera (generated frames, a real agent,
real Mosquitto) raise tamper alerts, and the other thresholds (buffer growing,
disk low, clock off, certificate expiring) each raise theirs and only then."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading

import cv2
import numpy as np
import pytest

from central.config import Mqtt
from central.fleet.alerts import Thresholds, all_alerts, device_alerts, fleet_alerts
from central.fleet.health import DeviceHealthView, HealthHandler, health_history, latest_health
from central.governance.users import Role
from central.ingest.collector import Collector, CollectorService
from central.ingest.keys import load_opener
from central.store.sqlite import SQLiteStore
from conftest import edge_config, wait_for
from edge_agent.wire.health import CameraHealth, encode_health
from test_enrollment_env import CentralEnv
from test_health import sample
from test_tamper import shifted, street

UTC = dt.timezone.utc
MIN = dt.timedelta(minutes=1)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pid_file=False, pg_url=url)
    yield env
    env.close()


def _beat(handler, clock, device, **changes):
    """A heartbeat sent at the handler's current time (a correct clock unless changed)."""
    changes.setdefault("sent_at", clock.now)
    handler.handle(f"alpr/v1/devices/{device}/health", encode_health(sample(device, **changes)))


def _alerts(central, clock, user="tech", **thresholds):
    reg = central.registry()
    try:
        return fleet_alerts(reg, reg.db, central.user(user), Thresholds(**thresholds), clock=clock)
    finally:
        reg.close()


def test_missed_heartbeats_raise_an_offline_alert(central):
    device = central.provisioned("lane-1")
    quiet = central.provisioned("lane-1")        # enrolled, never heard from
    clock = Clock(dt.datetime.now(UTC))
    handler = HealthHandler(central.database, clock=clock)
    try:
        for _ in range(3):
            _beat(handler, clock, device)
            clock.now += MIN
        assert _alerts(central, clock) == []               # heartbeats on time; quiet is only just enrolled
        clock.now += 10 * MIN                              # 11 min since the last one: under the limit
        assert _alerts(central, clock) == []
        clock.now += 5 * MIN                               # 16 min: offline
        found = {(a.device_id, a.kind): a for a in _alerts(central, clock)}
        assert set(found) == {(device, "offline"), (quiet, "offline")}
        assert found[(device, "offline")].message == "no heartbeat for 16 min"
        assert found[(quiet, "offline")].message == "never heard from since it was enrolled"
        assert _alerts(central, clock, offline_minutes=30.0) == []     # the threshold is config
        _beat(handler, clock, device)                      # it comes back: the alert is gone
        assert [a.device_id for a in _alerts(central, clock)] == [quiet]
        # a suspended device is expected to be silent
        reg = central.registry()
        reg.set_status(quiet, "suspended", user=central.user("tech"), reason="pole works")
        reg.close()
        assert _alerts(central, clock) == []
    finally:
        handler.close()


def test_the_broker_reporting_offline_counts_from_when_it_said_so(central):
    from central.fleet.device_status import DeviceStatusHandler
    device = central.provisioned("lane-1")
    clock = Clock(dt.datetime.now(UTC))
    status = DeviceStatusHandler(central.database, clock=clock)
    health = HealthHandler(central.database, clock=clock)
    try:
        _beat(health, clock, device)
        status.handle(f"alpr/v1/devices/{device}/status", b"offline")
        clock.now += 16 * MIN
        [alert] = _alerts(central, clock)
        assert alert.kind == "offline" and "broker has reported it offline for 16 min" in alert.message
    finally:
        status.close()
        health.close()


def _view(latest, **changes):
    v = DeviceHealthView("cam-a", "department", "active", "online", dt.datetime(2030, 1, 1, tzinfo=UTC), latest)
    return dataclasses.replace(v, **changes)


def test_each_threshold_raises_its_alert(tmp_path):
    db = tmp_path / "central.sqlite"
    SQLiteStore(db).close()
    clock = Clock(dt.datetime.now(UTC).replace(microsecond=0))
    handler = HealthHandler(db, clock=clock)
    t = Thresholds()

    def kinds(**changes):
        _beat(handler, clock, "cam-a", **changes)
        latest = latest_health(handler.conn, "cam-a")
        return [a.kind for a in device_alerts(_view(latest), health_history(handler.conn, "cam-a"), t, clock.now)]

    try:
        assert kinds() == []
        assert kinds(disk_free_bytes=100 << 20) == ["disk-low"]
        assert kinds(disk_full=True, disk_free_bytes=50 << 30) == ["disk-low"]
        assert kinds(clock_offset_s=2.5) == ["clock-off"]                        # the device's NTP estimate
        assert kinds(clock_offset_s=-1.5) == []
        assert kinds(sent_at=clock.now + dt.timedelta(seconds=3)) == ["clock-off"]   # measured at central
        assert kinds(cert_expires_at=clock.now + dt.timedelta(days=10)) == ["certificate-expiring"]
        assert kinds(cert_expires_at=clock.now + dt.timedelta(days=20)) == []
        assert kinds(cameras=(CameraHealth("lane-1", "running", 9.0, 10, 0, None, ("blurred",)),)) == [
            "camera-tampered"]
    finally:
        handler.close()


def test_a_buffer_that_keeps_growing_raises_an_alert_and_one_that_drains_does_not(tmp_path):
    db = tmp_path / "central.sqlite"
    SQLiteStore(db).close()
    clock = Clock(dt.datetime.now(UTC).replace(microsecond=0))
    handler = HealthHandler(db, clock=clock)
    t = Thresholds()

    def after(depths):
        handler.conn.execute("DELETE FROM device_health_history")
        for d in depths:
            clock.now += 5 * MIN
            _beat(handler, clock, "cam-a", buffer_depth=d)
        latest = latest_health(handler.conn, "cam-a")
        return [a for a in device_alerts(_view(latest), health_history(handler.conn, "cam-a"), t, clock.now)]

    try:
        [alert] = after([100, 150, 220, 300, 420, 500, 610])            # 30 min, rising at every heartbeat
        assert alert.kind == "buffer-growing" and "from 100 to 610 reads in 30 min" in alert.message
        assert after([100, 150, 220, 120, 420, 500, 610]) == []         # it drained in between
        assert after([100, 101, 102, 103, 104, 105, 106]) == []         # under the growth threshold
        assert after([100, 200, 300]) == []                             # too short a window to tell
    finally:
        handler.close()


def test_a_fleet_is_evaluated_with_each_device_s_own_window(central):
    """The histories of the whole fleet come in one query: each device's
    buffer is still judged over the window before *its* latest heartbeat."""
    growing, flat, gone = (central.provisioned("lane-1") for _ in range(3))
    start = dt.datetime.now(UTC).replace(microsecond=0) - 151 * MIN
    clock = Clock(start)
    handler = HealthHandler(central.database, clock=clock)

    def beats(device, at_minutes, depths):
        for m, d in zip(at_minutes, depths):
            clock.now = start + m * MIN
            _beat(handler, clock, device, buffer_depth=d)

    rising = [100, 150, 220, 300, 420, 500, 610]
    try:
        beats(gone, range(0, 35, 5), rising)                        # last heard 2 h ago, growing then
        beats(flat, (60, 75, 90), (100, 150, 200))                  # grew an hour before its window ...
        beats(flat, range(120, 155, 5), range(200, 207))            # ... then only by 6 reads in it
        beats(growing, range(120, 155, 5), rising)
    finally:
        handler.close()
    clock.now = start + 151 * MIN
    reg = central.registry()
    try:
        for found in (fleet_alerts(reg, reg.db, central.user("tech"), Thresholds(), clock=clock),
                      all_alerts(reg, reg.db, Thresholds(), clock=clock)):
            by = {(a.device_id, a.kind): a for a in found}
            assert set(by) == {(growing, "buffer-growing"), (gone, "offline"), (gone, "buffer-growing")}
            assert "from 100 to 610 reads in 30 min" in by[(growing, "buffer-growing")].message
            assert "from 100 to 610 reads in 30 min" in by[(gone, "buffer-growing")].message
            assert by[(gone, "buffer-growing")].since == start
    finally:
        reg.close()


def test_device_alerts_command(central):
    device = central.provisioned("lane-1")
    clock = Clock(dt.datetime.now(UTC) - 40 * MIN)
    handler = HealthHandler(central.database, clock=clock)
    try:
        _beat(handler, clock, device, cameras=(CameraHealth("lane-1", "running", 9.0, 10, 0, None, ("black",)),))
    finally:
        handler.close()
    result = central.cli("device", "alerts", "--json", as_="tech")
    assert result.exit_code == 0, result.output
    docs = [json.loads(x) for x in result.output.splitlines()]
    assert {(d["device_id"], d["kind"]) for d in docs} == {(device, "offline"), (device, "camera-tampered")}
    text = central.cli("device", "alerts", as_="ada").output
    assert "camera lane-1: view black" in text and "no heartbeat for 40 min" in text
    assert central.cli("device", "alerts", as_="otto").exit_code == 1            # operators: no device health
    # thresholds from the config
    central.config.write_text(central.config.read_text() + "\n[alerts]\noffline_minutes = 60.0\n")
    docs = [json.loads(x) for x in central.cli("device", "alerts", "--json", as_="tech").output.splitlines()]
    assert [d["kind"] for d in docs] == ["camera-tampered"]


def test_covered_and_moved_cameras_raise_tamper_alerts(tmp_path, pki_dir, broker):
    """A real agent with two cameras: one gets covered, the other turned away
    (generated frames); its heartbeats reach central through Mosquitto and the
    alerts name both."""
    from edge_agent import config as edge_config_mod
    from edge_agent.agent import Agent
    covered, moved = tmp_path / "covered", tmp_path / "moved"
    for folder, after in ((covered, np.zeros((480, 640, 3), np.uint8)), (moved, shifted(street(), 150, 50))):
        folder.mkdir()
        for i in range(3):
            cv2.imwrite(str(folder / f"a{i:03d}.png"), street())
        for i in range(16):
            cv2.imwrite(str(folder / f"b{i:03d}.png"), after)
    sidecar = tmp_path / "none.json"
    sidecar.write_text('{"frames": [[]]}')
    db = tmp_path / "central.sqlite"
    store = SQLiteStore(db)
    handler = HealthHandler(db)
    service = CollectorService(Mqtt(host="127.0.0.1", port=broker.port, ca_file=str(pki_dir / "ca.crt"),
                                    cert_file=str(pki_dir / "collector.crt"), key_file=str(pki_dir / "collector.key"),
                                    client_id="central.collector-alerts"),
                               Collector(store, load_opener([pki_dir / "data-key.pem"])), health_handler=handler)
    stop, agent_stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    cfg = edge_config_mod.load(edge_config(
        tmp_path, pki_dir, broker.port, source="folder", uri=str(covered), sidecar=str(sidecar), fps=4.0,
        extra=f"""
[health]
interval_seconds = 5
tamper_check_seconds = 1
confirm_checks = 2

[[cameras]]
id = "lane-2"
source = "folder"
uri = "{moved}"
fps = 4.0
"""))
    agent = Agent(cfg)
    runner = threading.Thread(target=agent.run, args=(agent_stop,), daemon=True)
    try:
        wait_for(service.ready.is_set, 15, message="collector subscription")
        runner.start()

        def tampered():
            latest = latest_health(store.db.conn, "cam-a")
            return latest and {c.id: c.tamper for c in latest.health.cameras}.get("lane-2")
        wait_for(tampered, 60, message="a heartbeat reporting tamper")
        wait_for(lambda: all(c.tamper for c in latest_health(store.db.conn, "cam-a").health.cameras), 30,
                 message="both cameras tampered")
        latest = latest_health(store.db.conn, "cam-a")
        alerts = device_alerts(_view(latest), [], Thresholds(), dt.datetime.now(UTC))
        assert sorted(a.message for a in alerts if a.kind == "camera-tampered") == [
            "camera lane-1: view black", "camera lane-2: view moved"]
    finally:
        agent_stop.set()
        if runner.is_alive():
            runner.join(30)
        stop.set()
        thread.join(10)
        handler.close()
        store.close()
