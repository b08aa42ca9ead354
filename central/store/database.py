"""The connection the governance modules use, on either backend.

Users, the access log, retention and holds, sharing, the registry, device
audit logs, device health and hotlists talk to a *connection* with the small
surface of :class:`sqlite3.Connection` they always used: ``execute(sql,
params)`` with ``?`` placeholders returning a cursor (``fetchone``,
``fetchall``, iteration, ``rowcount``, ``lastrowid``, ``description``),
``executemany``, ``in_transaction`` and ``BEGIN IMMEDIATE`` / ``COMMIT`` /
``ROLLBACK`` (see :func:`transaction`).

On SQLite that connection *is* the :class:`sqlite3.Connection`: nothing is
translated, nothing changes. On PostgreSQL it is a :class:`PgConnection`: one
psycopg 3 connection in autocommit mode with client-side binding
(``psycopg.ClientCursor``, so untyped parameters behave as in SQLite), that
rewrites the few places where the two SQL dialects differ, once per distinct
statement (cached):

- ``?`` placeholders become ``%s`` (and a literal ``%`` becomes ``%%``);
- the column ``user`` (a reserved word in PostgreSQL, where a bare ``user`` is
  the *session role*) is quoted;
- ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``;
- SQLite's ``temp.`` schema is PostgreSQL's ``pg_temp.``;
- ``INSERT`` into a table whose key the database numbers gets ``RETURNING``
  that key, which the cursor offers as ``lastrowid`` (:data:`NUMBERED`);
- ``BEGIN IMMEDIATE`` (SQLite: take the write lock now) becomes ``BEGIN`` plus
  a transaction-scoped advisory lock, so read-modify-write steps (the next
  access-log sequence number and hash) are serialised exactly as on SQLite,
  across every process writing to the same database.

Statements that have no common spelling ask :func:`dialect` and branch (a
handful: SQLite's ``json_each``, ``PRAGMA``, ``sqlite_master``). Timestamps
stay the same canonical UTC text on both backends (``2026-08-15T12:00:00.000000Z``,
which sorts as time): the access-log hash is computed over that text, so the
chain verifies byte for byte on both, and ``db copy`` moves rows unchanged.
Errors: catch :data:`IntegrityError` / :data:`OperationalError` /
:data:`DatabaseError` (tuples holding both backends' classes).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

try:  # the PostgreSQL driver is an optional dependency (the central extra)
    import psycopg
    from psycopg.adapt import Loader
except ImportError:  # pragma: no cover - SQLite-only installs
    psycopg = None
    Loader = object

__all__ = ["PgConnection", "connect", "dialect", "transaction", "IntegrityError", "OperationalError",
           "DatabaseError", "NUMBERED", "translate"]

IntegrityError: tuple = (sqlite3.IntegrityError,) + ((psycopg.IntegrityError,) if psycopg else ())
OperationalError: tuple = (sqlite3.OperationalError,) + ((psycopg.OperationalError,) if psycopg else ())
DatabaseError: tuple = (sqlite3.DatabaseError,) + ((psycopg.Error,) if psycopg else ())

# Tables whose integer key the database assigns (SQLite ``INTEGER PRIMARY KEY``;
# PostgreSQL identity columns): an INSERT into one returns the new key as ``lastrowid``.
NUMBERED = {
    "registry_events": "id", "legal_holds": "hold_id", "purge_runs": "id", "share_requests": "request_id",
    "hotlists": "list_id", "hotlist_entries": "entry_id", "hits": "hit_id", "labelled_examples": "example_id",
    "webhook_deliveries": "delivery_id", "device_health_history": "id", "access_log": "id",
    "rollouts": "rollout_id", "device_alerts": "alert_id", "alert_events": "event_id",
    "alert_deliveries": "delivery_id", "hit_upgrades": "upgrade_id",
}

# The advisory lock every write transaction takes on PostgreSQL (SQLite's single writer).
WRITE_LOCK = 0x616C7072  # "alpr"


def dialect(conn) -> str:
    """``"sqlite"`` or ``"postgresql"``: which SQL the connection speaks."""
    return getattr(conn, "dialect", "sqlite")


@contextlib.contextmanager
def transaction(conn):
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error); joins an outer
    transaction when one is open, so an action and its log entry commit
    together. Works on both backends (see the module docstring)."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(target: str | Path, *, timeout: float = 30):
    """A connection to the governance tables: ``target`` is a SQLite file path
    or a ``postgresql://`` URL. SQLite connections are the plain
    :class:`sqlite3.Connection` the modules always had (autocommit; callers set
    their PRAGMAs)."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PgConnection(text, timeout=timeout)
    return sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=timeout)


