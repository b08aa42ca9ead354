"""A malicious device (or an attacker holding a device's certificate and
central's public key): replays, malformed and hostile payloads, path-like
names. Real Mosquitto with TLS and the generated ACL, the real collector
over a real SQLite file; every refusal is counted and nothing stops the
collector."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from conftest import wait_for
from edge_agent.wire import (PlateRead, Sealer, decode_ack, encode_batch, encode_read, load_public_key,
                             new_read_id)

from edge_agent.wire.schema import _LEN

from .attack import Client, sealed_batch, settle

READS = "alpr/v1/devices/cam-a/reads"


@pytest.fixture
def rig(broker, collector_factory, pki_dir):
    central = collector_factory(broker.port)
    device = Client(broker.port, pki_dir / "ca.crt", pki_dir / "cam-a.crt", pki_dir / "cam-a.key").start()
    assert device.wait_connected()
    device.client.subscribe("alpr/v1/devices/cam-a/ack", qos=1)
    settle(0.3)
    yield central, device, (pki_dir / "data-key.pub.pem").read_bytes()
    device.stop()


def _acks(device):
    return [decode_ack(p) for t, p in device.messages if t.endswith("/ack")]


def test_a_replayed_message_stores_the_read_once_and_is_acknowledged_again(rig):
    central, device, pub = rig
    read_id, payload = sealed_batch(pub, "cam-a")
    for _ in range(3):
        device.publish(READS, payload)
    wait_for(lambda: len(_acks(device)) == 3, 10, message="three acks")
    assert central.read_ids() == [read_id] and all(a.stored == (read_id,) for a in _acks(device))


def _sealed_raw(pub: bytes, device: str, plaintext: bytes, read_id: str | None = None) -> tuple[str, bytes]:
    read_id = read_id or new_read_id()
    return read_id, Sealer(load_public_key(pub), device).seal(read_id, plaintext)


def _framed(doc_bytes: bytes) -> bytes:
    """A read payload as the wire frames it: 4-byte length, JSON, image bytes."""
    return _LEN.pack(len(doc_bytes)) + doc_bytes


def _read_doc(**change) -> bytes:
    read = PlateRead(new_read_id(), "cam-a", "lane-1", dt.datetime.now(dt.timezone.utc), "ATK1", 0.9, (1, 2, 3, 4))
    raw = encode_read(read)
    doc = json.loads(raw[_LEN.size:])
    doc.update(change)
    return _framed(json.dumps(doc).encode())


HOSTILE_READS = {  # plaintext inside a correctly sealed envelope -> counted as invalid-schema
    "200000 nested [": _framed(b"[" * 200_000),
    "nested objects": _framed(b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    "not JSON": _framed(b"\xff\xfe\x00garbage"),
    "empty": b"",
    "length past the end": _LEN.pack(10_000) + b"{}",
    "huge number": _framed(b'{"v": 1, "confidence": 1' + b"0" * 5000 + b"}"),
    "NaN confidence": _read_doc().replace(b'"confidence": 0.9', b'"confidence": NaN'),
    "plate with a path": _read_doc(plate="../../etc/passwd"),
    "plate with control characters": _read_doc(plate="AB\x00\n12"),
    "box with strings": _read_doc(box=["1", "2", "3", "4"]),
    "wrong version": _read_doc(v=99),
}


def test_hostile_payloads_inside_valid_envelopes_are_refused_counted_and_acknowledged(rig):
    central, device, pub = rig
    ids = {}
    for name, plaintext in HOSTILE_READS.items():
        read_id, envelope = _sealed_raw(pub, "cam-a", plaintext)
        ids[read_id] = name
        device.publish(READS, encode_batch(new_read_id(), [envelope]))
    wait_for(lambda: len(_acks(device)) == len(HOSTILE_READS), 20, message="an ack for each")
    rejected = {rid: why for a in _acks(device) for rid, why in a.rejected}
    assert set(rejected) == set(ids) and set(rejected.values()) == {"invalid-schema"}, rejected
    assert central.read_ids() == []
    assert central.collector.counters["rejected.invalid-schema"] == len(HOSTILE_READS)
    good, payload = sealed_batch(pub, "cam-a")  # and it keeps serving
    device.publish(READS, payload)
    wait_for(lambda: good in central.read_ids(), 10, message="a good read after the attack")


def test_malformed_messages_and_foreign_envelopes_are_counted_and_never_crash(rig, pki_dir):
    central, device, pub = rig
    other_read, other_env = _sealed_raw(pub, "cam-b", encode_read(PlateRead(
        new_read_id(), "cam-b", "lane-1", dt.datetime.now(dt.timezone.utc), "ATK2", 0.9, (1, 2, 3, 4))))
    spoofed_id, spoofed = _sealed_raw(pub, "cam-a", _read_doc(device_id="cam-b"))
    payloads = [b"", b"{", b"[" * 200_000, b'{"v":1,"batch":"../../x","reads":[]}', json.dumps(
                {"v": 1, "batch": new_read_id(), "reads": ["not base64!"]}).encode(),
                encode_batch(new_read_id(), [other_env]),    # cam-b's envelope, published by cam-a
                encode_batch(new_read_id(), [spoofed]),      # a read claiming to be cam-b's
                encode_batch(new_read_id(), [b"\x00" * 64])]  # not an envelope
    for payload in payloads:
        device.publish(READS, payload)
    wait_for(lambda: central.collector.counters["messages"] >= len(payloads), 20, message="all processed")
    c = central.collector.counters
    assert c["rejected.malformed"] >= 5 and c["rejected.wrong-device"] == 2, dict(c)
    assert central.read_ids() == []
    good, payload = sealed_batch(pub, "cam-a")
    device.publish(READS, payload)
    wait_for(lambda: good in central.read_ids(), 10, message="a good read after the attack")


@pytest.mark.parametrize("topic", ["alpr/v1/devices/../reads", "alpr/v1/devices/cam-a/../cam-b/reads",
                                   "alpr/v1/devices/cam-b/reads", "alpr/v1/devices/cam-a//reads",
                                   "/alpr/v1/devices/cam-a/reads", "alpr/v1/devices/cam-a/reads/../../cam-b/reads"])
def test_path_like_and_wildcard_topics_are_refused_by_the_broker(rig, topic):
    central, device, pub = rig
    read_id, payload = sealed_batch(pub, "cam-a")
    mid = device.publish(topic, payload)
    wait_for(lambda: mid in device.published or not device.connected.is_set(), 10, message="broker's answer")
    assert device.published.get(mid) is not True
    settle(0.3)
    assert central.read_ids() == []


def test_oversized_messages_and_bad_topics_are_refused_by_the_collector_too(broker, collector_factory, pki_dir):
    """Had the broker let them through: the collector's own checks."""
    central = collector_factory(broker.port)
    pub = (pki_dir / "data-key.pub.pem").read_bytes()
    big = b"x" * (central.collector.max_message_bytes + 1)
    assert central.collector.handle(READS, big) is None
    for topic in ("alpr/v1/devices/+/reads", "alpr/v1/devices/../reads", "alpr/v1/devices/CAM A/reads",
                  "alpr/v1/devices/cam-a/reads/extra"):
        assert central.collector.handle(topic, sealed_batch(pub, "cam-a")[1]) is None
    c = central.collector.counters
    assert (c["rejected.oversized"], c["rejected.bad-topic"]) == (1, 4) and central.read_ids() == []
