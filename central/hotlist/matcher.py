"""Matching every stored read against the active hotlist entries, without
holding up the ack.

The collector stores a batch, acknowledges it, and wakes the matcher
(:meth:`Matcher.wake`); the matcher runs in its own thread on its own
database connection and walks the ``reads`` table in insertion order from a
cursor (``hotlist_matcher.last_rowid``). Because it works from what is
durably stored, a read stored just before central stops is matched when it
starts again: no hit is lost between the commit and the match. The hits of a
round, their webhook deliveries and the cursor are written in one
transaction; the cursor alone is written at most every few seconds, and a
round repeated after a crash raises no second hit (``UNIQUE (read_id,
entry_id)`` and the pass rule below).

A read matches an entry that is active now (not removed, not expired: an
entry stops matching the moment it expires) when

- ``exact``       the read's plate is the entry's plate;
- ``alternate``   one of the read's alternates is (a *possible* hit);
- ``confusable``  the plate or an alternate equals the entry's plate once
  confusable characters are folded (0/O/D/Q, 1/I/L, 8/B, 5/S, 2/Z), the key
  ``--tolerant`` search uses (a *possible* hit).

One lookup per batch on the partial index of the entries' folded plates
finds all three. The entry's state is not compared (reads carry none); the
hit shows it for the visual check.

One vehicle pass gives at most one hit per entry: a read of the same entry
on the same device and camera within ``[hotlist] dedupe_seconds`` of an
earlier hit (by capture time) raises none. If it matches better (exact after
alternate or confusable, alternate after confusable) it **upgrades** that
hit, recorded in ``hit_upgrades``:

- the hit is still untouched (no visual check, source check or disposition
  recorded): it moves to the better read (its image, text, match kind and
  capture time); its id and the time it was raised stay, so an operator who
  opens it sees the best evidence of the pass;
- a step is recorded: the hit stays exactly as it was checked (the visual
  check was made on that image) and the better read is noted on it, shown
  with the hit;
- every earlier hit of the pass was judged a misread (its image shows another
  plate): a better match is a new hit, because the listed vehicle may be
  there after all; a match no better than those is the same misread again.

An upgrade or note is queued (same transaction) for every webhook receiver
the hit was queued for (:mod:`.webhooks`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.wire import fold_confusables, normalise_plate

from ..config import Hotlist as HotlistConfig
from ..governance.audit import parse_ts, transaction, ts, utcnow
from ..store.database import DatabaseError, connect as connect_database, dialect

logger = logging.getLogger(__name__)

_KIND_RANK = {"exact": 0, "alternate": 1, "confusable": 2}


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection for a background worker. ``synchronous=NORMAL``: a commit
    lost to power failure takes the cursor with it, so the work is redone."""
    conn = connect_database(path)  # a SQLite file or a postgresql:// URL
    if dialect(conn) != "sqlite":
        return conn
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")
    return conn


