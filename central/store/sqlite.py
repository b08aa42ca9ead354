"""The SQLite store (default): WAL, ``synchronous=FULL`` (an acknowledged
read survives power loss), migrations applied in order, each with its record in
one transaction.

Plates are stored normalised (upper-case letters and digits) next to a
confusable-folded copy, both indexed, so exact, wildcard (``GLOB``, which uses
the index) and confusion-tolerant searches never scan the table.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import sqlite_utils

from edge_agent.wire import Alternate, Location, PlateRead

from ..errors import SchemaMismatch, StoreError
from . import Search
from . import Store
from . import StoredRead
from . import folded
from . import tombstone
from .migrations import MIGRATIONS

logger = logging.getLogger(__name__)

_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
PAGE_SIZE = 8192  # of a new store file


def _ts(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the year always four digits)."""
    v = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v.isoformat(timespec="microseconds") + "Z"


def _from_ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, _TS).replace(tzinfo=dt.timezone.utc)


class SQLiteStore(Store):
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self.db = sqlite_utils.Database(conn)
            if self.path.stat().st_size == 0:
                # A new file gets 8 KiB pages: a 2-5 KB plate crop filled a 4 KiB page of its
                # own (4.6 KB on disk per read with a 2.5 KB crop, 3.2 KB with 8 KiB pages)
                # and ingest wrote a third less (docs/scaling.md). An older file keeps its pages.
                self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            # Deleted rows (purged reads) are overwritten with zeros, not left in free pages,
            # whatever the SQLite build's default; the WAL is truncated after a purge.
            self.db.execute("PRAGMA secure_delete=ON")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB: index pages stay hot while ingesting
            self.migrate()
        except SchemaMismatch:
            self.db.conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc

    def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction."""
        self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        applied = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
        unknown = sorted(applied - {name for name, _ in MIGRATIONS})
        if unknown:
            raise SchemaMismatch(f"{self.path} was migrated by a newer central (unknown migrations: "
                                 f"{', '.join(unknown)}); upgrade central")
        done = []
        for name, sql in MIGRATIONS:
            if name in applied:
                continue
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                    conn.execute("ROLLBACK")  # another process applied it meanwhile
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", [name, _ts(dt.datetime.now(dt.timezone.utc))])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
                    conn.execute("ROLLBACK")
                raise
            done.append(name)
            logger.info("applied migration %s", name)
        return done

    def add_reads(self, reads: Sequence[PlateRead], stored_at: dt.datetime) -> list[str]:
        rows, images = self._rows(reads, _ts(stored_at))  # prepared before the write lock is taken
        digests = {tombstone(r.read_id): r.read_id for r in reads}
        with self._lock:
            conn = self.db.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                gone = set()
                marks = list(digests)
                for i in range(0, len(marks), 500):  # one indexed probe per chunk of the batch
                    chunk = marks[i:i + 500]
                    gone.update(digests[d] for (d,) in conn.execute(
                        f"SELECT digest FROM read_tombstones WHERE digest IN ({','.join('?' * len(chunk))})",
                        chunk))
                if gone:  # purged by retention: a replay never brings them back
                    rows = [row for row in rows if row[0] not in gone]
                    images = [row for row in images if row[0] not in gone]
                conn.executemany("INSERT OR IGNORE INTO reads VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                conn.executemany("INSERT OR IGNORE INTO read_images VALUES (?,?,?)", images)
                conn.execute("COMMIT")
            except BaseException as exc:
                # Any failure, not only the database's (a value SQLite cannot bind or
                # encode), must release the write lock: a transaction left open
                # stalls every other writer of the store.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, (sqlite3.Error, ValueError)):
                    raise StoreError(f"cannot store reads: {exc}") from exc
                raise
        return [r.read_id for r in reads if r.read_id not in gone]

    @staticmethod
    def _rows(reads: Sequence[PlateRead], stored: str) -> tuple[list, list]:
        rows, images = [], []
        for r in reads:
            loc = r.location
            x, y, w, h = r.box  # four ints (PlateRead checks): the text json.dumps writes, without it
            rows.append((r.read_id, r.device_id, r.camera_id, _ts(r.captured_at), stored, r.plate, folded(r.plate),
                         r.confidence, f"[{x}, {y}, {w}, {h}]",
                         json.dumps([[a.plate, a.confidence] for a in r.alternates]) if r.alternates else "[]",
                         loc.latitude if loc else None, loc.longitude if loc else None,
                         loc.heading if loc else None, r.model_version))
            if r.crop_jpeg:
                images.append((r.read_id, "crop", r.crop_jpeg))
            if r.context_jpeg:
                images.append((r.read_id, "context", r.context_jpeg))
        return rows, images

    @staticmethod
    def _where(search: Search) -> tuple[str, list]:
        where, args = [], []
        if search.plate is not None:
            column, value = "r.plate", search.plate
            if search.tolerant:
                column, value = "r.plate_folded", "".join(ch if ch in "*?" else folded(ch) for ch in search.plate)
            # GLOB is case-sensitive and so uses the index; stored plates are upper-case.
            where.append(f"{column} GLOB ?" if search.is_pattern else f"{column} = ?")
            args.append(value)
        for column, value in (("r.camera_id = ?", search.camera_id), ("r.device_id = ?", search.device_id),
                              ("r.captured_at >= ?", search.since and _ts(search.since)),
                              ("r.captured_at <= ?", search.until and _ts(search.until))):
            if value is not None:
                where.append(column)
                args.append(value)
        return " AND ".join(where) or "1", args

    def search(self, search: Search) -> list[StoredRead]:
        where, args = self._where(search)
        # The page of row ids first, from the index alone (captured_at, then rowid to break
        # ties: both are in every index, so no table row is read to sort the matches), then
        # the page's rows and images: the joins touch only the page.
        sql = ("SELECT r.*, c.jpeg AS crop, x.jpeg AS context FROM "
               f"(SELECT r.rowid AS id FROM reads r WHERE {where} ORDER BY r.captured_at DESC, r.rowid DESC "
               "LIMIT ? OFFSET ?) page JOIN reads r ON r.rowid = page.id "
               "LEFT JOIN read_images c ON c.read_id = r.read_id AND c.kind = 'crop' "
               "LEFT JOIN read_images x ON x.read_id = r.read_id AND x.kind = 'context' "
               "ORDER BY r.captured_at DESC, r.rowid DESC")
        cursor = self.db.execute(sql, [*args, search.limit, search.offset])
        names = [d[0] for d in cursor.description]
        return [self._row(dict(zip(names, row))) for row in cursor.fetchall()]

    def count_matching(self, search: Search, *, cap: int = 10_000) -> int:
        where, args = self._where(search)
        return self.db.execute(f"SELECT count(*) FROM (SELECT 1 FROM reads r WHERE {where} LIMIT ?)",
                               [*args, cap]).fetchone()[0]

    def get_read(self, read_id: str) -> StoredRead | None:
        cursor = self.db.execute(
            "SELECT r.*, c.jpeg AS crop, x.jpeg AS context FROM reads r "
            "LEFT JOIN read_images c ON c.read_id = r.read_id AND c.kind = 'crop' "
            "LEFT JOIN read_images x ON x.read_id = r.read_id AND x.kind = 'context' WHERE r.read_id = ?", [read_id])
        row = cursor.fetchone()
        if row is None:
            return None
        return self._row(dict(zip([d[0] for d in cursor.description], row)))

    @staticmethod
    def _row(row: dict) -> StoredRead:
        loc = None
        if row["latitude"] is not None:
            loc = Location(row["latitude"], row["longitude"], row["heading"])
        read = PlateRead(
            read_id=row["read_id"], device_id=row["device_id"], camera_id=row["camera_id"],
            captured_at=_from_ts(row["captured_at"]), plate=row["plate"], confidence=row["confidence"],
            box=tuple(json.loads(row["box"])),
            alternates=tuple(Alternate(p, c) for p, c in json.loads(row["alternates"])),
            crop_jpeg=row["crop"], context_jpeg=row["context"], location=loc, model_version=row["model_version"])
        return StoredRead(read, _from_ts(row["stored_at"]))

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM reads").fetchone()[0]

    def close(self) -> None:
        self.db.conn.close()
