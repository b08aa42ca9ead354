"""How a certificate request travels: a small HTTPS endpoint on central.

Why HTTPS on central rather than an enrollment listener on the broker: the
token check, the CSR signature check, the single-use update and the signing
must happen in one database transaction next to the CA key. Over MQTT that
needs an anonymous (or shared-certificate) listener, a request/response
protocol with correlation ids, and the CA key in a process that reads MQTT; an
HTTPS request is one round trip with a status code, and the broker keeps a
single listener that accepts certificate holders only.

First contact cannot be verified against a CA the device does not have yet,
so the token carries the SHA-256 fingerprint of central's CA certificate
(``alpr1.<token id>.<secret>.<CA fingerprint>``). The device fetches the CA
certificate over TLS (``GET /v1/ca``; public data, nothing sent), compares
its fingerprint with the token's in constant time, and only then opens a
verified TLS connection (CA + host name) to send the token and its CSR. A
man in the middle cannot produce a certificate chain to the pinned CA.

Endpoints (JSON, at most 64 KiB a request)::

    GET  /v1/ca        the CA certificate (PEM)
    POST /v1/enroll    {"token_id", "secret", "csr"} -> certificate, CA, data public key, initial config,
                       the configuration-signing public key when central has one
    POST /v1/renew     {"csr"}; mutual TLS with the device's current certificate
    GET  /v1/health    Authorization: Bearer <personal token>; device health, never reads

``/v1/health`` authenticates the same personal user tokens as the CLI
(:mod:`central.governance.users`). A business user (role business, organization = the
business id) sees its own business's devices only; admins and auditors may
name an owner with ``?owner=<business id or department>``. Every other role,
a disabled user and a bad token get 401/403 with one opaque message.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import json
import logging
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .ca import CertificateAuthority, serial_hex
from ..errors import AuthenticationError, CentralError, EnrollmentError, PermissionDenied, PolicyError, RegistryError
from .registry import Registry

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "alpr1"
MAX_BODY = 64 * 1024


def ca_pin(ca_cert_pem: bytes) -> str:
    """The CA fingerprint as carried in tokens: base64url(SHA-256(DER)), unpadded."""
    der = x509.load_pem_x509_certificate(ca_cert_pem).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@dataclasses.dataclass(frozen=True)
class Token:
    token_id: str
    secret: str = dataclasses.field(repr=False)
    pin: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}.{self.token_id}.{self.secret}.{self.pin}"

    @classmethod
    def parse(cls, text: str) -> "Token":
        parts = text.strip().split(".")
        if len(parts) != 4 or parts[0] != TOKEN_PREFIX or not all(parts[1:]):
            raise EnrollmentError("not an enrollment token (expected alpr1.<id>.<secret>.<fingerprint>)")
        return cls(parts[1], parts[2], parts[3])


@dataclasses.dataclass(frozen=True)
class EnrollmentSettings:
    broker_host: str
    broker_port: int
    topic_prefix: str = "alpr/v1/devices"
    cert_days: int = 365


def data_public_key_pem(private_key_path: str | Path) -> bytes:
    """Central's current data-encryption public key, derived from its private key."""
    from edge_agent.wire import load_private_key
    key = load_private_key(Path(private_key_path).read_bytes())
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


