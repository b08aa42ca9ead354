"""``alpr-edge``: the command line of the edge agent (a thin shell over the library).

Exit codes: 0 ok, 1 operational error, 2 usage, 75 temporary failure
(broker unreachable: retry), 78 configuration error; ``status`` also 1 for a
problem found and 3 for cannot tell (the agent is not running).
"""

from __future__ import annotations

import signal
import threading

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
    laid over it, that every camera but a picamera2 names what it reads
    (``uri``), and that the files sync needs (CA, certificate, key, central's
    public key) can be read; exit 78 naming the key path on any error."""
    remote = remote_config.check(config_path, _load(config_path))  # central's configuration over this file
    if remote.error:
        raise ConfigFailure(remote.error)
    cfg = remote.config
    missing = config_mod.incomplete(cfg)
    unreadable = _unreadable_sync_files(cfg.sync)
    if unreadable:
        missing.append("; ".join(unreadable) + " (a device gets these files from 'alpr-edge provision')")
    if missing:
        raise ConfigFailure("; ".join(missing))
    click.echo(f"ok: device {cfg.device.id}, {len(cfg.cameras)} camera(s), broker {cfg.sync.host}:{cfg.sync.port}"
               + (f"; remote configuration version {remote.version} ({remote.state})" if remote.version else ""))



def _unreadable_sync_files(sync) -> list[str]:
    """``sync.KEY: PATH cannot be read (why)`` for each file sync needs that
    this account cannot read (the key where the agent's service finds it)."""
    from .provision import locate_key
    keys = [("central_public_key", sync.central_public_key)]
    if sync.tls:
        keys = [("ca_file", sync.ca_file), ("cert_file", sync.cert_file), ("key_file", locate_key(sync))] + keys
    problems = []
    for key, path in keys:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            problems.append(f"sync.{key}: {path} cannot be read ({(exc.strerror or str(exc)).lower()})")
    return problems


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

from .cli_camera import test_camera  # noqa: E402
from .cli_status import status  # noqa: E402
from .cli_update import update_group  # noqa: E402
from .recognize_cmd import evaluate, recognize  # noqa: E402

main.add_command(update_group)
main.add_command(status)
main.add_command(test_camera)

main.add_command(recognize)
main.add_command(evaluate)

from .auditlog import install_cli_audit  # noqa: E402

install_cli_audit(main)  # every local command with --config is recorded in the device's audit log

if __name__ == "__main__":  # pragma: no cover
    main()
