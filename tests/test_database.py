"""The storage layer's PostgreSQL connection (central/store/database.py): the
SQLite dialect it rewrites, and BEGIN IMMEDIATE's write lock across processes."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from central.governance.audit import AccessLog, verify
from central.store.database import PgGovernance, connect, dialect, transaction, translate


def test_the_rewrites_leave_literals_alone():
    assert translate("SELECT user, x.user, user_name FROM t WHERE a = ? AND b LIKE '%?user%'") == (
        "SELECT \"user\", x.\"user\", user_name FROM t WHERE a = %s AND b LIKE '%%?user%%'", None)
    assert translate("SELECT 1 FROM t WHERE a LIKE '5%'", False) == ("SELECT 1 FROM t WHERE a LIKE '5%'", None)
    assert translate("INSERT OR IGNORE INTO device_audit VALUES (?,?,?,?)") == (
        "INSERT INTO device_audit VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING", None)
    assert translate("INSERT INTO legal_holds (case_number) VALUES (?)") == (
        "INSERT INTO legal_holds (case_number) VALUES (%s) RETURNING hold_id", "hold_id")
    assert translate("BEGIN IMMEDIATE") == ("BEGIN", None)
    assert translate("CREATE INDEX temp.k ON hotlist_import(plate)", False)[0] == "CREATE INDEX k ON hotlist_import(plate)"
    assert translate("INSERT INTO temp.hotlist_import VALUES (?)")[0] == "INSERT INTO pg_temp.hotlist_import VALUES (%s)"


def test_the_connection_behaves_as_the_modules_expect(pg_url):
    conn = connect(pg_url)
    try:
        assert dialect(conn) == "postgresql" and not conn.in_transaction
        cur = conn.execute("INSERT INTO purge_runs (at, user, counts) VALUES (?,?,?)", ["2026-01-01", "ada", "{}"])
        assert cur.lastrowid == 1 and cur.rowcount == 1
        assert conn.execute("SELECT user, sum(id) FROM purge_runs GROUP BY user").fetchall() == [("ada", 1)]
        with pytest.raises(RuntimeError):
            with transaction(conn):
                conn.execute("INSERT INTO purge_runs (at, user, counts) VALUES (?,?,?)", ["x", "bob", "{}"])
                assert conn.in_transaction
                raise RuntimeError("rolled back")
        assert not conn.in_transaction
        assert conn.execute("SELECT count(*) FROM purge_runs").fetchone()[0] == 1
    finally:
        conn.close()


def test_access_log_appends_from_two_processes_are_serialised_and_the_chain_verifies(pg_url):
    """Each appender reads the head and writes the next entry in one transaction;
    without the write lock BEGIN IMMEDIATE takes, two would read the same head
    and one would fail on the duplicate sequence number (or fork the chain)."""
    stores = [PgGovernance(pg_url) for _ in range(4)]
    errors: list[BaseException] = []
    t0 = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)

    def append(store, n):
        try:
            log = AccessLog(store.db.conn, clock=lambda: t0)
            for i in range(n):
                log.append(user=f"u{i}", organization="PD", action="search", detail={"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(s, 40)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        report = verify(stores[0].db.conn)
        assert report.ok and report.entries == 160 and report.head_seq == 160
    finally:
        for s in stores:
            s.close()


def test_a_connection_outlives_a_server_restart(pg_cluster, pg_url):
    conn = connect(pg_url)
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        pg_cluster.restart(down_seconds=0.5)
        try:
            conn.execute("SELECT 1")   # the first statement after the restart may fail (nothing was open)
        except Exception:  # noqa: BLE001 - psycopg.OperationalError
            pass
        assert conn.execute("SELECT 1").fetchone() == (1,)  # then it reconnects
    finally:
        conn.close()
