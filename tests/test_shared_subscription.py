"""Several collectors on the shared subscription: when one goes away, the
broker deals every following batch to the ones still there."""

from __future__ import annotations

import datetime as dt
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_for
from edge_agent.wire import PlateRead, Sealer, encode_batch, encode_read, load_public_key, new_read_id


def _device_client(pki_dir, port, device="cam-a"):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-once", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki_dir / "ca.crt"), certfile=str(pki_dir / f"{device}.crt"),
              keyfile=str(pki_dir / f"{device}.key"), cert_reqs=ssl.CERT_REQUIRED,
              tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_a_stopped_collector_gets_no_more_batches(pki_dir, broker, collector_factory):
    """Its session ends with its connection. With a persistent session (it had
    a one-hour expiry) the broker kept dealing every other batch to the gone
    collector's queue: nothing was lost, since devices resend what is not
    acknowledged, but those batches waited for an ack timeout, and their
    resends again went half to the queue; a killed collector took ingest down to
    a crawl for an hour (test_postgres.py's kill test ran 72 s instead of 20)."""
    first = collector_factory(broker.port, "a.sqlite", client_id=f"central.collector-{broker.port}-a")
    second = collector_factory(broker.port, "b.sqlite", client_id=f"central.collector-{broker.port}-b",
                               identity="collector-b")
    second.stop()
    sealer = Sealer(load_public_key((pki_dir / "data-key.pub.pem").read_bytes()), "cam-a")
    device = _device_client(pki_dir, broker.port)
    try:
        reads = [PlateRead(new_read_id(), "cam-a", "lane-1", dt.datetime.now(dt.timezone.utc), f"SH{i:03d}", 0.9,
                           (1, 2, 3, 4)) for i in range(20)]
        for r in reads:  # each batch sent once: no resend may hide where it went
            device.publish("alpr/v1/devices/cam-a/reads",
                           encode_batch(new_read_id(), [sealer.seal(r.read_id, encode_read(r))]), qos=1
                           ).wait_for_publish(10)
        wait_for(lambda: len(first.read_ids()) == len(reads), 20, message="every batch stored by the collector left")
        assert sorted(first.read_ids()) == sorted(r.read_id for r in reads)
    finally:
        device.disconnect()
        device.loop_stop()
