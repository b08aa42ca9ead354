"""Provisioning: bring a device online with one enrollment token, and renew
its certificate before it expires.

``provision``: the device makes its key pair here (the private key never
leaves it), checks central's CA against the fingerprint the token carries,
sends the token with a CSR over verified TLS, and receives its certificate,
the broker CA, central's data-encryption public key and its initial config.

Files (all 0600, each written via a temporary file + ``os.replace``) go into
``<config folder>/identity/`` under versioned names (``device-<serial>.key``,
``device-<serial>.crt``, ``ca-<hash>.crt``, ``central-data-<hash>.pub.pem``);
the config file is replaced last and is the single commit point, so a crash
leaves the old, working identity in place. Re-provisioning and renewal keep
``device.data_dir`` - and so the outbox with its buffered reads - unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import ssl
import tempfile
import tomllib
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import config as config_mod
from .errors import ConfigError, ProvisionError
from .wire import load_public_key

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "alpr1"
MAX_ANSWER = 256 * 1024
IDENTITY_DIR = "identity"
ENROLLMENT_FILE = "enrollment.json"
CREDENTIAL_KEY = "device.key"   # the name systemd's LoadCredential gives the agent


class ProvisionUnreachable(ProvisionError):
    """Central could not be reached; retry later (CLI exit 75)."""


@dataclasses.dataclass(frozen=True)
class Token:
    token_id: str
    secret: str = dataclasses.field(repr=False)
    pin: str

    @classmethod
    def parse(cls, text: str) -> "Token":
        parts = text.strip().split(".")
        if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not all(parts[1:]):
            raise ProvisionError("not an enrollment token (expected alpr1.<id>.<secret>.<fingerprint>); "
                                 "copy it again from `alpr-central enroll create`")
        return cls(parts[1], parts[2], parts[3])


@dataclasses.dataclass(frozen=True)
class Central:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> "Central":
        parsed = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
        if parsed.scheme != "https" or not parsed.hostname:
            raise ProvisionError(f"--central: expected https://host[:port], got {url!r}")
        try:
            port = parsed.port or 8443
        except ValueError:
            raise ProvisionError(f"--central: bad port in {url!r}") from None
        return cls(parsed.hostname, port)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Provisioned:
    device_id: str
    config_path: Path
    cert_file: Path
    cert_expires: str
    data_dir: str
    kept_buffered_reads: int
    cameras_without_uri: tuple[str, ...] = ()
    unknown_camera_uris: tuple[str, ...] = ()
    release_key: str = ""        # what became of the release key central sent (see trust_release_key)


def write_private(path: str | os.PathLike, data: bytes, owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` with mode 0600, atomically (temp file + fsync + rename);
    ``owner`` = (uid, gid) to hand the file to the agent's account."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A fresh, randomly named file (O_EXCL): root never writes through a link the
    # agent's account could plant under a predictable name. The rename replaces a
    # link at ``path`` itself, never what it points to.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
            if owner:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _ids(user: str | None) -> tuple[int, int] | None:
    if not user:
        return None
    import pwd
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ProvisionError(f"--user: no account {user!r} on this device") from None
    return entry.pw_uid, entry.pw_gid


def locate_key(sync) -> str:
    """The device key's path for tools run by a person (status, renew): the
    configured one, or, when the config names a systemd credential that only
    the service sees, the credentials folder recorded at provisioning."""
    if Path(sync.key_file).exists():
        return sync.key_file
    try:
        meta = json.loads((Path(sync.cert_file).parent / ENROLLMENT_FILE).read_text())
    except (OSError, ValueError):
        return sync.key_file
    if meta.get("credentials_dir"):
        return str(Path(meta["credentials_dir"]) / Path(sync.key_file).name)
    return sync.key_file


def ca_pin(ca_cert_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(ca_cert_pem).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


# -- HTTPS ----------------------------------------------------------------
def _request(central: Central, ctx: ssl.SSLContext, method: str, path: str, body: dict | None = None,
             timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(central.host, central.port, context=ctx, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        payload = resp.read(MAX_ANSWER + 1)
        if len(payload) > MAX_ANSWER:
            raise ProvisionError("central's answer is too large")
        return resp.status, payload
    except ssl.SSLCertVerificationError as exc:
        raise ProvisionError(f"central's TLS certificate does not verify against the pinned CA "
                             f"({exc.verify_message}); check the --central host name") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ProvisionUnreachable(f"cannot reach central at {central.url}: {exc}") from None
    finally:
        conn.close()


def fetch_pinned_ca(central: Central, pin: str, timeout: float = 30.0) -> bytes:
    """Central's CA certificate, accepted only if its fingerprint is the pin.
    Nothing secret travels on this unverified first connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    status, body = _request(central, ctx, "GET", "/v1/ca", timeout=timeout)
    if status != 200:
        raise ProvisionError(f"central answered {status} for its CA certificate; is {central.url} central?")
    try:
        actual = ca_pin(body)
    except ValueError:
        raise ProvisionError("central sent something that is not a CA certificate") from None
    if not hmac.compare_digest(actual.encode(), pin.encode()):
        raise ProvisionError("central's CA does not match the fingerprint in the token: wrong --central address, "
                             "a mistyped token, or someone is intercepting the connection. Nothing was sent.")
    return body


