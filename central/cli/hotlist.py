"""``alpr-central hotlist`` and ``alpr-central hits``: hotlists (lists, entries,
CSV import, versions) and hits (live watch, list, show, the verification
steps). A thin shell over :mod:`central.hotlist`, which checks roles and
writes the access log. See docs/hotlists.md."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading

import click

from . import output as out
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
    click.echo(out.dumps(value))


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
    click.echo(out.table(["category", "entries expire within"], [[c, f"{d} days"] for c, d in cfg.hotlist.categories]))


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
               f"expires {out.when(entry.expires_at)}")


def _take_off(config_path, token_file, entry_id, reason, as_json, *, expire: bool) -> None:
    with Session(config_path, token_file) as s:
        entry = _lists(s).remove(s.user, entry_id, reason=reason, expire=expire)
    if as_json:
        _echo_json(_entry_json(entry))
        return
    click.echo(f"entry {entry.entry_id} {'expired' if expire else 'removed'} (list version "
               f"{entry.removed_version}); it no longer matches")


def _take_off_command(verb: str, expire: bool, help_text: str, reason_help: str) -> click.Command:
    """``hotlist remove`` and ``hotlist expire``: one command each, one body."""
    @hotlist_group.command(verb, help=help_text)
    @config_option
    @token_option
    @click.argument("entry_id", type=int)
    @click.option("--reason", required=True, help=reason_help)
    @json_option
    def take_off(config_path, token_file, entry_id, reason, as_json) -> None:
        _take_off(config_path, token_file, entry_id, reason, as_json, expire=expire)
    return take_off


hotlist_remove = _take_off_command("remove", False, "Remove an entry (admin, supervisor); it stops matching at once.",
                                   "Why (e.g. entered in error).")
hotlist_expire = _take_off_command("expire", True, "Expire an entry now (admin, supervisor); it stops matching at once.",
                                   "Why (e.g. vehicle recovered, cancelled by the source).")


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
    if not lists:
        click.echo("no hotlists yet (alpr-central hotlist create)")
        return
    click.echo(out.table(["list", "category", "version", "active entries", "created by", "description"],
                         [[x.name, x.category, x.version, x.active_entries, x.created_by, x.description]
                          for x in lists]))


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
            click.echo(out.table(["version", "at", "by", "action", "changes"],
                                 [[v.version, out.when(v.at), v.user, v.action,
                                   {k: n for k, n in sorted(v.counts.items()) if n}] for v in versions]))
            return
        entries = lists.entries(s.user, name, version=version, include_inactive=include_inactive)
    if as_json:
        _echo_json([_entry_json(e) for e in entries])
        return
    now = dt.datetime.now(dt.timezone.utc)
    click.echo(out.table(["entry", "plate", "state", "status", "expires", "source", "ref", "case", "reason"],
                         [[e.entry_id, e.plate, e.state, _entry_status(e, now), out.when(e.expires_at),
                           e.source_agency, e.source_ref, e.case_number, e.reason] for e in entries]))
    click.echo(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")


def _entry_status(e, now: dt.datetime) -> str:
    if e.removed_version is not None:
        return f"removed in v{e.removed_version}"
    return "active" if e.expires_at > now else "expired"


# -- hits ---------------------------------------------------------------------------
@click.group("hits")
def hits_group() -> None:
    """Hits: reads that matched a hotlist entry; verify each before any action."""


def _kind(h) -> str:
    return h.match_kind if h.match_kind == "exact" else f"POSSIBLE ({h.match_kind})"


def _hit_line(h) -> str:
    """One hit on one line (for 'hits watch', a stream that cannot wait for a table)."""
    return (f"hit {h.hit_id}  {out.when(h.captured_at)}  read {h.read_plate or h.matched_text}  listed "
            f"{h.entry['plate']}  {_kind(h)}  {h.list_name} ({h.category})  {h.device_id}/{h.camera_id}  {h.status}")


def _hit_row(h) -> list:
    return [h.hit_id, out.when(h.captured_at), h.read_plate or h.matched_text, h.entry["plate"], _kind(h),
            f"{h.list_name} ({h.category})", f"{h.device_id}/{h.camera_id}", h.status]


HIT_HEADERS = ["hit", "captured", "read", "listed", "match", "list", "camera", "status"]


def _upgrade_line(item) -> str:
    """A better read of a shown hit's pass: the hit moved to it (``upgraded``: the
    hit's line as it is now), or it was noted beside the checked hit (its kind,
    read id and time; no text beyond what the hit's line shows)."""
    h, u = item.hit, item.upgrade
    if item.applied:
        return f"upgraded {_hit_line(h)}  (was {u['previous_kind']}; look at its new image)"
    return (f"better read noted on hit {h.hit_id} ({h.status}): an {u['match_kind']} match, read {u['read_id']}, "
            f"captured {out.when(u['captured_at'])}; the hit stays as checked (hits show {h.hit_id})")


_UPGRADE_FIELDS = ("upgrade_id", "at", "applied", "read_id", "match_kind", "captured_at", "previous_read_id",
                   "previous_kind", "previous_captured_at")


