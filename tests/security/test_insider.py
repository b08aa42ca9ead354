"""Malicious business user, operator or insider with database access:
searches outside the rules (issue 20.6), access-log edits and a forged purge
record (20.1), query injection. Real SQLite databases and the real CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from click.testing import CliRunner

from central.cli import main
from central.governance.audit import AccessLog
from test_governance_support import T0, world  # noqa: F401

DAY = dt.timedelta(days=1)


@pytest.fixture
def cli(world, tmp_path, monkeypatch):  # noqa: F811
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n' + world.store_toml +
                   '[query]\npurposes = ["stolen-vehicle"]\n')
    now = dt.datetime.now(dt.timezone.utc)
    for i, plate in enumerate(["7ABC123", "8XYZ999", "5KLM456"]):
        world.add_read(plate, now - (i + 1) * DAY)

    def run(*args, as_="otto"):
        monkeypatch.setenv("ALPR_TOKEN", world.tokens[as_])
        return CliRunner().invoke(main, [*args, "--config", str(cfg)])
    return run


def query(cli, *args, case="GPD-26-1182", as_="otto"):
    return cli("query", "--purpose", "stolen-vehicle", "--case", case, *args, as_=as_)


def refused_entries(world):  # noqa: F811
    return AccessLog(world.conn).entries(action="search-refused")


def test_a_refused_search_logs_a_trimmed_query_not_the_raw_input(cli, world):  # noqa: F811
    before = world.conn.execute("SELECT coalesce(sum(length(detail)), 0) FROM audit_log").fetchone()[0]
    result = query(cli, "--plate", "7" * 100_000)
    assert result.exit_code == 1
    result = cli("query", "--purpose", "x" * 100_000, "--case", "c" * 100_000, "--plate", "7ABC123")
    assert result.exit_code == 1
    grown = world.conn.execute("SELECT coalesce(sum(length(detail) + length(purpose) + length(case_number)), 0) "
                               "FROM audit_log").fetchone()[0] - before
    assert len(refused_entries(world)) == 2 and grown < 2_000
    entry = refused_entries(world)[0]
    assert entry.query["query"]["plate"].endswith("(100000 chars)")  # what was asked, and how big


@pytest.mark.parametrize("case", ["n/a", "N/A", "none", "unknown", "test", "tbd", "-", "x"])
def test_a_placeholder_is_not_a_case_number(cli, world, case):  # noqa: F811
    result = query(cli, "--plate", "7ABC123", case=case)
    assert result.exit_code == 1 and "case or incident number is required" in result.output
    assert len(refused_entries(world)) == 1


def test_the_case_number_form_is_configurable(cli, world, tmp_path):  # noqa: F811
    assert query(cli, "--plate", "7ABC123", case="24-001234").exit_code == 0
    cfg = tmp_path / "central.toml"
    cfg.write_text(cfg.read_text() + 'case_number_pattern = "^LAPD-[0-9]{2}-[0-9]{6}$"\n')
    assert query(cli, "--plate", "7ABC123", case="24-001234").exit_code == 1
    assert query(cli, "--plate", "7ABC123", case="LAPD-24-001234").exit_code == 0
    cfg.write_text(cfg.read_text() + '')
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace("^LAPD", "(^LAPD"))
    result = CliRunner().invoke(main, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 78 and "query.case_number_pattern" in result.output


def test_an_open_ended_sweep_of_everything_is_refused(cli, world):  # noqa: F811
    for args in (["--since", "0001-01-01"], ["--until", "9999-12-31"], ["--camera", "lane-1"],
                 ["--since", "0001-01-01", "--until", "9999-12-31"], ["--device", "cam-a", "--since", "2026-01-01"]):
        result = query(cli, *args)
        assert result.exit_code == 1 and "plate" in result.output, (args, result.output)
    assert len(refused_entries(world)) == 5
    now = dt.datetime.now(dt.timezone.utc)
    ok = query(cli, "--since", (now - 7 * DAY).date().isoformat(), "--until", now.date().isoformat() + "T23:59")
    assert ok.exit_code == 0 and ok.output.strip().endswith("3 read(s)"), ok.output
    assert query(cli, "--plate", "7ABC123", "--since", "0001-01-01").exit_code == 0  # a plate bounds it


@pytest.mark.parametrize("args", [["--plate", "7ABC123' OR '1'='1"], ["--plate", "7*; DROP TABLE reads"],
                                  ["--plate", "7ABC123", "--camera", "x' OR '1'='1"],
                                  ["--plate", "7ABC123", "--device", "cam-a\" OR 1=1 --"]])
def test_query_injection_finds_nothing_and_breaks_nothing(cli, world, args):  # noqa: F811
    result = query(cli, *args)
    assert "read(s)" not in result.output or result.output.strip().endswith("0 read(s)")
    assert world.conn.execute("SELECT count(*) FROM reads").fetchone()[0] == 3


def test_a_business_user_cannot_search_at_all(cli, world):  # noqa: F811
    result = query(cli, "--plate", "7ABC123", as_="bob")
    assert result.exit_code == 1 and "may not" in result.output


# -- the access log, as an insider with write access to the database sees it ----------------------
def _verify(cli, *extra):
    return cli("audit", "verify", *extra, as_="audrey")


def test_edited_deleted_and_reordered_access_log_entries_are_named(cli, world):  # noqa: F811
    for _ in range(3):
        assert query(cli, "--plate", "7ABC123").exit_code == 0
    assert _verify(cli).exit_code == 0
    head = cli("audit", "head", as_="audrey").output.strip()
    world.conn.execute("UPDATE audit_log SET user = 'someone-else' WHERE seq = 2")
    result = _verify(cli, "--expect-head", head)
    assert result.exit_code == 1 and "entry 2 was altered" in result.output
    world.conn.execute("DELETE FROM audit_log WHERE seq = 3")
    result = _verify(cli)
    assert result.exit_code == 1 and "3" in result.output


def _forge_purge(conn, *, at: str, through_seq: int, cutoff: str) -> None:
    """The attack of issue 20.1: delete entries up to K, append a log-purged record
    chained to the head, dated years ahead, naming entry K and a cutoff just after it."""
    row = conn.execute("SELECT seq, at, user, organization, action, purpose, case_number, detail, result_count, "
                       "prev_hash, hash FROM audit_log WHERE seq = ?", [through_seq]).fetchone()
    conn.execute("DELETE FROM audit_log WHERE seq <= ?", [through_seq])
    seq, prev = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    text = json.dumps({"through_seq": through_seq, "through_hash": row[10], "through_entry": list(row[:10]),
                       "entries": through_seq, "cutoff": cutoff}, sort_keys=True, separators=(",", ":"))
    body = json.dumps([seq + 1, at, "ada", "City PD", "log-purged", "", "", text, through_seq],
                      separators=(",", ":"))
    conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                 [seq + 1, at, "ada", "City PD", "log-purged", "", "", text, through_seq, prev,
                  hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()])


def test_a_forged_purge_record_dated_ahead_does_not_hide_deleted_searches(cli, world):  # noqa: F811
    for _ in range(4):
        assert query(cli, "--plate", "7ABC123").exit_code == 0
    head = cli("audit", "head", as_="audrey").output.strip()
    last = world.conn.execute("SELECT max(seq) FROM audit_log").fetchone()[0]
    k = last - 2
    k_at = world.conn.execute("SELECT at FROM audit_log WHERE seq = ?", [k]).fetchone()[0]
    cutoff = (dt.datetime.strptime(k_at, "%Y-%m-%dT%H:%M:%S.%fZ") + dt.timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    _forge_purge(world.conn, at="2031-01-01T00:00:00.000000Z", through_seq=k, cutoff=cutoff)
    for extra in ((), ("--expect-head", head)):
        result = _verify(cli, *extra)
        assert result.exit_code == 1, result.output
        assert "dated after the verifying clock" in result.output
