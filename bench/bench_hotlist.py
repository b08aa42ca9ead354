"""Hotlist figures on a real SQLite file with the real collector and matcher code:

1. import of a CSV of ``--rows`` entries (default 1,000,000) into an empty list
   (target <= 30 s), then a ``--replace`` of the same file (nothing changes);
2. ingest with matching against that list vs. without (target >= 90 %):
   sealed batches of ``--batch`` reads go through ``Collector.prepare``
   (open, decrypt, validate) and ``Collector.commit`` in group commits of
   2,000 reads, as the collector's writer does; "with" runs the matcher as
   ``alpr-central run`` does (``--matcher process``: :class:`HotlistProcess`,
   a child process woken after each commit; ``--matcher thread``: the
   :class:`HotlistService` threads in the collector's process, as before
   2026-12-05), and also reports how long after the last commit the matcher
   had matched every read. The broker is left out: it costs the same with and
   without matching. ``--hit-rate`` of the reads carry a listed plate.

   Every ingest run starts from the same database (a copy of the one made by
   the import, with no reads) and its own store, and each round runs the same
   sealed reads once without and once with matching, in alternating order
   (without first in odd rounds, with first in even ones): a store that
   grew from run to run made every later run slower, which counted against
   whichever mode ran later.

    .venv/bin/python bench/bench_hotlist.py [--rows 1000000] [--reads 60000] [--rounds 2] [--matcher process]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from central.config import Hotlist  # noqa: E402
from central.governance.users import UserDirectory  # noqa: E402
from central.hotlist.lists import Hotlists  # noqa: E402
from central.hotlist.service import HotlistProcess, HotlistService  # noqa: E402
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


def run_once(base: Path, db: Path, key: Path, items, n: int, mode: str, matcher: str, cfg: Hotlist) -> tuple:
    """One ingest run on a fresh copy of ``base``: (reads/s, CPU seconds of this process
    while ingesting, seconds from the last commit until every read was matched, hits, CPU
    seconds of the matcher process; the last three None without matching)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(base, db)
    store = SQLiteStore(db)
    collector = Collector(store, load_opener([key]), max_message_bytes=8 << 20)
    service = None
    if mode == "with":
        service = (HotlistProcess(db, cfg) if matcher == "process" else HotlistService(db, cfg))
        service.attach(collector).start()
        time.sleep(1.0)  # a child process imports its modules first
    cpu = time.process_time()
    el = ingest(collector, items)
    cpu = time.process_time() - cpu
    caught = hits = child_cpu = None
    if service is not None:
        t = time.perf_counter()
        while service.counters["reads"] < n and time.perf_counter() - t < 120:
            time.sleep(0.005)
        caught, hits = time.perf_counter() - t, service.counters["hits"]
        if isinstance(service, HotlistProcess):
            child_cpu = cpu_seconds(service.pid)
        service.stop()
    store.close()
    return n / el, cpu, caught, hits, child_cpu


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a process so far (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="hotlist entries (CSV rows)")
    ap.add_argument("--reads", type=int, default=60_000, help="reads per ingest run")
    ap.add_argument("--batch", type=int, default=200, help="reads per message")
    ap.add_argument("--hit-rate", type=float, default=0.001)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of one ingest run with and one without matching "
                                                          "(alternating order); 0 = the import figures only")
    ap.add_argument("--matcher", choices=("process", "thread"), default="process",
                    help="the matcher in a child process (as 'alpr-central run' runs it) or in a thread of the "
                         "collector's process")
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

        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        if args.rounds < 1:
            return
        base = root / "base.sqlite"
        shutil.copyfile(root / "central.sqlite", base)  # closed: checkpointed, no WAL
        private, public = generate_keypair()
        (root / "k.pem").write_bytes(private)
        print(f"ingest runs: {args.reads:,} reads each, matcher as a {args.matcher}; "
              f"load average {os.getloadavg()[0]:.1f}")
        rates: dict[str, list[float]] = {"without": [], "with": []}
        for rnd in range(args.rounds):
            items = payloads(public, args.reads, args.batch, listed, args.hit_rate, rng)
            order = ("without", "with") if rnd % 2 == 0 else ("with", "without")
            for mode in order:
                rate, cpu, caught, hits, child_cpu = run_once(base, root / "run.sqlite", root / "k.pem", items,
                                                              args.reads, mode, args.matcher, cfg)
                rates[mode].append(rate)
                more = "" if caught is None else (f"; every read matched {caught:.2f}s after the last commit, "
                                                  f"hits {hits}")
                if child_cpu is not None:
                    more += f"; matcher process {child_cpu:.2f}s CPU (with its start)"
                print(f"round {rnd + 1} ingest {mode:<7} matching: {args.reads:,} reads "
                      f"({rate:,.0f} reads/s, {cpu:.2f}s CPU in the collector's process){more}; "
                      f"load average {os.getloadavg()[0]:.1f}")
            print(f"round {rnd + 1} ratio: {rates['with'][-1] / rates['without'][-1]:.1%}")
        best = {k: max(v) for k, v in rates.items()}
        ratios = [w / wo for w, wo in zip(rates["with"], rates["without"])]
        print(f"ingest with matching / without (best of {args.rounds}): {best['with']:,.0f} / "
              f"{best['without']:,.0f} reads/s = {best['with'] / best['without']:.1%}; median of the rounds' "
              f"ratios {statistics.median(ratios):.1%} (target >= 90 %); load average {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
