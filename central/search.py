"""Audited search: every search names a purpose and a case number, and is
written to the access log with its elements, user and result count.

The rule is enforced here, in the library, not only in the CLI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from .errors import QueryError
from .store import AccessEntry, Search, Store, StoredRead

_CASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _./:#-]{1,63}$")


@dataclasses.dataclass(frozen=True)
class Requester:
    user: str
    organization: str


def search(store: Store, query: Search, *, requester: Requester, purpose: str | None, case_number: str | None,
           purposes: tuple[str, ...], now: dt.datetime | None = None) -> list[StoredRead]:
    if not purpose:
        raise QueryError(f"a purpose is required; choose one of: {', '.join(purposes)}")
    if purpose not in purposes:
        raise QueryError(f"purpose {purpose!r} is not an authorized purpose; choose one of: {', '.join(purposes)}")
    if not case_number or not _CASE_RE.match(case_number):
        raise QueryError("a case or incident number is required (2-64 letters, digits, spaces or ._/:#-)")
    if not requester.user:
        raise QueryError("searches run as a named user")
    results = store.search(query)
    store.log_access(AccessEntry(now or dt.datetime.now(dt.timezone.utc), requester.user, requester.organization,
                                 purpose, case_number, query.describe(), len(results)))
    return results
