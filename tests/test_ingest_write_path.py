"""Central's write path for reads on SQLite: how a store file is laid out and
how the collectors' transactions share it."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3

from central.store.sqlite import SQLiteStore
from edge_agent.wire import PlateRead, new_read_id


def _reads(n, crop=b"\xff\xd8" + b"\x01" * 2500):
    now = dt.datetime.now(dt.timezone.utc)
    return [PlateRead(new_read_id(), "cam-a", "lane-1", now, f"7AB{i:04d}", 0.9, (1, 2, 3, 4), crop_jpeg=crop)
            for i in range(n)]


def test_a_new_store_has_8k_pages_and_an_older_file_keeps_its_own(tmp_path):
    """A 2.5 KB plate crop filled a 4 KiB page of its own: 8 KiB pages hold three,
    a third less to write per read. Only a new file can get them; a store made
    with 4 KiB pages opens, stores and reads as before."""
    new = SQLiteStore(tmp_path / "new.sqlite")
    assert new.db.execute("PRAGMA page_size").fetchone()[0] == 8192
    assert new.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    empty = os.path.getsize(tmp_path / "new.sqlite") + os.path.getsize(tmp_path / "new.sqlite-wal")
    reads = _reads(1000)
    new.add_reads(reads, dt.datetime.now(dt.timezone.utc))
    new.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    new.close()
    grown = os.path.getsize(tmp_path / "new.sqlite") - empty
    assert grown < 1000 * 3600  # 4 KiB pages: more than 1000 x 4096 bytes (a page per crop)

    old_path = tmp_path / "old.sqlite"
    with sqlite3.connect(old_path) as conn:  # what an earlier release created
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    old = SQLiteStore(old_path)
    assert old.db.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert set(old.add_reads(reads[:10], dt.datetime.now(dt.timezone.utc))) == {r.read_id for r in reads[:10]}
    assert old.count() == 10
    old.close()


# -- group commit: several messages, one transaction, acks only after it ------------------
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from central.errors import StoreError  # noqa: E402
from central.ingest.collector import Collector  # noqa: E402
from central.ingest.keys import load_opener  # noqa: E402
from edge_agent.wire import Sealer, encode_batch, encode_read, generate_keypair, load_public_key  # noqa: E402

TOPIC = "alpr/v1/devices/cam-a/reads"


@pytest.fixture
def sealed_collector(tmp_path):
    private, public = generate_keypair()
    (tmp_path / "k.pem").write_bytes(private)
    sealer = Sealer(load_public_key(public), "cam-a")
    collector = Collector(SQLiteStore(tmp_path / "c.sqlite"), load_opener([tmp_path / "k.pem"]))

    def message(reads):
        return encode_batch(new_read_id(), [sealer.seal(r.read_id, encode_read(r)) for r in reads])

    return collector, message


def test_a_read_sent_twice_within_a_group_and_again_later_is_stored_once_and_acked_each_time(sealed_collector):
    collector, message = sealed_collector
    a, b, c = _reads(40), _reads(40), _reads(5)
    earlier = collector.prepare(TOPIC, message(c))
    collector.commit([earlier])
    group = [collector.prepare(TOPIC, message(a)),
             collector.prepare(TOPIC, message(a[:20] + b)),      # a resend overlapping the first
             collector.prepare(TOPIC, message(c + b[:3]))]       # stored by an earlier group
    acks = collector.commit(group)
    assert [set(ack.stored) for _, ack in acks] == [{r.read_id for r in a}, {r.read_id for r in a[:20] + b},
                                                    {r.read_id for r in c + b[:3]}]
    assert all(ack.rejected == () for _, ack in acks)
    assert collector.store.count() == 85


def test_a_group_the_store_refuses_is_written_not_at_all_and_its_good_messages_alone(sealed_collector):
    """One transaction: a failure leaves none of the group's reads half-written and
    acknowledges nothing; the messages are then stored one by one, and only the
    ones stored are acknowledged (the refused one is sent again by its device)."""
    collector, message = sealed_collector
    good1, bad, good2 = _reads(10), _reads(10), _reads(10)
    collector.store.db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON reads WHEN NEW.read_id = "
                               f"'{bad[3].read_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    group = [collector.prepare(TOPIC, message(r)) for r in (good1, bad, good2)]
    with pytest.raises(StoreError):
        collector.commit(group)
    assert collector.store.count() == 0
    acks = collector.commit_each(group)
    assert [ack.batch_id for _, ack in acks] == [group[0].batch_id, group[2].batch_id]
    assert collector.store.count() == 20


_CRASH = r"""
import datetime as dt, json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from central.ingest.collector import Collector
from central.ingest.keys import load_opener
from central.store.sqlite import SQLiteStore
from edge_agent.wire import encode_ack

