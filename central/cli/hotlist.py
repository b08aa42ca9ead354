"""``alpr-central hotlist`` and ``alpr-central hits``: hotlists (lists, entries,
CSV import, versions) and hits (live watch, list, show, the verification
steps). A thin shell over :mod:`central.hotlist`, which checks roles and
writes the access log. See docs/hotlists.md."""

from __future__ import annotations

import json
import os
import signal
import threading

import click

from .common import config_option
from .common import parse_when as _when
from .session import Session, json_option, token_option


def _lists(s: Session):
    from ..hotlist.lists import Hotlists
    return Hotlists(s.conn, s.cfg.hotlist)


def _book(s: Session):
    from ..hotlist.hits import HitBook
    return HitBook(s.conn)


def _entry_json(e) -> dict:
    return e.as_dict()


def _echo_json(value) -> None:
    click.echo(json.dumps(value, indent=1, sort_keys=True))


@click.group("hotlist")
def hotlist_group() -> None:
    """Hotlists: named lists of wanted plates, each entry with a source and an expiry."""


@hotlist_group.command("categories")
@config_option
@token_option
@json_option
def hotlist_categories(config_path, token_file, as_json) -> None:
    """Show the configured categories and the longest expiry each allows."""
    with Session(config_path, token_file) as s:
        _lists(s).require_view(s.user)
        cfg = s.cfg
    if as_json:
        _echo_json([{"category": c, "max_days": d} for c, d in cfg.hotlist.categories])
        return
    for c, d in cfg.hotlist.categories:
        click.echo(f"{c:<20} entries expire within {d} days")


@hotlist_group.command("create")
@config_option
@token_option
@click.argument("name")
@click.option("--category", required=True, help="One of the configured categories (hotlist categories).")
@click.option("--description", default="", help="What the list is (e.g. 'SVS extract, daily').")
@json_option
def hotlist_create(config_path, token_file, name, category, description, as_json) -> None:
    """Create an empty list (admin, supervisor)."""
    with Session(config_path, token_file) as s:
        hl = _lists(s).create(s.user, name, category, description=description)
    if as_json:
        _echo_json({"list": hl.name, "category": hl.category, "version": hl.version})
        return
    click.echo(f"list {hl.name} created (category {hl.category})")


@hotlist_group.command("import")
@config_option
@token_option
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("--list", "list_name", required=True, help="The list to import into.")
@click.option("--replace", "mode", flag_value="replace", help="The list becomes exactly the file.")
@click.option("--delta", "mode", flag_value="delta", default=True,
              help="Add the file's rows; action=remove rows take entries off (default).")
@click.option("--skip-bad", is_flag=True, help="Import the good rows and report each bad line (default: refuse "
                                               "the whole file if any line is bad).")
@json_option
def hotlist_import(config_path, token_file, file, list_name, mode, skip_bad, as_json) -> None:
    """Import a CSV file atomically (column mapping: docs/hotlists.md)."""
    from ..hotlist.lists import ImportRefused
    with Session(config_path, token_file) as s:
        try:
            with open(file, "rb") as fh:
                result = _lists(s).import_csv(s.user, list_name, fh, mode=mode, skip_bad=skip_bad)
        except ImportRefused as exc:
            if as_json:
                _echo_json({"imported": False, "problems": [{"line": n, "error": why} for n, why in exc.problems]})
            else:
                for n, why in exc.problems[:200]:
                    click.echo(f"line {n}: {why}", err=True)
                if len(exc.problems) > 200:
                    click.echo(f"... and {len(exc.problems) - 200} more bad lines", err=True)
            raise click.ClickException(f"import refused, nothing imported: {len(exc.problems)} bad line(s) "
                                       f"(fix them, or --skip-bad)") from None
    if as_json:
        _echo_json({"imported": True, "list": result.list_name, "version": result.version, "mode": result.mode,
                    "counts": result.counts, "ignored_columns": list(result.ignored_columns),
                    "skipped": [{"line": n, "error": why} for n, why in result.skipped]})
        return
    for n, why in result.skipped:
        click.echo(f"skipped line {n}: {why}", err=True)
    if result.ignored_columns:
        click.echo(f"ignored columns (not stored): {', '.join(result.ignored_columns)}", err=True)
    c = result.counts
    click.echo(f"{result.list_name} version {result.version}: {c['added']} added, {c['updated']} updated, "
               f"{c['removed']} removed, {c['unchanged']} unchanged, {c['skipped']} skipped")


