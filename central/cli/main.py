"""The ``alpr-central`` group and its top-level commands (``run``, ``query``,
``keys``, ``config``, ``demo``); :mod:`central.cli` adds the other groups."""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from .. import __version__
from .common import ConfigFailure, config_option
from .common import load_config as _load
from .common import open_store as _open_store
from .common import parse_when as _when
from ..errors import ConfigError, QueryError

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alpr-central")
def main() -> None:
    """ALPR central: ingests sealed plate reads over MQTT, stores them, and
    answers audited searches."""
    # A command's error is printed once, by click; the library's warnings go to the
    # service log only where a command configures logging (run, serve), not to the
    # terminal a second time through Python's last-resort handler.
    logging.getLogger("central").addHandler(logging.NullHandler())


@main.command()
@config_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--connect-timeout", default=30.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds to keep trying the broker at start; then exit 75 (systemd restarts it later).")
def run(config_path: str, log_level: str, connect_timeout: float) -> None:
    """Run the collector (with the hotlist matcher and webhooks in a child process, and the
    fleet alert feed) until SIGTERM / Ctrl-C, and the browser console when [console] enabled = true (see
    'alpr-central serve'). While the broker cannot be reached at start it logs
    why every few seconds, and exits 75 after --connect-timeout."""
    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _load(config_path)
    # SIGTERM / Ctrl-C stop the service cleanly from here on, also while the console or
    # the hotlist service start and while the broker is being waited for.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from ..keyfiles import check
    problems = [p for p in check(cfg) if p.key.startswith("mqtt.")]   # name the file, never a bare traceback
    if problems:
        raise ConfigFailure("; ".join(str(p) for p in problems))
    from ..ingest.collector import Collector, CollectorService
    from ..ingest.keys import load_opener
    try:
        opener = load_opener(cfg.keys.data_private_keys)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None
    store = _open_store(cfg)
    from ..fleet.registry import Registry
    registry = Registry(cfg.store.database)  # only active, enrolled devices' reads are stored
    # A device's own claims are checked against the registry (its cameras, its
    # enrollment time) and the longest retention period.
    max_age = dt.timedelta(days=max(cfg.retention.hit_days, cfg.retention.non_hit_days))
    service = CollectorService(cfg.mqtt, Collector(store, opener, topic_prefix=cfg.mqtt.topic_prefix,
                                                   max_message_bytes=cfg.mqtt.max_message_bytes,
                                                   device_allowed=registry.allow_list(),
                                                   device_facts=registry.device_facts(), max_age=max_age))
    from ..fleet.device_audit import DeviceAuditHandler
    service.audit_handler = DeviceAuditHandler(cfg.store.database, topic_prefix=cfg.mqtt.topic_prefix)
    from ..hotlist.service import HotlistProcess
    from ..fleet.alert_feed import AlertFeed
    hotlists = None
    try:  # a child process matches each stored read against the hotlists after the ack; sends webhooks
        if cfg.hotlist.matcher:
            hotlists = HotlistProcess(cfg.store.database, cfg.hotlist).attach(service.collector).start()
        alert_feed = AlertFeed(cfg.store.database, cfg.alerts)  # fleet alerts raised/cleared, pushed (webhooks, --watch)
    except ConfigError as exc:
        if hotlists is not None:
            hotlists.stop()
        store.close()
        registry.close()
        raise ConfigFailure(str(exc)) from None
    from ..fleet.device_status import DeviceStatusHandler
    service.status_handler = DeviceStatusHandler(cfg.store.database, topic_prefix=cfg.mqtt.topic_prefix)
    from ..fleet.health import HealthHandler
    service.health_handler = HealthHandler(cfg.store.database, topic_prefix=cfg.mqtt.topic_prefix)
    from ..fleet.remote_config import RemoteConfigHandler
    service.config_handler = RemoteConfigHandler(cfg.store.database, topic_prefix=cfg.mqtt.topic_prefix)
    from ..fleet.update_service import UpdateService
    service.update_service = UpdateService(cfg.store.database, topic_prefix=cfg.mqtt.topic_prefix)
    console = None
    if cfg.console.enabled:  # the browser console in the same process ([console] enabled = true)
        from ..console.server import ConsoleServer
        try:
            console = ConsoleServer(cfg).start()
        except ConfigError as exc:
            if hotlists is not None:
                hotlists.stop()
            alert_feed.stop()
            store.close()
            registry.close()
            raise ConfigFailure(str(exc)) from None
    unreachable: list[str] = []
    watcher = threading.Thread(target=_watch_broker, args=(service, cfg.mqtt, connect_timeout, stop, unreachable),
                               name="broker-watch", daemon=True)
    watcher.start()
    alert_feed.start()
    try:
        service.run(stop)
    finally:
        alert_feed.stop()
        if hotlists is not None:
            hotlists.stop()
        if console is not None:
            console.stop()
        store.close()
        registry.close()
    if unreachable:
        from .common import TempFailure
        raise TempFailure(unreachable[0])


