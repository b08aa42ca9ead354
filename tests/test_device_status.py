"""Devices' online/offline from the broker: the collector (real Mosquitto, TLS)
records the retained status a device publishes and its last will, ignores a
malformed one, and the console's fleet view shows it."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.config import Mqtt
from central.fleet.device_status import DeviceStatusHandler, connection_status
from central.ingest.collector import Collector, CollectorService
from central.ingest.keys import load_opener
from central.store.sqlite import SQLiteStore
from conftest import wait_for


def _device(pki_dir, port: int, name: str = "cam-a", *, will: bool = False) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki_dir / "ca.crt"), certfile=str(pki_dir / f"{name}.crt"),
              keyfile=str(pki_dir / f"{name}.key"), cert_reqs=ssl.CERT_REQUIRED)
    if will:
        c.will_set(f"alpr/v1/devices/{name}/status", b"offline", qos=1, retain=True)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_the_collector_records_online_and_the_last_will(broker, pki_dir, tmp_path):
    db = tmp_path / "central.sqlite"
    store = SQLiteStore(db)
    # a retained status published before central starts still arrives
    early = _device(pki_dir, broker.port, "cam-b")
    early.publish("alpr/v1/devices/cam-b/status", b"online", qos=1, retain=True).wait_for_publish(5)
    early.loop_stop()
    early.disconnect()
    handler = DeviceStatusHandler(db)
    service = CollectorService(Mqtt(host="127.0.0.1", port=broker.port, ca_file=str(pki_dir / "ca.crt"),
                                    cert_file=str(pki_dir / "collector.crt"),
                                    key_file=str(pki_dir / "collector.key"), client_id="central.collector-st"),
                               Collector(store, load_opener([pki_dir / "data-key.pem"])), status_handler=handler)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(service.ready.is_set, 15, message="collector subscription")
        wait_for(lambda: connection_status(store.db.conn, "cam-b"), 10, message="retained status")
        assert connection_status(store.db.conn, "cam-b").status == "online"
        dev = _device(pki_dir, broker.port, "cam-a", will=True)
        dev.publish("alpr/v1/devices/cam-a/status", b"online", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: connection_status(store.db.conn, "cam-a"), 10, message="online")
        since = connection_status(store.db.conn, "cam-a").since
        dev.publish("alpr/v1/devices/cam-a/status", b"rebooting?", qos=1).wait_for_publish(5)
        dev.publish("alpr/v1/devices/cam-a/status", b"online", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: handler.counters["status.malformed"] == 1 and handler.counters["status.online"] >= 3, 10,
                 message="malformed counted")
        assert connection_status(store.db.conn, "cam-a").since == since     # unchanged status keeps its time
        dev.socket().close()    # the connection drops without DISCONNECT: the broker sends the last will
        dev.loop_stop()
        wait_for(lambda: connection_status(store.db.conn, "cam-a").status == "offline", 30, message="last will")
    finally:
        stop.set()
        thread.join(10)
        handler.close()
        store.close()
