"""The PostgreSQL read store on a throwaway cluster (tests/pg_cluster.py):
configuration, migrations and the refusal to start on the wrong schema,
partitions, ``db copy``, and collectors over a real Mosquitto surviving a
PostgreSQL restart without losing or duplicating a read."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from central.cli import main
from central.config import parse
from central.errors import ConfigError, SchemaMismatch, StoreError
from central.store import Search
from central.store.postgres import PostgresStore
from central.store.sqlite import SQLiteStore
from conftest import wait_for
from edge_agent.wire import PlateRead, Sealer, encode_read, load_public_key, new_read_id

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def read(plate="7ABC123", at=T0, device="cam-a", **kw):
    return PlateRead(new_read_id(), device, "lane-1", at, plate, 0.9, (1, 2, 3, 4), **kw)


# -- configuration -----------------------------------------------------------------------
def test_store_url_selects_postgresql_and_refuses_a_password(tmp_path):
    mqtt = {"tls": False}
    cfg = parse({"data_dir": str(tmp_path), "store": {"url": "postgresql://alpr@db.example/alpr"}, "mqtt": mqtt},
                tmp_path)
    assert (cfg.store.type, cfg.store.url, cfg.store.path) == \
        ("postgresql", "postgresql://alpr@db.example/alpr", str(tmp_path / "central.sqlite"))
    assert parse({"data_dir": str(tmp_path), "mqtt": mqtt}, tmp_path).store.type == "sqlite"  # still the default
    for bad, message in [({"url": "postgresql://alpr:secret@db/alpr"}, "no password"),
                         ({"url": "postgresql://db/alpr?password=secret"}, "no password"),
                         ({"url": "mysql://db/alpr"}, "expected a postgresql:// URL"),
                         ({"type": "postgresql"}, "store.url: required"),
                         ({"type": "oracle"}, "store.type")]:
        with pytest.raises(ConfigError, match=message):
            parse({"data_dir": str(tmp_path), "store": bad, "mqtt": mqtt}, tmp_path)


def _config(tmp_path, url: str) -> str:
    path = tmp_path / "central.toml"
    path.write_text(f'data_dir = "{tmp_path / "central"}"\n[store]\nurl = "{url}"\n[mqtt]\ntls = false\n')
    return str(path)


# -- migrations and the schema check -----------------------------------------------------
def test_central_refuses_an_unmigrated_or_newer_schema_and_db_migrate_fixes_the_first(pg_cluster, tmp_path):
    url = pg_cluster.new_database()
    config = _config(tmp_path, url)
    runner = CliRunner()
    query = ["query", "--config", config, "--plate", "7ABC123", "--purpose", "stolen-vehicle", "--case", "C-1"]
    result = runner.invoke(main, query)
    assert result.exit_code == 78 and "not migrated" in result.output and "alpr-central db migrate" in result.output
    with pytest.raises(SchemaMismatch):
        PostgresStore(url)
    from central.ingest.keys import init_data_key
    init_data_key(tmp_path / "central" / "data-key.pem", tmp_path / "central" / "data-key.pub.pem")
    result = runner.invoke(main, ["run", "--config", config])  # the collector does not start either
    assert result.exit_code == 78 and "not migrated" in result.output

    result = runner.invoke(main, ["db", "migrate", "--config", config])
    assert result.exit_code == 0, result.output
    from central.store.pg_migrations import MIGRATIONS as PG_MIGRATIONS
    names = [name for name, _sql in PG_MIGRATIONS]
    assert names[:3] == ["0001_reads", "0200_governance", "0201_read_feed"] and "0700_hit_upgrades" in names
    assert f"applied {len(names)} migration(s): {', '.join(names)}" in result.output
    assert "db copy" not in result.output   # no SQLite file with users: nothing to copy
    assert "up to date" in runner.invoke(main, ["db", "migrate", "--config", config]).output  # idempotent
    PostgresStore(url).close()  # opens now

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO alpr_migrations VALUES ('0002_from_the_future', now())")
    result = runner.invoke(main, query)
    assert result.exit_code == 78 and "newer than this central" in result.output and "0002_from_the_future" \
        in result.output
    result = runner.invoke(main, ["db", "migrate", "--config", config])
    assert result.exit_code == 78 and "upgrade central" in result.output


def test_an_unreachable_server_is_a_temporary_failure(tmp_path):
    from central.fleet.broker import free_port
    config = _config(tmp_path, f"postgresql://alpr@127.0.0.1:{free_port()}/alpr?connect_timeout=1")
    result = CliRunner().invoke(main, ["db", "migrate", "--config", config])
    assert result.exit_code == 75 and "cannot reach PostgreSQL" in result.output


def test_a_sqlite_store_migrated_by_a_newer_central_is_refused(tmp_path):
    SQLiteStore(tmp_path / "c.sqlite").close()
    with sqlite3.connect(tmp_path / "c.sqlite") as conn:
        conn.execute("INSERT INTO _migrations VALUES ('9999_future', '2030-01-01T00:00:00.000000Z')")
    with pytest.raises(SchemaMismatch, match="newer central"):
        SQLiteStore(tmp_path / "c.sqlite")


def test_retention_on_postgresql_drops_whole_months_deletes_at_the_edges_and_keeps_held_reads(pg_url, tmp_path):
    """Non-hit reads kept 60 days: months wholly past it are dropped as partitions
    (a month holding a held read is not: it goes row by row around the read); the
    edge month loses only its expired rows; a purged read sent again stays gone."""
    from central.config import Retention
    from central.governance.retention import Governor
    from central.store.database import PgGovernance
    from test_governance_support import make_world
    world = make_world(tmp_path / "unused.sqlite", pg_url)
    now = world.clock.now = dt.datetime(2026, 8, 15, 12, tzinfo=UTC)
    # hits kept a year: a purged non-hit read is younger than the longest retention, so it gets a tombstone
    gov = Governor(world.conn, Retention(non_hit_days=60, hit_days=365, image_days=60), clock=world.clock)
    month = lambda y, m, d=10: dt.datetime(y, m, d, 12, tzinfo=UTC)  # noqa: E731
    old = [world.add_read(f"OLD{i}", month(2026, 3, 1 + i)) for i in range(3)]      # March: dropped whole
    held = world.add_read("CASE1", month(2026, 4, 5))                               # April: held, stays
    april = world.add_read("APR1", month(2026, 4, 6))                              # April: row delete
    edge_old = world.add_read("EDGE1", month(2026, 6, 1))                          # June 1: past 60 days
    edge_new = world.add_read("EDGE2", month(2026, 6, 30))                         # June 30: inside
    hold = gov.request_hold(world.operator, case_number="24-0042", plates=["CASE1"], since=month(2026, 4, 1),
                            until=month(2026, 4, 30), reason="litigation", review_on=(now + dt.timedelta(days=90)).date())
    gov.approve_hold(world.supervisor, hold.hold_id)
    assert gov.purge(world.admin, dry_run=True).counts["non_hit_reads"] == 5
    result = gov.purge(world.admin)
    assert result.counts["non_hit_reads"] == 5 and result.held_kept == 1
    months = {m.strftime("%Y%m") for m, _ in world.store.partitions()}
    assert "202603" not in months and {"202604", "202606"} <= months  # March dropped whole
    assert sorted(world.store.read_ids()) == sorted([held.read_id, edge_new.read_id])
    images = {str(r[0]) for r in world.conn.execute("SELECT read_id FROM read_images")}
    assert images == {held.read_id, edge_new.read_id}
    assert world.store.add_reads([old[0], april, edge_old], now) == []  # tombstoned: replays stay gone
    assert sorted(world.store.read_ids()) == sorted([held.read_id, edge_new.read_id])
    from central.governance.audit import verify
    assert verify(world.conn, now=now).ok
    world.store.close()
    pg = PgGovernance(pg_url)
    try:
        [run] = pg.db.conn.execute("SELECT counts FROM purge_runs").fetchall()
        assert json.loads(run[0])["non_hit_reads"] == 5
    finally:
        pg.close()


# -- partitions and idempotency ----------------------------------------------------------
def test_reads_land_in_monthly_partitions_made_on_demand_and_a_month_drops_whole(pg_url):
    store = PostgresStore(pg_url)
    try:
        old = read(at=dt.datetime(2019, 3, 4, 5, 6, 7, 123456, tzinfo=UTC), crop_jpeg=b"\xff\xd8old")
        new = read(at=T0, context_jpeg=b"\xff\xd8ctx")
        assert store.add_reads([old, new, old], T0) == [old.read_id, new.read_id, old.read_id]
        assert store.add_reads([old], T0 + dt.timedelta(hours=1)) == [old.read_id]  # a resend: stored once
        months = [m for m, _ in store.partitions()]
        assert dt.datetime(2019, 3, 1, tzinfo=UTC) in months and dt.datetime(2019, 4, 1, tzinfo=UTC) not in months
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM reads_201903").fetchone()[0] == 1
            assert conn.execute("SELECT count(*), count(DISTINCT read_id) FROM reads").fetchone() == (2, 2)
            assert conn.execute("SELECT count(*) FROM read_images").fetchone()[0] == 2
        [got] = store.search(Search(plate="7ABC123", until=dt.datetime(2020, 1, 1, tzinfo=UTC)))
        assert got.read == old and got.stored_at == T0 and got.read.crop_jpeg == b"\xff\xd8old"
        store.drop_month(dt.datetime(2019, 3, 15, tzinfo=UTC))
        assert store.read_ids() == [new.read_id]
        store.add_reads([old], T0)  # the month comes back when a read of it arrives again
        assert sorted(store.read_ids()) == sorted([old.read_id, new.read_id])
    finally:
        store.close()


def test_searches_are_never_prepared_statements(pg_url):
    """psycopg prepares a statement run 5 times on a connection; PostgreSQL then
    may plan it generically, blind to the pattern and the time range: a 30-day
    wildcard search on 3M reads went from ~1 ms to ~70 ms (bench_pg.py search)."""
    store = PostgresStore(pg_url, max_size=1)
    try:
        store.add_reads([read(), read(plate="8XYZ999")], T0)
        for _ in range(12):
            assert len(store.search(Search(plate="7AB*", since=T0 - dt.timedelta(days=30), until=T0))) == 1
        with store.pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%FROM reads r%%'"
                                ).fetchone()[0] == 0
    finally:
        store.close()


def test_every_field_round_trips_through_copy_text(pg_url):
    """Reads go in as hand-formatted COPY text: backslashes, non-ASCII text,
    locations, alternates and both images must come back exactly."""
    from edge_agent.wire import Alternate, Location
    store = PostgresStore(pg_url)
    try:
        full = read(plate="7ABC123", alternates=(Alternate("7A8C123", 0.4), Alternate("1ABC123", 0.125)),
                    location=Location(34.052235, -118.243683, 359.5), model_version="ocr\\v2 été \\N",
                    crop_jpeg=b"\xff\xd8\\\t\n\x00crop", context_jpeg=b"\xff\xd8ctx")
        bare = read(plate="8XYZ999", location=Location(-90.0, 180.0, None))
        store.add_reads([full, bare], T0)
        got = {s.read.read_id: s.read for s in store.search(Search(since=T0 - dt.timedelta(days=1)))}
        assert got[full.read_id] == full and got[bare.read_id] == bare
        assert (got[full.read_id].crop_jpeg, got[full.read_id].context_jpeg) == (full.crop_jpeg, full.context_jpeg)
        assert got[full.read_id].model_version == full.model_version
    finally:
        store.close()


def test_a_batch_the_database_refuses_does_not_sink_the_others_grouped_with_it(pg_url, tmp_path):
    """The collector stores queued messages in one transaction; when PostgreSQL
    refuses one (here a CHECK the test adds: nothing known passes the wire's
    validation and fails the store today), the others are stored and
    acknowledged one by one, and only the refused one waits for a resend."""
    from central.errors import StoreError
    from central.ingest.collector import Collector
    from central.ingest.keys import load_opener
    from edge_agent.wire import encode_batch, generate_keypair
    private, public = generate_keypair()
    (tmp_path / "k.pem").write_bytes(private)
    store = PostgresStore(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE reads ADD CONSTRAINT refuse_one CHECK (plate <> 'REFUSE1')")
        collector = Collector(store, load_opener([tmp_path / "k.pem"]))
        sealer = Sealer(load_public_key(public), "cam-a")
        now = dt.datetime.now(UTC)
        items = [collector.prepare("alpr/v1/devices/cam-a/reads", encode_batch(new_read_id(), [
            sealer.seal(r.read_id, encode_read(r))])) for r in (read(plate="GOOD1", at=now), read(plate="REFUSE1", at=now),
                                                                read(plate="GOOD2", at=now))]
        with pytest.raises(StoreError):
            collector.commit(items)
        acks = collector.commit_each(items)
        assert [ack.batch_id for _, ack in acks] == [items[0].batch_id, items[2].batch_id]
        assert sorted(r.read.plate for r in store.search(Search(plate="GOOD*"))) == ["GOOD1", "GOOD2"]
        assert store.count() == 2
    finally:
        store.close()


def test_db_maintain_creates_partitions_ahead(pg_url, tmp_path):
    result = CliRunner().invoke(main, ["db", "maintain", "--config", _config(tmp_path, pg_url),
                                       "--months-ahead", "6"])
    assert result.exit_code == 0, result.output
    store = PostgresStore(pg_url)
    try:
        months = [m for m, _ in store.partitions()]
        now = dt.datetime.now(UTC)
        assert months[-1] >= dt.datetime(now.year, now.month, 1, tzinfo=UTC) + dt.timedelta(days=5 * 31)
    finally:
        store.close()


# -- db copy -----------------------------------------------------------------------------
def test_db_copy_keeps_every_read_and_image_and_resumes(pg_url, tmp_path):
    src = SQLiteStore(tmp_path / "pilot.sqlite")
    reads = [read(plate=f"CP{i:04d}", at=T0 - dt.timedelta(days=i * 7), crop_jpeg=b"\xff\xd8" + bytes([i % 256]),
                  context_jpeg=(b"\xff\xd8ctx" if i % 3 == 0 else None)) for i in range(250)]
    src.add_reads(reads, T0)
    expected = {r.read_id: r for r in reads}
    src.close()
    args = ["db", "copy", "--from", f"sqlite://{tmp_path / 'pilot.sqlite'}", "--to", pg_url, "--chunk", "100"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {k: doc[k] for k in ("reads", "images", "new", "verified")} == {"reads": 250, "images": 250 + 84,
                                                                            "new": 250, "verified": 250}
    store = PostgresStore(pg_url)
    try:
        got = {s.read.read_id: s for s in store.search(Search(plate="CP*", limit=1000))}
        assert set(got) == set(expected)
        assert all(got[k].read == expected[k] and got[k].stored_at == T0 for k in expected)
        assert all(got[k].read.crop_jpeg == expected[k].crop_jpeg and
                   got[k].read.context_jpeg == expected[k].context_jpeg for k in expected)
    finally:
        store.close()
    result = CliRunner().invoke(main, args)  # again: nothing new, every row checked
    assert result.exit_code == 0 and "copied 250 read(s) (0 new)" in result.output
    assert "governance table(s)" in result.output and "ok: the access-log chain verifies on the copy" in result.output


def test_db_copy_moves_the_governance_tables_and_the_chain_verifies_on_the_copy(pg_url, tmp_path):
    """A pilot with users, access-log entries (searches, a hold, a purge record),
    a device in the registry, a sharing agreement: db copy moves every row,
    unchanged; audit verify passes on PostgreSQL with the same head; new entries
    and new numbered rows continue after the copied ones."""
    from central.governance.audit import AccessLog, verify
    from central.governance.retention import Governor
    from central.config import Retention
    from central.store.database import PgGovernance
    from test_governance_support import make_world
    world = make_world(tmp_path / "pilot.sqlite")
    T0 = world.clock.now  # the governance fixtures' time (entries must not be dated after today)
    world.add_read("7ABC123", T0 - dt.timedelta(days=3))
    gov = Governor(world.conn, Retention(access_log_days=30), clock=world.clock)
    hold = gov.request_hold(world.operator, case_number="C-1", plates=["7ABC123"], since=T0 - dt.timedelta(days=9),
                            until=T0, reason="investigation", review_on=(T0 + dt.timedelta(days=30)).date())
    gov.approve_hold(world.supervisor, hold.hold_id)
    world.clock.now = T0 + dt.timedelta(days=40)  # the first entries are past the access log's 30 days
    gov.purge(world.admin)
    for i in range(3):
        AccessLog(world.conn, clock=world.clock).append(user="otto", organization="City PD", action="search",
                                                        purpose="stolen-vehicle", case_number=f"C-{i}",
                                                        detail={"plate": "7AB*"}, result_count=i)
    src_head = AccessLog(world.conn).head()
    src_rows = {t: world.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("users", "user_tokens", "audit_log", "legal_holds", "purge_runs", "businesses")}
    assert verify(world.conn, now=world.clock.now).ok and src_rows["audit_log"] == 5
    world.store.close()
    args = ["db", "copy", "--from", f"sqlite://{tmp_path / 'pilot.sqlite'}", "--to", pg_url, "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["chain_ok"] and tuple(doc["audit_head"]) == src_head and doc["tables"]["audit_log"] == src_rows[
        "audit_log"]
    again = CliRunner().invoke(main, args)  # idempotent
    assert again.exit_code == 0 and json.loads(again.output)["audit_head"] == doc["audit_head"]
    pg = PgGovernance(pg_url)
    try:
        conn = pg.db.conn
        assert {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in src_rows} == src_rows
        report = verify(conn, now=world.clock.now)
        assert report.ok and (report.head_seq, report.head_hash) == src_head
        log = AccessLog(conn, clock=world.clock)
        entry = log.append(user="ada", organization="City PD", action="after-copy")
        assert entry.seq == src_head[0] + 1 and entry.prev_hash == src_head[1]
        assert verify(conn, now=world.clock.now).ok
        later = Governor(conn, clock=world.clock).request_hold(
            world.operator, case_number="C-2", plates=["8XYZ999"], since=T0, until=T0 + dt.timedelta(days=1),
            reason="another", review_on=(T0 + dt.timedelta(days=60)).date())
        assert later.hold_id == hold.hold_id + 1  # the key counter moved past the copied rows
    finally:
        pg.close()
    config = _config(tmp_path, pg_url)
    Path(config).write_text(Path(config).read_text() + "[retention]\naccess_log_days = 30\n")  # as purged
    verified = CliRunner().invoke(main, ["audit", "verify", "--config", config],
                                  env={"ALPR_TOKEN": world.tokens["audrey"]})   # the auditor's token, copied too
    assert verified.exit_code == 0 and "ok: the chain is intact" in verified.output, verified.output


def test_db_migrate_says_to_copy_the_governance_tables_of_a_reads_only_install(pg_cluster, tmp_path):
    """The previous release kept users, the access log and the registry in the
    SQLite file beside reads on PostgreSQL: migrating creates those tables empty
    in PostgreSQL, and says how to copy them (central would otherwise start with
    no users and no enrolled devices)."""
    from test_governance_support import make_world
    url = pg_cluster.new_database()
    config = _config(tmp_path, url)
    make_world(tmp_path / "central" / "central.sqlite").store.close()
    result = CliRunner().invoke(main, ["db", "migrate", "--config", config])
    assert result.exit_code == 0 and "holds users: copy them before starting central" in result.output
    assert f"alpr-central db copy --from sqlite://{tmp_path / 'central' / 'central.sqlite'}" in result.output


def test_db_copy_refuses_a_governance_column_postgresql_lacks(pg_url, tmp_path):
    """A SQLite migration without its PostgreSQL twin: the copy stops before
    dropping the column's data (nothing of the governance tables is written)."""
    import sqlite3
    SQLiteStore(tmp_path / "pilot.sqlite").close()
    with sqlite3.connect(tmp_path / "pilot.sqlite") as conn:
        conn.execute("ALTER TABLE devices ADD COLUMN rollout_ring TEXT")
    result = CliRunner().invoke(main, ["db", "copy", "--from", f"sqlite://{tmp_path / 'pilot.sqlite'}",
                                       "--to", pg_url])
    assert result.exit_code == 1 and "devices: PostgreSQL lacks column(s) rollout_ring" in result.output