def _watch_broker(service, mqtt, timeout: float, stop: threading.Event, unreachable: list[str]) -> None:
    """Until the collector is subscribed: log why the broker cannot be reached
    every 5 s; after ``timeout`` s, record the reason and stop the service."""
    import socket
    import time
    log = logging.getLogger("central.run")
    deadline = time.monotonic() + timeout
    where = f"{mqtt.host}:{mqtt.port}"
    log.info("connecting to the broker at %s", where)
    while not stop.is_set():
        if service.ready.wait(min(5.0, max(0.1, deadline - time.monotonic()))):
            log.info("connected to the broker at %s; collecting", where)
            return
        try:
            with socket.create_connection((mqtt.host, mqtt.port), timeout=3):
                reason = "it accepts connections but refused or did not finish the MQTT/TLS handshake " \
                         "(check [mqtt] ca_file/cert_file/key_file and the broker's log)"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        if time.monotonic() >= deadline:
            message = (f"cannot reach the MQTT broker at {where} after {timeout:g}s: {reason}; is it running "
                       "('alpr-central broker run')?")
            log.error("%s", message)
            unreachable.append(message)
            stop.set()
            return
        log.error("cannot reach the MQTT broker at %s: %s; retrying", where, reason)


@main.group(name="config")
def config_group() -> None:
    """Inspect the central configuration."""


@config_group.command("check")
@config_option
def config_check(config_path: str) -> None:
    """Validate the config file and the key and certificate files it names
    (each must hold a key / certificate of the right kind); exit 78 naming the
    key path on any error. A path found only by the old rule (an [mqtt] file
    beside the config file) is a warning with the exact fix."""
    cfg = _load(config_path)
    from ..ingest.keys import load_opener
    try:
        load_opener(cfg.keys.data_private_keys)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None
    from ..keyfiles import check
    problems = check(cfg)  # each key / certificate path must hold a key / certificate of the right kind
    if problems:
        raise ConfigFailure("; ".join(str(p) for p in problems))
    where = cfg.store.path if cfg.store.type == "sqlite" else cfg.store.url
    warned = f" ({len(cfg.notices)} warning(s) above: the config works, but change it)" if cfg.notices else ""
    click.echo(f"ok: store {cfg.store.type} at {where}, broker {cfg.mqtt.host}:{cfg.mqtt.port}{warned}")


@main.group()
def keys() -> None:
    """Central's data-encryption keys."""


@keys.command("init")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the private key (mode 0600).")
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the public key (give it to devices).")
def keys_init(private_path: str, public_path: str) -> None:
    """Generate the X25519 key pair devices seal reads to."""
    from ..ingest.keys import init_data_key
    try:
        init_data_key(private_path, public_path)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {private_path} (0600) and {public_path}")


@main.command()
@config_option
@click.option("--plate", help="Plate, exact or with wildcards: '*' any run, '?' one character (7AB*12?).")
@click.option("--tolerant", is_flag=True, help="Also match confusable characters (0/O/D/Q, 1/I/L, 8/B, 5/S, 2/Z).")
@click.option("--since", help="Captured at or after (ISO 8601; UTC unless an offset is given).")
@click.option("--until", help="Captured at or before (ISO 8601).")
@click.option("--camera", help="Camera id.")
@click.option("--device", help="Device id.")
@click.option("--limit", default=100, show_default=True, help="Most results to return (newest first).")
@click.option("--purpose", help="Why you search: one of the configured purposes (required).")
@click.option("--case", "case_number", help="Case or incident number (required).")
@click.option("--token-file", type=click.Path(dir_okay=False), envvar="ALPR_TOKEN_FILE",
              help="File holding your personal token (0600). Env: ALPR_TOKEN_FILE, or the token in ALPR_TOKEN.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per read, for scripts.")
