"""The certificate authority that TLS on the broker rests on.

Keys are ECDSA P-256 (fast on a Pi). Private keys are written 0600 through a
temporary file and ``os.replace``. Device certificates carry the device id as
their common name; the broker uses it as the MQTT user name
(``use_identity_as_username``) and the ACL confines each device to its own
topic prefix.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.wire.topics import validate_device_id

from ..files import write_file

COLLECTOR_IDENTITY = "central.collector"   # not a valid device id, so never confused with one
DEFAULT_COLLECTORS = ("main",)


def collector_identity(name: str) -> str:
    """The certificate identity (common name, MQTT user name and client id) of
    the collector process ``name``: ``central.collector.<name>``. Each
    collector has its own, so none can take over another's session."""
    try:
        validate_device_id(name)
    except ValueError:
        raise ValueError(f"collector name {name!r}: lower-case letters, digits and '-'") from None
    return f"{COLLECTOR_IDENTITY}.{name}"


def write_secret(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` with mode 0600, atomically, never through a planted link
    (:func:`central.files.write_file`)."""
    write_file(path, data, 0o600)


def write_public(path: str | os.PathLike, data: bytes) -> None:
    write_file(path, data, 0o644)


def _key_pem(key, passphrase: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def new_ca(name: str = "ALPR Central CA", *, days: int = 3650, now: dt.datetime | None = None,
           passphrase: bytes | None = None) -> tuple[bytes, bytes]:
    """A self-signed CA as (key PEM, certificate PEM); with ``passphrase`` the
    key PEM is encrypted with it."""
    now = now or dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _key_pem(key, passphrase), _cert_pem(cert)


def issue(ca_key_pem: bytes, ca_cert_pem: bytes, common_name: str, *, server_names: tuple[str, ...] = (),
          days: int = 365, public_key=None, now: dt.datetime | None = None,
          ca_passphrase: bytes | None = None) -> tuple[bytes | None, bytes]:
    """Issue a certificate. With ``server_names`` it is a TLS server
    certificate for those host names / IP addresses, otherwise a client one.
    With ``public_key`` (from a CSR) no key is generated and None is returned
    in its place: the private key never leaves the device."""
    now = now or dt.datetime.now(dt.timezone.utc)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=ca_passphrase)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    key = None
    if public_key is None:
        key = ec.generate_private_key(ec.SECP256R1())
        public_key = key.public_key()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server_names:
        alt = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return (_key_pem(key) if key is not None else None), _cert_pem(cert)
