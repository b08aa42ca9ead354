"""The labelled set for site adaptation (central/governance/labels.py) on real
SQLite files: operators' confirmations and corrections of search results,
hits' visual checks, retention tied to the read, the export that
``models adapt`` reads, the CLI, and the migration of 0300's rows."""

from __future__ import annotations

import csv
import datetime as dt
import datetime as dt
import json
import os
import re
import sqlite3

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from central.cli import main
from central.config import Hotlist, Retention
from central.errors import PermissionDenied, PolicyError, QueryError
from central.governance.audit import verify
from central.governance.labels import LabelledSet
from central.governance.retention import Governor
from central.hotlist.csvimport import EntryInput
from central.hotlist.hits import HitBook
from central.hotlist.lists import Hotlists
from central.hotlist.matcher import Matcher
from central.store.migrations import MIGRATIONS
from central.store.sqlite import SQLiteStore
from conftest import business_on_file
from edge_agent.wire import PlateRead, new_read_id
from test_governance_support import PURPOSES, T0, world  # noqa: F401

DAY = dt.timedelta(days=1)


def jpeg(text: str) -> bytes:
    img = np.full((40, 120, 3), 255, np.uint8)
    cv2.putText(img, text, (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    return cv2.imencode(".jpg", img)[1].tobytes()


def add(world, plate, at=T0, *, crop=True, model="alpr-us-0.9.0"):
    r = PlateRead(new_read_id(), "cam-a", "lane-1", at, plate, 0.9, (1, 2, 3, 4),
                  crop_jpeg=jpeg(plate) if crop else None, model_version=model)
    world.store.add_reads([r], at)
    return r


def confirm(world, user, read, text, **kw):
    args = {"purpose": PURPOSES[0], "case_number": "26-0042", "purposes": PURPOSES, **kw}
    return LabelledSet(world.store, clock=world.clock).confirm(user, read.read_id, text, **args)


def log(world, action):
    return [json.loads(d) for (d,) in world.conn.execute(
        "SELECT detail FROM audit_log WHERE action = ? ORDER BY seq", [action]).fetchall()]


def test_an_operator_confirms_or_corrects_a_search_result(world):
    right, wrong = add(world, "7ABC123"), add(world, "8XY0999")
    e = confirm(world, world.operator, right, "7abc 123")
    assert (e.source, e.read_text, e.true_text, e.model_version, e.labelled_by) == \
        ("search-confirmed", "7ABC123", "7ABC123", "alpr-us-0.9.0", "otto")
    assert e.crop_jpeg == jpeg("7ABC123") and e.captured_at == T0
    e2 = confirm(world, world.supervisor, wrong, "8XYO-999")
    assert (e2.source, e2.read_text, e2.true_text) == ("search-corrected", "8XY0999", "8XYO999")
    row = world.conn.execute("SELECT user, purpose, case_number, detail FROM audit_log WHERE action = 'read-label' "
                             "ORDER BY seq").fetchall()
    assert [(u, p, c) for u, p, c, _ in row] == [("otto", PURPOSES[0], "26-0042"), ("sue", PURPOSES[0], "26-0042")]
    assert [json.loads(d)["result"] for *_, d in row] == ["confirmed", "corrected"]
    assert not any("7ABC" in d or "8XY" in d for *_, d in row)   # read ids and results, never texts
    assert verify(world.conn).ok


def test_a_second_confirmation_by_the_same_user_replaces_the_first(world):
    r = add(world, "7ABC123")
    confirm(world, world.operator, r, "7ABC128")
    confirm(world, world.operator, r, "7ABC123")
    confirm(world, world.supervisor, r, "7ABC123")     # another person: a second, agreeing label
    rows = world.conn.execute("SELECT labelled_by, true_text FROM labelled_examples ORDER BY example_id").fetchall()
    assert rows == [("otto", "7ABC123"), ("sue", "7ABC123")]
    assert log(world, "read-label")[1]["replaced"] == 1


@pytest.mark.parametrize("who", ["business", "admin", "auditor", "tech"])
def test_only_roles_that_may_search_confirm_and_a_refusal_is_logged(world, who):
    r = add(world, "7ABC123")
    with pytest.raises(PermissionDenied):
        confirm(world, getattr(world, who), r, "7ABC123")
    assert world.conn.execute("SELECT count(*) FROM labelled_examples").fetchone()[0] == 0
    [refusal] = log(world, "search-refused")
    assert refusal["query"] == {"read_id": r.read_id, "action": "confirm"}


def test_confirming_needs_a_purpose_a_case_a_read_with_its_crop_and_a_plain_text(world):
    r, bare = add(world, "7ABC123"), add(world, "7ABC124", crop=False)
    with pytest.raises(PolicyError, match="purpose is required"):
        confirm(world, world.operator, r, "7ABC123", purpose=None)
    with pytest.raises(PolicyError, match="case or incident number"):
        confirm(world, world.operator, r, "7ABC123", case_number="n/a")
    with pytest.raises(PolicyError, match="1-10 letters"):
        confirm(world, world.operator, r, "7ABC12*")
    with pytest.raises(PolicyError, match="1-10 letters"):
        confirm(world, world.operator, r, "")
    unknown = PlateRead(new_read_id(), "d", "c", T0, "X", 0.5, (0, 0, 1, 1))   # never stored
    with pytest.raises(QueryError, match="no read"):
        confirm(world, world.operator, unknown, "X")
    with pytest.raises(QueryError, match="no read not-a-read"):     # no uuid: no read either (PostgreSQL's keys)
        LabelledSet(world.store, clock=world.clock).confirm(world.operator, "not-a-read", "X", purpose=PURPOSES[0],
                                                            case_number="26-0042", purposes=PURPOSES)
    with pytest.raises(PolicyError, match="no crop image"):
        confirm(world, world.operator, bare, "7ABC124")
    assert world.conn.execute("SELECT count(*) FROM labelled_examples").fetchone()[0] == 0
    assert len(log(world, "search-refused")) == 2
    assert [(e["read_id"], e["result"]) for e in log(world, "read-label")] == \
        [(unknown.read_id, "refused"), ("not-a-read", "refused"), (bare.read_id, "refused")]     # attempts on reads are logged, with no result


@pytest.fixture
def hits(world):
    cfg = Hotlist(categories=(("stolen-vehicle", 365),), dedupe_seconds=300)
    lists = Hotlists(world.conn, cfg, clock=world.clock)
    lists.create(world.admin, "svs", "stolen-vehicle")
    for plate in ("7ABC123", "5OS1234"):
        lists.add(world.admin, "svs", EntryInput(plate, "stolen", "LAPD", "V-1", T0 + 30 * DAY))
    matcher = Matcher(world.database, cfg, clock=world.clock)
    yield matcher, HitBook(world.conn, clock=world.clock)
    matcher.close()


def test_hit_visual_checks_join_the_set_a_yes_with_the_listed_plate(world, hits):
    matcher, book = hits
    add(world, "7A8C123")                   # B read as 8: a confusable hit on 7ABC123
    add(world, "5QS1234", T0 + DAY)         # O read as Q: a confusable hit on 5OS1234
    first, second = matcher.match_pending()
    book.check_image(world.operator, first, shows_plate=True)
    book.check_image(world.operator, second, shows_plate=False, true_text="5QS1234")
    rows = world.conn.execute("SELECT source, hit_id, read_text, true_text, model_version FROM labelled_examples "
                              "ORDER BY example_id").fetchall()
    assert rows == [("hit-confirmed", first, "7A8C123", "7ABC123", "alpr-us-0.9.0"),
                    ("hit-misread", second, "5QS1234", "5QS1234", "alpr-us-0.9.0")]


def test_an_example_goes_with_its_read_and_with_its_crop(world, hits):
    matcher, book = hits
    hit_read = add(world, "7ABC123")                   # a hit read: kept hit_days
    [hit_id] = matcher.match_pending()
    book.check_image(world.operator, hit_id, shows_plate=True)
    plain = add(world, "8XY0999")                      # a non-hit read: kept non_hit_days
    confirm(world, world.operator, plain, "8XYO999")
    late = add(world, "6DEF456", T0 + 20 * DAY)        # its image is purged at image_days
    confirm(world, world.operator, late, "6DEF456")
    gov = Governor(world.conn, Retention(non_hit_days=30, hit_days=90, image_days=40, labelled_example_days=3650),
                   clock=world.clock)

    def left():
        return {r for (r,) in world.conn.execute("SELECT read_id FROM labelled_examples")}

    world.clock.now = T0 + 31 * DAY
    assert gov.purge(world.admin, dry_run=True).counts["labelled_examples"] == 1
    assert gov.purge(world.admin).counts["labelled_examples"] == 1     # with the non-hit read
    assert left() == {hit_read.read_id, late.read_id}
    world.clock.now = T0 + 41 * DAY       # hit_read's crop is past image_days: its example goes, the read stays
    assert gov.purge(world.admin, dry_run=True).counts["labelled_examples"] == 1
    assert gov.purge(world.admin).counts["labelled_examples"] == 1
    assert left() == {late.read_id}
    assert world.conn.execute("SELECT count(*) FROM reads WHERE read_id = ?", [hit_read.read_id]).fetchone()[0] == 1
    world.clock.now = T0 + 61 * DAY
    assert gov.purge(world.admin).counts["labelled_examples"] == 1
    assert left() == set()


def test_a_held_read_keeps_its_example(world):
    r = add(world, "7ABC123")
    confirm(world, world.operator, r, "7ABC123")
    gov = Governor(world.conn, Retention(non_hit_days=30, image_days=30), clock=world.clock)
    hold = gov.request_hold(world.supervisor, case_number="26-0042", plates=["7ABC123"], since=T0 - DAY,
                            until=T0 + DAY, reason="discovery order", review_on=(T0 + 400 * DAY).date())
    gov.approve_hold(world.supervisor2, hold.hold_id)
    world.clock.now = T0 + 60 * DAY
    assert gov.purge(world.admin, dry_run=True).counts["labelled_examples"] == 0
    assert gov.purge(world.admin).counts["labelled_examples"] == 0
    assert world.conn.execute("SELECT count(*) FROM labelled_examples").fetchone()[0] == 1


def test_export_writes_what_models_adapt_reads_leaving_out_disagreeing_reads(world, tmp_path):
    from models.training.adapt import load_labelled
    a, b, c = add(world, "7ABC123"), add(world, "8XY0999", T0 + DAY), add(world, "6DEF456", T0 + 2 * DAY)
    confirm(world, world.operator, a, "7ABC123")
    confirm(world, world.operator, b, "8XYO999")
    confirm(world, world.operator, c, "6DEF456")
    confirm(world, world.supervisor, c, "6DEF458")          # two people disagree: left out
    folder = tmp_path / "labels"
    with pytest.raises(PermissionDenied):
        LabelledSet(world.store, clock=world.clock).export(world.operator, str(folder))
    assert not folder.exists()
    result = LabelledSet(world.store, clock=world.clock).export(world.admin, str(folder),
                                                                retention=Retention(image_days=100))
    assert (result.examples, result.reads_conflicting) == (2, 1)
    assert result.by_source == {"hit-confirmed": 0, "hit-misread": 0, "search-confirmed": 1, "search-corrected": 1}
    assert result.delete_by == (T0 + 100 * DAY).date()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all((folder / f).stat().st_mode & 0o777 == 0o600 for f in os.listdir(folder))
    examples, skipped = load_labelled(str(folder))
    assert skipped == 0 and [e.text for e in examples] == ["7ABC123", "8XYO999"]
    assert cv2.imread(examples[1].image) is not None
    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["read_text"], r["source"], r["model_version"]) for r in rows] == \
        [("7ABC123", "search-confirmed", "alpr-us-0.9.0"), ("8XY0999", "search-corrected", "alpr-us-0.9.0")]
    meta = json.loads((folder / "export.json").read_text())
    assert meta["delete_by"] == result.delete_by.isoformat() and meta["exported_by"] == "ada"
    [entry] = log(world, "labels-export")
    assert entry["examples"] == 2 and entry["reads_conflicting"] == 1 and "7ABC" not in json.dumps(entry)
    with pytest.raises(PolicyError, match="exists"):
        LabelledSet(world.store, clock=world.clock).export(world.admin, str(folder))


