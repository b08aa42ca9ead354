"""Matching and hits on a real SQLite store: exact, alternate and confusable
matches, one hit per pass, expired entries, the verification workflow by role
and order, labelled misread examples, retention, the event stream, and the
migration of the old minimal hotlist."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import threading

import pytest

from central.config import Hotlist, Retention
from central.errors import PermissionDenied, PolicyError
from central.governance.audit import verify
from central.governance.retention import Governor
from central.hotlist.csvimport import EntryInput
from central.hotlist.hits import HitBook
from central.hotlist.lists import Hotlists
from central.hotlist.matcher import Matcher
from central.store.migrations import MIGRATIONS
from central.store.sqlite import SQLiteStore
from edge_agent.wire import Alternate, PlateRead, new_read_id
from test_governance_support import T0, world  # noqa: F401

DAY = dt.timedelta(days=1)
SEC = dt.timedelta(seconds=1)
CFG = Hotlist(categories=(("stolen-vehicle", 365), ("missing-person", 30)), dedupe_seconds=300)


@pytest.fixture
def env(world):
    lists = Hotlists(world.conn, CFG, clock=world.clock)
    lists.create(world.admin, "svs", "stolen-vehicle")
    matcher = Matcher(world.database, CFG, clock=world.clock)
    yield world, lists, matcher, HitBook(world.conn, clock=world.clock)
    matcher.close()


def put(lists, world, plate, *, days=10, list_name="svs"):
    return lists.add(world.admin, list_name, EntryInput(plate, "stolen", "LAPD", "V-1", T0 + days * DAY))


def read(world, plate, at=T0, *, camera="lane-1", device="cam-a", alternates=()):
    r = PlateRead(new_read_id(), device, camera, at, plate, 0.9, (1, 2, 3, 4),
                  alternates=tuple(Alternate(a, 0.5) for a in alternates), crop_jpeg=b"\xff\xd8crop" + plate.encode())
    world.store.add_reads([r], at)
    return r


def test_listed_plate_raises_exactly_one_hit_per_pass_with_its_crop(env):
    world, lists, matcher, book = env
    e = put(lists, world, "7ABC123")
    first = read(world, "7ABC123")
    for i in range(1, 4):                        # the same vehicle re-read during its pass
        read(world, "7ABC123", T0 + i * 5 * SEC)
    read(world, "7ABC123", T0 + 10 * SEC, camera="lane-2")   # another camera: another hit
    read(world, "8XYZ999")                                   # not listed
    ids = matcher.match_pending()
    assert len(ids) == 2 and matcher.counters["same_pass"] == 3
    hit = book.get(world.operator, ids[0])
    assert (hit.read_id, hit.entry_id, hit.match_kind, hit.list_name, hit.list_version, hit.category) == \
        (first.read_id, e.entry_id, "exact", "svs", 1, "stolen-vehicle")
    assert hit.crop_jpeg == first.crop_jpeg and hit.captured_at == T0 and hit.hit_at == T0
    assert hit.status == "unverified" and not hit.possible and hit.entry["source_ref"] == "V-1"
    read(world, "7ABC123", T0 + 400 * SEC)       # a later pass
    assert len(matcher.match_pending()) == 1
    assert matcher.match_pending() == []         # nothing new


def test_expired_or_removed_entry_raises_nothing_at_once(env):
    world, lists, matcher, book = env
    gone = put(lists, world, "EXP1111", days=1)
    removed = put(lists, world, "REM2222")
    lists.remove(world.admin, removed.entry_id, reason="recovered", expire=True)
    world.clock.now = T0 + DAY + SEC            # gone's expiry just passed
    read(world, "EXP1111", world.clock.now)
    read(world, "REM2222", world.clock.now)
    assert matcher.match_pending() == [] and book.after(world.operator) == []
    assert gone.expires_at < world.clock.now


def test_confusable_and_alternate_reads_raise_possible_hits(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    put(lists, world, "5OS1234")
    put(lists, world, "8XYZ999")
    conf = read(world, "7A8C123")                                   # B read as 8
    alt = read(world, "5QS1234", camera="lane-2", alternates=("5OS1234",))
    other = read(world, "9ZZZ000", camera="lane-3", alternates=("8XYZ999",))
    read(world, "7ABC124", camera="lane-4")                         # differs in a real character
    hits = {h.read_id: h for h in book.after(world.operator)} if matcher.match_pending() else {}
    assert set(hits) == {conf.read_id, alt.read_id, other.read_id}
    assert hits[conf.read_id].match_kind == "confusable" and hits[conf.read_id].possible
    assert hits[alt.read_id].match_kind == "alternate" and hits[alt.read_id].matched_text == "5OS1234"
    assert hits[other.read_id].match_kind == "alternate"


def test_matching_resumes_from_the_durable_cursor(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    read(world, "7ABC123")
    restarted = Matcher(world.database, CFG, clock=world.clock)  # never saw the read; another process
    try:
        assert len(restarted.match_pending()) == 1
    finally:
        restarted.close()
    assert matcher.match_pending() == []  # the same read, matched again, raises no second hit
    assert len(book.after(world.operator)) == 1


def verified_hit(env, plate="7ABC123"):
    world, lists, matcher, book = env
    put(lists, world, plate)
    read(world, plate)
    [hit_id] = matcher.match_pending()
    return hit_id


def test_verification_order_and_roles(env):
    world, lists, matcher, book = env
    hit_id = verified_hit(env)
    for user in (world.admin, world.auditor, world.tech, world.business):
        with pytest.raises(PermissionDenied):
            book.check_image(user, hit_id, shows_plate=True)
        with pytest.raises(PermissionDenied):
            book.dispose(user, hit_id, "no-action")
    for user in (world.admin, world.tech, world.business):
        with pytest.raises(PermissionDenied):
            book.get(user, hit_id)
        with pytest.raises(PermissionDenied):
            book.list(user)
    with pytest.raises(PolicyError, match="not actionable"):
        book.dispose(world.operator, hit_id, "dispatched")
    with pytest.raises(PolicyError, match="visual check .* before the source check"):
        book.check_source(world.operator, hit_id, current=True)
    world.clock.now = T0 + 30 * SEC
    h = book.check_image(world.operator, hit_id, shows_plate=True)
    assert (h.status, h.visual_by, h.visual_at) == ("image-confirmed", "otto", T0 + 30 * SEC)
    with pytest.raises(PolicyError, match="recorded already"):
        book.check_image(world.supervisor, hit_id, shows_plate=True)
    with pytest.raises(PolicyError, match="not actionable"):
        book.dispose(world.operator, hit_id, "dispatched")
    world.clock.now = T0 + 60 * SEC
    h = book.check_source(world.supervisor, hit_id, current=True, note="NCIC query 12:01")
    assert h.actionable and h.status == "actionable" and h.source_by == "sue"
    with pytest.raises(PolicyError, match="misread"):
        book.dispose(world.operator, hit_id, "misread")
    h = book.dispose(world.operator, hit_id, "dispatched")
    assert (h.status, h.disposition_by) == ("dispatched", "otto")
    with pytest.raises(PolicyError, match="closed"):
        book.dispose(world.operator, hit_id, "no-action")
    steps = [(e.action, e.user, e.detail.get("hit")) for e in book.log.entries() if e.action.startswith("hit-")
             and e.action != "hit-view"]
    assert steps == [("hit-visual-check", "otto", hit_id), ("hit-source-check", "sue", hit_id),
                     ("hit-disposition", "otto", hit_id)]
    assert "7ABC123" not in repr([e.detail for e in book.log.entries()])
    assert verify(world.conn).ok


def test_stale_entry_path(env):
    world, lists, matcher, book = env
    hit_id = verified_hit(env)
    book.check_image(world.operator, hit_id, shows_plate=True)
    book.check_source(world.operator, hit_id, current=False)
    with pytest.raises(PolicyError, match="not actionable"):
        book.dispose(world.operator, hit_id, "dispatched")
    with pytest.raises(PolicyError, match="no longer wanted"):
        book.dispose(world.operator, hit_id, "no-action")
    assert book.dispose(world.operator, hit_id, "stale-entry").status == "stale-entry"


def test_misread_keeps_a_labelled_example(env):
    world, lists, matcher, book = env
    hit_id = verified_hit(env)
    with pytest.raises(PolicyError, match="needs the text"):
        book.check_image(world.operator, hit_id, shows_plate=False)
    h = book.check_image(world.operator, hit_id, shows_plate=False, true_text="7ABC128")
    assert h.status == "misread" and h.visual_text == "7ABC128"
    with pytest.raises(PolicyError, match="misread"):
        book.check_source(world.operator, hit_id, current=True)
    with pytest.raises(PolicyError, match="misread"):
        book.dispose(world.operator, hit_id, "no-action")
    book.dispose(world.operator, hit_id, "misread")
    crop, read_text, true_text, by = world.conn.execute(
        "SELECT crop, read_text, true_text, labelled_by FROM labelled_examples").fetchone()
    assert (crop, read_text, true_text, by) == (b"\xff\xd8crop7ABC123", "7ABC123", "7ABC128", "otto")


def test_retention_of_hits_examples_and_entries(env):
    world, lists, matcher, book = env
    hit_id = verified_hit(env)
    book.check_image(world.operator, hit_id, shows_plate=False, true_text="7ABC128")
    gov = Governor(world.conn, Retention(hit_days=100, non_hit_days=50, labelled_example_days=60, hotlist_days=20),
                   clock=world.clock)
    world.clock.now = T0 + 40 * DAY        # the entry expired 30 days ago (> 20): purged; the hit read stays
    result = gov.purge(world.admin)
    assert result.counts["hotlist"] == 1 and result.counts["hits"] == 0
    assert book.get(world.operator, hit_id).entry["plate"] == "7ABC123"   # the hit keeps the entry's fields
    world.clock.now = T0 + 61 * DAY
    assert gov.purge(world.admin).counts["labelled_examples"] == 1
    assert book.get(world.operator, hit_id).read_plate == "7ABC123"      # a hit read: kept 100 days, not 50
    world.clock.now = T0 + 101 * DAY
    counts = gov.purge(world.admin).counts
    assert counts["hit_reads"] == 1 and counts["hits"] == 1
    assert world.conn.execute("SELECT count(*) FROM hits").fetchone()[0] == 0


def test_event_stream_yields_hits_after_an_id(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    put(lists, world, "8XYZ999")
    read(world, "7ABC123")
    [first] = matcher.match_pending()
    stop = threading.Event()
    events = book.sse(world.operator, str(first), stop, poll=0.05)
    assert next(events) == "retry: 2000\n\n"
    read(world, "8XYZ999")
    [second] = matcher.match_pending()
    chunk = next(events)
    stop.set()
    lines = chunk.splitlines()
    assert lines[0] == f"id: {second}" and lines[1] == "event: hit"
    data = json.loads(lines[2][len("data: "):])
    assert data["hit_id"] == second and data["entry"]["plate"] == "8XYZ999" and "crop_jpeg_base64" not in data
    for user in (world.business, world.admin, world.tech):
        with pytest.raises(PermissionDenied):
            book.sse(user, None, stop)
    assert [e.action for e in book.log.entries(action="hits-watch")] == ["hits-watch"]


def test_old_minimal_hotlist_rows_migrate(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in MIGRATIONS:
        if name.startswith("03"):
            break
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO _migrations VALUES (?, '2026-01-01T00:00:00.000000Z')", [name])
    conn.execute("INSERT INTO hotlist (plate, source, added_at, expires_at, added_by) VALUES "
                 "('7ABC123', 'NCIC', '2026-08-01T00:00:00.000000Z', '2026-09-01T00:00:00.000000Z', 'ada')")
    conn.close()
    store = SQLiteStore(path)
    try:
        row = store.db.execute("SELECT l.name, e.plate, e.plate_folded, e.source_agency, e.expires_at, "
                               "e.added_version FROM hotlist_entries e JOIN hotlists l USING (list_id)").fetchone()
        assert row == ("legacy", "7ABC123", "7A8C123", "NCIC", "2026-09-01T00:00:00.000000Z", 1)
        assert not store.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'hotlist'").fetchone()
        matcher = Matcher(path, CFG, clock=lambda: T0)
        r = PlateRead(new_read_id(), "cam-a", "lane-1", T0, "7ABC123", 0.9, (1, 2, 3, 4))
        store.add_reads([r], T0)
        assert len(matcher.match_pending()) == 1  # migrated entries match
        matcher.close()
    finally:
        store.close()


def test_transparency_report_counts_hits_by_category_and_disposition(env, tmp_path):
    from central.config import CentralConfig
    from central.governance.report import build, parse_period, render_html
    world, lists, matcher, book = env
    lists.create(world.admin, "amber", "missing-person")
    put(lists, world, "7ABC123")
    put(lists, world, "8XYZ999")
    put(lists, world, "AMBER01", list_name="amber")
    for plate in ("7ABC123", "8XYZ999", "AMBER01"):
        read(world, plate)
    a, b, c = matcher.match_pending()
    book.check_image(world.operator, a, shows_plate=False, true_text="7ABC128")
    book.dispose(world.operator, a, "misread")
    book.check_image(world.operator, b, shows_plate=True)
    book.check_source(world.operator, b, current=True)
    book.dispose(world.operator, b, "dispatched")
    start, end = parse_period("2026-Q3")
    data = build(world.conn, CentralConfig(str(tmp_path)), world.auditor, "2026-Q3", start, end, now=T0)
    assert data["hits"] == 3
    assert data["hits_by_category"] == [{"category": "missing-person", "hits": 1},
                                        {"category": "stolen-vehicle", "hits": 2}]
    assert data["hits_by_disposition"] == [{"disposition": "dispatched", "hits": 1},
                                           {"disposition": "misread", "hits": 1}, {"disposition": "open", "hits": 1}]
    assert (data["hits_visually_checked"], data["hits_misread"], data["misread_rate"]) == (2, 1, 0.5)
    page = render_html(data)
    assert "50.0% of 2 checked hits" in page and "7ABC123" not in page


def test_open_stream_ends_when_its_user_is_disabled(env):
    world, lists, matcher, book = env
    book.RECHECK_SECONDS = 0.0
    put(lists, world, "7ABC123")
    stop = threading.Event()
    hits = book.follow(world.operator, 0, stop, poll=0.01)
    read(world, "7ABC123")
    matcher.match_pending()
    assert next(hits).entry["plate"] == "7ABC123"
    world.users.set_disabled(world.admin, "otto", True)
    with pytest.raises(StopIteration):
        next(hits)
    stop.set()


def test_webhook_redirect_is_a_failed_attempt_not_followed(env, tmp_path):
    import http.server

    from central.config import Webhook
    from central.hotlist.webhooks import Sender, write_secret
    world, lists, matcher, book = env
    got = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302 if self.path == "/hits" else 204)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        write_secret(tmp_path / "s.secret")
        hook = Webhook("cad", f"http://127.0.0.1:{server.server_address[1]}/hits", str(tmp_path / "s.secret"),
                       max_attempts=2)
        matcher.cfg = Hotlist(categories=CFG.categories, webhooks=(hook,))
        hit_id = verified_hit(env)
        sender = Sender(world.database, hook, clock=world.clock)
        [(delivery_id, hit, attempts)] = sender.due()
        assert hit == hit_id and not sender.deliver(delivery_id, hit, attempts)
        assert got == ["/hits"]
        assert world.conn.execute("SELECT status_code, error FROM webhook_attempts").fetchall() == [(302, "HTTP 302")]
        world.clock.now = T0 + 60 * SEC
        [(delivery_id, hit, attempts)] = sender.due()
        sender.deliver(delivery_id, hit, attempts)
        assert world.conn.execute("SELECT status, attempts FROM webhook_deliveries").fetchone() == ("failed", 2)
        sender.conn.close()
    finally:
        server.shutdown()
        server.server_close()


def test_two_senders_never_take_the_same_delivery(env, tmp_path):
    from central.config import Webhook
    from central.hotlist.webhooks import Sender, write_secret
    world, lists, matcher, book = env
    write_secret(tmp_path / "s.secret")
    hook = Webhook("cad", "http://127.0.0.1:9/hits", str(tmp_path / "s.secret"))
    matcher.cfg = Hotlist(categories=CFG.categories, webhooks=(hook,))
    verified_hit(env)
    a, b = (Sender(world.database, hook, clock=world.clock) for _ in range(2))
    try:
        assert len(a.due()) == 1 and b.due() == []
        world.clock.now = T0 + dt.timedelta(minutes=5)   # the lease ran out (the first sender died)
        assert len(b.due()) == 1
    finally:
        a.conn.close()
        b.conn.close()


# -- a later, better read of the same pass ---------------------------------------
def upgrades(world):
    return world.conn.execute("SELECT hit_id, applied, read_id, previous_read_id FROM hit_upgrades "
                              "ORDER BY upgrade_id").fetchall()


@pytest.mark.parametrize("rounds", ["one round", "two rounds"])
def test_a_better_read_of_the_pass_upgrades_the_unchecked_hit(env, rounds):
    world, lists, matcher, book = env
    e = put(lists, world, "7ABC123")
    first = read(world, "7A8C123")                                  # B read as 8: a possible hit
    if rounds == "two rounds":
        [hit_id] = matcher.match_pending()
        assert book.get(world.operator, hit_id).match_kind == "confusable"
    world.clock.now = T0 + 20 * SEC
    better = read(world, "7ABC123", T0 + 10 * SEC)                  # the same car, read right
    raised = matcher.match_pending()
    [hit] = book.after(world.operator)                              # still one hit for the pass
    assert raised == [hit.hit_id]
    assert (hit.entry_id, hit.match_kind, hit.read_id, hit.matched_text, hit.captured_at) == \
        (e.entry_id, "exact", better.read_id, "7ABC123", T0 + 10 * SEC)
    shown = book.get(world.operator, hit.hit_id)
    assert shown.crop_jpeg == better.crop_jpeg and not shown.possible
    assert shown.hit_at == (T0 if rounds == "two rounds" else T0 + 20 * SEC)   # when it was first raised
    [u] = shown.upgrades
    assert (u["applied"], u["read_id"], u["match_kind"], u["previous_read_id"], u["previous_kind"]) == \
        (True, better.read_id, "exact", first.read_id, "confusable")
    read(world, "7A8C123", T0 + 30 * SEC)                           # a worse read later: the same pass
    assert matcher.match_pending() == []
    world.conn.execute("UPDATE hotlist_matcher SET last_rowid = 0")  # every read matched again (a lost cursor)
    again = Matcher(world.database, CFG, clock=world.clock)
    try:
        assert again.match_pending() == []
    finally:
        again.close()
    assert len(book.after(world.operator)) == 1 and len(upgrades(world)) == 1


def test_a_better_read_after_the_visual_check_is_noted_and_the_checked_hit_kept(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    first = read(world, "7A8C123")
    [hit_id] = matcher.match_pending()
    book.check_image(world.operator, hit_id, shows_plate=True, seen_read_id=first.read_id)
    better = read(world, "7ABC123", T0 + 10 * SEC)
    assert matcher.match_pending() == []
    hit = book.get(world.operator, hit_id)
    assert (hit.read_id, hit.match_kind, hit.crop_jpeg, hit.visual) == \
        (first.read_id, "confusable", first.crop_jpeg, "yes")       # what the operator checked
    [u] = hit.upgrades
    assert (u["applied"], u["read_id"], u["match_kind"]) == (False, better.read_id, "exact")
    assert len(book.after(world.operator)) == 1


def test_a_better_read_after_a_misread_raises_a_new_hit(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    read(world, "7A8C123")
    [first] = matcher.match_pending()
    book.check_image(world.operator, first, shows_plate=False, true_text="7A8C123")  # the image shows another plate
    read(world, "7A8C123", T0 + 5 * SEC)                            # that plate again: the same misread
    assert matcher.match_pending() == []
    better = read(world, "7ABC123", T0 + 10 * SEC)                  # the listed plate itself, in the same pass
    [second] = matcher.match_pending()
    assert second != first
    hit = book.get(world.operator, second)
    assert (hit.read_id, hit.match_kind, hit.status) == (better.read_id, "exact", "unverified")
    assert upgrades(world) == []


def test_the_visual_check_is_refused_for_an_image_the_hit_no_longer_shows(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    first = read(world, "7A8C123")
    [hit_id] = matcher.match_pending()                              # the operator opens it: the first image
    better = read(world, "7ABC123", T0 + 10 * SEC)
    matcher.match_pending()                                         # meanwhile: upgraded to the better read
    with pytest.raises(PolicyError, match="better read"):
        book.check_image(world.operator, hit_id, shows_plate=True, seen_read_id=first.read_id)
    assert book.get(world.operator, hit_id).visual is None
    hit = book.check_image(world.operator, hit_id, shows_plate=True, seen_read_id=better.read_id)
    assert hit.visual == "yes" and hit.read_id == better.read_id


def test_hit_upgrades_go_with_their_hit_when_it_is_purged(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    read(world, "7A8C123")
    read(world, "7ABC123", T0 + 10 * SEC)
    [hit_id] = matcher.match_pending()
    assert len(upgrades(world)) == 1
    world.conn.execute("DELETE FROM hits WHERE hit_id = ?", [hit_id])  # as the retention purge does
    assert upgrades(world) == []


def test_event_stream_announces_an_upgrade_of_a_hit_it_sent(env):
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    read(world, "7A8C123")                                          # a possible (confusable) hit
    stop = threading.Event()
    events = book.sse(world.operator, None, stop, poll=0.05)
    assert next(events) == "retry: 2000\n\n"
    [hit_id] = matcher.match_pending()
    sent = next(events)
    assert sent.startswith(f"id: {hit_id}\nevent: hit\n") and '"match_kind": "confusable"' in sent
    better = read(world, "7ABC123", T0 + 10 * SEC)
    assert matcher.match_pending() == [hit_id]
    chunk = next(events)
    stop.set()
    lines = chunk.splitlines()
    assert lines[0] == "event: hit-upgraded" and not any(x.startswith("id:") for x in lines)  # Last-Event-ID kept
    data = json.loads(lines[1][len("data: "):])
    assert (data["hit_id"], data["match_kind"], data["read_id"], data["possible"]) == \
        (hit_id, "exact", better.read_id, False)


def test_a_read_a_hit_moved_away_from_is_kept_as_a_hit_read(env):
    """After an upgrade the hit shows the better read; the read it was raised
    on (a confusable one, whose plate is on no list) is still part of that
    hit's record and keeps the hit retention, not the shorter non-hit one."""
    world, lists, matcher, book = env
    put(lists, world, "7ABC123")
    first = read(world, "7A8C123")
    matcher.match_pending()
    world.clock.now = T0 + 20 * SEC
    better = read(world, "7ABC123", T0 + 10 * SEC)
    matcher.match_pending()
    assert [(u[2], u[3]) for u in upgrades(world)] == [(better.read_id, first.read_id)]
    gov = Governor(world.conn, Retention(hit_days=100, non_hit_days=50), clock=world.clock)
    world.clock.now = T0 + 60 * DAY
    result = gov.purge(world.admin)
    assert result.counts["non_hit_reads"] == 0 and result.counts["hit_reads"] == 0
    for r in (first, better):
        assert world.conn.execute("SELECT count(*) FROM reads WHERE read_id = ?", [r.read_id]).fetchone()[0] == 1
    world.clock.now = T0 + 101 * DAY
    assert gov.purge(world.admin).counts["hit_reads"] == 2


