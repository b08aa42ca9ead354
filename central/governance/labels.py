"""The labelled set: reads whose text people at the site have confirmed,
kept at central to adapt the OCR to the site (``alpr-central models adapt``).

Four sources, each an action of a named user written to the access log:

=================== ============================================================
``hit-confirmed``   a hit's visual check said the image shows the listed plate:
                    the listed plate is the text (:mod:`central.hotlist.hits`)
``hit-misread``     a hit's visual check said misread, with the text the image
                    really shows
``search-confirmed`` an operator typed the text a search result's image shows,
                    and it is the text the camera read (:meth:`LabelledSet.confirm`)
``search-corrected`` the same, and the camera read something else
=================== ============================================================

Each example is tied to its read (``read_id``) and keeps a copy of the read's
crop with the read text, the true text, the model version that made the read
and who labelled it when. **It follows the retention of the read it came
from**: the purge (:mod:`central.governance.retention`) deletes an example
once its read is gone or its read's crop image is gone (``hit_days`` /
``non_hit_days`` / ``image_days``, legal holds included), and at the latest
``labelled_example_days`` after capture. So the set never holds a crop or a
plate text that central no longer holds as a read.

Confirming a search result needs the ``search`` permission (operator,
supervisor; never a business account) and, like viewing a read, a purpose and
a case number. The operator types what the image shows rather than ticking
"looks right", so a confirmation is a reading, not a rubber stamp. A user's
second confirmation of the same read replaces their first.

:meth:`LabelledSet.export` writes the set in the format ``models adapt`` and
``alpr-edge evaluate --crops`` take (``labels.csv`` with ``image,text`` and
one JPEG per example) into a new private folder (0700, files 0600); a read
with labels that disagree is left out and counted. Exporting needs
``adapt-models`` and is logged with counts (never texts); ``export.json`` in
the folder says by when the copy must be deleted (the earliest day central's
own image retention would have purged one of its crops).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import uuid

from ..config import DEFAULT_CASE_PATTERN, Retention
from ..errors import PolicyError, QueryError
from ..store import Store
from ..store.database import dialect
from .audit import AccessLog, parse_ts, transaction, ts, utcnow
from .search import check_case_number, check_purpose, refused
from .users import Permission, User, require

logger = logging.getLogger(__name__)

SOURCES = ("hit-confirmed", "hit-misread", "search-confirmed", "search-corrected")
MAX_TEXT = 10
_CHARSET = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def clean_text(raw: str | None) -> str:
    """The text as the set stores it: upper case, spaces and dashes dropped,
    1-10 letters and digits (the OCR's charset); anything else is refused."""
    text = (raw or "").strip().upper().replace(" ", "").replace("-", "")
    if not 1 <= len(text) <= MAX_TEXT or any(c not in _CHARSET for c in text):
        raise PolicyError("the text the image shows: 1-10 letters A-Z and digits (spaces and dashes are dropped)")
    return text


def record(conn, *, source: str, read_id: str, crop: bytes | None, read_text: str,
           true_text: str, captured_at: dt.datetime, labelled_by: str, labelled_at: dt.datetime,
           hit_id: int | None = None) -> int:
    """Insert one example (in the caller's transaction; the caller logs the
    action). The model version is the read's, as stored."""
    if source not in SOURCES:
        raise ValueError(f"source: one of {SOURCES}")
    model = conn.execute("SELECT model_version FROM reads WHERE read_id = ?", [read_id]).fetchone() \
        if _read_key(conn, read_id) else None
    cur = conn.execute(
        "INSERT INTO labelled_examples (read_id, source, hit_id, crop, read_text, true_text, model_version, "
        "captured_at, labelled_by, labelled_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [read_id, source, hit_id, crop, read_text, true_text, model[0] if model else "", ts(captured_at),
         labelled_by, ts(labelled_at)])
    return cur.lastrowid


def _read_key(conn, read_id: str) -> bool:
    """Can ``read_id`` name a read? Always on SQLite (text keys); on PostgreSQL
    reads are keyed by uuid, and a string that is none names no read (instead
    of an invalid-input error from the server)."""
    if dialect(conn) == "sqlite":
        return True
    try:
        uuid.UUID(str(read_id))
    except ValueError:
        return False
    return True


