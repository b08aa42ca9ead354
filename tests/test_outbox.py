"""The encrypted outbox: bounds, eviction counting, acknowledgement, and what
is on disk."""

from __future__ import annotations

import datetime as dt
import os
import stat

from edge_agent.outbox import Outbox
from edge_agent.wire import (
    EnvelopeError, Opener, PlateRead, Sealer, encode_read, generate_keypair, load_private_key, load_public_key,
    new_read_id,
)

_, PUBLIC = generate_keypair()


def sealed(n, plate_prefix="7XQ", t0=1_700_000_000.0, sealer=None):
    sealer = sealer or Sealer(load_public_key(PUBLIC), "cam-a")
    items = []
    for i in range(n):
        read = PlateRead(new_read_id(), "cam-a", "lane-1", dt.datetime.fromtimestamp(t0 + i, dt.timezone.utc),
                         f"{plate_prefix}{i:04d}", 0.9, (1, 2, 3, 4), crop_jpeg=b"\xff\xd8fakejpeg")
        items.append((read.read_id, t0 + i, sealer.seal(read.read_id, encode_read(read))))
    return items


def test_add_pending_acknowledge(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    items = sealed(10)
    ob.add(items)
    ob.add(items[:3])  # a duplicate put stores nothing twice
    assert ob.depth == 10
    pend = ob.pending(0, 4)
    assert [p.read_id for p in pend] == [i[0] for i in items[:4]]
    assert [p.read_id for p in ob.pending(pend[-1].seq, 100)] == [i[0] for i in items[4:]]
    assert ob.acknowledge([p.read_id for p in pend] + [new_read_id()]) == 4
    assert ob.depth == 6 and ob.stats().counters["acknowledged"] == 4


def test_seq_never_goes_back_after_the_table_empties(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    first = sealed(1)
    ob.add(first)
    last_seq = ob.pending(0, 1)[0].seq
    ob.acknowledge([first[0][0]])
    ob.add(sealed(1))
    assert ob.pending(last_seq, 10), "a new read must sort after everything sent before"


def test_capacity_drops_oldest_and_counts(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_reads=5)
    items = sealed(8)
    for item in items:
        ob.add([item])
    assert ob.depth == 5
    assert [p.read_id for p in ob.pending(0, 10)] == [i[0] for i in items[3:]]
    assert ob.stats().counters["evicted_capacity"] == 3


def test_byte_bound_drops_oldest(tmp_path):
    items = sealed(10)
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=sum(len(e) for _, _, e in items[:4]))
    ob.add(items)
    assert ob.depth == 4 and ob.stats().counters["evicted_capacity"] == 6
    assert ob.stats().bytes <= ob.max_bytes


def test_age_limit_drops_and_counts(tmp_path):
    """The outbox keeps capture days, not times: a read goes once any part of its
    UTC day is past the limit (up to a day early, never late)."""
    day = 86400
    t0 = 19_700 * day  # a UTC midnight
    now = [t0 + 10 * day + 3600]
    ob = Outbox(tmp_path / "o.sqlite", max_age=5 * day, clock=lambda: now[0])
    for d in range(10):  # ten reads on each of days 0..9, spread over the day
        ob.add([(rid, t0 + d * day + i * 8000.25, env) for i, (rid, _, env) in enumerate(sealed(10))])
    # cutoff now - 5 days = day 5, 01:00: days 0-5 are (partly) past it, 6-9 are not
    assert ob.expire() == 60
    assert ob.depth == 40 and ob.stats().counters["evicted_age"] == 60
    now[0] = t0 + 11 * day - 1  # the cutoff is 1 s before day 6 begins
    assert ob.expire() == 0
    now[0] = t0 + 11 * day + 1  # the cutoff enters day 6
    assert ob.expire() == 10


def test_rejected_reads_are_parked_not_resent(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    items = sealed(3)
    ob.add(items)
    ob.mark_rejected([(items[0][0], "undecryptable")])
    assert [p.read_id for p in ob.pending(0, 10)] == [items[1][0], items[2][0]]
    assert ob.stats().rejected == 1 and ob.depth == 3


def test_counts_survive_reopen(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_reads=2)
    ob.add(sealed(3))
    ob.close()
    again = Outbox(tmp_path / "o.sqlite", max_reads=2)
    assert again.depth == 2 and again.stats().counters["evicted_capacity"] == 1


def test_at_rest_no_plate_text_and_nothing_on_the_device_opens_a_record(tmp_path):
    device_dir = tmp_path / "device"
    ob = Outbox(device_dir / "outbox.sqlite")
    ob.add(sealed(200, plate_prefix="ZQX"))
    # Everything a stolen device holds: the outbox (with WAL) and central's *public* key.
    (device_dir / "central.pub.pem").write_bytes(PUBLIC)
    raw = b"".join(p.read_bytes() for p in device_dir.iterdir() if p.is_file())
    assert b"ZQX" not in raw and b"fakejpeg" not in raw
    assert stat.S_IMODE(os.stat(device_dir / "outbox.sqlite").st_mode) == 0o600
    envelopes = [p.envelope for p in ob.pending(0, 200)]
    # No key the device holds is a private key; a freshly guessed one opens nothing.
    for path in device_dir.iterdir():
        try:
            load_private_key(path.read_bytes())
            raise AssertionError(f"{path.name} is a private data key")
        except ValueError:
            pass
    guess, _ = generate_keypair()
    opener = Opener([load_private_key(guess)])
    for env in envelopes[:20]:
        try:
            opener.open(env)
            raise AssertionError("opened a record without central's key")
        except EnvelopeError:
            pass


def test_a_read_the_wire_refuses_is_counted_and_its_neighbours_are_buffered(tmp_path, caplog):
    """A recognizer that makes a read the wire contract refuses (here 12
    characters) loses that read, counted and logged without its text, never
    the other reads of the same write."""
    from edge_agent.agent import ReadWriter
    from edge_agent.config import Camera, Device, EdgeConfig
    from edge_agent.reads import Detection, Frame
    from edge_agent.tracking import Track

    ob = Outbox(tmp_path / "o.sqlite")
    cfg = EdgeConfig(Device("cam-a", str(tmp_path)), (Camera("lane-1", "file"),))
    writer = ReadWriter(cfg, ob, Sealer(load_public_key(PUBLIC), "cam-a"), "m")
    now = dt.datetime.now(dt.timezone.utc)
    finals = []
    for plate in ("7ABC123", "AB12CD34EF56", "5XYZ987"):
        track = Track("lane-1", now, now, (1, 2, 3, 4))
        track.add(Detection(plate, 0.9, (1, 2, 3, 4)), Frame("lane-1", 1, now, None))
        finals.append((track.vote(), track))
    caplog.set_level("ERROR")
    writer.write(finals)
    assert writer.written == 2 and writer.invalid == 1 and ob.depth == 2
    assert "wire contract refuses" in caplog.text and "AB12CD34EF56" not in caplog.text


def test_a_full_disk_is_a_clear_error_and_the_agent_counts_the_lost_reads(tmp_path, caplog):
    import dataclasses

    import pytest

    from edge_agent.agent import ReadWriter
    from edge_agent.config import Camera, Device, EdgeConfig
    from edge_agent.errors import BufferError_
    from edge_agent.reads import Detection, Frame
    from edge_agent.tracking import Track

    ob = Outbox(tmp_path / "o.sqlite")
    ob.add(sealed(1))
    pages = ob.db.execute("PRAGMA page_count").fetchone()[0]
    ob.db.execute(f"PRAGMA max_page_count={pages}")  # the file may not grow: as on a full disk
    with pytest.raises(BufferError_, match="full"):
        ob.add(sealed(50))
    assert ob.depth == 1  # nothing half-written
    cfg = EdgeConfig(Device("cam-a", str(tmp_path)), (Camera("lane-1", "file"),))
    writer = ReadWriter(dataclasses.replace(cfg), ob, Sealer(load_public_key(PUBLIC), "cam-a"), "m")
    now = dt.datetime.now(dt.timezone.utc)
    track = Track("lane-1", now, now, (1, 2, 3, 4))
    track.add(Detection("7ABC123", 0.9, (1, 2, 3, 4)), Frame("lane-1", 1, now, None))
    caplog.set_level("ERROR")
    writer.write([(track.vote(), track)] * 50)
    assert writer.lost == 50 and writer.written == 0
    assert "could not buffer 50 reads" in caplog.text and "7ABC123" not in caplog.text


_FULL_DISK = r"""
import json, resource, signal, sys
sys.path.insert(0, "tests")
from test_outbox import sealed
from edge_agent.errors import BufferError_
from edge_agent.outbox import Outbox

path = sys.argv[1]
ob = Outbox(path, max_age=86400.0, clock=lambda: 1_700_000_000.0 + 10 * 86400)  # every read is 10 days old
items = sealed(300)
ob.add(items)
ob.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # no file may grow: a full disk for the WAL
out = {}
for name, call in (("acknowledge", lambda: ob.acknowledge([i[0] for i in items[:200]])),
                   ("mark_rejected", lambda: ob.mark_rejected([(i[0], "x") for i in items[200:250]])),
                   ("expire", ob.expire)):
    try:
        call()
        out[name] = "no error"
    except BufferError_ as exc:
        out[name] = "BufferError_"
    out[name + "_depth"] = ob.depth
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
out["rows"] = ob.db.execute("SELECT count(*) FROM outbox").fetchone()[0]
out["after_expire"] = ob.expire()
out["depth_after"] = ob.depth
print(json.dumps(out))
"""


def test_a_full_disk_on_ack_park_or_expire_is_a_clear_error_and_changes_nothing(tmp_path):
    """Deleting needs disk too (the WAL grows). On a full disk acknowledge,
    mark_rejected and expire raise BufferError_ (the agent logs it and goes on:
    it used to be an OperationalError that crash-looped the agent at start) and
    the buffer's depth stays what is in the file (it used to drop by the reads
    of each failed attempt, which disabled the capacity bounds)."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path / "o.sqlite")], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["acknowledge"] == res["mark_rejected"] == res["expire"] == "BufferError_", res
    assert res["acknowledge_depth"] == res["mark_rejected_depth"] == res["expire_depth"] == res["rows"] == 300
    assert res["after_expire"] == 300 and res["depth_after"] == 0  # once there is room again


def test_a_parked_read_is_counted_once_however_often_it_is_refused(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite")
    items = sealed(2)
    ob.add(items)
    refusal = [(items[0][0], "undecryptable"), (new_read_id(), "undecryptable")]  # one of ours, one unknown
    assert ob.mark_rejected(refusal) == 1
    assert ob.mark_rejected(refusal) == 0  # the same ack again, as after a resend
    stats = ob.stats()
    assert stats.rejected == 1 and stats.counters["rejected"] == 1


def test_a_write_the_database_refuses_for_another_reason_is_a_buffer_error_too(tmp_path):
    """add and acknowledge caught only OperationalError (a full disk); any other
    database error (here a constraint error raised by a trigger; in the field a
    damaged page) escaped to the camera thread, which restarted its source and
    lost the reads uncounted."""
    import pytest

    from edge_agent.errors import BufferError_

    ob = Outbox(tmp_path / "o.sqlite")
    good = sealed(2)
    ob.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(BufferError_, match="refused"):
        ob.add(good)
    assert ob.depth == 0 and ob.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    ob.db.execute("DROP TRIGGER refuse")
    ob.add(good)
    ob.db.execute("CREATE TRIGGER refuse_delete BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(BufferError_, match="refused"):
        ob.acknowledge([good[0][0]])
    assert ob.depth == 2


def _scans(ob, action):
    """The statements ``action`` runs on the outbox that scan the whole table."""
    sql = []
    ob.db.conn.set_trace_callback(sql.append)
    try:
        action()
    finally:
        ob.db.conn.set_trace_callback(None)
    return [s for s in sql if s.lstrip().upper().startswith("SELECT") and any(
        "SCAN outbox" in row[-1] and "USING" not in row[-1]
        for row in ob.db.conn.execute("EXPLAIN QUERY PLAN " + s).fetchall())]


def test_stats_scan_nothing_and_stay_exact_through_every_write(tmp_path):
    """The agent writes its status every second: stats() summed the size of every
    row, a scan of the whole outbox (0.2 s on 50,000 reads) holding the lock the
    sync needs. Depth, bytes and parked reads are now kept by each committed
    write; they must equal a count of the file after puts, duplicates,
    evictions, parking, acknowledgements and expiry."""
    day = 86400
    now = [19_700 * day + 10 * day]
    ob = Outbox(tmp_path / "o.sqlite", max_reads=50, max_age=5 * day, clock=lambda: now[0])

    def check():
        stats = ob.stats()
        depth, nbytes, parked = ob.db.execute(
            "SELECT count(*), coalesce(sum(size), 0), count(rejected) FROM outbox").fetchone()
        assert (stats.depth, stats.bytes, stats.rejected) == (depth, nbytes, parked) == (ob.depth, stats.bytes,
                                                                                         stats.rejected)

    old = [(rid, now[0] - 8 * day, env) for rid, _, env in sealed(10)]
    ob.add(old)
    ob.mark_rejected([(old[0][0], "undecryptable"), (old[1][0], "undecryptable")])
    check()
    fresh = sealed(45, t0=now[0] - 3600)
    ob.add(fresh)  # 55 > 50: the 5 oldest go, both parked ones among them
    check()
    ob.add(fresh[:10])  # duplicates: the outbox is full, yet they make no room (they evicted 10 reads)
    assert ob.stats().counters["evicted_capacity"] == 5
    check()
    ob.mark_rejected([(fresh[0][0], "invalid-schema"), (old[9][0], "invalid-schema")])
    check()
    assert ob.acknowledge([fresh[0][0], fresh[1][0], new_read_id()]) == 2  # one parked among them
    check()
    assert ob.expire() == 5  # what is left of the old reads
    check()
    assert ob.stats().rejected == 0 and ob.stats().depth == 43
    assert _scans(ob, ob.stats) == []
    ob.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert (again.stats().depth, again.stats().bytes) == (43, sum(len(e) for _, _, e in fresh[2:]))


def test_acknowledging_does_not_wait_for_the_disk_but_buffering_does(tmp_path):
    """Deleting acknowledged reads commits with synchronous=NORMAL (a delete a
    power cut undoes only sends the read again; central stores it once): an
    fsync per acknowledgement was the largest cost of draining a backlog. A
    put, and every other write, still waits for the disk: the connection is
    back to FULL after an acknowledgement, also after a failed one."""
    import pytest

    from edge_agent.errors import BufferError_

    ob = Outbox(tmp_path / "o.sqlite")
    items = sealed(4)
    ob.add(items)
    sql = []
    ob.db.conn.set_trace_callback(sql.append)
    ob.acknowledge([items[0][0]])
    ob.add(sealed(1))
    ob.db.conn.set_trace_callback(None)
    begins = [i for i, s in enumerate(sql) if s.startswith("BEGIN")]
    assert len(begins) == 2
    before_ack, before_add = sql[:begins[0]], sql[begins[0] + 1:begins[1]]
    assert before_ack[-1:] == ["PRAGMA synchronous=NORMAL"]
    assert "PRAGMA synchronous=FULL" in before_add and "PRAGMA synchronous=NORMAL" not in before_add
    assert ob.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ob.db.execute("CREATE TRIGGER refuse_delete BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(BufferError_):
        ob.acknowledge([items[1][0]])
    assert ob.db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert ob.depth == 4
