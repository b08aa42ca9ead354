"""``alpr-edge``: the command line of the edge agent (a thin shell over the library).

Exit codes: 0 ok, 1 operational error, 2 usage, 75 temporary failure
(broker unreachable: retry), 78 configuration error.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from pathlib import Path

import click

from . import __version__, remote_config
from . import config as config_mod
from .cli_common import ConfigFailure, config_option
from .cli_common import load_config as _load
from .cli_common import setup_logging as _logging
from .errors import ConfigError, EdgeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alpr-edge")
def main() -> None:
    """ALPR edge agent: reads plates on the camera, keeps them sealed to
    central's key in a local buffer, and syncs them over MQTT."""


@main.command()
@config_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--exit-when-drained", is_flag=True,
              help="Exit once every finite source (file, folder) has ended and the buffer is empty.")
def run(config_path: str, log_level: str, exit_when_drained: bool) -> None:
    """Run the agent until SIGTERM / Ctrl-C."""
    _logging(log_level)
    from .agent import Agent  # heavy imports (OpenCV) only when running
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rolled_back = None
    while not stop.is_set():
        # Each turn: the config file with central's remote configuration over it. A new
        # remote configuration (or its rollback) ends the turn and the agent is rebuilt.
        base = _load(config_path)
        try:
            eff = remote_config.load_for_start(config_path, base)
        except ConfigError as exc:
            raise ConfigFailure(str(exc)) from None
        remote = None
        if eff.store is not None:
            remote = remote_config.RemoteConfigAgent(eff.store, config_path,
                                                     trial_seconds=base.remote_config.trial_seconds)
        try:
            agent = Agent(eff.config, remote=remote)
        except ConfigError as exc:
            if eff.version:  # the remote configuration stops the agent from starting: the previous one
                rolled_back = f"version {eff.version} stops the agent from starting: {exc}"
                eff.store.rollback(rolled_back)
                continue
            raise ConfigFailure(str(exc)) from None
        except EdgeError as exc:
            raise click.ClickException(str(exc)) from None
        if remote is not None:
            remote.note = agent._note
            remote.started(eff.rolled_back or rolled_back)
        rolled_back = None
        agent.run(stop, exit_when_drained=exit_when_drained)
        if remote is None or not remote.restart.is_set():
            break


@main.group(name="config")
def config_group() -> None:
    """Inspect the agent configuration."""


