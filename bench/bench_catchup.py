"""Catch-up: a device with 50,000 buffered reads reconnects; how long until
central has stored them all (target <= 30 s), with no loss and no duplicates.

Real processes: Mosquitto (TLS), `alpr-central run`, `alpr-edge run
--exit-when-drained` on a device whose outbox was filled while offline.

    .venv/bin/python bench/bench_catchup.py [--reads 50000] [--batch-size 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Rig  # noqa: E402

from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--collectors", type=int, default=2, help="collector processes sharing the subscription")
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
        edge = subprocess.run([sys.executable, "-m", "edge_agent", "run", "--config", str(cfg),
                               "--exit-when-drained", "--log-level", "warning"], timeout=600)
        # the agent exits once its outbox is empty, i.e. once every read was acknowledged as stored
        drained = time.monotonic() - started
        if edge.returncode != 0:
            rig.stop()
            sys.exit(f"the agent failed with exit code {edge.returncode}")
        with sqlite3.connect(rig.db) as conn:
            got = [r[0] for r in conn.execute("SELECT read_id FROM reads")]
        rig.stop()
        print(f"reads buffered:      {args.reads:,} (batch size {args.batch_size}, {args.in_flight} batches in flight, "
              f"{args.collectors} collector(s))")
        print(f"drain time:          {drained:.1f} s  ({args.reads / drained:,.0f} reads/s; includes agent start-up)")
        print(f"agent exit code:     {edge.returncode}")
        print(f"stored at central:   {len(got):,}  missing: {len(set(ids) - set(got))}  "
              f"extra: {len(set(got) - set(ids))}  duplicates: {len(got) - len(set(got))}")


if __name__ == "__main__":
    main()
