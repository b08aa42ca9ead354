"""The access log: hash-chained, and verification names every edited,
deleted, inserted or reordered entry."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from central.governance.audit import GENESIS, AccessLog, entry_hash, verify
from central.cli import main
from central.store.database import dialect
from central.store.sqlite import SQLiteStore
from test_governance_support import T0, world  # noqa: F401


def _filled(conn, n=6):
    log = AccessLog(conn, clock=lambda: T0)
    for i in range(n):
        log.append(user=f"u{i}", organization="City PD", action="search", purpose="stolen-vehicle",
                   case_number=f"C-{i}", detail={"plate": "7AB*", "limit": 100}, result_count=i)
    return log


@pytest.fixture(params=["sqlite", "postgresql"])
def conn(request, tmp_path):
    """The access log's connection on each backend: the chain must verify alike."""
    if request.param == "postgresql":
        from central.store.database import PgGovernance
        store = PgGovernance(request.getfixturevalue("pg_url"))
    else:
        store = SQLiteStore(tmp_path / "c.sqlite")
    yield store.db.conn
    store.close()


def kinds(conn, **kw):
    return [(i.kind, i.seq) for i in verify(conn, **kw).issues]


def test_intact_chain_verifies(conn):
    log = _filled(conn)
    report = verify(conn)
    assert report.ok and report.entries == 6 and (report.head_seq, report.head_hash) == log.head()
    first = log.entries()[0]
    assert first.prev_hash == GENESIS and first.query == {"plate": "7AB*", "limit": 100}


def test_edited_entry_is_named(conn):
    _filled(conn)
    conn.execute("UPDATE audit_log SET result_count = 999 WHERE seq = 3")
    assert kinds(conn) == [("edited", 3)]


def test_edited_and_rehashed_entry_breaks_the_next_link(conn):
    _filled(conn)
    row = conn.execute("SELECT * FROM audit_log WHERE seq = 3").fetchone()
    new_hash = entry_hash(row[9], 3, row[1], "someone-else", *row[3:9])
    conn.execute("UPDATE audit_log SET user = 'someone-else', hash = ? WHERE seq = 3", [new_hash])
    assert kinds(conn) == [("broken", 4)]


def test_deleted_entries_are_named(conn):
    _filled(conn)
    conn.execute("DELETE FROM audit_log WHERE seq IN (3, 4)")
    report = verify(conn)
    assert [(i.kind, i.seq) for i in report.issues] == [("deleted", 5)]
    assert "entries 3-4 were deleted" in report.issues[0].message


def test_deleted_head_without_a_purge_record_is_named(conn):
    _filled(conn)
    conn.execute("DELETE FROM audit_log WHERE seq <= 2")
    report = verify(conn)
    assert kinds(conn) == [("deleted", 3)] and "no purge record" in report.issues[0].message


def test_inserted_entry_is_named(conn):
    _filled(conn, 4)
    # Renumber to make room, then forge an entry 3 that links correctly to 2.
    for seq in (4, 3):
        conn.execute("UPDATE audit_log SET seq = seq + 1 WHERE seq = ?", [seq])
    prev = conn.execute("SELECT hash FROM audit_log WHERE seq = 2").fetchone()[0]
    fields = (3, "2026-08-15T12:00:00.000000Z", "mallory", "City PD", "search", "stolen-vehicle", "C-9", "{}", 0)
    conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)", [*fields, prev, entry_hash(prev, *fields)])
    got = kinds(conn)
    assert ("inserted", 3) in got


def test_reordered_entries_are_named(conn):
    _filled(conn)
    a = conn.execute("SELECT * FROM audit_log WHERE seq = 2").fetchone()
    b = conn.execute("SELECT * FROM audit_log WHERE seq = 3").fetchone()
    conn.execute("DELETE FROM audit_log WHERE seq IN (2, 3)")
    conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)", [2, *b[1:]])
    conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)", [3, *a[1:]])
    got = kinds(conn)
    assert ("reordered", 2) in got and ("edited", 2) in got and ("edited", 3) in got


def test_rewritten_or_truncated_tail_is_caught_against_a_published_head(conn):
    log = _filled(conn)
    head = log.head()
    conn.execute("DELETE FROM audit_log WHERE seq = 6")
    assert verify(conn).ok  # indistinguishable from a shorter log without the published head
    assert kinds(conn, expect_head=head) == [("truncated", 6)]
    log.append(user="x", organization="o", action="search")  # a new entry 6 with a different hash
    assert kinds(conn, expect_head=head) == [("broken", 6)]


def test_retention_purge_leaves_an_anchor_that_verifies(conn):
    log = AccessLog(conn, clock=lambda: T0)
    for days in (2000, 1900, 10, 1):
        log.append(user="otto", organization="City PD", action="search", at=T0 - dt.timedelta(days=days))
    assert log.purge_before(T0 - dt.timedelta(days=1825), user="ada", organization="City PD") == 2
    report = verify(conn, retention_days=1825)
    assert report.ok and report.first_seq == 3 and report.entries == 3
    assert log.entries()[-1].action == "log-purged" and log.entries()[-1].detail["through_seq"] == 2
    assert kinds(conn, retention_days=3650) == [("purge", 5), ("deleted", 3)]  # cut inside a longer retention