def test_migration_0790_keeps_the_misread_examples_of_0300(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in MIGRATIONS:
        if name >= "0790":
            continue
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO _migrations VALUES (?, '2026-12-01T00:00:00.000000Z')", [name])
    conn.execute("INSERT INTO labelled_examples (hit_id, read_id, crop, read_text, true_text, model_version, "
                 "captured_at, labelled_by, labelled_at) VALUES (7, 'r-1', x'ffd8', '7ABC123', '7ABC128', 'm-1', "
                 "'2026-11-30T00:00:00.000000Z', 'otto', '2026-11-30T01:00:00.000000Z')")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    try:
        assert store.db.execute("SELECT source, hit_id, read_id, crop, true_text FROM labelled_examples").fetchall() \
            == [("hit-misread", 7, "r-1", b"\xff\xd8", "7ABC128")]
        with pytest.raises(sqlite3.IntegrityError):
            store.db.execute("INSERT INTO labelled_examples (read_id, source, read_text, true_text, model_version, "
                             "captured_at, labelled_by, labelled_at) VALUES ('r', 'guess', 'A', 'A', '', '', '', '')")
    finally:
        store.close()


# -- the CLI ---------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def cli(request, tmp_path, monkeypatch):
    """A central configured on each backend (PostgreSQL: [store] url, a fresh migrated database)."""
    monkeypatch.delenv("ALPR_TOKEN", raising=False)
    monkeypatch.delenv("ALPR_TOKEN_FILE", raising=False)
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n'
                   '[query]\npurposes = ["stolen-vehicle"]\n' + (f'[store]\nurl = "{url}"\n' if url else ""))
    runner = CliRunner()

    def open_store():
        from central.store.postgres import PostgresStore
        return PostgresStore(url) if url else SQLiteStore(tmp_path / "central" / "central.sqlite")

    def run(*args, token=None):
        extra = ["--token-file", str(tmp_path / f"{token}.token")] if token else []
        n = 1 if args[0] == "query" else 2
        return runner.invoke(main, [*args[:n], "--config", str(cfg), *extra, *args[n:]])

    assert run("user", "bootstrap", "--name", "ada", "--organization", "City PD", "--token-out",
               str(tmp_path / "ada.token")).exit_code == 0
    store = open_store()
    try:
        business_on_file(store.db.conn, "bobs-garage")
    finally:
        store.close()
    for name, role, org in (("otto", "operator", "City PD"), ("bob", "business", "bobs-garage")):
        res = run("user", "add", name, "--organization", org, "--role", role, "--token-out",
                  str(tmp_path / f"{name}.token"), token="ada")
        assert res.exit_code == 0, res.output
    store = open_store()
    reads = []
    for plate in ("7ABC123", "8XY0999", "6DEF456"):
        reads.append(PlateRead(new_read_id(), "cam-a", "lane-1", T0, plate, 0.9, (1, 2, 3, 4),
                               crop_jpeg=jpeg(plate), model_version="alpr-us-0.9.0+site1"))
    store.add_reads(reads, T0)
    store.close()
    run.open_store = open_store
    return tmp_path, run, reads


