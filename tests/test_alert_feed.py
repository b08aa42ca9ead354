"""Fleet alerts pushed: each alert is raised once per episode and cleared when
it ends (clock injected), queued for the webhooks whose owner and kinds match,
followed live by ``alpr-central device alerts --watch`` (a business user sees
only its own devices); and end to end with a real Mosquitto broker: a device
that stops heartbeating raises one offline alert, delivered signed to a
loopback receiver, then one 'cleared' when it comes back."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.config import AlertWebhook, Mqtt
from central.config import Alerts as AlertsConfig
from central.fleet.alert_feed import AlertFeed, events_after, open_alerts
from central.fleet.health import HealthHandler, latest_health
from central.governance.users import Role
from central.hotlist.webhooks import verify_signature, write_secret
from central.ingest.collector import Collector, CollectorService
from central.ingest.keys import load_opener
from conftest import wait_for
from edge_agent.wire.health import CameraHealth, encode_health
from test_enrollment_env import CentralEnv
from test_health import sample

UTC = dt.timezone.utc
MIN = dt.timedelta(minutes=1)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    """A central on each backend (PostgreSQL: a throwaway cluster, conftest.pg_cluster)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pid_file=False, pg_url=url)
    env.add_user("pat", "acme", Role.BUSINESS)
    yield env
    env.close()


def _beat(handler, clock, device, **changes):
    changes.setdefault("sent_at", clock.now)
    handler.handle(f"alpr/v1/devices/{device}/health", encode_health(sample(device, **changes)))


def _hooks(tmp_path, *specs):
    out = []
    for name, owner, kinds in specs:
        secret = tmp_path / f"{name}.secret"
        if not secret.exists():
            write_secret(secret)
        out.append(AlertWebhook(name, "http://127.0.0.1:9/none", str(secret), owner=owner, kinds=kinds))
    return tuple(out)


def test_an_alert_is_raised_once_per_episode_and_cleared_when_it_ends(central, tmp_path):
    city = central.provisioned("lane-1", "lane-2")
    shop = central.provisioned("door", owner="acme")
    clock = Clock(dt.datetime.now(UTC).replace(microsecond=0))
    db = central.database
    handler = HealthHandler(db, clock=clock)
    cfg = AlertsConfig(webhooks=_hooks(tmp_path, ("dispatch", "", ()), ("acme-desk", "acme", ()),
                                       ("tamper-only", "", ("camera-tampered",))))
    feed = AlertFeed(db, cfg, clock=clock)
    try:
        _beat(handler, clock, city)
        _beat(handler, clock, shop)
        assert feed.check() == ([], [])
        clock.now += 16 * MIN                                   # city goes quiet; shop keeps beating
        _beat(handler, clock, shop)
        raised, cleared = feed.check()
        assert len(raised) == 1 and cleared == []
        for _ in range(3):                                      # polled again: not raised again
            clock.now += MIN
            _beat(handler, clock, shop)
            assert feed.check() == ([], [])
        [open_] = open_alerts(feed.conn)
        assert (open_.device_id, open_.kind) == (city, "offline") and open_.message == "no heartbeat for 19 min"
        # a tampered camera is its own episode per camera
        _beat(handler, clock, shop, cameras=(CameraHealth("door", "running", 9.0, 10, 0, None, ("black",)),))
        assert len(feed.check()[0]) == 1
        _beat(handler, clock, shop, cameras=(CameraHealth("door", "running", 9.0, 10, 0, None, ("black", "moved")),))
        assert feed.check() == ([], [])                         # still the same episode, message refreshed
        assert "view black, moved" in [a.message for a in open_alerts(feed.conn) if a.device_id == shop][0]
        # both end: two cleared events, each once
        _beat(handler, clock, city)
        _beat(handler, clock, shop)
        raised, cleared = feed.check()
        assert raised == [] and len(cleared) == 2
        assert feed.check() == ([], []) and open_alerts(feed.conn) == []
        events = [(e.event, e.device_id, e.kind) for e in events_after(feed.conn, 0)]
        assert events == [("raised", city, "offline"), ("raised", shop, "camera-tampered"),
                          ("cleared", city, "offline"), ("cleared", shop, "camera-tampered")]
        # queued for each receiver whose owner and kinds match, once per event
        rows = feed.conn.execute("SELECT d.endpoint, e.event, a.device_id FROM alert_deliveries d JOIN alert_events "
                                 "e USING (event_id) JOIN device_alerts a USING (alert_id)").fetchall()
        by_hook = {}
        for endpoint, event, device in rows:
            by_hook.setdefault(endpoint, []).append((event, device))
        assert sorted(by_hook["dispatch"]) == sorted([("raised", city), ("raised", shop), ("cleared", city),
                                                      ("cleared", shop)])
        assert sorted(by_hook["acme-desk"]) == [("cleared", shop), ("raised", shop)]
        assert sorted(by_hook["tamper-only"]) == [("cleared", shop), ("raised", shop)]
        # a new episode of the same kind is a new alert
        clock.now += 20 * MIN
        _beat(handler, clock, shop)
        assert len(feed.check()[0]) == 1
        # ended alerts are kept keep_days, then deleted with their events and deliveries
        clock.now += dt.timedelta(days=91)
        _beat(handler, clock, city)
        _beat(handler, clock, shop)
        feed.check()
        assert feed.conn.execute("SELECT count(*) FROM device_alerts").fetchone()[0] == 1      # the last one
        assert feed.conn.execute("SELECT count(*) FROM alert_deliveries d JOIN alert_events e USING (event_id) "
                                 "WHERE e.alert_id NOT IN (SELECT alert_id FROM device_alerts)").fetchone()[0] == 0
    finally:
        feed.stop()
        handler.close()


