"""Application release bundles: the format central writes and devices verify.

A bundle is an uncompressed POSIX tar holding, in this order:

- ``manifest.json``: canonical JSON (sorted keys, no spaces, UTF-8) of
  :class:`ReleaseManifest`: the release version, whether it may replace a
  newer version (``allow_downgrade``), and every other member with its kind
  (``wheel`` or ``model``), size and SHA-256;
- ``manifest.sig``: the Ed25519 signature of those exact bytes (64 raw bytes);
- the files the manifest lists, each exactly once, regular files only.

A device checks the signature against the release public key it trusts
before it parses anything else, then each file's size and hash as it reads
it; any member the manifest does not list refuses the bundle. The release key
is Ed25519 and belongs to nothing else (not central's CA, data or sharing
keys). Errors: :class:`BundleRefused` (a :class:`~edge_agent.wire.MalformedMessage`),
whose text says what failed and never contains key material.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import MalformedMessage

FORMAT = "alpr-release/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
KINDS = ("wheel", "model")
MAX_MANIFEST_BYTES = 1 << 20
VERSION_RE = re.compile(r"^(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})$")
_PATH_RE = re.compile(r"^(models/)?[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class BundleRefused(MalformedMessage):
    """A release bundle is unsigned, signed by another key, tampered with,
    malformed, or not allowed to replace the running version."""


def parse_version(text: str) -> tuple[int, int, int]:
    """``MAJOR.MINOR.PATCH`` as a tuple; anything else is refused."""
    m = VERSION_RE.match(text or "")
    if not m:
        raise BundleRefused(f"version {text!r} is not MAJOR.MINOR.PATCH")
    return tuple(int(g) for g in m.groups())  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class ReleaseFile:
    path: str
    kind: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class ReleaseManifest:
    version: str
    created_at: str
    key_id: str
    files: tuple[ReleaseFile, ...]
    models_version: str = ""
    allow_downgrade: bool = False
    notes: str = ""

    @property
    def wheel(self) -> ReleaseFile:
        return next(f for f in self.files if f.kind == "wheel")

    @property
    def models(self) -> tuple[ReleaseFile, ...]:
        return tuple(f for f in self.files if f.kind == "model")

    def to_bytes(self) -> bytes:
        doc = dataclasses.asdict(self)
        doc["format"] = FORMAT
        doc["files"] = [dataclasses.asdict(f) for f in self.files]
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise BundleRefused("the release public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleRefused("the release public key is not an Ed25519 key")
    return key


def sign(private_key: Ed25519PrivateKey, manifest: ReleaseManifest) -> tuple[bytes, bytes]:
    """(manifest bytes, signature)."""
    data = manifest.to_bytes()
    return data, private_key.sign(data)


def verify(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> ReleaseManifest:
    """The manifest, if ``signature`` is the release key's over ``data``."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleRefused("the manifest is too large")
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise BundleRefused("the manifest signature does not verify with the trusted release key "
                            "(tampered, or signed with another key)") from None
    return parse(data)


def parse(data: bytes) -> ReleaseManifest:
    try:
        doc = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        raise BundleRefused("the manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleRefused(f"the manifest is not {FORMAT}")
    try:
        files = tuple(ReleaseFile(path=str(f["path"]), kind=str(f["kind"]), size=int(f["size"]),
                                  sha256=str(f["sha256"])) for f in doc["files"])
        manifest = ReleaseManifest(version=str(doc["version"]), created_at=str(doc["created_at"]),
                                   key_id=str(doc["key_id"]), files=files,
                                   models_version=str(doc.get("models_version", "")),
                                   allow_downgrade=doc.get("allow_downgrade", False) is True,
                                   notes=str(doc.get("notes", "")))
    except (KeyError, TypeError, ValueError):
        raise BundleRefused("the manifest lacks a field or has one of the wrong type") from None
    parse_version(manifest.version)
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise BundleRefused("the manifest lists a file twice")
    for f in files:
        if not _PATH_RE.match(f.path) or f.path in (MANIFEST, SIGNATURE):
            raise BundleRefused(f"the manifest names an unsafe path {f.path!r}")
        if f.kind not in KINDS or f.size < 0 or not re.fullmatch(r"[0-9a-f]{64}", f.sha256):
            raise BundleRefused(f"the manifest entry {f.path!r} is malformed")
        if (f.kind == "model") != f.path.startswith("models/"):
            raise BundleRefused(f"the manifest entry {f.path!r}: models live under models/, nothing else does")
    wheels = [f for f in files if f.kind == "wheel"]
    if len(wheels) != 1 or not wheels[0].path.endswith(".whl"):
        raise BundleRefused("the manifest must list exactly one agent wheel (.whl)")
    if wheel_version(wheels[0].path) != manifest.version:
        raise BundleRefused("the wheel's version is not the release version")
    return manifest


def wheel_version(filename: str) -> str:
    """The version in a wheel's file name (``name-version-py-abi-platform.whl``)."""
    parts = filename.rsplit("/", 1)[-1].split("-")
    if len(parts) < 5 or not filename.endswith(".whl"):
        raise BundleRefused(f"{filename!r} is not a wheel file name")
    return parts[1]


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """A short printable form for people comparing keys by eye."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b32encode(hashlib.sha256(raw).digest()[:15]).decode().lower()


def open_bundle(path, public_key: Ed25519PublicKey, extract_to=None) -> ReleaseManifest:
    """Verify a bundle file: signature first, then every member against the
    manifest (names, order of nothing, sizes, SHA-256s; no member more or
    fewer, regular files only). With ``extract_to`` (an existing empty
    folder) the files are written there as they are checked; on refusal what
    was written is the caller's to remove."""
    import os
    import tarfile
    from pathlib import Path

    try:
        tar = tarfile.open(path, mode="r:")
    except (OSError, tarfile.TarError) as exc:
        raise BundleRefused(f"not a release bundle (an uncompressed tar): {exc}") from None
    with tar:
        def read_small(member_name: str, limit: int) -> bytes:
            try:
                member = tar.getmember(member_name)
            except KeyError:
                raise BundleRefused(f"the bundle has no {member_name} (unsigned?)") from None
            if not member.isreg() or member.size > limit:
                raise BundleRefused(f"{member_name} is not a small regular file")
            return tar.extractfile(member).read()

        manifest = verify(public_key, read_small(MANIFEST, MAX_MANIFEST_BYTES), read_small(SIGNATURE, 64))
        expected = {f.path: f for f in manifest.files}
        seen: set[str] = set()
        for member in tar:
            if member.name in (MANIFEST, SIGNATURE):
                continue
            entry = expected.get(member.name)
            if entry is None:
                raise BundleRefused(f"the bundle holds {member.name!r}, which the signed manifest does not list")
            if member.name in seen or not member.isreg():
                raise BundleRefused(f"{member.name!r} appears twice or is not a regular file")
            if member.size != entry.size:
                raise BundleRefused(f"{member.name!r} has the wrong size (tampered or truncated)")
            seen.add(member.name)
            src = tar.extractfile(member)
            h = hashlib.sha256()
            out = None
            if extract_to is not None:
                target = Path(extract_to) / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                out = open(target, "xb")
            try:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    if out is not None:
                        out.write(chunk)
                if out is not None:
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                if out is not None:
                    out.close()
            if h.hexdigest() != entry.sha256:
                raise BundleRefused(f"{member.name!r} does not match its SHA-256 in the signed manifest (tampered)")
        missing = sorted(set(expected) - seen)
        if missing:
            raise BundleRefused(f"the bundle lacks {', '.join(missing)}")
    return manifest
