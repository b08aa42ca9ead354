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


def test_hits_watch_announces_upgrades_and_noted_better_reads(env):
    """Two real ``hits watch`` processes (human and --json) over a real store: a
    hit, its upgrade to a better read of the pass, a second hit, and a better
    read noted beside it after its visual check, each announced once, with
    the console stream's event names; hit objects keep their keys."""
    import os
    import subprocess
    import sys
    import time

    from central.hotlist.hits import HitBook
    world, tmp_path, cfg, run = env
    run("hotlist", "create", "svs", "--category", "stolen-vehicle")
    for plate in ("7ABC123", "5KLM456"):
        run("hotlist", "add", plate, "--list", "svs", "--reason", "stolen", "--source-agency", "LAPD",
            "--source-ref", "V-1", "--expires", soon())
    conn = world.store.db.conn
    book = HitBook(conn)
    env_vars = {**os.environ, "ALPR_TOKEN": world.tokens["otto"]}
    env_vars.pop("ALPR_TOKEN_FILE", None)
    watchers = {}
    for mode in ("human", "json"):
        out = (tmp_path / f"watch-{mode}.out").open("w+")
        proc = subprocess.Popen([sys.executable, "-m", "central", "hits", "watch", "--config", str(cfg),
                                 "--duration", "120", *(["--json"] if mode == "json" else [])],
                                stdout=out, stderr=subprocess.PIPE, text=True, env=env_vars)
        watchers[mode] = (proc, out)

    def wait(predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, what
            assert all(p.poll() is None for p, _ in watchers.values()), what
            time.sleep(0.1)

    def lines(mode):
        path = tmp_path / f"watch-{mode}.out"
        return [x for x in path.read_text().splitlines() if x]

    matcher = Matcher(world.store.path, load(cfg).hotlist)
    try:
        wait(lambda: len(book.log.entries(action="hits-watch")) == 2, "both watchers started")
        now = dt.datetime.now(dt.timezone.utc)

        def read(plate, at):
            r = PlateRead(new_read_id(), "cam-a", "lane-1", at, plate, 0.9, (1, 2, 3, 4), crop_jpeg=b"\xff\xd8c")
            world.store.add_reads([r], at)
            return r

        first = read("7A8C123", now)                       # B read as 8: a possible hit
        [a] = matcher.match_pending()
        wait(lambda: len(lines("human")) == 1 and len(lines("json")) == 1, "the first hit")
        better = read("7ABC123", now + dt.timedelta(seconds=2))
        assert matcher.match_pending() == [a]               # the hit moves to the better read
        wait(lambda: len(lines("human")) == 2 and len(lines("json")) == 2, "the upgrade")
        read("5KLM4S6", now + dt.timedelta(seconds=3))       # 5/S: another possible hit
        [b] = matcher.match_pending()
        wait(lambda: len(lines("human")) == 3 and len(lines("json")) == 3, "the second hit")
        book.check_image(world.operator, b, shows_plate=True)
        noted = read("5KLM456", now + dt.timedelta(seconds=4))
        assert matcher.match_pending() == []                # the checked hit stays; the read is noted
        wait(lambda: len(lines("human")) == 4 and len(lines("json")) == 4, "the noted better read")
        time.sleep(1.0)                                     # and nothing more
    finally:
        matcher.close()
        for proc, out in watchers.values():
            proc.send_signal(2)                              # Ctrl-C
            proc.wait(timeout=30)
            out.close()
    for proc, _ in watchers.values():
        assert proc.returncode == 0, proc.stderr.read()
    human, docs = lines("human"), [json.loads(x) for x in lines("json")]
    assert len(human) == 4 and len(docs) == 4, (human, docs)
    assert [d["event"] for d in docs] == ["hit", "hit-upgraded", "hit", "hit-better-read-noted"]
    # a hit object is the hit as before (same keys), now with its event
    assert set(docs[0]) - {"event"} == set(book.get(world.operator, a, log=False).as_dict())
    assert (docs[0]["hit_id"], docs[0]["match_kind"], docs[0]["read_id"]) == (a, "confusable", first.read_id)
    up = docs[1]
    assert (up["hit_id"], up["match_kind"], up["read_id"], up["possible"]) == (a, "exact", better.read_id, False)
    assert up["upgrade"]["applied"] is True and up["upgrade"]["previous_read_id"] == first.read_id
    assert (up["upgrade"]["read_id"], up["upgrade"]["previous_kind"]) == (better.read_id, "confusable")
    nb = docs[3]
    assert (nb["hit_id"], nb["match_kind"], nb["status"]) == (b, "confusable", "image-confirmed")
    assert nb["upgrade"]["applied"] is False and nb["upgrade"]["read_id"] == noted.read_id
    for d in docs[1::2]:                                    # no plate text in the upgrade beyond the hit's
        assert not {"matched_text", "previous_text"} & set(d["upgrade"])
    assert human[0].startswith(f"hit {a} ") and "POSSIBLE (confusable)" in human[0]
    assert human[1].startswith(f"upgraded hit {a} ") and " exact " in human[1]
    assert human[1].endswith("(was confusable; look at its new image)")
    assert human[3].startswith(f"better read noted on hit {b} (image-confirmed): an exact match, read "
                               f"{noted.read_id}, captured ")
    assert "5KLM456" not in human[3] and "the hit stays as checked" in human[3]
    print("\n".join(human))


def test_hits_deliveries_names_the_upgrade_deliveries(env):
    world, tmp_path, cfg, run = env
    from central.hotlist.webhooks import write_secret
    write_secret(tmp_path / "central" / "cad.secret")
    cfg.write_text(cfg.read_text() + '[[hotlist.webhooks]]\nname = "cad"\nurl = "http://127.0.0.1:9/hits"\n'
                                     'secret_file = "cad.secret"\n')
    run("hotlist", "create", "svs", "--category", "stolen-vehicle")
    run("hotlist", "add", "7ABC123", "--list", "svs", "--reason", "stolen", "--source-agency", "LAPD",
        "--source-ref", "V-1", "--expires", soon())
    now = dt.datetime.now(dt.timezone.utc)
    for plate, at in (("7A8C123", now), ("7ABC123", now + dt.timedelta(seconds=2))):
        world.store.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", at, plate, 0.9, (1, 2, 3, 4))], at)
        matcher = Matcher(world.store.path, load(cfg).hotlist)
        [hit_id] = matcher.match_pending()
        matcher.close()
    res = run("hits", "deliveries", str(hit_id), user="otto")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-2:] == ["cad: pending after 0 attempt(s)",
                                            "cad (hit-upgraded 1): pending after 0 attempt(s)"]
    res = run("hits", "deliveries", str(hit_id), "--json", user="otto")
    assert [(d["event"], d["upgrade_id"]) for d in json.loads(res.stdout)] == [("hit", None), ("hit-upgraded", 1)]