def test_after_central_was_down_devices_get_time_to_be_heard_before_offline(central):
    device = central.provisioned("lane-1")
    db = central.database
    clock = Clock(dt.datetime.now(UTC).replace(microsecond=0))
    handler = HealthHandler(db, clock=clock)
    try:
        _beat(handler, clock, device)
        clock.now += 40 * MIN                         # central was down for 40 minutes
        feed = AlertFeed(db, AlertsConfig(), clock=clock)
        assert feed.check() == ([], [])               # not raised at once: no heartbeat could arrive meanwhile
        clock.now += 14 * MIN
        assert feed.check() == ([], [])
        clock.now += 2 * MIN                          # 16 min since the feed started and still nothing
        assert len(feed.check()[0]) == 1
        feed.stop()
        restarted = AlertFeed(db, AlertsConfig(), clock=clock)   # an open episode stays open across a restart
        assert restarted.check() == ([], []) and len(open_alerts(restarted.conn)) == 1
        restarted.stop()
    finally:
        handler.close()


def test_watch_follows_alerts_and_a_business_sees_only_its_own(central, tmp_path):
    city = central.provisioned("lane-1")
    shop = central.provisioned("door", owner="acme")
    db = central.database
    clock = Clock(dt.datetime.now(UTC) - 30 * MIN)
    handler = HealthHandler(db, clock=clock)
    feed = AlertFeed(db, AlertsConfig(), clock=clock)
    try:
        _beat(handler, clock, city)
        _beat(handler, clock, shop)
        clock.now += 20 * MIN
        _beat(handler, clock, shop)
        feed.check()                                           # city: offline, open before the watch starts

        def later():
            time.sleep(1.5)
            _beat(handler, clock, shop, cameras=(CameraHealth("door", "running", 9.0, 10, 0, None, ("moved",)),))
            _beat(handler, clock, city)
            feed.check()                                       # shop tampered raised, city offline cleared

        results = {}
        for who in ("tech", "pat"):
            # the second watch starts after the changes: it sees the shop's open alert as 'open'
            t = threading.Thread(target=later) if who == "tech" else None
            if t:
                t.start()
            results[who] = central.cli("device", "alerts", "--watch", "--json", "--timeout", "4", "--poll", "0.2",
                                       as_=who)
            if t:
                t.join()
        tech = [json.loads(x) for x in results["tech"].output.splitlines() if x.startswith("{")]
        assert results["tech"].exit_code == 0, results["tech"].output
        assert [(d["event"], d["device_id"], d["kind"]) for d in tech] == [
            ("open", city, "offline"), ("raised", shop, "camera-tampered"), ("cleared", city, "offline")]
        pat = [json.loads(x) for x in results["pat"].output.splitlines() if x.startswith("{")]
        assert [(d["event"], d["device_id"], d["kind"]) for d in pat] == [("open", shop, "camera-tampered")]
        assert city not in results["pat"].output
        # human lines; another owner's devices are refused to a business user; operators see none
        text = central.cli("device", "alerts", "--watch", "--timeout", "0.5", as_="ada").output
        assert f"open     {shop}" in text and "camera door: view moved" in text
        assert central.cli("device", "alerts", "--watch", "--owner", "department", "--timeout", "0.5",
                           as_="pat").exit_code == 1
        assert central.cli("device", "alerts", "--watch", "--timeout", "0.5", as_="otto").exit_code == 1
    finally:
        feed.stop()
        handler.close()


