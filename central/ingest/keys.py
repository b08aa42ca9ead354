"""Central's data-encryption keys (X25519): devices seal reads to the public
key; the private keys (current first, older ones kept until devices drained)
open them. Private keys are 0600 files, never in TOML."""

from __future__ import annotations

from pathlib import Path

from edge_agent.wire import Opener, generate_keypair, load_private_key

from ..errors import ConfigError
from ..fleet.pki import write_public, write_secret


def init_data_key(private_path: str | Path, public_path: str | Path, *, force: bool = False) -> None:
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.exists() and not force:
        raise FileExistsError(f"{private_path} exists; refusing to overwrite a data key (readings sealed to it "
                              "could no longer be opened)")
    private_pem, public_pem = generate_keypair()
    write_secret(private_path, private_pem)
    write_public(public_path, public_pem)


def load_opener(paths) -> Opener:
    keys = []
    for i, path in enumerate(paths):
        try:
            keys.append(load_private_key(Path(path).read_bytes()))
        except FileNotFoundError:
            raise ConfigError(f"keys.data_private_keys[{i}]: {path} does not exist (create it: alpr-central keys "
                              f"init --private {path} --public {Path(path).with_suffix('.pub.pem')})") from None
        except OSError as exc:
            raise ConfigError(f"keys.data_private_keys[{i}]: cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"keys.data_private_keys[{i}]: {exc}") from None
    return Opener(keys)