def _when(value) -> dt.datetime:
    """A capture time as reads hold it: canonical text (SQLite) or timestamptz (PostgreSQL)."""
    return value if isinstance(value, dt.datetime) else parse_ts(value)


@dataclasses.dataclass(frozen=True)
class Example:
    example_id: int
    read_id: str
    source: str
    hit_id: int | None
    read_text: str
    true_text: str
    model_version: str
    captured_at: dt.datetime
    labelled_by: str
    labelled_at: dt.datetime
    crop_jpeg: bytes | None = dataclasses.field(default=None, repr=False)

    def __repr__(self) -> str:  # no plate text in logs or tracebacks
        return f"Example(example_id={self.example_id}, read_id={self.read_id!r}, source={self.source!r})"

    @property
    def corrected(self) -> bool:
        return self.read_text != self.true_text


@dataclasses.dataclass(frozen=True)
class ExportResult:
    folder: str
    examples: int           # crops written
    reads_conflicting: int  # reads whose labels disagree: left out
    delete_by: dt.date | None
    by_source: dict


_COLUMNS = ("example_id, read_id, source, hit_id, read_text, true_text, model_version, captured_at, labelled_by, "
            "labelled_at, crop")


def _example(row) -> Example:
    r = list(row)
    r[7], r[9] = parse_ts(r[7]), parse_ts(r[9])
    return Example(*r[:10], crop_jpeg=r[10])


