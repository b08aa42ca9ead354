"""``alpr-central retention``, ``hold`` and ``report``: retention periods and
the purge job, legal holds, and the transparency report (hotlists and hits are
in :mod:`central.cli.hotlist`). Authentication as in :mod:`central.cli.governance`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..governance.audit import utcnow
from . import output as out
from .common import config_option
from .common import load_config as _load
from .common import parse_when as _when
from .session import Session, json_option, parse_date, token_option


# -- retention, holds -------------------------------------------------------
@click.group("retention")
def retention_group() -> None:
    """Retention periods and the purge job."""


def _governor(s: Session):
    from ..governance.retention import Governor
    return Governor(s.conn, s.cfg.retention, case_number_pattern=s.cfg.query.case_number_pattern)


@retention_group.command("purge")
@config_option
@token_option
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@json_option
def retention_purge(config_path, token_file, dry_run, as_json) -> None:
    """Delete what is past its retention period (never held reads); records counts, never plates.
    On PostgreSQL whole expired months of reads are dropped; only the edges are deleted row by row."""
    with Session(config_path, token_file) as s:
        result = _governor(s).purge(s.user, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "counts": result.counts, "held_kept": result.held_kept,
                               "cutoffs": result.cutoffs}, indent=1))
        return
    click.echo(out.table(["what", "would delete" if dry_run else "deleted", "older than"],
                         [[_words(name), n, out.when(result.cutoffs[name])] for name, n in result.counts.items()]))
    click.echo(f"{result.held_kept} read(s) past retention kept under legal hold")


@retention_group.command("show")
@config_option
@json_option
def retention_show(config_path, as_json) -> None:
    """Show the configured retention periods ([retention] in the config)."""
    cfg = _load(config_path)
    periods = vars(cfg.retention)
    if as_json:
        click.echo(out.dumps(periods))
        return
    click.echo(out.table(["what", "kept for"], [[_KEPT.get(key, _words(key)), f"{days} days"]
                                                for key, days in periods.items()]))


_KEPT = {"non_hit_days": "reads without a hit", "hit_days": "reads with a hit", "image_days": "images",
         "hotlist_days": "expired hotlist entries", "labelled_example_days": "labelled examples",
         "access_log_days": "access log", "device_log_days": "device audit logs"}


def _words(name: str) -> str:
    """A retention key in words: ``non_hit_reads`` -> ``non-hit reads``."""
    return name.replace("non_hit", "non-hit").replace("_", " ")


@click.group("hold")
def hold_group() -> None:
    """Legal holds: keep reads of a case past retention."""


@hold_group.command("request")
@config_option
@token_option
@click.option("--case", "case_number", required=True, help="Case number the hold serves.")
@click.option("--plate", "plates", multiple=True, help="Plate to hold (repeat; none = every plate in the range).")
@click.option("--since", required=True, help="Hold reads captured from (ISO 8601).")
@click.option("--until", required=True, help="... until (ISO 8601).")
@click.option("--reason", required=True, help="Why (litigation, discovery order, ...).")
@click.option("--review-on", required=True, help="Date to review the hold (YYYY-MM-DD).")
def hold_request(config_path, token_file, case_number, plates, since, until, reason, review_on) -> None:
    """Request a legal hold (operator, supervisor); a second supervisor approves."""
    with Session(config_path, token_file) as s:
        hold = _governor(s).request_hold(s.user, case_number=case_number, plates=plates,
                                         since=_when(since, "--since"), until=_when(until, "--until"),
                                         reason=reason, review_on=parse_date(review_on, "--review-on"))
    click.echo(f"hold {hold.hold_id} requested for case {hold.case_number}; awaiting supervisor approval")


@hold_group.command("approve")
@config_option
@token_option
@click.argument("hold_id", type=int)
def hold_approve(config_path, token_file, hold_id) -> None:
    """Approve a pending hold (a supervisor other than the requester)."""
    with Session(config_path, token_file) as s:
        hold = _governor(s).approve_hold(s.user, hold_id)
    click.echo(f"hold {hold.hold_id} active; review on {hold.review_on}")


@hold_group.command("release")
@config_option
@token_option
@click.argument("hold_id", type=int)
@click.option("--reason", required=True, help="Why the hold ends.")
def hold_release(config_path, token_file, hold_id, reason) -> None:
    """Release a hold (supervisor); its reads fall under retention again."""
    with Session(config_path, token_file) as s:
        _governor(s).release_hold(s.user, hold_id, reason=reason)
    click.echo(f"hold {hold_id} released")


@hold_group.command("list")
@config_option
@token_option
@json_option
def hold_list(config_path, token_file, as_json) -> None:
    """List holds; flags those past their review date."""
    from ..governance.users import Permission, in_words
    with Session(config_path, token_file) as s:
        if not (s.user.can(Permission.REQUEST_HOLD) or s.user.can(Permission.READ_AUDIT)):
            raise click.ClickException(f"{in_words(s.user)} may not list holds")
        holds = _governor(s).holds()
    today = utcnow().date()
    if as_json:
        click.echo(json.dumps([{"hold_id": h.hold_id, "case_number": h.case_number, "plates": len(h.plates),
                                "since": h.since.isoformat(), "until": h.until.isoformat(), "status": h.status,
                                "review_on": h.review_on.isoformat(), "review_due": h.review_due(today),
                                "requested_by": h.requested_by, "approved_by": h.approved_by} for h in holds],
                              indent=1))
        return
    if not holds:
        click.echo("no legal holds")
        return
    click.echo(out.table(["hold", "case", "status", "review on", "plates", "reads from", "reads until", "requested by",
                          "approved by"],
                         [[h.hold_id, h.case_number, h.status,
                           h.review_on.isoformat() + ("  REVIEW DUE" if h.review_due(today) else ""),
                           len(h.plates) or "all", out.when(h.since), out.when(h.until), h.requested_by, h.approved_by]
                          for h in holds]))


# -- report -------------------------------------------------------------------------
@click.group("report")
def report_group() -> None:
    """Published reports."""


@report_group.command("transparency")
@config_option
@token_option
@click.option("--period", required=True, help="Quarter (2026-Q3), month (2026-08) or year (2026).")
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for transparency-<period>.html and .json.")
def report_transparency(config_path, token_file, period, out_dir) -> None:
    """Write the transparency report: a self-contained HTML page with charts and its JSON twin."""
    from ..governance.report import build, parse_period, write
    with Session(config_path, token_file) as s:
        try:
            start, end = parse_period(period)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--period") from None
        data = build(s.conn, s.cfg, s.user, period, start, end)
        html_path, json_path = write(data, Path(out_dir))
    click.echo(f"wrote {html_path} and {json_path}")


COMMANDS = (retention_group, hold_group, report_group)
