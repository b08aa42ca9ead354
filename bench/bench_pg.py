"""Central at city scale, on this machine: ingest through real Mosquitto into
SQLite and PostgreSQL with 2 collectors, search latency on a large partitioned
table, and a month's retention purge by partition drop vs row deletes.

    .venv/bin/python bench/bench_pg.py ingest [--backend both] [--reads 200000] [--devices 20]
    .venv/bin/python bench/bench_pg.py search [--rows 5000000] [--queries 200]
    .venv/bin/python bench/bench_pg.py purge [--rows 1000000] [--months 3]

``ingest``: publisher processes pre-seal every batch first (the devices' work
is not measured), then replay them as fast as the broker takes them, each
device over its own TLS connection with its own certificate. Three runs on the
same batches, printed side by side:
  raw MQTT  2 bare paho subscribers on the shared subscription (no work)
  raw DB    2 processes writing the same number of reads with ``add_reads``
            in transactions of the collector's largest group commit
  central   2 real ``alpr-central run`` processes (open, validate, store, ack),
            with the CPU used per stored read by each role (collectors, their
            hotlist children, broker, PostgreSQL, the rest), from /proc
``search``: a throwaway PostgreSQL (fsync on) gets ``--rows`` reads over 12
months loaded with COPY (indexes built after the load, as a bulk load does),
then p50/p95 of exact, wildcard and tolerant searches over a 30-day range
through ``PostgresStore.search``; then one month dropped as a partition and
another month deleted row by row.
``purge``: the retention job itself on PostgreSQL, whole months dropped vs
the same purge deleting row by row (see :func:`purge`).
Each run keeps to a few minutes on 2 cores; the figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import random
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from harness import Rig, percentile  # noqa: E402
from pg_cluster import PgCluster, find_bindir  # noqa: E402

UTC = dt.timezone.utc
PG_SETTINGS = {"shared_buffers": "1GB", "max_wal_size": "4GB", "checkpoint_timeout": "15min",
               "maintenance_work_mem": "512MB", "synchronous_commit": "on"}


# -- the replaying publisher ---------------------------------------------------------------
def _mqtt_client(client_id: str, pki: Path, cert: str):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / f"{cert}.crt"), keyfile=str(pki / f"{cert}.key"),
              cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    return c


def publisher(root: str, devices: list[str], per_device: int, batch: int, crop_bytes: int, cmd_q, res_q) -> None:
    from edge_agent.wire import (
        PlateRead, Sealer, decode_ack, encode_batch, encode_read, load_public_key, new_read_id,
    )
    rootp = Path(root)
    public = load_public_key((rootp / "data-key.pub.pem").read_bytes())
    now = dt.datetime.now(UTC)
    rng = random.Random(os.getpid())
    payloads: dict[str, list[bytes]] = {}
    for dev in devices:
        sealer = Sealer(public, dev)
        out = []
        for start in range(0, per_device, batch):
            envs = []
            for i in range(start, min(per_device, start + batch)):
                r = PlateRead(new_read_id(), dev, "lane-1", now, f"{rng.randrange(10)}{_letters(rng, 3)}"
                              f"{rng.randrange(1000):03d}", 0.9, (1, 2, 150, 75),
                              crop_jpeg=(b"\xff\xd8" + os.urandom(crop_bytes - 2)) if crop_bytes else None)
                envs.append(sealer.seal(r.read_id, encode_read(r)))
            out.append(encode_batch(new_read_id(), envs))
        payloads[dev] = out
    res_q.put(("sealed", sum(len(v) for v in payloads.values())))
    while True:
        got = cmd_q.get()
        if got is None:
            return
        port, want_acks = got
        acked: dict[str, set] = {dev: set() for dev in devices}
        last_ack = [0.0]
        lock = threading.Lock()

        def on_message(client, userdata, message):  # central's acks: what it has durably stored
            ack = decode_ack(message.payload)
            with lock:
                acked[message.topic.split("/")[-2]].update(ack.stored)
                last_ack[0] = time.time()

        clients = {}
        for dev in devices:
            c = _mqtt_client(f"{dev}-replay", rootp / "pki", dev)
            if want_acks:
                c.on_message = on_message
                c.on_connect = lambda client, *a, dev=dev: client.subscribe(f"alpr/v1/devices/{dev}/ack", qos=1)
            c.connect("127.0.0.1", port)
            c.loop_start()
            clients[dev] = c
        time.sleep(0.5)
        t0 = time.time()
        infos = []
        for i in range(max(len(v) for v in payloads.values())):
            for dev in devices:
                if i < len(payloads[dev]):
                    infos.append(clients[dev].publish(f"alpr/v1/devices/{dev}/reads", payloads[dev][i], qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
        t1 = time.time()
        if want_acks:  # until every read is acknowledged as stored, or nothing moved for 15 s
            seen, moved = -1, time.time()
            while True:
                with lock:
                    n = sum(len(v) for v in acked.values())
                if n != seen:
                    seen, moved = n, time.time()
                if n >= len(devices) * per_device or time.time() - moved > 15:
                    break
                time.sleep(0.05)
        for c in clients.values():
            c.disconnect()
            c.loop_stop()
        res_q.put(("done", t0, t1, last_ack[0], sum(len(v) for v in acked.values())))


def _letters(rng, n):
    return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))


def raw_subscriber(root: str, port: int, index: int, counter, last) -> None:
    # each its own collector certificate: the broker takes the certificate's name as the client id
    c = _mqtt_client(f"central.collector-raw-{index}", Path(root) / "pki", f"collector-{index}")

    def on_message(client, userdata, message):
        with counter.get_lock():
            counter.value += 1
        last.value = time.time()

    c.on_message = on_message
    c.on_connect = lambda client, *a: client.subscribe("$share/raw/alpr/v1/devices/+/reads", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_forever(timeout=0.5)


def raw_writer(url: str, path: str, n: int, crop_bytes: int, out) -> None:
    from central.ingest.collector import CollectorService
    from central.store.postgres import PostgresStore
    from central.store.sqlite import SQLiteStore
    from edge_agent.wire import PlateRead, new_read_id
    store = PostgresStore(url) if url else SQLiteStore(path)
    rng = random.Random(os.getpid())
    now = dt.datetime.now(UTC)
    group = CollectorService.MAX_GROUP_READS
    batches = [[PlateRead(new_read_id(), "raw", "lane-1", now, f"{rng.randrange(10)}{_letters(rng, 3)}"
                          f"{rng.randrange(1000):03d}", 0.9, (1, 2, 150, 75),
                          crop_jpeg=(b"\xff\xd8" + os.urandom(crop_bytes - 2)) if crop_bytes else None)
                for _ in range(min(group, n - s))] for s in range(0, n, group)]
    t0 = time.time()
    for b in batches:
        store.add_reads(b, now)
    out.put(time.time() - t0)
    store.close()


class PgRig(Rig):
    store_url = ""

    def central_config(self, index: int) -> Path:
        path = super().central_config(index)
        if self.store_url:
            text = path.read_text()
            path.write_text(text.replace("[mqtt]", f'[store]\nurl = "{self.store_url}"\n[mqtt]', 1))
        return path

    def stop_collectors(self) -> None:
        for p in self.collectors:
            p.terminate()
        for p in self.collectors:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.collectors = []

    def stored(self) -> int:
        if not self.store_url:
            return super().stored()
        import psycopg
        with psycopg.connect(self.store_url) as conn:
            return conn.execute("SELECT count(*) FROM reads").fetchone()[0]


def cpu_by_process() -> dict[int, tuple[str, int, float]]:
    """Every process's (name, parent, user + system CPU seconds so far), from /proc."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (name, int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_per_read(before: dict, after: dict, collectors: list[int], broker: int, reads: int) -> str:
    """CPU used per stored read between two snapshots, by role: the collector
    processes, their children (the hotlist matcher), the broker, the database
    server, everything else (the publishers, the bench, any other work on the machine)."""
    roles = {"collectors": 0.0, "their children": 0.0, "broker": 0.0, "postgres": 0.0, "other": 0.0}
    for pid, (name, parent, cpu) in after.items():
        used = cpu - before.get(pid, (name, parent, 0.0))[2]
        if pid in collectors:
            roles["collectors"] += used
        elif parent in collectors:
            roles["their children"] += used
        elif pid == broker:
            roles["broker"] += used
        elif name.startswith("postgres"):
            roles["postgres"] += used
        else:
            roles["other"] += used
    return ", ".join(f"{k} {1e6 * v / max(reads, 1):.0f}" for k, v in roles.items()) + " us"


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _publish(cmd_qs, res_q, port: int, acks: bool = False) -> tuple[float, float, float, int]:
    """Replay every pre-sealed batch; (first publish, last publish done, last ack
    received, reads acknowledged as stored). With ``acks`` each device waits for
    central's acks, so the end is when the last read was stored *and said so*,
    measured without querying the database while it ingests."""
    for q in cmd_qs:
        q.put((port, acks))
    done = [res_q.get(timeout=600) for _ in cmd_qs]
    return (min(d[1] for d in done), max(d[2] for d in done), max(d[3] for d in done), sum(d[4] for d in done))


