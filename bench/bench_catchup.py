"""Catch-up: a device with 50,000 buffered reads reconnects; how long until
central has stored them all (target <= 30 s; issue 24: <= 5 s), with no loss
and no duplicates, and how long a read captured *during* the drain takes to
reach central (fresh reads first, issue 21).

Real processes: Mosquitto (TLS), `alpr-central run`, `alpr-edge run
--exit-when-drained` on a device whose outbox was filled while offline; the
bench adds a fresh read to that outbox every ``--fresh-every`` seconds while
the agent drains it and reads central's ``stored_at`` for each.

    .venv/bin/python bench/bench_catchup.py [--reads 50000] [--batch-size 200] [--fresh-every 0.5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Rig, percentile  # noqa: E402

from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--collectors", type=int, default=2, help="collector processes sharing the subscription")
    ap.add_argument("--fresh-every", type=float, default=0.5, help="seconds between fresh reads during the drain "
                    "(0 = none)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        rig = Rig(root, ["cam-catchup"])
        ob = Outbox(root / "edge-cam-catchup" / "outbox.sqlite")
        sealer = Sealer(load_public_key((root / "data-key.pub.pem").read_bytes()), "cam-catchup")
        crop = b"\xff\xd8" + os.urandom(2500)
        t0 = time.time() - 3 * 86400  # three days offline
        ids = []
        for start in range(0, args.reads, 1000):
            items = []
            for i in range(start, min(args.reads, start + 1000)):
                ts = t0 + i * 5
                r = PlateRead(new_read_id(int(ts * 1000)), "cam-catchup", "lane-1",
                              dt.datetime.fromtimestamp(ts, dt.timezone.utc), f"CU{i:06d}"[-8:], 0.9,
                              (10, 10, 150, 75), crop_jpeg=crop)
                ids.append(r.read_id)
                items.append((r.read_id, ts, sealer.seal(r.read_id, encode_read(r))))
            ob.add(items)
        ob.close()
        (root / "empty").mkdir()
        (root / "empty.json").write_text('{"frames": [[]]}')  # no frames: the camera is idle
        rig.start_broker()
        rig.start_collectors(args.collectors)
        cfg = rig.edge_config("cam-catchup", source_dir=root / "empty", batch_size=args.batch_size,
                              max_in_flight=args.in_flight, sidecar=str(root / "empty.json"))
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(cfg),
                                 "--exit-when-drained", "--log-level", "warning"])
        fresh: dict[str, float] = {}  # read id -> wall time it was buffered
        done = threading.Event()

        def add_fresh() -> None:  # a camera still reading plates while the backlog drains
            box = Outbox(root / "edge-cam-catchup" / "outbox.sqlite")
            n = 0
            while not done.wait(args.fresh_every):
                ts = time.time()
                r = PlateRead(new_read_id(int(ts * 1000)), "cam-catchup", "lane-1",
                              dt.datetime.fromtimestamp(ts, dt.timezone.utc), f"FR{n:06d}", 0.9, (10, 10, 150, 75),
                              crop_jpeg=crop)
                box.add([(r.read_id, ts, sealer.seal(r.read_id, encode_read(r)))])
                fresh[r.read_id] = ts
                n += 1
            box.close()

        adder = threading.Thread(target=add_fresh, daemon=True)
        if args.fresh_every > 0:
            adder.start()
        try:
            proc.wait(timeout=600)
        finally:
            done.set()
            if proc.poll() is None:
                proc.kill()
        edge = proc
        # the agent exits once its outbox is empty, i.e. once every read was acknowledged as stored
        drained = time.monotonic() - started
        if adder.is_alive():
            adder.join(10)
        if edge.returncode != 0:
            rig.stop()
            sys.exit(f"the agent failed with exit code {edge.returncode}")
        with sqlite3.connect(rig.db) as conn:
            got = [r[0] for r in conn.execute("SELECT read_id FROM reads WHERE plate NOT LIKE 'FR%'")]
            stored_at = {rid: dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=dt.timezone.utc).timestamp() for rid, at in conn.execute(
                "SELECT read_id, stored_at FROM reads WHERE plate LIKE 'FR%'")}
        rig.stop()
        print(f"reads buffered:      {args.reads:,} (batch size {args.batch_size}, {args.in_flight} batches in flight, "
              f"{args.collectors} collector(s))")
        print(f"drain time:          {drained:.1f} s  ({args.reads / drained:,.0f} reads/s; includes agent start-up)")
        print(f"agent exit code:     {edge.returncode}")
        print(f"stored at central:   {len(got):,}  missing: {len(set(ids) - set(got))}  "
              f"extra: {len(set(got) - set(ids))}  duplicates: {len(got) - len(set(got))}")
        if fresh:
            lat = [stored_at[r] - t for r, t in fresh.items() if r in stored_at]
            print(f"fresh reads:         {len(fresh)} buffered during the drain, {len(lat)} stored by its end; "
                  f"buffered -> stored at central p50 {percentile(lat, 50):.2f} s, max {max(lat, default=float('nan')):.2f} s")


if __name__ == "__main__":
    main()
