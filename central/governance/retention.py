"""Retention: per-category periods, legal holds, and the purge job.

Categories (config ``[retention]``, days):

- ``non_hit_days``   reads that raised no hit and whose plate was on no hotlist
  entry valid when it was captured
- ``hit_days``       reads that did (a *hit*), and the hit records (with their
  verification steps and webhook delivery records) once their read is gone
- ``image_days``     plate crops and context images (the read itself may stay)
- ``hotlist_days``   hotlist entries (of every list version), counted from their
  expiry or removal; an expired entry stops matching at once
- ``labelled_example_days``  the labelled set (crops with their confirmed
  text: hits' visual checks, operators' confirmations of search results),
  counted from capture, at most: an example goes with its read, and with its
  read's crop image, whichever is first (:mod:`central.governance.labels`)
- ``access_log_days``  access-log entries (removed oldest first, leaving a
  ``log-purged`` anchor so the chain still verifies, see :mod:`central.governance.audit`)
- ``device_log_days``  device audit records received at central

A legal hold names a case number, the plates (none = every plate) and the
capture time range it keeps, a reason and a review date. It protects reads
only once a supervisor other than the requester approved it, and until it is
released; a hold past its review date still holds (it is reported, never
silently dropped). The purge never deletes a held read or its images.

The purge records what it deleted (counts per category, never plates) in
``purge_runs`` and in the access log, in the same transaction as the deletes,
and leaves a tombstone per deleted read (16 bytes of SHA-256 of its id, see
migration 0400) so a replayed message never brings the read back. Tombstones
older than the longest read retention period are dropped: the collector
refuses a read that old anyway (``Collector(max_age=...)``).
Hotlists, matching and hits are in :mod:`central.hotlist`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import sqlite3
import time

from .audit import AccessLog, parse_ts, transaction, ts, utcnow
from ..config import DEFAULT_CASE_PATTERN, Retention
from ..errors import PolicyError
from ..store import tombstone
from ..store.database import dialect
from .search import check_case_number
from .users import Permission, User, require

logger = logging.getLogger(__name__)

# When a hotlist entry stops being valid: its expiry, or its removal if earlier.
_ENTRY_END = ("CASE WHEN e.removed_at IS NOT NULL AND e.removed_at < e.expires_at THEN e.removed_at "
              "ELSE e.expires_at END")
# A read is a hit when it raised one, or when an entry for its plate was valid
# when it was captured (reads stored before the matcher ran, or while it was behind).
# (A read a hit was moved away from, to a better read of the same pass, stays a hit read: hit_upgrades.)
_HIT = ("(EXISTS (SELECT 1 FROM hits x WHERE x.read_id = r.read_id) "
        "OR EXISTS (SELECT 1 FROM hit_upgrades u WHERE u.previous_read_id = r.read_id) OR EXISTS (SELECT 1 FROM hotlist_entries e "
        f"WHERE e.plate = r.plate AND e.entered_at <= r.captured_at AND r.captured_at <= {_ENTRY_END}))")
# A read is held when an approved, unreleased hold covers it.
_HELD = ("EXISTS (SELECT 1 FROM legal_holds g WHERE g.approved_at IS NOT NULL AND g.released_at IS NULL "
         "AND r.captured_at >= g.since AND r.captured_at <= g.until "
         "AND (g.plates = '[]' OR EXISTS (SELECT 1 FROM json_each(g.plates) p WHERE p.value = r.plate)))")

# The same on PostgreSQL, whose reads carry timestamptz (the governance tables keep
# the canonical text, cast here) and whose holds' plates are read as jsonb.
_ENTRY_END_PG = f"({_ENTRY_END})::timestamptz"
_HIT_PG = ("(EXISTS (SELECT 1 FROM hits x WHERE x.read_id = r.read_id::text) OR EXISTS (SELECT 1 FROM "
           "hit_upgrades u WHERE u.previous_read_id = r.read_id::text) OR EXISTS (SELECT 1 FROM "
           "hotlist_entries e WHERE e.plate = r.plate AND e.entered_at::timestamptz <= r.captured_at "
           f"AND r.captured_at <= {_ENTRY_END_PG}))")
_HELD_PG = ("EXISTS (SELECT 1 FROM legal_holds g WHERE g.approved_at IS NOT NULL AND g.released_at IS NULL "
            "AND r.captured_at >= g.since::timestamptz AND r.captured_at <= g.until::timestamptz "
            "AND (g.plates = '[]' OR r.plate = ANY (SELECT jsonb_array_elements_text(g.plates::jsonb))))")
_TOMBSTONE_PG = "substring(sha256(convert_to(r.read_id::text, 'UTF8')) from 1 for 16)"


def _plate(p: str) -> str:
    plate = "".join(ch for ch in p.upper() if ch.isalnum())
    if not 1 <= len(plate) <= 16:
        raise PolicyError("a plate is 1-16 letters and digits")
    return plate


@dataclasses.dataclass(frozen=True)
class Hold:
    hold_id: int
    case_number: str
    plates: tuple[str, ...]
    since: dt.datetime
    until: dt.datetime
    reason: str
    review_on: dt.date
    requested_by: str
    requested_at: dt.datetime
    approved_by: str | None
    approved_at: dt.datetime | None
    released_by: str | None
    released_at: dt.datetime | None

    @property
    def status(self) -> str:
        if self.released_at:
            return "released"
        return "active" if self.approved_at else "pending"

    def review_due(self, today: dt.date) -> bool:
        return self.status == "active" and self.review_on <= today


@dataclasses.dataclass(frozen=True)
class PurgeResult:
    at: dt.datetime
    cutoffs: dict
    counts: dict
    held_kept: int
    dry_run: bool


def _hold(row) -> Hold:
    (hid, case, plates, since, until, reason, review, rby, rat, aby, aat, lby, lat) = row
    return Hold(hid, case, tuple(json.loads(plates)), parse_ts(since), parse_ts(until), reason,
                dt.date.fromisoformat(review), rby, parse_ts(rat), aby, parse_ts(aat) if aat else None,
                lby, parse_ts(lat) if lat else None)


class Governor:
    """Legal holds and the purge over the store's SQLite database."""

    def __init__(self, conn: sqlite3.Connection, retention: Retention = Retention(), *, clock=utcnow,
                 case_number_pattern: str = DEFAULT_CASE_PATTERN) -> None:
        self.conn = conn
        self.case_number_pattern = case_number_pattern
        self.retention = retention
        self._clock = clock
        self.log = AccessLog(conn, clock=clock)

    # -- legal holds -----------------------------------------------------------
    def request_hold(self, actor: User, *, case_number: str, plates: tuple[str, ...] | list[str],
                     since: dt.datetime, until: dt.datetime, reason: str, review_on: dt.date) -> Hold:
        require(actor, Permission.REQUEST_HOLD)
        check_case_number(case_number, PolicyError, self.case_number_pattern)
        if since > until:
            raise PolicyError("hold: since is after until")
        if not reason:
            raise PolicyError("hold: give the reason (e.g. litigation, discovery order)")
        if review_on <= self._clock().date():
            raise PolicyError("hold: the review date must be in the future")
        plates = sorted({_plate(p) for p in plates})
        now = ts(self._clock())
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO legal_holds (case_number, plates, since, until, reason, review_on, requested_by, "
                "requested_at) VALUES (?,?,?,?,?,?,?,?)",
                [case_number, json.dumps(plates), ts(since), ts(until), reason, review_on.isoformat(),
                 actor.name, now])
            self.log.append(user=actor.name, organization=actor.organization, action="hold-request",
                            case_number=case_number,
                            detail={"hold": cur.lastrowid, "plates": len(plates), "since": ts(since),
                                    "until": ts(until), "review_on": review_on.isoformat()})
        return self.hold(cur.lastrowid)

    def approve_hold(self, actor: User, hold_id: int) -> Hold:
        require(actor, Permission.APPROVE_HOLD)
        with transaction(self.conn):
            hold = self.hold(hold_id)
            if hold.status != "pending":
                raise PolicyError(f"hold {hold_id} is {hold.status}, not pending")
            if hold.requested_by == actor.name:
                raise PolicyError(f"hold {hold_id}: a supervisor other than the requester must approve it")
            self.conn.execute("UPDATE legal_holds SET approved_by = ?, approved_at = ? WHERE hold_id = ?",
                              [actor.name, ts(self._clock()), hold_id])
            self.log.append(user=actor.name, organization=actor.organization, action="hold-approve",
                            case_number=hold.case_number, detail={"hold": hold_id})
        return self.hold(hold_id)

    def release_hold(self, actor: User, hold_id: int, *, reason: str) -> Hold:
        require(actor, Permission.APPROVE_HOLD)
        if not reason:
            raise PolicyError("say why the hold is released")
        with transaction(self.conn):
            hold = self.hold(hold_id)
            if hold.status == "released":
                raise PolicyError(f"hold {hold_id} is already released")
            self.conn.execute("UPDATE legal_holds SET released_by = ?, released_at = ? WHERE hold_id = ?",
                              [actor.name, ts(self._clock()), hold_id])
            self.log.append(user=actor.name, organization=actor.organization, action="hold-release",
                            case_number=hold.case_number, detail={"hold": hold_id, "reason": reason})
        return self.hold(hold_id)

    def hold(self, hold_id: int) -> Hold:
        row = self.conn.execute("SELECT * FROM legal_holds WHERE hold_id = ?", [hold_id]).fetchone()
        if row is None:
            raise PolicyError(f"no hold {hold_id}")
        return _hold(row)

    def holds(self) -> list[Hold]:
        return [_hold(r) for r in self.conn.execute("SELECT * FROM legal_holds ORDER BY hold_id").fetchall()]

    # -- purge -----------------------------------------------------------------
    def cutoffs(self, now: dt.datetime) -> dict[str, dt.datetime]:
        r = self.retention
        return {k: now - dt.timedelta(days=d) for k, d in (
            ("non_hit_reads", r.non_hit_days), ("hit_reads", r.hit_days), ("images", r.image_days),
            ("hotlist", r.hotlist_days), ("access_log", r.access_log_days), ("device_log", r.device_log_days),
            ("hits", r.hit_days), ("webhook_deliveries", r.hit_days),  # deliveries go with their hits
            ("labelled_examples", r.labelled_example_days))}

    def labelled_overdue(self, now: dt.datetime | None = None) -> int:
        """Labelled examples past their deletion date at ``now``: captured more
        than ``labelled_example_days`` ago, or whose read or read's crop is gone
        or past its own retention (and not under a legal hold). The purge
        deletes exactly these, so after a purge this is 0 (the transparency
        report prints it)."""
        return self._labelled_overdue({k: ts(v) for k, v in self.cutoffs(now or self._clock()).items()})

    def _labelled_overdue(self, c: dict[str, str]) -> int:
        pg = dialect(self.conn) == "postgresql"
        _HIT, _HELD = (_HIT_PG, _HELD_PG) if pg else (globals()["_HIT"], globals()["_HELD"])
        return self.conn.execute(
            f"SELECT count(*) FROM labelled_examples x WHERE x.captured_at < ? OR NOT EXISTS ("
            f"SELECT 1 FROM reads r JOIN read_images i ON i.read_id = r.read_id AND i.kind = 'crop' "
            f"WHERE r.read_id = x.read_id{'::uuid' if pg else ''} AND ({_HELD} OR (r.captured_at >= ? AND (r.captured_at >= ? "
            f"OR NOT {_HIT}) AND (r.captured_at >= ? OR {_HIT}))))",
            [c["labelled_examples"], c["images"], c["hit_reads"], c["non_hit_reads"]]).fetchone()[0]

    def purge(self, actor: User, *, now: dt.datetime | None = None, dry_run: bool = False) -> PurgeResult:
        """Delete what is past its retention period, except held reads."""
        require(actor, Permission.RUN_PURGE)
        now = now or self._clock()
        c = {k: ts(v) for k, v in self.cutoffs(now).items()}
        counts: dict[str, int] = {}
        pg = dialect(self.conn) == "postgresql"
        _HIT, _HELD = (_HIT_PG, _HELD_PG) if pg else (globals()["_HIT"], globals()["_HELD"])
        reads_sql = [
            ("images", "read_images", f"DELETE FROM read_images WHERE read_id IN (SELECT r.read_id FROM reads r "
                                      f"WHERE r.captured_at < ? AND NOT {_HELD})", [c["images"]]),
            ("hit_reads", "reads", f"DELETE FROM reads WHERE read_id IN (SELECT r.read_id FROM reads r "
                                   f"WHERE r.captured_at < ? AND {_HIT} AND NOT {_HELD})", [c["hit_reads"]]),
            ("non_hit_reads", "reads", f"DELETE FROM reads WHERE read_id IN (SELECT r.read_id FROM reads r "
                                       f"WHERE r.captured_at < ? AND NOT {_HIT} AND NOT {_HELD})",
             [c["non_hit_reads"]])]
        if pg:  # no ON DELETE CASCADE across partitions: a deleted read's images go first, uncounted as on SQLite
            reads_sql[1:1] = [(None, "read_images", f"DELETE FROM read_images WHERE read_id IN (SELECT r.read_id "
                                                    f"FROM reads r WHERE r.captured_at < ? AND {hit} AND NOT "
                                                    f"{_HELD})", [cut])
                              for hit, cut in ((_HIT, c["hit_reads"]), (f"NOT {_HIT}", c["non_hit_reads"]))]
            # The hotlist matcher's feed (pg migration 0201): what it consumed, and reads past the
            # shorter read retention (a purged read's plate must not stay there).
            reads_sql.append((None, "read_feed", "DELETE FROM read_feed WHERE feed_id <= (SELECT last_rowid FROM "
                                                 "hotlist_matcher WHERE id = 1) OR captured_at < ?",
                              [max(c["hit_reads"], c["non_hit_reads"])]))
        statements = [
            *reads_sql,
            # Hit records go with their read (a held read keeps its hits), once past hit_days.
            ("hits", "hits", "DELETE FROM hits WHERE captured_at < ? AND NOT EXISTS "
                             f"(SELECT 1 FROM reads r WHERE r.read_id{'::text' if pg else ''} = hits.read_id)",
             [c["hits"]]),
            ("webhook_deliveries", "webhook_deliveries", "DELETE FROM webhook_deliveries WHERE NOT EXISTS "
                                   "(SELECT 1 FROM hits h WHERE h.hit_id = webhook_deliveries.hit_id)", []),
            # Examples follow their read: gone with the read or with its crop image, and at the
            # latest labelled_example_days after capture (central/governance/labels.py).
            ("labelled_examples", "labelled_examples", "DELETE FROM labelled_examples WHERE captured_at < ? OR "
                                  "NOT EXISTS (SELECT 1 FROM read_images i WHERE i.read_id = "
                                  f"labelled_examples.read_id{'::uuid' if pg else ''} AND i.kind = 'crop')",
             [c["labelled_examples"]]),
            ("hotlist", "hotlist_entries", f"DELETE FROM hotlist_entries WHERE entry_id IN (SELECT e.entry_id "
                                           f"FROM hotlist_entries e WHERE {_ENTRY_END} < ?)", [c["hotlist"]]),
            ("device_log", "device_audit", "DELETE FROM device_audit WHERE received_at < ?", [c["device_log"]]),
        ]
        if not pg:
            self.conn.create_function("alpr_tombstone", 1, tombstone, deterministic=True)
        with transaction(self.conn):
            dropped = {"hit_reads": 0, "non_hit_reads": 0}
            if not dry_run:
                self._tombstones(now, c, _HIT, _HELD, _TOMBSTONE_PG if pg else "alpr_tombstone(r.read_id)")
                if pg:
                    dropped = self._drop_partitions(now, _HIT, _HELD)
            held_kept = self.conn.execute(
                f"SELECT count(*) FROM reads r WHERE {_HELD} AND ((r.captured_at < ? AND {_HIT}) "
                f"OR (r.captured_at < ? AND NOT {_HIT}))", [c["hit_reads"], c["non_hit_reads"]]).fetchone()[0]
            for name, table, sql, args in statements:
                if dry_run and name is None:
                    continue
                if dry_run and name == "labelled_examples":   # those whose read or crop this purge deletes too
                    counts[name] = self._labelled_overdue(c)
                elif dry_run:
                    counted = sql.replace(f"DELETE FROM {table} WHERE", f"SELECT count(*) FROM {table} WHERE", 1)
                    counts[name] = self.conn.execute(counted, args).fetchone()[0]
                elif name is None:
                    self.conn.execute(sql, args)
                else:
                    # Images of deleted reads go by ON DELETE CASCADE; they are counted with the reads.
                    counts[name] = self.conn.execute(sql, args).rowcount + dropped.get(name, 0)
            if dry_run:
                counts["access_log"] = self.conn.execute("SELECT count(*) FROM audit_log WHERE at < ?",
                                                         [c["access_log"]]).fetchone()[0]
            else:
                counts["access_log"] = self.log.purge_before(self.cutoffs(now)["access_log"], user=actor.name,
                                                             organization=actor.organization)
                self.conn.execute("INSERT INTO purge_runs (at, user, counts) VALUES (?,?,?)",
                                  [ts(now), actor.name, json.dumps(counts, sort_keys=True)])
                self.log.append(user=actor.name, organization=actor.organization, action="purge",
                                detail={"counts": counts, "held_kept": held_kept, "cutoffs": c},
                                result_count=sum(counts.values()))
        if not dry_run and not pg:
            self._truncate_wal()
        logger.info("purge%s: %s; %d held reads kept", " (dry run)" if dry_run else "", counts, held_kept)
        return PurgeResult(now, c, counts, held_kept, dry_run)

    def _tombstones(self, now: dt.datetime, c: dict[str, str], _HIT: str, _HELD: str, mark: str) -> None:
        """Mark the reads this purge deletes (same transaction, same conditions),
        and drop marks older than the longest read retention. On PostgreSQL only
        reads younger than that get a mark: an older one sent again is refused as
        expired anyway, and most of a month dropped whole is that old."""
        day = now.date().isoformat()
        keep = dt.timedelta(days=max(self.retention.hit_days, self.retention.non_hit_days))
        floor, args = ("", []) if dialect(self.conn) == "sqlite" else (" AND r.captured_at >= ?", [ts(now - keep)])
        for cutoff, hit in ((c["hit_reads"], _HIT), (c["non_hit_reads"], f"NOT {_HIT}")):
            self.conn.execute(f"INSERT OR IGNORE INTO read_tombstones SELECT {mark}, ? "
                              f"FROM reads r WHERE r.captured_at < ?{floor} AND {hit} AND NOT {_HELD}",
                              [day, cutoff, *args])
        dropped = self.conn.execute("DELETE FROM read_tombstones WHERE purged_on < ?",
                                    [(now - keep).date().isoformat()]).rowcount
        if dropped:
            logger.info("purge: %d read tombstone(s) past the longest retention dropped", dropped)

    def _drop_partitions(self, now: dt.datetime, _HIT: str, _HELD: str) -> dict[str, int]:
        """PostgreSQL: drop each whole month of reads (and its images) that is
        past both read retention periods and holds no held read; the row deletes
        that follow then touch only the edge months. Returns the reads dropped
        by category (their tombstones are written already)."""
        hit_cut = now - dt.timedelta(days=self.retention.hit_days)
        non_hit_cut = now - dt.timedelta(days=self.retention.non_hit_days)
        out = {"hit_reads": 0, "non_hit_reads": 0}
        months = [r[0] for r in self.conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'reads'::regclass ORDER BY c.relname").fetchall()]
        for name in months:
            start = dt.datetime.strptime(name[-6:], "%Y%m").replace(tzinfo=dt.timezone.utc)
            end = (start + dt.timedelta(days=32)).replace(day=1)
            if end > hit_cut and end > non_hit_cut:
                break
            if self.conn.execute(f"SELECT 1 FROM {name} r WHERE {_HELD} LIMIT 1").fetchone():
                continue  # a held read: this month goes row by row, around it
            hits = self.conn.execute(f"SELECT count(*) FROM {name} r WHERE {_HIT}").fetchone()[0]
            total = self.conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            if (end > hit_cut and hits) or (end > non_hit_cut and total > hits):
                continue  # reads of the category kept longer: row by row
            for table in (f"read_images_{name[-6:]}", name):
                self.conn.execute(f"DROP TABLE IF EXISTS {table}")
            out["hit_reads"] += hits
            out["non_hit_reads"] += total - hits
            logger.info("purge: dropped the read partition of %s (%d reads)", name[-6:], total)
        return out

    def _truncate_wal(self, tries: int = 20) -> None:
        """Copy the WAL into the database and empty it: until then the WAL still
        holds the pages of the purged rows, plate text included. A reader or a
        writer in progress (the collector) makes SQLite report busy: try again."""
        # Without a busy timeout: a checkpoint that would wait for an older reader
        # holds the write lock meanwhile and stalls the collector; fail fast, retry.
        timeout = self.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        self.conn.execute("PRAGMA busy_timeout=0")
        try:
            for _ in range(tries):
                busy, _log, _done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                time.sleep(0.25)
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout)}")
        logger.warning("purge: the write-ahead log could not be emptied (the database stayed busy); "
                       "the next purge or checkpoint empties it")

    def purge_runs(self, since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[dict]:
        rows = self.conn.execute("SELECT at, user, counts FROM purge_runs WHERE at >= ? AND at < ? ORDER BY id",
                                 [ts(since) if since else "", ts(until) if until else "9999"]).fetchall()
        return [{"at": at, "user": user, "counts": json.loads(counts)} for at, user, counts in rows]
