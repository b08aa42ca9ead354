"""``alpr-central release offer / promote / pause / resume / status`` and
``alpr-central device group ...``: staged rollouts of signed releases over
MQTT, and the device groups they target (library: :mod:`central.fleet.rollout`;
``alpr-central run`` does the MQTT side). Offering and groups: admins;
status and groups list: admins, auditors, field techs. Every change is in the
access log."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from pathlib import Path

import click

from edge_agent.wire import release as fmt

from . import output as out
from .common import config_option
from .common import load_config as _load
from .session import token_option
from .signin import signed_in

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@contextlib.contextmanager
def _rollouts(config_path, token_file):
    cfg = _load(config_path)
    from ..fleet.rollout import Rollouts
    with signed_in(cfg, token_file, also=(fmt.BundleRefused,)) as (registry, user):
        yield cfg, user, Rollouts(registry.db, data_dir=cfg.data_dir)


def _show(rollout, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(rollout)))
        return
    counts = ", ".join(f"{n} {s}" for s, n in sorted(rollout.counts.items())) or "no devices yet"
    click.echo(f"rollout {rollout.rollout_id}: release {rollout.version} to {rollout.target_kind} {rollout.target}, "
               f"{rollout.percent}%, {rollout.status}" + (f" ({rollout.status_reason})" if rollout.status_reason else ""))
    click.echo(f"  devices: {counts}")


# -- release offer / promote / pause / resume / status ------------------------------------------
@click.command("offer")
@config_option
@token_option
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True))
@click.option("--group", help="Offer to this device group.")
@click.option("--device", help="Offer to this one device.")
@click.option("--percent", default=100, show_default=True, type=click.IntRange(1, 100),
              help="First stage: this share of the target, chosen by a hash of each device id (stable).")
@click.option("--max-failures", default=1, show_default=True, type=click.IntRange(0, 100000),
              help="Pause by itself when this many devices roll back, refuse or fail (0: no count limit).")
@click.option("--max-failure-percent", default=0, show_default=True, type=click.IntRange(0, 100),
              help="Pause by itself when this share of the devices offered failed (0: no share limit).")
@click.option("--public-key", type=click.Path(dir_okay=False, exists=True),
              help="The release public key (default: [release] public_key of the config).")
@json_option
def offer(config_path, token_file, bundle, group, device, percent, max_failures, max_failure_percent, public_key,
          as_json) -> None:
    """Offer a signed BUNDLE (alpr-central release build) over MQTT to a
    group or a device, to --percent of it first; promote it later. Central
    checks the signature first; each device checks it again before anything
    is installed."""
    with _rollouts(config_path, token_file) as (cfg, user, rollouts):
        key_path = public_key or cfg.release.public_key
        if not key_path:
            raise click.ClickException("no release public key: set [release] public_key in the config "
                                       "or pass --public-key")
        try:
            key = fmt.load_public_key(Path(key_path).read_bytes())
        except OSError as exc:
            raise click.ClickException(f"cannot read the release public key {key_path}: {exc.strerror}") from None
        _show(rollouts.offer(user, bundle, key, group=group, device=device, percent=percent,
                             max_failures=max_failures, max_failure_percent=max_failure_percent), as_json)


@click.command("promote")
@config_option
@token_option
@click.argument("rollout_id", type=int)
@click.option("--percent", default=100, show_default=True, type=click.IntRange(1, 100),
              help="The next stage (100: every device of the target).")
@json_option
def promote(config_path, token_file, rollout_id, percent, as_json) -> None:
    """Offer an active rollout to more of its target (the devices already
    offered stay; newly added group members are included)."""
    with _rollouts(config_path, token_file) as (_cfg, user, rollouts):
        _show(rollouts.promote(user, rollout_id, percent), as_json)


@click.command("pause")
@config_option
@token_option
@click.argument("rollout_id", type=int)
@click.option("--reason", default="", help="Why (kept in the access log).")
@json_option
def pause(config_path, token_file, rollout_id, reason, as_json) -> None:
    """Stop offering; devices not yet installing it are told to drop it."""
    with _rollouts(config_path, token_file) as (_cfg, user, rollouts):
        _show(rollouts.pause(user, rollout_id, reason), as_json)


@click.command("resume")
@config_option
@token_option
@click.argument("rollout_id", type=int)
@json_option
def resume(config_path, token_file, rollout_id, as_json) -> None:
    """Offer a paused rollout again (its failure count starts over)."""
    with _rollouts(config_path, token_file) as (_cfg, user, rollouts):
        _show(rollouts.resume(user, rollout_id), as_json)


@click.command("status")
@config_option
@token_option
@click.option("--rollout", "rollout_id", type=int, help="Only this rollout's devices.")
@json_option
def status(config_path, token_file, rollout_id, as_json) -> None:
    """The rollouts, and each device: the version it runs, the version
    offered, its update state and when."""
    with _rollouts(config_path, token_file) as (_cfg, user, rollouts):
        listed = rollouts.rollouts(user) if rollout_id is None else [rollouts.rollout(rollout_id)]
        devices = rollouts.devices(user, rollout_id)
    if as_json:
        click.echo(json.dumps({"rollouts": [dataclasses.asdict(r) for r in listed],
                               "devices": [dataclasses.asdict(d) for d in devices]}))
        return
    for r in listed:
        _show(r, False)
    if listed:
        click.echo("")
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for d in devices:
        state = d.state or "-"
        if d.state == "downloading" and d.progress:
            state = f"{state} ({d.progress})"
        rows.append([d.device_id, d.running_version or "unknown", d.version, d.rollout_id, state,
                     out.when(d.state_at, now=now) if d.state_at else "-", d.reason])
    click.echo(out.table(["device", "running", "offered", "rollout", "state", "since", "reason"], rows))


RELEASE_COMMANDS = (offer, promote, pause, resume, status)


# -- device group ... ------------------------------------------------------------------------
@click.group("group")
def group_group() -> None:
    """Device groups: the targets of staged rollouts (alpr-central release offer --group)."""


@group_group.command("create")
@config_option
@token_option
@click.argument("group_id")
@click.option("--description", default="", help="What the group is (e.g. 'north precinct poles').")
def group_create(config_path, token_file, group_id, description) -> None:
    """Create a device group (admins)."""
    with _rollouts(config_path, token_file) as (_cfg, user, rollouts):
        rollouts.create_group(user, group_id, description)
    click.echo(f"group {group_id} created")


def _members_command(name: str, add: bool, help_text: str, done: str):
    """``device group add`` and ``remove``: one body, the direction apart."""
    @group_group.command(name, help=help_text)
    @config_option
    @token_option
    @click.argument("group_id")
    @click.argument("devices", nargs=-1, required=True)
    def command(config_path, token_file, group_id, devices) -> None:
        with _rollouts(config_path, token_file) as (_cfg, user, rollouts):
            n = rollouts.set_members(user, group_id, devices, add=add)
        click.echo(f"{n} devices {done} {group_id}")
    return command


group_add = _members_command("add", True, "Put devices into a group (admins).", "added to")
group_remove = _members_command("remove", False, "Take devices out of a group (admins).", "removed from")


@group_group.command("list")
@config_option
@token_option
@json_option
def group_list(config_path, token_file, as_json) -> None:
    """The groups and their devices."""
    with _rollouts(config_path, token_file) as (_cfg, user, rollouts):
        groups = rollouts.groups(user)
    if as_json:
        click.echo(json.dumps(groups))
        return
    for g in groups:
        click.echo(f"{g['group']}: {len(g['devices'])} devices{' - ' + g['description'] if g['description'] else ''}")
        if g["devices"]:
            click.echo("  " + " ".join(g["devices"]))
