"""Retention: per-category purge, hits vs non-hits, legal holds that the
purge never touches, and a record of what was deleted (counts, never plates)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.governance.audit import verify
from central.config import Retention
from central.errors import PermissionDenied, PolicyError
from central.governance.retention import Governor
from test_governance_support import listed, T0, make_world, world  # noqa: F401

DAY = dt.timedelta(days=1)


@pytest.fixture
def gov(world):
    return Governor(world.conn, Retention(non_hit_days=730, hit_days=1000, image_days=30, hotlist_days=10,
                                          access_log_days=1825), clock=world.clock)


def plates(world):
    return sorted(r[0] for r in world.conn.execute("SELECT plate FROM reads"))


def images(world):
    return world.conn.execute("SELECT count(*) FROM read_images").fetchone()[0]


def test_purge_deletes_by_category_and_records_counts_not_plates(world, gov):
    world.add_read("OLD1", T0 - 731 * DAY)            # non-hit past 730 days: goes
    world.add_read("KEEP1", T0 - 729 * DAY)           # non-hit inside: stays, image goes (30 days)
    world.add_read("HIT1", T0 - 800 * DAY)            # hit: kept 1000 days
    world.add_read("HIT2", T0 - 1001 * DAY)           # hit past 1000 days: goes
    world.add_read("NEW1", T0 - 5 * DAY)              # recent: stays with its image
    listed(world, "HIT1", added_at=T0 - 900 * DAY, expires_at=T0 - 700 * DAY)
    listed(world, "HIT2", added_at=T0 - 1100 * DAY, expires_at=T0 - 5 * DAY)
    dry = gov.purge(world.admin, dry_run=True)
    assert plates(world) == ["HIT1", "HIT2", "KEEP1", "NEW1", "OLD1"] and dry.dry_run
    result = gov.purge(world.admin)
    assert plates(world) == ["HIT1", "KEEP1", "NEW1"]
    assert images(world) == 1  # only NEW1's crop is younger than 30 days
    assert result.counts["non_hit_reads"] == 1 and result.counts["hit_reads"] == 1
    assert result.counts["hotlist"] == 1  # HIT1's entry expired 700 days ago (> 10)
    assert {k: dry.counts[k] for k in ("non_hit_reads", "hit_reads", "hotlist")} == \
        {k: result.counts[k] for k in ("non_hit_reads", "hit_reads", "hotlist")}
    [run] = gov.purge_runs()
    entry = gov.log.entries(action="purge")[-1]
    assert run["counts"] == result.counts and entry.detail["counts"] == result.counts
    text = str(run) + str(entry.detail)
    for plate in ("OLD1", "HIT2", "KEEP1"):
        assert plate not in text
    assert verify(world.conn).ok


def test_purge_never_touches_held_reads(world, gov):
    held = world.add_read("CASE1", T0 - 900 * DAY)
    world.add_read("CASE1", T0 - 2000 * DAY)           # outside the hold's range: goes
    world.add_read("OTHER", T0 - 900 * DAY)            # not named by the hold: goes
    hold = gov.request_hold(world.operator, case_number="24-0042", plates=["case1"], since=T0 - 1000 * DAY,
                            until=T0 - 800 * DAY, reason="civil litigation", review_on=(T0 + 90 * DAY).date())
    pending = gov.purge(world.admin, dry_run=True)
    assert pending.held_kept == 0  # a pending hold protects nothing yet
    gov.approve_hold(world.supervisor, hold.hold_id)
    result = gov.purge(world.admin)
    assert plates(world) == ["CASE1"] and result.held_kept == 1
    assert [str(r[0]) for r in world.conn.execute("SELECT read_id FROM read_images")] == [held.read_id]
    gov.release_hold(world.supervisor, hold.hold_id, reason="case closed")
    gov.purge(world.admin)
    assert plates(world) == []


def test_hold_rules(world, gov):
    kw = dict(case_number="24-0042", plates=[], since=T0 - 10 * DAY, until=T0, reason="discovery order",
              review_on=(T0 + 30 * DAY).date())
    with pytest.raises(PermissionDenied):
        gov.request_hold(world.business, **kw)
    with pytest.raises(PolicyError, match="case or incident number"):
        gov.request_hold(world.operator, **{**kw, "case_number": ""})
    with pytest.raises(PolicyError, match="review date must be in the future"):
        gov.request_hold(world.operator, **{**kw, "review_on": T0.date()})
    hold = gov.request_hold(world.supervisor, **kw)
    with pytest.raises(PolicyError, match="other than the requester"):
        gov.approve_hold(world.supervisor, hold.hold_id)       # no self-approval
    with pytest.raises(PermissionDenied):
        gov.approve_hold(world.operator, hold.hold_id)         # operators cannot approve
    active = gov.approve_hold(world.supervisor2, hold.hold_id)
    assert active.status == "active" and not active.review_due(T0.date())
    assert active.review_due((T0 + 31 * DAY).date())           # overdue holds still hold, and are flagged
    with pytest.raises(PolicyError, match="not pending"):
        gov.approve_hold(world.supervisor2, hold.hold_id)
    actions = [e.action for e in gov.log.entries()]
    assert "hold-request" in actions and "hold-approve" in actions


def test_only_admins_purge(world, gov):
    for who in (world.operator, world.supervisor, world.auditor, world.business):
        with pytest.raises(PermissionDenied):
            gov.purge(who)


def test_access_log_retention_keeps_the_chain_verifiable(world, gov):
    world.clock.now = T0 + 1900 * DAY  # everything logged at T0 is past 5 years
    gov.purge(world.admin)
    report = verify(world.conn, now=world.clock.now)
    assert report.ok and report.first_seq > 1
    assert gov.log.entries()[0].action == "log-purged"


@settings(max_examples=30, deadline=None)
@given(age_seconds=st.integers(-86400 * 3, 86400 * 3))
def test_retention_boundary(tmp_path_factory, age_seconds):
    w = make_world(tmp_path_factory.mktemp("r") / "c.sqlite")
    try:
        gov = Governor(w.conn, Retention(non_hit_days=730), clock=w.clock)
        cutoff = T0 - 730 * DAY
        w.add_read("EDGE1", cutoff + dt.timedelta(seconds=age_seconds))
        gov.purge(w.admin)
        assert (plates(w) == []) == (age_seconds < 0)   # strictly older than the period goes
    finally:
        w.store.close()


def test_purged_plates_are_gone_from_every_file_while_the_collector_holds_the_database(tmp_path):
    """The write-ahead log keeps copies of the pages a purge deletes (and free
    pages keep old rows where SQLite is built without secure delete): after a
    purge, no purged plate text is left in the database, its WAL or its
    shared-memory file, with the collector's connection still open."""
    from central.store.sqlite import SQLiteStore
    from central.governance.users import UserDirectory
    from edge_agent.wire import PlateRead, new_read_id

    db = tmp_path / "central.sqlite"
    collector = SQLiteStore(db)
    old = [PlateRead(new_read_id(), "cam-a", "lane-1", T0, f"Q{i:06d}", 0.9, (1, 2, 3, 4)) for i in range(3000)]
    collector.add_reads(old, T0)
    for j in range(50):  # then small commits, as live traffic makes
        collector.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", T0 + dt.timedelta(days=800), f"N{j:05d}",
                                       0.9, (1, 2, 3, 4))], T0)
    purger = SQLiteStore(db)
    try:
        admin, _ = UserDirectory(purger.db.conn).bootstrap("ada", "City PD")
        res = Governor(purger.db.conn, Retention()).purge(admin, now=T0 + dt.timedelta(days=801))
        assert res.counts["non_hit_reads"] == 3000
    finally:
        purger.close()
    try:
        for path in tmp_path.iterdir():
            data = path.read_bytes()
            assert b"Q000" not in data, path.name
        assert collector.db.execute("SELECT count(*) FROM reads").fetchone()[0] == 50
    finally:
        collector.close()


