"""Signed export bundles, verifiable offline with central's public key alone.

A bundle is a zip file::

    manifest.json    who, why, what (request, recipient, scope), and the
                     SHA-256 of every other file
    reads.json       the shared reads (plate, time, camera, location, ...)
    images/<read id>-crop.jpg   plate crops, when included
    signature.json   Ed25519 signature over the exact bytes of manifest.json

:func:`verify_bundle` checks that the file is exactly one zip (nothing
prepended or appended), the signature, then that every file is listed
with the right hash and that nothing is missing or added; it raises
:class:`BundleError` naming the failed check. Nothing is extracted to disk.

The signing key is Ed25519 (``alpr-central keys init-signing``): the private
key is a 0600 file, the public key is given to recipients.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_agent.wire import PlateRead

from ..errors import BundleError, ConfigError
from ..files import new_file
from ..fleet.pki import write_public, write_secret

FORMAT = "alpr-export/1"
MAX_MEMBER_BYTES = 256 << 20
_RESERVED = ("manifest.json", "signature.json")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def init_signing_key(private_path: str | Path, public_path: str | Path, *, force: bool = False) -> str:
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.exists() and not force:
        raise FileExistsError(f"{private_path} exists; refusing to overwrite the export signing key")
    key = Ed25519PrivateKey.generate()
    write_secret(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    write_public(public_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"sharing.signing_key: cannot read {path}: {exc.strerror} "
                          "(create it with: alpr-central keys init-signing)") from None
    except ValueError:
        raise ConfigError(f"sharing.signing_key: {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"sharing.signing_key: {path} is not an Ed25519 key")
    return key


def load_verify_key(path: str | Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot load the public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path} is not an Ed25519 public key")
    return key


def _read_doc(r: PlateRead) -> dict:
    return {"read_id": r.read_id, "plate": r.plate, "confidence": r.confidence,
            "captured_at": r.captured_at.isoformat(), "device_id": r.device_id, "camera_id": r.camera_id,
            "location": None if r.location is None else {"lat": r.location.latitude, "lon": r.location.longitude,
                                                         "heading": r.location.heading},
            "model_version": r.model_version}


def write_bundle(path: str | Path, manifest: dict, reads: list[PlateRead], key: Ed25519PrivateKey, *,
                 include_images: bool = True) -> None:
    files: dict[str, bytes] = {"reads.json": json.dumps([_read_doc(r) for r in reads], indent=1,
                                                        sort_keys=True).encode()}
    if include_images:
        for r in reads:
            if r.crop_jpeg:
                files[f"images/{r.read_id}-crop.jpg"] = r.crop_jpeg
    doc = {"format": FORMAT, **manifest, "read_count": len(reads), "key_id": key_id(key.public_key()),
           "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}}
    manifest_bytes = json.dumps(doc, indent=1, sort_keys=True).encode()
    signature = {"alg": "Ed25519", "key_id": doc["key_id"],
                 "signature": base64.b64encode(key.sign(manifest_bytes)).decode()}
    # It holds plates: owner only; a random temporary name, never through a planted link.
    with new_file(path, 0o600) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", manifest_bytes)
        for name, data in sorted(files.items()):
            z.writestr(name, data)
        z.writestr("signature.json", json.dumps(signature, indent=1))


@dataclasses.dataclass(frozen=True)
class VerifiedBundle:
    manifest: dict
    reads: list

    @property
    def read_count(self) -> int:
        return len(self.reads)


_EOCD = struct.Struct("<4s4H2LH")          # end of central directory record (22 bytes)
_EOCD64_LOCATOR = struct.Struct("<4sLQL")    # zip64 end of central directory locator (20 bytes)
_EOCD64 = struct.Struct("<4sQ2H2L4Q")        # zip64 end of central directory record (56 bytes)
_LOCAL = struct.Struct("<4s5H3L2H")          # local file header (30 bytes)


def _check_layout(raw: bytes, infos: list[zipfile.ZipInfo]) -> None:
    """The file is exactly one zip: members back to back from byte 0, then the
    central directory, then the end record at the very end with no comment.
    Python's zipfile (like most readers) tolerates data before the first
    member or after the end record; a bundle carries none, so anything
    prepended (a forged zip) or appended is refused."""
    n = len(raw)
    if n < _EOCD.size or raw[n - _EOCD.size:n - _EOCD.size + 4] != b"PK\x05\x06":
        raise BundleError("the file does not end with the zip end record: bytes were appended")
    _, _, _, _, entries, cd_size, cd_offset, comment = _EOCD.unpack_from(raw, n - _EOCD.size)
    if comment:
        raise BundleError("the zip carries a comment: bytes were appended")
    end = n - _EOCD.size
    locator = end - _EOCD64_LOCATOR.size
    if locator >= 0 and raw[locator:locator + 4] == b"PK\x06\x07":
        _, _, eocd64_at, _ = _EOCD64_LOCATOR.unpack_from(raw, locator)
        if eocd64_at + _EOCD64.size != locator or raw[eocd64_at:eocd64_at + 4] != b"PK\x06\x06":
            raise BundleError("the zip64 end record is not where the locator says: extra data")
        (_, _, _, _, _, _, _, entries, cd_size, cd_offset) = _EOCD64.unpack_from(raw, eocd64_at)
        end = eocd64_at
    if cd_offset + cd_size != end or entries != len(infos):
        raise BundleError("the zip's central directory is not where its end record says: extra data")
    at = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset != at or raw[at:at + 4] != b"PK\x03\x04":
            raise BundleError(f"{info.filename}: not where the previous member ends: extra data in the zip")
        fields = _LOCAL.unpack_from(raw, at)
        at += _LOCAL.size + fields[9] + fields[10] + info.compress_size
        if info.flag_bits & 0x08:  # a data descriptor follows (with or without its signature)
            size = 24 if info.compress_size >= 0xFFFFFFFF or info.file_size >= 0xFFFFFFFF else 16
            at += size if raw[at:at + 4] == b"PK\x07\x08" else size - 4
    if at != cd_offset:
        raise BundleError("extra data between the last member and the central directory")


def verify_bundle(data: bytes | str | Path, public_key: Ed25519PublicKey) -> VerifiedBundle:
    """Check a bundle offline; raise :class:`BundleError` naming what failed."""
    raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
        _check_layout(raw, z.infolist())
        members = {}
        for info in z.infolist():
            if info.file_size > MAX_MEMBER_BYTES:
                raise BundleError(f"{info.filename}: too large for an export bundle")
            if info.filename in members:
                raise BundleError(f"{info.filename}: appears twice in the bundle")
            members[info.filename] = z.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(f"not a readable bundle: {exc}") from None
    for name in _RESERVED:
        if name not in members:
            raise BundleError(f"{name} is missing")
    try:
        signature = json.loads(members["signature.json"])
        sig = base64.b64decode(signature["signature"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise BundleError("signature.json is malformed") from None
    try:
        public_key.verify(sig, members["manifest.json"])
    except InvalidSignature:
        raise BundleError("bad signature: the manifest was altered or not signed with this key "
                          f"(key id {key_id(public_key)})") from None
    manifest = json.loads(members["manifest.json"])
    if manifest.get("format") != FORMAT:
        raise BundleError(f"unknown bundle format {manifest.get('format')!r}")
    listed = manifest.get("files", {})
    for name, digest in listed.items():
        if name not in members:
            raise BundleError(f"{name} is listed in the manifest but missing")
        if hashlib.sha256(members[name]).hexdigest() != digest:
            raise BundleError(f"{name} was altered: its SHA-256 does not match the manifest")
    extra = sorted(set(members) - set(listed) - set(_RESERVED))
    if extra:
        raise BundleError(f"files not in the signed manifest: {', '.join(extra)}")
    reads = json.loads(members["reads.json"])
    if len(reads) != manifest.get("read_count"):
        raise BundleError("reads.json does not hold the signed number of reads")
    return VerifiedBundle(manifest, reads)
