"""Named hotlists, their entries and versions.

A list has a category (``[hotlist.categories]`` in the central config: name =
the longest an entry may stay valid, in days). An entry holds the plate, its
state (optional), the reason, the source agency and the source's reference,
a case number (optional), who entered it and when, and its expiry (required,
never later than the category allows). There is no field for names,
addresses or other personal data.

Every change (add, remove, expire, import) makes a new list version, in one
transaction with its access-log entry, which carries counts and ids, never
plate text. An entry belongs to versions ``added_version`` up to (not
including) ``removed_version``, so every earlier version can be shown until
retention deletes entries ``hotlist_days`` after their expiry or removal.

Only roles with ``manage-hotlist`` change lists; ``view-hotlist`` reads them.
Business users have neither.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sqlite3
from typing import BinaryIO

from ..config import Hotlist as HotlistConfig
from ..errors import PolicyError
from ..governance.audit import AccessLog, parse_ts, transaction, ts, utcnow
from ..store.database import IntegrityError, dialect
from ..governance.users import Permission, User, require
from . import csvimport
from .csvimport import EntryInput

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_ENTRY_COLUMNS = ("entry_id, list_id, plate, state, reason, source_agency, source_ref, case_number, entered_by, "
                  "entered_at, expires_at, added_version, removed_version, removed_at, removed_by")


class ImportRefused(PolicyError):
    """A CSV file with bad rows; ``problems`` lists (line number, why). Nothing was imported."""

    def __init__(self, problems: tuple[tuple[int, str], ...]) -> None:
        self.problems = problems
        shown = "; ".join(f"line {n}: {why}" for n, why in problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        super().__init__(f"import refused, nothing imported: {len(problems)} bad line(s): {shown}{more}")


@dataclasses.dataclass(frozen=True)
class HotList:
    list_id: int
    name: str
    category: str
    description: str
    version: int
    created_by: str
    created_at: dt.datetime
    active_entries: int = 0


@dataclasses.dataclass(frozen=True)
class Entry:
    entry_id: int
    list_id: int
    plate: str
    state: str
    reason: str
    source_agency: str
    source_ref: str
    case_number: str
    entered_by: str
    entered_at: dt.datetime
    expires_at: dt.datetime
    added_version: int
    removed_version: int | None
    removed_at: dt.datetime | None
    removed_by: str | None

    def __repr__(self) -> str:  # no plate text in logs or tracebacks
        return f"Entry(entry_id={self.entry_id}, list_id={self.list_id})"

    def active(self, now: dt.datetime) -> bool:
        return self.removed_version is None and self.expires_at > now

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, dt.datetime):
                d[k] = v.isoformat()
        return d


@dataclasses.dataclass(frozen=True)
class Version:
    version: int
    at: dt.datetime
    user: str
    action: str
    counts: dict


@dataclasses.dataclass(frozen=True)
class ImportResult:
    list_name: str
    version: int
    mode: str
    counts: dict           # added, updated, removed, unchanged, skipped
    skipped: tuple[tuple[int, str], ...]
    ignored_columns: tuple[str, ...]


def _entry(row) -> Entry:
    (eid, lid, plate, state, reason, agency, ref, case, by, at, exp, added, removed, removed_at, removed_by) = row
    return Entry(eid, lid, plate, state, reason, agency, ref, case, by, parse_ts(at), parse_ts(exp), added, removed,
                 parse_ts(removed_at) if removed_at else None, removed_by)


class Hotlists:
    """Lists and entries in the store's SQLite database."""

    def __init__(self, conn: sqlite3.Connection, cfg: HotlistConfig = HotlistConfig(), *, clock=utcnow) -> None:
        self.conn = conn
        self.cfg = cfg
        self._clock = clock
        self.log = AccessLog(conn, clock=clock)

    # -- lists ---------------------------------------------------------------
    def create(self, actor: User, name: str, category: str, *, description: str = "") -> HotList:
        require(actor, Permission.MANAGE_HOTLIST)
        if not _NAME_RE.match(name or ""):
            raise PolicyError("list name: 1-64 letters, digits and ._- starting with a letter or digit")
        self._max_days(category)
        now = self._clock()
        with transaction(self.conn):
            try:
                cur = self.conn.execute("INSERT INTO hotlists (name, category, description, version, created_by, "
                                        "created_at) VALUES (?,?,?,0,?,?)",
                                        [name, category, description.strip(), actor.name, ts(now)])
            except IntegrityError:
                raise PolicyError(f"a list named {name} exists already") from None
            self.log.append(user=actor.name, organization=actor.organization, action="hotlist-create",
                            detail={"list": name, "category": category})
        return self.get(actor, name)

    def _max_days(self, category: str) -> int:
        days = self.cfg.max_days(category)
        if days is None:
            raise PolicyError(f"category {category!r} is not configured; one of: "
                              f"{', '.join(c for c, _ in self.cfg.categories)} ([hotlist.categories])")
        return days

    def lists(self, actor: User) -> list[HotList]:
        self.require_view(actor)
        now = ts(self._clock())
        rows = self.conn.execute(
            "SELECT l.list_id, l.name, l.category, l.description, l.version, l.created_by, l.created_at, "
            "(SELECT count(*) FROM hotlist_entries e WHERE e.list_id = l.list_id AND e.removed_version IS NULL "
            " AND e.expires_at > ?) FROM hotlists l ORDER BY l.name", [now]).fetchall()
        return [HotList(*r[:6], parse_ts(r[6]), r[7]) for r in rows]

    def get(self, actor: User, name: str) -> HotList:
        self.require_view(actor)
        for hotlist in self.lists(actor):
            if hotlist.name == name:
                return hotlist
        raise PolicyError(f"no hotlist named {name}")

    @staticmethod
    def require_view(actor: User) -> None:
        if not isinstance(actor, User) or not (actor.can(Permission.VIEW_HOTLIST)
                                               or actor.can(Permission.MANAGE_HOTLIST)):
            require(actor, Permission.VIEW_HOTLIST)  # raises with the usual message

    def _list_row(self, name: str) -> tuple[int, str, int]:
        row = self.conn.execute("SELECT list_id, category, version FROM hotlists WHERE name = ?", [name]).fetchone()
        if row is None:
            raise PolicyError(f"no hotlist named {name}")
        return row

    def _bump(self, list_id: int, version: int, actor: User, action: str, counts: dict) -> int:
        new = version + 1
        self.conn.execute("UPDATE hotlists SET version = ? WHERE list_id = ?", [new, list_id])
        self.conn.execute("INSERT INTO hotlist_versions VALUES (?,?,?,?,?,?)",
                          [list_id, new, ts(self._clock()), actor.name, action, json.dumps(counts, sort_keys=True)])
        return new

    # -- entries -------------------------------------------------------------
    def entries(self, actor: User, name: str, *, version: int | None = None, include_inactive: bool = False,
                log: bool = True) -> list[Entry]:
        """Entries of the current version (active ones unless ``include_inactive``),
        or of an earlier ``version``. Viewing is logged."""
        self.require_view(actor)
        list_id, _, current = self._list_row(name)
        if version is not None:
            if not 1 <= version <= current:
                raise PolicyError(f"{name} has versions 1-{current}")
            rows = self.conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM hotlist_entries WHERE list_id = ? AND added_version <= ? "
                f"AND (removed_version IS NULL OR removed_version > ?) ORDER BY plate, state",
                [list_id, version, version]).fetchall()
        elif include_inactive:
            rows = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM hotlist_entries WHERE list_id = ? "
                                     f"ORDER BY plate, state, entry_id", [list_id]).fetchall()
        else:
            rows = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM hotlist_entries WHERE list_id = ? "
                                     f"AND removed_version IS NULL AND expires_at > ? ORDER BY plate, state",
                                     [list_id, ts(self._clock())]).fetchall()
        result = [_entry(r) for r in rows]
        if log:
            self.log.append(user=actor.name, organization=actor.organization, action="hotlist-view",
                            detail={"list": name, "version": version or current}, result_count=len(result))
        return result

    def entry(self, actor: User, entry_id: int) -> Entry:
        self.require_view(actor)
        row = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM hotlist_entries WHERE entry_id = ?",
                                [entry_id]).fetchone()
        if row is None:
            raise PolicyError(f"no hotlist entry {entry_id}")
        return _entry(row)

    def versions(self, actor: User, name: str) -> list[Version]:
        self.require_view(actor)
        list_id, _, _ = self._list_row(name)
        rows = self.conn.execute("SELECT version, at, user, action, counts FROM hotlist_versions WHERE list_id = ? "
                                 "ORDER BY version", [list_id]).fetchall()
        return [Version(v, parse_ts(at), user, action, json.loads(c)) for v, at, user, action, c in rows]

    def add(self, actor: User, name: str, entry: EntryInput) -> Entry:
        """Add one entry (a new version). An active entry for the same plate and
        state in this list is refused: expire or remove it first."""
        require(actor, Permission.MANAGE_HOTLIST)
        now = self._clock()
        with transaction(self.conn):
            list_id, category, version = self._list_row(name)
            try:
                entry = csvimport.check(entry, now, self._max_days(category))
            except ValueError as exc:
                raise PolicyError(str(exc)) from None
            if self.conn.execute("SELECT 1 FROM hotlist_entries WHERE list_id = ? AND plate = ? AND state = ? "
                                 "AND removed_version IS NULL AND expires_at > ?",
                                 [list_id, entry.plate, entry.state, ts(now)]).fetchone():
                raise PolicyError(f"{name} already holds an active entry for this plate and state")
            new = self._bump(list_id, version, actor, "add", {"added": 1})
            cur = self.conn.execute(
                "INSERT INTO hotlist_entries (list_id, plate, plate_folded, state, reason, source_agency, source_ref, "
                "case_number, entered_by, entered_at, expires_at, added_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [list_id, entry.plate, entry.folded, entry.state, entry.reason, entry.source_agency,
                 entry.source_ref, entry.case_number, actor.name, ts(now), ts(entry.expires_at), new])
            self.log.append(user=actor.name, organization=actor.organization, action="hotlist-add",
                            case_number=entry.case_number,
                            detail={"list": name, "version": new, "entry": cur.lastrowid,
                                    "expires_at": ts(entry.expires_at)}, result_count=1)
        return self.entry(actor, cur.lastrowid)

    def remove(self, actor: User, entry_id: int, *, reason: str, expire: bool = False) -> Entry:
        """Take an entry off its list (a new version); it stops matching at once.
        ``expire`` records the change as an expiry (the source cancelled it or
        its time ran out) rather than a removal (entered in error); either way
        retention counts from now."""
        require(actor, Permission.MANAGE_HOTLIST)
        if not reason or not reason.strip():
            raise PolicyError("say why the entry goes (e.g. vehicle recovered, entered in error)")
        now = self._clock()
        with transaction(self.conn):
            row = self.conn.execute("SELECT l.name, l.list_id, l.version, e.removed_version, e.expires_at "
                                    "FROM hotlist_entries e JOIN hotlists l USING (list_id) WHERE e.entry_id = ?",
                                    [entry_id]).fetchone()
            if row is None:
                raise PolicyError(f"no hotlist entry {entry_id}")
            name, list_id, version, removed, _expires = row
            if removed is not None:
                raise PolicyError(f"entry {entry_id} was removed in version {removed} already")
            action = "expire" if expire else "remove"
            new = self._bump(list_id, version, actor, action, {"expired" if expire else "removed": 1})
            self.conn.execute("UPDATE hotlist_entries SET removed_version = ?, removed_at = ?, removed_by = ? "
                              "WHERE entry_id = ?", [new, ts(now), actor.name, entry_id])
            self.log.append(user=actor.name, organization=actor.organization, action=f"hotlist-{action}",
                            detail={"list": name, "version": new, "entry": entry_id, "reason": reason.strip()},
                            result_count=1)
        return self.entry(actor, entry_id)

    # -- import --------------------------------------------------------------
    def import_csv(self, actor: User, name: str, stream: BinaryIO, *, mode: str = "delta",
                   skip_bad: bool = False) -> ImportResult:
        """Import a CSV file (see :mod:`.csvimport`) atomically. ``delta`` adds
        the file's rows (a row for a plate and state already listed replaces
        that entry; ``action=remove`` rows take entries off); ``replace`` makes
        the list exactly the file. With bad rows nothing is imported
        (:class:`ImportRefused`) unless ``skip_bad``, which imports the rest and
        reports each skipped line."""
        require(actor, Permission.MANAGE_HOTLIST)
        if mode not in ("delta", "replace"):
            raise PolicyError("mode: delta or replace")
        now = self._clock()
        list_id, category, _ = self._list_row(name)
        parsed = csvimport.parse(stream, now=now, max_days=self._max_days(category), allow_remove=mode == "delta")
        problems = list(parsed.problems)
        if problems and not skip_bad:
            raise ImportRefused(tuple(sorted(problems)))
        if dialect(self.conn) != "sqlite":
            return self._import_rows(actor, name, mode, skip_bad, parsed, problems, now)
        temp_store = self.conn.execute("PRAGMA temp_store").fetchone()[0]
        self.conn.execute("PRAGMA temp_store=MEMORY")  # the staging table: no temp file round trips
        try:
            return self._import_rows(actor, name, mode, skip_bad, parsed, problems, now)
        finally:
            self.conn.execute(f"PRAGMA temp_store={int(temp_store)}")

    def _import_rows(self, actor, name, mode, skip_bad, parsed, problems, now) -> ImportResult:
        with transaction(self.conn):
            list_id, category, version = self._list_row(name)
            c = self.conn
            c.execute("CREATE TEMP TABLE hotlist_import (line INTEGER, action TEXT, plate TEXT, plate_folded TEXT, "
                      "state TEXT, reason TEXT, source_agency TEXT, source_ref TEXT, case_number TEXT, "
                      "expires_at TEXT, existing INTEGER, same INTEGER)")
            try:
                c.executemany("INSERT INTO temp.hotlist_import VALUES (?,?,?,?,?,?,?,?,?,?,NULL,0)", parsed.rows)
                c.execute("CREATE INDEX temp.hotlist_import_key ON hotlist_import(plate, state)")
                c.execute("UPDATE temp.hotlist_import SET existing = (SELECT e.entry_id FROM hotlist_entries e "
                          "WHERE e.list_id = ? AND e.plate = hotlist_import.plate AND e.state = hotlist_import.state "
                          "AND e.removed_version IS NULL AND e.expires_at > ?)", [list_id, ts(now)])
                c.execute("UPDATE temp.hotlist_import SET same = 1 WHERE existing IS NOT NULL AND action = 'add' "
                          "AND EXISTS (SELECT 1 FROM hotlist_entries e WHERE e.entry_id = existing "
                          "AND e.reason = hotlist_import.reason AND e.source_agency = hotlist_import.source_agency "
                          "AND e.source_ref = hotlist_import.source_ref "
                          "AND e.case_number = hotlist_import.case_number "
                          "AND e.expires_at = hotlist_import.expires_at)")
                absent = c.execute("SELECT line FROM temp.hotlist_import WHERE action = 'remove' "
                                   "AND existing IS NULL ORDER BY line").fetchall()
                for (line,) in absent:
                    problems.append((line, "remove: no active entry for this plate and state in the list"))
                if absent and not skip_bad:
                    raise ImportRefused(tuple(sorted(problems)))
                counts = {
                    "added": c.execute("SELECT count(*) FROM temp.hotlist_import WHERE action = 'add' "
                                       "AND existing IS NULL").fetchone()[0],
                    "updated": c.execute("SELECT count(*) FROM temp.hotlist_import WHERE action = 'add' "
                                         "AND existing IS NOT NULL AND same = 0").fetchone()[0],
                    "unchanged": c.execute("SELECT count(*) FROM temp.hotlist_import WHERE same = 1").fetchone()[0],
                    "removed": c.execute("SELECT count(*) FROM temp.hotlist_import WHERE action = 'remove' "
                                         "AND existing IS NOT NULL").fetchone()[0],
                    "skipped": len(problems),
                }
                if mode == "replace":
                    counts["removed"] = c.execute(
                        "SELECT count(*) FROM hotlist_entries e WHERE e.list_id = ? AND e.removed_version IS NULL "
                        "AND e.expires_at > ? AND e.entry_id NOT IN (SELECT existing FROM temp.hotlist_import "
                        "WHERE existing IS NOT NULL)", [list_id, ts(now)]).fetchone()[0]
                new = version
                if counts["added"] or counts["updated"] or counts["removed"]:
                    new = self._bump(list_id, version, actor, f"import-{mode}",
                                     {k: v for k, v in counts.items() if k != "unchanged"})
                    gone = ("SELECT existing FROM temp.hotlist_import WHERE existing IS NOT NULL AND same = 0"
                            if mode == "delta" else
                            "SELECT entry_id FROM hotlist_entries WHERE list_id = ? AND removed_version IS NULL "
                            "AND (expires_at <= ? OR entry_id NOT IN (SELECT existing FROM temp.hotlist_import "
                            "WHERE existing IS NOT NULL AND same = 1))")
                    args = [] if mode == "delta" else [list_id, ts(now)]
                    c.execute(f"UPDATE hotlist_entries SET removed_version = ?, removed_at = ?, removed_by = ? "
                              f"WHERE entry_id IN ({gone})", [new, ts(now), actor.name, *args])
                    c.execute("INSERT INTO hotlist_entries (list_id, plate, plate_folded, state, reason, "
                              "source_agency, source_ref, case_number, entered_by, entered_at, expires_at, added_version) "
                              "SELECT ?, plate, plate_folded, state, reason, source_agency, source_ref, case_number, "
                              "?, ?, expires_at, ? FROM temp.hotlist_import WHERE action = 'add' AND same = 0 "
                              "ORDER BY plate, state", [list_id, actor.name, ts(now), new])
                self.log.append(user=actor.name, organization=actor.organization, action="hotlist-import",
                                detail={"list": name, "mode": mode, "version": new, "counts": counts,
                                        "skipped_lines": [n for n, _ in sorted(problems)][:1000]},
                                result_count=counts["added"] + counts["updated"] + counts["removed"])
            finally:
                c.execute("DROP TABLE IF EXISTS temp.hotlist_import")
        return ImportResult(name, new, mode, counts, tuple(sorted(problems)), parsed.ignored_columns)