class EnrollmentService:
    """The endpoint's logic, independent of HTTP (so the server is a thin shell)."""

    def __init__(self, registry: Registry, ca: CertificateAuthority, data_public_pem: bytes,
                 settings: EnrollmentSettings, *, on_change: Callable[[], object] | None = None,
                 config_signing_key: str | Path | None = None,
                 release_public_pem: bytes | None = None) -> None:
        self.registry, self.ca, self.data_public_pem, self.settings = registry, ca, data_public_pem, settings
        # remote configuration: the signing key's path; its public half (.pub.pem) goes in each answer
        self.config_signing_key = config_signing_key
        # The application release key (Ed25519, public): a new device trusts it for updates
        # offered over MQTT. Only ever the public half; a device never replaces a key it trusts.
        self.release_public_pem = release_public_pem
        self.on_change = on_change  # e.g. rewrite the broker ACL + CRL and reload it

    def _changed(self) -> None:
        """A device became active (and its older certificates revoked): let
        the broker know before the device tries to connect."""
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # the device is enrolled; the broker catches up on the next reload
            logger.exception("could not refresh the broker after an enrollment; run `alpr-central broker reload`")

    def _answer(self, device, cert_pem: bytes) -> dict:
        answer = {
            "device_id": device.device_id,
            "certificate": cert_pem.decode(),
            "ca_certificate": self.ca.cert_pem.decode(),
            "data_public_key": self.data_public_pem.decode(),
            "broker": {"host": self.settings.broker_host, "port": self.settings.broker_port,
                       "topic_prefix": self.settings.topic_prefix},
            "cameras": [dataclasses.asdict(c) for c in device.cameras],
            "location": {"name": device.location, "latitude": device.latitude, "longitude": device.longitude,
                         "heading": device.heading},
        }
        if self.config_signing_key:  # remote configuration's public key (central/fleet/remote_config.py)
            from .remote_config import public_key_pem_if_any
            config_pem = public_key_pem_if_any(self.config_signing_key)
            if config_pem:
                answer["config_public_key"] = config_pem.decode()
        if self.release_public_pem:
            answer["release_public_key"] = self.release_public_pem.decode()
        return answer

    def enroll(self, body: dict) -> dict:
        token_id, secret, csr = body.get("token_id"), body.get("secret"), body.get("csr")
        if not all(isinstance(v, str) and v for v in (token_id, secret, csr)):
            raise EnrollmentError("request must carry token_id, secret and csr")
        expect = body.get("expect_device_id")
        if expect is not None and not isinstance(expect, str):
            raise EnrollmentError("expect_device_id must be a string")
        device, cert_pem = self.registry.redeem(token_id, secret, csr, self.ca, cert_days=self.settings.cert_days,
                                                expect_device_id=expect)
        self._changed()
        return self._answer(device, cert_pem)

    def renew(self, peer_der: bytes | None, body: dict) -> dict:
        if not peer_der:
            raise EnrollmentError("renewal needs the device's current certificate (mutual TLS)")
        peer = x509.load_der_x509_certificate(peer_der)
        names = peer.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        if not names:
            raise EnrollmentError("the presented certificate names no device")
        csr = body.get("csr")
        if not isinstance(csr, str) or not csr:
            raise EnrollmentError("request must carry csr")
        device, cert_pem = self.registry.renew(str(names[0].value), serial_hex(peer), csr, self.ca,
                                               cert_days=self.settings.cert_days)
        return self._answer(device, cert_pem)

    def health(self, authorization: str | None, owner: str | None = None) -> dict:
        """Device health for the user the bearer token names (see the module
        docstring). :class:`AuthenticationError` or :class:`PermissionDenied`."""
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationError("authentication failed: send Authorization: Bearer <personal token>")
        user = self.registry.authenticate(credential.strip())
        owner = owner or user.organization
        try:
            items = self.registry.health(user, owner)
        except RegistryError:  # unknown owner: say no more than for someone else's
            raise PermissionDenied(f"user {user.name} may not see devices of {owner}") from None
        return {"business_id": owner, "devices": [
            {"device_id": h.device_id, "status": h.status,
             "certificate_expires": h.cert_expires_at and h.cert_expires_at.isoformat(),
             "last_read_at": h.last_read_at and h.last_read_at.isoformat(), "reads_last_24h": h.reads_last_24h}
            for h in items]}


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "alpr-central-enrollment"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, fmt, *args):  # never the body; path and status only
        logger.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, doc: dict | None = None, *, text: bytes | None = None,
              content_type: str = "application/json") -> None:
        body = text if text is not None else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            raise EnrollmentError(f"request body must be 1-{MAX_BODY} bytes of JSON")
        try:
            doc = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise EnrollmentError("request body is not JSON") from None
        if not isinstance(doc, dict):
            raise EnrollmentError("request body must be a JSON object")
        return doc

    def do_GET(self):
        service: EnrollmentService = self.server.service  # type: ignore[attr-defined]
        if self.path == "/v1/ca":
            return self._send(200, text=service.ca.cert_pem, content_type="application/x-pem-file")
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/v1/health":
            owner = urllib.parse.parse_qs(url.query).get("owner", [None])[0]
            try:
                return self._send(200, service.health(self.headers.get("Authorization"), owner))
            except AuthenticationError as exc:
                return self._send(401, {"error": str(exc)})
            except PolicyError as exc:  # PermissionDenied: authenticated, but not allowed
                logger.warning("/v1/health refused: %s", exc)
                return self._send(403, {"error": "not allowed"})
            except CentralError as exc:
                logger.error("/v1/health failed: %s", exc)
                return self._send(503, {"error": "try again later"})
        self._send(404, {"error": "no such endpoint"})

    def do_POST(self):
        service: EnrollmentService = self.server.service  # type: ignore[attr-defined]
        try:
            if self.path == "/v1/enroll":
                return self._send(200, service.enroll(self._body()))
            if self.path == "/v1/renew":
                return self._send(200, service.renew(self.connection.getpeercert(binary_form=True), self._body()))
            self._send(404, {"error": "no such endpoint"})
        except (EnrollmentError, RegistryError, PolicyError) as exc:
            logger.warning("%s refused: %s", self.path, exc)
            self._send(403, {"error": str(exc)})
        except CentralError as exc:
            logger.error("%s failed: %s", self.path, exc)
            self._send(503, {"error": "central cannot enroll right now; try again later"})
        except Exception:  # a request must never stop the server
            logger.exception("unexpected error on %s", self.path)
            self._send(500, {"error": "internal error"})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # failed handshakes, resets: one line, no traceback
        import sys
        logger.warning("connection from %s failed: %s", client_address[0], sys.exc_info()[1])


class EnrollmentServer:
    """The HTTPS endpoint. TLS server certificate signed by central's CA; a
    client certificate is optional (requested for renewal) and, when sent,
    must chain to the CA."""

    def __init__(self, service: EnrollmentService, *, bind: str, port: int, cert_file: str, key_file: str) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_file, key_file)
        ctx.load_verify_locations(cadata=service.ca.cert_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        self.httpd = _Server((bind, port), _Handler, bind_and_activate=False)
        self.httpd.service = service  # type: ignore[attr-defined]
        self.httpd.server_bind()
        self.httpd.server_activate()
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def start(self) -> "EnrollmentServer":
        self._thread = threading.Thread(target=self.serve_forever, name="enrollment", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