def test_a_forged_purge_record_does_not_excuse_deleting_recent_entries(conn):
    """An insider with write access deletes today's search entries and appends a
    log-purged record made with the published hash formula: the entries are
    reported deleted, the record named, although the published head still matches."""
    import hashlib
    import json

    log = _filled(conn)  # six searches at T0
    log.append(user="ada", organization="City PD", action="audit-head")
    head = log.head()
    through_hash = conn.execute("SELECT hash FROM audit_log WHERE seq = 6").fetchone()[0]
    conn.execute("DELETE FROM audit_log WHERE seq <= 6")
    at = "2026-12-05T00:00:00.000000Z"  # after PURGE_RECORD_FORMAT_2: a record must hold its removed entry
    for detail in ({"through_seq": 6, "through_hash": through_hash, "entries": 6, "cutoff": at},
                   {"through_seq": 6, "through_hash": through_hash, "entries": 6, "cutoff": at,
                    "through_entry": [6, "1990-01-01T00:00:00.000000Z", "u5", "City PD", "search", "stolen-vehicle",
                                      "C-5", "{}", 5, "0" * 64]}):  # a made-up old entry: its hash differs
        seq, prev = log.head()
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
        body = json.dumps([seq + 1, at, "ada", "City PD", "log-purged", "", "", text, 6], separators=(",", ":"))
        conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     [seq + 1, at, "ada", "City PD", "log-purged", "", "", text, 6, prev,
                      hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()])
    assert kinds(conn, expect_head=head, retention_days=1825) == [("purge", 8), ("purge", 9), ("deleted", 7)]


def test_legacy_access_log_rows_are_moved_into_the_chain(conn):
    if dialect(conn) != "sqlite":
        pytest.skip("the pre-0200 access_log table exists only in SQLite files")
    conn.execute("INSERT INTO access_log (at, user, organization, purpose, case_number, query, result_count) "
                 "VALUES ('2026-01-01T00:00:00.000000Z', 'old', 'PD', 'stolen-vehicle', 'C-1', '{\"plate\": \"X1\"}', 2)")
    log = AccessLog(conn)
    [e] = log.entries()
    assert (e.user, e.action, e.query, e.result_count) == ("old", "search", {"plate": "X1"}, 2)
    assert conn.execute("SELECT count(*) FROM access_log").fetchone()[0] == 0 and verify(conn).ok


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 8), st.data())
def test_any_single_field_edit_is_detected(tmp_path_factory, n, data):
    c = sqlite3.connect(tmp_path_factory.mktemp("h") / "a.sqlite", isolation_level=None)
    c.executescript("CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, at TEXT, user TEXT, organization TEXT, "
                    "action TEXT, purpose TEXT, case_number TEXT, detail TEXT, result_count INTEGER, "
                    "prev_hash TEXT, hash TEXT)")
    _filled(c, n)
    seq = data.draw(st.integers(1, n))
    column = data.draw(st.sampled_from(["at", "user", "organization", "action", "purpose", "case_number", "detail",
                                        "result_count"]))
    value = data.draw(st.text(min_size=1, max_size=5) if column != "result_count" else st.integers(1000, 2000))
    c.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = ?", [value, seq])
    assert ("edited", seq) in [(i.kind, i.seq) for i in verify(c).issues]
    c.close()


def test_cli_audit_verify_reports_and_exits_1(world, tmp_path, monkeypatch):
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n' + world.store_toml)
    monkeypatch.setenv("ALPR_TOKEN", world.tokens["audrey"])
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--config", str(cfg)])
    assert ok.exit_code == 0, ok.output
    assert "ok: the chain is intact" in ok.output
    head = runner.invoke(main, ["audit", "head", "--config", str(cfg)]).output.strip()
    world.conn.execute("UPDATE audit_log SET case_number = 'X' WHERE seq = 2")
    bad = runner.invoke(main, ["audit", "verify", "--config", str(cfg), "--expect-head", head])
    assert bad.exit_code == 1 and "EDITED     entry 2 was altered" in bad.output
    monkeypatch.setenv("ALPR_TOKEN", world.tokens["otto"])
    denied = runner.invoke(main, ["audit", "verify", "--config", str(cfg)])
    assert denied.exit_code == 1 and "may not read the access log" in denied.output