@config_group.command("check")
@config_option
def config_check(config_path: str) -> None:
    """Validate the config file with the configuration central set remotely
    laid over it, and that every camera but a picamera2 names what it reads
    (``uri``); exit 78 naming the key path on any error."""
    remote = remote_config.check(config_path, _load(config_path))  # central's configuration over this file
    if remote.error:
        raise ConfigFailure(remote.error)
    cfg = remote.config
    missing = config_mod.incomplete(cfg)
    if missing:
        raise ConfigFailure("; ".join(missing))
    click.echo(f"ok: device {cfg.device.id}, {len(cfg.cameras)} camera(s), broker {cfg.sync.host}:{cfg.sync.port}"
               + (f"; remote configuration version {remote.version} ({remote.state})" if remote.version else ""))


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Connect to the broker once with this device's certificate to check it is reachable.")
def status(config_path: str, as_json: bool, probe: bool) -> None:
    """Identity, certificate expiry, broker reachable, buffer depth and age,
    last sync, disk (full, free, reserve), reads lost and audit events not
    recorded for lack of space, camera fps and tamper (view black, blurred, moved)."""
    cfg = _load(config_path)
    from .agent import FULL_BELOW
    from .outbox import Outbox
    cert = _cert_expiry(cfg.sync.cert_file) if cfg.sync.tls else None
    path = cfg.data_dir / "status.json"
    try:
        live = json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):  # cut short by a power loss, or unreadable: say so, do not crash
        live = None
        click.echo(f"warning: {path} is unreadable; showing the buffer only", err=True)
    outbox_path = cfg.data_dir / "outbox.sqlite"
    stats = None
    if outbox_path.exists():
        try:
            ob = Outbox(outbox_path, exclusive_fallback=False)  # never takes the file from a running agent
            stats = ob.stats()
            ob.close()
        except EdgeError as exc:  # a full disk, or the agent holds the file alone: show what it last wrote
            click.echo(f"warning: cannot read the buffer ({exc}); showing the agent's last status", err=True)
    buffer = (live or {}).get("buffer") or {}
    try:
        st = os.statvfs(cfg.data_dir)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    disk = dict((live or {}).get("disk") or {})
    disk["free_bytes"] = free
    if stats:
        oldest = stats.oldest_day and dt.datetime.fromtimestamp(stats.oldest_day, dt.timezone.utc).date().isoformat()
    else:
        oldest = buffer.get("oldest_day")
    doc = {
        "device_id": cfg.device.id,
        "certificate_expires": cert,
        "broker": f"{cfg.sync.host}:{cfg.sync.port}",
        "broker_reachable": None,
        "broker_error": None,
        "agent_running": bool(live and time.time() - dt.datetime.fromisoformat(live["updated_at"]).timestamp() < 10),
        "connected": live["broker"]["connected"] if live else None,
        "last_ack_at": live["last_ack_at"] if live else None,
        "buffer_depth": stats.depth if stats else buffer.get("depth", 0),
        "oldest_read_day": oldest,  # the outbox keeps capture days, not times
        "counters": stats.counters if stats else buffer.get("counters", {}),
        "reads_lost_unbufferable": live.get("reads_lost_unbufferable", 0) if live else None,
        "disk_full": bool(disk.get("full")) or (free is not None and free < FULL_BELOW),
        "disk_free_bytes": free,
        "disk_reserve_held": (cfg.data_dir / "reserve").exists() if cfg.buffer.reserve_megabytes > 0 else None,
        "audit_unrecorded": ((live or {}).get("audit") or {}).get("unrecorded"),
        "cameras": live["cameras"] if live else [],
    }
    if probe:
        from .provision import probe_broker
        doc["broker_error"] = probe_broker(cfg.sync, cfg.device.id)
        doc["broker_reachable"] = doc["broker_error"] is None
    if as_json:
        click.echo(json.dumps(doc))
        return
    from . import output as out
    now = dt.datetime.now(dt.timezone.utc)
    for key, value in doc.items():
        if key == "cameras":
            for cam in value:
                click.echo(f"camera {cam['id']:<12} {cam['state']:<9} {cam['fps']:>6.1f} fps"
                           + (f"  error: {cam['last_error']}" if cam["last_error"] else "")
                           + (f"  TAMPER: view {', '.join(cam['tamper'])}" if cam.get("tamper") else ""))
            continue
        if key in ("last_ack_at", "certificate_expires"):
            shown = out.when(value, now=now)
        elif key == "disk_free_bytes" and value is not None:
            shown = f"{value / 1e9:.2f} GB" if value >= 1e8 else f"{value / 1e6:.1f} MB"
        elif key in ("broker_reachable", "connected", "agent_running") and value is None:
            shown = "unknown" if key != "broker_reachable" else "not probed (--no-probe)"
        else:
            shown = out.value(value)
        click.echo(f"{key.replace('_', ' '):<24} {shown}")


def _cert_expiry(path: str) -> str | None:
    try:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
        return cert.not_valid_after_utc.isoformat()
    except (OSError, ValueError):
        return None


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--vehicles", default=6, show_default=True, type=click.IntRange(1, 1000), help="Vehicles in the clip.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same clip).")
def sample(out_dir: str, vehicles: int, seed: int) -> None:
    """Generate a sample clip of vehicles with rendered US-style plates."""
    from .sample import generate
    video, sidecar = generate(out_dir, vehicles=vehicles, seed=seed)
    click.echo(f"{video}\n{sidecar}")


from .cli_provision import COMMANDS as _provision_commands  # noqa: E402

for _command in _provision_commands:
    main.add_command(_command)

from .cli_update import update_group  # noqa: E402
from .recognize_cmd import evaluate, recognize  # noqa: E402

main.add_command(update_group)

main.add_command(recognize)
main.add_command(evaluate)

from .auditlog import install_cli_audit  # noqa: E402

install_cli_audit(main)  # every local command with --config is recorded in the device's audit log

if __name__ == "__main__":  # pragma: no cover
    main()
