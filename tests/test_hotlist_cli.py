"""``alpr-central hotlist`` and ``hits`` through the CLI: import with line
errors, entries, versions, the verification steps, ``hits watch``, and a
business user (or an admin, for hits) refused by every command."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from central.cli import main
from central.config import load
from central.hotlist.matcher import Matcher
from test_governance_support import make_world
from edge_agent.wire import PlateRead, new_read_id


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.delenv("ALPR_TOKEN", raising=False)
    monkeypatch.delenv("ALPR_TOKEN_FILE", raising=False)
    world = make_world(tmp_path / "central" / "central.sqlite")
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n'
                   '[hotlist.categories]\nstolen-vehicle = 365\nbolo = 14\n')
    runner = CliRunner()

    def run(*args, user="ada"):
        return runner.invoke(main, [*args[:2], "--config", str(cfg), *args[2:]],
                             env={"ALPR_TOKEN": world.tokens[user]})

    yield world, tmp_path, cfg, run
    world.store.close()


def soon(days=10):
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).date().isoformat()


def test_import_add_show_remove(env):
    world, tmp_path, cfg, run = env
    assert run("hotlist", "create", "svs", "--category", "stolen-vehicle", user="sue").exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"plate,reason,source_agency,source_ref,expires\n"
                    b"7ABC123,stolen,LAPD,V-1,%s\n8XYZ999,stolen,LAPD,V-2,\n7ABC123,stolen,LAPD,V-3,%s\n"
                    % (soon().encode(), soon().encode()))
    res = run("hotlist", "import", str(bad), "--list", "svs")
    assert res.exit_code == 1 and "nothing imported: 2 bad line(s)" in res.stderr
    assert "line 3: expires: required" in res.stderr and "line 4: duplicate entry" in res.stderr
    res = run("hotlist", "import", str(bad), "--list", "svs", "--skip-bad", "--json")
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["counts"]["added"] == 1 and [s["line"] for s in out["skipped"]] == [3, 4]
    res = run("hotlist", "add", "5KLM456", "--list", "svs", "--reason", "felony", "--source-agency", "LAPD",
              "--source-ref", "W-9", "--expires", soon(400), "--json")
    assert res.exit_code == 1 and "later than this category allows" in res.stderr
    res = run("hotlist", "add", "5KLM456", "--list", "svs", "--reason", "felony", "--source-agency", "LAPD",
              "--source-ref", "W-9", "--state", "CA", "--expires", soon(), "--json")
    added = json.loads(res.stdout)
    assert added["plate"] == "5KLM456" and added["added_version"] == 2
    res = run("hotlist", "show", "svs", "--json", user="audrey")
    assert sorted(e["plate"] for e in json.loads(res.stdout)) == ["5KLM456", "7ABC123"]
    res = run("hotlist", "expire", str(added["entry_id"]), "--reason", "recovered", "--json")
    assert json.loads(res.stdout)["removed_version"] == 3
    res = run("hotlist", "list", "--json")
    assert json.loads(res.stdout) == [{"list": "svs", "category": "stolen-vehicle", "description": "",
                                       "version": 3, "active_entries": 1, "created_by": "sue",
                                       "created_at": json.loads(res.stdout)[0]["created_at"]}]
    res = run("hotlist", "show", "svs", "--history", "--json")
    assert [v["action"] for v in json.loads(res.stdout)] == ["import-delta", "add", "expire"]
    res = run("hotlist", "show", "svs", "--version", "2")
    assert "5KLM456" in res.stdout and "2 entries" in res.stdout


def test_hits_workflow_and_watch(env):
    world, tmp_path, cfg, run = env
    run("hotlist", "create", "svs", "--category", "stolen-vehicle")
    run("hotlist", "add", "7ABC123", "--list", "svs", "--reason", "stolen", "--source-agency", "LAPD",
        "--source-ref", "V-1", "--expires", soon())
    now = dt.datetime.now(dt.timezone.utc)
    world.store.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", now, "7ABC123", 0.9, (1, 2, 3, 4),
                                     crop_jpeg=b"\xff\xd8crop")], now)
    matcher = Matcher(world.store.path, load(cfg).hotlist)
    [hit_id] = matcher.match_pending()
    matcher.close()
    res = run("hits", "watch", "--after", "0", "--duration", "1.5", "--json", user="otto")
    assert res.exit_code == 0, res.output
    [line] = res.stdout.splitlines()
    assert json.loads(line)["hit_id"] == hit_id
    res = run("hits", "list", user="otto")
    header, row, total = res.stdout.splitlines()
    assert header.split() == ["hit", "captured", "read", "listed", "match", "list", "camera", "status"]
    assert row.split()[4:] == ["7ABC123", "7ABC123", "exact", "svs", "(stolen-vehicle)", "cam-a/lane-1", "unverified"]
    assert total == "1 hit(s)"
    crop = tmp_path / "crop.jpg"
    res = run("hits", "show", str(hit_id), "--save-crop", str(crop), user="sue")
    assert res.exit_code == 0 and crop.read_bytes() == b"\xff\xd8crop" and "LAPD, ref V-1" in res.stdout
    assert crop.stat().st_mode & 0o777 == 0o600
    res = run("hits", "close", str(hit_id), "--disposition", "dispatched", user="otto")
    assert res.exit_code == 1 and "not actionable" in res.stderr
    res = run("hits", "check-source", str(hit_id), "--yes", user="otto")
    assert res.exit_code == 1 and "before the source check" in res.stderr
    assert run("hits", "check-image", str(hit_id), "--yes", user="otto").exit_code == 0
    res = run("hits", "check-source", str(hit_id), "--yes", user="sue")
    assert res.stdout.strip() == f"hit {hit_id}: ACTIONABLE"   # said once, loudly
    res = run("hits", "close", str(hit_id), "--disposition", "dispatched", "--json", user="otto")
    assert json.loads(res.stdout)["status"] == "dispatched"
    res = run("hits", "list", "--status", "dispatched", "--json", user="audrey")
    assert [json.loads(x)["hit_id"] for x in res.stdout.splitlines()] == [hit_id]
    res = run("hits", "check-image", str(hit_id), "--yes", user="audrey")
    assert res.exit_code == 1 and "may not verify hotlist hits" in res.stderr


def test_business_user_gets_nothing(env):
    world, tmp_path, cfg, run = env
    run("hotlist", "create", "svs", "--category", "stolen-vehicle")
    csv = tmp_path / "x.csv"
    csv.write_text(f"plate,reason,source_agency,source_ref,expires\n7ABC123,stolen,LAPD,V-1,{soon()}\n")
    commands = [("hotlist", "categories"), ("hotlist", "list"), ("hotlist", "show", "svs"), ("hotlist", "show", "svs", "--history"),
                ("hotlist", "import", str(csv), "--list", "svs"), ("hotlist", "create", "mine", "--category", "bolo"),
                ("hotlist", "add", "7ABC123", "--list", "svs", "--reason", "x", "--source-agency", "x",
                 "--source-ref", "x", "--expires", soon()),
                ("hotlist", "remove", "1", "--reason", "x"), ("hotlist", "expire", "1", "--reason", "x"),
                ("hits", "list"), ("hits", "show", "1"), ("hits", "watch", "--duration", "0.2"),
                ("hits", "check-image", "1", "--yes"), ("hits", "check-source", "1", "--yes"),
                ("hits", "close", "1", "--disposition", "no-action"), ("hits", "deliveries", "1")]
    for args in commands:
        res = run(*args, user="bob")
        assert res.exit_code == 1 and "(a business account) may not" in res.stderr, (args, res.output, res.stderr)
        assert "7ABC123" not in res.stdout + res.stderr
    for args in commands[9:]:   # an admin manages lists but sees no hits
        res = run(*args, user="ada")
        assert res.exit_code == 1 and "(an administrator) may not" in res.stderr, (args, res.stderr)