def test_a_purge_record_of_an_older_version_still_verifies_but_cannot_be_backdated(conn):
    """Records written before PURGE_RECORD_FORMAT_2 named only the removed seq and
    hash: an upgraded install still verifies; a forger cannot date a record of that
    shape back past the entries it follows."""
    import hashlib
    import json

    log = AccessLog(conn, clock=lambda: T0)
    for days in (2000, 1900, 10, 1):
        log.append(user="otto", organization="City PD", action="search", at=T0 - dt.timedelta(days=days))
    head = log.head()
    through_hash = conn.execute("SELECT hash FROM audit_log WHERE seq = 2").fetchone()[0]
    conn.execute("DELETE FROM audit_log WHERE seq <= 2")

    def old_record(at):
        seq, prev = log.head()
        text = json.dumps({"through_seq": 2, "through_hash": through_hash, "entries": 2,
                           "cutoff": "2021-11-01T12:00:00.000000Z"}, sort_keys=True, separators=(",", ":"))
        body = json.dumps([seq + 1, at, "ada", "City PD", "log-purged", "", "", text, 2], separators=(",", ":"))
        conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     [seq + 1, at, "ada", "City PD", "log-purged", "", "", text, 2, prev,
                      hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()])

    old_record("2026-08-15T12:00:00.000000Z")  # as an older version wrote it, at T0
    assert verify(conn, expect_head=head, retention_days=1825).ok
    conn.execute("DELETE FROM audit_log WHERE action = 'log-purged'")
    old_record("2026-08-01T00:00:00.000000Z")  # backdated behind the entries it follows (T0 - 1 day)
    assert kinds(conn, retention_days=1825) == [("purge", 5), ("deleted", 3)]


def _forge_purge(conn, log, *, at: str, through_seq: int, cutoff: str, entries: int) -> None:
    """Append a log-purged record as an insider with write access would: chained to
    the current head, holding the real last removed entry."""
    import hashlib
    import json

    row = conn.execute("SELECT seq, at, user, organization, action, purpose, case_number, detail, result_count, "
                       "prev_hash, hash FROM audit_log WHERE seq = ?", [through_seq]).fetchone()
    conn.execute("DELETE FROM audit_log WHERE seq <= ?", [through_seq])
    seq, prev = log.head()
    text = json.dumps({"through_seq": through_seq, "through_hash": row[10], "through_entry": list(row[:10]),
                       "entries": entries, "cutoff": cutoff}, sort_keys=True, separators=(",", ":"))
    body = json.dumps([seq + 1, at, "ada", "City PD", "log-purged", "", "", text, entries], separators=(",", ":"))
    conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 [seq + 1, at, "ada", "City PD", "log-purged", "", "", text, entries, prev,
                  hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()])


def test_a_purge_record_dated_in_the_future_excuses_nothing(conn):
    """The attack of issue 20: delete today's entries up to K, append a purge record
    dated years ahead with its cutoff just after entry K. Its retention check passes
    on its own date, so the verifying clock must refuse the date."""
    log = _filled(conn)  # six searches at T0
    log.append(user="ada", organization="City PD", action="audit-head")
    head = log.head()
    _forge_purge(conn, log, at="2036-01-01T00:00:00.000000Z", through_seq=4,
                 cutoff="2026-08-15T00:00:01.000000Z", entries=4)
    now = T0 + dt.timedelta(hours=1)
    report = verify(conn, expect_head=head, retention_days=1825, now=now)
    assert [(i.kind, i.seq) for i in report.issues] == [("purge", 8), ("deleted", 5)]
    assert "dated after the verifying clock" in report.issues[0].message
    # Dated ahead, yet before the verifying clock: the entries after it give it away.
    log.append(user="otto", organization="City PD", action="search", at=T0 + dt.timedelta(minutes=30))
    report = verify(conn, retention_days=1825, now=dt.datetime(2040, 1, 1, tzinfo=dt.timezone.utc))
    assert [(i.kind, i.seq) for i in report.issues] == [("purge", 8), ("deleted", 5)]
    assert "dated after the entry that follows it" in report.issues[0].message


def test_an_honest_purge_within_the_clock_skew_verifies(conn):
    log = AccessLog(conn, clock=lambda: T0)
    for days in (2000, 1900, 10, 1):
        log.append(user="otto", organization="City PD", action="search", at=T0 - dt.timedelta(days=days))
    log.purge_before(T0 - dt.timedelta(days=1825), user="ada", organization="City PD")
    assert verify(conn, retention_days=1825, now=T0 - dt.timedelta(minutes=4)).ok
    assert kinds(conn, retention_days=1825, now=T0 - dt.timedelta(minutes=6)) == [("purge", 5), ("deleted", 3)]


def test_an_entry_dated_after_the_verifying_clock_is_named(conn):
    log = _filled(conn, 2)
    log.append(user="otto", organization="City PD", action="search", at=T0 + dt.timedelta(days=400))
    assert kinds(conn, now=T0) == [("future", 3)]


def test_a_published_head_that_was_purged_is_reported(conn):
    log = AccessLog(conn, clock=lambda: T0)
    for days in (2000, 1900, 10, 1):
        log.append(user="otto", organization="City PD", action="search", at=T0 - dt.timedelta(days=days))
    published = (2, conn.execute("SELECT hash FROM audit_log WHERE seq = 2").fetchone()[0])
    log.purge_before(T0 - dt.timedelta(days=1825), user="ada", organization="City PD")
    report = verify(conn, expect_head=published, retention_days=1825, now=T0)
    assert [(i.kind, i.seq) for i in report.issues] == [("truncated", 2)]
    assert "no longer in the log" in report.issues[0].message