_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"])*\"|[^'\"]+", re.S)
_INSERT = re.compile(r"^\s*INSERT\s+(OR\s+IGNORE\s+)?INTO\s+([A-Za-z_][A-Za-z0-9_]*)", re.I)


@functools.lru_cache(maxsize=1024)
def translate(sql: str, params: bool = True) -> tuple[str, str | None]:
    """SQLite-dialect ``sql`` as PostgreSQL, and the key column to return as
    ``lastrowid`` (or None). ``params``: the statement is run with parameters
    (then ``?`` becomes ``%s`` and ``%`` is doubled)."""
    head = sql.strip().rstrip(";").strip()
    if re.fullmatch(r"BEGIN(\s+(IMMEDIATE|EXCLUSIVE|DEFERRED))?(\s+TRANSACTION)?", head, re.I):
        return "BEGIN", None
    parts = []
    for piece in _TOKEN.findall(sql):
        if piece[0] in "'\"":
            parts.append(piece.replace("%", "%%") if params else piece)
            continue
        if params:
            piece = piece.replace("%", "%%").replace("?", "%s")
        piece = re.sub(r'(?<![\w"])user(?![\w"(])', '"user"', piece)
        parts.append(re.sub(r"(?<![\w.])temp\.", "pg_temp.", piece))  # SQLite's temp schema
    out = "".join(parts)
    out = re.sub(r"^(\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+)pg_temp\.", r"\1", out, flags=re.I)  # in its table's schema
    returning = None
    m = _INSERT.match(out)
    if m:
        if m.group(1):
            out = out[:m.start(1)] + out[m.end(1):]
            out = _before_returning(out, " ON CONFLICT DO NOTHING")
        table = m.group(2).lower()
        if table in NUMBERED and not re.search(r"\bRETURNING\b", out, re.I):
            returning = NUMBERED[table]
            out = out.rstrip().rstrip(";") + f" RETURNING {returning}"
    return out, returning


def _before_returning(sql: str, clause: str) -> str:
    m = re.search(r"\sRETURNING\s", sql, re.I)
    sql = sql.rstrip().rstrip(";")
    return sql[:m.start()] + clause + sql[m.start():] if m else sql + clause


class _NumberLoader(Loader):
    """``numeric`` (what ``sum`` of integers gives in PostgreSQL) as int when whole,
    else float, as SQLite returns them."""

    def load(self, data):
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class PgCursor:
    """The part of :class:`sqlite3.Cursor` the modules use."""

    def __init__(self, cur, lastrowid=None, rows: list | None = None) -> None:
        self._cur = cur
        self.lastrowid = lastrowid
        self._rows = rows  # an INSERT ... RETURNING whose key was read already
        self.rowcount = cur.rowcount

    @property
    def description(self):
        return self._cur.description

    def fetchone(self):
        if self._rows is not None:
            return self._rows.pop(0) if self._rows else None
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self):
        if self._rows is not None:
            rows, self._rows = self._rows, []
            return rows
        return self._cur.fetchall() if self._cur.description else []

    def fetchmany(self, size: int = 1):
        return [row for row in (self.fetchone() for _ in range(size)) if row is not None]

    def __iter__(self):
        return iter(self.fetchall())

    def close(self) -> None:
        self._cur.close()


