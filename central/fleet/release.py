"""Application releases for the edge agent: the release signing key and the
signed bundles devices install with ``alpr-edge update apply``.

The release key is an Ed25519 key of its own: not central's CA (device TLS),
not the data key (sealed reads), not the sharing signing key. It is made on
the release engineer's machine, 0600, by default under
``$XDG_CONFIG_HOME/alpr-release/`` (``~/.config``), and :func:`init_key`
refuses to put it in a folder that holds other keys (central's data folder
among them) unless told to. It may be passphrase-protected. Devices hold its
public half (``alpr-edge update trust``).

Bundle format: :mod:`edge_agent.wire.release`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.wire import release as fmt

from ..errors import ReleaseError
from .pki import write_public, write_secret

logger = logging.getLogger(__name__)

KEY_NAME = "release-key.pem"
_KEY_PATTERNS = ("*.key", "*key*.pem", "ca.*")


def default_key_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "alpr-release" / KEY_NAME


def _other_keys(folder: Path, mine: set[Path]) -> list[str]:
    if not folder.is_dir():
        return []
    found = {p for pattern in _KEY_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    return sorted(p.name for p in found - mine)


def init_key(private_path: str | os.PathLike | None = None, public_path: str | os.PathLike | None = None, *,
             passphrase: bytes | None = None, forbidden_dirs=(), allow_beside_other_keys: bool = False
             ) -> tuple[Path, Path, str]:
    """Make the release key pair; returns (private path, public path, key id).

    ``forbidden_dirs``: folders the key must never go in (central's data
    folder). A folder that already holds other keys is refused too, unless
    ``allow_beside_other_keys``: a key kept apart is a key that is lost or
    stolen apart."""
    private = Path(private_path) if private_path else default_key_path()
    public = Path(public_path) if public_path else private.with_name(private.name.replace(".pem", ".pub.pem"))
    if private == public:
        raise ReleaseError("the private and public key paths are the same")
    if private.exists():
        raise ReleaseError(f"{private} exists; refusing to overwrite a release key (devices trust it)")
    folder = private.resolve().parent
    for bad in forbidden_dirs:
        bad = Path(bad).resolve()
        if folder == bad or bad in folder.parents:
            raise ReleaseError(f"{private} is inside central's data folder {bad}; keep the release key apart "
                               "from every other key (the default is ~/.config/alpr-release/)")
    others = _other_keys(folder, {private.resolve(), public.resolve()})
    if others and not allow_beside_other_keys:
        raise ReleaseError(f"{folder} already holds other keys ({', '.join(others)}); keep the release key "
                           "apart (or pass --allow-beside-other-keys)")
    key = Ed25519PrivateKey.generate()
    enc = (serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_secret(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    write_public(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    kid = fmt.key_id(key.public_key())
    logger.info("release key %s written (private 0600)", kid)
    return private, public, kid


def load_key(path: str | os.PathLike, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read the release key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ReleaseError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        raise ReleaseError(f"{path} is passphrase-protected: give the passphrase") from None
    except ValueError:
        raise ReleaseError(f"{path} is not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path} is not an Ed25519 key")
    return key


def source_root() -> Path:
    """This checkout (the folder holding setup.cfg), where a wheel is built from."""
    return Path(__file__).resolve().parents[2]


def build_wheel(source: str | os.PathLike, out_dir: str | os.PathLike, *, timeout: float = 600) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of ``source`` (offline: the
    build backend, setuptools and wheel, must be installed)."""
    out_dir = Path(out_dir)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(out_dir), str(source)], capture_output=True, text=True, timeout=timeout)
    wheels = sorted(out_dir.glob("*.whl"))
    if r.returncode != 0 or len(wheels) != 1:
        raise ReleaseError(f"building the agent wheel failed: {r.stderr.strip()[-2000:]}")
    return wheels[0]


@dataclasses.dataclass(frozen=True)
class BuiltRelease:
    path: Path
    manifest: fmt.ReleaseManifest


def _sha256(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def build(out: str | os.PathLike, key: Ed25519PrivateKey, *, wheel: str | os.PathLike | None = None,
          source: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None,
          allow_downgrade: bool = False, notes: str = "", clock=time.time) -> BuiltRelease:
    """Write a signed bundle to ``out`` (temp file + rename). Without
    ``wheel`` the agent's wheel is built from ``source`` (this checkout);
    the models are ``models_dir``'s ``*.tflite`` and ``manifest.json``
    (default: the source's ``models/``)."""
    out = Path(out)
    source = Path(source) if source else source_root()
    models_dir = Path(models_dir) if models_dir else source / "models"
    with tempfile.TemporaryDirectory(prefix="alpr-release-") as tmp:
        wheel_path = Path(wheel) if wheel else build_wheel(source, tmp)
        if not wheel_path.is_file():
            raise ReleaseError(f"{wheel_path}: no such wheel")
        version = fmt.wheel_version(wheel_path.name)
        fmt.parse_version(version)
        models = sorted(models_dir.glob("*.tflite")) + [models_dir / "manifest.json"]
        missing = [p.name for p in models if not p.is_file()]
        if missing or len(models) < 2:
            raise ReleaseError(f"{models_dir}: no models to ship (missing {', '.join(missing) or '*.tflite'})")
        try:
            models_version = str(json.loads((models_dir / "manifest.json").read_text()).get("version", ""))
        except ValueError:
            raise ReleaseError(f"{models_dir}/manifest.json is not JSON") from None
        entries = [(wheel_path.name, "wheel", wheel_path)] + [(f"models/{p.name}", "model", p) for p in models]
        files = []
        for name, kind, path in entries:
            digest, size = _sha256(path)
            files.append(fmt.ReleaseFile(path=name, kind=kind, size=size, sha256=digest))
        manifest = fmt.ReleaseManifest(
            version=version, created_at=dt.datetime.fromtimestamp(clock(), dt.timezone.utc).isoformat(
                timespec="seconds"), key_id=fmt.key_id(key.public_key()), files=tuple(files),
            models_version=models_version, allow_downgrade=allow_downgrade, notes=notes)
        fmt.parse(manifest.to_bytes())  # what a device will check, checked here first
        data, signature = fmt.sign(key, manifest)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_out = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name, blob in ((fmt.MANIFEST, data), (fmt.SIGNATURE, signature)):
                        _add_bytes(tar, name, blob, clock())
                    for (name, _kind, path) in entries:
                        info = tarfile.TarInfo(name)
                        info.size, info.mode, info.mtime = path.stat().st_size, 0o644, int(clock())
                        with open(path, "rb") as src:
                            tar.addfile(info, src)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_out, 0o644)
            os.replace(tmp_out, out)
        except BaseException:
            Path(tmp_out).unlink(missing_ok=True)
            raise
    logger.info("release %s built (%d files, key %s)", version, len(files), manifest.key_id)
    return BuiltRelease(out, manifest)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(mtime)
    tar.addfile(info, io.BytesIO(data))
