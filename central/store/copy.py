"""Copy a SQLite store into a migrated PostgreSQL database (``alpr-central db
copy``): reads and images (:func:`copy_sqlite_to_postgres`, in chunks), then
every governance table (:func:`copy_governance`: users, the access log and its
hash chain, the registry, holds, sharing, device audit logs, hotlists and hits,
console sign-in) with rows unchanged, so ``audit verify`` passes on the copy.
Both are idempotent (a row already there is skipped), so an interrupted copy
is resumed by running it again; each chunk of reads is checked after its
commit, and every governance table's row count after its transaction.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

from psycopg.types.json import Jsonb

from ..errors import StoreError
from . import folded
from .postgres import PostgresStore
from .sqlite import _from_ts


@dataclasses.dataclass(frozen=True)
class CopyResult:
    reads: int          # reads in the source
    images: int         # images in the source
    new: int            # reads that were not yet in PostgreSQL
    verified: int       # reads found in PostgreSQL after the copy


def copy_sqlite_to_postgres(source: str | Path, target: PostgresStore, *, chunk: int = 5000,
                            progress: Callable[[int], None] | None = None) -> CopyResult:
    path = Path(source)
    if not path.is_file():
        raise StoreError(f"{path}: no such SQLite file")
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        if not src.execute("SELECT 1 FROM sqlite_master WHERE name = 'reads'").fetchone():
            raise StoreError(f"{path} holds no reads table: not a central store")
        total_images = src.execute("SELECT count(*) FROM read_images").fetchone()[0]
        reads = new = verified = images = 0
        last = 0
        cols = [d[1] for d in src.execute("PRAGMA table_info(reads)")]
        while True:
            rows = src.execute(f"SELECT rowid, {', '.join(cols)} FROM reads WHERE rowid > ? ORDER BY rowid "
                               "LIMIT ?", [last, chunk]).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            docs = [dict(zip(cols, row[1:])) for row in rows]
            captured = {d["read_id"]: _from_ts(d["captured_at"]) for d in docs}
            out = [(uuid.UUID(d["read_id"]), d["device_id"], d["camera_id"], captured[d["read_id"]],
                    _from_ts(d["stored_at"]), d["plate"], d["plate_folded"] or folded(d["plate"]),
                    float(d["confidence"]), Jsonb(json.loads(d["box"])), Jsonb(json.loads(d["alternates"])),
                    d["latitude"], d["longitude"], d["heading"], d["model_version"]) for d in docs]
            ids = list(captured)
            marks = ",".join("?" * len(ids))
            imgs = [(uuid.UUID(rid), captured[rid], kind, bytes(jpeg)) for rid, kind, jpeg in src.execute(
                f"SELECT read_id, kind, jpeg FROM read_images WHERE read_id IN ({marks})", ids)]
            new += target.copy_rows(out, imgs)
            found = target.stored_ids(ids)
            if len(found) != len(ids):
                raise StoreError(f"{len(ids) - len(found)} read(s) of a chunk are missing in PostgreSQL after "
                                 "the commit; nothing is deleted from the source, run the copy again")
            if target.count_images(ids) < len(imgs):
                raise StoreError("images of a chunk are missing in PostgreSQL after the commit")
            reads += len(ids)
            images += len(imgs)
            verified += len(found)
            if progress:
                progress(len(ids))
        if images != total_images:
            raise StoreError(f"{total_images - images} image(s) in the source belong to no read; not copied")
        return CopyResult(reads, images, new, verified)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        src.close()


@dataclasses.dataclass(frozen=True)
class GovernanceCopy:
    tables: dict[str, int]      # table -> rows in the source (each one is now in PostgreSQL)
    audit_head: tuple[int, str]  # the access log's head after the copy (the same as the source's)


def copy_governance(source: str | Path, conn) -> GovernanceCopy:
    """Copy every governance table of a SQLite store into PostgreSQL (``conn``:
    a :class:`~.database.PgConnection` to a migrated database), in one
    transaction: each table through a staging table, ``ON CONFLICT DO
    NOTHING`` (so a second run adds nothing and a resumed one completes).
    Rows are copied unchanged (the same columns, the same timestamp text), so
    the access-log chain verifies on the copy; the counters of the numbered
    keys are moved past the copied ones. Tables are taken in the source's
    creation order, which is the order of their foreign keys."""
    from .database import NUMBERED, transaction
    path = Path(source)
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        names = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
        if "access_log" in names and src.execute("SELECT count(*) FROM access_log").fetchone()[0]:
            raise StoreError(f"{path} holds access-log entries of a version before the hash chain: open it "
                             "once with this central (any command) so they join the chain, then copy")
        target = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = current_schema()").fetchall()}
        # hotlist_matcher: SQLite's cursor counts reads' rowids; PostgreSQL's counts its read_feed.
        tables = [n for n in names if n in target and n not in ("reads", "read_images", "access_log",
                                                                 "hotlist_matcher")
                  and not n.startswith(("_", "sqlite_"))]
        missing = [n for n in names if n not in target and n not in ("_migrations", "access_log")
                   and not n.startswith("sqlite_")]
        if missing:
            raise StoreError(f"PostgreSQL has no table for {', '.join(missing)}: this central's PostgreSQL "
                             "schema lacks them (run 'alpr-central db migrate', or upgrade central)")
        counts: dict[str, int] = {}
        pg = conn._ready()
        with transaction(conn):
            for table in tables:
                cols = [r[0] for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()]
                extra = [r[1] for r in src.execute(f"PRAGMA table_info({table})") if r[1] not in cols]
                if extra:  # a SQLite migration without its PostgreSQL twin: refuse rather than drop data
                    raise StoreError(f"{table}: PostgreSQL lacks column(s) {', '.join(extra)} of the SQLite file; "
                                     "nothing copied (upgrade central, then 'alpr-central db migrate')")
                quoted = ", ".join(f'"{c}"' for c in cols)
                conn.execute(f"CREATE TEMP TABLE alpr_copy_in (LIKE {table}) ON COMMIT DROP")
                n = 0
                with pg.cursor().copy(f"COPY alpr_copy_in ({quoted}) FROM STDIN") as cp:
                    for row in src.execute(f"SELECT {quoted} FROM {table}"):
                        cp.write_row(row)
                        n += 1
                conn.execute(f"INSERT INTO {table} ({quoted}) SELECT {quoted} FROM alpr_copy_in "
                             "ON CONFLICT DO NOTHING")
                conn.execute("DROP TABLE alpr_copy_in")
                counts[table] = n
                if table in NUMBERED:
                    key = NUMBERED[table]
                    conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), "
                                 f"coalesce(max({key}), 0) + 1, false) FROM {table}")
            for table, n in counts.items():
                held = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if held < n:
                    raise StoreError(f"{table}: {n - held} row(s) missing in PostgreSQL after the copy")
            want = src.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            got = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            if want and tuple(got) != tuple(want):
                raise StoreError("the access log in PostgreSQL ends elsewhere than the source's: it held other "
                                 "entries before the copy; copy into a fresh database")
        return GovernanceCopy(counts, tuple(got) if got else (0, "0" * 64))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        src.close()
