"""Sync against a real Mosquitto and collector at the edges of what a batch and
an ack may hold: big images, a read central cannot decode, slow rates."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time

import pytest

from conftest import wait_for
from edge_agent.outbox import Outbox
from edge_agent.sync import MAX_UNNAMED, SyncClient, SyncSettings
from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id
from edge_agent.wire.schema import MAX_BATCH_BYTES
from test_outbox import sealed

pytestmark = pytest.mark.slow


def _sync(pki_dir, port, ob, **kw):
    return SyncClient(SyncSettings(host="127.0.0.1", port=port, device_id="cam-a", ca_file=str(pki_dir / "ca.crt"),
                                   cert_file=str(pki_dir / "cam-a.crt"), key_file=str(pki_dir / "cam-a.key"), **kw), ob)


def _running(sync):
    stop = threading.Event()
    th = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    th.start()
    return stop, th


def test_a_backlog_of_reads_with_context_images_drains_in_batches_the_broker_takes(broker, collector_factory,
                                                                                      pki_dir, tmp_path):
    """40 reads with 230 KB context images (under the 256 KiB default cap) after an
    outage: with the default 200 reads per batch that was one 9.6 MB message, over
    the broker's 8 MiB; the broker dropped the connection on every resend and
    nothing ever reached central."""
    central = collector_factory(broker.port)
    ob = Outbox(tmp_path / "edge" / "outbox.sqlite")
    sealer = Sealer(load_public_key((pki_dir / "data-key.pub.pem").read_bytes()), "cam-a")
    now, items = time.time(), []
    for i in range(40):
        r = PlateRead(new_read_id(), "cam-a", "lane-1", dt.datetime.fromtimestamp(now, dt.timezone.utc), f"AB{i:04d}",
                      0.9, (1, 2, 3, 4), crop_jpeg=os.urandom(20_000), context_jpeg=os.urandom(230_000))
        items.append((r.read_id, now, sealer.seal(r.read_id, encode_read(r))))
    ob.add(items)
    sync = _sync(pki_dir, broker.port, ob, ack_timeout=5.0)
    stop, th = _running(sync)
    try:
        wait_for(lambda: ob.depth == 0, timeout=60, message="backlog drained")
    finally:
        stop.set()
        th.join(10)
    assert set(central.read_ids()) == {i[0] for i in items}
    # 40 x 250 KB in batches of at most MAX_BATCH_BYTES (the newest 50 buffered reads take the live lane)
    batches = sync.counters["batches_sent"] + sync.counters["live_batches_sent"]
    assert batches >= 3
    assert 40 * 250_000 / batches <= MAX_BATCH_BYTES


def test_a_read_central_cannot_decode_is_sent_again_then_parked_never_stranded(broker, collector_factory, pki_dir,
                                                                               tmp_path, caplog):
    """A damaged row between two good ones: central stores the good ones and
    cannot name the damaged one in its ack. It used to stay in the buffer unsent
    and uncounted while the connection lasted; now it is sent again and, after
    MAX_UNNAMED acks that leave it out, parked and counted."""
    caplog.set_level(logging.WARNING)
    central = collector_factory(broker.port)
    ob = Outbox(tmp_path / "edge" / "outbox.sqlite")
    good = sealed(2, sealer=Sealer(load_public_key((pki_dir / "data-key.pub.pem").read_bytes()), "cam-a"))
    bad = (new_read_id(), good[0][1], b"\x00 a damaged row")
    ob.add([good[0], bad, good[1]])
    sync = _sync(pki_dir, broker.port, ob, ack_timeout=30.0)
    stop, th = _running(sync)
    try:
        wait_for(lambda: ob.stats().rejected == 1, timeout=30, message="the damaged read parked")
    finally:
        stop.set()
        th.join(10)
    assert set(central.read_ids()) == {good[0][0], good[1][0]}
    assert ob.depth == 1 and ob.stats().rejected == 1  # kept on the device, parked: not sent again
    assert sync.counters["unnamed_in_ack"] == MAX_UNNAMED and sync.counters["parked_unnamed"] == 1
    assert sync.counters["resends"] == 0  # it did not wait for the 30 s ack timeout
    assert any("left 1 of its reads unnamed" in r.getMessage() for r in caplog.records)


def test_a_rate_under_one_read_per_second_still_sends(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    ob.add(sealed(5))
    t = [0.0]
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=1, device_id="cam-a", tls=False, max_rate=0.5), ob,
                      clock=lambda: t[0])
    granted = []
    for _ in range(60):
        t[0] += 1.0
        granted.append(sync._take_tokens())
    assert sum(granted) == 30  # one read every 2 s (it was none at all)


def test_a_read_too_big_for_any_batch_is_parked_and_counted(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    small = sealed(2)
    huge = (new_read_id(), small[0][1], os.urandom(MAX_BATCH_BYTES))
    ob.add([huge, *small])
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=1, device_id="cam-a", tls=False), ob)
    assert sync._fit(ob.pending(0, 200)) == []
    assert ob.stats().rejected == 1 and sync.counters["parked_too_large"] == 1
    assert [r.read_id for r in sync._fit(ob.pending(0, 200))] == [i[0] for i in small]
