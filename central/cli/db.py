"""``alpr-central db``: schema migrations, partition maintenance, and copying a
pilot's reads from SQLite to PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys

import click

from ..config import check_postgres_url
from ..errors import ConfigError, SchemaMismatch, StoreError
from .common import ConfigFailure, TempFailure, config_option
from .common import load_config as _load

logger = logging.getLogger(__name__)

COPIED = ("Everything moves: reads and images, then every governance table (users, the hash-chained access "
          "log, devices and certificates, businesses, legal holds, sharing, device audit logs, hotlists and hits) "
          "in one transaction, rows unchanged; the access-log chain is verified on the copy. Point [store] url "
          "at the database afterwards.")


@click.group("db")
def db_group() -> None:
    """The database: migrations, partitions, copying a SQLite store to PostgreSQL."""


def _postgres(url: str, *, check_schema: bool = True):
    from ..store.postgres import PostgresStore
    try:
        return PostgresStore(url, check_schema=check_schema)
    except SchemaMismatch as exc:
        raise ConfigFailure(str(exc)) from None
    except StoreError as exc:
        raise TempFailure(str(exc)) from None


@db_group.command("migrate")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_migrate(config_path: str, as_json: bool) -> None:
    """Apply pending schema migrations: the SQLite file ([store] path), or,
    when [store] url names PostgreSQL, that database (reads and every
    governance table). Safe to run again. Central refuses to start on a
    PostgreSQL schema that is behind (run this) or ahead of it (upgrade
    central): exit 78."""
    from ..store.sqlite import SQLiteStore
    cfg = _load(config_path)
    if cfg.store.type == "sqlite":
        try:
            sqlite = SQLiteStore(cfg.store.path)  # applies its own migrations on open
            sqlite.close()
        except SchemaMismatch as exc:
            raise ConfigFailure(str(exc)) from None
        except StoreError as exc:
            raise TempFailure(str(exc)) from None
    applied: list[str] = []
    if cfg.store.type == "postgresql":
        store = _postgres(cfg.store.url, check_schema=False)
        try:
            pending, unknown = store.schema_state()
            if unknown:
                raise ConfigFailure(f"the PostgreSQL schema is newer than this central (unknown migrations: "
                                    f"{', '.join(unknown)}); upgrade central")
            applied = store.migrate()
        except StoreError as exc:
            raise TempFailure(str(exc)) from None
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"sqlite": cfg.store.path if cfg.store.type == "sqlite" else None,
                               "postgresql_applied": applied}))
        return
    if cfg.store.type == "sqlite":
        click.echo(f"sqlite {cfg.store.path}: up to date")
    else:
        click.echo(f"postgresql: applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else
                                                                          " (up to date)"))
        if "0200_governance" in applied and _has_users(cfg.store.path):
            # An install that kept its governance tables in the SQLite file (reads only on PostgreSQL).
            click.echo(f"the governance tables are new in PostgreSQL and {cfg.store.path} holds users: copy them "
                       f"before starting central: alpr-central db copy --from sqlite://{cfg.store.path} "
                       f"--to {cfg.store.url}")


def _has_users(path: str) -> bool:
    import sqlite3
    from pathlib import Path
    if not Path(path).is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT count(*) FROM users").fetchone()[0] > 0
    except sqlite3.Error:
        return False


@db_group.command("maintain")
@config_option
@click.option("--months-ahead", default=3, show_default=True, type=click.IntRange(1, 24),
              help="Create the read partitions of this many months ahead.")
def db_maintain(config_path: str, months_ahead: int) -> None:
    """Create the monthly read partitions ahead of time (PostgreSQL; run it
    daily from a timer). The collector also creates the month of any read that
    arrives without one."""
    cfg = _load(config_path)
    if cfg.store.type != "postgresql":
        click.echo("sqlite store: nothing to maintain")
        return
    store = _postgres(cfg.store.url)
    try:
        now = dt.datetime.now(dt.timezone.utc)
        made = store.ensure_partitions(now, now + dt.timedelta(days=31 * months_ahead))
        months = len(store.partitions())
    except StoreError as exc:
        raise TempFailure(str(exc)) from None
    finally:
        store.close()
    click.echo(f"created {made} partition(s); {months} month(s) of reads partitions exist")


@db_group.command("copy", epilog=COPIED)
@click.option("--from", "source", required=True, metavar="sqlite:///PATH",
              help="The SQLite store to copy reads from (opened read-only).")
@click.option("--to", "target", required=True, metavar="postgresql://...",
              help="The migrated PostgreSQL database (no password in the URL: use PGPASSFILE or ~/.pgpass).")
@click.option("--chunk", default=5000, show_default=True, type=click.IntRange(100, 100_000),
              help="Reads per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_copy(source: str, target: str, chunk: int, as_json: bool) -> None:
    """Copy a SQLite store into PostgreSQL: every read and image, then every
    governance table; check that each one is there and that the access-log
    chain verifies on the copy (exit 1 if not). Idempotent: run it again to
    resume. Stop central first (collectors, console)."""
    from ..governance.audit import verify as verify_chain
    from ..store.copy import copy_governance, copy_sqlite_to_postgres
    if not source.startswith("sqlite:///"):
        raise click.BadParameter("expected sqlite:///PATH (an absolute path has four slashes)", param_hint="--from")
    try:
        check_postgres_url(target, "--to")
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    store = _postgres(target)
    try:
        path = source[len("sqlite://"):]
        if as_json:
            result = copy_sqlite_to_postgres(path, store, chunk=chunk)
        else:
            with click.progressbar(length=_count(path), label="copying reads", file=sys.stderr) as bar:
                result = copy_sqlite_to_postgres(path, store, chunk=chunk, progress=bar.update)
        governance = copy_governance(path, store.db.conn)
        chain = verify_chain(store.db.conn)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"reads": result.reads, "images": result.images, "new": result.new,
                               "verified": result.verified, "tables": governance.tables,
                               "audit_head": list(governance.audit_head), "chain_ok": chain.ok}))
    else:
        click.echo(f"copied {result.reads} read(s) ({result.new} new) and {result.images} image(s); "
                   f"{result.verified} verified in PostgreSQL")
        click.echo(f"copied {len(governance.tables)} governance table(s), "
                   f"{sum(governance.tables.values())} row(s); access log head: entry {governance.audit_head[0]}")
    if not chain.ok:
        logger.error("chain on the copy: %s", [i.message for i in chain.issues[:5]])
        raise click.ClickException(f"the access-log chain does NOT verify on the copy ({len(chain.issues)} "
                                   "problem(s)): run 'alpr-central audit verify' on the source")
    if not as_json:
        click.echo("ok: the access-log chain verifies on the copy")


def _count(path: str) -> int:
    import sqlite3
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM reads").fetchone()[0]
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
