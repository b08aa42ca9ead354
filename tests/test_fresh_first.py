"""Fresh reads first (issue 21, device part): a read captured while a device
drains a backlog reaches central ahead of that backlog, and the reordering
loses and duplicates nothing. Real Mosquitto, real collector and store."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from conftest import wait_for
from edge_agent.outbox import Outbox
from edge_agent.sync import SyncClient, SyncSettings
from edge_agent.wire import Sealer, load_public_key
from test_outbox import sealed

pytestmark = pytest.mark.slow

BACKLOG = 20_000


def test_a_read_captured_during_a_backlog_drain_is_stored_long_before_the_backlog_ends(
        broker, collector_factory, pki_dir, tmp_path):
    central = collector_factory(broker.port)
    sealer = Sealer(load_public_key((pki_dir / "data-key.pub.pem").read_bytes()), "cam-a")
    ob = Outbox(tmp_path / "edge" / "outbox.sqlite")
    backlog = sealed(BACKLOG, plate_prefix="BK", sealer=sealer)  # buffered while offline
    for i in range(0, BACKLOG, 1000):
        ob.add(backlog[i:i + 1000])
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=broker.port, device_id="cam-a",
                                   ca_file=str(pki_dir / "ca.crt"), cert_file=str(pki_dir / "cam-a.crt"),
                                   key_file=str(pki_dir / "cam-a.key"), batch_size=200, max_in_flight=8,
                                   ack_timeout=60.0), ob)
    stop = threading.Event()
    th = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    th.start()
    store = sqlite3.connect(tmp_path / "central.sqlite", timeout=30)
    try:
        wait_for(lambda: sync.counters["acks"] >= 1, timeout=60, message="the backlog drain under way")
        fresh = sealed(1, plate_prefix="HIT", t0=time.time(), sealer=sealer)
        stored_then = store.execute("SELECT count(*) FROM reads").fetchone()[0]
        ob.add(fresh)  # captured after the reconnect, while the backlog drains
        row = wait_for(lambda: store.execute("SELECT rowid FROM reads WHERE read_id = ?", [fresh[0][0]]).fetchone(),
                       timeout=60, message="the fresh read stored")
        before = store.execute("SELECT count(*) FROM reads WHERE rowid < ?", [row[0]]).fetchone()[0]
        # it was stored behind at most what was already in flight (8 batches of
        # 200), not behind the rest of the backlog
        assert before - stored_then <= 8 * 200 + 200, f"stored after {before - stored_then} more backlog reads"
        assert before < BACKLOG / 2
        wait_for(lambda: ob.depth == 0, timeout=120, message="the backlog drained")
    finally:
        stop.set()
        th.join(10)
    ids = [r[0] for r in store.execute("SELECT read_id FROM reads")]
    store.close()
    assert len(ids) == len(set(ids)) == BACKLOG + 1  # nothing duplicated
    assert set(ids) == {i[0] for i in backlog} | {fresh[0][0]}  # nothing lost, nothing extra
    assert sync.counters["live_reads_sent"] >= 1
    assert ob.stats().counters["acknowledged"] == BACKLOG + 1


def test_the_live_lane_sends_only_reads_buffered_after_the_session_began(tmp_path):
    """Disjoint lanes: the backlog lane stops at the boundary, the live lane starts after it."""
    ob = Outbox(tmp_path / "o.sqlite")
    old = sealed(5)
    ob.add(old)
    boundary = ob.last_seq()
    new = sealed(3, plate_prefix="NEW")
    ob.add(new)
    assert [p.read_id for p in ob.pending(0, 100, boundary)] == [i[0] for i in old]
    assert [p.read_id for p in ob.pending(boundary, 100)] == [i[0] for i in new]


def test_acks_waiting_together_are_deleted_in_one_transaction(tmp_path):
    """While a backlog drains, acks arrive faster than one fsync each: all the
    acks waiting are handled with one delete transaction, and every batch is
    still accounted for."""
    from edge_agent.wire import encode_ack
    from edge_agent.wire.schema import Ack

    class CountingOutbox(Outbox):
        calls = 0

        def acknowledge(self, read_ids):
            CountingOutbox.calls += 1
            return super().acknowledge(read_ids)

    ob = CountingOutbox(tmp_path / "o.sqlite")
    items = sealed(30)
    ob.add(items)
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=1, device_id="cam-a", tls=False), ob)
    for i in range(3):
        sync._acks.put(encode_ack(Ack(f"00000000-0000-4000-8000-00000000000{i}",
                                      tuple(rid for rid, _, _ in items[i * 10:(i + 1) * 10]), ())))
    sync._acks.put(b"not an ack")
    sync._drain_acks(timeout=0.0)
    assert CountingOutbox.calls == 1 and ob.depth == 0
    assert sync.counters["acks"] == 3 and sync.counters["bad_acks"] == 1


def test_a_burst_while_online_is_not_held_to_the_live_lanes_small_window(broker, collector_factory, pki_dir,
                                                                          tmp_path):
    """Reads buffered after the session began all take the live lane; a burst
    of them (more than its window) becomes backlog, sent at the backlog lane's
    pace, and every read is stored once."""
    central = collector_factory(broker.port)
    sealer = Sealer(load_public_key((pki_dir / "data-key.pub.pem").read_bytes()), "cam-a")
    ob = Outbox(tmp_path / "edge" / "outbox.sqlite")
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=broker.port, device_id="cam-a",
                                   ca_file=str(pki_dir / "ca.crt"), cert_file=str(pki_dir / "cam-a.crt"),
                                   key_file=str(pki_dir / "cam-a.key"), ack_timeout=60.0), ob)
    stop = threading.Event()
    th = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    th.start()
    try:
        wait_for(lambda: sync.connected, timeout=30, message="connected")
        burst = sealed(3000, plate_prefix="BU", t0=time.time(), sealer=sealer)
        ob.add(burst)
        wait_for(lambda: ob.depth == 0, timeout=60, message="the burst drained")
    finally:
        stop.set()
        th.join(10)
    ids = central.read_ids()
    assert len(ids) == len(set(ids)) == 3000 and set(ids) == {i[0] for i in burst}
    assert sync.counters["batches_sent"] >= 1 and sync.counters["reads_sent"] > 2000
