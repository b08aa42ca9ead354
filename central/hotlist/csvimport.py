"""Parsing and checking a hotlist CSV file, before anything is written.

One record per line (quoted fields may hold commas, not line breaks), UTF-8
(a leading byte-order mark is allowed), a header line naming the columns. The
mapping of header names to entry fields (case-insensitive; spaces and dashes
count as ``_``):

============== ======================================== ==========
field          header names accepted                    required
============== ======================================== ==========
plate          plate, plate_number, license_plate, tag  yes
state          state, plate_state                       no
reason         reason, description                      yes (add)
source_agency  source_agency, agency, source, ori       yes (add)
source_ref     source_ref, source_reference, reference, yes (add)
               ncic_number, ref
case_number    case_number, case                        no
expires        expires, expires_at, expiry, expiration  yes (add)
action         action  (``add`` default, ``remove``)    no
============== ======================================== ==========

Other columns are ignored and named in the result; they are never stored (a
hotlist holds no names, addresses or other personal data).

Every problem is collected with its line number: a line that is not UTF-8, a
line longer than :data:`MAX_LINE` bytes, a wrong number of fields, a missing
or malformed field, an expiry that is missing, past or later than the
category allows, the same plate and state twice.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from typing import BinaryIO

from edge_agent.wire import fold_confusables

MAX_LINE = 64 * 1024

ALIASES = {
    "plate": "plate", "plate_number": "plate", "license_plate": "plate", "tag": "plate",
    "state": "state", "plate_state": "state",
    "reason": "reason", "description": "reason",
    "source_agency": "source_agency", "agency": "source_agency", "source": "source_agency", "ori": "source_agency",
    "source_ref": "source_ref", "source_reference": "source_ref", "reference": "source_ref",
    "ncic_number": "source_ref", "ref": "source_ref",
    "case_number": "case_number", "case": "case_number",
    "expires": "expires", "expires_at": "expires", "expiry": "expires", "expiration": "expires",
    "action": "action",
}
_PLATE_RE = re.compile(r"^[A-Z0-9]{1,10}\Z")
_STATE_RE = re.compile(r"^[A-Z]{2,3}\Z")
_LIMITS = {"reason": 200, "source_agency": 100, "source_ref": 100, "case_number": 64}


@dataclasses.dataclass(frozen=True)
class EntryInput:
    """What a person (or a CSV row) gives for one entry; checked by :func:`check`."""

    plate: str
    reason: str
    source_agency: str
    source_ref: str
    expires_at: dt.datetime | None
    state: str = ""
    case_number: str = ""

    def __repr__(self) -> str:  # no plate text in logs or tracebacks
        return "EntryInput(...)"

    @property
    def folded(self) -> str:
        return fold_confusables(self.plate)


class Row(tuple):
    """A checked CSV row, as a plain tuple (a million of them are built per
    import): (line, action, plate, folded plate, state, reason, source_agency,
    source_ref, case_number, expiry as store text or None)."""


@dataclasses.dataclass(frozen=True)
class Parsed:
    rows: tuple[Row, ...]
    problems: tuple[tuple[int, str], ...]
    ignored_columns: tuple[str, ...]


def normalise_plate(raw: str) -> str:
    """Upper-case; spaces and dashes dropped. Anything else outside A-Z0-9 is an error."""
    plate = raw.strip().upper().replace(" ", "").replace("-", "")
    if not _PLATE_RE.match(plate):
        raise ValueError("plate: 1-10 letters A-Z and digits (spaces and dashes are dropped)")
    return plate


def parse_expiry(raw: str) -> dt.datetime:
    """ISO 8601 date or date-time; a date alone means the end of that day (UTC),
    a time without offset is UTC."""
    text = raw.strip()
    if not text:
        raise ValueError("expires: required (every entry has an expiry)")
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expires: {text[:40]!r} is not an ISO 8601 date or date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def ts_text(value: dt.datetime) -> str:
    """The store's timestamp text (as :func:`central.governance.audit.ts`)."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def latest_expiry(now: dt.datetime, max_days: int) -> dt.datetime:
    """The latest expiry a category allows: the end of the day (UTC) ``max_days`` from now."""
    day = (now.astimezone(dt.timezone.utc) + dt.timedelta(days=max_days)).date()
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")


