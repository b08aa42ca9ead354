"""Health heartbeats: the wire schema (both sides validate it), a real agent
publishing through a real Mosquitto with the generated ACL to a real collector
that keeps the latest and a bounded history, refusals counted, and
``alpr-central device health`` showing each user the devices they may see."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.config import Mqtt
from central.fleet.broker import acl_text
from central.fleet.health import HealthHandler, health_history, latest_health
from central.governance.users import Role
from central.ingest.collector import Collector, CollectorService
from central.ingest.keys import load_opener
from central.store.sqlite import SQLiteStore
from conftest import edge_config, wait_for
from edge_agent import config as edge_config_mod
from edge_agent.errors import ConfigError
from edge_agent.wire import MalformedMessage
from edge_agent.wire.health import CameraHealth, Health, decode_health, encode_health
from test_enrollment_env import CentralEnv

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 4, 22, 40, 0, 250000, tzinfo=UTC)


def sample(device="cam-a", **changes) -> Health:
    h = Health(device_id=device, sent_at=T0, agent_version="0.2.0", model_version="m-1", os_version="Debian 12",
               agent_uptime_s=3600, system_uptime_s=86400, load_1m=0.42, cpu_temp_c=51.2,
               memory_total_bytes=4 << 30, memory_available_bytes=2 << 30, disk_free_bytes=10 << 30,
               disk_full=False, buffer_depth=12, buffer_bytes=40960, buffer_oldest_age_days=0,
               last_read_at=T0 - dt.timedelta(seconds=75), clock_offset_s=None,
               cert_expires_at=dt.datetime(2027, 12, 4, tzinfo=UTC), sync_connected=True, sync_resends=0,
               cameras=(CameraHealth("lane-1", "running", 9.8, 35000, 2, None, ()),))
    return dataclasses.replace(h, **changes)


# -- the wire schema ----------------------------------------------------------------
def test_round_trip_keeps_only_a_coarse_last_read_time():
    doc = json.loads(encode_health(sample()))
    assert doc["v"] == 1 and doc["sent_at"] == "2026-12-04T22:40:00.250Z"
    assert doc["last_read_at"] == "2026-12-04T22:38:00Z"     # rounded down to the minute
    back = decode_health(encode_health(sample()))
    assert back.last_read_at == dt.datetime(2026, 12, 4, 22, 38, tzinfo=UTC)
    assert back.sent_at == T0 and back.cameras == sample().cameras and back.cpu_temp_c == 51.2


@pytest.mark.parametrize("mutate, problem", [
    (lambda d: d.update(v=2), "unsupported version"),
    (lambda d: d.update(plate="7ABC123"), "key plate unknown"),
    (lambda d: d.update(buffer_depth=-1), "buffer_depth out of range"),
    (lambda d: d.update(buffer_depth=True), "buffer_depth has the wrong type"),
    (lambda d: d.update(load_1m=float("nan")), "not JSON|load_1m"),
    (lambda d: d.update(last_read_at="2026-12-04T22:38:17Z"), "rounded to the minute"),
    (lambda d: d.update(device_id="Cam A"), "device_id invalid"),
    (lambda d: d["cameras"][0].update(tamper=["painted"]), "tamper"),
    (lambda d: d["cameras"][0].update(state="dancing"), "state unknown"),
    (lambda d: d.update(cameras=[d["cameras"][0], d["cameras"][0]]), "repeat"),
    (lambda d: d.pop("disk_free_bytes"), "disk_free_bytes missing"),
    (lambda d: d.update(sent_at="yesterday"), "not a UTC time"),
])
def test_malformed_heartbeats_are_refused_naming_the_problem(mutate, problem):
    doc = json.loads(encode_health(sample()))
    mutate(doc)
    with pytest.raises(MalformedMessage, match=problem):
        decode_health(json.dumps(doc).encode())


def test_the_device_never_sends_what_central_refuses():
    with pytest.raises(MalformedMessage, match="cpu_temp_c"):
        encode_health(sample(cpu_temp_c=900.0))


def test_health_config_defaults_and_bounds(tmp_path, pki_dir):
    cfg = edge_config_mod.load(edge_config(tmp_path, pki_dir, 1883))
    assert cfg.health.interval_seconds == 60.0
    bad = edge_config(tmp_path, pki_dir, 1883, extra="[health]\ninterval_seconds = 1\n")
    with pytest.raises(ConfigError, match="health.interval_seconds"):
        edge_config_mod.load(bad)


def test_the_acl_lets_a_device_publish_only_its_own_health():
    text = acl_text(devices=["cam-a"])
    assert "topic write alpr/v1/devices/cam-a/health" in text
    assert "pattern write alpr/v1/devices/%u/health" in acl_text()
    assert "topic read alpr/v1/devices/+/health" in text       # collectors read every device's


# -- central keeps the latest and a bounded history -----------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_latest_and_bounded_history_with_central_measured_skew(tmp_path, backend, request):
    db = tmp_path / "central.sqlite"
    if backend == "postgresql":
        db = request.getfixturevalue("pg_url")   # the handler on the PostgreSQL governance tables
    else:
        SQLiteStore(db).close()
    now = [T0 + dt.timedelta(seconds=3)]      # central's clock 3 s ahead of the device's
    handler = HealthHandler(db, clock=lambda: now[0], history=3)
    try:
        for i in range(5):
            assert handler.handle("alpr/v1/devices/cam-a/health",
                                  encode_health(sample(buffer_depth=i, sent_at=T0 + dt.timedelta(minutes=i))))
            now[0] += dt.timedelta(minutes=1)
        latest = latest_health(handler.conn, "cam-a")
        assert latest.health.buffer_depth == 4 and latest.skew_s == -3.0 and latest.clock_offset_s == -3.0
        assert [h.health.buffer_depth for h in health_history(handler.conn, "cam-a")] == [2, 3, 4]
        # refused, counted, nothing stored
        assert not handler.handle("alpr/v1/devices/cam-a/health", b"{not json")
        assert not handler.handle("alpr/v1/devices/cam-a/health", encode_health(sample("cam-b")))
        assert handler.counters["health.malformed"] == 1 and handler.counters["health.wrong_device"] == 1
        assert latest_health(handler.conn, "cam-b") is None
        # the device's own NTP estimate wins over central's measurement
        handler.handle("alpr/v1/devices/cam-a/health", encode_health(sample(clock_offset_s=0.004)))
        assert latest_health(handler.conn, "cam-a").clock_offset_s == 0.004
    finally:
        handler.close()


# -- a real agent through a real broker ---------------------------------------------
def _client(pki_dir, port, name):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki_dir / "ca.crt"), certfile=str(pki_dir / f"{name}.crt"),
              keyfile=str(pki_dir / f"{name}.key"), cert_reqs=ssl.CERT_REQUIRED)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_a_running_agent_reports_its_health_to_central(tmp_path, pki_dir, broker, sample_clip):
    from edge_agent.agent import Agent
    db = tmp_path / "central.sqlite"
    store = SQLiteStore(db)
    handler = HealthHandler(db)
    service = CollectorService(Mqtt(host="127.0.0.1", port=broker.port, ca_file=str(pki_dir / "ca.crt"),
                                    cert_file=str(pki_dir / "collector.crt"), key_file=str(pki_dir / "collector.key"),
                                    client_id="central.collector-health"),
                               Collector(store, load_opener([pki_dir / "data-key.pem"])), health_handler=handler)
    stop, agent_stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    video, sidecar = sample_clip
    cfg = edge_config_mod.load(edge_config(tmp_path, pki_dir, broker.port, uri=str(video), sidecar=str(sidecar),
                                           fps=10.0, extra="[health]\ninterval_seconds = 5\n"))
    agent = Agent(cfg)
    runner = threading.Thread(target=agent.run, args=(agent_stop,), daemon=True)
    try:
        wait_for(service.ready.is_set, 15, message="collector subscription")
        runner.start()
        wait_for(lambda: latest_health(store.db.conn, "cam-a"), 30, message="first heartbeat")
        first = latest_health(store.db.conn, "cam-a").health
        from edge_agent import __version__
        assert first.agent_version == __version__ and first.model_version.startswith("sidecar-oracle")
        assert [c.id for c in first.cameras] == ["lane-1"] and first.sync_connected
        assert first.cert_expires_at is not None and first.cert_expires_at > dt.datetime.now(UTC)
        assert first.disk_free_bytes > 0 and first.memory_total_bytes > 0 and first.system_uptime_s > 0
        assert first.buffer_depth >= 0 and first.os_version
        # the next one arrives an interval later, with the camera's frames counted
        wait_for(lambda: len(health_history(store.db.conn, "cam-a")) >= 2, 30, message="second heartbeat")
        assert health_history(store.db.conn, "cam-a")[-1].health.cameras[0].frames > 0
        # another device cannot publish on cam-a's topic (ACL); cam-a's own malformed one is counted
        other = _client(pki_dir, broker.port, "cam-b")
        other.publish("alpr/v1/devices/cam-a/health", encode_health(sample("cam-b")), qos=1).wait_for_publish(5)
        other.publish("alpr/v1/devices/cam-b/health", b"{}", qos=1).wait_for_publish(5)
        wait_for(lambda: handler.counters["health.malformed"] == 1, 10, message="malformed counted")
        assert handler.counters["health.wrong_device"] == 0 and latest_health(store.db.conn, "cam-b") is None
        for c in (other,):
            c.loop_stop()
            c.disconnect()
    finally:
        agent_stop.set()
        runner.join(30) if runner.is_alive() else None
        stop.set()
        thread.join(10)
        handler.close()
        store.close()


# -- the command ------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pid_file=False, pg_url=url)
    env.add_user("pat", "acme", Role.BUSINESS)
    yield env
    env.close()


def test_device_health_shows_each_user_the_devices_they_may_see(central):
    city = central.provisioned("lane-1")
    shop = central.provisioned("door", owner="acme")
    handler = HealthHandler(central.database)
    try:
        handler.handle(f"alpr/v1/devices/{city}/health", encode_health(sample(city, sent_at=dt.datetime.now(UTC), cameras=(
            CameraHealth("lane-1", "running", 9.5, 100, 3, "v4l2: timeout", ("black",)),))))
    finally:
        handler.close()
    result = central.cli("device", "health", "--json", as_="tech")
    assert result.exit_code == 0, result.output
    docs = {d["device_id"]: d for d in map(json.loads, result.output.splitlines())}
    assert set(docs) == {city, shop}
    assert docs[shop]["health"] is None
    h = docs[city]["health"]
    assert h["agent_version"] == "0.2.0" and h["buffer_oldest_age_days"] == 0 and h["cameras"][0]["errors"] == 3
    assert h["cameras"][0]["tamper"] == ["black"] and abs(h["central_measured_skew_s"]) < 5
    text = central.cli("device", "health", city, as_="tech").output
    assert "camera lane-1: running, 9.5 fps, 100 frames, 3 errors, last error: v4l2: timeout, TAMPER: black" in text
    assert "buffer 12 reads (40.0 KB), oldest 0 days old" in text and "agent 0.2.0" in text
    # a business sees its own devices only, and learns nothing of the city's
    result = central.cli("device", "health", "--json", as_="pat")
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["device_id"] for x in result.output.splitlines()] == [shop]
    assert central.cli("device", "health", city, as_="pat").exit_code == 1
    assert central.cli("device", "health", "--owner", "department", as_="pat").exit_code == 1
    # an operator has no device-health permission
    assert central.cli("device", "health", as_="otto").exit_code == 1
