"""Hotlist figures on a real SQLite file with the real collector and matcher code:

1. import of a CSV of ``--rows`` entries (default 1,000,000) into an empty list
   (target <= 30 s), then a ``--replace`` of the same file (nothing changes);
2. ingest with matching against that list vs. without (target >= 90 %):
   sealed batches of ``--batch`` reads go through ``Collector.prepare``
   (open, decrypt, validate) and ``Collector.commit`` in group commits of
   2,000 reads, as the collector's writer does; "with" runs the
   :class:`HotlistService` matcher thread in the same process (as
   ``alpr-central run`` does), woken after each commit. The broker is left
   out: it costs the same with and without matching. ``--hit-rate`` of the
   reads carry a listed plate.

    .venv/bin/python bench/bench_hotlist.py [--rows 1000000] [--reads 60000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import string
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from central.config import Hotlist  # noqa: E402
from central.governance.users import UserDirectory  # noqa: E402
from central.hotlist.lists import Hotlists  # noqa: E402
from central.hotlist.service import HotlistService  # noqa: E402
from central.ingest.collector import Collector  # noqa: E402
from central.ingest.keys import load_opener  # noqa: E402
from central.store.sqlite import SQLiteStore  # noqa: E402
from edge_agent.wire import (  # noqa: E402
    PlateRead, Sealer, encode_batch, encode_read, generate_keypair, load_public_key, new_read_id,
)

ALNUM = string.ascii_uppercase + string.digits


def plates(n: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    while len(seen) < n:
        seen.add("".join(rng.choices(ALNUM, k=7)))
    return list(seen)


def write_csv(path: Path, listed: list[str]) -> None:
    expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=300)).date().isoformat()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("plate,state,reason,source_agency,source_ref,case_number,expires\n")
        for i, p in enumerate(listed):
            fh.write(f"{p},CA,stolen vehicle,CA0194200,V{i:09d},,{expires}\n")


def payloads(public: bytes, n: int, batch: int, listed: list[str], hit_rate: float, rng: random.Random,
             devices: int = 100) -> list[tuple[str, bytes, int]]:
    key = load_public_key(public)
    sealers = {f"dev-{d:03d}": Sealer(key, f"dev-{d:03d}") for d in range(devices)}
    crop = b"\xff\xd8" + os.urandom(2500)
    out = []
    now = dt.datetime.now(dt.timezone.utc)
    for start in range(0, n, batch):
        dev = f"dev-{(start // batch) % devices:03d}"
        envs = []
        for i in range(start, min(n, start + batch)):
            plate = rng.choice(listed) if rng.random() < hit_rate else "".join(rng.choices(ALNUM, k=7))
            read = PlateRead(new_read_id(), dev, "lane-1", now, plate, 0.9, (10, 20, 120, 60), crop_jpeg=crop)
            envs.append(sealers[dev].seal(read.read_id, encode_read(read)))
        out.append((f"alpr/v1/devices/{dev}/reads", encode_batch(new_read_id(), envs), len(envs)))
    return out


def ingest(collector: Collector, items, group: int = 2000) -> float:
    t = time.perf_counter()
    pending, n = [], 0
    for topic, payload, count in items:
        prepared = collector.prepare(topic, payload)
        pending.append(prepared)
        n += count
        if n >= group:
            collector.commit(pending)
            pending, n = [], 0
    if pending:
        collector.commit(pending)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="hotlist entries (CSV rows)")
    ap.add_argument("--reads", type=int, default=60_000, help="reads per ingest run")
    ap.add_argument("--batch", type=int, default=200, help="reads per message")
    ap.add_argument("--hit-rate", type=float, default=0.001)
    ap.add_argument("--rounds", type=int, default=2, help="ingest runs with and without matching (alternating); "
                                                          "0 = the import figures only")
    args = ap.parse_args()
    rng = random.Random(21)
    with tempfile.TemporaryDirectory(prefix="bench-hotlist-") as tmp:
        root = Path(tmp)
        store = SQLiteStore(root / "central.sqlite")
        conn = store.db.conn
        admin, _ = UserDirectory(conn).bootstrap("ada", "City PD")
        cfg = Hotlist()
        lists = Hotlists(conn, cfg)
        lists.create(admin, "bench", "stolen-vehicle")
        listed = plates(args.rows, rng)
        csv_path = root / "list.csv"
        write_csv(csv_path, listed)
        size = csv_path.stat().st_size
        # Wall time, and this process's CPU time: on a machine shared with other work the
        # wall time includes waiting for a core; the CPU time leaves out the disk waits.
        t, cpu = time.perf_counter(), time.process_time()
        with open(csv_path, "rb") as fh:
            result = lists.import_csv(admin, "bench", fh, mode="delta")
        el, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"import: {args.rows:,} rows ({size / 1e6:.0f} MB) in {el:.1f}s wall ({args.rows / el:,.0f} rows/s), "
              f"{cpu:.1f}s CPU; load average {os.getloadavg()[0]:.1f}; counts {result.counts}")
        t, cpu = time.perf_counter(), time.process_time()
        with open(csv_path, "rb") as fh:
            result = lists.import_csv(admin, "bench", fh, mode="replace")
        el, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"re-import --replace, nothing changed: {el:.1f}s wall, {cpu:.1f}s CPU; counts {result.counts}")

        if args.rounds < 1:
            store.close()
            return
        private, public = generate_keypair()
        (root / "k.pem").write_bytes(private)
        collector = Collector(store, load_opener([root / "k.pem"]), max_message_bytes=8 << 20)
        rates = {"without": [], "with": []}
        for rnd in range(args.rounds):
            for mode in ("without", "with"):
                items = payloads(public, args.reads, args.batch, listed, args.hit_rate, rng)
                service = None
                if mode == "with":
                    service = HotlistService(store.path, cfg).attach(collector).start()
                else:  # the matcher must not see these reads later: move its cursor past them after
                    collector.on_stored.clear()
                el = ingest(collector, items)
                rate = args.reads / el
                rates[mode].append(rate)
                caught = ""
                if service is not None:
                    t = time.perf_counter()
                    top = conn.execute("SELECT max(rowid) FROM reads").fetchone()[0]
                    while service.matcher._cursor < top and time.perf_counter() - t < 60:
                        time.sleep(0.01)
                    caught = (f"; matcher caught up {time.perf_counter() - t:.2f}s after the last commit, "
                              f"hits {service.matcher.counters['hits']}")
                    service.stop()
                    collector.on_stored.clear()
                else:
                    conn.execute("UPDATE hotlist_matcher SET last_rowid = (SELECT max(rowid) FROM reads)")
                print(f"round {rnd + 1} ingest {mode:<7} matching: {args.reads:,} reads in {el:.2f}s "
                      f"({rate:,.0f} reads/s){caught}")
        best = {k: max(v) for k, v in rates.items()}
        print(f"ingest with matching / without (best of {args.rounds}): {best['with']:,.0f} / "
              f"{best['without']:,.0f} reads/s = {best['with'] / best['without']:.1%} (target >= 90 %)")
        store.close()


if __name__ == "__main__":
    main()
