"""``alpr-central init DIR``: a complete, working central home in one step.

It writes ``DIR/central.toml`` (every path explained in comments), then runs
the same steps a host admin would run by hand, through the commands that do
them (looked up on the command group, so no command module imports another):
data key, signing key, CA with the broker's, enrollment endpoint's and
collector's certificates, broker config, and the first admin account. It
prints the next three commands. It refuses a folder that already holds a
``central.toml``: it never overwrites a central.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import click


CONFIG_TEMPLATE = """\
# Central's configuration, written by 'alpr-central init'. Check it with
#   alpr-central config check --config {config}
#
# Where relative paths resolve: data_dir beside this file; every other relative
# path in this file under data_dir. Secrets (private keys) are looked up in
# $CREDENTIALS_DIRECTORY first when systemd passes them with LoadCredential=.
data_dir = "data"                      # {data}

[mqtt]                                 # how the collector reaches the broker
host = "127.0.0.1"
port = {port}
ca_file = "ca/ca.crt"                  # central's CA: the broker's certificate must chain to it
cert_file = "ca/collector.main.crt"    # the collector's client certificate (identity central.collector.main)
key_file = "ca/collector.main.key"     # its private key (0600)
client_id = "central.collector.main"

[keys]
data_private_keys = ["data-key.pem"]   # X25519 key devices seal reads to (0600); public half: data/data-key.pub.pem

[sharing]
signing_key = "signing-key.pem"        # Ed25519 key that signs export bundles (0600); public half: data/signing-key.pub.pem

[remote_config]                        # signed remote configuration of devices ('alpr-central device config push')
signing_key = "config-signing/config-key.pem"   # Ed25519, in a folder of its own (0600); devices get the public half at enrollment

[ca]
key_file = "ca/ca.key"                 # the CA's private key (0600): keep it off shared disks
cert_file = "ca/ca.crt"                # give it to devices (alpr-edge provision gets it for them)

[enrollment]                           # the HTTPS endpoint 'alpr-edge provision' talks to ('alpr-central enroll serve')
bind = "127.0.0.1"                     # loopback until you open it to the camera network
port = {enroll_port}
server_names = {server_names}   # names on its certificate (init --host): the first is the one tokens name
cert_file = "ca/enrollment.crt"
key_file = "ca/enrollment.key"
broker_host = "{broker_host}"              # how devices reach the broker (told to them at enrollment; on its certificate)
broker_port = {port}

[broker]                               # Mosquitto, configured from the registry ('alpr-central broker run')
dir = "broker"                         # mosquitto.conf, acl, crl.pem and its persistence live here
bind = "127.0.0.1"                     # loopback by default: set the camera network's address to accept devices
port = {port}
cert_file = "ca/broker.crt"
key_file = "ca/broker.key"
pid_file = "broker/mosquitto.pid"      # 'broker run' writes it; enrollment and revocation SIGHUP the broker through it
run_as = "{run_as}"                    # the account Mosquitto runs as when started as root (empty: not root)
"""


def _run_as() -> str:
    if os.geteuid() != 0:
        return ""
    try:
        pwd.getpwnam("mosquitto")
        return "mosquitto"
    except KeyError:
        return ""


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--admin", "admin_name", default="admin", show_default=True,
              help="The first admin's user name (a person is better than a shared account).")
@click.option("--organization", default="City Police Department", show_default=True,
              help="The first admin's organization.")
@click.option("--port", default=8883, show_default=True, type=click.IntRange(1, 65535),
              help="The broker's MQTT/TLS port.")
@click.option("--enrollment-port", default=8443, show_default=True, type=click.IntRange(1, 65535),
              help="The enrollment endpoint's HTTPS port.")
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="A name or address cameras reach this machine by, put on the broker's and enrollment "
                   "endpoint's certificates (repeat; the first is the one devices are told). Default: loopback only.")
@click.option("--token-out", type=click.Path(dir_okay=False),
              help="Write the first admin's token to this file (0600) instead of showing it.")
@click.pass_context
def init(ctx: click.Context, directory: str, admin_name: str, organization: str, port: int, enrollment_port: int,
         hosts: tuple[str, ...], token_out: str | None) -> None:
    """Create a complete central home in DIRECTORY: config (every path
    explained), data and signing keys (exports, device configurations), CA with the broker's, enrollment
    endpoint's and collector's certificates, broker config and the first
    admin account (its token shown once). Prints the next three commands.
    Everything listens on loopback until you set [broker] bind and
    [enrollment] bind; --host puts the name cameras use on the certificates."""
    home = Path(directory).resolve()
    config = home / "central.toml"
    if config.exists():
        raise click.ClickException(f"{config} exists already: init never overwrites a central")
    home.mkdir(parents=True, exist_ok=True)
    run_as = _run_as()
    # Private keys are 0600 files; the folder lets run_as (Mosquitto) pass through to its own files only.
    (home / "data").mkdir(exist_ok=True)
    (home / "data").chmod(0o711 if run_as else 0o700)
    names = list(dict.fromkeys([*hosts, "localhost", "127.0.0.1"]))
    config.write_text(CONFIG_TEMPLATE.format(config=config, data=home / "data", port=port,
                                             enroll_port=enrollment_port, run_as=run_as,
                                             server_names=json.dumps(names), broker_host=names[0]
                                             if hosts else "127.0.0.1"))
    config.chmod(0o600)
    click.echo(f"config      {config}")
    root = ctx.find_root().command

    def step(*names, **params):
        group = root
        for name in names:
            group = group.get_command(ctx, name)
        ctx.invoke(group, **params)

    data = home / "data"
    step("keys", "init", private_path=str(data / "data-key.pem"), public_path=str(data / "data-key.pub.pem"))
    step("keys", "init-signing", private_path=str(data / "signing-key.pem"),
         public_path=str(data / "signing-key.pub.pem"))
    step("device", "config", "init-key", config_path=str(config), private_path=None)
    step("ca", "init", config_path=str(config), name="ALPR Central CA", days=3650)
    if run_as:   # Mosquitto reads its certificate and key as run_as
        info = pwd.getpwnam(run_as)
        for name in ("broker.crt", "broker.key"):
            os.chown(data / "ca" / name, info.pw_uid, info.pw_gid)
    step("broker", "config", config_path=str(config))
    step("user", "bootstrap", config_path=str(config), name=admin_name, organization=organization,
         token_out=token_out)
    cfg_arg = f"--config {config}"
    click.echo(f"""
Central is ready in {home}. Next, each in its own terminal (or as systemd units):

  alpr-central broker run {cfg_arg}     # Mosquitto on 127.0.0.1:{port}, TLS with client certificates
  alpr-central run {cfg_arg}            # the collector: stores reads as devices send them
  alpr-central enroll serve {cfg_arg}   # the endpoint 'alpr-edge provision' enrolls devices through

Then enroll a camera: alpr-central enroll create {cfg_arg} --camera lane-1 --location "..." (docs/getting-started.md).""")
