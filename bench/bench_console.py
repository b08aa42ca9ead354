"""Console search speed: the first page of a search over 1,000,000 stored reads,
rendered as HTML by the console (session check, purpose/case check, the search,
the capped match count, the access-log entry, 25 crops inlined), target
<= 300 ms p95. In-process through the ASGI app (no network, no TLS), on a real
SQLite store with the production pragmas (WAL, synchronous=FULL).

    .venv/bin/python bench/bench_console.py [--reads 1000000] [--runs 30] [--db /tmp/console-bench.sqlite]

The store is built once (about a minute for a million reads) and kept at --db
for later runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from central import config as config_mod
from central.console.app import create_app
from central.console.auth import ConsoleAuth
from central.governance.users import Role, UserDirectory
from central.store import folded
from central.store.sqlite import SQLiteStore, _ts
from edge_agent.wire import new_read_id

PASSWORD = "bench password 1234"
ALPHA = "ABCDEFGHJKLMNPRSTUVWXYZ"


def plate(rng: random.Random) -> str:
    return f"{rng.randint(1, 9)}{''.join(rng.choice(ALPHA) for _ in range(3))}{rng.randint(0, 999):03d}"


def build(db: Path, n: int, now: dt.datetime) -> None:
    store = SQLiteStore(db)
    conn = store.db.conn
    have = conn.execute("SELECT count(*) FROM reads").fetchone()[0]
    if have >= n:
        store.close()
        return
    img = np.full((24, 80, 3), 230, np.uint8)
    cv2.putText(img, "7ABC123", (3, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    crop = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
    rng = random.Random(7)
    conn.execute("PRAGMA synchronous=OFF")
    t0 = time.monotonic()
    step = 20_000
    for start in range(have, n, step):
        rows, images = [], []
        for i in range(start, min(n, start + step)):
            rid = new_read_id()
            p = plate(rng) if i % 50 else "7ABC123"  # a plate seen often, for the exact search
            at = now - dt.timedelta(seconds=i * 2.6)   # a million reads over ~30 days
            dev = f"cam-{i % 40:02d}"
            rows.append((rid, dev, "lane-1", _ts(at), _ts(at), p, folded(p), 0.9, "[1,2,3,4]", "[]",
                         34.05, -118.24, 90.0, "bench"))
            images.append((rid, "crop", crop))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO reads VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO read_images VALUES (?,?,?)", images)
        conn.execute("COMMIT")
        print(f"  stored {min(n, start + step):,} reads ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("ANALYZE")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30, help="Runs of each search.")
    ap.add_argument("--db", default=str(Path(tempfile.gettempdir()) / "console-bench.sqlite"))
    args = ap.parse_args()
    from starlette.testclient import TestClient
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    db = Path(args.db)
    build(db, args.reads, now)
    cfg = config_mod.parse({"data_dir": str(db.parent), "store": {"path": str(db)}, "mqtt": {"tls": False}},
                           db.parent)
    store = SQLiteStore(db)
    users = UserDirectory(store.db.conn)
    if not store.db.conn.execute("SELECT 1 FROM users WHERE name = 'bench-admin'").fetchone():
        admin, _ = users.bootstrap("bench-admin", "Bench")
        users.add(admin, "bench-op", "Bench", Role.OPERATOR)
        ConsoleAuth(store.db.conn, cfg.console).set_password(admin, "bench-op", PASSWORD)
    total = store.count()
    store.close()
    app = create_app(cfg)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    page = client.get("/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert client.post("/sign-in", data={"name": "bench-op", "password": PASSWORD, "csrf": csrf}).status_code == 303
    why = {"purpose": "stolen-vehicle", "case": "BENCH-1", "submitted": "1"}
    searches = {
        "exact plate, last 30 days": {"plate": "7ABC123", "range": "30d"},
        "wildcard 7AB*, last 7 days": {"plate": "7AB*", "match": "wildcard", "range": "7d"},
        "tolerant 7A8C1Z3, last 30 days": {"plate": "7A8C1Z3", "match": "tolerant", "range": "30d"},
        "every read, last 24 h": {"range": "24h"},
        "one camera, last 7 days": {"camera": "cam-07/lane-1", "range": "7d"},
    }
    print(f"{total:,} stored reads; {args.runs} runs of each search; first page of {cfg.console.page_size}, "
          "HTML with inlined crops")
    every = []
    for name, params in searches.items():
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = client.get("/search", params={**params, **why})
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text[:500]
        shown = r.text.count('class="crop"')
        m = re.search(r"of ([\d,]+\+?)", r.text)
        times.sort()
        every += times
        print(f"  {name:<34} p50 {statistics.median(times):6.1f} ms  p95 {times[int(len(times) * 0.95) - 1]:6.1f} ms"
              f"  ({shown} crops; matched {m.group(1) if m else 0})")
    every.sort()
    p95 = every[int(len(every) * 0.95) - 1]
    print(f"all searches: p50 {statistics.median(every):.1f} ms, p95 {p95:.1f} ms (target <= 300 ms p95)")
    app.close()
    print(json.dumps({"reads": total, "p50_ms": round(statistics.median(every), 1), "p95_ms": round(p95, 1)}))


if __name__ == "__main__":
    main()
