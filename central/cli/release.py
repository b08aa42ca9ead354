"""``alpr-central release``: the application release key and signed bundles
for ``alpr-edge update apply`` (library: :mod:`central.fleet.release`).

These run on a release engineer's machine with the release key; they touch
no database and need no personal token."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edge_agent.wire import release as fmt

from ..errors import ConfigError, ReleaseError
from ..fleet import release as rel
from .common import DEFAULT_CONFIG


def _passphrase(path: str | None) -> bytes | None:
    if path:
        try:
            return Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    env = os.environ.get("ALPR_RELEASE_KEY_PASSPHRASE")
    return env.encode() if env else None


passphrase_option = click.option("--passphrase-file", type=click.Path(dir_okay=False),
                                 help="File holding the key's passphrase. Env: ALPR_RELEASE_KEY_PASSPHRASE.")


@click.group("release")
def release_group() -> None:
    """Signed application releases of the edge agent: build and verify (a
release engineer's machine, the release key), offer them to devices over
MQTT in stages and follow each device's update (central, a personal token)."""


@release_group.command("init-key")
@click.option("--private", "private_path", type=click.Path(dir_okay=False),
              help="Where the private key goes (0600). Default: ~/.config/alpr-release/release-key.pem.")
@click.option("--public", "public_path", type=click.Path(dir_okay=False),
              help="Where the public key goes (give it to devices: alpr-edge update trust).")
@passphrase_option
@click.option("--config", "config_path", envvar="ALPR_CENTRAL_CONFIG", default=DEFAULT_CONFIG, show_default=True,
              type=click.Path(dir_okay=False), help="Central's config, if on this machine: its data folder is refused.")
@click.option("--allow-beside-other-keys", is_flag=True, help="Allow a folder that already holds other keys.")
def init_key(private_path, public_path, passphrase_file, config_path, allow_beside_other_keys) -> None:
    """Generate the Ed25519 release key, kept apart from every other key."""
    forbidden = []
    if Path(config_path).exists():
        from .. import config as config_mod
        try:
            forbidden.append(config_mod.load(config_path).data_dir)
        except ConfigError:
            pass
    try:
        private, public, kid = rel.init_key(private_path, public_path, passphrase=_passphrase(passphrase_file),
                                            forbidden_dirs=forbidden, allow_beside_other_keys=allow_beside_other_keys)
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {private} (0600) and {public}; release key id {kid}")


@release_group.command("build")
@click.option("--key", "key_path", type=click.Path(dir_okay=False), help="The release private key "
              "(default: ~/.config/alpr-release/release-key.pem).")
@passphrase_option
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Bundle file to write.")
@click.option("--wheel", type=click.Path(dir_okay=False, exists=True),
              help="The agent wheel to ship (default: build one from --source with pip wheel --no-deps).")
@click.option("--source", type=click.Path(file_okay=False, exists=True), help="Source checkout (default: this one).")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, exists=True),
              help="Models folder (*.tflite + manifest.json; default: the source's models/).")
@click.option("--allow-downgrade", is_flag=True,
              help="Signed into the manifest: devices running a newer version accept this one.")
@click.option("--notes", default="", help="Release notes (short; signed into the manifest).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def build(key_path, passphrase_file, out_path, wheel, source, models_dir, allow_downgrade, notes, as_json) -> None:
    """Build a signed bundle: the agent's wheel and the models, with a
    manifest of versions and SHA-256s signed by the release key."""
    try:
        key = rel.load_key(key_path or rel.default_key_path(), _passphrase(passphrase_file))
        built = rel.build(out_path, key, wheel=wheel, source=source, models_dir=models_dir,
                          allow_downgrade=allow_downgrade, notes=notes)
    except (ReleaseError, fmt.BundleRefused) as exc:
        raise click.ClickException(str(exc)) from None
    m = built.manifest
    doc = {"bundle": str(built.path), "version": m.version, "models_version": m.models_version,
           "allow_downgrade": m.allow_downgrade, "key_id": m.key_id,
           "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in m.files]}
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"bundle {built.path}: version {m.version}, models {m.models_version}, key {m.key_id}"
               + (", downgrade allowed" if m.allow_downgrade else ""))
    for f in m.files:
        click.echo(f"  {f.sha256}  {f.size:>9}  {f.path}")


@release_group.command("verify")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True))
@click.option("--public-key", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The release public key.")
def verify(bundle, public_key) -> None:
    """Check a bundle's signature and every file's SHA-256 (as a device does)."""
    try:
        key = fmt.load_public_key(Path(public_key).read_bytes())
        m = fmt.open_bundle(bundle, key)
    except fmt.BundleRefused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ok: version {m.version}, {len(m.files)} files, key {m.key_id}")


COMMANDS = (release_group,)