root = Path(sys.argv[1])
collector = Collector(SQLiteStore(root / "c.sqlite"), load_opener([root / "k.pem"]))
messages = [bytes.fromhex(m) for m in json.loads((root / "messages.json").read_text())]
items = [collector.prepare("alpr/v1/devices/cam-a/reads", m) for m in messages]
for _, ack in collector.commit(items[:2]):          # the first group: committed, then acknowledged
    print(json.dumps(list(ack.stored)), flush=True)
conn = collector.store.db.conn

class Dying:                                         # the process dies as the second group commits
    def __getattr__(self, name):
        return getattr(conn, name)
    def execute(self, sql, *args):
        if sql == "COMMIT":
            os._exit(9)
        return conn.execute(sql, *args)

collector.store.db.conn = Dying()
for _, ack in collector.commit(items[2:]):
    print(json.dumps(list(ack.stored)), flush=True)
"""


def test_a_collector_killed_between_groups_keeps_the_first_and_acknowledged_nothing_of_the_second(tmp_path):
    private, public = generate_keypair()
    (tmp_path / "k.pem").write_bytes(private)
    sealer = Sealer(load_public_key(public), "cam-a")
    groups = [_reads(30) for _ in range(4)]
    SQLiteStore(tmp_path / "c.sqlite").close()
    (tmp_path / "messages.json").write_text(json.dumps([
        encode_batch(new_read_id(), [sealer.seal(r.read_id, encode_read(r)) for r in reads]).hex()
        for reads in groups]))
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path), root], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 9, out.stderr[-2000:]
    acked = [rid for line in out.stdout.splitlines() for rid in json.loads(line)]
    first, second = {r.read_id for g in groups[:2] for r in g}, {r.read_id for g in groups[2:] for r in g}
    assert set(acked) == first  # nothing of the second group was acknowledged
    store = SQLiteStore(tmp_path / "c.sqlite")
    assert set([r for (r,) in store.db.execute("SELECT read_id FROM reads")]) == first  # the first group survived the kill; the second is not half there
    # the devices send the second group again: stored once, the first untouched
    collector = Collector(store, load_opener([tmp_path / "k.pem"]))
    for reads in groups[2:]:
        collector.handle(TOPIC, encode_batch(new_read_id(), [sealer.seal(r.read_id, encode_read(r))
                                                             for r in reads]))
    assert sorted([r for (r,) in store.db.execute("SELECT read_id FROM reads")]) == sorted(first | second)


# -- per-read work of the write path: the same text, less Python ----------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_agent.wire import Alternate, normalise_plate  # noqa: E402

_plates = st.text(alphabet="ABCDEFGHJKLMNPRSTUVWXYZ0123456789", min_size=1, max_size=10)


@settings(max_examples=60, deadline=None)
@given(box=st.tuples(*[st.integers(0, 99_999)] * 4),
       alternates=st.lists(st.tuples(_plates, st.floats(0, 1)), max_size=5))
def test_box_and_alternates_are_stored_as_json_dumps_wrote_them(box, alternates):
    read = PlateRead(new_read_id(), "cam-a", "lane-1", dt.datetime.now(dt.timezone.utc), "7ABC123", 0.9, box,
                     tuple(Alternate(p, c) for p, c in alternates))
    (row,), _ = SQLiteStore._rows([read], "2026-01-01T00:00:00.000000Z")
    assert row[8] == json.dumps(list(box)) and json.loads(row[8]) == list(box)
    assert row[9] == json.dumps([[p, c] for p, c in alternates])


@settings(max_examples=300, deadline=None)
@given(st.one_of(_plates, st.text(max_size=14)))
def test_normalise_plate_is_unchanged_by_its_fast_path(text):
    assert normalise_plate(text) == "".join(ch for ch in text.upper() if ch.isascii() and ch.isalnum())
