"""Storage of plate reads behind one small interface.

``sqlite`` (default) is :mod:`.sqlite`; ``postgresql`` (:mod:`.postgres`)
keeps the reads on PostgreSQL when one SQLite file is outgrown.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import datetime as dt
import re
from collections.abc import Sequence

from edge_agent.wire import Alternate, PlateRead, fold_confusables, normalise_plate

from ..errors import QueryError

__all__ = ["Store", "Search", "StoredRead", "open_store"]

_PATTERN_RE = re.compile(r"^[A-Z0-9*?]{1,16}\Z")


@dataclasses.dataclass(frozen=True)
class Search:
    """What to look for. ``plate`` may hold ``*`` (any run) and ``?`` (one
    character); ``tolerant`` also matches confusable characters (0/O/D/Q,
    1/I/L, 8/B, 5/S, 2/Z)."""

    plate: str | None = None
    tolerant: bool = False
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    camera_id: str | None = None
    device_id: str | None = None
    limit: int = 100
    offset: int = 0   # paging: skip this many of the newest matches

    def __post_init__(self) -> None:
        if self.plate is not None:
            plate = "".join(ch for ch in self.plate.upper() if ch.isalnum() or ch in "*?")
            if not _PATTERN_RE.match(plate) or not plate.strip("*?"):
                raise QueryError("plate pattern: 1-16 letters, digits, '*' or '?', with at least one letter or digit")
            object.__setattr__(self, "plate", plate)
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise QueryError(f"{name} must carry a time zone")
        if self.since and self.until and self.since > self.until:
            raise QueryError("since is after until")
        if not 1 <= self.limit <= 100_000:
            raise QueryError("limit must be 1-100000")
        if not 0 <= self.offset <= 1_000_000:
            raise QueryError("offset must be 0-1000000")
        if self.plate is None and self.camera_id is None and self.device_id is None and self.since is None:
            raise QueryError("give at least a plate, a camera, a device or a start time")

    @property
    def is_pattern(self) -> bool:
        return self.plate is not None and any(ch in self.plate for ch in "*?")

    def describe(self) -> dict:
        """The query elements, as recorded in the access log."""
        return {k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                for k, v in dataclasses.asdict(self).items() if v not in (None, False)}


@dataclasses.dataclass(frozen=True)
class StoredRead:
    read: PlateRead
    stored_at: dt.datetime


class Store(abc.ABC):
    @abc.abstractmethod
    def add_reads(self, reads: Sequence[PlateRead], stored_at: dt.datetime) -> list[str]:
        """Durably store reads in one transaction. Returns the ids that are now
        stored, including ones that were already there (idempotent); a read
        whose id has a tombstone (purged by retention) is left out."""

    @abc.abstractmethod
    def search(self, search: Search) -> list[StoredRead]:
        """Matching reads, newest first."""

    @abc.abstractmethod
    def count(self) -> int: ...

    def count_matching(self, search: Search, *, cap: int = 10_000) -> int:
        """How many reads match ``search`` (ignoring its limit and offset),
        counted up to ``cap`` (a page says "10,000+" rather than scanning on)."""
        raise NotImplementedError

    def get_read(self, read_id: str) -> StoredRead | None:
        """One read with its images, or None."""
        raise NotImplementedError

    @abc.abstractmethod
    def close(self) -> None: ...


def open_store(kind: str, path: str, url: str = "") -> Store:
    """The configured store. ``postgresql``: everything in the PostgreSQL
    database at ``url`` (its schema must be migrated: ``alpr-central db
    migrate``); ``path`` is then unused."""
    from .sqlite import SQLiteStore
    if kind == "sqlite":
        return SQLiteStore(path)
    if kind == "postgresql":
        from .postgres import PostgresStore
        return PostgresStore(url)
    raise ValueError(f"unknown store type {kind!r}")


def tombstone(read_id: str) -> bytes:
    """The compact, one-way mark a purged read leaves (see migration 0400)."""
    return hashlib.sha256(read_id.encode()).digest()[:16]


def folded(plate: str) -> str:
    return fold_confusables(normalise_plate(plate))


__all__ += ["Alternate", "folded", "tombstone"]