def test_cli_reads_confirm_and_models_export_labels(cli):
    tmp_path, run, reads = cli
    case = ["--purpose", "stolen-vehicle", "--case", "26-0042"]
    # the operator's way in: a search result, with the model version that made each read
    res = run("query", "--plate", "8XY0999", *case, "--json", token="otto")
    assert res.exit_code == 0, res.output
    [found] = [json.loads(line) for line in res.output.splitlines()]
    assert (found["read_id"], found["model_version"]) == (reads[1].read_id, "alpr-us-0.9.0+site1")
    res = run("reads", "confirm", reads[0].read_id, "--text", "7ABC123", *case, token="otto")
    assert res.exit_code == 0 and res.output.startswith(f"read {reads[0].read_id}: confirmed 7ABC123"), res.output
    res = run("reads", "confirm", reads[1].read_id, "--text", "8XYO999", *case, "--json", token="otto")
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert (got["result"], got["read_text"], got["text"], got["model_version"]) == \
        ("corrected", "8XY0999", "8XYO999", "alpr-us-0.9.0+site1")
    res = run("reads", "confirm", reads[2].read_id, "--text", "6DEF456", *case, token="bob")
    assert res.exit_code == 1 and "may not search plate reads" in res.output
    res = run("reads", "confirm", reads[2].read_id, "--text", "6DEF456", token="otto")
    assert res.exit_code == 1 and "purpose is required" in res.output
    res = run("models", "export-labels", str(tmp_path / "out"), token="otto")
    assert res.exit_code == 1 and "may not adapt the recognition models" in res.output
    res = run("models", "export-labels", str(tmp_path / "out"), "--json", token="ada")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["examples"] == 2
    res = run("models", "export-labels", str(tmp_path / "out2"), token="ada")     # in words: fields, a date
    lines = res.output.splitlines()
    assert lines[:3] == [f"wrote      2 labelled crop(s) to {tmp_path / 'out2'}", "by source  search-confirmed 1, search-corrected 1",
                         "left out   0 read(s) whose labels disagree"], res.output
    assert re.fullmatch(r"ALPR information: keep the folder private and delete it by \d{4}-\d\d-\d\d", lines[3])
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        assert [r["text"] for r in csv.DictReader(fh)] == ["7ABC123", "8XYO999"]
    res = run("audit", "log", "--json", token="ada")
    actions = [json.loads(line)["action"] for line in res.output.splitlines()]
    assert actions.count("read-label") == 2 and "labels-export" in actions