# -- webhooks of upgrades: a real receiver on loopback ------------------------------
class Receiver:
    """A loopback HTTP receiver answering each POST with the next of ``codes`` (then 204)."""

    def __init__(self, codes=()):
        import http.server
        self.requests, self.codes = [], list(codes)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                owner.requests.append((self.headers, self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(owner.codes.pop(0) if owner.codes else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hits"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooked(env, tmp_path):
    """``env`` with one webhook receiver ('cad') on loopback and its sender."""
    from central.config import Webhook
    from central.hotlist.webhooks import Sender, write_secret
    world, lists, matcher, book = env
    receiver = Receiver()
    secret = write_secret(tmp_path / "cad.secret")
    hook = Webhook("cad", receiver.url, str(tmp_path / "cad.secret"), retry_seconds=2.0)
    matcher.cfg = Hotlist(categories=CFG.categories, dedupe_seconds=300, webhooks=(hook,))
    sender = Sender(world.database, hook, clock=world.clock)
    yield env, receiver, secret, sender
    sender.conn.close()
    receiver.close()


def send_due(sender):
    """Send every delivery due now; returns how many were sent (whatever the answer)."""
    due = sender.due()
    for delivery_id, hit_id, attempts in due:
        sender.deliver(delivery_id, hit_id, attempts)
    return len(due)


def received(receiver, secret, i):
    from central.hotlist.webhooks import verify_signature
    headers, body = receiver.requests[i]
    assert verify_signature(secret, headers["X-ALPR-Timestamp"], body, headers["X-ALPR-Signature"])
    doc = json.loads(body)
    assert headers["X-ALPR-Delivery"] == str(doc["delivery_id"])
    return headers["X-ALPR-Event"], doc


def test_a_receiver_learns_that_its_hit_moved_to_a_better_read(hooked):
    (world, lists, matcher, book), receiver, secret, sender = hooked
    e = put(lists, world, "7ABC123")
    first = read(world, "7A8C123")                                  # a possible (confusable) hit
    [hit_id] = matcher.match_pending()
    assert send_due(sender) == 1
    event, sent = received(receiver, secret, 0)
    assert (event, sent["type"], sent["match_kind"], sent["read_id"]) == ("hit", "hit", "confusable", first.read_id)
    better = read(world, "7ABC123", T0 + 10 * SEC)                  # the same car, read right
    assert matcher.match_pending() == [hit_id]
    assert send_due(sender) == 1
    event, up = received(receiver, secret, 1)
    assert event == up["type"] == "hit-upgraded" and up["applied"] is True
    assert up["delivery_id"] != sent["delivery_id"]                 # its own idempotency key
    assert (up["hit_id"], up["upgrade_id"]) == (hit_id, world.conn.execute(
        "SELECT upgrade_id FROM hit_upgrades").fetchone()[0])
    assert up["previous_read"] == {"read_id": first.read_id, "match_kind": "confusable", "matched_text": "7A8C123",
                                   "captured_at": T0.isoformat()}
    assert up["better_read"] == {"read_id": better.read_id, "match_kind": "exact", "matched_text": "7ABC123",
                                 "captured_at": (T0 + 10 * SEC).isoformat()}
    # the hit as it is now, in the hit payload's own schema: the better read and its crop
    assert up["hit"] == {**book.payload(hit_id), "type": "hit"}
    assert (up["hit"]["read_id"], up["hit"]["match_kind"], up["hit"]["entry"]["entry_id"]) == \
        (better.read_id, "exact", e.entry_id)
    assert base64.b64decode(up["hit"]["read"]["crop_jpeg_base64"]) == better.crop_jpeg
    # nothing the hit payload does not carry: the same keys, plus the upgrade's own
    assert set(up) == {"type", "upgrade_id", "hit_id", "applied", "upgraded_at", "better_read", "previous_read",
                       "hit", "notice", "delivery_id"}
    assert send_due(sender) == 0 and len(receiver.requests) == 2   # each sent once
    world.conn.execute("UPDATE hotlist_matcher SET last_rowid = 0")  # a re-run queues nothing again
    again = Matcher(world.database, matcher.cfg, clock=world.clock)
    try:
        assert again.match_pending() == []
    finally:
        again.close()
    assert send_due(sender) == 0
    from central.hotlist.webhooks import deliveries
    shown = deliveries(world.conn, world.operator, hit_id)
    assert [(d["event"], d["status"]) for d in shown] == [("hit", "delivered"), ("hit-upgraded", "delivered")]


def test_a_better_read_noted_on_a_checked_hit_is_sent_and_the_checked_hit_kept(hooked):
    (world, lists, matcher, book), receiver, secret, sender = hooked
    put(lists, world, "7ABC123")
    first = read(world, "7A8C123")
    [hit_id] = matcher.match_pending()
    send_due(sender)
    book.check_image(world.operator, hit_id, shows_plate=True, seen_read_id=first.read_id)
    better = read(world, "7ABC123", T0 + 10 * SEC)
    assert matcher.match_pending() == []                            # no hit raised or moved
    assert send_due(sender) == 1
    event, noted = received(receiver, secret, 1)
    assert event == noted["type"] == "hit-better-read-noted" and noted["applied"] is False
    assert noted["better_read"]["read_id"] == better.read_id and noted["better_read"]["match_kind"] == "exact"
    assert (noted["hit"]["read_id"], noted["hit"]["match_kind"], noted["hit"]["status"]) == \
        (first.read_id, "confusable", "image-confirmed")             # what the operator checked
    assert base64.b64decode(noted["hit"]["read"]["crop_jpeg_base64"]) == first.crop_jpeg


def test_an_upgrade_waits_for_the_hits_delivery_and_is_retried_like_it(hooked):
    (world, lists, matcher, book), receiver, secret, sender = hooked
    put(lists, world, "7ABC123")
    receiver.codes = [500, 204, 503]              # the hit fails once, then its upgrade fails once
    read(world, "7A8C123")
    [hit_id] = matcher.match_pending()
    assert send_due(sender) == 1                  # the hit: 500, pending a retry
    better = read(world, "7ABC123", T0 + 10 * SEC)
    matcher.match_pending()                       # upgraded while the hit's delivery is pending
    assert sender.due() == [] and sender.next_due() == T0 + 2 * SEC   # only the hit's retry is due
    world.clock.now = T0 + 3 * SEC
    assert send_due(sender) == 1                  # the hit again: delivered, and it shows the better read now
    event, sent = received(receiver, secret, 1)
    assert (event, sent["read_id"]) == ("hit", better.read_id)
    assert send_due(sender) == 1                  # then the upgrade: 503
    event, up = received(receiver, secret, 2)
    assert event == "hit-upgraded"
    world.clock.now = T0 + 10 * SEC
    assert send_due(sender) == 1                  # retried with the same delivery id: 204
    event, again = received(receiver, secret, 3)
    assert again == up
    rows = world.conn.execute("SELECT d.upgrade_id IS NULL, a.attempt, a.status_code FROM webhook_attempts a "
                              "JOIN webhook_deliveries d USING (delivery_id) ORDER BY d.delivery_id, a.attempt"
                              ).fetchall()
    assert [tuple(r) for r in rows] == [(True, 1, 500), (True, 2, 204), (False, 1, 503), (False, 2, 204)]


def test_upgrades_of_a_hit_not_sent_to_a_receiver_are_not_sent_to_it(hooked):
    (world, lists, matcher, book), receiver, secret, sender = hooked
    lists.create(world.admin, "amber", "missing-person")
    put(lists, world, "7ABC123", list_name="amber")
    from central.config import Webhook
    hook = matcher.cfg.webhooks[0]
    matcher.cfg = Hotlist(categories=CFG.categories, webhooks=(Webhook(hook.name, hook.url, hook.secret_file,
                                                                       categories=("stolen-vehicle",)),))
    read(world, "7A8C123")
    read(world, "7ABC123", T0 + 10 * SEC)
    [hit_id] = matcher.match_pending()
    assert world.conn.execute("SELECT count(*) FROM hit_upgrades").fetchone()[0] == 1
    assert world.conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0] == 0


def test_webhook_deliveries_and_attempts_survive_migration_0800(tmp_path):
    """SQLite rebuilds both tables (to drop UNIQUE (hit_id, endpoint)): the rows
    and attempts are kept, attempts still go with their delivery, a hit still
    gets one delivery per receiver and each of its upgrades one more."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, sql in MIGRATIONS:
        if name.startswith("08"):
            break
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO _migrations VALUES (?, '2026-01-01T00:00:00.000000Z')", [name])
    conn.execute("INSERT INTO webhook_deliveries VALUES (7, 3, 'cad', 'delivered', 2, 'n', 'c')")
    conn.execute("INSERT INTO webhook_attempts VALUES (7, 1, 'a1', 500, 'HTTP 500', 0.1)")
    conn.execute("INSERT INTO webhook_attempts VALUES (7, 2, 'a2', 204, '', 0.1)")
    conn.close()
    store = SQLiteStore(path)
    try:
        db = store.db.conn
        assert db.execute("SELECT * FROM webhook_deliveries").fetchall() == [
            (7, 3, "cad", "delivered", 2, "n", "c", None)]
        assert db.execute("SELECT count(*) FROM webhook_attempts").fetchone()[0] == 2
        db.execute("INSERT OR IGNORE INTO webhook_deliveries (hit_id, endpoint, status, next_at, created_at) "
                   "VALUES (3, 'cad', 'pending', 'n', 'c')")                       # the hit again: ignored
        for _ in range(2):
            db.execute("INSERT OR IGNORE INTO webhook_deliveries (hit_id, endpoint, status, next_at, created_at, "
                       "upgrade_id) VALUES (3, 'cad', 'pending', 'n', 'c', 1)")   # its upgrade: once
        assert db.execute("SELECT delivery_id, upgrade_id FROM webhook_deliveries ORDER BY 1").fetchall() == \
            [(7, None), (8, 1)]
        db.execute("DELETE FROM webhook_deliveries WHERE delivery_id = 7")
        assert db.execute("SELECT count(*) FROM webhook_attempts").fetchone()[0] == 0   # cascade kept
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        store.close()
