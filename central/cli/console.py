"""``alpr-central serve`` (the browser console over HTTPS) and ``alpr-central
user passwd / unlock`` (console passwords). The password is read from a
hidden prompt or, with ``--stdin``, from the first line of standard input;
never from an argument, where it would show in ``ps`` and shell history."""

from __future__ import annotations

import logging
import sys

import click

from ..errors import ConfigError
from .common import ConfigFailure, config_option
from .common import load_config as _load
from .session import Session, token_option


@click.command("serve")
@config_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(config_path: str, log_level: str) -> None:
    """Serve the browser console over HTTPS until SIGTERM / Ctrl-C.

    Binds [console] bind:port (loopback by default). The certificate is
    [console] cert_file / key_file; when neither exists, one is issued from
    central's CA for [console] server_names. Users sign in with a password
    set by 'alpr-central user passwd'."""
    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _load(config_path)
    from ..console.server import serve as run_server
    try:
        click.echo(f"console on https://{cfg.console.server_names[0]}:{cfg.console.port} "
                   f"(bound to {cfg.console.bind})", err=True)
        run_server(cfg)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return click.prompt("New password", hide_input=True, confirmation_prompt=True)


@click.command("passwd")
@config_option
@token_option
@click.argument("name")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from the first line of standard "
                                                             "input (for scripts) instead of a hidden prompt.")
def user_passwd(config_path, token_file, name, from_stdin) -> None:
    """Set NAME's console password (yourself, or anyone as an admin). Ends
    NAME's console sessions and clears a lockout. At least [console]
    min_password_length characters."""
    from ..console.auth import ConsoleAuth
    with Session(config_path, token_file) as s:
        password = _read_password(from_stdin)
        ConsoleAuth(s.conn, s.cfg.console).set_password(s.user, name, password)
    click.echo(f"password set for {name}; their console sessions ended")


@click.command("unlock")
@config_option
@token_option
@click.argument("name")
def user_unlock(config_path, token_file, name) -> None:
    """Lift a console lockout after failed sign-ins (admin only)."""
    from ..console.auth import ConsoleAuth
    with Session(config_path, token_file) as s:
        ConsoleAuth(s.conn, s.cfg.console).unlock(s.user, name)
    click.echo(f"unlocked {name}")
