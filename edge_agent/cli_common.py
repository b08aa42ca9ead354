"""What every ``alpr-edge`` command module shares: exit codes, the exceptions
that carry them, config loading, logging set-up, the ``--config`` option.

Kept apart from :mod:`edge_agent.cli` so command modules never import the
module that registers them.
"""

from __future__ import annotations

import logging
import sys

import click

from . import config as config_mod
from .errors import ConfigError

EX_TEMPFAIL = 75
EX_CONFIG = 78
DEFAULT_CONFIG = "/etc/alpr/edge.toml"


class ConfigFailure(click.ClickException):
    """Configuration error: exit 78 (systemd does not restart)."""

    exit_code = EX_CONFIG


class TempFailure(click.ClickException):
    """Broker or central unreachable: exit 75 (try again later)."""

    exit_code = EX_TEMPFAIL


def load_config(path: str) -> config_mod.EdgeConfig:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


config_option = click.option("--config", "config_path", envvar="ALPR_EDGE_CONFIG", default=DEFAULT_CONFIG,
                             show_default=True, type=click.Path(dir_okay=False),
                             help="Agent config file (TOML). Env: ALPR_EDGE_CONFIG.")
