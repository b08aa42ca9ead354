"""One output layer for ``alpr-central`` (issue 23): each command kind prints
a table with headers (nothing cut but the last column), times people read,
no Python values (``None``, ``['a']``, ``{'k': 1}``, epoch seconds); --json is
real JSON; a command with --limit says when more results exist."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from pathlib import Path

import pytest

from central.cli import output as out
from central.config import load
from central.hotlist.matcher import Matcher
from edge_agent.wire import PlateRead, new_read_id
from conftest import central_cli
from test_governance_support import make_world

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VALUES = re.compile(r"\bNone\b|\['|\{'|\": |\b1[6-9]\d{8}\.\d+\b|\bTrue\b|\bFalse\b")
LONG_ORG = "County of Los Angeles Sheriff's Department, Real Time Crime Center"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")   # CliRunner is no terminal: this width, as a wide terminal
    world = make_world(tmp_path / "central" / "central.sqlite")
    cfg, invoke = central_cli(tmp_path, monkeypatch, '[query]\npurposes = ["stolen-vehicle"]\n[hotlist]\n'
                              'dedupe_seconds = 0\n[hotlist.categories]\nstolen-vehicle = 365\n')

    def run(*args, user="ada"):
        res = invoke(*args, env={"ALPR_TOKEN": world.tokens[user]})
        assert res.exit_code == 0, (args, res.output)
        if "--json" not in args:
            assert not PYTHON_VALUES.search(res.stdout), (args, res.stdout)
        run.stderr = res.stderr
        return res.stdout

    yield world, cfg, run
    world.store.close()


def _hits(world, cfg, run, n):
    expires = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    run("hotlist", "create", "svs", "--category", "stolen-vehicle", "--description", "SVS extract, daily")
    run("hotlist", "add", "7ABC123", "--list", "svs", "--reason", "stolen", "--source-agency", "LAPD",
        "--source-ref", "V-1", "--expires", expires)
    now = dt.datetime.now(dt.timezone.utc)
    world.store.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", now - dt.timedelta(minutes=i), "7ABC123",
                                     0.93, (1, 2, 3, 4)) for i in range(n)], now)
    matcher = Matcher(world.store.path, load(cfg).hotlist)
    ids = matcher.match_pending()
    matcher.close()
    assert len(ids) == n
    return ids


def test_hits_list_is_a_table_and_says_when_the_limit_left_hits_out(env):
    world, cfg, run = env
    _hits(world, cfg, run, 3)
    text = run("hits", "list", "--limit", "2", user="otto")
    lines = text.splitlines()
    assert lines[0].split() == ["hit", "captured", "read", "listed", "match", "list", "camera", "status"]
    assert len(lines) == 5 and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines[1])
    assert lines[3] == "2 hit(s)"
    assert lines[4] == ("showing the newest 2 hits; older ones match too (raise --limit or narrow with "
                        "--since/--until/--status)")
    assert "older ones match" not in run("hits", "list", "--limit", "3", user="otto")
    docs = [json.loads(line) for line in run("hits", "list", "--limit", "2", "--json", user="otto").splitlines()]
    assert len(docs) == 2 and "showing the newest 2 hits; older ones match too" in run.stderr   # stdout: data only
    run("hits", "list", "--limit", "3", "--json", user="otto")
    assert run.stderr == ""
    reads = run("query", "--plate", "7ABC123", "--purpose", "stolen-vehicle", "--case", "26-0001", "--limit", "2",
                "--json", user="otto").splitlines()
    assert len(reads) == 2 and "the limit of 2 was reached: older reads may match too" in run.stderr
    # the access log records what was shown, not the one row looked at to tell
    entry = json.loads(run("audit", "log", "--action", "hits-list", "--limit", "1", "--json", user="audrey"))
    assert entry["result_count"] == 3 and entry["detail"]["limit"] == 3
    assert "showing the newest 1 entries; older ones match too" in run.stderr


def test_hits_show_in_words(env):
    world, cfg, run = env
    [hit_id] = _hits(world, cfg, run, 1)
    text = run("hits", "show", str(hit_id), user="otto")
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in text.splitlines())
    assert fields["confidence"] == "0.930" and fields["location"] == "unknown"
    assert fields["source"] == "LAPD, ref V-1" and fields["case"] == "-" and fields["visual check"] == "-"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", fields["entry expires"])
    run("hits", "check-image", str(hit_id), "--yes", user="otto")
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1)
                  for line in run("hits", "show", str(hit_id), user="otto").splitlines())
    assert re.fullmatch(r"yes \(by otto, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", fields["visual check"])
    assert run("hits", "deliveries", str(hit_id), user="otto") == f"hit {hit_id} has no webhook deliveries\n"


def test_hotlist_commands_are_tables(env):
    world, cfg, run = env
    _hits(world, cfg, run, 1)
    assert run("hotlist", "categories").splitlines() == ["category        entries expire within",
                                                          "stolen-vehicle  365 days"]
    lines = run("hotlist", "list").splitlines()
    assert lines[0].split()[:4] == ["list", "category", "version", "active"]
    assert lines[1].split()[:5] == ["svs", "stolen-vehicle", "1", "1", "ada"] and lines[1].endswith("daily")
    history = run("hotlist", "show", "svs", "--history").splitlines()
    assert history[0].split() == ["version", "at", "by", "action", "changes"]
    assert history[-1].split()[-2:] == ["added", "1"], history   # counts in words, not a dict
    entries = run("hotlist", "show", "svs").splitlines()
    assert entries[0].split() == ["entry", "plate", "state", "status", "expires", "source", "ref", "case", "reason"]
    assert " active " in entries[1] and entries[-1] == "1 entry"
    assert isinstance(json.loads(run("hotlist", "show", "svs", "--history", "--json"))[0]["counts"], dict)


def test_sharing_requests_list_is_a_table_and_its_json_real(env):
    world, cfg, run = env
    today = dt.date.today()
    run("share", "agreement-add", "--id", "MOU-7", "--agency", "Burbank PD", "--agency-type", "public-agency",
        "--jurisdiction", "CA", "--effective", str(today - dt.timedelta(days=10)),
        "--expires", str(today + dt.timedelta(days=10)))
    assert run("share", "requests", user="sue") == "no sharing requests\n"
    run("share", "request", "--purpose", "stolen-vehicle", "--person", "Sgt. Lee", "--case", "BPD-1", "--plate",
        "7ABC123", "--since", str(today - dt.timedelta(days=5)), "--until", str(today), "--agreement", "MOU-7",
        user="otto")
    header, row = run("share", "requests", user="sue").splitlines()
    assert header.split()[:5] == ["request", "agreement", "status", "case", "purpose"]
    assert row.split()[:6] == ["1", "MOU-7", "pending", "BPD-1", "stolen-vehicle", "1"] and " UTC " in row
    [doc] = json.loads(run("share", "requests", "--json", user="sue"))
    assert doc["entered_at"].startswith(str(today)[:4]) and doc["decided_by"] is None and doc["plates"] == 1


def test_user_list_cuts_no_organization(env):
    world, cfg, run = env
    run("user", "add", "lee", "--organization", LONG_ORG, "--role", "operator", "--token-out",
        str(Path(cfg).parent / "lee.token"))
    lines = run("user", "list").splitlines()
    assert lines[0].split() == ["user", "role", "status", "last", "active", "organization"]
    [lee] = [line for line in lines if line.startswith("lee ")]
    assert lee.endswith(LONG_ORG) and " never " in lee


def test_hold_list_is_a_table(env):
    world, cfg, run = env
    assert run("hold", "list", user="sue") == "no legal holds\n"
    run("hold", "request", "--case", "26-0042", "--since", "2026-01-01", "--until", "2026-02-01", "--reason",
        "homicide investigation", "--review-on", str(dt.date.today() + dt.timedelta(days=90)), user="otto")
    header, row = run("hold", "list", user="sue").splitlines()
    assert header.split()[:5] == ["hold", "case", "status", "review", "on"]
    assert row.split()[:4] == ["1", "26-0042", "pending", str(dt.date.today() + dt.timedelta(days=90))]
    assert "2026-01-01 00:00:00 UTC" in row


def test_table_fits_the_terminal_by_cutting_only_the_last_column():
    text = out.table(["id", "free text"], [["device:cam-bbf-0001", "x" * 200]], width=40)
    head, row = text.splitlines()
    assert row.startswith("device:cam-bbf-0001  ") and len(row) == 40 and row.endswith("…")


def test_more_note_fields_and_json():
    assert out.more_note(5, "entries", "raise --limit") == "showing the newest 5 entries; older ones match too " \
                                                          "(raise --limit)"
    assert out.fields([("a", None), ("long label", ["x", "y"])]) == "a           -\nlong label  x, y"
    assert json.loads(out.dumps({"at": dt.datetime(2026, 12, 5, tzinfo=dt.timezone.utc), "ids": ("a",)})) == \
        {"at": "2026-12-05T00:00:00+00:00", "ids": ["a"]}


# The two CLIs' output modules are twins (central may import nothing of edge_agent
# beyond edge_agent.wire): what both define must stay the same text.
CENTRAL_ONLY = {"more_note", "dumps", "_json_default", "as_json_value"}


def _functions(path: Path) -> dict[str, str]:
    text = path.read_text()
    tree = ast.parse(text)
    return {node.name: ast.get_source_segment(text, node) for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))} | {
        "NONE": next(ast.get_source_segment(text, n) for n in tree.body
                     if isinstance(n, ast.Assign) and n.targets[0].id == "NONE")}


def test_the_output_twins_stay_identical():
    central = _functions(ROOT / "central" / "cli" / "output.py")
    edge = _functions(ROOT / "edge_agent" / "output.py")
    assert set(edge) <= set(central), f"edge_agent/output.py has what central's lacks: {set(edge) - set(central)}"
    assert set(central) - set(edge) == CENTRAL_ONLY, "a new helper: add it to both, or name it in CENTRAL_ONLY"
    for name in edge:
        assert central[name] == edge[name], f"{name} differs between central/cli/output.py and edge_agent/output.py"


def test_enrollment_token_and_business_agreement_in_words(env):
    world, cfg, run = env
    run("ca", "init")
    text = run("enroll", "create", "--camera", "lane-1", "--expires", "2d", user="tech")
    [expires] = [line for line in text.splitlines() if line.startswith("expires")]
    assert re.fullmatch(r"expires  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in (1 day|2 days|47 h)\) \(one use\)", expires)
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in run("business", "show", "Bob's Garage").splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by ada", fields["enrolled"]), fields
    assert "withdrawn" not in fields


def test_hits_show_names_an_upgrade_in_words(env):
    """A better read of the same pass moved the unchecked hit to it: hits
    show says so, with both reads, in words (not only with --json)."""
    world, cfg, run = env
    expires = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    run("hotlist", "create", "svs", "--category", "stolen-vehicle")
    run("hotlist", "add", "7ABC123", "--list", "svs", "--reason", "stolen", "--source-agency", "LAPD",
        "--source-ref", "V-1", "--expires", expires)
    now = dt.datetime.now(dt.timezone.utc)
    first = PlateRead(new_read_id(), "cam-a", "lane-1", now - dt.timedelta(seconds=20), "7A8C123", 0.9, (1, 2, 3, 4))
    better = PlateRead(new_read_id(), "cam-a", "lane-1", now - dt.timedelta(seconds=10), "7ABC123", 0.9, (1, 2, 3, 4))
    import dataclasses   # one pass: reads of the same car within the dedupe window (this env's is 0)
    matcher = Matcher(world.store.path, dataclasses.replace(load(cfg).hotlist, dedupe_seconds=300))
    try:
        world.store.add_reads([first], now)
        [hit_id] = matcher.match_pending()
        world.store.add_reads([better], now)
        assert matcher.match_pending() == [hit_id]
    finally:
        matcher.close()
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1)
                  for line in run("hits", "show", str(hit_id), user="otto").splitlines())
    assert re.fullmatch(rf"confusable 7A8C123 \({first.read_id}\) -> exact 7ABC123 \({better.read_id}\), "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", fields["upgraded"]), fields
