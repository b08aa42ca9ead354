"""``alpr-edge update``: trust the release key, apply a signed bundle, check
the agent's health, show the installed releases (library: :mod:`edge_agent.update`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
from pathlib import Path

import click

from . import output as out
from .cli_common import config_option
from .cli_common import load_config as _load
from .cli_common import setup_logging as _logging
from .errors import UpdateError

app_dir_option = click.option("--app-dir", envvar="ALPR_APP_DIR", default="/var/lib/alpr/app", show_default=True,
                              type=click.Path(file_okay=False),
                              help="Where releases are installed beside each other. Env: ALPR_APP_DIR.")


def switch_options(command):
    """The options of `update apply` and `update apply-spool` (both switch releases)."""
    for option in reversed((
            click.option("--health-timeout", default=120.0, show_default=True, type=click.FloatRange(1, 3600),
                         help="Seconds the new agent has to be up, read frames and connect to the broker."),
            click.option("--restart-command", default="systemctl restart alpr-edge.service", show_default=True,
                         help="How the agent is restarted onto the release `current` points at."),
            click.option("--no-sync-check", is_flag=True, help="Healthy without a broker connection (bench devices)."),
            click.option("--json", "as_json", is_flag=True, help="Machine-readable output."))):
        command = option(command)
    return command


@contextlib.contextmanager
def _audit(config):
    """The device audit log, opened by whoever runs the command (root, usually)
    and handed back to the log's owner (the agent's account)."""
    from . import auditlog
    path = config.data_dir / "audit.sqlite"
    log = None
    try:
        owner = path.stat() if path.exists() else config.data_dir.stat()
        if path.exists() or os.geteuid() == owner.st_uid:
            log = auditlog.open_for(config)
    except Exception as exc:  # noqa: BLE001 - an update is still recorded in state.json
        click.echo(f"warning: the device audit log cannot be opened ({exc})", err=True)
        owner = None
    try:
        yield log
    finally:
        if log is not None:
            log.close()
            if os.geteuid() == 0 and owner is not None and owner.st_uid != 0:
                for side in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    with contextlib.suppress(OSError):
                        os.chown(side, owner.st_uid, owner.st_gid)


@click.group("update")
def update_group() -> None:
    """Signed application updates: verified, installed beside the running
    version, health-checked, rolled back on failure."""


@update_group.command("trust")
@config_option
@click.argument("public_key", type=click.Path(dir_okay=False, exists=True))
@click.option("--replace", is_flag=True, help="Replace a release key already trusted (key rotation).")
def trust(config_path, public_key, replace) -> None:
    """Trust the release public key (from `alpr-central release init-key`);
    kept beside the config file, out of the agent account's reach."""
    from .provision import write_private
    from .update import trusted_key_path
    from .wire import release as fmt
    cfg = _load(config_path)
    data = Path(public_key).read_bytes()
    try:
        key = fmt.load_public_key(data)
    except fmt.BundleRefused as exc:
        raise click.ClickException(str(exc)) from None
    path = trusted_key_path(config_path)
    previous = None
    if path.exists():
        previous = fmt.key_id(fmt.load_public_key(path.read_bytes()))
        if previous != fmt.key_id(key) and not replace:
            raise click.ClickException(f"release key {previous} is already trusted; pass --replace to rotate it")
    write_private(path, data)
    os.chmod(path, 0o644)
    with _audit(cfg) as log:
        if log is not None:
            log.append("update-key-trusted", {"key_id": fmt.key_id(key), "previous_key_id": previous})
    click.echo(f"trusting release key {fmt.key_id(key)} ({fmt.fingerprint(key)})")