def test_db_copy_refuses_what_it_cannot_do(pg_url, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["db", "copy", "--from", "postgresql://x/y", "--to", pg_url])
    assert result.exit_code == 2 and "sqlite:///PATH" in result.output
    result = runner.invoke(main, ["db", "copy", "--from", f"sqlite://{tmp_path}/c.sqlite",
                                  "--to", "postgresql://alpr:pw@127.0.0.1/x"])
    assert result.exit_code == 2 and "no password" in result.output
    result = runner.invoke(main, ["db", "copy", "--from", f"sqlite://{tmp_path}/missing.sqlite", "--to", pg_url])
    assert result.exit_code == 1 and "cannot read" in result.output
    assert "every governance table" in runner.invoke(main, ["db", "copy", "--help"]).output


# -- collectors over Mosquitto, PostgreSQL restarted mid-stream --------------------------
def _device(tmp_path, pki_dir, certs, port, device, n, stop):
    from edge_agent.outbox import Outbox
    from edge_agent.sync import SyncClient, SyncSettings
    ob = Outbox(tmp_path / f"edge-{device}" / "outbox.sqlite")
    sealer = Sealer(load_public_key((pki_dir / "data-key.pub.pem").read_bytes()), device)
    ids, items = [], []
    now = time.time()
    for i in range(n):
        r = PlateRead(new_read_id(), device, "lane-1", dt.datetime.fromtimestamp(now, UTC), f"PG{i:05d}", 0.9,
                      (10, 20, 120, 60), crop_jpeg=b"\xff\xd8" + i.to_bytes(4, "big"))
        ids.append(r.read_id)
        items.append((r.read_id, now, sealer.seal(r.read_id, encode_read(r))))
    ob.add(items)
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=port, device_id=device, ca_file=str(pki_dir / "ca.crt"),
                                   cert_file=str(certs / f"{device}.crt"), key_file=str(certs / f"{device}.key"),
                                   batch_size=50, max_in_flight=2, max_rate=500.0, ack_timeout=3.0), ob)
    thread = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    thread.start()
    return ids, ob, thread


