"""The collector's decisions, on a real SQLite store, without a broker: every
bad input is rejected and counted, and the collector keeps serving."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.ingest.collector import Collector
from central.ingest.keys import load_opener
from central.store.sqlite import SQLiteStore
from edge_agent.wire import (
    PlateRead, Sealer, decode_ack, encode_ack, encode_batch, encode_read, generate_keypair, load_public_key,
    new_read_id,
)


@pytest.fixture
def keys(tmp_path):
    private, public = generate_keypair()
    (tmp_path / "k.pem").write_bytes(private)
    return tmp_path / "k.pem", public


@pytest.fixture
def collector(tmp_path, keys, store_factory):
    """On each backend (PostgreSQL: reads there, governance in c.sqlite)."""
    store = store_factory(tmp_path / "c.sqlite")
    return Collector(store, load_opener([keys[0]]), max_message_bytes=1 << 20)


def make_read(device="cam-a", plate="7ABC123", **kw):
    return PlateRead(new_read_id(), device, "lane-1", dt.datetime.now(dt.timezone.utc), plate, 0.9, (1, 2, 3, 4),
                     **kw)


def batch_of(public, reads, sealing_device=None):
    sealer = Sealer(load_public_key(public), sealing_device or reads[0].device_id)
    return encode_batch(new_read_id(), [sealer.seal(r.read_id, encode_read(r)) for r in reads])


TOPIC = "alpr/v1/devices/cam-a/reads"


def test_valid_batch_is_stored_then_acked(collector, keys):
    reads = [make_read(plate=f"ABC{i}") for i in range(5)]
    topic, ack = collector.handle(TOPIC, batch_of(keys[1], reads))
    assert topic == "alpr/v1/devices/cam-a/ack"
    assert set(ack.stored) == {r.read_id for r in reads} and ack.rejected == ()
    assert collector.store.count() == 5
    assert decode_ack(encode_ack(ack)) == ack


def test_resent_read_is_acked_but_stored_once(collector, keys):
    reads = [make_read()]
    payload = batch_of(keys[1], reads)
    collector.handle(TOPIC, payload)
    _, ack = collector.handle(TOPIC, payload)
    assert ack.stored == (reads[0].read_id,)
    assert collector.store.count() == 1


def test_envelope_of_another_device_is_rejected(collector, keys):
    other = make_read(device="cam-b")
    _, ack = collector.handle(TOPIC, batch_of(keys[1], [other]))
    assert ack.stored == () and ack.rejected == ((other.read_id, "wrong-device"),)
    assert collector.counters["rejected.wrong-device"] == 1 and collector.store.count() == 0


def test_payload_claiming_another_device_inside_a_valid_envelope_is_rejected(collector, keys):
    liar = make_read(device="cam-b")
    payload = batch_of(keys[1], [liar], sealing_device="cam-a")
    _, ack = collector.handle(TOPIC, payload)
    assert ack.rejected == ((liar.read_id, "wrong-device"),) and collector.store.count() == 0


def test_undecryptable_is_rejected_but_the_rest_of_the_batch_is_stored(collector, keys):
    _, wrong_public = generate_keypair()
    good, bad = make_read(), make_read()
    s_good = Sealer(load_public_key(keys[1]), "cam-a")
    s_bad = Sealer(load_public_key(wrong_public), "cam-a")
    payload = encode_batch(new_read_id(), [s_good.seal(good.read_id, encode_read(good)),
                                           s_bad.seal(bad.read_id, encode_read(bad))])
    _, ack = collector.handle(TOPIC, payload)
    assert ack.stored == (good.read_id,) and ack.rejected == ((bad.read_id, "undecryptable"),)
    assert collector.counters["rejected.undecryptable"] == 1


def test_invalid_schema_inside_a_valid_envelope_is_rejected(collector, keys):
    rid = new_read_id()
    env = Sealer(load_public_key(keys[1]), "cam-a").seal(rid, b'{"v": 1, "plate": "x"}')
    _, ack = collector.handle(TOPIC, encode_batch(new_read_id(), [env]))
    assert ack.rejected == ((rid, "invalid-schema"),)


def test_oversized_malformed_and_bad_topic_are_counted(collector, keys):
    assert collector.handle(TOPIC, b"x" * ((1 << 20) + 1)) is None
    assert collector.handle(TOPIC, b"not a batch") is None
    assert collector.handle("alpr/v1/devices/cam-a/status", batch_of(keys[1], [make_read()])) is None
    assert collector.counters["rejected.oversized"] == 1
    assert collector.counters["rejected.malformed"] == 1
    assert collector.counters["rejected.bad-topic"] == 1
    assert collector.store.count() == 0


def test_logs_never_carry_plate_text(collector, keys, caplog):
    caplog.set_level("DEBUG")
    collector.handle(TOPIC, batch_of(keys[1], [make_read(device="cam-b", plate="QZX9876")]))
    collector.handle(TOPIC, batch_of(keys[1], [make_read(plate="QZX9876")]))
    assert "QZX9876" not in caplog.text


@given(payload=st.one_of(st.binary(max_size=2000),
                         st.binary(max_size=500).map(lambda b: b"ALB1" + b[:16].ljust(16, b"\0") + b"\0\1" + b),
                         st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5)
                         .map(lambda envs: encode_batch(new_read_id(), envs))),
       topic=st.sampled_from([TOPIC, "alpr/v1/devices/cam-a/ack", "junk", "alpr/v1/devices/Bad/reads"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_payloads_are_all_rejected_and_counted_and_service_goes_on(collector, keys, payload, topic):
    before = sum(v for k, v in collector.counters.items() if k.startswith("rejected."))
    result = collector.handle(topic, payload)
    after = sum(v for k, v in collector.counters.items() if k.startswith("rejected."))
    assert after > before
    assert result is None or result[1].stored == ()
    good = make_read()
    _, ack = collector.handle(TOPIC, batch_of(keys[1], [good]))
    assert ack.stored == (good.read_id,)


def test_a_read_from_more_than_a_day_ahead_is_rejected(collector, keys):
    """A device clock far ahead (or a forged time) would make a read that never
    expires: refused and named. An hour ahead (drift) is stored."""
    now = dt.datetime.now(dt.timezone.utc)
    ahead = PlateRead(new_read_id(), "cam-a", "lane-1", now + dt.timedelta(days=2), "7ABC123", 0.9, (1, 2, 3, 4))
    drift = PlateRead(new_read_id(), "cam-a", "lane-1", now + dt.timedelta(hours=1), "7ABC124", 0.9, (1, 2, 3, 4))
    _, ack = collector.handle(TOPIC, batch_of(keys[1], [ahead, drift]))
    assert ack.rejected == ((ahead.read_id, "from-the-future"),) and ack.stored == (drift.read_id,)
    assert collector.counters["rejected.from-the-future"] == 1 and collector.store.count() == 1


def _sealed_plaintext(public, rid, text: bytes) -> bytes:
    import struct
    env = Sealer(load_public_key(public), "cam-a").seal(rid, struct.pack(">I", len(text)) + text)
    return encode_batch(new_read_id(), [env])


def test_a_lone_surrogate_in_a_text_field_is_rejected_and_storage_goes_on(collector, keys, tmp_path):
    """Issue 26: "\\ud800" is valid escaped JSON but no text SQLite can store; it
    passed the schema, failed inside the store's transaction and left the write lock
    held, stalling every device. Now the schema refuses it and other writers go on."""
    import json
    import sqlite3

    good = make_read(model_version="alpr-0.9.0")
    doc = json.loads(encode_read(good)[4:])
    doc["read_id"] = rid = new_read_id()
    doc["model_version"] = "\ud800"
    text = json.dumps(doc).encode()  # ensure_ascii: the surrogate travels as \ud800
    assert b"\\ud800" in text
    _, ack = collector.handle(TOPIC, _sealed_plaintext(keys[1], rid, text))
    assert ack.rejected == ((rid, "invalid-schema"),) and collector.counters["rejected.invalid-schema"] == 1
    other = sqlite3.connect(tmp_path / "c.sqlite", timeout=0.5, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # "database is locked" if a transaction was left open
    other.execute("ROLLBACK")
    _, ack = collector.handle(TOPIC, batch_of(keys[1], [good]))
    assert ack.stored == (good.read_id,)


def test_a_read_id_that_is_not_canonical_is_rejected(collector, keys):
    import json

    good = make_read()
    doc = json.loads(encode_read(good)[4:])
    doc["read_id"] = good.read_id.upper()
    _, ack = collector.handle(TOPIC, _sealed_plaintext(keys[1], good.read_id, json.dumps(doc).encode()))
    assert ack.stored == () and collector.store.count() == 0


def test_deeply_nested_json_is_counted_and_acknowledged(collector, keys):
    """A sealed read of 200,000 nested '[' raised RecursionError: not counted, not acked."""
    rid = new_read_id()
    _, ack = collector.handle(TOPIC, _sealed_plaintext(keys[1], rid, b"[" * 200_000))
    assert ack.rejected == ((rid, "invalid-schema"),) and collector.counters["rejected.invalid-schema"] == 1


def test_a_store_write_that_fails_outside_sqlite_releases_the_write_lock(tmp_path):
    """Every write path rolls back on any exception, not only database errors."""
    import sqlite3

    from central.errors import StoreError

    store = SQLiteStore(tmp_path / "s.sqlite")
    bad = make_read()
    object.__setattr__(bad, "model_version", "\udc80")  # past validation, as a future field might be
    with pytest.raises(StoreError):
        store.add_reads([bad], dt.datetime.now(dt.timezone.utc))
    assert not store.db.conn.in_transaction
    other = sqlite3.connect(tmp_path / "s.sqlite", timeout=0.5, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    good = make_read()
    assert store.add_reads([good], dt.datetime.now(dt.timezone.utc)) == [good.read_id]
    store.close()


def test_a_postgres_write_that_fails_rolls_back_and_the_next_one_is_stored(pg_url, tmp_path):
    """PostgreSQL cannot store a lone surrogate either: the batch fails whole with
    a StoreError (not acknowledged, nothing half-written) and the pool's
    connection serves the next batch."""
    from central.errors import StoreError
    from central.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    try:
        good, bad = make_read(), make_read()
        object.__setattr__(bad, "model_version", "\udc80")
        with pytest.raises(StoreError):
            store.add_reads([good, bad], dt.datetime.now(dt.timezone.utc))
        assert store.count() == 0
        assert store.add_reads([good], dt.datetime.now(dt.timezone.utc)) == [good.read_id]
        assert store.read_ids() == [good.read_id]
    finally:
        store.close()


def test_a_device_message_central_cannot_write_is_counted_not_an_unexpected_error(tmp_path, keys, caplog):
    """Central's disk full (here: a read-only database) while a device's status
    arrives: the collector says so and counts it; no traceback of an 'unexpected
    error' (the fault campaign counted those as collector failures)."""
    import logging
    import sqlite3

    import paho.mqtt.client as mqtt

    from central.config import Mqtt
    from central.fleet.device_status import DeviceStatusHandler
    from central.ingest.collector import CollectorService

    db = tmp_path / "c.sqlite"
    store = SQLiteStore(db)
    handler = DeviceStatusHandler(db)
    handler.conn.close()
    handler.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    service = CollectorService(Mqtt(tls=False), Collector(store, load_opener([keys[0]])), status_handler=handler)
    message = mqtt.MQTTMessage(topic=b"alpr/v1/devices/cam-a/status")
    message.payload = b"online"
    with caplog.at_level(logging.ERROR):
        service._on_message(None, None, message)
    assert service.collector.counters["handler_store_failed"] == 1
    assert "cannot record the message on alpr/v1/devices/cam-a/status" in caplog.text
    assert "unexpected error" not in caplog.text
    handler.close()
    store.close()
