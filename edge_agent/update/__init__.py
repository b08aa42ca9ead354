"""Signed application updates of the agent (``alpr-edge update``).

- :mod:`.releases`  releases installed beside each other under the data
                    partition, ``current`` switched atomically;
- :mod:`.health`    the health check (a small interface; the real one reads
                    the agent's ``status.json``);
- :mod:`.updater`   verify -> install -> switch -> restart -> health -> roll back,
                    each step in the device audit log.

The bundle format and its verification are the wire contract's
(:mod:`edge_agent.wire.release`): central writes what devices check.
The release public key a device trusts is ``release-key.pub.pem`` beside the
config file (``/etc/alpr/``): a folder root owns, not the data folder the
agent's account can write, since root installs and runs what that key signs.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..wire import release as fmt

TRUSTED_KEY = "release-key.pub.pem"
DEFAULT_APP_DIR = "/var/lib/alpr/app"


def trusted_key_path(config_path: str | os.PathLike) -> Path:
    return Path(config_path).resolve().parent / TRUSTED_KEY


def load_trusted_key(config_path: str | os.PathLike):
    path = trusted_key_path(config_path)
    try:
        return fmt.load_public_key(path.read_bytes())
    except FileNotFoundError:
        raise fmt.BundleRefused(f"no release key is trusted on this device ({path}); "
                                "install it with `alpr-edge update trust`") from None
