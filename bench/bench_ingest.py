"""Ingest through a real Mosquitto (TLS, client certificates, ACL) on loopback
with many simulated devices: sustained reads/s stored at central and
capture-to-stored latency (p50/p99).

Each simulated device is the agent's real outbox + sealer + SyncClient; a
producer thread per device "captures" reads at a steady rate (capture time =
now), seals and buffers them. Central is one or more real `alpr-central run`
processes sharing the subscription and one SQLite file. Everything runs on this
machine's cores, publishers included.

    .venv/bin/python bench/bench_ingest.py [--devices 100] [--rate 6000] [--seconds 30] [--collectors 2]
    .venv/bin/python bench/bench_ingest.py --prefill 1500   # throughput of central on a backlog
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Rig, percentile  # noqa: E402


def run_devices(root: str, port: int, devices: list[str], per_device_rate: float, seconds: float,
                batch_size: int, drain_seconds: float, prefill: int, go) -> None:
    from edge_agent.outbox import Outbox
    from edge_agent.sync import SyncClient, SyncSettings
    from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id

    rootp = Path(root)
    public = load_public_key((rootp / "data-key.pub.pem").read_bytes())
    crop = b"\xff\xd8" + os.urandom(2500)
    stop_sync = threading.Event()
    threads = []
    producers_done = threading.Event()

    def device(dev: str) -> None:
        ob = Outbox(rootp / f"edge-{dev}" / "outbox.sqlite")
        sealer = Sealer(public, dev)
        if prefill:  # a backlog buffered while offline: measures central, not the simulators
            now = dt.datetime.now(dt.timezone.utc)
            for start in range(0, prefill, 500):
                items = []
                for i in range(start, min(prefill, start + 500)):
                    r = PlateRead(new_read_id(), dev, "lane-1", now, f"P{i:06d}", 0.9, (1, 2, 150, 75),
                                  crop_jpeg=crop)
                    items.append((r.read_id, now.timestamp(), sealer.seal(r.read_id, encode_read(r))))
                ob.add(items)
            go.wait()
        sync = SyncClient(SyncSettings(host="127.0.0.1", port=port, device_id=dev,
                                       ca_file=str(rootp / "pki" / "ca.crt"),
                                       cert_file=str(rootp / "pki" / f"{dev}.crt"),
                                       key_file=str(rootp / "pki" / f"{dev}.key"),
                                       batch_size=batch_size, max_in_flight=2, ack_timeout=30), ob)
        st = threading.Thread(target=sync.run, args=(stop_sync,), daemon=True)
        st.start()
        time.sleep(1.0)
        end = time.monotonic() + (0 if prefill else seconds)
        owed = 0.0
        tick = 1.0  # a real device buffers a read at a time on its own disk; here 100 share one
        i = 0
        while time.monotonic() < end:
            t0 = time.monotonic()
            owed += per_device_rate * tick
            n, owed = int(owed), owed - int(owed)
            now = dt.datetime.now(dt.timezone.utc)
            items = []
            for _ in range(n):
                r = PlateRead(new_read_id(), dev, "lane-1", now, f"B{i % 100000:05d}", 0.9, (1, 2, 150, 75),
                              crop_jpeg=crop)
                items.append((r.read_id, now.timestamp(), sealer.seal(r.read_id, encode_read(r))))
                i += 1
            ob.add(items)
            time.sleep(max(0.0, tick - (time.monotonic() - t0)))
        deadline = time.monotonic() + drain_seconds
        while ob.depth and time.monotonic() < deadline:
            time.sleep(0.2)
        st.join(timeout=0)  # stopped by the process-wide event below

    for dev in devices:
        th = threading.Thread(target=device, args=(dev,), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    producers_done.set()
    stop_sync.set()
    time.sleep(1.0)


def _depth(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--rate", type=float, default=6000, help="total offered reads/s")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--collectors", type=int, default=2)
    ap.add_argument("--processes", type=int, default=4, help="processes hosting the simulated devices")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--prefill", type=int, default=0,
                    help="instead of producing live, give each device this many buffered reads and measure the drain")
    args = ap.parse_args()
    devices = [f"sim-{i:03d}" for i in range(args.devices)]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        rig = Rig(root, devices)
        rig.start_broker()
        rig.start_collectors(args.collectors)
        groups = [devices[i::args.processes] for i in range(args.processes)]
        go = mp.Event()
        procs = [mp.Process(target=run_devices, args=(str(root), rig.port, g, args.rate / args.devices,
                                                      args.seconds, args.batch_size, 300, args.prefill, go))
                 for g in groups]
        for p in procs:
            p.start()
        if args.prefill:
            outboxes = [root / f"edge-{d}" / "outbox.sqlite" for d in devices]
            while not all(_depth(o) >= args.prefill for o in outboxes):
                time.sleep(0.5)
            go.set()
        time.sleep(1.0)
        # steady-state window: skip the first 5 s of ramp-up
        time.sleep(5.0)
        c0, t0 = rig.stored(), time.monotonic()
        time.sleep(max(1.0, args.seconds - 10))
        c1, t1 = rig.stored(), time.monotonic()
        for p in procs:
            p.join()
        with sqlite3.connect(rig.db) as conn:
            rows = conn.execute("SELECT (julianday(stored_at) - julianday(captured_at)) * 86400000 "
                                "FROM reads").fetchall()
        rig.stop()
        lat = [r[0] for r in rows]
        offered = args.prefill * args.devices if args.prefill else args.rate * args.seconds
        load = (f"{args.prefill:,} buffered reads each" if args.prefill
                else f"offered: {args.rate:,.0f} reads/s for {args.seconds:.0f} s")
        print(f"devices: {args.devices} in {args.processes} processes; collectors: {args.collectors}; "
              f"batch size: {args.batch_size}; {load}")
        print(f"sustained stored:   {(c1 - c0) / (t1 - t0):,.0f} reads/s (steady window {t1 - t0:.0f} s)")
        print(f"stored in total:    {len(lat):,} of ~{offered:,.0f} offered")
        if args.prefill:
            print("(latency is not meaningful for a buffered backlog; run without --prefill)")
        print(f"capture->stored latency: p50 {percentile(lat, 50):,.0f} ms, p99 {percentile(lat, 99):,.0f} ms, "
              f"max {max(lat):,.0f} ms")


if __name__ == "__main__":
    main()