@update_group.command("apply")
@config_option
@app_dir_option
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True))
@switch_options
def apply(config_path, app_dir, bundle, health_timeout, restart_command, no_sync_check, as_json) -> None:
    """Verify BUNDLE (signature, hashes, no downgrade unless its signed
    manifest allows it), install it beside the running release, switch,
    check health and roll back on failure. Exit 0 switched, 1 refused or
    rolled back."""
    _logging("warning")
    from .update import load_trusted_key
    from .update.health import StatusFileHealth
    from .update.releases import Releases
    from .update.updater import CommandRestarter, Updater
    from .wire import release as fmt
    cfg = _load(config_path)
    with _audit(cfg) as log:
        try:
            key = load_trusted_key(config_path)
        except fmt.BundleRefused as exc:
            if log is not None:
                log.append("update-refused", {"reason": str(exc)})
            raise click.ClickException(str(exc)) from None
        updater = Updater(Releases(app_dir), key, CommandRestarter(shlex.split(restart_command)),
                          StatusFileHealth(cfg.data_dir / "status.json", require_sync=not no_sync_check),
                          audit=log, health_timeout=health_timeout)
        try:
            result = updater.apply(bundle)
        except fmt.BundleRefused as exc:
            raise click.ClickException(f"bundle refused: {exc}") from None
        except UpdateError as exc:
            raise click.ClickException(f"update failed, nothing changed: {exc}") from None
    doc = {"version": result.version, "previous_version": result.previous_version, "outcome": result.outcome,
           "problems": list(result.health.problems)}
    if as_json:
        click.echo(json.dumps(doc))
    elif result.outcome == "switched":
        click.echo(f"updated {result.previous_version} -> {result.version}; the agent is healthy")
    else:
        click.echo(f"release {result.version} failed its health check ({result.health.summary()}); "
                   f"rolled back to {result.previous_version}")
    if result.outcome != "switched":
        raise SystemExit(1)


@update_group.command("apply-spool")
@config_option
@app_dir_option
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False),
              help="Where the agent hands verified bundles over (default: <data_dir>/update/spool).")
@switch_options
def apply_spool(config_path, app_dir, spool_dir, health_timeout, restart_command, no_sync_check, as_json) -> None:
    """Apply the bundle the agent handed over (run as root by
    alpr-edge-update.service when one appears in the spool): copy it out of the
    agent's folder, then exactly `update apply` (the signature checked again
    with the key root owns). The outcome goes into <app-dir>/state.json, where
    the agent reads it and reports it to central. Exit 0 switched or nothing
    to do, 1 refused, failed or rolled back."""
    _logging("warning")
    from .update import handoff
    cfg = _load(config_path)
    spool = Path(spool_dir) if spool_dir else cfg.data_dir / "update" / "spool"
    with _audit(cfg) as log:
        outcome = handoff.apply_spool(spool, app_dir, config_path, audit=log, health_timeout=health_timeout,
                                      restart_command=shlex.split(restart_command), require_sync=not no_sync_check)
    if as_json:
        click.echo(json.dumps(outcome))
    elif outcome["result"] == "none":
        click.echo("nothing handed over")
    else:
        click.echo(f"{outcome['file']}: {outcome['result']}"
                   + (f" ({outcome['reason']})" if outcome.get("reason") else ""))
    if outcome["result"] not in ("none", "switched"):
        raise SystemExit(1)


@update_group.command("health")
@config_option
@click.option("--timeout", default=0.0, show_default=True, type=click.FloatRange(0, 3600),
              help="Wait up to this long for the agent to become healthy.")
@click.option("--no-sync-check", is_flag=True, help="Healthy without a broker connection.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def health(config_path, timeout, no_sync_check, as_json) -> None:
    """Exit 0 when the agent is up, its cameras deliver frames and sync is
    connected (from its status.json), else 1 naming the problems."""
    from .update.health import StatusFileHealth
    cfg = _load(config_path)
    check = StatusFileHealth(cfg.data_dir / "status.json", require_sync=not no_sync_check)
    report = check.wait(since=0.0, expect_version=None, timeout=max(timeout, 2.5))
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "problems": list(report.problems), "version": report.version}))
    else:
        click.echo(f"{'OK' if report.ok else 'PROBLEM'}: {report.summary()}")
    if not report.ok:
        raise SystemExit(1)


@update_group.command("status")
@config_option
@app_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path, app_dir, as_json) -> None:
    """The running release, the installed ones and the last update's outcome."""
    from .update.releases import Releases
    _load(config_path)
    rel = Releases(app_dir)
    last = rel.state().get("last")
    if last and isinstance(last.get("at"), (int, float)):   # stored as epoch seconds; shown as a time
        last = {**last, "at": dt.datetime.fromtimestamp(last["at"], dt.timezone.utc).isoformat()}
    doc = {"current": rel.current_version(), "current_path": str(rel.current_target()),
           "installed": rel.installed(), "last": last}
    if as_json:
        click.echo(json.dumps(doc))
        return
    last = doc["last"] or {}
    pairs = [("current", f"{out.value(doc['current'])} ({doc['current_path']})"), ("installed", doc["installed"])]
    if last:
        pairs.append(("last", f"{out.value(last.get('result'))} {last.get('version', '')} at {out.when(last.get('at'))}"
                      + (f": {last.get('reason') or '; '.join(last.get('problems', []))}"
                         if last.get("result") != "switched" else "")))
    click.echo(out.fields(pairs))


COMMANDS = (update_group,)
