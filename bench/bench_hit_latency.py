"""Capture -> hit visible to a watcher (``HitBook.follow``, what ``alpr-central
hits watch`` and the console's event stream use), through a real TLS Mosquitto
and real ``alpr-central run`` processes (collector + matcher), with
``--devices`` simulated devices sending ``--rate`` reads/s in total while one
more device drains a ``--backlog``-read backlog and captures listed plates as
it does.

Each simulated device is the agent's real outbox + sealer + SyncClient (as in
bench_ingest.py). Listed plates: every live device passes one about every
``--hit-every`` seconds; the draining device passes one every 2 s. Prints p50
and p99 of capture -> seen by the watcher, for the live devices and for the
draining device apart (target p99 <= 2 s). The draining device's figure
depends on the edge agent sending fresh reads ahead of its backlog.

    .venv/bin/python bench/bench_hit_latency.py [--devices 100] [--rate 1000] [--backlog 50000] [--seconds 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import run_devices  # noqa: E402
from harness import Rig, percentile  # noqa: E402

DRAINER = "drain-000"


def run_drainer(root: str, port: int, backlog: int, seconds: float, go, batch_size: int) -> None:
    """One device: a backlog buffered while offline, then live reads while it drains."""
    from edge_agent.outbox import Outbox
    from edge_agent.sync import SyncClient, SyncSettings
    from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id

    rootp = Path(root)
    sealer = Sealer(load_public_key((rootp / "data-key.pub.pem").read_bytes()), DRAINER)
    crop = b"\xff\xd8" + os.urandom(2500)
    ob = Outbox(rootp / f"edge-{DRAINER}" / "outbox.sqlite")
    then = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    for start in range(0, backlog, 1000):
        items = []
        for i in range(start, min(backlog, start + 1000)):
            r = PlateRead(new_read_id(), DRAINER, "lane-1", then, f"Q{i:06d}", 0.9, (1, 2, 150, 75), crop_jpeg=crop)
            items.append((r.read_id, then.timestamp(), sealer.seal(r.read_id, encode_read(r))))
        ob.add(items)
    go.wait()
    stop = threading.Event()
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=port, device_id=DRAINER,
                                   ca_file=str(rootp / "pki" / "ca.crt"),
                                   cert_file=str(rootp / "pki" / f"{DRAINER}.crt"),
                                   key_file=str(rootp / "pki" / f"{DRAINER}.key"),
                                   batch_size=batch_size, max_in_flight=2, ack_timeout=30), ob)
    thread = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    thread.start()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        now = dt.datetime.now(dt.timezone.utc)
        r = PlateRead(new_read_id(), DRAINER, "lane-1", now, f"L{n % 1000:05d}", 0.9, (1, 2, 150, 75),
                      crop_jpeg=crop)
        ob.add([(r.read_id, now.timestamp(), sealer.seal(r.read_id, encode_read(r)))])
        n += 1
        time.sleep(2.0)
    time.sleep(5.0)
    stop.set()
    thread.join(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1000, help="total reads/s of the live devices")
    ap.add_argument("--backlog", type=int, default=50_000, help="reads buffered on the draining device")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--processes", type=int, default=2, help="processes hosting the live devices")
    ap.add_argument("--collectors", type=int, default=1)
    ap.add_argument("--hit-every", type=float, default=5.0, help="seconds between listed plates per live device")
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()
    devices = [f"sim-{i:03d}" for i in range(args.devices)]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        rig = Rig(root, devices + [DRAINER])
        from central.governance.users import Role, UserDirectory
        from central.hotlist.csvimport import EntryInput
        from central.hotlist.hits import HitBook
        from central.hotlist.lists import Hotlists
        from central.store.sqlite import SQLiteStore
        store = SQLiteStore(rig.db)
        users = UserDirectory(store.db.conn)
        admin = users.get("demo-admin")
        operator, _ = users.add(admin, "watch", "City PD", Role.OPERATOR)
        lists = Hotlists(store.db.conn)
        lists.create(admin, "bench", "stolen-vehicle")
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        # Live devices read B00000, B00001, ... at rate/devices reads/s each: list every k-th.
        step = max(1, int(args.rate / args.devices * args.hit_every))
        listed = [f"B{i:05d}" for i in range(0, int(args.rate / args.devices * args.seconds) + step, step)]
        listed += [f"L{i:05d}" for i in range(int(args.seconds / 2) + 2)]
        for plate in listed:
            lists.add(admin, "bench", EntryInput(plate, "bench", "bench", "B-1", expires))
        rig.start_broker()
        rig.start_collectors(args.collectors)
        seen: dict[int, tuple[str, float, dt.datetime]] = {}
        stop = threading.Event()

        def watch() -> None:
            for hit in HitBook(store.db.conn).follow(operator, 0, stop, poll=0.05):
                seen[hit.hit_id] = (hit.device_id, time.time(), hit.captured_at)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        go = mp.Event()
        groups = [devices[i::args.processes] for i in range(args.processes)]
        procs = [mp.Process(target=run_devices, args=(str(root), rig.port, g, args.rate / args.devices,
                                                      args.seconds, args.batch_size, 30, 0, go)) for g in groups]
        procs.append(mp.Process(target=run_drainer, args=(str(root), rig.port, args.backlog, args.seconds, go,
                                                          args.batch_size)))
        for p in procs:
            p.start()
        time.sleep(3.0)
        go.set()
        for p in procs:
            p.join(timeout=args.seconds + 180)
        time.sleep(2.0)
        stop.set()
        watcher.join(timeout=5)
        left = rig.stored()
        rig.stop()
        store.close()
        live = [t - c.timestamp() for d, t, c in seen.values() if d != DRAINER]
        drain = [t - c.timestamp() for d, t, c in seen.values() if d == DRAINER]
        print(f"{args.devices} live devices at {args.rate:,.0f} reads/s in total for {args.seconds:.0f} s, and one "
              f"device draining {args.backlog:,} buffered reads; {args.collectors} collector(s); "
              f"{left:,} reads stored")
        for name, lat in (("live devices", live), ("draining device", drain)):
            if lat:
                print(f"capture -> hit seen ({name}): {len(lat)} hits, p50 {percentile(lat, 50):.2f} s, "
                      f"p99 {percentile(lat, 99):.2f} s, max {max(lat):.2f} s (target p99 <= 2 s)")
            else:
                print(f"capture -> hit seen ({name}): no hits seen")


if __name__ == "__main__":
    main()
