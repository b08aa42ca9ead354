"""``alpr-central device config ...``: signed remote configuration of devices.
A thin shell over :mod:`central.fleet.remote_config`; the library checks
permissions (push: admins only; status: whoever may see the devices)."""

from __future__ import annotations

import datetime as dt
import json
import tomllib

import click

from ..errors import RemoteConfigError
from . import output as out
from .common import config_option
from .common import load_config as _load
from .session import token_option
from .signin import signed_in

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one object a line).")


@click.group("config")
def config_group() -> None:
    """Signed remote configuration of devices (docs/fleet.md, 'Remote configuration')."""


@config_group.command("init-key")
@config_option
@click.option("--private", "private_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the Ed25519 private key (default: [remote_config] signing_key, "
                   "<data_dir>/config-signing/config-key.pem). Its folder must hold no other key.")
def init_key(config_path, private_path) -> None:
    """Make the key that signs device configurations (kept apart from every other key)."""
    from ..fleet.remote_config import init_key as _init
    cfg = _load(config_path)
    try:
        private, public, kid = _init(private_path or cfg.remote_config.signing_key)
    except RemoteConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {private} (0600) and {public}; key id {kid}. Devices enrolled from now on receive the "
               f"public key; give it to devices enrolled before with [remote_config] public_key")


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string


def _settings(file, sets) -> dict:
    settings: dict = {}
    if file:
        try:
            settings = tomllib.loads(file.read())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"not valid TOML ({exc})", param_hint="--file") from None
    for item in sets:
        key, eq, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not (eq and dot and section and name):
            raise click.BadParameter(f"{item!r}: use SECTION.KEY=VALUE", param_hint="--set")
        settings.setdefault(section, {})[name] = _value(text.strip())
    if not settings:
        raise click.UsageError("give the settings with --file and/or --set")
    return settings


@config_group.command("push")
@config_option
@token_option
@click.option("--device", "device_ids", multiple=True, help="A device to configure (repeat).")
@click.option("--owner", help="Every active device of this owner ('department' or a business id).")
@click.option("--all", "all_active", is_flag=True, help="Every active device.")
@click.option("--file", type=click.File("r"), help="A TOML file of the settings (sections and keys as in edge.toml).")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="One setting (repeat); the value is TOML (10, 0.5, true, \"text\").")
@click.option("--allow-broker-address", is_flag=True,
              help="Let sync.host / sync.port through (a device applies them only if its own config allows).")
@json_option
def push(config_path, token_file, device_ids, owner, all_active, file, sets, allow_broker_address, as_json) -> None:
    """Sign a configuration for devices (admins only) and have the collector
    publish it. Each device gets its own next version; it checks the
    configuration with the 'config check' rules, applies it, and reports back
    ('device config status')."""
    if sum(map(bool, (device_ids, owner, all_active))) != 1:
        raise click.UsageError("name the devices with --device, or --owner, or --all (one of them)")
    settings = _settings(file, sets)
    cfg = _load(config_path)
    from ..fleet.remote_config import RemoteConfigs, load_key
    with signed_in(cfg, token_file, also=(RemoteConfigError,)) as (registry, user):
        if device_ids:
            devices = [registry.device(d) for d in dict.fromkeys(device_ids)]
        else:
            devices = registry.devices(owner=owner, status="active")
            if not devices:
                raise click.ClickException(f"no active device{' of ' + owner if owner else ''} to configure")
        configs = RemoteConfigs(registry.db)
        from ..governance.users import Permission, require
        require(user, Permission.CONFIGURE_DEVICES)  # before the key is read
        pushed = configs.push(user, devices, settings, load_key(cfg.remote_config.signing_key),
                              allow_broker_address=allow_broker_address)
    for p in pushed:
        click.echo(json.dumps({"device_id": p.device_id, "version": p.version}) if as_json else
                   f"{p.device_id}: version {p.version} signed; the collector publishes it")


@config_group.command("status")
@config_option
@token_option
@click.option("--owner", help="Only this owner's devices ('department' or a business id).")
@json_option
@click.argument("device_id", required=False)
def status(config_path, token_file, owner, as_json, device_id) -> None:
    """Each device's newest pushed configuration and the one it runs."""
    cfg = _load(config_path)
    from ..fleet.remote_config import RemoteConfigs, to_doc
    with signed_in(cfg, token_file) as (registry, user):
        if device_id:
            devices = [registry.show_device(user, device_id)[0]]
        else:
            devices = registry.list_devices(user, owner=owner)
        rows_ = RemoteConfigs(registry.db).status(devices)
    if as_json:
        for r in rows_:
            click.echo(json.dumps(to_doc(r)))
        return
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for r in rows_:
        reported = "never" if r.reported_at is None else out.ago(now - r.reported_at)
        note = r.reason or ("" if r.latest_version is None or r.published else "waiting for the collector")
        if not note and r.latest_version and r.applied_version != r.latest_version and r.state != "refused":
            note = "not applied yet"
        rows.append([r.device_id, r.latest_version, "unknown" if r.applied_version is None else
                     r.applied_version or "its own file", r.state or "unknown", reported, note])
    click.echo(out.table(["device", "pushed", "runs", "state", "reported", "note"], rows))