def _watch_json(item) -> str:
    """One ``hits watch --json`` line: ``event`` is ``hit`` (the hit object, as
    before) or, as the console's stream names it, ``hit-upgraded`` (the hit as
    it is now) or ``hit-better-read-noted``, with ``upgrade`` (no plate text)."""
    from ..governance.audit import parse_ts
    from ..hotlist.hits import Upgraded
    if not isinstance(item, Upgraded):
        return json.dumps({**item.as_dict(), "event": "hit"}, sort_keys=True)
    upgrade = {k: item.upgrade[k] for k in _UPGRADE_FIELDS}
    for k in ("at", "captured_at", "previous_captured_at"):
        upgrade[k] = parse_ts(upgrade[k]).isoformat()
    return json.dumps({**item.hit.as_dict(), "event": item.event, "upgrade": upgrade}, sort_keys=True)


@hits_group.command("watch")
@config_option
@token_option
@click.option("--after", type=int, help="Start after this hit id (default: only new hits).")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@json_option
def hits_watch(config_path, token_file, after, duration, as_json) -> None:
    """Print each new hit as it is raised, one line each (JSON lines with --json),
    and each better read of a shown hit's pass: 'upgraded' (the unchecked hit moved
    to it) or 'better read noted' (beside a checked hit)."""
    from ..hotlist.hits import Upgraded
    stop = threading.Event()
    old = signal.signal(signal.SIGINT, lambda *_: stop.set())
    if duration is not None:
        timer = threading.Timer(duration, stop.set)
        timer.daemon = True
        timer.start()
    try:
        with Session(config_path, token_file) as s:
            for item in _book(s).follow(s.user, after, stop, noted=True):
                if as_json:
                    click.echo(_watch_json(item))
                else:
                    click.echo(_upgrade_line(item) if isinstance(item, Upgraded) else _hit_line(item))
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
        hits, more = _book(s).page(s.user, since=_when(since, "--since"), until=_when(until, "--until"),
                                   status=status, limit=limit)
    note = out.more_note(limit, "hits", "raise --limit or narrow with --since/--until/--status") if more else None
    if as_json:   # JSON lines, one hit each; the note on stderr, so stdout stays data
        for h in hits:
            click.echo(json.dumps(h.as_dict(), sort_keys=True))
        if note:
            click.echo(note, err=True)
        return
    if not hits:
        click.echo("no hits match")
        return
    click.echo(out.table(HIT_HEADERS, [_hit_row(h) for h in hits]))
    click.echo(f"{len(hits)} hit(s)")
    if note:
        click.echo(note)


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
    e = h.entry
    where = "unknown"
    if h.latitude is not None:
        where = f"{h.latitude:.5f}, {h.longitude:.5f}" + (f", heading {h.heading:g}" if h.heading is not None else "")

    def step(value, by, at):
        return f"{value} (by {by}, {out.when(at)})" if by else value

    visual = h.visual and (h.visual + (f": the image shows {h.visual_text}" if h.visual_text else ""))
    click.echo(out.fields([
        ("hit", f"{h.hit_id}" + ("  ACTIONABLE" if h.actionable and not h.disposition else "")),
        ("status", h.status), ("match", _kind(h)),
        ("read", f"{h.read_plate or h.matched_text} ({h.read_id})"),
        ("confidence", f"{h.confidence:.3f}" if h.confidence is not None else None),
        ("captured", out.when(h.captured_at)), ("camera", f"{h.device_id}/{h.camera_id}"), ("location", where),
        ("images", f"crop {'yes' if h.crop_jpeg else 'no'}, context {'yes' if h.context_jpeg else 'no'}"),
        ("entry", f"{h.entry_id}: {e['plate']} {e['state']}".rstrip()),
        ("list", f"{h.list_name} version {h.list_version} ({h.category})"),
        ("reason", e["reason"]), ("source", f"{e['source_agency']}, ref {e['source_ref']}"),
        ("case", e["case_number"]), ("entry expires", out.when(e["expires_at"])),
        ("visual check", step(visual, h.visual_by, h.visual_at)),
        ("source check", step(h.source, h.source_by, h.source_at)),
        ("disposition", step(h.disposition, h.disposition_by, h.disposition_at)),
        ("note", h.note),
        # a better read of the same pass: moved the unchecked hit to it, or noted beside a checked one
        *((("upgraded" if u["applied"] else "better read noted"),
           f"{u['previous_kind']} {u['previous_text']} ({u['previous_read_id']}) -> {u['match_kind']} "
           f"{u['matched_text']} ({u['read_id']}), {out.when(u['at'])}") for u in h.upgrades)]))


def _step_output(h, as_json) -> None:
    if as_json:
        _echo_json(h.as_dict())
    else:
        # the status says "actionable" itself; say it loudly only when the status does not
        loud = h.actionable and not h.disposition and h.status != "actionable"
        click.echo(f"hit {h.hit_id}: {h.status.upper() if h.status == 'actionable' else h.status}"
                   + ("  (ACTIONABLE)" if loud else ""))


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
    """The webhook deliveries of a hit (and of its upgrades) and every attempt."""
    from ..hotlist.webhooks import deliveries
    with Session(config_path, token_file) as s:
        rows = deliveries(s.conn, s.user, hit_id)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo(f"hit {hit_id} has no webhook deliveries")
        return
    click.echo(out.table(["receiver", "event", "attempt", "at", "HTTP status", "took", "result"],
                         [[d["endpoint"], d["event"], a["attempt"], out.when(a["at"]), a["status_code"],
                           f"{a['seconds']:.2f} s", a["error"] or "ok"] for d in rows for a in d["history"]]))
    for d in rows:
        what = "" if d["event"] == "hit" else f" ({d['event']} {d['upgrade_id']})"
        click.echo(f"{d['endpoint']}{what}: {d['status']} after {d['attempts']} attempt(s)")


COMMANDS = (hotlist_group, hits_group)