class LabelledSet:
    """The labelled examples beside the store's reads (either backend: the
    store's governance connection reaches its reads on SQLite and PostgreSQL)."""

    def __init__(self, store: Store, *, clock=utcnow) -> None:
        self.store = store
        self.conn = store.db.conn
        self._clock = clock
        self.log = AccessLog(self.conn, clock=clock)

    # -- an operator's confirmation or correction of a search result -----------
    def confirm(self, actor: User, read_id: str, text: str, *, purpose: str | None, case_number: str | None,
                purposes: tuple[str, ...], case_number_pattern: str | None = None) -> Example:
        """Record that the image of read ``read_id`` shows ``text``: a
        confirmation when it is what the camera read, a correction otherwise.
        Checked like viewing a read (``search`` permission, purpose, case
        number); refused attempts are logged as refused searches."""
        now = self._clock()
        asked = {"read_id": read_id, "action": "confirm"}
        try:
            require(actor, Permission.SEARCH)
            check_purpose(purpose, purposes, PolicyError)
            check_case_number(case_number, PolicyError, case_number_pattern or DEFAULT_CASE_PATTERN)
        except PolicyError as exc:
            refused(self.store, actor, asked, exc, purpose=purpose, case_number=case_number, now=now)
            raise
        true_text = clean_text(text)
        problem: Exception | None = None
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT r.plate, r.captured_at, i.jpeg FROM reads r LEFT JOIN read_images i "
                "ON i.read_id = r.read_id AND i.kind = 'crop' WHERE r.read_id = ?", [read_id]).fetchone() \
                if _read_key(self.conn, read_id) else None
            if row is None:
                problem = QueryError(f"no read {read_id}")
            elif row[2] is None:
                problem = PolicyError(f"read {read_id} has no crop image any more (past image retention): "
                                      "nothing to confirm against")
            if problem is not None:   # an attempt on a read is logged like a view of it: with no result
                self.log.append(user=actor.name, organization=actor.organization, action="read-label",
                                purpose=purpose, case_number=case_number,
                                detail={"read_id": read_id, "result": "refused", "reason": str(problem)[:200]},
                                result_count=0)
        if problem is not None:
            raise problem
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT r.plate, r.captured_at, i.jpeg FROM reads r JOIN read_images i "
                "ON i.read_id = r.read_id AND i.kind = 'crop' WHERE r.read_id = ?", [read_id]).fetchone()
            if row is None:   # purged between the two transactions
                raise QueryError(f"no read {read_id} with its crop")
            plate, captured, crop = row
            source = "search-confirmed" if true_text == plate else "search-corrected"
            replaced = self.conn.execute(
                "DELETE FROM labelled_examples WHERE read_id = ? AND labelled_by = ? "
                "AND source IN ('search-confirmed', 'search-corrected')", [read_id, actor.name]).rowcount
            example_id = record(self.conn, source=source, read_id=read_id, crop=crop, read_text=plate,
                                true_text=true_text, captured_at=_when(captured), labelled_by=actor.name,
                                labelled_at=now)
            self.log.append(user=actor.name, organization=actor.organization, action="read-label",
                            purpose=purpose, case_number=case_number,
                            detail={"read_id": read_id, "result": source.split("-")[1], "example": example_id,
                                    "replaced": replaced}, result_count=1)
        logger.info("read %s labelled (%s) by %s", read_id, source, actor.name)
        return self.get(example_id)

    def get(self, example_id: int) -> Example:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM labelled_examples WHERE example_id = ?",
                                [example_id]).fetchone()
        if row is None:
            raise PolicyError(f"no labelled example {example_id}")
        return _example(row)

    def counts(self) -> dict[str, int]:
        """Examples per source (no texts)."""
        got = dict(self.conn.execute("SELECT source, count(*) FROM labelled_examples GROUP BY source").fetchall())
        return {s: got.get(s, 0) for s in SOURCES}

    # -- export ------------------------------------------------------------------
    def export(self, actor: User, folder: str, *, retention: Retention = Retention()) -> ExportResult:
        """Write the set to a new folder ``folder`` (0700): ``NNNNNN.jpg`` crops
        (0600), ``labels.csv`` (``image,text,read_text,model_version,source``)
        and ``export.json`` (counts, who, when, delete by). One row per read;
        a read whose labels disagree is left out. Logged with counts."""
        require(actor, Permission.ADAPT_MODELS)
        now = self._clock()
        if os.path.lexists(folder):
            raise PolicyError(f"{folder} exists: export to a new folder")
        # Decide on the texts first (no crops in memory), then stream the crops one by one.
        by_read: dict[str, list[tuple]] = {}
        for row in self.conn.execute("SELECT example_id, read_id, true_text, source, captured_at FROM "
                                     "labelled_examples WHERE crop IS NOT NULL ORDER BY example_id"):
            by_read.setdefault(row[1], []).append(row)
        chosen, conflicting = [], 0
        for group in by_read.values():
            if len({r[2] for r in group}) > 1:
                conflicting += 1
                continue
            chosen.append(group[-1])   # the latest label of the read
        chosen.sort()
        oldest = min((parse_ts(r[4]) for r in chosen), default=None)
        delete_by = (oldest + dt.timedelta(days=retention.image_days)).date() if oldest else None
        by_source = {s: sum(r[3] == s for r in chosen) for s in SOURCES}
        with transaction(self.conn):   # logged before anything is written: a failed write still names who
            self.log.append(user=actor.name, organization=actor.organization, action="labels-export",
                            detail={"folder": os.path.basename(os.path.normpath(folder)), "examples": len(chosen),
                                    "reads_conflicting": conflicting, "by_source": by_source,
                                    "delete_by": delete_by.isoformat() if delete_by else None},
                            result_count=len(chosen))
        os.makedirs(folder, mode=0o700)
        os.chmod(folder, 0o700)
        try:
            rows = []
            for n, (example_id, *_rest) in enumerate(chosen, 1):
                e = self.get(example_id)
                name = f"{n:06d}.jpg"
                _write_private(os.path.join(folder, name), e.crop_jpeg)
                rows.append([name, e.true_text, e.read_text, e.model_version, e.source])
            fd = os.open(os.path.join(folder, "labels.csv"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["image", "text", "read_text", "model_version", "source"])
                w.writerows(rows)
            meta = {"exported_at": ts(now), "exported_by": actor.name, "organization": actor.organization,
                    "examples": len(chosen), "reads_conflicting": conflicting, "by_source": by_source,
                    "delete_by": delete_by.isoformat() if delete_by else None,
                    "notice": "ALPR information (Civil Code 1798.90.5): keep it private and delete this folder by "
                              "delete_by, when central's own retention would have purged the oldest crop."}
            _write_private(os.path.join(folder, "export.json"), (json.dumps(meta, indent=1) + "\n").encode())
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)   # no half-written copy of ALPR data left behind
            raise
        logger.info("labelled set exported: %d examples, %d reads with disagreeing labels left out",
                    len(chosen), conflicting)
        return ExportResult(folder, len(chosen), conflicting, delete_by, by_source)


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