def check(entry: EntryInput, now: dt.datetime, max_days: int, *, action: str = "add",
          latest: dt.datetime | None = None) -> EntryInput:
    """The entry normalised, or ValueError saying what is wrong. ``latest``:
    :func:`latest_expiry` computed once by the caller (many rows)."""
    plate = normalise_plate(entry.plate)
    state = entry.state.strip().upper()
    if state and not _STATE_RE.match(state):
        raise ValueError("state: a 2-3 letter code (e.g. CA) or empty")
    reason, agency, ref, case = (entry.reason.strip(), entry.source_agency.strip(), entry.source_ref.strip(),
                                 entry.case_number.strip())
    for name, value in (("reason", reason), ("source_agency", agency), ("source_ref", ref), ("case_number", case)):
        if len(value) > _LIMITS[name]:
            raise ValueError(f"{name}: at most {_LIMITS[name]} characters")
        if _CTRL_RE.search(value):
            raise ValueError(f"{name}: control characters are not allowed")
    if action == "add":
        for name, value in (("reason", reason), ("source_agency", agency), ("source_ref", ref)):
            if not value:
                raise ValueError(f"{name}: required")
        if entry.expires_at is None:
            raise ValueError("expires: required (every entry has an expiry)")
        if entry.expires_at.tzinfo is None:
            raise ValueError("expires: must carry a time zone")
        if entry.expires_at <= now:
            raise ValueError(f"expires: {entry.expires_at.isoformat()} is already past")
        latest = latest or latest_expiry(now, max_days)
        if entry.expires_at > latest:
            raise ValueError(f"expires: {entry.expires_at.date().isoformat()} is later than this category allows "
                             f"({max_days} days: {(latest - dt.timedelta(days=1)).date().isoformat()} at the latest)")
    return EntryInput(plate, reason, agency, ref, entry.expires_at, state, case)


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line end); None for a line over MAX_LINE bytes."""
    number = 0
    while True:
        chunk = stream.readline(MAX_LINE + 2)
        if not chunk:
            return
        number += 1
        if len(chunk) == MAX_LINE + 2 and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):  # skip the rest of the long line
                chunk = stream.readline(1 << 20)
            yield number, None
            continue
        line = chunk.rstrip(b"\r\n")
        yield number, (None if len(line) > MAX_LINE else line)


def parse(stream: BinaryIO, *, now: dt.datetime, max_days: int, allow_remove: bool = True) -> Parsed:
    """Every row of the file, checked, and every problem with its line number."""
    rows: list[Row] = []
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], int] = {}
    columns: list[str | None] | None = None
    ignored: list[str] = []
    latest = latest_expiry(now, max_days)
    expiries: dict[str, dt.datetime] = {}  # files repeat a few expiry texts: parse each once
    for number, raw in _lines(stream):
        if raw is None:
            problems.append((number, f"line longer than {MAX_LINE} bytes"))
            if columns is None:
                return Parsed((), tuple(problems), ())
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append((number, f"not UTF-8 (byte {exc.start + 1} of the line)"))
            if columns is None:
                return Parsed((), tuple(problems), ())
            continue
        if columns is None:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        if '"' in text:
            try:
                fields = next(csv.reader([text], strict=True))
            except csv.Error as exc:
                problems.append((number, f"not valid CSV ({exc})"))
                continue
        else:
            fields = text.split(",")  # the common case, without the csv module's per-line setup
        if columns is None:
            columns = []
            for name in fields:
                key = re.sub(r"[\s-]+", "_", name.strip().lower())
                field = ALIASES.get(key)
                if field is None:
                    ignored.append(name.strip())
                elif field in columns:
                    problems.append((number, f"header: two columns map to {field}"))
                columns.append(field)
            missing = [f for f in ("plate", "reason", "source_agency", "source_ref", "expires") if f not in columns]
            if missing:
                problems.append((number, f"header: no column for {', '.join(missing)} (see docs/hotlists.md "
                                         f"for the column names)"))
                return Parsed((), tuple(problems), tuple(ignored))
            at = {f: columns.index(f) for f in ALIASES.values() if f in columns}
            i_plate, i_reason, i_agency, i_ref, i_expires = (at["plate"], at["reason"], at["source_agency"],
                                                             at["source_ref"], at["expires"])
            i_state, i_case, i_action = at.get("state"), at.get("case_number"), at.get("action")
            continue
        if len(fields) != len(columns):
            problems.append((number, f"{len(fields)} fields, the header has {len(columns)}"))
            continue
        action = fields[i_action].strip().lower() or "add" if i_action is not None else "add"
        if action not in ("add", "remove") or (action == "remove" and not allow_remove):
            problems.append((number, "action: 'add' or 'remove' (remove only with --delta)"
                             if allow_remove else "action: only 'add' with --replace (the file is the whole list)"))
            continue
        plate = fields[i_plate].strip().upper().replace(" ", "").replace("-", "")
        state = fields[i_state].strip().upper() if i_state is not None else ""
        reason, agency, ref = fields[i_reason].strip(), fields[i_agency].strip(), fields[i_ref].strip()
        case = fields[i_case].strip() if i_case is not None else ""
        stamp = None
        ok = (_PLATE_RE.match(plate) is not None and (not state or _STATE_RE.match(state) is not None)
              and len(reason) <= 200 and len(agency) <= 100 and len(ref) <= 100 and len(case) <= 64
              and not _CTRL_RE.search(f"{reason},{agency},{ref},{case}"))
        if ok and action == "add":
            raw_expiry = fields[i_expires]
            cached = expiries.get(raw_expiry)
            if cached is None:
                try:
                    expires = parse_expiry(raw_expiry)
                    cached = expiries.setdefault(raw_expiry, (expires, ts_text(expires)
                                                              if now < expires <= latest else None))
                except ValueError:
                    cached = expiries.setdefault(raw_expiry, (None, None))
            stamp = cached[1]
            ok = stamp is not None and bool(reason) and bool(agency) and bool(ref)
        if not ok:  # say exactly what is wrong (the slow path, bad rows only)
            try:
                expires = parse_expiry(fields[i_expires]) if action == "add" else None
                check(EntryInput(fields[i_plate], fields[i_reason], fields[i_agency], fields[i_ref], expires,
                                 fields[i_state] if i_state is not None else "",
                                 fields[i_case] if i_case is not None else ""),
                      now, max_days, action=action, latest=latest)
                why = "invalid entry"
            except ValueError as exc:
                why = str(exc)
            problems.append((number, why))
            continue
        key = (plate, state)
        if key in seen:
            problems.append((number, f"duplicate entry: the same plate and state as line {seen[key]}"))
            continue
        seen[key] = number
        rows.append(Row((number, action, plate, fold_confusables(plate), state, reason, agency, ref, case, stamp)))
    if columns is None:
        problems.append((1, "empty file: a header line and at least one entry are expected"))
    return Parsed(tuple(rows), tuple(problems), tuple(ignored))
