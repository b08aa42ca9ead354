"""Governance costs on one core: access-log appends/s (each its own
transaction, as searches are), chain verification entries/s, and a purge of
old reads with holds and a hotlist in place.

    .venv/bin/python bench/bench_governance.py [--entries 20000] [--reads 200000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from central.governance.audit import AccessLog, verify
from central.config import Retention
from central.governance.retention import Governor
from central.store.sqlite import SQLiteStore
from central.governance.users import Role, UserDirectory
from edge_agent.wire import PlateRead, new_read_id


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=20000)
    ap.add_argument("--reads", type=int, default=200000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = SQLiteStore(Path(d) / "c.sqlite")
        conn = store.db.conn
        log = AccessLog(conn)
        t = time.perf_counter()
        for i in range(args.entries):
            log.append(user="otto", organization="City PD", action="search", purpose="stolen-vehicle",
                       case_number=f"C-{i}", detail={"plate": "7AB*", "limit": 100}, result_count=3)
        el = time.perf_counter() - t
        print(f"access log: {args.entries / el:,.0f} appends/s (one transaction each, synchronous=FULL)")
        t = time.perf_counter()
        report = verify(conn)
        el = time.perf_counter() - t
        print(f"audit verify: {report.entries:,} entries in {el:.2f}s ({report.entries / el:,.0f} entries/s), "
              f"ok={report.ok}")

        now = dt.datetime.now(dt.timezone.utc)
        batch = []
        for i in range(args.reads):
            at = now - dt.timedelta(days=900 if i % 2 else 10, seconds=i)
            batch.append(PlateRead(new_read_id(), "cam-a", "lane-1", at, f"7AB{i % 10000:04d}", 0.9, (1, 2, 3, 4),
                                   crop_jpeg=b"\xff\xd8" + bytes(2000)))
            if len(batch) == 5000:
                store.add_reads(batch, now)
                batch = []
        if batch:
            store.add_reads(batch, now)
        users = UserDirectory(conn)
        admin, _ = users.bootstrap("ada", "City PD")
        sup, _ = users.add(admin, "sue", "City PD", Role.SUPERVISOR)
        op, _ = users.add(admin, "otto", "City PD", Role.OPERATOR)
        gov = Governor(conn, Retention())
        from central.hotlist.csvimport import EntryInput
        from central.hotlist.lists import Hotlists
        lists = Hotlists(conn)
        lists.create(admin, "bench", "stolen-vehicle")
        for i in range(100):  # entered now: reads captured before were not hits (see retention._HIT)
            lists.add(admin, "bench", EntryInput(f"7AB{i:04d}", "bench", "bench", f"B-{i}",
                                                 now + dt.timedelta(days=10)))
        for i in range(20):
            h = gov.request_hold(op, case_number=f"H-{i}", plates=[f"7AB{i * 7:04d}"], since=now - dt.timedelta(days=1000),
                                 until=now, reason="bench", review_on=(now + dt.timedelta(days=30)).date())
            gov.approve_hold(sup, h.hold_id)
        t = time.perf_counter()
        result = gov.purge(admin)
        el = time.perf_counter() - t
        print(f"purge: {args.reads:,} reads, deleted {result.counts} in {el:.2f}s; held kept {result.held_kept}")
        store.close()


if __name__ == "__main__":
    main()