def test_watch_warns_when_nothing_evaluates_alerts(central):
    res = central.cli("device", "alerts", "--watch", "--timeout", "0.3", as_="tech")
    assert res.exit_code == 0 and "no 'alpr-central run' is evaluating alerts" in res.output


def test_alert_webhook_config(tmp_path):
    from central.config import load as load_config
    from central.errors import ConfigError
    secret = tmp_path / "hook.secret"
    write_secret(secret)
    base = f'data_dir = "{tmp_path}"\n[mqtt]\ntls = false\n[alerts]\ncheck_seconds = 10.0\n'
    (tmp_path / "c.toml").write_text(base + f'[[alerts.webhooks]]\nname = "noc"\nurl = "https://noc.example/a"\n'
                                     f'secret_file = "{secret}"\nowner = "acme"\nkinds = ["offline", "disk-low"]\n')
    cfg = load_config(tmp_path / "c.toml")
    [hook] = cfg.alerts.webhooks
    assert (hook.name, hook.owner, hook.kinds, cfg.alerts.check_seconds) == ("noc", "acme", ("offline", "disk-low"),
                                                                           10.0)
    for bad, where in (('kinds = ["fire"]', "alerts.webhooks[0].kinds"), ('categories = ["bolo"]',
                                                                          "alerts.webhooks[0].categories"),
                       ('url = "ftp://x"', "alerts.webhooks[0].url")):
        body = f'[[alerts.webhooks]]\nname = "noc"\nsecret_file = "{secret}"\n' + (
            bad if bad.startswith("url") else 'url = "https://noc.example/a"\n' + bad) + "\n"
        (tmp_path / "c.toml").write_text(base + body)
        with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
            load_config(tmp_path / "c.toml")


def test_an_alert_webhook_secret_others_can_read_is_refused(tmp_path):
    from central.errors import ConfigError
    from central.store.sqlite import SQLiteStore as Store
    Store(tmp_path / "central.sqlite").close()
    [hook] = _hooks(tmp_path, ("noc", "", ()))
    (tmp_path / "noc.secret").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        AlertFeed(tmp_path / "central.sqlite", AlertsConfig(webhooks=(hook,)))