def query(config_path, plate, tolerant, since, until, camera, device, limit, purpose, case_number, token_file,
          as_json) -> None:
    """Search stored reads, newest first, as your authenticated user. Every
    search is logged with its purpose and case number; a search without them
    is refused. Without --plate, give both --since and --until, at most
    [query] max_range_days apart (default 31)."""
    cfg = _load(config_path)
    from .session import read_token
    from ..errors import PolicyError
    from ..governance.search import refused, search
    from ..store import Search
    from ..governance.users import UserDirectory
    asked = {k: v for k, v in {"plate": plate, "tolerant": tolerant, "since": since, "until": until,
                               "camera_id": camera, "device_id": device, "limit": limit}.items()
             if v not in (None, False)}
    try:
        store = _open_store(cfg)
        try:
            user = UserDirectory(store.db.conn).authenticate(read_token(token_file))
            try:  # a malformed option is a refused search, logged like the others
                q = Search(plate=plate, tolerant=tolerant, since=_when(since, "--since"),
                           until=_when(until, "--until"), camera_id=camera, device_id=device,
                           limit=min(limit, cfg.query.max_results))
            except (QueryError, click.BadParameter) as exc:
                refused(store, user, asked, exc, purpose=purpose, case_number=case_number)
                raise
            results = search(store, q, user=user, purpose=purpose, case_number=case_number,
                             purposes=cfg.query.purposes, case_number_pattern=cfg.query.case_number_pattern,
                             max_range=dt.timedelta(days=cfg.query.max_range_days))
        finally:
            store.close()
    except (QueryError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    shown_limit = min(limit, cfg.query.max_results)
    if as_json:
        if len(results) >= shown_limit:   # on stderr: stdout stays one read per line
            click.echo(f"the limit of {shown_limit} was reached: older reads may match too", err=True)
        for item in results:
            r = item.read
            click.echo(json.dumps({
                "read_id": r.read_id, "plate": r.plate, "confidence": r.confidence,
                "captured_at": r.captured_at.isoformat(), "stored_at": item.stored_at.isoformat(),
                "camera_id": r.camera_id, "device_id": r.device_id, "box": list(r.box),
                "alternates": [{"plate": a.plate, "confidence": a.confidence} for a in r.alternates],
                "location": None if r.location is None else {"lat": r.location.latitude,
                                                              "lon": r.location.longitude,
                                                              "heading": r.location.heading},
                "has_crop": r.crop_jpeg is not None, "model_version": r.model_version}))
        return
    if not results:
        click.echo("no reads match")
        return
    from . import output as out
    click.echo(out.table(["captured (UTC)", "plate", "conf", "camera", "device", "read id"],
                         [[item.read.captured_at.strftime("%Y-%m-%d %H:%M:%S"), item.read.plate,
                           f"{item.read.confidence:.3f}", item.read.camera_id, item.read.device_id,
                           item.read.read_id] for item in results], cut_last=False))   # read ids: never cut
    if len(results) >= shown_limit:   # the search stopped at the limit: more reads may match
        click.echo(f"{len(results)} read(s), the newest; the limit of {shown_limit} was reached, so older reads may "
                   "match too: narrow --since/--until" + (f" or raise --limit (up to {cfg.query.max_results})"
                                                          if shown_limit < cfg.query.max_results else ""))
    else:
        click.echo(f"{len(results)} read(s)")


@main.command()
@click.option("--dir", "root", default="demo-data", show_default=True, type=click.Path(file_okay=False),
              help="Folder for everything the demo generates.")
@click.option("--vehicles", default=6, show_default=True, help="Vehicles in the generated clip.")
@click.option("--recognizer", default="tflite", show_default=True,
              type=click.Choice(["sidecar-oracle", "tflite"]), help="Recognition engine of the demo camera.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--console/--no-console", default=True, show_default=True,
              help="Also serve the browser console (HTTPS on a free loopback port; demo accounts printed).")
def demo(root: str, vehicles: int, recognizer: str, duration: float | None, console: bool) -> None:
    """Broker + central + an edge agent on a generated clip, on loopback
    (and the browser console, unless --no-console)."""
    from .demo import run as run_demo
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        run_demo(Path(root).resolve(), vehicles=vehicles, recognizer=recognizer, duration=duration,
                 echo=click.echo, console=console)
    except (FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
