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