def test_a_purge_does_not_stall_while_an_older_reader_holds_the_database(tmp_path):
    """Emptying the WAL must wait for every reader of an older snapshot (a long
    search, a backup); it used to wait holding the write lock, up to the 30 s busy
    timeout per try, and the collector could store nothing meanwhile. Now it
    gives up at once, tries again briefly, and leaves the WAL to a later purge."""
    import sqlite3
    import time

    from central.store.sqlite import SQLiteStore
    from central.governance.users import UserDirectory
    from edge_agent.wire import PlateRead, new_read_id

    db = tmp_path / "central.sqlite"
    collector = SQLiteStore(db)
    collector.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", T0, "Q000001", 0.9, (1, 2, 3, 4))], T0)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM reads").fetchone()  # holds its snapshot
    collector.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", T0, "Q000002", 0.9, (1, 2, 3, 4))], T0)
    purger = SQLiteStore(db)
    try:
        admin, _ = UserDirectory(purger.db.conn).bootstrap("ada", "City PD")
        started = time.monotonic()
        Governor(purger.db.conn, Retention()).purge(admin, now=T0 + dt.timedelta(days=801))
        assert time.monotonic() - started < 15  # 20 quick tries, not 20 x 30 s of holding the lock
        collector.add_reads([PlateRead(new_read_id(), "cam-a", "lane-1", T0, "Q000003", 0.9, (1, 2, 3, 4))], T0)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
        purger.close()
        collector.close()