def ingest(args) -> None:
    devices = [f"sim-{i:03d}" for i in range(args.devices)]
    per_device = args.reads // args.devices
    total = per_device * args.devices
    msgs_expected = args.devices * -(-per_device // args.batch)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        rig = PgRig(root, devices)
        rig.start_broker()
        cluster = None
        ctx = mp.get_context("fork")
        res_q = ctx.Queue()
        groups = [devices[i::args.publishers] for i in range(args.publishers)]
        cmd_qs = [ctx.Queue() for _ in groups]
        pubs = [ctx.Process(target=publisher, args=(str(root), g, per_device, args.batch, args.crop_bytes, q, res_q))
                for g, q in zip(groups, cmd_qs)]
        for p in pubs:
            p.start()
        t = time.time()
        sealed = sum(res_q.get(timeout=600)[1] for _ in pubs)
        print(f"pre-sealed {total:,} reads in {sealed:,} batches of {args.batch} "
              f"({args.crop_bytes} B crop each) in {time.time() - t:.0f} s; {args.devices} devices, "
              f"{args.publishers} publisher processes")
        try:
            # raw MQTT
            counter, last = ctx.Value("l", 0), ctx.Value("d", 0.0)
            subs = [ctx.Process(target=raw_subscriber, args=(str(root), rig.port, i, counter, last))
                    for i in range(2)]
            for s in subs:
                s.start()
            time.sleep(1.5)
            t0, *_ = _publish(cmd_qs, res_q, rig.port)
            deadline = time.time() + 120
            while counter.value < msgs_expected and time.time() < deadline:
                time.sleep(0.2)
            raw_mqtt = counter.value * args.batch / (last.value - t0)
            for s in subs:
                s.terminate()
                s.join()
            print(f"raw MQTT (2 bare subscribers): {raw_mqtt:,.0f} reads/s "
                  f"({counter.value * 1.0 / (last.value - t0):,.0f} msg/s; {counter.value:,}/{msgs_expected:,} msgs)")
            results = {}
            for backend in backends:
                if backend == "postgresql":
                    cluster = PgCluster(find_bindir(), fsync=True, settings=PG_SETTINGS).start()
                    rig.store_url = cluster.new_database("ingest")
                    raw_url = cluster.new_database("raw")
                    from central.store.copy import copy_governance
                    from central.store.database import open_governance
                    from central.store.postgres import PostgresStore
                    for url in (rig.store_url, raw_url):
                        s = PostgresStore(url, check_schema=False)
                        s.migrate()
                        s.close()
                    gov = open_governance(rig.store_url)  # the registry is in PostgreSQL too: the enrolled devices
                    copy_governance(rig.db, gov.db.conn)
                    gov.close()
                else:
                    rig.store_url, raw_url = "", ""
                # raw DB: 2 writer processes
                out = ctx.Queue()
                raw_path = str(root / f"raw-{backend}.sqlite")
                from central.store.sqlite import SQLiteStore
                SQLiteStore(raw_path).close()  # migrated before two writers open it at once
                writers = [ctx.Process(target=raw_writer, args=(raw_url, raw_path, total // 2, args.crop_bytes, out))
                           for _ in range(2)]
                for w in writers:
                    w.start()
                secs = max(out.get(timeout=300) for _ in writers)
                for w in writers:
                    w.join()
                raw_db = (total // 2 * 2) / secs
                # central: 2 real collectors
                rig.collectors = []
                rig.start_collectors(2)
                time.sleep(1.0)
                pids = [p.pid for p in rig.collectors]
                cpu0, machine0 = cpu_by_process(), machine_busy()
                t0, t1, t_acked, acked = _publish(cmd_qs, res_q, rig.port, acks=True)
                cpu = cpu_per_read(cpu0, cpu_by_process(), pids, rig.broker.proc.pid, acked)
                machine = [b - a for a, b in zip(machine0, machine_busy())]
                rig.stop_collectors()
                secs, stored = t_acked - t0, rig.stored()
                if stored != acked:
                    print(f"!! {acked:,} reads acknowledged but {stored:,} stored")
                rate = acked / secs
                results[backend] = (rate, raw_db, stored)
                print(f"{backend:<10} central, 2 collectors: {rate:,.0f} reads/s ({acked:,}/{total:,} acknowledged as stored in "
                      f"{secs:.1f} s; publishing took {t1 - t0:.1f} s) | raw DB, 2 writers: {raw_db:,.0f} reads/s"
                      f" | ratio to raw MQTT {rate / raw_mqtt:.2f}, to raw DB {rate / raw_db:.2f}")
                print(f"{'':<10} CPU per stored read: {cpu}; whole machine busy "
                      f"{100 * machine[0] / max(machine[1], 1):.0f} %; load {os.getloadavg()[0]:.1f}")
                if cluster is not None and backend == "postgresql":
                    cluster.destroy()
                    cluster = None
        finally:
            for q in cmd_qs:
                q.put(None)
            for p in pubs:
                p.join(timeout=10)
            if cluster is not None:
                cluster.destroy()
            rig.broker.stop()


# -- search and purge on a large table ------------------------------------------------------
def load(url: str, rows: int, rng: random.Random, start: dt.datetime, end: dt.datetime) -> list[str]:
    """Migrate, drop the secondary indexes, COPY ``rows`` reads spread evenly
    over [start, end), rebuild the indexes, ANALYZE; returns the plate pool."""
    import psycopg
    from central.store.postgres import READ_COLUMNS, PostgresStore
    from edge_agent.wire import fold_confusables
    span = (end - start).total_seconds()
    pool = [f"{rng.randrange(10)}{_letters(rng, 3)}{rng.randrange(1000):03d}" for _ in range(max(1000, rows // 10))]
    store = PostgresStore(url, check_schema=False)
    store.migrate()
    store.ensure_partitions(start, end)
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'reads' "
                               "AND indexname <> 'reads_pkey'").fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
    t = time.time()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY reads ({', '.join(READ_COLUMNS)}) FROM STDIN") as cp:
            chunk = []
            for i in range(rows):
                at = (start + dt.timedelta(seconds=span * i / rows)).isoformat()
                plate = pool[rng.randrange(len(pool))]
                chunk.append(f"{(i << 16) | 0x7000:032x}\tdev-{i % 400:03d}\tlane-1\t{at}\t{at}\t{plate}\t"
                             f"{fold_confusables(plate)}\t0.9\t[1, 2, 150, 75]\t[]\t\\N\t\\N\t\\N\tbench\n")
                if len(chunk) == 10000:
                    cp.write("".join(chunk))
                    chunk = []
            cp.write("".join(chunk))
    loaded = time.time() - t
    t = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _, ddl in indexes:
            conn.execute(ddl.replace(" ONLY ", " "))
        conn.execute("ANALYZE reads")
        size = conn.execute("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i "
                            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'reads'::regclass"
                            ).fetchone()[0]
    print(f"loaded {rows:,} reads over {len(store.partitions())} monthly partitions with COPY in {loaded:.0f} s "
          f"({rows / loaded:,.0f} rows/s), indexes built in {time.time() - t:.0f} s; reads with indexes on disk: {size}")
    store.close()
    return pool


def search(args) -> None:
    import psycopg
    from central.store import Search
    from central.store.postgres import PostgresStore
    rng = random.Random(7)
    end = dt.datetime(2026, 12, 1, tzinfo=UTC)
    start = end - dt.timedelta(days=365)
    span = (end - start).total_seconds()
    cluster = PgCluster(find_bindir(), fsync=True, settings=PG_SETTINGS).start()
    try:
        url = cluster.new_database("search")
        pool = load(url, args.rows, rng, start, end)
        store = PostgresStore(url)
        kinds = {
            "exact": lambda p: Search(plate=p),
            "prefix wildcard (7AB?12*)": lambda p: Search(plate=p[:3] + "?" + p[4:6] + "*"),
            "leading wildcard (*BC12?)": lambda p: Search(plate="*" + p[2:6] + "?"),
            "tolerant (one char confused)": lambda p: Search(plate=p.replace("0", "O").replace("1", "I")
                                                           .replace("8", "B").replace("5", "S"), tolerant=True),
        }
        for name, make in kinds.items():
            lat, hits = [], 0
            for _ in range(args.queries):
                p = pool[rng.randrange(len(pool))]
                since = start + dt.timedelta(seconds=rng.random() * (span - 30 * 86400))
                q = make(p)
                q = Search(plate=q.plate, tolerant=q.tolerant, since=since, until=since + dt.timedelta(days=30))
                t = time.perf_counter()
                hits += len(store.search(q))
                lat.append((time.perf_counter() - t) * 1000)
            print(f"search {name:<30} 30-day range: p50 {percentile(lat, 50):7.1f} ms  p95 {percentile(lat, 95):7.1f}"
                  f" ms  max {max(lat):7.1f} ms  ({hits / args.queries:.1f} results/query)")
        parts = store.partitions()
        drop_month, delete_month = parts[1][0], parts[2][0]
        with psycopg.connect(url) as conn:
            n_drop = conn.execute(f"SELECT count(*) FROM reads_{drop_month:%Y%m}").fetchone()[0]
            n_del = conn.execute(f"SELECT count(*) FROM reads_{delete_month:%Y%m}").fetchone()[0]
        with psycopg.connect(url) as conn:  # a 2.5 KB crop for every read of the two months
            for month in (drop_month, delete_month):
                conn.execute(f"INSERT INTO read_images SELECT read_id, captured_at, 'crop', "
                             f"decode(repeat(md5(read_id::text), 156), 'hex') FROM reads_{month:%Y%m}")
        t = time.time()
        store.drop_month(drop_month)
        dropped = time.time() - t
        t = time.time()
        with psycopg.connect(url) as conn:
            nxt = (delete_month + dt.timedelta(days=32)).replace(day=1)
            conn.execute("DELETE FROM read_images WHERE captured_at >= %s AND captured_at < %s", [delete_month, nxt])
            conn.execute("DELETE FROM reads WHERE captured_at >= %s AND captured_at < %s", [delete_month, nxt])
        deleted = time.time() - t
        t = time.time()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"VACUUM reads_{delete_month:%Y%m}, read_images_{delete_month:%Y%m}")
        vacuumed = time.time() - t
        print(f"purge of a month with its crops: partition drop {dropped * 1000:.0f} ms ({n_drop:,} reads) vs row deletes "
              f"{deleted:.1f} s + VACUUM {vacuumed:.1f} s ({n_del:,} reads; the file keeps its size until "
              "VACUUM FULL, the dropped partition's space is back at once)")
        store.close()
    finally:
        cluster.destroy()


def purge(args) -> None:
    """The retention job itself (``Governor.purge``) on PostgreSQL: ``--rows``
    reads over 12 months with a 2.5 KB crop each, retention set so the oldest
    ``--months`` months are expired; once as built (whole months dropped as
    partitions) and once on an identical database with the partition drop
    switched off (every expired read deleted row by row, as at the edges)."""
    import psycopg
    from central.config import Retention
    from central.governance.retention import Governor
    from central.governance.users import UserDirectory
    from central.store.database import PgGovernance
    end = dt.datetime(2026, 12, 1, tzinfo=UTC)
    start = end - dt.timedelta(days=365)
    now = end + dt.timedelta(days=1)
    keep = (now - (start + dt.timedelta(days=31 * args.months))).days
    cluster = PgCluster(find_bindir(), fsync=True, settings=PG_SETTINGS).start()
    try:
        results = {}
        for how in ("partition drop", "row deletes"):
            url = cluster.new_database("purge")
            load(url, args.rows, random.Random(7), start, end)
            with psycopg.connect(url) as conn:
                conn.execute("INSERT INTO read_images SELECT read_id, captured_at, 'crop', "
                             "decode(repeat(md5(read_id::text), 78), 'hex') FROM reads")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            gov_store = PgGovernance(url)
            conn = gov_store.db.conn
            admin, _ = UserDirectory(conn, clock=lambda: now).bootstrap("ada", "City PD")
            gov = Governor(conn, Retention(non_hit_days=keep, hit_days=keep, image_days=keep), clock=lambda: now)
            if how == "row deletes":
                gov._drop_partitions = lambda *_a: {"hit_reads": 0, "non_hit_reads": 0}
            t = time.time()
            result = gov.purge(admin)
            results[how] = (time.time() - t, result.counts["non_hit_reads"] + result.counts["hit_reads"])
            left = conn.execute("SELECT count(*) FROM reads").fetchone()[0]
            gov_store.close()
            print(f"retention purge, {how}: {results[how][0]:.1f} s for {results[how][1]:,} reads and their crops "
                  f"({left:,} reads left)")
        (a, n), (b, _) = results["partition drop"], results["row deletes"]
        print(f"-> the purge with partition drops took {a / b:.0%} of the row-delete purge's time ({n:,} reads "
              f"over {args.months} months of {args.rows:,})")
    finally:
        cluster.destroy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("ingest")
    a.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    a.add_argument("--reads", type=int, default=200_000)
    a.add_argument("--devices", type=int, default=20)
    a.add_argument("--batch", type=int, default=100, help="reads per MQTT message")
    a.add_argument("--crop-bytes", type=int, default=2500, help="plate crop JPEG size per read (0: none)")
    a.add_argument("--publishers", type=int, default=2)
    s = sub.add_parser("search")
    s.add_argument("--rows", type=int, default=5_000_000)
    s.add_argument("--queries", type=int, default=200)
    p = sub.add_parser("purge")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--months", type=int, default=3, help="how many of the 12 months are past retention")
    args = ap.parse_args()
    if find_bindir() is None and (args.what in ("search", "purge") or args.backend != "sqlite"):
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    {"ingest": ingest, "search": search, "purge": purge}[args.what](args)


if __name__ == "__main__":
    main()