class PgConnection:
    """The governance tables on PostgreSQL behind :class:`sqlite3.Connection`'s
    surface (see the module docstring). One server connection, shared by the
    threads of a process as the SQLite connection is; reconnects when the server
    went away and no transaction was open."""

    dialect = "postgresql"

    def __init__(self, url: str, *, timeout: float = 30) -> None:
        if psycopg is None:
            raise RuntimeError("PostgreSQL needs psycopg: pip install 'alpr-platform[central]'")
        self.url = url
        self.timeout = timeout
        self._lock = threading.RLock()
        self._conn = None
        self._connect()

    def _connect(self) -> None:
        conn = psycopg.connect(self.url, autocommit=True, cursor_factory=psycopg.ClientCursor,
                               connect_timeout=max(1, int(self.timeout)))
        conn.execute("SET TIME ZONE 'UTC'")
        conn.adapters.register_loader("numeric", _NumberLoader)
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed and \
            conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def _ready(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._connect()
        return self._conn

    def execute(self, sql: str, params: Sequence | None = None) -> PgCursor:
        with self._lock:
            conn = self._ready()
            query, key = translate(sql, bool(params))
            cur = conn.cursor()
            if query == "BEGIN":
                cur.execute("BEGIN")
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
                return PgCursor(cur)
            cur.execute(query, list(params) if params else None)
            if key is not None:
                rows = cur.fetchall()
                return PgCursor(cur, rows[-1][0] if rows else None, [])
            return PgCursor(cur)

    def executemany(self, sql: str, seq: Iterable[Sequence]) -> PgCursor:
        with self._lock:
            conn = self._ready()
            query, _key = translate(sql, True)
            cur = conn.cursor()
            cur.executemany(query, [list(p) for p in seq])
            return PgCursor(cur)

    def commit(self) -> None:
        if self.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.execute("ROLLBACK")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def __enter__(self):
        """``with conn:`` commits on success, rolls back on error (as sqlite3)."""
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        (self.rollback if exc_type else self.commit)()


class PgDatabase:
    """What ``store.db`` offers on PostgreSQL (on SQLite it is a
    ``sqlite_utils.Database``): the connection, and ``execute``."""

    dialect = "postgresql"

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence | None = None) -> PgCursor:
        return self.conn.execute(sql, params)


class PgGovernance:
    """The governance tables in the PostgreSQL database at ``url`` (migrated by
    ``alpr-central db migrate``): ``.db`` and ``.close()`` as a SQLite store."""

    def __init__(self, url: str, *, check_schema: bool = True) -> None:
        from ..errors import SchemaMismatch, StoreError
        from .pg_migrations import MIGRATIONS
        try:
            conn = PgConnection(url)
        except psycopg.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise StoreError(f"cannot reach PostgreSQL: {type(exc).__name__}: {first}") from None
        self.db = PgDatabase(conn)
        if not check_schema:
            return
        try:
            exists = conn.execute("SELECT to_regclass('alpr_migrations')").fetchone()[0]
            applied = {r[0] for r in conn.execute("SELECT name FROM alpr_migrations")} if exists else set()
        except BaseException:
            conn.close()
            raise
        known = [name for name, _ in MIGRATIONS]
        pending, unknown = [n for n in known if n not in applied], sorted(applied - set(known))
        if unknown or pending:
            conn.close()
            raise SchemaMismatch(
                f"the PostgreSQL schema is newer than this central (unknown migrations: {', '.join(unknown)}); "
                "upgrade central" if unknown else
                f"the PostgreSQL schema is not migrated ({len(pending)} pending: {', '.join(pending)}); "
                "run 'alpr-central db migrate'")

    def close(self) -> None:
        self.db.conn.close()


def open_governance(target: str | Path):
    """The governance tables at ``target`` (a SQLite file path, migrated on
    open; or a ``postgresql://`` URL, which must be migrated): an object with
    ``.db.conn`` (the connection) and ``.close()``."""
    if str(target).startswith(("postgresql://", "postgres://")):
        return PgGovernance(str(target))
    from .sqlite import SQLiteStore
    return SQLiteStore(target)
