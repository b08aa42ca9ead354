"""The console's fleet page shows each device's remote configuration: the
version pushed, the one the device runs, and a refusal or rollback."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.console.app import create_app
from central.fleet.registry import Registry
from central.fleet.remote_config import RemoteConfigHandler, RemoteConfigs
from console_env import ConsoleWorld
from edge_agent.wire.devconfig import ConfigState, encode_state
from test_console import sign_in
from test_enrollment_env import Clock


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    w = ConsoleWorld(tmp_path, clock=Clock(), pg_url=url)
    yield w
    w.close()


def test_fleet_page_shows_pushed_and_running_configuration(world):
    dept, acme = world.devices["dept"], world.devices["acme"]
    reg = Registry(world.env.database)
    try:
        RemoteConfigs(reg.db).push(world.env.user("ada"), [reg.device(dept)], {"tracking": {"min_hits": 2}},
                                   Ed25519PrivateKey.generate())
        RemoteConfigs(reg.db).push(world.env.user("ada"), [reg.device(dept)], {"tracking": {"min_hits": 3}},
                                   Ed25519PrivateKey.generate())
    finally:
        reg.close()
    handler = RemoteConfigHandler(world.env.database)
    try:
        assert handler.handle(f"alpr/v1/devices/{dept}/config-state", encode_state(ConfigState(
            dept, 1, "rolled-back", 2, "version 2 did not come up within 120 s: camera lane-1 has delivered no frame",
            "2026-12-05T00:00:00.000Z")))
        # a state naming another device on this device's topic is refused, not stored
        assert not handler.handle(f"alpr/v1/devices/{acme}/config-state", encode_state(ConfigState(
            dept, 9, "applied", 9, None, "2026-12-05T00:00:00.000Z")))
        assert handler.counters["config_state.wrong_device"] == 1
    finally:
        handler.close()
    app = create_app(world.cfg, clock=Clock())
    try:
        rows = {d["device_id"]: d for d in sign_in(app, "tech").get("/api/v1/fleet").json()["devices"]}
        assert (rows[dept]["config_pushed"], rows[dept]["config_applied"], rows[dept]["config_state"]) == \
            (2, 1, "rolled-back")
        assert rows[acme]["config_state"] is None and rows[acme]["config_pushed"] is None
        page = sign_in(app, "tech").get("/fleet").text
        assert "runs version 1" in page and "rolled-back" in page and "pushed version 2" in page
        assert "camera lane-1 has delivered no frame" in page and "not reported" in page
    finally:
        app.close()


class _Broker:
    """Stands in for the paho client in publish_pending (the SQL on each backend is
    under test here; the retained publish over a real broker is the collector's)."""

    class _Info:
        def wait_for_publish(self, timeout):
            pass

        def is_published(self):
            return True

    def __init__(self):
        self.sent = []

    def publish(self, topic, payload, qos, retain):
        self.sent.append((topic, payload, qos, retain))
        return self._Info()


def test_the_newest_pushed_configuration_is_published_once_per_device(world):
    from edge_agent.wire.devconfig import open_config
    dept = world.devices["dept"]
    key = Ed25519PrivateKey.generate()
    reg = Registry(world.env.database)
    try:
        for n in (2, 3):
            RemoteConfigs(reg.db).push(world.env.user("ada"), [reg.device(dept)], {"tracking": {"min_hits": n}}, key)
    finally:
        reg.close()
    handler = RemoteConfigHandler(world.env.database)
    try:
        broker = _Broker()
        assert handler.publish_pending(broker) == 1
        [(topic, payload, qos, retain)] = broker.sent
        assert topic == f"alpr/v1/devices/{dept}/config" and qos == 1 and retain
        assert open_config(payload, key.public_key(), dept).version == 2  # the newest only
        assert handler.publish_pending(broker) == 0   # both versions marked published
        assert handler.conn.execute("SELECT count(*) FROM device_configs WHERE published_at IS NULL").fetchone()[0] == 0
    finally:
        handler.close()
