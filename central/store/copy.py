"""Copy a SQLite store's reads and images into a migrated PostgreSQL store
(``alpr-central db copy``).

Only ``reads`` and ``read_images`` are copied: the governance tables (users,
the access log and its hash chain, devices, holds, sharing, device audit logs)
are not on PostgreSQL yet and stay in the SQLite file, which central goes on
using as ``[store] path``. The copy is idempotent (a read already there is
skipped), so an interrupted copy is resumed by running it again; each chunk is
checked after its commit: every read id and every image of the chunk must be
in PostgreSQL, or the copy stops with an error.
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