def _verified_context(ca_pem: bytes, cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _post(central: Central, ctx: ssl.SSLContext, path: str, body: dict, timeout: float) -> dict:
    status, payload = _request(central, ctx, "POST", path, body, timeout)
    try:
        doc = json.loads(payload)
    except ValueError:
        raise ProvisionError(f"central answered {status} with something that is not JSON") from None
    if status == 403:
        raise ProvisionError(f"central refused: {doc.get('error', 'no reason given')}")
    if status >= 500:
        raise ProvisionUnreachable(f"central failed ({status}): {doc.get('error', '')}; try again later")
    if status != 200 or not isinstance(doc, dict):
        raise ProvisionError(f"central answered {status}: {doc.get('error', '') if isinstance(doc, dict) else ''}")
    return doc


# -- keys and answers -----------------------------------------------------
def new_key_and_csr() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alpr-edge")]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclasses.dataclass(frozen=True)
class _Answer:
    device_id: str
    cert: x509.Certificate
    cert_pem: bytes
    ca_pem: bytes
    data_public_pem: bytes
    doc: dict
    config_public_pem: bytes | None = None  # remote configuration's signing key (central/fleet/remote_config.py)
    release_pem: bytes | None = None


def _check_answer(doc: dict, key, ca_pem: bytes) -> _Answer:
    try:
        device_id = doc["device_id"]
        cert_pem, answer_ca = doc["certificate"].encode(), doc["ca_certificate"].encode()
        data_pem = doc["data_public_key"].encode()
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        load_public_key(data_pem)
        int(doc["broker"]["port"]), str(doc["broker"]["host"])
        release_pem = doc["release_public_key"].encode() if doc.get("release_public_key") is not None else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProvisionError(f"central's answer is incomplete or malformed ({type(exc).__name__})") from None
    if answer_ca != ca_pem and ca_pin(answer_ca) != ca_pin(ca_pem):
        raise ProvisionError("central's answer names a different CA than the pinned one")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ProvisionError(f"the issued certificate is not signed by the pinned CA ({type(exc).__name__})") from None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise ProvisionError("the issued certificate is not for this device's key")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != device_id:
        raise ProvisionError("the issued certificate names another device")
    config_pem = doc.get("config_public_key")
    if config_pem is not None:
        from .wire.devconfig import ConfigRefused, load_public_key as load_config_key
        try:
            config_pem = config_pem.encode()
            load_config_key(config_pem)
        except (AttributeError, ConfigRefused) as exc:
            raise ProvisionError(f"central's configuration public key is malformed ({exc})") from None
    if release_pem is not None:
        from .wire import release as release_fmt
        try:
            release_fmt.load_public_key(release_pem)
        except release_fmt.BundleRefused as exc:
            raise ProvisionError(f"central's answer carries a bad release key: {exc}") from None
    return _Answer(device_id, cert, cert_pem, ca_pem, data_pem, doc, config_pem, release_pem)


def trust_release_key(config_path: Path, pem: bytes | None) -> str:
    """Trust the release public key central sent, beside the config (as
    ``alpr-edge update trust`` does), only when this device trusts none yet:
    a key already trusted is never replaced here (rotation is the explicit
    ``alpr-edge update trust --replace``). Returns what happened, in words."""
    if pem is None:
        return ""
    from .update import trusted_key_path
    from .wire import release as release_fmt
    new = release_fmt.key_id(release_fmt.load_public_key(pem))
    path = trusted_key_path(config_path)
    if path.exists():
        try:
            old = release_fmt.key_id(release_fmt.load_public_key(path.read_bytes()))
        except (OSError, release_fmt.BundleRefused):
            old = "unreadable"
        if old == new:
            return f"release key {new} already trusted"
        logger.warning("central sent release key %s but this device trusts %s: kept (rotate with "
                       "alpr-edge update trust --replace)", new, old)
        return (f"kept the trusted release key {old}; central sent {new}: to rotate, check it and run "
                f"alpr-edge update trust --replace")
    write_private(path, pem)
    os.chmod(path, 0o644)  # public; root's folder: the agent reads it, cannot change it
    return f"trusting release key {new} ({release_fmt.fingerprint(release_fmt.load_public_key(pem))})"


# -- config ---------------------------------------------------------------
_BARE = re.compile(r"^[A-Za-z0-9_-]+\Z")


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes and backslashes escaped, control characters as \\uXXXX."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(doc: dict, _prefix: str = "") -> str:
    """A small TOML writer for config documents (scalars, tables, arrays of tables)."""
    key = lambda k: k if _BARE.match(k) else _toml_string(k)  # noqa: E731
    lines, tables = [], []
    for k, v in doc.items():
        if v is None:
            continue
        if isinstance(v, dict):
            tables.append((k, v, False))
        elif isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
            tables.append((k, v, True))
        else:
            lines.append(f"{key(k)} = {_toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v, is_array in tables:
        name = f"{_prefix}{key(k)}"
        for item in (v if is_array else [v]):
            out += f"\n[[{name}]]\n" if is_array else f"\n[{name}]\n"
            out += dump_toml(item, name + ".")
    return out


def _pending_reads(data_dir: str) -> int:
    path = Path(data_dir) / "outbox.sqlite"
    if not path.exists():
        return 0
    from .outbox import Outbox
    ob = Outbox(path)
    try:
        return ob.depth
    finally:
        ob.close()


def _existing(config_path: Path) -> dict:
    if not config_path.exists():
        return {}
    try:
        with open(config_path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"{config_path}: cannot read the existing config ({exc}); move it aside first") from None


def _build_config(old: dict, ans: _Answer, files: dict, *, data_dir: str | None, camera_uris: dict,
                  recognizer: str | None, config_dir: Path) -> dict:
    doc = {k: v for k, v in old.items()}
    device = dict(old.get("device", {}))
    device["id"] = ans.device_id
    device["data_dir"] = device.get("data_dir") or data_dir or str(config_dir / "data")
    old_cams = {c.get("id"): c for c in old.get("cameras", []) if isinstance(c, dict)}
    loc = ans.doc.get("location") or {}
    cameras = []
    for cam in ans.doc.get("cameras", []):
        entry = dict(old_cams.get(cam["id"], {}))
        entry["id"], entry["source"] = cam["id"], entry.get("source", cam.get("source", "picamera2"))
        if cam["id"] in camera_uris:
            entry["uri"] = camera_uris[cam["id"]]
        for field in ("latitude", "longitude", "heading"):
            if loc.get(field) is not None and field not in entry:
                entry[field] = float(loc[field])
        cameras.append(entry)
    unknown = sorted(set(camera_uris) - {c["id"] for c in cameras})
    if unknown:  # the token is spent by now: report, do not fail
        logger.warning("--camera-uri names camera(s) not enrolled for this device: %s", ", ".join(unknown))
    recognition = dict(old.get("recognition", {"type": "tflite"}))
    if recognizer:
        recognition["type"] = recognizer
    sync = dict(old.get("sync", {}))
    broker = ans.doc["broker"]
    key_ref = CREDENTIAL_KEY if files["key"].name == CREDENTIAL_KEY else str(files["key"])
    sync.update(host=str(broker["host"]), port=int(broker["port"]), tls=True, ca_file=str(files["ca"]),
                cert_file=str(files["cert"]), key_file=key_ref,
                central_public_key=str(files["data"]))
    if broker.get("topic_prefix"):
        sync["topic_prefix"] = str(broker["topic_prefix"])
    if "config" in files:  # remote configuration: central's configuration-signing public key
        doc["remote_config"] = {**old.get("remote_config", {}), "public_key": str(files["config"])}
    doc.update(device=device, cameras=cameras, recognition=recognition, sync=sync)
    return doc


def _identity_files(identity: Path, ans: _Answer, credentials_dir: str | None = None) -> dict:
    serial = format(ans.cert.serial_number, "x")[:16]
    short = lambda data: hashlib.sha256(data).hexdigest()[:12]  # noqa: E731
    key = Path(credentials_dir) / CREDENTIAL_KEY if credentials_dir else identity / f"device-{serial}.key"
    files = {"key": key, "cert": identity / f"device-{serial}.crt",
             "ca": identity / f"ca-{short(ans.ca_pem)}.crt",
             "data": identity / f"central-data-{short(ans.data_public_pem)}.pub.pem"}
    if ans.config_public_pem:
        files["config"] = identity / f"central-config-{short(ans.config_public_pem)}.pub.pem"
    return files


def _commit(config_path: Path, doc: dict, files: dict, key, ans: _Answer, central: Central, *,
            credentials_dir: str | None = None, owner: str | None = None) -> None:
    text = "# Written by alpr-edge provision; edit freely, re-provisioning keeps your changes.\n" + dump_toml(doc)
    try:
        config_mod.parse(tomllib.loads(text), config_path.resolve().parent)
    except ConfigError as exc:
        raise ProvisionError(f"the generated config does not validate ({exc}); nothing was changed") from None
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    ids = _ids(owner)
    identity = files["cert"].parent
    write_private(files["cert"], ans.cert_pem, ids)
    write_private(files["ca"], ans.ca_pem, ids)
    write_private(files["data"], ans.data_public_pem, ids)
    if "config" in files:  # root's, read-only to the agent: it decides which configurations the agent trusts
        write_private(files["config"], ans.config_public_pem, None)
        os.chmod(files["config"], 0o644)
    # root's renew reads this file to know where to write: it stays root's, in a
    # directory the agent's account can read (group) but not change
    write_private(identity / ENROLLMENT_FILE, json.dumps({
        "central": central.url, "ca_pin": ca_pin(ans.ca_pem), "credentials_dir": credentials_dir,
        "owner": owner}).encode(), None)
    if ids:
        os.chown(identity, os.getuid(), ids[1])
        os.chmod(identity, 0o750)
    # In credentials mode the key has a fixed name (systemd LoadCredential) and
    # stays owned by root; the config below is the second of two renames.
    write_private(files["key"], key_pem, None if credentials_dir else ids)
    write_private(config_path, text.encode(), ids)  # the commit point


_OURS = ("device-*.key", "device-*.crt", "ca-*.crt", "central-data-*.pub.pem", "central-config-*.pub.pem")


def _cleanup(identity: Path, keep: dict) -> None:
    """Remove identity files of ours that the new config no longer names."""
    keep_names = {p.name for p in keep.values()}
    ours = _OURS if "config" in keep else _OURS[:-1]  # an answer without the config key keeps the one trusted
    for path in (p for pattern in ours for p in identity.glob(pattern)):
        if path.name not in keep_names and path.is_file():
            try:
                path.unlink()
            except OSError:
                logger.warning("could not remove old identity file %s", path.name)


def provision(token_text: str, central_url: str, config_path: str | os.PathLike, *, data_dir: str | None = None,
              camera_uris: dict | None = None, recognizer: str | None = None, timeout: float = 30.0,
              credentials_dir: str | None = None, user: str | None = None) -> Provisioned:
    """``credentials_dir``: write the key there as ``device.key`` and name it
    relatively in the config, for systemd's ``LoadCredential``. ``user``: the
    account the agent runs as gets the config and identity files (0600)."""
    token, central = Token.parse(token_text), Central.parse(central_url)
    _ids(user)  # an unknown account fails here, before the token is spent
    config_path = Path(config_path)
    old = _existing(config_path)
    old_id = old.get("device", {}).get("id")
    old_data = old.get("device", {}).get("data_dir")
    if old_data:
        old_data = str((config_path.resolve().parent / old_data).resolve())
    buffered = _pending_reads(old_data) if old_data else 0
    if data_dir and old_data and str(Path(data_dir).resolve()) != old_data:
        raise ProvisionError("--data-dir differs from the existing config's device.data_dir, where the outbox lives; "
                             "move the data folder yourself if you must. Nothing was sent.")
    ca_pem = fetch_pinned_ca(central, token.pin, timeout)
    key, csr = new_key_and_csr()
    body = {"token_id": token.token_id, "secret": token.secret, "csr": csr}
    if buffered and old_id:
        body["expect_device_id"] = old_id
    ans = _check_answer(_post(central, _verified_context(ca_pem), "/v1/enroll", body, timeout), key, ca_pem)
    identity = config_path.resolve().parent / IDENTITY_DIR
    files = _identity_files(identity, ans, credentials_dir)
    doc = _build_config(old, ans, files, data_dir=data_dir, camera_uris=camera_uris or {}, recognizer=recognizer,
                        config_dir=config_path.resolve().parent)
    _commit(config_path, doc, files, key, ans, central, credentials_dir=credentials_dir, owner=user)
    _cleanup(identity, files)
    release_key = trust_release_key(config_path, ans.release_pem)
    logger.info("provisioned as device %s (certificate %s)", ans.device_id, files["cert"].name)
    missing = tuple(c["id"] for c in doc["cameras"] if c.get("source") != "picamera2" and not c.get("uri"))
    return Provisioned(ans.device_id, config_path, files["cert"], ans.cert.not_valid_after_utc.isoformat(),
                       doc["device"]["data_dir"], buffered, missing,
                       tuple(sorted(set(camera_uris or {}) - {c["id"] for c in doc["cameras"]})), release_key)


def certificate_expiry(cert_file: str) -> dt.datetime:
    try:
        return x509.load_pem_x509_certificate(Path(cert_file).read_bytes()).not_valid_after_utc
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"cannot read the device certificate {cert_file}: {exc}") from None


def renew(config_path: str | os.PathLike, *, central_url: str | None = None, timeout: float = 30.0,
          within: dt.timedelta | None = None, now: dt.datetime | None = None) -> Provisioned | None:
    """A new key and certificate, authenticated by the current certificate.
    The agent picks them up on its next start. With ``within``: only when the
    certificate expires within that long (None otherwise), for a daily timer."""
    config_path = Path(config_path)
    try:
        cfg = config_mod.load(config_path)
    except ConfigError as exc:
        raise ProvisionError(f"cannot renew: {exc}") from None
    if within is not None:
        now = now or dt.datetime.now(dt.timezone.utc)
        if certificate_expiry(cfg.sync.cert_file) - now > within:
            return None
    identity = config_path.resolve().parent / IDENTITY_DIR
    meta = {}
    try:
        meta = json.loads((identity / ENROLLMENT_FILE).read_text())
    except (OSError, ValueError):
        if not central_url:
            raise ProvisionError(f"no {identity / ENROLLMENT_FILE}; give --central") from None
    central = Central.parse(central_url or meta["central"])
    ca_pem = Path(cfg.sync.ca_file).read_bytes()
    key, csr = new_key_and_csr()
    ctx = _verified_context(ca_pem, cfg.sync.cert_file, locate_key(cfg.sync))
    ans = _check_answer(_post(central, ctx, "/v1/renew", {"csr": csr}, timeout), key, ca_pem)
    if ans.device_id != cfg.device.id:
        raise ProvisionError(f"central renewed {ans.device_id}, not {cfg.device.id}")
    files = _identity_files(identity, ans, meta.get("credentials_dir"))
    old = _existing(config_path)
    doc = _build_config(old, ans, files, data_dir=None, camera_uris={}, recognizer=None,
                        config_dir=config_path.resolve().parent)
    doc["cameras"] = old.get("cameras", doc["cameras"])  # renewal changes the identity only
    _commit(config_path, doc, files, key, ans, central, credentials_dir=meta.get("credentials_dir"),
            owner=meta.get("owner"))
    _cleanup(identity, files)
    logger.info("device %s renewed its certificate (%s)", ans.device_id, files["cert"].name)
    return Provisioned(ans.device_id, config_path, files["cert"], ans.cert.not_valid_after_utc.isoformat(),
                       cfg.device.data_dir, _pending_reads(cfg.device.data_dir))


def probe_broker(sync, device_id: str, *, timeout: float = 5.0) -> str | None:
    """Connect once with this device's certificate (client id ``<device>-probe``,
    so a running agent's session is untouched). None if the broker accepted
    it, otherwise why not."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    done, outcome = threading.Event(), {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-probe", protocol=mqtt.MQTTv5)

    def on_connect(c, userdata, flags, reason_code, properties):
        outcome.setdefault("error", f"broker refused: {reason_code}" if reason_code.is_failure else None)
        done.set()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        outcome.setdefault("error", f"disconnected during the handshake ({reason_code}); "
                                    "certificate revoked or not trusted?")
        done.set()

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    try:
        if sync.tls:
            try:
                client.tls_set(ca_certs=sync.ca_file, certfile=sync.cert_file, keyfile=locate_key(sync),
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError, ValueError) as exc:   # the device's own files, not the network
                why = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc)
                return (f"cannot load the device's TLS files (sync.ca_file, cert_file, key_file: {why}); "
                        "'alpr-edge config check' names the file")
        client.connect(sync.host, sync.port, keepalive=10)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"cannot connect to {sync.host}:{sync.port}: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return f"no answer from {sync.host}:{sync.port} within {timeout:.0f}s"
        return outcome.get("error")
    finally:
        client.disconnect()
        client.loop_stop()
