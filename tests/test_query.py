"""Searching stored reads: exact, wildcard, confusion-tolerant, ranges; and the
rule that every search names a purpose and a case number and is logged."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from central.governance.audit import AccessLog
from central.cli import main
from central.errors import QueryError
from central.governance.search import search
from central.store import Search
from central.store.sqlite import SQLiteStore
from central.governance.users import Role, UserDirectory
from edge_agent.wire import PlateRead, new_read_id

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)
PURPOSES = ("stolen-vehicle", "criminal-investigation")


def add(store, plate, minutes, camera="lane-1", device="cam-a"):
    read = PlateRead(new_read_id(), device, camera, T0 + dt.timedelta(minutes=minutes), plate, 0.9, (1, 2, 3, 4))
    store.add_reads([read], T0)
    return read


@pytest.fixture
def store(store_factory, tmp_path):
    """Each test runs on SQLite and on PostgreSQL (reads there, governance in SQLite)."""
    s = store_factory(tmp_path / "central" / "central.sqlite")
    add(s, "7ABC123", 0)
    add(s, "7ABD123", 10, camera="lane-2")
    add(s, "7ABC128", 20, device="cam-b")
    add(s, "8XYZ999", 30)
    add(s, "7AB0123", 40)   # zero where a letter O might be read
    add(s, "SO1B2Z5", 50)
    yield s
    s.close()


def plates(store, **kw):
    return [r.read.plate for r in store.search(Search(**kw))]


def test_exact_newest_first(store):
    add(store, "7ABC123", 60)
    got = store.search(Search(plate="7abc123"))
    assert [r.read.plate for r in got] == ["7ABC123", "7ABC123"]
    assert got[0].read.captured_at > got[1].read.captured_at


def test_wildcards(store):
    assert plates(store, plate="7AB*12?") == ["7AB0123", "7ABC128", "7ABD123", "7ABC123"]
    assert plates(store, plate="7AB?123") == ["7AB0123", "7ABD123", "7ABC123"]
    assert plates(store, plate="*999") == ["8XYZ999"]


def test_wildcards_use_the_index(store):
    if not isinstance(store, SQLiteStore):
        import psycopg
        with psycopg.connect(store.url) as conn:
            conn.execute("SET enable_seqscan = off")  # 6 rows: show the index can serve, not the planner's taste
            for where in ("plate_folded LIKE '%%123' AND plate LIKE '%%123'", "plate LIKE '7AB%%'",
                          "plate_folded LIKE '7A8_I2_'"):
                plan = " ".join(r[0] for r in conn.execute(f"EXPLAIN SELECT * FROM reads WHERE {where}"))
                assert "Index" in plan and "Seq Scan" not in plan, (where, plan)
        return
    plan = " ".join(str(r) for r in store.db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM reads WHERE plate GLOB '7AB*'").fetchall())
    assert "USING INDEX reads_plate" in plan


def test_confusion_tolerant(store):
    assert plates(store, plate="7ABO123") == []
    assert plates(store, plate="7ABO123", tolerant=True) == ["7AB0123", "7ABD123"]  # 0/O/D/Q are one group
    assert plates(store, plate="5OIBZ26", tolerant=True) == []
    assert plates(store, plate="5OIBZ2S", tolerant=True) == ["SO1B2Z5"]
    assert plates(store, plate="7AB?I2?", tolerant=True) == ["7AB0123", "7ABC128", "7ABD123", "7ABC123"]


def test_time_camera_device_filters(store):
    assert plates(store, plate="7AB*", since=T0 + dt.timedelta(minutes=5), until=T0 + dt.timedelta(minutes=25)) \
        == ["7ABC128", "7ABD123"]
    assert plates(store, camera_id="lane-2") == ["7ABD123"]
    assert plates(store, device_id="cam-b") == ["7ABC128"]
    assert plates(store, since=T0 + dt.timedelta(minutes=45)) == ["SO1B2Z5"]


def test_bad_searches_are_refused(store):
    for kw in ({"plate": "***"}, {"plate": "7ABCDEFGHIJKLMNOPQ"}, {}, {"since": T0.replace(tzinfo=None)},
               {"since": T0, "until": T0 - dt.timedelta(1)}):
        with pytest.raises(QueryError):
            Search(**kw)


def test_search_requires_purpose_and_case_and_is_logged(store):
    users = UserDirectory(store.db.conn)
    admin, _ = users.bootstrap("ada", "LAPD")
    who, _ = users.add(admin, "jdoe", "LAPD", Role.OPERATOR)
    log = AccessLog(store.db.conn)
    with pytest.raises(QueryError, match="purpose is required"):
        search(store, Search(plate="7ABC123"), user=who, purpose=None, case_number="C-1", purposes=PURPOSES)
    with pytest.raises(QueryError, match="not an authorized purpose"):
        search(store, Search(plate="7ABC123"), user=who, purpose="curiosity", case_number="C-1",
               purposes=PURPOSES)
    with pytest.raises(QueryError, match="case or incident number is required"):
        search(store, Search(plate="7ABC123"), user=who, purpose="stolen-vehicle", case_number="",
               purposes=PURPOSES)
    assert log.entries(action="search") == []
    assert len(log.entries(action="search-refused")) == 3  # refusals are logged too
    res = search(store, Search(plate="7AB*"), user=who, purpose="stolen-vehicle", case_number="24-001234",
                 purposes=PURPOSES, now=T0)
    [entry] = log.entries(action="search")
    assert (entry.user, entry.organization, entry.purpose, entry.case_number, entry.result_count, entry.at) == \
        ("jdoe", "LAPD", "stolen-vehicle", "24-001234", len(res), T0)
    assert entry.query == {"plate": "7AB*", "limit": 100}


@pytest.fixture
def config_file(tmp_path, store, monkeypatch):
    users = UserDirectory(store.db.conn)
    admin, _ = users.bootstrap("ada", "LAPD")
    _, token = users.add(admin, "jdoe", "LAPD", Role.OPERATOR)
    monkeypatch.setenv("ALPR_TOKEN", token)
    path = tmp_path / "central.toml"
    store_table = f'[store]\nurl = "{store.url}"\n' if not isinstance(store, SQLiteStore) else ""
    path.write_text(f'data_dir = "{tmp_path / "central"}"\n{store_table}[mqtt]\ntls = false\n'
                    '[query]\npurposes = ["stolen-vehicle"]\n')
    return path


def test_cli_query_table_and_json(config_file):
    runner = CliRunner()
    base = ["query", "--config", str(config_file), "--purpose", "stolen-vehicle", "--case", "C-77"]
    result = runner.invoke(main, [*base, "--plate", "7AB?123"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("captured (UTC)") and lines[-1] == "3 read(s)"
    assert [ln.split()[2] for ln in lines[1:-1]] == ["7AB0123", "7ABD123", "7ABC123"]
    result = runner.invoke(main, [*base, "--plate", "7ABQ1Z3", "--tolerant", "--json"])
    assert result.exit_code == 0
    docs = [json.loads(line) for line in result.output.splitlines()]
    assert [d["plate"] for d in docs] == ["7AB0123", "7ABD123"] and docs[0]["camera_id"] == "lane-1"


def test_cli_refuses_search_without_purpose_or_case(config_file):
    runner = CliRunner()
    result = runner.invoke(main, ["query", "--config", str(config_file), "--plate", "7ABC123", "--case", "C-1"])
    assert result.exit_code == 1 and "Error: a purpose is required" in result.output
    result = runner.invoke(main, ["query", "--config", str(config_file), "--plate", "7ABC123",
                                  "--purpose", "stolen-vehicle"])
    assert result.exit_code == 1 and "case or incident number is required" in result.output


def test_cli_query_requires_an_authenticated_user(config_file, monkeypatch):
    base = ["query", "--config", str(config_file), "--plate", "7ABC123", "--purpose", "stolen-vehicle",
            "--case", "C-1"]
    monkeypatch.delenv("ALPR_TOKEN")
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 1 and "authentication failed" in result.output
    monkeypatch.setenv("ALPR_TOKEN", "alpr_forged")
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 1 and "authentication failed" in result.output


def test_cli_config_errors_exit_78(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('data_dir = "x"\n[mqtt]\ntls = false\nportt = 1\n')
    result = CliRunner().invoke(main, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 78 and "mqtt.portt: unknown key" in result.output
    result = CliRunner().invoke(main, ["query", "--config", str(tmp_path / "missing.toml"), "--plate", "X1"])
    assert result.exit_code == 78 and "no such config file" in result.output


def test_cli_logs_searches_refused_for_malformed_options(config_file, store):
    """Refused before any purpose check (since after until, a date that is not
    one): still a search, logged with what was asked and why."""
    base = ["query", "--config", str(config_file), "--plate", "7ABC123"]
    result = CliRunner().invoke(main, [*base, "--since", "2026-12-01", "--until", "2026-01-01"])
    assert result.exit_code == 1 and "since is after until" in result.output
    result = CliRunner().invoke(main, [*base, "--since", "last tuesday", "--purpose", "stolen-vehicle"])
    assert result.exit_code == 2
    refused = AccessLog(store.db.conn).entries(action="search-refused")
    assert [(e.user, e.purpose) for e in refused] == [("jdoe", ""), ("jdoe", "stolen-vehicle")]
    assert refused[0].query["query"] == {"plate": "7ABC123", "since": "2026-12-01", "until": "2026-01-01",
                                         "limit": 100}
    assert "since is after until" in refused[0].query["reason"]


def test_a_search_that_fails_is_logged_too(store, monkeypatch):
    from central.errors import StoreError

    users = UserDirectory(store.db.conn)
    admin, _ = users.bootstrap("ada", "LAPD")
    who, _ = users.add(admin, "jdoe", "LAPD", Role.OPERATOR)

    def broken(query):
        raise StoreError("disk I/O error")

    monkeypatch.setattr(store, "search", broken)
    with pytest.raises(StoreError):
        search(store, Search(plate="7ABC123"), user=who, purpose="stolen-vehicle", case_number="C-1",
               purposes=PURPOSES)
    [entry] = AccessLog(store.db.conn).entries(action="search-failed")
    assert (entry.user, entry.purpose, entry.case_number) == ("jdoe", "stolen-vehicle", "C-1")
    assert entry.query == {"query": {"plate": "7ABC123", "limit": 100}, "error": "StoreError"}
