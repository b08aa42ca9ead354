"""``alpr-central`` governance commands: ``user``, ``audit``, ``retention``,
``hold`` and ``report`` are in :mod:`.retention`, ``hotlist`` and ``hits`` in :mod:`.hotlist`; sharing is in :mod:`.sharing`.

Every command except ``user bootstrap`` runs as an authenticated user: the
personal token comes from the file named by ``--token-file`` /
``ALPR_TOKEN_FILE`` (mode 0600) or from ``ALPR_TOKEN``; never from an argument
(it would show in ``ps`` and shell history). The library checks the role.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import click

from ..fleet.pki import write_secret
from ..governance.audit import AccessLog
from . import output as out
from ..governance.audit import verify as verify_chain
from ..governance.users import Role, UserDirectory
from .common import config_option
from .common import load_config as _load
from .common import open_store as _open_store
from .common import parse_when as _when
from .session import Session, json_option, parse_date, read_token, token_option

def _give_token(token: str, token_out: str | None, name: str) -> None:
    if token_out:
        write_secret(token_out, (token + "\n").encode())
        click.echo(f"token for {name} written to {token_out} (0600)")
    else:
        click.echo(f"token for {name} (shown once; store it in a 0600 file): {token}")


# -- user ---------------------------------------------------------------------------
@click.group("user")
def user_group() -> None:
    """Named accounts, roles and personal tokens."""


@user_group.command("bootstrap")
@config_option
@click.option("--name", required=True, help="The first admin's user name (a person, not a shared account).")
@click.option("--organization", required=True, help="Their organization.")
@click.option("--token-out", type=click.Path(dir_okay=False), help="Write the token to this file (0600).")
def user_bootstrap(config_path, name, organization, token_out) -> None:
    """Create the first admin; works only while there are no users."""
    with Session(config_path, None, authenticate=False) as s:
        user, token = s.users.bootstrap(name, organization)
    _give_token(token, token_out, user.name)


@user_group.command("add")
@config_option
@token_option
@click.argument("name")
@click.option("--organization", required=True, help="The user's organization (agency or business).")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]), help="The user's role.")
@click.option("--token-out", type=click.Path(dir_okay=False), help="Write the new token to this file (0600).")
def user_add(config_path, token_file, name, organization, role, token_out) -> None:
    """Create a named user with one role (admin only)."""
    with Session(config_path, token_file) as s:
        user, token = s.users.add(s.user, name, organization, role)
    _give_token(token, token_out, user.name)


@user_group.command("token")
@config_option
@token_option
@click.argument("name")
@click.option("--token-out", type=click.Path(dir_okay=False), help="Write the new token to this file (0600).")
def user_token(config_path, token_file, name, token_out) -> None:
    """Issue a new token for NAME and revoke the old ones (admin, or yourself)."""
    with Session(config_path, token_file) as s:
        token = s.users.new_token(s.user, name)
    _give_token(token, token_out, name)


def _switch(verb: str, disabled: bool, help_text: str) -> click.Command:
    """``user disable`` and ``user enable``: one command each, one body."""
    @user_group.command(verb, help=help_text)
    @config_option
    @token_option
    @click.argument("name")
    def switch(config_path, token_file, name) -> None:
        with Session(config_path, token_file) as s:
            s.users.set_disabled(s.user, name, disabled)
        click.echo(f"{verb}d {name}")
    return switch


user_disable = _switch("disable", True, "Disable an account and revoke its tokens (admin only).")
user_enable = _switch("enable", False, "Re-enable an account (admin only; issue it a new token).")


def _user_doc(u: User) -> dict:
    return {"name": u.name, "organization": u.organization, "role": u.role.value, "disabled": u.disabled,
            "created_at": u.created_at.isoformat() if u.created_at else None,
            "last_active_at": u.last_active_at.isoformat() if u.last_active_at else None}


def _user_table(users: list[User], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([_user_doc(u) for u in users], indent=1))
        return
    click.echo(out.table(["user", "role", "status", "last active", "organization"],
                         [[u.name, u.role.value, "disabled" if u.disabled else "enabled",
                           out.when(u.last_active_at) if u.last_active_at else "never", u.organization]
                          for u in users]))


@user_group.command("list")
@config_option
@token_option
@json_option
def user_list(config_path, token_file, as_json) -> None:
    """List accounts (admin, auditor)."""
    with Session(config_path, token_file) as s:
        users = s.users.list(s.user)
    _user_table(users, as_json)


@user_group.command("inactive")
@config_option
@token_option
@click.option("--days", default=90, show_default=True, help="Unused for at least this many days.")
@json_option
def user_inactive(config_path, token_file, days, as_json) -> None:
    """Report enabled accounts not used recently (to disable them)."""
    with Session(config_path, token_file) as s:
        users = s.users.inactive(s.user, days=days)
    _user_table(users, as_json)
    if not as_json:
        click.echo(f"{len(users)} inactive account(s) (unused for {days}+ days)")


@user_group.command("whoami")
@config_option
@token_option
@json_option
def user_whoami(config_path, token_file, as_json) -> None:
    """Show who your token authenticates as."""
    with Session(config_path, token_file) as s:
        user = s.user
    if as_json:
        click.echo(out.dumps({"name": user.name, "role": user.role.value, "organization": user.organization}))
        return
    click.echo(f"{user.name} ({user.role.value}, {user.organization})")


# -- audit ---------------------------------------------------------------------------
@click.group("audit")
def audit_group() -> None:
    """The hash-chained access log and device audit logs."""


def _head(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    seq, _, h = value.partition(":")
    if not seq.isdigit() or len(h) != 64:
        raise click.BadParameter("use SEQ:HASH as printed by 'audit head'", param_hint="--expect-head")
    return int(seq), h


@audit_group.command("verify")
@config_option
@token_option
@click.option("--expect-head", help="A head published earlier (SEQ:HASH from 'audit head' or a transparency "
                                    "report): also proves the tail was not rewritten.")
@json_option
def audit_verify(config_path, token_file, expect_head, as_json) -> None:
    """Recompute the access log's hash chain; name every edited, deleted,
    inserted or reordered entry. Exit 1 if any."""
    from ..governance.users import Permission, require
    head = _head(expect_head)
    with Session(config_path, token_file) as s:
        require(s.user, Permission.READ_AUDIT)
        report = verify_chain(s.conn, expect_head=head, retention_days=s.cfg.retention.access_log_days)
        AccessLog(s.conn).append(user=s.user.name, organization=s.user.organization, action="audit-verify",
                                 detail={"ok": report.ok, "issues": len(report.issues)},
                                 result_count=report.entries)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "entries": report.entries, "head_seq": report.head_seq,
                               "head_hash": report.head_hash,
                               "issues": [{"seq": i.seq, "kind": i.kind, "message": i.message}
                                          for i in report.issues]}, indent=1))
    else:
        for issue in report.issues:
            click.echo(f"{issue.kind.upper():<10} {issue.message}")
        click.echo(f"{report.entries} entries, head {report.head_seq}:{report.head_hash}")
    if not report.ok:
        raise click.ClickException(f"the access log fails verification: {len(report.issues)} problem(s)")
    if not as_json:
        click.echo("ok: the chain is intact")


@audit_group.command("head")
@config_option
@token_option
@json_option
def audit_head(config_path, token_file, as_json) -> None:
    """Print the current head (SEQ:HASH) to publish or keep for 'verify --expect-head'."""
    from ..governance.users import Permission, require
    with Session(config_path, token_file) as s:
        require(s.user, Permission.READ_AUDIT)
        seq, h = AccessLog(s.conn).head()
    if as_json:
        click.echo(out.dumps({"seq": seq, "hash": h, "head": f"{seq}:{h}"}))
        return
    click.echo(f"{seq}:{h}")


@audit_group.command("log")
@config_option
@token_option
@click.option("--since", help="From (ISO 8601).")
@click.option("--until", help="Before (ISO 8601).")
@click.option("--action", help="Only this action (search, share-export, purge, ...).")
@click.option("--user", "who", help="Only this user.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Most entries to show: the newest ones, oldest of them first.")
@json_option
def audit_log(config_path, token_file, since, until, action, who, limit, as_json) -> None:
    """Show access-log entries (auditor, admin): the newest --limit entries,
    in order; says when older ones were left out."""
    from ..governance.users import Permission, require
    with Session(config_path, token_file) as s:
        require(s.user, Permission.READ_AUDIT)
        newest = AccessLog(s.conn).entries(since=_when(since, "--since"), until=_when(until, "--until"),
                                           action=action, user=who, limit=limit + 1, newest_first=True)
    entries = list(reversed(newest[:limit]))
    note = out.more_note(limit, "entries", "raise --limit or narrow with --since/--until") \
        if len(newest) > limit else None
    if as_json:   # JSON lines; the note on stderr, so stdout stays data
        for e in entries:
            click.echo(json.dumps({"seq": e.seq, "at": e.at.isoformat(), "user": e.user,
                                   "organization": e.organization, "action": e.action, "purpose": e.purpose,
                                   "case_number": e.case_number, "detail": e.detail,
                                   "result_count": e.result_count, "hash": e.hash}))
        if note:
            click.echo(note, err=True)
        return
    if not entries:
        click.echo("no access-log entries match")
        return
    click.echo(out.table(["seq", "at (UTC)", "user", "action", "purpose", "case", "results"],
                         [[e.seq, e.at.strftime("%Y-%m-%d %H:%M:%S"), e.user, e.action, e.purpose, e.case_number,
                           e.result_count] for e in entries]))
    if note:
        click.echo(note)


@audit_group.command("device")
@config_option
@token_option
@click.argument("device")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False),
              help="The device's certificate: its key must be the one signing the newest entries.")
@json_option
def audit_device(config_path, token_file, device, cert, as_json) -> None:
    """Verify a device's audit log received at central: chain, signatures,
    gaps. Exit 1 on any break."""
    from ..fleet.device_audit import verify_device
    from ..governance.users import Permission, require
    with Session(config_path, token_file) as s:
        require(s.user, Permission.READ_AUDIT)
        report = verify_device(s.conn, device, cert_pem=Path(cert).read_bytes() if cert else None)
        AccessLog(s.conn).append(user=s.user.name, organization=s.user.organization, action="audit-device",
                                 detail={"device": device, "ok": report.ok}, result_count=report.records)
        if not report.records and s.conn.execute("SELECT 1 FROM devices WHERE device_id = ?", [device]).fetchone() \
                is None:   # a mistyped id is not a gap in some device's log
            raise click.ClickException(f"no device {device!r} (ids: alpr-central device list)")
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=1))
    else:
        for issue in report.issues:
            click.echo(f"{issue.kind.upper():<10} {issue.message}")
        span = (f"seq {report.first_seq}-{report.last_seq}" if report.records else "no records received yet")
        click.echo(f"{device}: {report.records} record(s), {span}, {len(report.keys)} key(s); events: "
                   + (", ".join(f"{k} {v}" for k, v in sorted(report.events.items())) or "none"))
    if not report.ok:
        raise click.ClickException(f"device {device}'s audit log fails verification: {len(report.issues)} problem(s)")
    if not as_json:
        click.echo("ok: chain and signatures intact, no gaps")


COMMANDS = (user_group, audit_group)
