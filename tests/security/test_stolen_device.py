"""What a stolen device's outbox tells about *when* its reads were taken
(issue 20.3): the capture day of each read, nothing finer. No capture time in
rows, indexes, free pages or the WAL; read ids carry no time; an outbox of
schema 1 (captured_at in clear) is migrated and its old times overwritten."""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
import uuid

from edge_agent.agent import ReadWriter
from edge_agent.config import Camera, Device, EdgeConfig
from edge_agent.outbox import SCHEMA_VERSION, Outbox
from edge_agent.reads import Detection, Frame
from edge_agent.tracking import Track
from edge_agent.wire import Sealer, load_public_key
from edge_agent.wire.envelope import EnvelopeHeader
from test_outbox import PUBLIC, sealed

DAY = 86400
T0 = 1_700_000_123.456  # 2023-11-14 22:15:23.456 UTC


def _time_patterns(ts: float) -> list[bytes]:
    """Every way a capture time would plausibly sit in the file."""
    iso = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    out = [struct.pack(">d", ts), struct.pack("<d", ts), struct.pack(">d", float(int(ts))),
           struct.pack(">q", int(ts))[2:], struct.pack(">q", int(ts * 1000))[2:],  # seconds, ms (as in a UUIDv7)
           iso.strftime("%Y-%m-%dT%H:%M").encode(), iso.strftime("%Y-%m-%d %H:%M").encode()]
    return out


def _raw(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def _uuid_time_ms(rid: str) -> int:
    return uuid.UUID(rid).int >> 80


def test_a_stolen_outbox_holds_no_capture_time_finer_than_the_day_and_no_time_in_ids(tmp_path):
    folder = tmp_path / "device"
    ob = Outbox(folder / "outbox.sqlite")
    cfg = EdgeConfig(Device("cam-a", str(folder)), (Camera("lane-1", "file"),))
    writer = ReadWriter(cfg, ob, Sealer(load_public_key(PUBLIC), "cam-a"), "m")
    times = [T0 + i * 617.3 for i in range(120)]  # 120 reads over ~20 hours (two UTC days)
    for i, ts in enumerate(times):
        at = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
        track = Track("lane-1", at, at, (1, 2, 3, 4))
        track.add(Detection(f"7AB{i:04d}", 0.9, (1, 2, 3, 4)), Frame("lane-1", i, at, None))
        writer.write([(track.vote(), track)])
    assert writer.written == 120
    raw = _raw(folder)  # the outbox and its WAL, as a thief copies them
    for ts in times:
        for pattern in _time_patterns(ts):
            assert pattern not in raw, f"capture time {ts} is readable in the stolen outbox ({pattern!r})"
    conn = sqlite3.connect(folder / "outbox.sqlite")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(outbox)")]
    assert "captured_at" not in columns
    days = {r[0] for r in conn.execute("SELECT capture_day FROM outbox")}
    assert days == {int(ts // DAY) for ts in times}  # the day, no finer
    ids = [r[0] for r in conn.execute("SELECT read_id FROM outbox ORDER BY seq")]
    envelopes = [r[0] for r in conn.execute("SELECT envelope FROM outbox ORDER BY seq")]
    conn.close()
    assert all(uuid.UUID(r).version == 4 for r in ids)
    # the read id in each envelope's clear header is the same random id
    assert [EnvelopeHeader.parse(e).read_id for e in envelopes] == ids
    t_ms = [int(ts * 1000) for ts in times]
    assert not any(abs(_uuid_time_ms(r) - t) < 7 * DAY * 1000 for r, t in zip(ids, t_ms))


_V1_DDL = """
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, read_id TEXT NOT NULL,
    captured_at REAL NOT NULL, size INTEGER NOT NULL, envelope BLOB NOT NULL, rejected TEXT);
CREATE UNIQUE INDEX idx_outbox_read_id ON outbox (read_id);
CREATE INDEX idx_outbox_captured_at ON outbox (captured_at);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
PRAGMA user_version = 1;
"""


def _v1_outbox(path, items, rejected_id=None):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_V1_DDL)
    conn.executemany("INSERT INTO outbox(read_id, captured_at, size, envelope) VALUES (?,?,?,?)",
                     [(rid, ts, len(env), env) for rid, ts, env in items])
    if rejected_id:
        conn.execute("UPDATE outbox SET rejected = 'undecryptable' WHERE read_id = ?", [rejected_id])
    conn.execute("INSERT INTO counters VALUES ('buffered', ?), ('acknowledged', 7)", [len(items)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_a_schema_1_outbox_is_migrated_keeping_every_read_and_its_old_times_are_overwritten(tmp_path):
    folder = tmp_path / "device"
    folder.mkdir()
    items = [(rid, T0 + i * 3001.7, env) for i, (rid, _, env) in enumerate(sealed(300))]
    _v1_outbox(folder / "outbox.sqlite", items, rejected_id=items[5][0])
    before = _raw(folder)
    assert struct.pack(">d", items[0][1]) in before  # what an old outbox gave away

    ob = Outbox(folder / "outbox.sqlite", max_age=365 * DAY, clock=lambda: T0 + 370 * DAY)
    assert ob.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert ob.depth == 300 and ob.stats().rejected == 1
    assert ob.stats().counters == {"buffered": 300, "acknowledged": 7}
    kept = [p.read_id for p in ob.pending(0, 1000)]
    assert kept == [rid for rid, _, _ in items if rid != items[5][0]]  # same reads, same order
    assert {p.envelope for p in ob.pending(0, 1000)} == {env for rid, _, env in items if rid != items[5][0]}
    raw = _raw(folder)
    for _, ts, _ in items:
        for pattern in _time_patterns(ts):
            assert pattern not in raw, f"an old capture time survived the migration ({pattern!r})"
    # expiry still works, by day: T0 + 370 d - 365 d = T0 + 5 d; reads of days before that go
    expected = sum(1 for _, ts, _ in items if int(ts // DAY) * DAY < T0 + 5 * DAY)
    assert 0 < expected < 300
    assert ob.expire() == expected
    ob.add(sealed(1, t0=T0 + 369 * DAY))  # new reads go in after the migrated ones
    assert ob.pending(0, 1000)[-1].seq > max(p.seq for p in ob.pending(0, 1000)[:-1])
    ob.close()
    again = Outbox(folder / "outbox.sqlite")  # a second open migrates nothing
    assert again.depth == 300 - expected + 1
    again.close()
