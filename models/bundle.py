"""Signed model bundles: a model set that a device loads only if central signed it.

A bundle is a folder::

    manifest.json      the model set's manifest (``models/manifest.json`` format: every
                       file with its SHA-256 and bytes, each model's version), plus a
                       ``bundle`` section (base set, when and how it was made)
    manifest.sig       {"alg": "Ed25519", "key_id", "signature"}: base64 Ed25519
                       signature over the exact bytes of manifest.json
    plate_*.tflite     the files the manifest lists

Central signs with its model-signing key (``alpr-central models init-signing``
writes it; the private key never leaves central); a device holds only the
public key (``[recognition.options] bundle_key``) and refuses a bundle whose
signature does not verify with it, a file whose SHA-256 differs from the
manifest, or a file the manifest lists that is missing (:func:`verify_bundle`).
The signature covers the manifest and the manifest covers every file, so one
check covers the set. Errors never echo key material.

Only ``cryptography`` is needed: both the agent (to verify) and central (to
sign) import this module; TensorFlow never.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["BundleError", "MANIFEST", "SIGNATURE", "key_id", "init_signing_key", "load_private_key",
           "load_public_key", "sign_bundle", "verify_bundle", "open_bundle"]

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MODEL_KEYS = ("detector", "ocr", "verifier")


class BundleError(ValueError):
    """A bundle that must not be loaded (bad signature, checksum, layout) or a
    key that cannot be used. A ValueError, so the recognizer's callers that
    refuse a bad ``model_dir`` refuse this too."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def init_signing_key(private_path: str | Path, public_path: str | Path) -> str:
    """Generate an Ed25519 model-signing key: the private key (PEM, mode
    0600, written through a temp file and ``os.replace``) and the public key
    to give the devices. Refuses to overwrite a private key. Returns its key id."""
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.exists():
        raise FileExistsError(f"{private_path} exists; refusing to overwrite the model-signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = private_path.with_name(private_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, private_path)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_path.write_bytes(pub)
    return key_id(key.public_key())


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"model-signing key: cannot read {path}: {exc.strerror} "
                          "(create it with: alpr-central models init-signing)") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise BundleError(f"model-signing key: {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"model-signing key: {path} is not an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"bundle_key: cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise BundleError(f"bundle_key: {path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"bundle_key: {path} is not an Ed25519 public key")
    return key


def _check_files(folder: Path, man: dict) -> dict[str, bytes]:
    models = man.get("models")
    if not isinstance(models, dict) or "detector" not in models or "ocr" not in models:
        raise BundleError("model bundle: the manifest lists no detector and OCR")
    contents = {}
    for key, entry in models.items():
        if key not in MODEL_KEYS or not isinstance(entry, dict):
            raise BundleError(f"model bundle: unknown model {key!r} in the manifest")
        name = entry.get("file")
        if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
            raise BundleError(f"model bundle: {key}: file must be a plain file name in the bundle")
        path = folder / name
        try:
            data = path.read_bytes()  # checked and later loaded from these very bytes
        except OSError:
            raise BundleError(f"model bundle: {name} is missing") from None
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise BundleError(f"model bundle: {name} does not match its manifest checksum")
        if "bytes" in entry and len(data) != entry["bytes"]:
            raise BundleError(f"model bundle: {name} does not have its manifest size")
        contents[key] = data
    return contents


def sign_bundle(folder: str | Path, key: Ed25519PrivateKey) -> str:
    """Sign ``folder``'s manifest.json (after checking that every file it
    lists is there with its checksum); writes manifest.sig. Returns the key id."""
    folder = Path(folder)
    data = (folder / MANIFEST).read_bytes()
    _check_files(folder, json.loads(data))
    kid = key_id(key.public_key())
    sig = {"alg": "Ed25519", "key_id": kid, "signature": base64.b64encode(key.sign(data)).decode("ascii")}
    tmp = folder / (SIGNATURE + ".tmp")
    tmp.write_text(json.dumps(sig) + "\n", encoding="utf-8")
    os.replace(tmp, folder / SIGNATURE)
    return kid


def verify_bundle(folder: str | os.PathLike, public_key: Ed25519PublicKey) -> dict:
    """The manifest of the bundle in ``folder`` once its signature verifies
    with ``public_key`` and every file matches it; :class:`BundleError`
    otherwise (the message says which check failed, never key material)."""
    return open_bundle(folder, public_key)[0]


def open_bundle(folder: str | os.PathLike, public_key: Ed25519PublicKey) -> tuple[dict, dict[str, bytes]]:
    """:func:`verify_bundle`, and the verified contents of each model file
    (model key -> bytes), so a loader uses exactly the bytes that were checked
    (nothing can swap a file between the check and the load)."""
    folder = Path(folder)
    try:
        data = (folder / MANIFEST).read_bytes()
    except OSError:
        raise BundleError(f"model bundle: no {MANIFEST} in {folder}") from None
    try:
        sig = json.loads((folder / SIGNATURE).read_text(encoding="utf-8"))
    except OSError:
        raise BundleError(f"model bundle: {folder} is not signed (no {SIGNATURE})") from None
    except ValueError:
        raise BundleError(f"model bundle: {SIGNATURE} is not JSON") from None
    if not isinstance(sig, dict) or sig.get("alg") != "Ed25519" or not isinstance(sig.get("signature"), str):
        raise BundleError(f"model bundle: {SIGNATURE} is not an Ed25519 signature")
    try:
        raw = base64.b64decode(sig["signature"], validate=True)
        public_key.verify(raw, data)
    except (InvalidSignature, ValueError):
        raise BundleError(f"model bundle: the signature does not verify with the configured key "
                          f"(signed by key {str(sig.get('key_id'))[:16]!r}, configured {key_id(public_key)!r})") from None
    try:
        man = json.loads(data)
    except ValueError:
        raise BundleError("model bundle: manifest.json is not JSON") from None
    if not isinstance(man, dict):
        raise BundleError("model bundle: manifest.json is not an object")
    return man, _check_files(folder, man)
