"""``alpr-central config check``'s look at the files the configuration names:
each key or certificate path must hold what its key path says (a PEM
certificate, a private key of the right kind), not just exist. A path to a
file that is not a key passed the check before and failed only at run time.

Files that ``ca init`` / ``keys init-signing`` create later are checked only
when present; the collector's own TLS files and the data keys are required.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .config import CentralConfig


@dataclasses.dataclass(frozen=True)
class Problem:
    key: str        # the config key path
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.path}: {self.message}"


def _certificate(data: bytes) -> str | None:
    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        return "not a PEM certificate"
    return None


def _private_key(data: bytes, *, encrypted_ok: bool = False, kind=None) -> str | None:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: the CA key may be, with [ca] passphrase_file
        return None if encrypted_ok else "an encrypted private key where an unencrypted one is expected"
    except (ValueError, UnsupportedAlgorithm):
        return "not a PEM private key"
    if kind is not None and not isinstance(key, kind):
        return f"not an {kind.__name__.removesuffix('PrivateKey')} private key"
    return None


def check(cfg: CentralConfig) -> list[Problem]:
    """Every problem with the key and certificate files ``cfg`` names."""
    items = []  # (key path, path, checker, required)
    if cfg.mqtt.tls:
        items += [("mqtt.ca_file", cfg.mqtt.ca_file, _certificate, True),
                  ("mqtt.cert_file", cfg.mqtt.cert_file, _certificate, True),
                  ("mqtt.key_file", cfg.mqtt.key_file, _private_key, True)]
    items += [("sharing.signing_key", cfg.sharing.signing_key,
               lambda d: _private_key(d, kind=Ed25519PrivateKey), False),
              ("remote_config.signing_key", cfg.remote_config.signing_key,
               lambda d: _private_key(d, kind=Ed25519PrivateKey), False),
              ("ca.cert_file", cfg.ca.cert_file, _certificate, False),
              ("ca.key_file", cfg.ca.key_file, lambda d: _private_key(d, encrypted_ok=True), False),
              ("broker.cert_file", cfg.broker.cert_file, _certificate, False),
              ("broker.key_file", cfg.broker.key_file, _private_key, False),
              ("enrollment.cert_file", cfg.enrollment.cert_file, _certificate, False),
              ("enrollment.key_file", cfg.enrollment.key_file, _private_key, False)]
    problems = []
    for key, path, checker, required in items:
        p = Path(path)
        if not p.exists():
            if required:
                problems.append(Problem(key, path, "does not exist"))
            continue
        try:
            data = p.read_bytes()
        except OSError as exc:
            problems.append(Problem(key, path, f"cannot read ({exc.strerror})"))
            continue
        message = checker(data)
        if message:
            problems.append(Problem(key, path, message))
        elif checker is not _certificate and p.stat().st_mode & 0o077:
            problems.append(Problem(key, path, f"a private key readable by others (mode "
                                               f"{p.stat().st_mode & 0o777:o}): chmod 600 it"))
    for key, path in (("keys.data_private_keys", k) for k in cfg.keys.data_private_keys):
        p = Path(path)
        if p.exists() and p.stat().st_mode & 0o077:
            problems.append(Problem(key, path, f"a private key readable by others (mode "
                                               f"{p.stat().st_mode & 0o777:o}): chmod 600 it"))
    folders = [("data_dir", Path(cfg.data_dir))]
    if cfg.store.type == "sqlite":
        folders.append(("store.path", Path(cfg.store.path).parent))
    for key, folder in folders:
        if not folder.is_dir():
            problems.append(Problem(key, str(folder), "does not exist (create it, or run 'alpr-central init')"))
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(Problem(key, str(folder), "not writable by this account"))
    if os.geteuid() == 0 and not cfg.broker.run_as and Path(cfg.broker.dir, "mosquitto.conf").exists():
        problems.append(Problem("broker.run_as", cfg.broker.dir, "empty while central runs as root: "
                                "'alpr-central broker run' needs the account Mosquitto switches to"))
    if os.geteuid() == 0 and cfg.broker.run_as:
        problems += _reachable_by(cfg.broker.run_as, [("broker.dir", cfg.broker.dir),
                                                      ("broker.key_file", cfg.broker.key_file),
                                                      ("broker.cert_file", cfg.broker.cert_file)])
    if cfg.mqtt.tls and not problems:
        problems += _pair(cfg.mqtt.cert_file, cfg.mqtt.key_file, "mqtt.key_file")
    return problems


def _reachable_by(account: str, paths: list[tuple[str, str]]) -> list[Problem]:
    """Mosquitto opens its files after switching to ``account``: every folder
    above them must let that account through."""
    import pwd
    try:
        info = pwd.getpwnam(account)
    except KeyError:
        return [Problem("broker.run_as", account, "no such account")]
    problems = []
    for key, path in paths:
        for folder in Path(path).resolve().parents:
            st = folder.stat()
            through = (st.st_mode & 0o001 or (st.st_uid == info.pw_uid and st.st_mode & 0o100)
                       or (st.st_gid == info.pw_gid and st.st_mode & 0o010))
            if not through:
                problems.append(Problem(key, path, f"{account} (broker.run_as) cannot pass through {folder} "
                                                   f"(mode {st.st_mode & 0o777:o}): put central's folder where it "
                                                   "can (e.g. /srv/central, not /root) or chmod o+x that folder"))
                break
    return problems


def _pair(cert_path: str, key_path: str, key: str) -> list[Problem]:
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    private = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*raw) != private.public_key().public_bytes(*raw):
        return [Problem(key, key_path, "does not match the certificate in mqtt.cert_file")]
    return []