def test_cli_models_adapt_takes_a_folder_or_central_s_set(cli):
    pytest.importorskip("tensorflow", reason="models adapt checks for TensorFlow (the train extra) first")
    tmp_path, run, reads = cli
    from models.bundle import init_signing_key
    init_signing_key(str(tmp_path / "k.pem"), str(tmp_path / "k.pub"))
    args = ["--out", str(tmp_path / "bundle"), "--signing-key", str(tmp_path / "k.pem")]
    res = run("models", "adapt", *args, token="ada")
    assert res.exit_code == 2 and "either a LABELLED folder or --from-central" in res.output
    res = run("models", "adapt", "--from-central", *args, token="ada")
    assert res.exit_code == 1 and "central's labelled set is empty" in res.output, res.output
    assert not (tmp_path / "bundle").exists()
    res = run("audit", "log", "--json", token="ada")
    [export] = [json.loads(line) for line in res.output.splitlines() if json.loads(line)["action"] == "labels-export"]
    assert export["result_count"] == 0


@pytest.mark.train
def test_models_adapt_from_central_trains_on_confirmed_reads_and_leaves_no_copy(cli, monkeypatch):
    """The real source end to end (tiny step count, as test_adapt's end-to-end test): reads at
    central, corrected by an operator, become the set ``models adapt --from-central`` trains on;
    the private copy is gone afterwards."""
    pytest.importorskip("tensorflow", reason="models adapt needs the train extra (TensorFlow); never installed in CI")
    from models.bundle import init_signing_key, load_public_key, verify_bundle
    from models.synth.plates import render_plate
    tmp_path, run, _reads = cli
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)   # re-read TMPDIR
    store = run.open_store()
    rng = np.random.default_rng(4)
    site = []
    for p in range(12):   # the site's plates show a letter O its people type as 0 (as us-crops does)
        text = f"{p % 10}O{'ABCDEFGHJKLM'[p]}O{p % 10}{(p * 7) % 10}"
        for k in range(2):
            img, label = render_plate(rng, text, hershey_only=True)
            r = PlateRead(new_read_id(), "cam-a", "lane-1", T0 + dt.timedelta(minutes=p * 2 + k), label, 0.9,
                          (1, 2, 3, 4), crop_jpeg=cv2.imencode(".jpg", img)[1].tobytes(), model_version="alpr-us-0.9.0")
            store.add_reads([r], r.captured_at)
            site.append((r.read_id, label.replace("O", "0")))
    store.close()
    case = ["--purpose", "stolen-vehicle", "--case", "26-0042"]
    for read_id, text in site:
        assert run("reads", "confirm", read_id, "--text", text, *case, token="otto").exit_code == 0
    init_signing_key(str(tmp_path / "k.pem"), str(tmp_path / "k.pub"))
    out = tmp_path / "bundle"
    res = run("models", "adapt", "--from-central", "--out", str(out), "--signing-key", str(tmp_path / "k.pem"),
              "--steps", "20", "--batch", "8", "--lr", "1e-3", "--checks", "2", "--heldout-size", "20",
              "--synthetic-pool", "40", "--held-back", "0.3", "--tolerance", "100", "--version", "0.9.0+central",
              "--json", token="ada")
    doc = json.loads(res.stdout)
    assert doc["held_back_crops"] + doc["train_crops"] == 24, doc    # the 24 confirmed reads (no conflicts)
    assert res.exit_code == 0, res.output
    man = verify_bundle(out, load_public_key(tmp_path / "k.pub"))
    assert man["version"] == "0.9.0+central" and not any(t in json.dumps(man) for _r, t in site)
    assert [f for f in os.listdir(tmp) if f.startswith("alpr-labels-")] == []   # the private copy is gone
    res = run("audit", "log", "--json", token="ada")
    entries = [json.loads(line) for line in res.output.splitlines()]
    actions = [e["action"] for e in entries]
    assert actions.index("labels-export") < actions.index("models-adapt") < actions.index("models-adapt-bundle")
    [export] = [e for e in entries if e["action"] == "labels-export"]
    assert export["result_count"] == 24 and export["detail"]["by_source"]["search-corrected"] == 24