def _collector_process(tmp_path, pki_dir, port, url, index):
    """A real ``alpr-central run`` on PostgreSQL (everything there)."""
    import subprocess
    import sys
    cfg = tmp_path / f"central-{index}.toml"
    cfg.write_text(f"""data_dir = "{tmp_path / 'central'}"
[store]
url = "{url}"
[mqtt]
host = "127.0.0.1"
port = {port}
ca_file = "{pki_dir / 'ca.crt'}"
cert_file = "{pki_dir / ('collector.crt' if index == 0 else 'collector-b.crt')}"
key_file = "{pki_dir / ('collector.key' if index == 0 else 'collector-b.key')}"
client_id = "central.collector-{port}-{index}"
[keys]
data_private_keys = ["{pki_dir / 'data-key.pem'}"]
""")
    log = open(tmp_path / f"central-{index}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "central", "run", "--config", str(cfg), "--log-level", "info"],
                            stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_collectors_killed_and_postgres_restarted_mid_stream_lose_and_double_nothing(
        tmp_path, pki_dir, broker, pg_cluster, pg_url):
    """Two real collector processes on the shared subscription: one is SIGKILLed
    and PostgreSQL is restarted while 4,000 reads stream in; the devices resend
    what was not acknowledged, and the set stored is the set produced, once."""
    from central.cli.demo import enroll_locally
    from central.fleet.ca import CertificateAuthority
    from central.fleet.registry import Registry
    registry = Registry(pg_url)  # the registry is in PostgreSQL too
    certs = tmp_path / "certs"
    try:  # enrolled and active, or the collectors store nothing of theirs
        ca = CertificateAuthority.load(pki_dir / "ca.key", pki_dir / "ca.crt")
        for device in ("cam-a", "cam-b"):
            enroll_locally(registry, ca, device, certs, cameras=("lane-1",))
    finally:
        registry.close()
    procs = [_collector_process(tmp_path, pki_dir, broker.port, pg_url, i) for i in range(2)]
    stop = threading.Event()
    store = PostgresStore(pg_url)
    try:
        time.sleep(2.0)  # both subscribed
        devices = [_device(tmp_path, pki_dir, certs, broker.port, d, 2000, stop) for d in ("cam-a", "cam-b")]
        produced = {rid for ids, _, _ in devices for rid in ids}
        wait_for(lambda: store.count() > 400, 60, message="some reads stored")
        procs[1].kill()  # SIGKILL: what it held unacknowledged is resent by the devices
        procs[1].wait()
        pg_cluster.restart(down_seconds=2.0)
        assert store.count() < len(produced), "everything was stored before the failures; slow the devices"
        wait_for(lambda: all(ob.depth == 0 for _, ob, _ in devices), 120, interval=0.5,
                 message="every outbox drained (each read acknowledged)")
        with psycopg.connect(pg_url) as conn:
            total, distinct = conn.execute("SELECT count(*), count(DISTINCT read_id) FROM reads").fetchone()
            images = conn.execute("SELECT count(*) FROM read_images").fetchone()[0]
        assert set(store.read_ids()) == produced
        assert total == distinct == len(produced) and images == len(produced)
        assert procs[0].poll() is None  # the survivor rode out the restart
    finally:
        stop.set()
        for _, ob, thread in locals().get("devices", []):
            thread.join(timeout=10)
            ob.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
        store.close()


def test_a_collector_store_error_while_postgres_is_down_is_raised_not_swallowed(pg_cluster, pg_url):
    store = PostgresStore(pg_url, timeout=2.0)
    try:
        pg_cluster.stop()
        with pytest.raises(StoreError):
            store.add_reads([read()], T0)
    finally:
        pg_cluster.start()
        store.close()
    store = PostgresStore(pg_url)
    try:
        assert store.count() == 0  # nothing half-written
    finally:
        store.close()


def test_every_sqlite_table_has_its_postgresql_twin_with_the_same_columns_in_order(pg_url, tmp_path):
    """Every governance table a migrated SQLite file holds (but SQLite's legacy
    access_log and its own bookkeeping) exists in a migrated PostgreSQL database with the
    same columns in the same order, so `db copy` moves it and the modules find
    what they read. Fails when a SQLite migration lacks its PostgreSQL twin
    (as 0740-0790 did)."""
    import sqlite3
    from central.store.database import PgGovernance
    SQLiteStore(tmp_path / "pilot.sqlite").close()
    src = sqlite3.connect(tmp_path / "pilot.sqlite")
    names = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
             if r[0] not in ("_migrations", "access_log", "sqlite_sequence",
                             "reads", "read_images")]  # reads: partitioned, copied by copy_reads
    want = {t: [r[1] for r in src.execute(f"PRAGMA table_info({t})")] for t in names}
    src.close()
    pg = PgGovernance(pg_url)
    try:
        got = {t: [r[0] for r in pg.db.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? ORDER BY ordinal_position", [t]).fetchall()] for t in names}
    finally:
        pg.close()
    assert {t: cols for t, cols in got.items() if cols != want[t]} == {}
    assert {"device_groups", "rollouts", "device_updates", "device_configs", "device_config_state",
            "device_alerts", "alert_events", "alert_deliveries", "alert_attempts", "alert_monitor",
            "labelled_examples"} <= set(names)


def test_db_copy_moves_rollouts_remote_configs_alerts_and_the_labelled_set(pg_url, tmp_path):
    """The tables of 0740-0790 go with db copy like the others: every row
    unchanged (bytes included), and the numbered keys continue after the copied
    ones (a new rollout, alert, event, delivery, example does not collide)."""
    from central.store.database import PgGovernance
    SQLiteStore(tmp_path / "pilot.sqlite").close()
    at = "2026-12-01T10:00:00.000000Z"
    src = sqlite3.connect(tmp_path / "pilot.sqlite")
    with src:
        src.execute("INSERT INTO device_groups VALUES ('north', 'north poles', 'ada', ?)", [at])
        src.execute("INSERT INTO release_bundles VALUES ('ab' || hex(randomblob(31)), '9.0.0', 10, 262144, '[]', "
                    "'k1', 0, '/srv/r.alpr', ?)", [at])
        sha = src.execute("SELECT sha256 FROM release_bundles").fetchone()[0]
        src.execute("INSERT INTO rollouts VALUES (7, ?, '9.0.0', 'group', 'north', 50, 'paused', 'why', 1, 0, 0, "
                    "'ada', ?, ?)", [sha, at, at])
        src.execute("INSERT INTO device_updates VALUES ('cam-a', 7, '9.0.0', 'rolled-back', 'camera failed', 100, "
                    "'0.2.0', ?, 1234, ?)", [at, at])
        src.execute("INSERT INTO device_configs VALUES ('cam-a', 3, '{}', ?, 'k2', 'ada', ?, NULL)",
                    [b"\x00signed\xff", at])
        src.execute("INSERT INTO device_config_state VALUES ('cam-a', 2, 'refused', 3, 'bad key', ?, ?)", [at, at])
        src.execute("INSERT INTO device_alerts VALUES (5, 'cam-a', 'department', 'offline', '', 'no heartbeat', "
                    "NULL, ?, NULL)", [at])
        src.execute("INSERT INTO alert_events VALUES (9, 5, 'raised', ?)", [at])
        src.execute("INSERT INTO alert_deliveries VALUES (11, 9, 'noc', 'delivered', 1, ?, ?)", [at, at])
        src.execute("INSERT INTO alert_attempts VALUES (11, 1, ?, 200, '', 0.25)", [at])
        src.execute("INSERT INTO alert_monitor VALUES (1, ?, 60.0)", [at])
        src.execute("INSERT INTO labelled_examples VALUES (4, ?, 'search-corrected', NULL, ?, '8XY0999', '8XYO999', "
                    "'alpr-us-0.9.0', ?, 'otto', ?)", [new_read_id(), b"\xff\xd8crop", at, at])
    tables = ["device_groups", "release_bundles", "rollouts", "device_updates", "device_configs",
              "device_config_state", "device_alerts", "alert_events", "alert_deliveries", "alert_attempts",
              "alert_monitor", "labelled_examples"]
    want = {t: src.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
    src.close()
    result = CliRunner().invoke(main, ["db", "copy", "--from", f"sqlite://{tmp_path / 'pilot.sqlite'}", "--to",
                                       pg_url, "--json"])
    assert result.exit_code == 0, result.output
    assert all(json.loads(result.output)["tables"][t] == 1 for t in tables)
    pg = PgGovernance(pg_url)
    try:
        conn = pg.db.conn
        got = {t: [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                   for row in conn.execute(f"SELECT * FROM {t}").fetchall()] for t in tables}
        assert got == want
        assert conn.execute("INSERT INTO rollouts (bundle_sha256, version, target_kind, target, percent, status, "
                            "max_failures, max_failure_percent, created_by, created_at, updated_at) VALUES "
                            "(?, '9.0.1', 'device', 'cam-a', 100, 'active', 1, 0, 'ada', ?, ?)",
                            [sha, at, at]).lastrowid == 8
        assert conn.execute("INSERT INTO device_alerts (device_id, owner, kind, message, raised_at) VALUES "
                            "('cam-b', 'department', 'offline', 'x', ?)", [at]).lastrowid == 6
        assert conn.execute("INSERT INTO alert_events (alert_id, event, at) VALUES (6, 'raised', ?)",
                            [at]).lastrowid == 10
        assert conn.execute("INSERT INTO alert_deliveries (event_id, endpoint, status, next_at, created_at) VALUES "
                            "(10, 'noc', 'pending', ?, ?)", [at, at]).lastrowid == 12
        assert conn.execute("INSERT INTO labelled_examples (read_id, source, read_text, true_text, model_version, "
                            "captured_at, labelled_by, labelled_at) VALUES (?, 'search-confirmed', 'A', 'A', 'm', ?, "
                            "'otto', ?)", [new_read_id(), at, at]).lastrowid == 5
    finally:
        pg.close()
