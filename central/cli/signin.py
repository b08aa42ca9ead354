"""Signing in to the registry for the device and fleet commands: open the
registry (a store that cannot be opened is a temporary failure, exit 75),
authenticate the personal token, turn library errors into click errors with
the right exit code, and close the registry whatever happened."""

from __future__ import annotations

import contextlib

import click

from ..errors import ConfigError, EnrollmentError, PolicyError, RegistryError, StoreError, UnsafePathError
from .common import ConfigFailure, TempFailure
from .session import read_token


def open_registry(cfg):
    from ..fleet.registry import Registry
    try:
        return Registry(cfg.store.database)
    except StoreError as exc:
        raise TempFailure(str(exc)) from None


class Errors:
    """Library errors -> click errors with the right exit code; ``also``:
    more exception types shown as plain errors (exit 1)."""

    def __init__(self, also: tuple[type[BaseException], ...] = ()) -> None:
        self.also = also

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, ConfigError):
            raise ConfigFailure(str(exc)) from None
        if isinstance(exc, StoreError):
            raise TempFailure(str(exc)) from None
        if isinstance(exc, (RegistryError, PolicyError, EnrollmentError, FileExistsError, UnsafePathError,
                            *self.also)):
            raise click.ClickException(str(exc)) from None
        return False


@contextlib.contextmanager
def signed_in(cfg, token_file, *, also: tuple[type[BaseException], ...] = ()):
    """``with signed_in(cfg, token_file) as (registry, user)``: the registry
    and the user the personal token names; library errors in the block become
    click errors (:class:`Errors`) and the registry is closed at the end."""
    registry = open_registry(cfg)
    try:
        with Errors(also):
            yield registry, registry.authenticate(read_token(token_file))
    finally:
        registry.close()
