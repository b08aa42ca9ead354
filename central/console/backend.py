"""What a console request works with: one thread's connections to the store
and the registry, the configuration and the clock, and the helpers that turn
the library's frozen dataclasses into the plain data both the HTML pages and
their JSON twins are made of."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import re

from ..config import CentralConfig
from ..errors import QueryError
from ..fleet.registry import Registry
from ..governance.audit import utcnow
from ..store.sqlite import SQLiteStore
from .auth import ConsoleAuth


class Backend:
    """Opened once per worker thread (a SQLite connection serves one thread at a time)."""

    def __init__(self, cfg: CentralConfig, *, clock=utcnow, reads=None) -> None:
        """``reads``: on PostgreSQL, the app's shared read store (its pool serves
        every worker thread; each thread has its own governance connection)."""
        self.cfg = cfg
        self.clock = clock
        pg = cfg.store.type == "postgresql"
        if pg:  # one governance connection per worker thread, shared with the registry
            from ..store.database import PgGovernance
            self.store = ThreadStore(reads, PgGovernance(cfg.store.url))
        else:
            self.store = SQLiteStore(cfg.store.path)
        self.conn = self.store.db.conn
        self.registry = Registry(cfg.store.database, clock=clock, store=self.store if pg else None)
        self.auth = ConsoleAuth(self.conn, cfg.console, clock=clock)

    def now(self) -> dt.datetime:
        return self.clock()

    def close(self) -> None:
        self.registry.close()
        self.store.close()


class ThreadStore:
    """A worker thread's view of the PostgreSQL store: the shared read pool
    (searches, reads, images) with this thread's own governance connection as
    ``db``, so one thread's transaction never takes in another's statements."""

    def __init__(self, reads, governance) -> None:
        self._reads, self.governance, self.db = reads, governance, governance.db

    def __getattr__(self, name):
        return getattr(self._reads, name)

    def close(self) -> None:
        self.governance.close()   # the shared read pool is the app's to close


def plain(value):
    """Frozen dataclasses, enums, dates and tuples as JSON-ready data; bytes
    (images) are left out: the API serves them from their own URLs."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not isinstance(getattr(value, f.name), (bytes, bytearray))}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if not str(k).startswith("_")
                and not isinstance(v, (bytes, bytearray))}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def data_uri(jpeg: bytes | None) -> str | None:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode() if jpeg else None


_REL_RE = re.compile(r"^\s*(?:last\s+)?(\d{1,5})\s*(m|min|minutes?|h|hours?|d|days?|w|weeks?)\s*\Z", re.I)
_UNITS = {"m": dt.timedelta(minutes=1), "h": dt.timedelta(hours=1), "d": dt.timedelta(days=1),
          "w": dt.timedelta(weeks=1)}
RANGES = (("1h", "last 1 h"), ("24h", "last 24 h"), ("7d", "last 7 days"), ("30d", "last 30 days"),
          ("custom", "custom (from / to below)"))


def relative(text: str) -> dt.timedelta:
    """``24h``, ``last 24 h``, ``7 days``, ``90m``, ``2w`` as a duration."""
    m = _REL_RE.match(text or "")
    if not m or int(m.group(1)) == 0:
        raise QueryError("time range: a number and a unit, e.g. 24h, 7d, 90m, 'last 24 h'")
    return int(m.group(1)) * _UNITS[m.group(2)[0].lower()]


def when(text: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 time from a form (``datetime-local`` gives no zone: UTC)."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(f"{name}: use a date and time such as 2026-11-21T08:00 (UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def span(params, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The time window a form or API call asks for: ``range`` (a relative
    duration, default 24 h) or ``custom`` with ``since`` / ``until``."""
    choice = (params.get("range") or "24h").strip()
    if choice == "custom":
        since, until = when(params.get("since"), "from"), when(params.get("until"), "to")
        if since is None and until is None:
            raise QueryError("a custom time range needs a 'from' or a 'to' time")
        return since, until
    if choice == "all":
        return None, None
    return now - relative(choice), None


def page_number(params) -> int:
    try:
        page = int(params.get("page") or 1)
    except ValueError:
        raise QueryError("page: a whole number from 1") from None
    if not 1 <= page <= 10_000:
        raise QueryError("page: 1-10000")
    return page
