"""``alpr-edge provision`` and ``alpr-edge renew``: enrolling the device (a
thin shell over :mod:`edge_agent.provision`). The field tech's other commands:
``status`` (:mod:`edge_agent.cli_status`), ``test-camera``
(:mod:`edge_agent.cli_camera`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import output as out
from .cli_common import TempFailure, config_option
from .cli_common import load_config as _load
from .cli_common import setup_logging as _logging
from .errors import ProvisionError





def _provision_errors(exc: ProvisionError):
    from .provision import ProvisionUnreachable
    if isinstance(exc, ProvisionUnreachable):
        return TempFailure(str(exc))
    return click.ClickException(str(exc))


def _camera_uris(values: tuple[str, ...]) -> dict:
    uris = {}
    for value in values:
        cam, sep, uri = value.partition("=")
        if not sep or not cam or not uri:
            raise click.BadParameter("use CAMERA_ID=URI", param_hint="--camera-uri")
        uris[cam] = uri
    return uris


def _enrollment_token(token_file: str | None, argv_token: str | None) -> str:
    """The one-time enrollment token, from a file, standard input ('-') or
    ALPR_ENROLLMENT_TOKEN; never the command line (other users see it
    in the process list), so --token still works but warns."""
    if argv_token:
        click.echo("warning: --token shows the token to every user of this machine (process list) and keeps it "
                   "in shell history; use --token-file FILE, '--token-file -' (standard input) or "
                   "ALPR_ENROLLMENT_TOKEN", err=True)
        return argv_token.strip()
    if token_file == "-":
        token = sys.stdin.readline().strip()
    elif token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {token_file}: {exc.strerror}", param_hint="--token-file") from None
    else:
        token = os.environ.get("ALPR_ENROLLMENT_TOKEN", "").strip()
    if not token:
        raise click.UsageError("give the enrollment token from 'alpr-central enroll create' with --token-file FILE, "
                               "'--token-file -' (standard input) or the ALPR_ENROLLMENT_TOKEN environment variable")
    return token


@click.command("provision")
@click.option("--token-file", envvar="ALPR_ENROLLMENT_TOKEN_FILE", type=click.Path(dir_okay=False, allow_dash=True),
              help="File holding the one-time token from `alpr-central enroll create`; '-' reads it from standard "
                   "input. Env: ALPR_ENROLLMENT_TOKEN_FILE, or the token itself in ALPR_ENROLLMENT_TOKEN.")
@click.option("--token", "argv_token", hidden=True,
              help="Deprecated: the token on the command line (visible in the process list).")
@click.option("--central", "central_url", required=True, help="Central's enrollment endpoint, https://host[:8443].")
@click.option("--config", "config_path", envvar="ALPR_EDGE_CONFIG", default="/etc/alpr/edge.toml",
              show_default=True, type=click.Path(dir_okay=False),
              help="Config file to write; keys and certificates go into identity/ beside it.")
@click.option("--data-dir", help="Where the outbox lives (new devices). Default: /var/lib/alpr-edge (the systemd "
              "unit's StateDirectory) for a config under /etc, else data/ beside the config.")
@click.option("--credentials-dir", help="Write the device key here as device.key and name it relatively in the "
              "config, for systemd LoadCredential (e.g. /etc/alpr/credentials).")
@click.option("--user", help="Account the agent runs as (e.g. alpr): it gets the config and identity files, 0600.")
@click.option("--camera-uri", "camera_uris", multiple=True,
              help="CAMERA_ID=URI for device/stream cameras (stays on the device). Repeat.")
@click.option("--recognizer", help="Recognition engine type for a new config (default: tflite).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for central.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def provision(token_file, argv_token, central_url, config_path, data_dir, credentials_dir, user, camera_uris, recognizer, timeout,
              as_json) -> None:
    """Enroll this device: make its key here, send a CSR with the token,
    write certificate, CA, central's data key and the config (all 0600)."""
    _logging("warning")
    token = _enrollment_token(token_file, argv_token)
    from .provision import provision as do_provision
    if data_dir is None and not Path(config_path).exists() and str(Path(config_path).resolve()).startswith("/etc/"):
        data_dir = "/var/lib/alpr-edge"
    try:
        result = do_provision(token, central_url, config_path, data_dir=data_dir,
                              camera_uris=_camera_uris(camera_uris), recognizer=recognizer, timeout=timeout,
                              credentials_dir=credentials_dir, user=user)
    except ProvisionError as exc:
        raise _provision_errors(exc) from None
    doc = {"device_id": result.device_id, "config": str(result.config_path), "certificate": str(result.cert_file),
           "certificate_expires": result.cert_expires, "data_dir": result.data_dir,
           "buffered_reads_kept": result.kept_buffered_reads,
           "cameras_without_uri": list(result.cameras_without_uri),
           "ignored_camera_uris": list(result.unknown_camera_uris), "release_key": result.release_key}
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(out.fields([("device", result.device_id), ("config", result.config_path),
                           ("certificate", result.cert_file), ("certificate expires", out.when(result.cert_expires)),
                           ("data folder", result.data_dir), ("buffered reads kept", result.kept_buffered_reads)]))
    for cam in result.unknown_camera_uris:
        click.echo(f"ignored --camera-uri {cam}=...: no camera {cam} is enrolled for this device")
    for cam in result.cameras_without_uri:
        click.echo(f"camera {cam} has no uri yet: set it in {result.config_path} "
                   f"(or provision again with --camera-uri {cam}=...)")
    click.echo(f"\nnext: alpr-edge config check --config {result.config_path} && "
               f"alpr-edge test-camera --config {result.config_path}; then (re)start the agent")


@click.command("renew")
@config_option
@click.option("--central", "central_url", help="Central's enrollment endpoint (default: the one provisioned from).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for central.")
@click.option("--if-expiring-within", "within_days", type=click.FloatRange(min=0), default=None,
              help="Only renew when the certificate expires within this many days (for a daily timer).")
def renew(config_path, central_url, timeout, within_days) -> None:
    """Renew the device certificate with a new key, authenticated by the
    current certificate; buffered reads are kept. Restart the agent after."""
    import datetime as dt
    _logging("warning")
    from .provision import renew as do_renew
    try:
        result = do_renew(config_path, central_url=central_url, timeout=timeout,
                          within=None if within_days is None else dt.timedelta(days=within_days))
    except ProvisionError as exc:
        raise _provision_errors(exc) from None
    if result is None:
        click.echo(f"certificate not due for renewal (expires in more than {within_days:g} days)")
        return
    click.echo(f"device {result.device_id}: new certificate {result.cert_file} valid until {out.when(result.cert_expires)}; "
               f"{result.kept_buffered_reads} buffered read(s) kept")


COMMANDS = (provision, renew)  # test-camera: edge_agent/cli_camera.py
__all__ = ["COMMANDS"]
