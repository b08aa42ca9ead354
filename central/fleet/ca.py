"""Central's certificate authority as an object: load it (the key optionally
passphrase-protected), sign device CSRs, issue server / service certificates,
and publish a certificate revocation list.

The CA key lives in a 0600 file (written by :func:`central.fleet.pki.write_secret`);
its passphrase, when there is one, comes from a separate 0600 file (or
systemd's ``$CREDENTIALS_DIRECTORY``), never from TOML.

A CSR is only proof that the device holds a private key: its subject and
extensions are ignored, and the certificate central issues names the device
id of the enrollment record as common name (the broker's user name).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from . import pki
from ..errors import ConfigError, EnrollmentError

MAX_CSR_BYTES = 16_384
_CURVES = (ec.SECP256R1, ec.SECP384R1)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def read_passphrase(path: str | Path | None) -> bytes | None:
    if not path:
        return None
    try:
        data = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"ca.passphrase_file: cannot read {path}: {exc.strerror}") from None
    if not data:
        raise ConfigError(f"ca.passphrase_file: {path} is empty")
    return data


def init_ca(key_path: str | Path, cert_path: str | Path, *, name: str = "ALPR Central CA", days: int = 3650,
            passphrase: bytes | None = None, now: dt.datetime | None = None) -> str:
    """Create the CA (key 0600, optionally encrypted). Refuses to overwrite an
    existing key: every issued certificate would stop validating. Returns the
    CA certificate's fingerprint."""
    key_path, cert_path = Path(key_path), Path(cert_path)
    if key_path.exists():
        raise FileExistsError(f"{key_path} exists; refusing to replace the CA (every device certificate rests on it)")
    key_pem, cert_pem = pki.new_ca(name, days=days, now=now, passphrase=passphrase)
    pki.write_secret(key_path, key_pem)
    pki.write_public(cert_path, cert_pem)
    return fingerprint(cert_pem)


@dataclasses.dataclass(frozen=True)
class Revoked:
    serial: str          # hex
    revoked_at: dt.datetime
    hold: bool = False   # a suspended device's certificate (CRL reason certificateHold): lifted on resume


class CertificateAuthority:
    def __init__(self, key_pem: bytes, cert_pem: bytes, passphrase: bytes | None = None) -> None:
        try:
            self._key = serialization.load_pem_private_key(key_pem, password=passphrase)
        except TypeError:
            raise ConfigError("ca.passphrase_file: the CA key is encrypted; give its passphrase file") from None
        except ValueError:
            raise ConfigError("ca.key_file: cannot load the CA key (wrong passphrase or not a PEM key)") from None
        self._key_pem, self._passphrase = key_pem, passphrase
        self.cert_pem = cert_pem
        self.cert = x509.load_pem_x509_certificate(cert_pem)
        if self.cert.public_key().public_numbers() != self._key.public_key().public_numbers():
            raise ConfigError("ca.cert_file: the CA certificate does not match the CA key")

    @classmethod
    def load(cls, key_path: str | Path, cert_path: str | Path, passphrase: bytes | None = None):
        for name, path in (("ca.key_file", key_path), ("ca.cert_file", cert_path)):
            if not Path(path).exists():
                raise ConfigError(f"{name}: {path} does not exist (create the CA with `alpr-central ca init`)")
        return cls(Path(key_path).read_bytes(), Path(cert_path).read_bytes(), passphrase)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert_pem)

    def issue(self, common_name: str, *, server_names: tuple[str, ...] = (), days: int = 365,
              public_key=None, now: dt.datetime | None = None) -> tuple[bytes | None, bytes]:
        days = self._clip_days(days, now)
        return pki.issue(self._key_pem, self.cert_pem, common_name, server_names=server_names, days=days,
                         public_key=public_key, now=now, ca_passphrase=self._passphrase)

    def _clip_days(self, days: int, now: dt.datetime | None) -> int:
        now = now or dt.datetime.now(dt.timezone.utc)
        left = (self.cert.not_valid_after_utc - now).days
        if left < 1:
            raise ConfigError("ca.cert_file: the CA certificate has expired")
        return max(1, min(days, left))

    def sign_csr(self, csr_pem: bytes | str, common_name: str, *, days: int = 365,
                 now: dt.datetime | None = None) -> x509.Certificate:
        """A client certificate for ``common_name`` over the CSR's key, after
        checking the CSR's self-signature (proof the requester holds the key)."""
        csr = load_csr(csr_pem)
        _, cert_pem = self.issue(common_name, days=days, public_key=csr.public_key(), now=now)
        return x509.load_pem_x509_certificate(cert_pem)

    def crl(self, revoked: Iterable[Revoked], *, now: dt.datetime | None = None, days: int = 3650,
            after: dt.datetime | None = None) -> bytes:
        """A CRL naming ``revoked`` (revoked and held certificates), valid
        ``days`` (capped at the CA's expiry).

        OpenSSL rejects every client once a CRL is past its next update, so the
        window is long on purpose; prompt revocation comes from the ACL.

        ``after``: the last update of the CRL this one replaces. Mosquitto
        keeps every CRL it has loaded until it restarts and OpenSSL uses the
        one with the latest last update (one-second resolution), so a CRL
        must be dated later than its predecessor or a revocation (or a lifted
        hold) in the same second would not count."""
        now = now or dt.datetime.now(dt.timezone.utc)
        next_update = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        last_update = (now - dt.timedelta(minutes=5)).replace(microsecond=0)
        if after is not None and last_update <= after:
            last_update = min(after + dt.timedelta(seconds=1), now.replace(microsecond=0))
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(last_update).next_update(next_update))
        for item in revoked:
            entry = (x509.RevokedCertificateBuilder().serial_number(int(item.serial, 16))
                     .revocation_date(item.revoked_at))
            if item.hold:  # OpenSSL refuses a held certificate like a revoked one
                entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags.certificate_hold), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def load_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    """Parse and check a CSR; :class:`EnrollmentError` says what is wrong."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    if not data or len(data) > MAX_CSR_BYTES:
        raise EnrollmentError(f"certificate request refused: empty or larger than {MAX_CSR_BYTES} bytes")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        raise EnrollmentError("certificate request refused: not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise EnrollmentError("certificate request refused: its signature does not verify (tampered?)")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            raise EnrollmentError("certificate request refused: EC keys must be P-256 or P-384")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise EnrollmentError("certificate request refused: RSA keys must be at least 2048 bits")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise EnrollmentError("certificate request refused: unsupported key type (use EC P-256)")
    return csr
