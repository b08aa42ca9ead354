"""Audited search: every search runs as an authenticated user whose role may
search, names a purpose from the configured list and a case or incident
number, and is written to the hash-chained access log (:mod:`central.governance.audit`)
with its elements, the user and their organization, and the result count.
Refused attempts are logged too (``search-refused``, with the reason).

The rules are enforced here, in the library, not only in the CLI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re

from .audit import AccessLog
from ..config import DEFAULT_CASE_PATTERN
from ..errors import PermissionDenied, QueryError
from ..store import Search, Store, StoredRead
from .users import Permission, Role, User, require

logger = logging.getLogger(__name__)

MAX_LOGGED_CHARS = 64     # of each refused query element, in the access log
MAX_RANGE = dt.timedelta(days=31)


def Requester(user: str, organization: str) -> User:  # noqa: N802 - kept for callers that predate accounts
    """Deprecated: an operator-role :class:`User` built without
    authentication. Use ``UserDirectory.authenticate`` instead."""
    return User(user, organization, Role.OPERATOR)


def check_case_number(case_number: str | None, error: type[Exception] = QueryError,
                      pattern: str = DEFAULT_CASE_PATTERN) -> str:
    """The case number, if it matches ``pattern`` (config ``[query]
    case_number_pattern``; the default wants 2-64 letters, digits, spaces or
    ._/:#- with at least one digit, so "n/a" or "none" is refused)."""
    if not case_number or len(case_number) > 64 or not re.fullmatch(pattern, case_number):
        raise error("a case or incident number is required (the configured form, by default 2-64 letters, "
                    "digits, spaces or ._/:#- with at least one digit; not a placeholder like n/a)")
    return case_number


def check_range(query: Search, max_range: dt.timedelta = MAX_RANGE) -> None:
    """A search without a plate must name a bounded time range (since and
    until, at most ``max_range`` apart): no open-ended sweep of everything."""
    if query.plate is not None:
        return
    if query.since is None or query.until is None:
        raise QueryError("a search without a plate needs both --since and --until")
    if query.until - query.since > max_range:
        raise QueryError(f"a search without a plate may span at most {max_range.days} days")


def _trimmed(value):
    """What of a refused query element goes into the access log: strings cut
    to MAX_LOGGED_CHARS with the original length noted (a 100 kB pattern must
    not make a 100 kB log entry)."""
    if isinstance(value, str) and len(value) > MAX_LOGGED_CHARS:
        return f"{value[:MAX_LOGGED_CHARS]}...({len(value)} chars)"
    return value


def check_purpose(purpose: str | None, purposes: tuple[str, ...], error: type[Exception] = QueryError) -> str:
    if not purpose:
        raise error(f"a purpose is required; choose one of: {', '.join(purposes)}")
    if purpose not in purposes:
        raise error(f"purpose {purpose!r} is not an authorized purpose; choose one of: {', '.join(purposes)}")
    return purpose


def refused(store: Store, user: User | None, query: dict, reason: Exception, *, purpose: str | None,
            case_number: str | None, now: dt.datetime | None = None) -> None:
    """Log a search that was refused (no purpose, a malformed option, no
    permission) with what was asked and why; a user who could not be named is
    only logged to the service log."""
    if user is not None and user.name:
        AccessLog(store.db.conn).append(
            user=user.name, organization=user.organization, action="search-refused",
            purpose=_trimmed(purpose or ""), case_number=_trimmed(case_number or ""),
            detail={"query": {str(k)[:32]: _trimmed(v) for k, v in list(query.items())[:16]},
                    "reason": str(reason)[:256]},
            at=now or dt.datetime.now(dt.timezone.utc))
    logger.warning("search refused for user %s: %s", user.name if user else "?", reason)


def search(store: Store, query: Search, *, user: User | None = None, requester: User | None = None,
           purpose: str | None, case_number: str | None, purposes: tuple[str, ...],
           now: dt.datetime | None = None, case_number_pattern: str = DEFAULT_CASE_PATTERN,
           max_range: dt.timedelta = MAX_RANGE) -> list[StoredRead]:
    """Run ``query`` for ``user`` if the rules allow: a role that may search,
    an authorized purpose, a case number of the configured form, and a plate
    or a bounded time range. Logged either way."""
    user = user or requester
    log = AccessLog(store.db.conn)
    at = now or dt.datetime.now(dt.timezone.utc)
    try:
        if user is None or not user.name:
            raise QueryError("searches run as a named user")
        require(user, Permission.SEARCH)
        check_purpose(purpose, purposes)
        check_case_number(case_number, pattern=case_number_pattern)
        check_range(query, max_range)
    except (QueryError, PermissionDenied) as exc:
        refused(store, user, query.describe(), exc, purpose=purpose, case_number=case_number, now=at)
        raise
    try:
        results = store.search(query)
    except Exception as exc:  # a search that fails is still a search: logged, then reported
        log.append(user=user.name, organization=user.organization, action="search-failed", purpose=purpose,
                   case_number=case_number, detail={"query": query.describe(), "error": type(exc).__name__}, at=at)
        raise
    log.append(user=user.name, organization=user.organization, action="search", purpose=purpose,
               case_number=case_number, detail=query.describe(), result_count=len(results), at=at)
    return results


@dataclasses.dataclass(frozen=True)
class SearchPage:
    """One page of an audited search: the reads, and how many matched in all
    (counted up to ``cap``; ``matched == cap`` means "at least")."""

    reads: list[StoredRead]
    matched: int
    offset: int
    cap: int

    @property
    def remaining(self) -> int:
        """Matches after this page (a lower bound when the count reached its cap)."""
        return max(0, self.matched - self.offset - len(self.reads))

    @property
    def capped(self) -> bool:
        return self.matched >= self.cap


def _checked(store: Store, user: User | None, asked: dict, *, purpose: str | None, case_number: str | None,
             purposes: tuple[str, ...], at: dt.datetime) -> User:
    try:
        if user is None or not user.name:
            raise QueryError("searches run as a named user")
        require(user, Permission.SEARCH)
        check_purpose(purpose, purposes)
        check_case_number(case_number)
    except (QueryError, PermissionDenied) as exc:
        refused(store, user, asked, exc, purpose=purpose, case_number=case_number, now=at)
        raise
    return user


def search_page(store: Store, query: Search, *, user: User | None, purpose: str | None, case_number: str | None,
                purposes: tuple[str, ...], cap: int = 10_000, now: dt.datetime | None = None) -> SearchPage:
    """A page of :func:`search` (``query.limit`` reads from ``query.offset``)
    with the count of all matches; checked and logged the same way, each page
    one ``search`` entry."""
    at = now or dt.datetime.now(dt.timezone.utc)
    user = _checked(store, user, query.describe(), purpose=purpose, case_number=case_number, purposes=purposes,
                    at=at)
    log = AccessLog(store.db.conn)
    try:
        reads = store.search(query)
        matched = max(store.count_matching(query, cap=cap), query.offset + len(reads))
    except Exception as exc:
        log.append(user=user.name, organization=user.organization, action="search-failed", purpose=purpose,
                   case_number=case_number, detail={"query": query.describe(), "error": type(exc).__name__}, at=at)
        raise
    log.append(user=user.name, organization=user.organization, action="search", purpose=purpose,
               case_number=case_number, detail=query.describe(), result_count=len(reads), at=at)
    return SearchPage(reads, matched, query.offset, cap)


def view_read(store: Store, read_id: str, *, user: User | None, purpose: str | None, case_number: str | None,
              purposes: tuple[str, ...], part: str = "read", now: dt.datetime | None = None) -> StoredRead:
    """One read (``part`` = ``read`` for its detail, ``crop`` or ``context`` for
    an image), for a user who may search, under a purpose and case number;
    logged as ``read-view`` / ``image-view``. An unknown id is a
    :class:`QueryError` (logged too, with no result)."""
    at = now or dt.datetime.now(dt.timezone.utc)
    asked = {"read_id": read_id, "part": part}
    user = _checked(store, user, asked, purpose=purpose, case_number=case_number, purposes=purposes, at=at)
    stored = store.get_read(read_id)
    AccessLog(store.db.conn).append(
        user=user.name, organization=user.organization, action="read-view" if part == "read" else "image-view",
        purpose=purpose, case_number=case_number, detail=asked, result_count=int(stored is not None), at=at)
    if stored is None:
        raise QueryError(f"no read {read_id}")
    return stored