# -- end to end: a real broker, a real receiver ------------------------------------
class _Receiver(http.server.ThreadingHTTPServer):
    def __init__(self):
        self.got: list[tuple[dict, bytes]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(h):  # noqa: N805
                body = h.rfile.read(int(h.headers["Content-Length"]))
                self.got.append(({k.lower(): v for k, v in h.headers.items()}, body))
                h.send_response(204)
                h.end_headers()

            def log_message(h, *a):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()


def _device(pki_dir, port, name):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki_dir / "ca.crt"), certfile=str(pki_dir / f"{name}.crt"),
              keyfile=str(pki_dir / f"{name}.key"), cert_reqs=ssl.CERT_REQUIRED)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_a_device_that_stops_heartbeating_raises_one_signed_offline_alert(central, tmp_path, pki_dir, broker):
    from edge_agent.provision import new_key_and_csr
    from central.fleet.registry import CameraSpec
    registry = central.registry()
    try:  # cam-a in the registry (its broker certificate is the test PKI's)
        new = registry.create_enrollment(owner="department", cameras=[CameraSpec.parse("lane-1")], location="test",
                                         ttl=dt.timedelta(hours=1), user=central.user("tech"), device_id="cam-a")
        registry.redeem(new.token_id, new.secret, new_key_and_csr()[1], central.ca)
    finally:
        registry.close()
    db = central.database
    store = central.store()
    handler = HealthHandler(db)
    service = CollectorService(Mqtt(host="127.0.0.1", port=broker.port, ca_file=str(pki_dir / "ca.crt"),
                                    cert_file=str(pki_dir / "collector.crt"), key_file=str(pki_dir / "collector.key"),
                                    client_id="central.collector-alerts"),
                               Collector(store, load_opener([pki_dir / "data-key.pem"])), health_handler=handler)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    receiver = _Receiver()
    secret_file = tmp_path / "noc.secret"
    secret = write_secret(secret_file)
    hook = AlertWebhook("noc", f"http://127.0.0.1:{receiver.server_address[1]}/alerts", str(secret_file),
                        retry_seconds=0.2)
    cfg = AlertsConfig(offline_minutes=0.05, check_seconds=1.0, webhooks=(hook,))    # offline after 3 s
    feed = None
    device = _device(pki_dir, broker.port, "cam-a")
    beating = threading.Event()
    beating.set()
    done = threading.Event()

    def heartbeats():
        while not done.wait(0.5):
            if beating.is_set():
                device.publish("alpr/v1/devices/cam-a/health",
                               encode_health(sample("cam-a", sent_at=dt.datetime.now(UTC))), qos=1)

    beater = threading.Thread(target=heartbeats, daemon=True)
    try:
        wait_for(service.ready.is_set, 15, message="collector subscription")
        beater.start()
        wait_for(lambda: latest_health(store.db.conn, "cam-a"), 15, message="first heartbeat stored")
        feed = AlertFeed(db, cfg).start()
        time.sleep(3.5)                                       # beating on time: nothing raised
        assert receiver.got == [] and open_alerts(store.db.conn) == []
        beating.clear()                                       # the device stops heartbeating
        wait_for(lambda: receiver.got, 20, message="offline alert delivered")
        time.sleep(3.5)                                       # three more evaluations: still one
        assert len(receiver.got) == 1
        headers, body = receiver.got[0]
        doc = json.loads(body)
        assert (doc["type"], doc["event"], doc["device_id"], doc["kind"]) == ("alert", "raised", "cam-a", "offline")
        assert doc["message"].startswith("no heartbeat for")
        assert headers["x-alpr-event"] == "alert" and headers["x-alpr-delivery"] == str(doc["delivery_id"])
        assert verify_signature(secret, headers["x-alpr-timestamp"], body, headers["x-alpr-signature"])
        assert not verify_signature(b"another secret of 32 bytes......", headers["x-alpr-timestamp"], body,
                                    headers["x-alpr-signature"])
        status = store.db.conn.execute("SELECT status, attempts FROM alert_deliveries").fetchall()
        assert status == [("delivered", 1)]
        beating.set()                                         # it comes back: cleared, once
        wait_for(lambda: len(receiver.got) == 2, 20, message="cleared delivered")
        cleared = json.loads(receiver.got[1][1])
        assert (cleared["event"], cleared["alert_id"]) == ("cleared", doc["alert_id"])
        time.sleep(2.5)
        assert len(receiver.got) == 2
    finally:
        done.set()
        if feed is not None:
            feed.stop()
        device.loop_stop()
        device.disconnect()
        stop.set()
        thread.join(10)
        receiver.shutdown()
        handler.close()
        store.close()

