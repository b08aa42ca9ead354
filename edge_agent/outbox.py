"""The encrypted outbox: sealed reads waiting for central's acknowledgement.

A SQLite file in WAL mode with ``synchronous=FULL``: a committed read survives
``kill -9`` and power loss. Rows hold only sealed envelopes (see
:mod:`edge_agent.wire.envelope`), never plate text, and the device has no key
that opens them. A row is deleted only when central acknowledges that it
stored it durably.

Deleting what central acknowledged is the one write that does not wait for
the disk (``synchronous=NORMAL`` for that transaction): a delete lost to a power
cut only brings the read back, central stores a re-sent read once, and the WAL
stays consistent (the next fully synced commit syncs everything before it). It
took an fsync per acknowledgement, the largest cost of a device draining a
backlog. ``stats()`` reads the depth, bytes and parked count this object keeps
(set by one count at open, moved by every committed write): a full scan of a
large outbox every second held the connection lock long enough to stall the sync.

Bounds (config ``[buffer]``): when a put would exceed ``max_reads`` or
``max_bytes`` the *oldest* rows are dropped; rows older than ``max_age`` are
dropped by :meth:`Outbox.expire`. Every drop is counted (``evicted_capacity``,
``evicted_age``) in the same transaction and logged with counts only.

No capture time on disk (schema 2): a row keeps only its capture *day* (UTC
day number), which is all expiry needs; a read is dropped as soon as any part
of its day is past ``max_age`` (up to a day early, never late). Read ids are
random (UUIDv4), so neither ids nor rows tell when within a day a read was
taken; ``seq`` keeps the order. Schema 1 files (``captured_at`` in clear) are
migrated on open, with ``secure_delete`` so the old times are overwritten in
the file, and the WAL is checkpointed and truncated.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import sqlite_utils

from .errors import BufferError_
from .reserve import Reserve, is_disk_full

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
DAY = 86400


@dataclasses.dataclass(frozen=True)
class Pending:
    seq: int
    read_id: str
    envelope: bytes


@dataclasses.dataclass(frozen=True)
class OutboxStats:
    depth: int
    bytes: int
    oldest_day: float | None  # start (epoch seconds, UTC) of the oldest read's capture day
    rejected: int
    counters: dict


class Outbox:
    def __init__(self, path: str | os.PathLike, *, max_reads: int = 2_000_000, max_bytes: int = 4 << 30,
                 max_age: float = 730 * 86400.0, clock=time.time, reserve: Reserve | None = None,
                 exclusive_fallback: bool = True) -> None:
        self.path = Path(path)
        self.max_reads = max_reads
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self.reserve = reserve
        self.on_add = lambda: None  # called after every committed add (the sync loop wakes on it)
        self.disk_full = False      # a write failed for lack of space (cleared when new reads can be written)
        self.disk_full_errors = 0   # writes refused for lack of space since start
        self.exclusive = False      # opened without the shared WAL index (see _open)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Create the file 0600 before SQLite opens it.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise BufferError_(f"cannot open outbox {self.path}: {exc.strerror}") from exc
        try:
            self._open()
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc) or not (exclusive_fallback or self.reserve):
                raise BufferError_(f"cannot open outbox {self.path}: {exc}") from exc
            # A full disk at start (the WAL index cannot be sized, the WAL cannot be
            # checkpointed): give back the reserve and try again; without one, open
            # without the shared WAL index (only this process can then use the file)
            # so the agent can still run, sync once space returns, and say why.
            self._note_full()
            released = self.reserve is not None and self.reserve.release()
            try:
                self._open(exclusive=not released)
            except sqlite3.DatabaseError as again:
                raise BufferError_(f"cannot open outbox {self.path}: {again}") from again
            logger.error("outbox opened on a full disk (%s)", "reserve released" if released
                         else "no reserve to release; shared WAL index off")
        except sqlite3.DatabaseError as exc:
            raise BufferError_(f"cannot open outbox {self.path}: {exc}") from exc

    def _open(self, exclusive: bool = False) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout=5000")
            if self.path.stat().st_size == 0:
                # A new file hands pages freed by acknowledgements back to the
                # file system on demand (see maintain).
                self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            if exclusive:  # WAL index in this process's memory: no -shm file to size
                self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
                self.exclusive = True
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            # Deleted rows are sealed envelopes, random ids and days: zero them only
            # where that costs no extra I/O (Debian's default, full secure_delete,
            # wrote every freed 4 KiB page again: twice the disk writes of a drain).
            self.db.execute("PRAGMA secure_delete=FAST")
            self._migrate()
            self._depth, self._bytes, self._parked = self._count()
        except BaseException:
            conn.close()  # a failed open must not keep a lock on the file
            raise

    def _count(self) -> tuple[int, int, int]:
        """Depth, bytes and parked reads counted in the file (a full scan: at open,
        and in a put that found duplicates)."""
        return tuple(self.db.execute(
            "SELECT count(*), coalesce(sum(size), 0), count(rejected) FROM outbox").fetchone())

    def _note_full(self) -> None:
        self.disk_full = True
        self.disk_full_errors += 1

    def _deleting(self, what: str, work):
        """Run ``work`` (a write transaction that deletes or marks rows) under the
        lock. On a full disk give back the reserve, checkpoint the WAL into the
        room it made, and try once more; BufferError_ if that is not enough."""
        for attempt in (1, 2):
            try:
                result = work()
            except sqlite3.DatabaseError as exc:  # any: a malformed page as much as a full disk
                if not is_disk_full(exc):
                    raise BufferError_(f"cannot {what}: {exc}") from exc
                self._note_full()
                if attempt == 1 and self.reserve is not None and self.reserve.release():
                    try:
                        self.db.execute("PRAGMA wal_checkpoint(RESTART)")
                    except sqlite3.OperationalError:
                        pass
                    continue
                raise BufferError_(f"cannot {what}: {exc}") from exc
            return result  # disk_full stays: only a read written says there is room again

    def _migrate(self) -> None:
        with self._tx():  # under the write lock, so two openers never both create
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BufferError_(f"outbox {self.path} has schema {version}; this agent knows {SCHEMA_VERSION}")
            if version == 0:
                # AUTOINCREMENT: seq never goes back, even after the table empties,
                # so the sync cursor (highest seq sent) stays valid.
                self.db.execute(
                    "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, read_id TEXT NOT NULL, "
                    "capture_day INTEGER NOT NULL, size INTEGER NOT NULL, envelope BLOB NOT NULL, rejected TEXT)")
                self.db["outbox"].create_index(["read_id"], unique=True)
                self.db["outbox"].create_index(["capture_day"])
                self.db["counters"].create({"name": str, "value": int}, pk="name", not_null={"value"})
            elif version == 1:
                # captured_at (seconds, in clear) becomes the capture day; the old
                # values are overwritten in the file, not merely unlinked.
                self.db.execute("PRAGMA secure_delete=ON")
                self.db.execute("ALTER TABLE outbox ADD COLUMN capture_day INTEGER NOT NULL DEFAULT 0")
                self.db.execute(f"UPDATE outbox SET capture_day = CAST(captured_at / {DAY} AS INTEGER)")
                self.db.execute("DROP INDEX IF EXISTS idx_outbox_captured_at")
                self.db.execute("ALTER TABLE outbox DROP COLUMN captured_at")
                self.db["outbox"].create_index(["capture_day"])
            if version < SCHEMA_VERSION:
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        if version == 1:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL's old page images go too
            self.db.execute("PRAGMA secure_delete=FAST")
            logger.info("outbox %s migrated to schema %d: capture times kept as days only", self.path,
                        SCHEMA_VERSION)

    def _tx(self, durable: bool = True):
        return _Transaction(self.db.conn, durable)

    def _bump(self, name: str, n: int) -> None:
        if n:
            self.db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", [name, n])

    # -- writing ---------------------------------------------------------
    def add(self, items: Sequence[tuple[str, float, bytes]]) -> int:
        """Store sealed reads ``(read_id, captured_at_epoch, envelope)`` in one
        transaction; returns how many old rows were evicted to make room. Only
        the capture day is written (see the module docstring)."""
        if not items:
            return 0
        rows = [(rid, int(ts // DAY), len(env), env) for rid, ts, env in items]
        added = sum(r[2] for r in rows)
        with self._lock:
            try:
                with self._tx():
                    new = self.db.conn.executemany(
                        "INSERT OR IGNORE INTO outbox(read_id, capture_day, size, envelope) VALUES (?,?,?,?)",
                        rows).rowcount
                    depth, nbytes, parked = self._depth + len(rows), self._bytes + added, self._parked
                    if new != len(rows):  # duplicates (a put retried): count rather than guess, and
                        depth, nbytes, parked = self._count()  # never evict a read for one
                    evicted = evicted_bytes = evicted_parked = 0
                    if depth > self.max_reads or nbytes > self.max_bytes:
                        evicted, evicted_bytes, evicted_parked = self._evict_oldest(depth, nbytes)
                        self._bump("evicted_capacity", evicted)
                    self._bump("buffered", len(rows))
            except sqlite3.DatabaseError as exc:  # any, not only a full disk: counted as lost
                if is_disk_full(exc):
                    self._note_full()  # new reads never spend the reserve: they are counted as lost
                raise BufferError_(f"cannot write outbox: {exc}") from exc
            self.disk_full = False
            self._depth, self._bytes, self._parked = depth - evicted, nbytes - evicted_bytes, parked - evicted_parked
        self.on_add()
        if evicted:
            logger.warning("outbox full: dropped %d oldest reads (%d bytes)", evicted, evicted_bytes)
        return evicted

    def _evict_oldest(self, depth: int, nbytes: int) -> tuple[int, int, int]:
        victims, freed, parked = [], 0, 0
        cursor = self.db.conn.execute("SELECT seq, size, rejected IS NOT NULL FROM outbox ORDER BY seq")
        for seq, size, was_parked in cursor:
            if depth - len(victims) <= self.max_reads and nbytes - freed <= self.max_bytes:
                break
            victims.append((seq,))
            freed += size
            parked += was_parked
        cursor.close()
        self.db.conn.executemany("DELETE FROM outbox WHERE seq = ?", victims)
        return len(victims), freed, parked

    def expire(self) -> int:
        """Drop reads older than ``max_age`` (counted as ``evicted_age``): every
        read of a day any part of which is older (up to a day early, never
        late). BufferError_ if the file cannot be written (a full disk): nothing
        changes."""
        cutoff = math.ceil((self._clock() - self.max_age) / DAY)  # day d goes once d * DAY < now - max_age

        def work():
            with self._tx():
                n, size, parked = self.db.execute(
                    "SELECT count(*), coalesce(sum(size), 0), count(rejected) FROM outbox WHERE capture_day < ?",
                    [cutoff]).fetchone()
                if n:
                    self.db.execute("DELETE FROM outbox WHERE capture_day < ?", [cutoff])
                    self._bump("evicted_age", n)
            return n, size, parked

        with self._lock:
            n, size, parked = self._deleting("expire old reads", work)
            self._depth -= n  # only once committed
            self._bytes -= size
            self._parked -= parked
        if n:
            logger.warning("dropped %d reads older than the %.0f-day buffer limit", n, self.max_age / 86400)
        return n

    def acknowledge(self, read_ids: Iterable[str]) -> int:
        """Delete reads central has stored; returns how many were deleted."""
        ids = [r for r in read_ids]
        if not ids:
            return 0

        def work():
            gone = freed = parked = 0
            with self._tx(durable=False):  # a lost delete only sends the read again (module docstring)
                for chunk in _chunks(ids, 500):
                    marks = ",".join("?" * len(chunk))
                    n, size, p = self.db.execute(
                        f"SELECT count(*), coalesce(sum(size), 0), count(rejected) FROM outbox "
                        f"WHERE read_id IN ({marks})", chunk).fetchone()
                    self.db.execute(f"DELETE FROM outbox WHERE read_id IN ({marks})", chunk)
                    gone += n
                    freed += size
                    parked += p
                self._bump("acknowledged", gone)
            return gone, freed, parked

        with self._lock:
            gone, freed, parked = self._deleting("delete acknowledged reads", work)
            self._depth -= gone  # only once committed
            self._bytes -= freed
            self._parked -= parked
        return gone

    def mark_rejected(self, rejected: Iterable[tuple[str, str]]) -> int:
        """Park reads central refused (kept, counted once each, not resent);
        returns how many were newly parked."""
        rows = [(why, rid) for rid, why in rejected]
        if not rows:
            return 0

        def work():
            with self._tx():
                n = self.db.conn.executemany(
                    "UPDATE outbox SET rejected = ? WHERE read_id = ? AND rejected IS NULL", rows).rowcount
                self._bump("rejected", n)
            return n

        with self._lock:
            n = self._deleting("park rejected reads", work)
            self._parked += n  # only once committed
        return n

    def maintain(self) -> None:
        """Housekeeping (once a minute) while the disk reserve is given up: once
        the folder, with the pages acknowledgements freed and the WAL's room,
        has space for the reserve twice over, hand those back to the file
        system and write the reserve again. Not before: on a full disk the WAL's
        room is what lets the next acknowledgement be written."""
        if self.reserve is None or self.reserve.held:
            return
        with self._lock:
            try:
                page = self.db.execute("PRAGMA page_size").fetchone()[0]
                free_pages = self.db.execute("PRAGMA freelist_count").fetchone()[0]
                vacuums = self.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
                wal = Path(f"{self.path}-wal")
                wal_bytes = wal.stat().st_size if wal.exists() else 0
                st = os.statvfs(self.path.parent)
                room = st.f_bavail * st.f_frsize + wal_bytes + (free_pages * page if vacuums else 0)
                if room < 2 * self.reserve.size:
                    return
                if vacuums and free_pages:
                    self.db.conn.executescript("PRAGMA incremental_vacuum;")  # sqlite3_exec steps it to the end
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except (sqlite3.DatabaseError, OSError) as exc:
                logger.debug("outbox maintenance: %s", exc)
                return
        self.reserve.ensure()

    # -- reading ---------------------------------------------------------
    def pending(self, after_seq: int, limit: int, upto_seq: int | None = None) -> list[Pending]:
        """Oldest unacknowledged, non-rejected reads with ``after_seq < seq``
        (and ``seq <= upto_seq`` when given)."""
        # Every use of the one connection holds the lock: a read interleaved by
        # another thread left a stale snapshot open, and the next write on the
        # connection failed at once with "database is locked" (or "another row
        # available"), so acknowledged reads were sent again.
        with self._lock:
            rows = self.db.execute(
                "SELECT seq, read_id, envelope FROM outbox WHERE seq > ? AND seq <= ? AND rejected IS NULL "
                "ORDER BY seq LIMIT ?", [after_seq, (1 << 63) - 1 if upto_seq is None else upto_seq, limit]).fetchall()
        return [Pending(*r) for r in rows]

    def seq_before_newest(self, n: int) -> int:
        """The seq just below the newest ``n`` pending reads (0 when there are no more than ``n``)."""
        with self._lock:
            row = self.db.execute("SELECT seq FROM outbox WHERE rejected IS NULL ORDER BY seq DESC LIMIT 1 OFFSET ?",
                                  [max(0, n)]).fetchone()
        return row[0] if row else 0

    def last_seq(self) -> int:
        """The highest seq in the outbox (0 when empty): reads added later sort after it."""
        with self._lock:
            return self.db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]

    @property
    def depth(self) -> int:
        return self._depth

    def stats(self) -> OutboxStats:
        """Depth, bytes and parked reads as this object counted them (exact while
        it is the file's only writer: the agent holds the data folder's lock), the
        oldest capture day (from its index) and the counters. No full scan."""
        with self._lock:
            oldest = self.db.execute("SELECT min(capture_day) * 86400 FROM outbox").fetchone()[0]
            counters = dict(self.db.execute("SELECT name, value FROM counters").fetchall())
            return OutboxStats(self._depth, self._bytes, oldest, self._parked, counters)

    def close(self) -> None:
        self.db.conn.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). ``durable=False``: the
    commit does not wait for the disk (``synchronous=NORMAL`` in WAL mode: it
    may be undone by a power cut, never half applied; the next durable commit
    or checkpoint syncs it). The connection is back to FULL afterwards."""

    def __init__(self, conn: sqlite3.Connection, durable: bool = True) -> None:
        self.conn = conn
        self.durable = durable

    def __enter__(self):
        if not self.durable:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._restore()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
            elif self.conn.in_transaction:  # SQLite has already rolled back after e.g. SQLITE_FULL
                self.conn.execute("ROLLBACK")
        finally:
            self._restore()
        return False

    def _restore(self) -> None:
        if not self.durable:
            self.conn.execute("PRAGMA synchronous=FULL")


def _chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
