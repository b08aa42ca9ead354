"""Human output for ``alpr-central``: values in words (no Python reprs), times
people read, tables with headers that never cut an id and fit the terminal by
shortening only their free-text last column. ``--json`` output never goes
through here. (``edge_agent/output.py`` is the edge CLI's twin: central
imports nothing of edge_agent beyond its wire contract.)"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Mapping, Sequence

NONE = "-"


def when(value, *, now: dt.datetime | None = None) -> str:
    """A time as ``2026-12-04 22:30:46 UTC (5 min ago)``: from a datetime, an
    ISO 8601 string or epoch seconds; ``-`` for none."""
    if value is None or value == "":
        return NONE
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    elif isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    text = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    if now is None:
        return text
    return f"{text} ({ago(now - value)})"


def ago(delta: dt.timedelta) -> str:
    s = delta.total_seconds()
    future, s = s < 0, abs(s)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            n = int(s // size)
            word = f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
            break
    else:
        word = f"{int(s)} s"
    return f"in {word}" if future else f"{word} ago"


def value(v) -> str:
    """Any value as words: ``-`` for None, lists joined with commas, a
    mapping as ``key value, ...``, booleans yes/no."""
    if v is None or v == "":
        return NONE
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k.replace('_', ' ')} {value(x)}" for k, x in v.items()) or NONE
    if isinstance(v, (list, tuple, set, frozenset)):
        return ", ".join(value(x) for x in v) or NONE
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence], *, width: int | None = None,
          cut_last: bool = True) -> str:
    """Columns as wide as their widest cell (ids are never cut); when the
    table is wider than the terminal, only the last column is shortened, with
    an ellipsis (down to 12 characters), and not at all when it holds ids
    (``cut_last=False``). When that cannot make it fit, each row is shown as
    a record of ``header  value`` lines instead (as ``psql``'s expanded
    display), so no header and no id is ever cut or wrapped. Cells go through
    :func:`value`."""
    cells = [[value(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    width = width or shutil.get_terminal_size((120, 24)).columns
    fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
    need = min(widths[-1], max(len(headers[-1]), 12)) if cut_last else widths[-1]
    if cells and fixed + need > width:
        return "\n\n".join(fields(list(zip(headers, row))) for row in cells)
    last = max(width - fixed, len(headers[-1]))

    def line(row):
        *head, tail = row
        if cut_last and len(tail) > last:
            tail = tail[: last - 1] + "…"
        return "  ".join(c.ljust(w) for c, w in zip(head, widths)) + ("  " if head else "") + tail

    return "\n".join([line(list(headers))] + [line(r) for r in cells])


def more_note(limit: int, what: str, hint: str) -> str:
    """The line that says a --limit left older results out."""
    return f"showing the newest {limit} {what}; older ones match too ({hint})"


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """One record as aligned ``label  value`` lines; values through :func:`value`."""
    width = max((len(label) for label, _ in pairs), default=0)
    return "\n".join(f"{label.ljust(width)}  {value(v)}" for label, v in pairs)


def dumps(doc) -> str:
    """``--json`` output: real JSON (times as ISO 8601, nested values as values, never as strings of JSON)."""
    return json.dumps(doc, indent=1, sort_keys=True, default=_json_default)


def _json_default(v):
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    raise TypeError(f"{type(v).__name__} is not JSON")


def as_json_value(text):
    """A stored JSON text as the value it holds (for --json output)."""
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