class Matcher:
    BATCH = 5000
    CURSOR_EVERY = 5.0  # seconds between writes of the cursor alone

    def __init__(self, path: str | Path, cfg: HotlistConfig = HotlistConfig(), *, clock=utcnow,
                 on_hits: Callable[[list[int]], None] | None = None) -> None:
        self.conn = connect(path)
        self.cfg = cfg
        self._clock = clock
        self._wake = threading.Event()
        self.on_hits = on_hits
        self.counters = {"reads": 0, "hits": 0, "same_pass": 0, "upgraded": 0, "noted": 0}
        # What the cursor walks: SQLite's reads by rowid; PostgreSQL's read_feed (pg migration 0201).
        self._reads, self._rowid = ("reads", "rowid") if dialect(self.conn) == "sqlite" else ("read_feed", "feed_id")
        row = self.conn.execute("SELECT last_rowid FROM hotlist_matcher WHERE id = 1").fetchone()
        self._cursor = row[0] if row else 0
        self._saved = self._cursor
        self._saved_at = time.monotonic()
        self._queued = False  # a round queued webhook deliveries of upgrades

    def wake(self, *_args) -> None:
        """Called by the collector after each commit (cheap: sets an event)."""
        self._wake.set()

    def close(self) -> None:
        self.save_cursor()
        self.conn.close()

    def save_cursor(self) -> None:
        if self._cursor != self._saved:
            with transaction(self.conn):
                self.conn.execute("UPDATE hotlist_matcher SET last_rowid = ? WHERE id = 1", [self._cursor])
            self._saved, self._saved_at = self._cursor, time.monotonic()

    # -- one round -----------------------------------------------------------
    def match_pending(self) -> list[int]:
        """Match the reads stored since the cursor (up to BATCH); returns new hit ids."""
        rows = self.conn.execute(
            f"SELECT {self._rowid}, read_id, device_id, camera_id, captured_at, stored_at, plate, plate_folded, "
            f"alternates FROM {self._reads} WHERE {self._rowid} > ? ORDER BY {self._rowid} LIMIT ?",
            [self._cursor, self.BATCH]).fetchall()
        if not rows:
            top = self.conn.execute(f"SELECT coalesce(max({self._rowid}), 0) FROM {self._reads}").fetchone()[0]
            if top < self._cursor:  # the newest reads were purged: SQLite would reuse their rowids
                self._cursor = top
            return []
        now = self._clock()
        # Each read's texts with their folded keys: the plate's key is stored with the
        # read; the alternates (JSON) are parsed only when the read has any.
        keys: dict[str, list[tuple[str, str, str]]] = {}  # read_id -> [(text, kind, folded)]
        folded: set[str] = set()
        for _rowid, read_id, *_rest, plate, plate_folded, alternates in rows:
            if alternates == "[]":
                keys[read_id] = [(plate, "exact", plate_folded)]
                folded.add(plate_folded)
                continue
            texts = [(plate, "exact", plate_folded)]
            for alt, _conf in json.loads(alternates):
                alt = normalise_plate(alt)
                if alt and alt != plate:
                    texts.append((alt, "alternate", fold_confusables(alt)))
            keys[read_id] = texts
            folded.update(k for _t, _k, k in texts)
        entries = self._candidates(folded, now)
        matches = []
        for _rowid, read_id, device, camera, captured, stored, _p, _f, _a in rows if entries else ():
            best: dict[int, tuple[str, str, dict]] = {}
            for text, kind, key in keys[read_id]:
                for entry in entries.get(key, ()):
                    k = kind if entry["plate"] == text else "confusable"
                    known = best.get(entry["entry_id"])
                    if known is None or _KIND_RANK[k] < _KIND_RANK[known[0]]:
                        best[entry["entry_id"]] = (k, text, entry)
            for kind, text, entry in best.values():
                matches.append((read_id, device, camera, captured, stored, kind, text, entry))
        self.counters["reads"] += len(rows)
        self._cursor = rows[-1][0]
        if not matches:
            if time.monotonic() - self._saved_at >= self.CURSOR_EVERY:
                self.save_cursor()
            return []
        self._queued = False
        hit_ids = self._record(matches, now)
        if (hit_ids or self._queued) and self.on_hits is not None:  # wakes the senders
            try:
                self.on_hits(hit_ids)
            except Exception:
                logger.exception("hit listener failed (hits %s are stored)", hit_ids)
        return hit_ids

    def _candidates(self, folded: set[str], now: dt.datetime) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        keys = sorted(folded)
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            cur = self.conn.execute(
                f"SELECT e.entry_id, e.plate_folded, e.plate, e.state, e.reason, e.source_agency, e.source_ref, "
                f"e.case_number, e.entered_by, e.entered_at, e.expires_at, l.list_id, l.name, l.category, l.version "
                f"FROM hotlist_entries e JOIN hotlists l ON l.list_id = e.list_id "
                f"WHERE e.plate_folded IN ({','.join('?' * len(part))}) AND e.removed_version IS NULL "
                f"AND e.expires_at > ?", [*part, ts(now)])
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                entry = dict(zip(names, row))
                found.setdefault(entry["plate_folded"], []).append(entry)
        return found

    def _record(self, matches: list, now: dt.datetime) -> list[int]:
        """Write the round's hits (and upgrades), their webhook deliveries and the
        cursor in one transaction; returns the ids of new and upgraded hits."""
        window = dt.timedelta(seconds=self.cfg.dedupe_seconds)
        hit_ids: list[int] = []
        upgraded: list[int] = []
        with transaction(self.conn):
            for read_id, device, camera, captured, stored, kind, text, e in matches:
                at = parse_ts(captured)
                earlier = self.conn.execute(
                    "SELECT hit_id, read_id, match_kind, matched_text, captured_at, visual, "
                    "visual_at IS NULL AND source_at IS NULL AND disposition_at IS NULL "
                    "FROM hits WHERE entry_id = ? AND device_id = ? AND camera_id = ? "
                    "AND captured_at >= ? AND captured_at <= ? ORDER BY hit_id",
                    [e["entry_id"], device, camera, ts(at - window), ts(at + window)]).fetchall()
                if earlier:
                    if any(h[1] == read_id for h in earlier):  # this read is the hit already (a round redone)
                        continue
                    pass_hits = [h for h in earlier if h[5] != "misread"]
                    if pass_hits:
                        if self._upgrade(pass_hits[-1], read_id, kind, text, captured, stored, now):
                            upgraded.append(pass_hits[-1][0])
                        continue
                    # Every earlier hit of this pass was judged a misread (its image shows another
                    # plate): a better match than those is a new hit; an equal one, the same misread.
                    if _KIND_RANK[kind] >= min(_KIND_RANK[h[2]] for h in earlier):
                        self.counters["same_pass"] += 1
                        continue
                hit_id = self._insert(read_id, device, camera, captured, stored, kind, text, e, now)
                if hit_id is not None:
                    hit_ids.append(hit_id)
            self.conn.execute("UPDATE hotlist_matcher SET last_rowid = ? WHERE id = 1", [self._cursor])
        self._saved, self._saved_at = self._cursor, time.monotonic()
        self.counters["hits"] += len(hit_ids)
        self.counters["upgraded"] += len(upgraded)
        if hit_ids or upgraded:
            logger.info("raised %d hit(s): ids %s; upgraded %s", len(hit_ids), hit_ids, upgraded)
        return hit_ids + [h for h in dict.fromkeys(upgraded) if h not in hit_ids]

    def _upgrade(self, hit, read_id, kind, text, captured, stored, now) -> bool:
        """A later read of a hit's pass. Not better than the hit's match: nothing
        (the same pass). Better, and nobody has recorded a step on the hit: the
        hit moves to the better read (its image, text, kind and capture time; the
        hit id and the time it was raised stay). Better, but a step is recorded
        (the checker looked at the first image): the hit stays as checked and
        the better read is noted on it. Either way ``hit_upgrades`` keeps it."""
        hit_id, old_read, old_kind, old_text, old_captured, _visual, untouched = hit
        if _KIND_RANK[kind] >= _KIND_RANK[old_kind]:
            self.counters["same_pass"] += 1
            return False
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO hit_upgrades (hit_id, at, applied, read_id, match_kind, matched_text, captured_at, "
            "previous_read_id, previous_kind, previous_text, previous_captured_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [hit_id, ts(now), 1 if untouched else 0, read_id, kind, text, captured, old_read, old_kind, old_text,
             old_captured])
        if cur.rowcount:
            self._queue_upgrade(hit_id, cur.lastrowid, now)
        if not untouched:
            self.counters["noted"] += 1
            return False
        self.conn.execute("UPDATE hits SET read_id = ?, match_kind = ?, matched_text = ?, captured_at = ?, "
                          "stored_at = ? WHERE hit_id = ?", [read_id, kind, text, captured, stored, hit_id])
        return True

    def _queue_upgrade(self, hit_id: int, upgrade_id: int, now: dt.datetime) -> None:
        """Queue the upgrade for every configured receiver the hit itself was
        queued for (sent, pending or given up): receivers learn that the hit now
        shows a better read, or that one was noted on their checked hit. The
        sender sends it after the hit's own delivery to that receiver."""
        names = [hook.name for hook in self.cfg.webhooks]
        if not names:
            return
        self.conn.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (hit_id, endpoint, status, next_at, created_at, upgrade_id) "
            "SELECT hit_id, endpoint, 'pending', ?, ?, ? FROM webhook_deliveries WHERE hit_id = ? "
            f"AND upgrade_id IS NULL AND endpoint IN ({','.join('?' * len(names))}) ORDER BY endpoint",
            [ts(now), ts(now), upgrade_id, hit_id, *names])
        self._queued = True

    def _insert(self, read_id, device, camera, captured, stored, kind, text, e, now) -> int | None:
        snapshot = {k: e[k] for k in ("plate", "state", "reason", "source_agency", "source_ref",
                                      "case_number", "entered_by", "entered_at", "expires_at")}
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO hits (read_id, entry_id, list_id, list_name, list_version, category, "
            "match_kind, matched_text, device_id, camera_id, captured_at, stored_at, hit_at, entry) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [read_id, e["entry_id"], e["list_id"], e["name"], e["version"], e["category"], kind, text,
             device, camera, captured, stored, ts(now), json.dumps(snapshot, sort_keys=True)])
        if not cur.rowcount:
            return None
        for hook in self.cfg.webhooks:
            if not hook.categories or e["category"] in hook.categories:
                self.conn.execute("INSERT OR IGNORE INTO webhook_deliveries (hit_id, endpoint, status, "
                                  "next_at, created_at) VALUES (?,?,'pending',?,?)",
                                  [cur.lastrowid, hook.name, ts(now), ts(now)])
        return cur.lastrowid

    # -- the thread ----------------------------------------------------------
    def run(self, stop: threading.Event, *, idle: float = 0.5) -> None:
        """Match until ``stop``; wakes on :meth:`wake` or every ``idle`` seconds."""
        while not stop.is_set():
            try:
                self.match_pending()
                if self._cursor_behind():  # a backlog: go on without waiting
                    continue
            except Exception:
                logger.exception("matcher round failed; retrying")
                stop.wait(1.0)
                continue
            self._wake.wait(idle)
            self._wake.clear()
        try:
            self.save_cursor()
        except DatabaseError:
            logger.exception("could not save the matcher cursor (the reads are matched again on start)")

    def _cursor_behind(self) -> bool:
        row = self.conn.execute(f"SELECT 1 FROM {self._reads} WHERE {self._rowid} > ? LIMIT 1",
                                [self._cursor]).fetchone()
        return row is not None
