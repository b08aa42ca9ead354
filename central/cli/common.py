"""What every ``alpr-central`` command module shares: exit codes, the
exceptions that carry them, config loading, the ``--config`` option.

Kept apart from :mod:`central.cli` so command modules never import the module
that registers them (which ``python -m central.cli`` would load twice).
"""

from __future__ import annotations

import datetime as dt

import click

from .. import config as config_mod
from ..errors import ConfigError, SchemaMismatch, StoreError

EX_TEMPFAIL = 75
EX_CONFIG = 78
DEFAULT_CONFIG = "/etc/alpr/central.toml"


class ConfigFailure(click.ClickException):
    """Configuration error: exit 78 (systemd does not restart)."""

    exit_code = EX_CONFIG


class TempFailure(click.ClickException):
    """Broker or database unreachable: exit 75 (try again later)."""

    exit_code = EX_TEMPFAIL


_told: set[str] = set()


def load_config(path: str) -> config_mod.CentralConfig:
    """The config, or exit 78. What the admin should change although it works
    (:attr:`~central.config.CentralConfig.notices`) goes to stderr, once per
    process."""
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None
    for notice in cfg.notices:
        if notice not in _told:
            _told.add(notice)
            click.echo(f"warning: {path}: {notice}", err=True)
    return cfg


def open_store(cfg):
    """The configured store: exit 78 when its schema is behind or ahead of this
    central, 75 when the database cannot be reached or opened."""
    from ..store import open_store as _open
    try:
        return _open(cfg.store.type, cfg.store.path, cfg.store.url)
    except SchemaMismatch as exc:
        raise ConfigFailure(str(exc)) from None
    except StoreError as exc:
        raise TempFailure(str(exc)) from None


def parse_when(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 option value; UTC unless it carries an offset."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-11-21T08:00 (UTC unless an offset is given)",
                                 param_hint=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


config_option = click.option("--config", "config_path", envvar="ALPR_CENTRAL_CONFIG", default=DEFAULT_CONFIG,
                             show_default=True, type=click.Path(dir_okay=False),
                             help="Central config file (TOML). Env: ALPR_CENTRAL_CONFIG.")