@hotlist_group.command("add")
@config_option
@token_option
@click.argument("plate")
@click.option("--list", "list_name", required=True, help="The list to add to.")
@click.option("--state", default="", help="Plate state (e.g. CA); optional.")
@click.option("--reason", required=True, help="Why the vehicle is wanted (no personal data).")
@click.option("--source-agency", required=True, help="The agency the entry comes from (ORI or name).")
@click.option("--source-ref", required=True, help="The source's reference (NCIC number, SVS id ...).")
@click.option("--case", "case_number", default="", help="Case number (optional).")
@click.option("--expires", required=True, help="Expiry: ISO date (end of that day, UTC) or date-time.")
@json_option
def hotlist_add(config_path, token_file, plate, list_name, state, reason, source_agency, source_ref, case_number,
                expires, as_json) -> None:
    """Add one entry (admin, supervisor); makes a new list version."""
    from ..hotlist.csvimport import EntryInput, parse_expiry
    try:
        expires_at = parse_expiry(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    with Session(config_path, token_file) as s:
        entry = _lists(s).add(s.user, list_name, EntryInput(plate, reason, source_agency, source_ref, expires_at,
                                                            state, case_number))
    if as_json:
        _echo_json(_entry_json(entry))
        return
    click.echo(f"entry {entry.entry_id} added to {list_name} (version {entry.added_version}); "
               f"expires {entry.expires_at.isoformat()}")


def _take_off(config_path, token_file, entry_id, reason, as_json, *, expire: bool) -> None:
    with Session(config_path, token_file) as s:
        entry = _lists(s).remove(s.user, entry_id, reason=reason, expire=expire)
    if as_json:
        _echo_json(_entry_json(entry))
        return
    click.echo(f"entry {entry.entry_id} {'expired' if expire else 'removed'} (list version "
               f"{entry.removed_version}); it no longer matches")


@hotlist_group.command("remove")
@config_option
@token_option
@click.argument("entry_id", type=int)
@click.option("--reason", required=True, help="Why (e.g. entered in error).")
@json_option
def hotlist_remove(config_path, token_file, entry_id, reason, as_json) -> None:
    """Remove an entry (admin, supervisor); it stops matching at once."""
    _take_off(config_path, token_file, entry_id, reason, as_json, expire=False)


@hotlist_group.command("expire")
@config_option
@token_option
@click.argument("entry_id", type=int)
@click.option("--reason", required=True, help="Why (e.g. vehicle recovered, cancelled by the source).")
@json_option
def hotlist_expire(config_path, token_file, entry_id, reason, as_json) -> None:
    """Expire an entry now (admin, supervisor); it stops matching at once."""
    _take_off(config_path, token_file, entry_id, reason, as_json, expire=True)


@hotlist_group.command("list")
@config_option
@token_option
@json_option
def hotlist_list(config_path, token_file, as_json) -> None:
    """The lists, their category, current version and active entries."""
    with Session(config_path, token_file) as s:
        lists = _lists(s).lists(s.user)
    if as_json:
        _echo_json([{"list": x.name, "category": x.category, "description": x.description, "version": x.version,
                     "active_entries": x.active_entries, "created_by": x.created_by,
                     "created_at": x.created_at.isoformat()} for x in lists])
        return
    click.echo(f"{'list':<24} {'category':<18} {'version':>7} {'active':>9}")
    for x in lists:
        click.echo(f"{x.name:<24} {x.category:<18} {x.version:>7} {x.active_entries:>9}")


@hotlist_group.command("show")
@config_option
@token_option
@click.argument("name")
@click.option("--version", type=int, help="Show an earlier version's entries.")
@click.option("--all", "include_inactive", is_flag=True, help="Include removed and expired entries.")
@click.option("--history", is_flag=True, help="Show the list's versions (who changed what, counts) instead.")
@json_option
def hotlist_show(config_path, token_file, name, version, include_inactive, history, as_json) -> None:
    """A list's entries (current version, or --version N), or its --history."""
    with Session(config_path, token_file) as s:
        lists = _lists(s)
        if history:
            versions = lists.versions(s.user, name)
            if as_json:
                _echo_json([{"version": v.version, "at": v.at.isoformat(), "user": v.user, "action": v.action,
                             "counts": v.counts} for v in versions])
                return
            for v in versions:
                click.echo(f"v{v.version:<5} {v.at:%Y-%m-%d %H:%M:%S} {v.user:<16} {v.action:<16} "
                           f"{json.dumps(v.counts, sort_keys=True)}")
            return
        entries = lists.entries(s.user, name, version=version, include_inactive=include_inactive)
    if as_json:
        _echo_json([_entry_json(e) for e in entries])
        return
    click.echo(f"{'id':>8} {'plate':<10} {'st':<3} {'expires (UTC)':<17} {'source':<20} {'ref':<16} reason")
    for e in entries:
        flag = "" if e.removed_version is None else f"  (removed v{e.removed_version})"
        click.echo(f"{e.entry_id:>8} {e.plate:<10} {e.state:<3} {e.expires_at:%Y-%m-%d %H:%M}  "
                   f"{e.source_agency[:20]:<20} {e.source_ref[:16]:<16} {e.reason[:40]}{flag}")
    click.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")


# -- hits ---------------------------------------------------------------------------
@click.group("hits")
def hits_group() -> None:
    """Hits: reads that matched a hotlist entry; verify each before any action."""


def _hit_line(h) -> str:
    kind = h.match_kind if h.match_kind == "exact" else f"POSSIBLE/{h.match_kind}"
    plate = h.read_plate or h.matched_text
    return (f"#{h.hit_id:<6} {h.captured_at:%Y-%m-%d %H:%M:%S} read {plate:<10} listed {h.entry['plate']:<10} "
            f"{kind:<20} {h.list_name}/{h.category:<16} {h.device_id}/{h.camera_id}  {h.status}")


@hits_group.command("watch")
@config_option
@token_option
@click.option("--after", type=int, help="Start after this hit id (default: only new hits).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@json_option
def hits_watch(config_path, token_file, after, duration, as_json) -> None:
    """Print each new hit as it is raised, one line each (JSON lines with --json)."""
    stop = threading.Event()
    old = signal.signal(signal.SIGINT, lambda *_: stop.set())
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    try:
        with Session(config_path, token_file) as s:
            for hit in _book(s).follow(s.user, after, stop):
                click.echo(json.dumps(hit.as_dict(), sort_keys=True) if as_json else _hit_line(hit))
    finally:
        signal.signal(signal.SIGINT, old)


@hits_group.command("list")
@config_option
@token_option
@click.option("--since", help="Captured at or after (ISO 8601).")
@click.option("--until", help="Captured at or before (ISO 8601).")
@click.option("--status", type=click.Choice(["unverified", "image-confirmed", "actionable", "misread",
                                             "stale-entry", "dispatched", "no-action", "duplicate"]))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@json_option
def hits_list(config_path, token_file, since, until, status, limit, as_json) -> None:
    """Hits, newest first."""
    with Session(config_path, token_file) as s:
        hits = _book(s).list(s.user, since=_when(since, "--since"), until=_when(until, "--until"), status=status,
                             limit=limit)
    if as_json:
        for h in hits:
            click.echo(json.dumps(h.as_dict(), sort_keys=True))
        return
    for h in hits:
        click.echo(_hit_line(h))
    click.echo(f"{len(hits)} hit(s)")


@hits_group.command("show")
@config_option
@token_option
@click.argument("hit_id", type=int)
@click.option("--save-crop", type=click.Path(dir_okay=False), help="Write the plate crop (JPEG) here.")
@click.option("--save-context", type=click.Path(dir_okay=False), help="Write the context image (JPEG) here.")
@json_option
def hits_show(config_path, token_file, hit_id, save_crop, save_context, as_json) -> None:
    """One hit: the read, the entry, the verification steps; the images on request."""
    with Session(config_path, token_file) as s:
        h = _book(s).get(s.user, hit_id)
    for path, data, what in ((save_crop, h.crop_jpeg, "crop"), (save_context, h.context_jpeg, "context image")):
        if path:
            if data is None:
                raise click.ClickException(f"hit {hit_id} has no {what} (not sent, or past image retention)")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # evidence: owner only
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
    if as_json:
        _echo_json(h.as_dict(images=True))
        return
    click.echo(_hit_line(h))
    e = h.entry
    click.echo(f"  entry {h.entry_id} (list {h.list_name} v{h.list_version}, {h.category}): {e['plate']} "
               f"{e['state']} - {e['reason']}; source {e['source_agency']} ref {e['source_ref']}"
               + (f"; case {e['case_number']}" if e["case_number"] else "") + f"; expires {e['expires_at']}")
    loc = f"{h.latitude:.5f},{h.longitude:.5f} heading {h.heading}" if h.latitude is not None else "unknown"
    click.echo(f"  read {h.read_id} confidence {h.confidence} at {loc}; crop "
               f"{'yes' if h.crop_jpeg else 'no'}, context {'yes' if h.context_jpeg else 'no'}")
    for step, value, by, at in (("visual check", h.visual and (h.visual + (f" ({h.visual_text})" if h.visual_text
                                                                            else "")), h.visual_by, h.visual_at),
                                ("source check", h.source, h.source_by, h.source_at),
                                ("disposition", h.disposition, h.disposition_by, h.disposition_at)):
        click.echo(f"  {step:<13} {value or '-'}" + (f"  by {by} at {at:%Y-%m-%d %H:%M:%S}" if by else ""))


def _step_output(h, as_json) -> None:
    if as_json:
        _echo_json(h.as_dict())
    else:
        click.echo(f"hit {h.hit_id}: {h.status}" + ("  (ACTIONABLE)" if h.actionable and not h.disposition else ""))


@hits_group.command("check-image")
@config_option
@token_option
@click.argument("hit_id", type=int)
@click.option("--yes", "shows", flag_value="yes", help="The image shows the listed plate.")
@click.option("--misread", "true_text", help="The image shows another plate: give the text it really shows.")
@json_option
def hits_check_image(config_path, token_file, hit_id, shows, true_text, as_json) -> None:
    """Step 1: the visual check (operator, supervisor)."""
    if bool(shows) == bool(true_text):
        raise click.UsageError("give exactly one of --yes or --misread TEXT")
    with Session(config_path, token_file) as s:
        h = _book(s).check_image(s.user, hit_id, shows_plate=bool(shows), true_text=true_text)
    _step_output(h, as_json)


@hits_group.command("check-source")
@config_option
@token_option
@click.argument("hit_id", type=int)
@click.option("--yes", "answer", flag_value="yes", help="The entry is still current with its source.")
@click.option("--no-longer-wanted", "answer", flag_value="no", help="The source no longer wants the vehicle.")
@click.option("--note", default="", help="How it was checked (e.g. NCIC query at 14:02, dispatcher 12).")
@json_option
def hits_check_source(config_path, token_file, hit_id, answer, note, as_json) -> None:
    """Step 2: the source check, after a yes visual check (operator, supervisor)."""
    if answer is None:
        raise click.UsageError("give --yes or --no-longer-wanted")
    with Session(config_path, token_file) as s:
        h = _book(s).check_source(s.user, hit_id, current=answer == "yes", note=note)
    _step_output(h, as_json)


@hits_group.command("close")
@config_option
@token_option
@click.argument("hit_id", type=int)
@click.option("--disposition", required=True,
              type=click.Choice(["dispatched", "no-action", "misread", "stale-entry", "duplicate"]),
              help="dispatched needs both checks yes.")
@click.option("--note", default="")
@json_option
def hits_close(config_path, token_file, hit_id, disposition, note, as_json) -> None:
    """Step 3: the disposition (operator, supervisor)."""
    with Session(config_path, token_file) as s:
        h = _book(s).dispose(s.user, hit_id, disposition, note=note)
    _step_output(h, as_json)


@hits_group.command("deliveries")
@config_option
@token_option
@click.argument("hit_id", type=int)
@json_option
def hits_deliveries(config_path, token_file, hit_id, as_json) -> None:
    """The webhook deliveries of a hit and every attempt."""
    from ..hotlist.webhooks import deliveries
    with Session(config_path, token_file) as s:
        rows = deliveries(s.conn, s.user, hit_id)
    if as_json:
        _echo_json(rows)
        return
    for d in rows:
        click.echo(f"{d['endpoint']:<16} {d['status']:<10} attempts {d['attempts']}")
        for a in d["history"]:
            click.echo(f"    #{a['attempt']} {a['at']} {a['status_code'] or '-'} {a['error'] or 'ok'} "
                       f"({a['seconds']:.2f}s)")


COMMANDS = (hotlist_group, hits_group)
