"""The PostgreSQL read store: ``[store] url = "postgresql://..."``.

Reads and their images live in PostgreSQL, partitioned by capture month (see
:mod:`.pg_migrations` for the schema and why). The governance tables (users,
the access log, devices, holds, sharing, device audit logs, hotlists) are in
the same database, reached as ``store.db`` through :mod:`.database` (the
connection the governance modules use on both backends).

Writes: a batch is copied (``COPY``, binary) into a per-connection temporary
staging table, then moved with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``
in the same transaction, so a resent read is stored once and the collector
acknowledges only after the commit returned. Connections come from a
psycopg-pool pool that checks each connection on checkout, so a restarted
server costs one failed batch at most (not acknowledged; the device resends).

The schema is migrated only by ``alpr-central db migrate``; opening a store
whose schema is behind or ahead of this code raises
:class:`~central.errors.SchemaMismatch` (the CLI exits 78).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from edge_agent.wire import Alternate, Location, PlateRead, fold_confusables

from ..errors import SchemaMismatch, StoreError
from . import Search, Store, StoredRead, folded
from .pg_migrations import MIGRATIONS

logger = logging.getLogger(__name__)

READ_COLUMNS = ("read_id", "device_id", "camera_id", "captured_at", "stored_at", "plate", "plate_folded",
                "confidence", "box", "alternates", "latitude", "longitude", "heading", "model_version")
IMAGE_COLUMNS = ("read_id", "captured_at", "kind", "jpeg")
_UTC = dt.timezone.utc


def _month(value: dt.datetime) -> dt.datetime:
    v = value.astimezone(_UTC)
    return dt.datetime(v.year, v.month, 1, tzinfo=_UTC)


def like_pattern(pattern: str) -> str:
    """A search pattern (``*``, ``?``) as SQL LIKE; plates hold no ``%``/``_``/``\\``."""
    return pattern.replace("*", "%").replace("?", "_")


def _esc(text: str) -> str:
    """A value for COPY's text format."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _num(value) -> str:
    return "\\N" if value is None else repr(float(value))


def _fold(plate: str) -> str:
    if plate.isascii() and plate.isalnum() and plate == plate.upper():  # the wire's form: skip normalising
        return fold_confusables(plate)
    return folded(plate)


def read_line(r: PlateRead, stored_at: str) -> str:
    """A read as one line of ``COPY reads (READ_COLUMNS) FROM STDIN`` (text
    format): formatting the line by hand costs a fraction of adapting each
    value, which is most of the collector's cost per read."""
    loc = r.location
    return "\t".join((
        _esc(r.read_id), _esc(r.device_id), _esc(r.camera_id), r.captured_at.isoformat(), stored_at, _esc(r.plate),
        _esc(_fold(r.plate)), repr(float(r.confidence)), "[{}, {}, {}, {}]".format(*r.box),  # four ints
        _esc(json.dumps([[a.plate, a.confidence] for a in r.alternates])) if r.alternates else "[]",
        _num(loc.latitude if loc else None), _num(loc.longitude if loc else None),
        _num(loc.heading if loc else None), _esc(r.model_version))) + "\n"


def image_rows(r: PlateRead) -> list[tuple]:
    """A read's images as rows of ``read_images`` (read id as text, for matching)."""
    return [(r.read_id, r.captured_at, kind, jpeg)
            for kind, jpeg in (("crop", r.crop_jpeg), ("context", r.context_jpeg)) if jpeg]


# The advisory lock that orders read_feed numbers (see _feed), and the canonical timestamp text.
FEED_LOCK = 0x66656564  # "feed"
_TEXT_TS = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

# A read's tombstone (see store.tombstone): 16 bytes of SHA-256 of its id's text.
_MARK = "substring(sha256(convert_to(i.read_id::text, 'UTF8')) from 1 for 16)"


