"""The access log: append-only and hash-chained, so an auditor can check it
without trusting the operators.

Every action at central (search, sharing steps, holds, purges, user
management) appends one :class:`AuditEntry`: date and time, user and their
organization, action, purpose, case number, the query elements or other
detail (never plate images or tokens) and a result count.

Entry ``n`` stores ``hash_n = SHA-256(prev_hash || canonical JSON of its
fields, seq included)`` and ``prev_hash = hash_{n-1}`` (64 zeros for the
first). :func:`verify` recomputes the chain and names every entry that was
edited, deleted, inserted or reordered. Rewriting the whole tail with fresh
hashes is only caught against a head published earlier (``audit head``, the
transparency report): pass it as ``expect_head``.

Retention deletes the oldest entries only through :meth:`AccessLog.purge_before`,
which appends a ``log-purged`` entry naming the last seq and hash it removed;
verification starts from that anchor, so deleting the head any other way is
reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import sqlite3

from ..store.database import dialect, transaction  # noqa: F401  (transaction: imported from here by many)

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
_CANONICAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


def ts(value: dt.datetime) -> str:
    """The store's timestamp text (UTC, microseconds, sortable)."""
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return value.astimezone(dt.timezone.utc).strftime(_TS)


def parse_ts(text: str) -> dt.datetime:
    if isinstance(text, str) and _CANONICAL.match(text):  # what ts() writes: 10x faster than strptime
        return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.timezone.utc)
    return dt.datetime.strptime(text, _TS).replace(tzinfo=dt.timezone.utc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)




@dataclasses.dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: dt.datetime
    user: str
    organization: str
    action: str
    purpose: str
    case_number: str
    detail: dict
    result_count: int
    prev_hash: str
    hash: str

    @property
    def query(self) -> dict:
        """The query elements of a search (alias of ``detail``)."""
        return self.detail


@dataclasses.dataclass(frozen=True)
class ChainIssue:
    seq: int
    kind: str      # edited | deleted | inserted | reordered | broken | truncated | purge | future
    message: str


@dataclasses.dataclass(frozen=True)
class ChainReport:
    entries: int
    first_seq: int | None
    head_seq: int | None
    head_hash: str
    issues: tuple[ChainIssue, ...]

    @property
    def ok(self) -> bool:
        return not self.issues


