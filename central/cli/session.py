"""The authenticated session every governance command runs in, and the options
they share (``--token-file``, ``--json``).

The personal token comes from the file named by ``--token-file`` /
``ALPR_TOKEN_FILE`` (mode 0600) or from ``ALPR_TOKEN``; never from an argument
(it would show in ``ps`` and shell history). The library checks the role.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click

from ..errors import AuthenticationError, CentralError, ConfigError
from ..governance.users import User, UserDirectory
from .common import ConfigFailure
from .common import load_config as _load
from .common import open_store as _open_store

token_option = click.option("--token-file", type=click.Path(dir_okay=False), envvar="ALPR_TOKEN_FILE",
                            help="File holding your personal token (0600). Env: ALPR_TOKEN_FILE; or put the token "
                                 "itself in ALPR_TOKEN.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


class Session:
    """An open store and the authenticated user, for one command."""

    def __init__(self, config_path: str, token_file: str | None, *, authenticate: bool = True) -> None:
        self.cfg = _load(config_path)
        self.store = _open_store(self.cfg)
        self.conn = self.store.db.conn
        self.users = UserDirectory(self.conn)
        self.user: User | None = None
        if authenticate:
            try:
                self.user = self.users.authenticate(read_token(token_file))
            except AuthenticationError as exc:
                self.store.close()
                raise click.ClickException(str(exc)) from None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.store.close()
        if isinstance(exc, ConfigError):
            raise ConfigFailure(str(exc)) from None
        if isinstance(exc, CentralError):
            raise click.ClickException(str(exc)) from None
        return False


def read_token(token_file: str | None) -> str | None:
    if token_file:
        path = Path(token_file)
        try:
            if path.stat().st_mode & 0o077:
                raise click.ClickException(f"{path} is readable by others; chmod 600 it")
            return path.read_text().strip()
        except OSError as exc:
            raise click.ClickException(f"cannot read token file {path}: {exc.strerror}") from None
    return os.environ.get("ALPR_TOKEN")


def parse_date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD", param_hint=name) from None