class PostgresStore(Store):
    """Reads on PostgreSQL (a pool, COPY); ``governance`` (default: the same
    database, :class:`~.database.PgGovernance`) holds every other table and is
    ``self.db`` to the governance modules."""

    def __init__(self, url: str, governance=None, *, min_size: int = 1, max_size: int = 4,
                 timeout: float = 10.0, check_schema: bool = True) -> None:
        self.url = url
        self.governance = governance
        self.db = governance.db if governance is not None else None
        self._months: set[dt.datetime] = set()
        self._months_lock = threading.Lock()
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
                                   configure=self._configure, check=ConnectionPool.check_connection,
                                   name="alpr-reads")
        try:
            self.pool.open(wait=True, timeout=timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            self.pool.close()
            raise StoreError(f"cannot reach PostgreSQL at {self.safe_url}: {_describe(exc)}") from None
        if check_schema:
            try:
                self.check_schema()
            except BaseException:
                self.close()
                raise
        if self.governance is None and check_schema:
            from .database import PgGovernance
            try:
                self.governance = PgGovernance(url, check_schema=False)
            except BaseException:
                self.close()
                raise
            self.db = self.governance.db

    @property
    def safe_url(self) -> str:
        """The URL without any password, for messages."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            return "postgresql://?"
        return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '5432')}/" \
               f"{info.get('dbname', '')}"

    @staticmethod
    def _configure(conn: psycopg.Connection) -> None:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()

    # -- schema ---------------------------------------------------------------------------
    def schema_state(self) -> tuple[list[str], list[str]]:
        """(pending, unknown): migrations this code has that the database lacks,
        and ones the database has that this code does not know (a newer central)."""
        with self._conn() as conn:
            exists = conn.execute("SELECT to_regclass('alpr_migrations')").fetchone()[0]
            applied = {r[0] for r in conn.execute("SELECT name FROM alpr_migrations")} if exists else set()
        known = [name for name, _ in MIGRATIONS]
        return [n for n in known if n not in applied], sorted(applied - set(known))

    def check_schema(self) -> None:
        pending, unknown = self.schema_state()
        if unknown:
            raise SchemaMismatch(f"the PostgreSQL schema at {self.safe_url} is newer than this central "
                                 f"(unknown migrations: {', '.join(unknown)}); upgrade central")
        if pending:
            raise SchemaMismatch(f"the PostgreSQL schema at {self.safe_url} is not migrated "
                                 f"({len(pending)} pending: {', '.join(pending)}); run 'alpr-central db migrate'")

    def migrate(self, *, clock=None) -> list[str]:
        """Apply pending migrations in order, each with its record in one
        transaction; then make sure this and the next months have partitions."""
        now = (clock or (lambda: dt.datetime.now(_UTC)))()
        done = []
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS alpr_migrations "
                         "(name text PRIMARY KEY, applied_at timestamptz NOT NULL)")
            conn.commit()
            for name, sql in MIGRATIONS:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('alpr_migrations'))")
                    if conn.execute("SELECT 1 FROM alpr_migrations WHERE name = %s", [name]).fetchone():
                        continue
                    conn.execute(sql)
                    conn.execute("INSERT INTO alpr_migrations VALUES (%s, %s)", [name, now])
                done.append(name)
                logger.info("applied PostgreSQL migration %s", name)
        self.ensure_partitions(now - dt.timedelta(days=31), now + dt.timedelta(days=92))
        return done

    def ensure_partitions(self, lo: dt.datetime, hi: dt.datetime) -> int:
        """Create the monthly partitions covering [lo, hi] (the maintenance job:
        ``alpr-central db maintain`` runs it ahead of time; ``add_reads`` calls
        it for any month it has not seen)."""
        with self._conn() as conn:
            made = conn.execute("SELECT alpr_ensure_read_partitions(%s, %s)", [lo, hi]).fetchone()[0]
            conn.commit()
        if made:
            logger.info("created %d read partition(s) for %s..%s", made, lo.date(), hi.date())
        return made

    def partitions(self) -> list[tuple[dt.datetime, int]]:
        """(month start, estimated rows) of each ``reads`` partition, oldest first."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT c.relname, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'reads'::regclass ORDER BY c.relname").fetchall()
        return [(dt.datetime.strptime(name[-6:], "%Y%m").replace(tzinfo=_UTC), max(0, int(n))) for name, n in rows]

    def drop_month(self, month: dt.datetime) -> None:
        """Drop one whole month of reads and images (retention's fast path; the
        caller decides that nothing in it is held)."""
        suffix = _month(month).strftime("%Y%m")
        with self._conn() as conn, conn.transaction():
            for parent in ("read_images", "reads"):
                conn.execute(f"DROP TABLE IF EXISTS {parent}_{suffix}")
        with self._months_lock:
            self._months.discard(_month(month))

    # -- writes ---------------------------------------------------------------------------
    def add_reads(self, reads: Sequence[PlateRead], stored_at: dt.datetime) -> list[str]:
        stored = stored_at.isoformat()
        lines, images = [], []
        for r in reads:
            lines.append(read_line(r, stored))
            if r.crop_jpeg or r.context_jpeg:
                images.extend(image_rows(r))
        gone: set[str] = set()
        self._copy(lines, images, {_month(r.captured_at) for r in reads}, gone)
        return [r.read_id for r in reads if r.read_id not in gone]

    def _copy(self, lines: Sequence[str], images: Sequence[tuple], months: set[dt.datetime],
              gone: set[str] | None = None) -> int:
        """Store COPY-text lines of ``reads`` and rows of ``read_images`` in
        one transaction, skipping read ids already stored and those with a
        tombstone (purged by retention: added to ``gone``); returns how many
        reads were new."""
        with self._months_lock:
            missing = months - self._months
        for month in sorted(missing):  # one by one: a stray 2019 read must not create every month since
            self.ensure_partitions(month, month)
            with self._months_lock:
                self._months.add(month)
        try:
            with self._conn() as conn:
                with conn.transaction(), conn.cursor() as cur:
                    # This connection's staging tables: temporary (never WAL-logged), emptied at commit.
                    cur.execute("CREATE TEMP TABLE IF NOT EXISTS reads_in (LIKE reads) ON COMMIT DELETE ROWS")
                    with cur.copy(f"COPY reads_in ({', '.join(READ_COLUMNS)}) FROM STDIN") as cp:
                        cp.write("".join(lines))
                    if self.governance is not None:  # purged reads never come back (tombstones, see retention)
                        cur.execute(f"DELETE FROM reads_in i USING read_tombstones t WHERE t.digest = {_MARK} "
                                    "RETURNING i.read_id")
                        if gone is not None:
                            gone.update(str(row[0]) for row in cur.fetchall())
                    feed = self.governance is not None  # the hotlist matcher's feed is in this database
                    if not images and not feed:
                        cur.execute("INSERT INTO reads SELECT * FROM reads_in ON CONFLICT DO NOTHING")
                        return cur.rowcount
                    cur.execute("INSERT INTO reads SELECT * FROM reads_in ON CONFLICT DO NOTHING RETURNING read_id")
                    new_ids = {str(u): u for (u,) in cur.fetchall()}  # text -> the UUID psycopg returned
                    if not images:
                        self._feed(cur, new_ids)
                        return len(new_ids)
                    # Images of the reads new in this transaction cannot be there yet: copied
                    # straight into their table (binary, no staging); a resent read's are skipped.
                    with cur.copy(f"COPY read_images ({', '.join(IMAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types(("uuid", "timestamptz", "text", "bytea"))
                        written = set()
                        for row in images:
                            if row[0] in new_ids and (row[0], row[2]) not in written:  # a read twice in a batch
                                written.add((row[0], row[2]))
                                cp.write_row((new_ids[row[0]], *row[1:]))
                    if feed:
                        self._feed(cur, new_ids)
                    return len(new_ids)
        except (StoreError, psycopg.Error, ValueError) as exc:
            with self._months_lock:
                self._months.clear()  # a partition may have been dropped under us: look again next time
            raise StoreError(f"cannot store reads: {_describe(exc)}") from exc

    @staticmethod
    def _feed(cur, new_ids: dict[str, uuid.UUID]) -> None:
        """Add the reads new in this transaction (``new_ids``: their UUIDs by
        text) to ``read_feed`` (migration 0201), numbered under a lock held to
        the commit: the last statement."""
        if not new_ids:
            return
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [FEED_LOCK])
        cur.execute("INSERT INTO read_feed SELECT nextval('read_feed_ids'), i.read_id::text, i.device_id, "
                    f"i.camera_id, {_TEXT_TS.format('i.captured_at')}, {_TEXT_TS.format('i.stored_at')}, i.plate, "
                    "i.plate_folded, i.alternates::text FROM reads_in i WHERE i.read_id = ANY(%s) "
                    "ORDER BY i.captured_at", [list(new_ids.values())])

    def copy_rows(self, rows: Sequence[tuple], images: Iterable[tuple] = ()) -> int:
        """Store rows of ``reads`` (READ_COLUMNS order: uuid, text, datetimes,
        Jsonb, ...) and of ``read_images`` the same way (``db copy``)."""
        lines = ["\t".join(_cell(v) for v in row) + "\n" for row in rows]
        image_rows_ = [(str(row[0]), row[1], row[2], bytes(row[3])) for row in images]
        return self._copy(lines, image_rows_, {_month(row[3]) for row in rows})

    # -- reads ----------------------------------------------------------------------------
    def search(self, search: Search) -> list[StoredRead]:
        sql, args = self.search_sql(search)
        with self._conn() as conn:
            # Never a prepared statement: after a few runs PostgreSQL may switch it to a
            # generic plan that knows neither the pattern nor the time range, and walks
            # whole partitions (a 30-day wildcard search went from 1 ms to 100+ ms).
            cur = conn.execute(sql, args, prepare=False)
            names = [d.name for d in cur.description]
            return [self._row(dict(zip(names, row))) for row in cur.fetchall()]

    def count_matching(self, search: Search, *, cap: int = 10_000) -> int:
        sql, args = self.search_sql(search)
        where = sql[sql.index(" WHERE "):sql.index(" ORDER BY ")]
        with self._conn() as conn:
            return conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM reads r{where} LIMIT %s) AS m",
                                [*args[:-2], cap], prepare=False).fetchone()[0]

    def get_read(self, read_id: str) -> StoredRead | None:
        try:
            key = uuid.UUID(read_id)
        except ValueError:
            return None
        sql = (f"SELECT {', '.join('r.' + c for c in READ_COLUMNS)}, c.jpeg AS crop, x.jpeg AS context "
               "FROM reads r "
               "LEFT JOIN read_images c ON c.read_id = r.read_id AND c.captured_at = r.captured_at "
               "AND c.kind = 'crop' "
               "LEFT JOIN read_images x ON x.read_id = r.read_id AND x.captured_at = r.captured_at "
               "AND x.kind = 'context' WHERE r.read_id = %s")
        with self._conn() as conn:
            cur = conn.execute(sql, [key])
            row = cur.fetchone()
            return None if row is None else self._row(dict(zip([d.name for d in cur.description], row)))

    @staticmethod
    def search_sql(search: Search) -> tuple[str, list]:
        """The statement and parameters of a search (EXPLAIN it to see the plan)."""
        where, args = [], []
        if search.plate is not None:
            fold = "".join(ch if ch in "*?" else folded(ch) for ch in search.plate)
            if search.is_pattern:
                # The folded trigram index narrows every pattern; the plain plate rechecks.
                where.append("r.plate_folded LIKE %s")
                args.append(like_pattern(fold))
                if not search.tolerant:
                    where.append("r.plate LIKE %s")
                    args.append(like_pattern(search.plate))
            elif search.tolerant:
                where.append("r.plate_folded = %s")
                args.append(fold)
            else:
                where.append("r.plate = %s")
                args.append(search.plate)
        for clause, value in (("r.camera_id = %s", search.camera_id), ("r.device_id = %s", search.device_id),
                              ("r.captured_at >= %s", search.since), ("r.captured_at <= %s", search.until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = (f"SELECT {', '.join('r.' + c for c in READ_COLUMNS)}, c.jpeg AS crop, x.jpeg AS context "
               "FROM reads r "
               "LEFT JOIN read_images c ON c.read_id = r.read_id AND c.captured_at = r.captured_at "
               "AND c.kind = 'crop' "
               "LEFT JOIN read_images x ON x.read_id = r.read_id AND x.captured_at = r.captured_at "
               "AND x.kind = 'context' "
               f"WHERE {' AND '.join(where) or 'true'} ORDER BY r.captured_at DESC, r.read_id DESC LIMIT %s OFFSET %s")
        return sql, [*args, search.limit, search.offset]

    @staticmethod
    def _row(row: dict) -> StoredRead:
        loc = None
        if row["latitude"] is not None:
            loc = Location(row["latitude"], row["longitude"], row["heading"])
        read = PlateRead(
            read_id=str(row["read_id"]), device_id=row["device_id"], camera_id=row["camera_id"],
            captured_at=row["captured_at"].astimezone(_UTC), plate=row["plate"], confidence=row["confidence"],
            box=tuple(row["box"]), alternates=tuple(Alternate(p, c) for p, c in row["alternates"]),
            crop_jpeg=_bytes(row["crop"]), context_jpeg=_bytes(row["context"]), location=loc,
            model_version=row["model_version"])
        return StoredRead(read, row["stored_at"].astimezone(_UTC))

    def count(self) -> int:
        with self._conn() as conn:
            return conn.execute("SELECT count(*) FROM reads").fetchone()[0]

    def read_ids(self) -> list[str]:
        with self._conn() as conn:
            return [str(r[0]) for r in conn.execute("SELECT read_id FROM reads")]

    def stored_ids(self, read_ids: Sequence[str]) -> set[str]:
        """Which of these read ids are stored (``db copy`` checks with it)."""
        with self._conn() as conn:
            cur = conn.execute("SELECT read_id FROM reads WHERE read_id = ANY(%s)",
                               [[uuid.UUID(x) for x in read_ids]])
            return {str(r[0]) for r in cur}

    def count_images(self, read_ids: Sequence[str]) -> int:
        with self._conn() as conn:
            return conn.execute("SELECT count(*) FROM read_images WHERE read_id = ANY(%s)",
                                [[uuid.UUID(x) for x in read_ids]]).fetchone()[0]

    @contextlib.contextmanager
    def _conn(self):
        """A pooled connection that commits on success and rolls back on error;
        an unreachable server or a failed statement is a :class:`StoreError`."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreError(f"PostgreSQL at {self.safe_url} unreachable: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL error: {_describe(exc)}") from exc

    def close(self) -> None:
        self.pool.close()
        if self.governance is not None:
            self.governance.close()


def _cell(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Jsonb):
        return _esc(json.dumps(value.obj))
    return _esc(str(value))


def _bytes(value) -> bytes | None:
    return None if value is None else bytes(value)


def _describe(exc: BaseException) -> str:
    """An error's primary message only: a server error's DETAIL can quote row
    values (a plate), which must never reach the logs."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        return f"{type(exc).__name__}: {primary}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