def entry_hash(prev_hash: str, seq: int, at: str, user: str, organization: str, action: str, purpose: str,
               case_number: str, detail: str, result_count: int) -> str:
    body = json.dumps([seq, at, user, organization, action, purpose, case_number, detail, result_count],
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(prev_hash.encode() + b"\n" + body.encode()).hexdigest()


def _canonical(detail: dict) -> str:
    return json.dumps(detail, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


class AccessLog:
    """The hash-chained access log in the store's database (either backend)."""

    def __init__(self, conn: sqlite3.Connection, *, clock=utcnow) -> None:
        self.conn = conn
        self._clock = clock
        self._adopt_legacy()

    def _adopt_legacy(self) -> None:
        """Move rows of the pre-0200 ``access_log`` table into the chain, once."""
        if dialect(self.conn) != "sqlite":
            return  # PostgreSQL never had it
        try:
            rows = self.conn.execute("SELECT at, user, organization, purpose, case_number, query, result_count "
                                     "FROM access_log ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return
        if not rows:
            return
        with transaction(self.conn):
            for at, user, org, purpose, case, query, count in rows:
                self._append(parse_ts(at), user, org, "search", purpose, case, json.loads(query), count)
            self.conn.execute("DELETE FROM access_log")
        logger.info("moved %d legacy access-log entries into the hash chain", len(rows))

    def append(self, *, user: str, organization: str, action: str, purpose: str = "", case_number: str = "",
               detail: dict | None = None, result_count: int = 0, at: dt.datetime | None = None) -> AuditEntry:
        if not user:
            raise ValueError("every logged action names a user")
        with transaction(self.conn):
            return self._append(at or self._clock(), user, organization, action, purpose, case_number,
                                detail or {}, result_count)

    def _append(self, at, user, organization, action, purpose, case_number, detail, result_count,
                after: tuple[int, str] | None = None) -> AuditEntry:
        row = after or self.conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        at_text, detail_text = ts(at), _canonical(detail)
        h = entry_hash(prev, seq, at_text, user, organization, action, purpose, case_number, detail_text,
                       result_count)
        self.conn.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                          [seq, at_text, user, organization, action, purpose, case_number, detail_text,
                           result_count, prev, h])
        return AuditEntry(seq, parse_ts(at_text), user, organization, action, purpose, case_number,
                          json.loads(detail_text), result_count, prev, h)

    def entries(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                action: str | None = None, user: str | None = None, limit: int | None = None,
                purpose: str | None = None, case_number: str | None = None, offset: int = 0,
                newest_first: bool = False) -> list[AuditEntry]:
        where, args = [], []
        for clause, value in (("at >= ?", since and ts(since)), ("at < ?", until and ts(until)),
                              ("action = ?", action), ("user = ?", user), ("purpose = ?", purpose),
                              ("case_number = ?", case_number)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = f"SELECT * FROM audit_log WHERE {' AND '.join(where) or 'TRUE'} ORDER BY seq"
        if newest_first:
            sql += " DESC"
        if limit:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return [self._entry(r) for r in self.conn.execute(sql, args).fetchall()]

    @staticmethod
    def _entry(r) -> AuditEntry:
        try:
            detail = json.loads(r[7])
        except ValueError:
            detail = {"unparseable": r[7]}
        return AuditEntry(r[0], parse_ts(r[1]), r[2], r[3], r[4], r[5], r[6], detail, r[8], r[9], r[10])

    def head(self) -> tuple[int, str]:
        row = self.conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def purge_before(self, cutoff: dt.datetime, *, user: str, organization: str) -> int:
        """Delete entries older than ``cutoff`` (retention) and append a
        ``log-purged`` anchor naming the last removed seq and hash. Runs inside
        the caller's transaction when there is one."""
        with transaction(self.conn):
            row = self.conn.execute("SELECT max(seq) FROM audit_log WHERE at < ?", [ts(cutoff)]).fetchone()
            if row[0] is None:
                return 0
            through = row[0]
            last = self.conn.execute(
                "SELECT seq, at, user, organization, action, purpose, case_number, detail, result_count, prev_hash, "
                "hash FROM audit_log WHERE seq = ?", [through]).fetchone()
            head = self.head()  # numbering goes on even when every entry is old
            n = self.conn.execute("DELETE FROM audit_log WHERE seq <= ?", [through]).rowcount
            # The last removed entry itself goes into the record: verify recomputes its hash
            # and checks it was older than the cutoff, so a record cannot excuse deleting new entries.
            self._append(self._clock(), user, organization, "log-purged", "", "",
                         {"through_seq": through, "through_hash": last[10], "through_entry": list(last[:10]),
                          "entries": n, "cutoff": ts(cutoff)}, n, after=head)
        return n


# Purge records written before this time (by versions that did not keep the last
# removed entry) are accepted as they were, if the log's time did not run backwards
# to reach them; later ones must hold the entry.
PURGE_RECORD_FORMAT_2 = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


# How far ahead of the verifying clock an entry may be dated (clocks of several
# central hosts drift a little); a purge record dated further ahead is refused.
CLOCK_SKEW = dt.timedelta(minutes=5)


def _purge_record_issue(seq: int, at: str, d: dict, retention_days: float | None,
                        previous_at: str | None = None, next_at: str | None = None,
                        now: dt.datetime | None = None) -> str | None:
    """Why a ``log-purged`` record cannot account for the entries it says it removed
    (None if it can): it is dated no later than the verifying clock allows and no
    later than the entry after it (a record dated ahead would make any cutoff look
    old enough); its last removed entry must hash to what it names and be older
    than its cutoff, and the cutoff at least ``retention_days`` before the record
    was written."""
    try:
        if now is not None and parse_ts(at) > now + CLOCK_SKEW:
            return "it is dated after the verifying clock"
        if next_at is not None and parse_ts(at) > parse_ts(next_at):
            return "it is dated after the entry that follows it"
        if "through_entry" not in d and parse_ts(at) < PURGE_RECORD_FORMAT_2:
            if previous_at is not None and parse_ts(at) < parse_ts(previous_at):
                return "it is dated before the entry it follows"
            return None  # an older version's record: it named only the removed seq and hash
        entry, cutoff = d["through_entry"], d["cutoff"]
        if int(entry[0]) != int(d["through_seq"]):
            return "its removed entry is not the one it names"
        if entry_hash(entry[9], *entry[:9]) != d["through_hash"]:
            return "its removed entry does not match the hash it names"
        if not parse_ts(entry[1]) < parse_ts(cutoff) <= parse_ts(at):
            return "it removed an entry newer than its cutoff"
        if retention_days is not None and parse_ts(cutoff) > parse_ts(at) - dt.timedelta(days=retention_days):
            return f"its cutoff is within the {retention_days:g}-day retention period"
    except (KeyError, IndexError, TypeError, ValueError):
        return "it does not hold its last removed entry"
    return None


def verify(conn: sqlite3.Connection, *, expect_head: tuple[int, str] | None = None,
           retention_days: float | None = None, now: dt.datetime | None = None) -> ChainReport:
    """Recompute the chain; every problem becomes a :class:`ChainIssue` naming
    the entry. Streams the log (constant memory); only a broken link costs a
    lookup. A ``log-purged`` record accounts for the entries before it only if
    it holds the last of them, older than its cutoff, and (given
    ``retention_days``, the access-log retention) that cutoff is at least that
    long before the purge, and it is dated neither after the entry that follows it
    nor after ``now`` (the verifying clock, default the system's) plus
    :data:`CLOCK_SKEW`. A published head (``expect_head``) must still be in the
    log: a purge never excuses its absence."""
    now = now or utcnow()
    issues: list[ChainIssue] = []
    anchors = {}
    for seq, at, detail in conn.execute("SELECT seq, at, detail FROM audit_log WHERE action = 'log-purged'").fetchall():
        try:
            d = json.loads(detail)
            before = conn.execute("SELECT at FROM audit_log WHERE seq < ? ORDER BY seq DESC LIMIT 1", [seq]).fetchone()
            after = conn.execute("SELECT at FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1", [seq]).fetchone()
            why = _purge_record_issue(seq, at, d, retention_days, before[0] if before else None,
                                      after[0] if after else None, now)
            if why is None:
                anchors[int(d["through_seq"])] = d["through_hash"]
            else:
                issues.append(ChainIssue(seq, "purge", f"purge record {seq} accounts for nothing: {why}"))
        except (ValueError, KeyError, TypeError):
            issues.append(ChainIssue(seq, "purge", f"purge record {seq} is unreadable"))

    def seq_of(h: str) -> int | None:
        row = conn.execute("SELECT seq FROM audit_log WHERE hash = ?", [h]).fetchone()
        return row[0] if row else None

    cursor = conn.execute("SELECT seq, at, user, organization, action, purpose, case_number, detail, result_count, "
                          "prev_hash, hash FROM audit_log ORDER BY seq")
    before: tuple | None = None    # the entry before ``last``
    last: tuple | None = None
    first_seq, count = None, 0
    latest = ts(now + CLOCK_SKEW)
    expected_prev, expected_seq = GENESIS, 1
    for r in cursor:
        seq, prev, stored = r[0], r[9], r[10]
        count += 1
        if first_seq is None:
            first_seq = seq
            if seq != 1:
                if seq - 1 in anchors:
                    expected_prev, expected_seq = anchors[seq - 1], seq
                else:
                    issues.append(ChainIssue(seq, "deleted", f"entries 1-{seq - 1} are missing and no purge "
                                                             "record accounts for them"))
                    expected_prev, expected_seq = prev, seq
        if entry_hash(prev, *r[:9]) != stored:
            issues.append(ChainIssue(seq, "edited", f"entry {seq} was altered: its content does not match its hash"))
        elif r[1] > latest and r[4] != "log-purged":  # the text sorts as the time; purge records are named above
            issues.append(ChainIssue(seq, "future", f"entry {seq} is dated {r[1]}, after the verifying clock"))
        if prev != expected_prev:
            moved_from = seq_of(prev) if len(issues) < 200 else None  # bounded cost on a wrecked log
            if before is not None and prev == before[10]:
                issues.append(ChainIssue(last[0], "inserted", f"entry {last[0]} was inserted: entry {seq} links "
                                                              "past it"))
            elif moved_from is not None and last is not None and moved_from != last[0]:
                issues.append(ChainIssue(seq, "reordered", f"entry {seq} was moved: it belongs after entry "
                                                           f"{moved_from}, not after entry {last[0]}"))
            elif seq > expected_seq:
                issues.append(ChainIssue(seq, "deleted", f"entries {expected_seq}-{seq - 1} were deleted"
                                         if seq - 1 > expected_seq else f"entry {expected_seq} was deleted"))
            else:
                issues.append(ChainIssue(seq, "broken", f"entry {seq} does not link to entry "
                                                        f"{last[0] if last else '(start)'} (the entry before it was "
                                                        "altered and re-hashed, or this one was forged)"))
        elif seq != expected_seq:
            issues.append(ChainIssue(seq, "reordered", f"entry {seq} carries the wrong sequence number "
                                                       f"(expected {expected_seq})"))
        expected_prev, expected_seq = stored, seq + 1
        before, last = last, r
    if last is None:
        if expect_head and expect_head[0] > 0:
            issues.append(ChainIssue(expect_head[0], "truncated", "the log is empty but a head was published"))
        return ChainReport(0, None, None, GENESIS, tuple(issues))
    head_seq, head_hash = last[0], last[10]
    if expect_head:
        want_seq, want_hash = expect_head
        if head_seq < want_seq:
            issues.append(ChainIssue(head_seq + 1, "truncated", f"entries after {head_seq} are missing: the "
                                                                f"published head is entry {want_seq}"))
        else:
            got = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", [want_seq]).fetchone()
            if got is None:
                issues.append(ChainIssue(want_seq, "truncated", f"the published head, entry {want_seq}, is no longer "
                                                                "in the log: it was deleted"))
            elif got[0] != want_hash:
                issues.append(ChainIssue(want_seq, "broken", f"entry {want_seq} differs from the published head: "
                                                             "the log was rewritten"))
    return ChainReport(count, first_seq, head_seq, head_hash, tuple(issues))
