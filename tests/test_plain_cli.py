"""The CLIs speak plainly (issue 23): refusals in words (no permission
identifiers), printed once; ``audit log --limit`` shows the newest entries
and says when more exist; ``--period`` in any case; a business account only
for an enrolled, active business; a file camera needs its ``uri``."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from central.cli import main
from central.errors import PermissionDenied, PolicyError
from central.governance.report import parse_period
from central.governance.users import PERMISSION_WORDS, Permission, Role, User, require
from conftest import business_on_file, central_cli


@pytest.fixture
def site(tmp_path, monkeypatch):
    cfg, run = central_cli(tmp_path, monkeypatch, '[query]\npurposes = ["stolen-vehicle"]\n')
    assert run("user", "bootstrap", "--name", "ada", "--organization", "City PD", "--token-out",
               str(tmp_path / "ada.token")).exit_code == 0
    return tmp_path, cfg, run


def test_every_permission_has_words_and_refusals_name_none():
    assert set(PERMISSION_WORDS) == set(Permission)
    tech = User("tim", "City PD", Role.FIELD_TECH, False, dt.datetime.now(dt.timezone.utc), None)
    with pytest.raises(PermissionDenied) as refused:
        require(tech, Permission.DEVICE_HEALTH_OWN)
    message = str(refused.value)
    assert message == "tim (a field technician) may not see the health of a business's own devices"
    assert not any(p.value in message for p in Permission)


def test_a_refused_search_is_printed_once_in_words(site):
    tmp_path, cfg, _run = site
    env = {**os.environ, "ALPR_TOKEN_FILE": str(tmp_path / "ada.token")}
    env.pop("ALPR_TOKEN", None)
    out = subprocess.run([sys.executable, "-m", "central", "query", "--config", str(cfg), "--plate", "7ABC123",
                          "--purpose", "stolen-vehicle", "--case", "C-1"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 1
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert lines == ["Error: ada (an administrator) may not search plate reads"], lines


def test_audit_log_limit_shows_the_newest_and_says_more_exist(site):
    tmp_path, cfg, run = site
    for i in range(5):
        assert run("user", "add", f"op{i}", "--organization", "City PD", "--role", "operator", "--token-out",
                   str(tmp_path / f"op{i}.token"), token="ada").exit_code == 0
    every = [json.loads(line) for line in run("audit", "log", "--json", token="ada").output.splitlines()]
    shown = run("audit", "log", "--limit", "3", "--json", token="ada")
    newest = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [e["seq"] for e in newest] == [e["seq"] for e in every[-3:]]   # the newest three, in order
    assert "showing the newest 3 entries; older ones match too" in shown.stderr   # stdout stays JSON lines
    table = run("audit", "log", "--limit", "3", token="ada").output
    assert "showing the newest 3 entries; older ones match too" in table
    assert "older ones" not in run("audit", "log", "--limit", "100", token="ada").output


@pytest.mark.parametrize("period", ["2026-q4", "2026-Q4", " 2026-q4 "])
def test_period_in_any_case(period):
    assert parse_period(period) == (dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc),
                                    dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))


def test_a_business_account_needs_an_enrolled_active_business(site):
    tmp_path, cfg, run = site
    res = run("user", "add", "pat", "--organization", "nosuch-biz", "--role", "business", token="ada")
    assert res.exit_code == 1 and "no business 'nosuch-biz' is enrolled" in res.output, res.output
    assert "pat" not in run("user", "list", token="ada").output
    db = tmp_path / "central" / "central.sqlite"
    business_on_file(db, "acme")
    assert run("user", "add", "pat", "--organization", "acme", "--role", "business", "--token-out",
               str(tmp_path / "pat.token"), token="ada").exit_code == 0
    import sqlite3
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE businesses SET status = 'withdrawn' WHERE business_id = 'acme'")
    res = run("user", "add", "sam", "--organization", "acme", "--role", "business", token="ada")
    assert res.exit_code == 1 and "has withdrawn" in res.output


def test_library_refuses_a_business_account_without_a_business(tmp_path):
    from central.governance.users import UserDirectory
    from central.store.sqlite import SQLiteStore
    store = SQLiteStore(tmp_path / "c.sqlite")
    try:
        users = UserDirectory(store.db.conn)
        admin, _ = users.bootstrap("ada", "City PD")
        with pytest.raises(PolicyError, match="no business 'nosuch' is enrolled"):
            users.add(admin, "pat", "nosuch", Role.BUSINESS)
    finally:
        store.close()


def test_edge_config_check_refuses_a_file_camera_without_uri(tmp_path):
    from edge_agent.cli import main as edge_main
    from test_edge_config import GOOD
    path = tmp_path / "edge.toml"
    path.write_text(GOOD.replace('uri = "clip.avi"\n', ""))
    res = CliRunner().invoke(edge_main, ["config", "check", "--config", str(path)])
    assert res.exit_code == 78 and "cameras[0].uri: not set for file camera 'front'" in res.output, res.output


def test_the_enrollment_token_is_read_from_a_file_stdin_or_the_environment(tmp_path, monkeypatch):
    """Never needed on the command line; the deprecated --token still works but warns."""
    from edge_agent.cli import main as edge_main
    monkeypatch.delenv("ALPR_ENROLLMENT_TOKEN", raising=False)
    monkeypatch.delenv("ALPR_ENROLLMENT_TOKEN_FILE", raising=False)
    base = ["provision", "--central", "https://x", "--config", str(tmp_path / "edge.toml")]
    none = CliRunner().invoke(edge_main, base)
    assert none.exit_code == 2 and "--token-file FILE" in none.output and "ALPR_ENROLLMENT_TOKEN" in none.output
    (tmp_path / "t").write_text("garbage\n")
    for extra, kwargs in (([], {"env": {"ALPR_ENROLLMENT_TOKEN": "garbage"}}),
                          (["--token-file", str(tmp_path / "t")], {}),
                          (["--token-file", "-"], {"input": "garbage\n"}),
                          ([], {"env": {"ALPR_ENROLLMENT_TOKEN_FILE": str(tmp_path / "t")}})):
        res = CliRunner().invoke(edge_main, base + extra, **kwargs)
        # the token reached the parser (which refuses this one) and no warning was given
        assert res.exit_code == 1 and "not an enrollment token" in res.output and "warning" not in res.output, \
            (extra, res.output)
    old = CliRunner().invoke(edge_main, base + ["--token", "garbage"])
    assert old.exit_code == 1 and "warning: --token shows the token" in old.output


def test_a_withdrawn_business_user_is_told_why_and_nobody_else_learns_anything(tmp_path):
    from test_enrollment_env import CentralEnv
    env = CentralEnv(tmp_path / "site", pid_file=False)
    try:
        env.add_user("pat", "acme", Role.BUSINESS)
        assert env.cli("business", "withdraw", "acme").exit_code == 0
        told = env.cli("device", "list", as_="pat")
        assert told.exit_code == 1 and "your business (acme) withdrew from the program" in told.output, told.output
        env.tokens["forged"] = env.tokens["pat"][:-4] + ("AAAA" if not env.tokens["pat"].endswith("AAAA") else "BBBB")
        forged = env.cli("device", "list", as_="forged")
        assert forged.exit_code == 1 and "acme" not in forged.output and "authentication failed" in forged.output
    finally:
        env.close()


def test_business_agreement_and_health_for_their_readers(tmp_path):
    from test_enrollment_env import CentralEnv
    env = CentralEnv(tmp_path / "site", pid_file=False)
    try:
        assert env.cli("business", "enroll", "--id", "acme", "--name", "Acme Market", "--contact-name", "Pat",
                       "--contact-email", "pat@acme.example", "--mou", "MOU-14", "--shares", "plate reads",
                       "--share-with", "CA public agencies", "--retention-days", "60",
                       "--consent-date", "2026-01-01").exit_code == 0
        env.add_user("pat", "acme", Role.BUSINESS)
        env.add_user("bob", "bobs", Role.BUSINESS)
        own = env.cli("business", "show", as_="pat")
        assert own.exit_code == 0 and "MOU-14" in own.output and "60 days" in own.output, own.output
        assert json.loads(env.cli("business", "show", "--json", as_="pat").output)["mou_id"] == "MOU-14"
        other = env.cli("business", "show", "acme", as_="bob")
        assert other.exit_code == 1 and "MOU-14" not in other.output
        assert env.cli("business", "show", "acme").exit_code == 0       # the admin names it
        for command in ("show", "health"):
            bare = env.cli("business", command)                         # the admin has no business of its own
            assert bare.exit_code == 2 and f"name the business: alpr-central business {command} BUSINESS_ID" \
                in bare.output and "City PD" not in bare.output, bare.output
        assert env.cli("business", "health", as_="pat").exit_code == 0
    finally:
        env.close()


def test_query_says_when_the_limit_cut_the_results(site):
    tmp_path, cfg, run = site
    from central.store.sqlite import SQLiteStore
    from edge_agent.wire import PlateRead, new_read_id
    assert run("user", "add", "otto", "--organization", "City PD", "--role", "operator", "--token-out",
               str(tmp_path / "otto.token"), token="ada").exit_code == 0
    now = dt.datetime.now(dt.timezone.utc)
    store = SQLiteStore(tmp_path / "central" / "central.sqlite")
    store.add_reads([PlateRead(new_read_id(), "cam-with-a-long-device-name", "lane-1", now - dt.timedelta(minutes=i),
                               "7ABC123", 0.91, (1, 2, 3, 4)) for i in range(3)], now)
    store.close()
    args = ["query", "--plate", "7ABC123", "--purpose", "stolen-vehicle", "--case", "C-1"]
    cut = run(*args, "--limit", "2", token="otto")
    assert cut.exit_code == 0 and "the limit of 2 was reached, so older reads may match too" in cut.output
    assert "cam-with-a-long-device-name" in cut.output   # names are never cut
    whole = run(*args, "--limit", "5", token="otto")
    assert whole.output.rstrip().endswith("3 read(s)") and "limit" not in whole.output


def test_edge_status_speaks_in_words(tmp_path):
    from edge_agent.cli import main as edge_main
    from test_edge_config import GOOD
    path = tmp_path / "edge.toml"
    path.write_text(GOOD)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "status.json").write_text(json.dumps({
        "device_id": "cam-1", "updated_at": "2026-11-30T10:00:00+00:00", "broker": {"connected": True},
        "last_ack_at": 1796415369.04, "buffer": {"depth": 2, "counters": {"sent": 5, "dropped": 1}},
        "cameras": [{"id": "front", "state": "running", "fps": 9.5, "last_error": None}]}))
    res = CliRunner().invoke(edge_main, ["status", "--config", str(path), "--no-probe"])
    assert res.exit_code == 3, res.output            # the status is days old: the agent is not running
    text = res.output
    assert "last ack at              2026-12-04 20:16:09 UTC (" in text, text
    assert "counters                 sent 5, dropped 1" in text
    assert "broker reachable         not probed (--no-probe)" in text
    assert not any(bad in text for bad in ("None", "{", "['", "1796415369")), text
    doc = json.loads(CliRunner().invoke(edge_main, ["status", "--config", str(path), "--no-probe", "--json"]).output)
    assert doc["last_ack_at"] == "2026-12-04T20:16:09.040000+00:00"      # --json: a time, not epoch seconds


def test_tables_never_cut_ids_and_fit_the_terminal_by_the_last_column_only():
    from central.cli import output as out
    text = out.table(["user", "action", "detail"],
                     [["device:cam-bbf0123456789", "provision", "x" * 200], ["ada", None, ["lane-1", "lane-2"]]],
                     width=60)
    lines = text.splitlines()
    assert lines[0].split() == ["user", "action", "detail"]
    assert "device:cam-bbf0123456789" in lines[1] and lines[1].endswith("…") and len(lines[1]) <= 60
    assert lines[2].split() == ["ada", "-", "lane-1,", "lane-2"]
    assert out.when(None) == "-" and out.value({"sent": 3}) == "sent 3" and out.value(True) == "yes"
