"""Outbox throughput on one core: sealed inserts/s and acknowledged deletes/s.

Each read is a realistic payload (plate, alternates, a ~3 KB crop JPEG, location)
encoded, sealed (AES-256-GCM under a per-session X25519+HKDF key) and committed
to the WAL outbox with synchronous=FULL, exactly as the agent does.

    .venv/bin/python bench/bench_outbox.py [--reads 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

from edge_agent.outbox import Outbox
from edge_agent.wire import Alternate, Location, PlateRead, Sealer, encode_read, generate_keypair, load_public_key, new_read_id


def make_reads(n: int) -> list[PlateRead]:
    now = dt.datetime.now(dt.timezone.utc)
    crop = b"\xff\xd8" + os.urandom(3000)
    return [PlateRead(new_read_id(), "cam-bench", "lane-1", now, f"7ABC{i % 1000:03d}", 0.93, (400, 300, 150, 75),
                      (Alternate("7A8C123", 0.31), Alternate("7ABC1Z3", 0.12)), crop, None,
                      Location(34.05, -118.24, 90.0), "bench") for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=20000)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    _, public = generate_keypair()
    sealer = Sealer(load_public_key(public), "cam-bench")
    reads = make_reads(args.reads)
    with tempfile.TemporaryDirectory() as tmp:
        for per_commit in (1, 10, 100):
            n = min(args.reads, 3000) if per_commit == 1 else args.reads
            ob = Outbox(Path(tmp) / f"o{per_commit}.sqlite")
            t0 = time.perf_counter()
            for i in range(0, n, per_commit):
                chunk = reads[i:i + per_commit]
                ob.add([(r.read_id, r.captured_at.timestamp(), sealer.seal(r.read_id, encode_read(r))) for r in chunk])
            el = time.perf_counter() - t0
            print(f"sealed inserts, {per_commit:>3} per commit: {n / el:>9,.0f} reads/s  ({n} reads, "
                  f"{os.path.getsize(ob.path) / n:,.0f} B/read on disk)")
            if per_commit == 100:
                pending = ob.pending(0, n)
                t0 = time.perf_counter()
                for i in range(0, len(pending), 200):  # acks name up to one batch (200) of read ids
                    ob.acknowledge([p.read_id for p in pending[i:i + 200]])
                el = time.perf_counter() - t0
                print(f"acknowledged deletes, 200 per ack:  {len(pending) / el:>9,.0f} reads/s")
            ob.close()
        t0 = time.perf_counter()
        for r in reads[:5000]:
            sealer.seal(r.read_id, encode_read(r))
        print(f"encode + seal only:               {5000 / (time.perf_counter() - t0):>9,.0f} reads/s")


if __name__ == "__main__":
    main()
