"""Enrollment tokens and CSRs: single use, short-lived, stored hashed, pinned
to central's CA; used, expired, forged and tampered ones are refused with a
clear error. Real SQLite files, the real HTTPS endpoint."""

from __future__ import annotations

import base64
import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from central.fleet.ca import CertificateAuthority, init_ca
from central.fleet.enrollment import Token
from central.errors import ConfigError, EnrollmentError
from central.fleet.registry import CameraSpec
from central.governance.users import UserDirectory
from edge_agent.provision import ProvisionError, new_key_and_csr, provision
from test_enrollment_env import CentralEnv, Clock, mode


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    """A whole central on each backend (PostgreSQL: a throwaway cluster's database)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pg_url=url)
    yield env
    env.close()


def _new_token(registry, ttl=dt.timedelta(hours=1), device_id=None):
    return registry.create_enrollment(owner="department", cameras=[CameraSpec("lane-1", "file")], location="gate",
                                      ttl=ttl, user=UserDirectory(registry.db).get("tech"), device_id=device_id)


def test_a_token_is_used_once_and_stored_only_as_a_digest(central):
    reg = central.registry()
    new = _new_token(reg)
    if central.database.startswith("postgresql"):
        held = [bytes(row[0]) for row in reg.db.execute("SELECT secret_sha256 FROM enrollment_tokens").fetchall()]
        assert held and all(new.secret.encode() not in h for h in held)
    else:
        assert new.secret.encode() not in (central.data / "central.sqlite").read_bytes()
    _, csr = new_key_and_csr()
    device, cert_pem = reg.redeem(new.token_id, new.secret, csr, central.ca)
    assert device.status == "active" and device.cert_serial
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == new.device.device_id
    with pytest.raises(EnrollmentError, match="already used"):
        reg.redeem(new.token_id, new.secret, new_key_and_csr()[1], central.ca)
    reg.close()


def test_an_expired_token_is_refused(central):
    clock = Clock()
    reg = central.registry(clock)
    new = _new_token(reg, ttl=dt.timedelta(minutes=30))
    clock.advance(minutes=31)
    with pytest.raises(EnrollmentError, match="expired"):
        reg.redeem(new.token_id, new.secret, new_key_and_csr()[1], central.ca)
    assert reg.device(new.device.device_id).status == "pending"
    reg.close()


def test_a_forged_token_is_refused(central):
    reg = central.registry()
    new = _new_token(reg)
    forged = base64.urlsafe_b64encode(b"\0" * 32).rstrip(b"=").decode()
    for token_id, secret in ((new.token_id, forged), ("nosuchtoken", new.secret), (new.token_id, new.secret[:-1])):
        with pytest.raises(EnrollmentError, match="not recognised"):
            reg.redeem(token_id, secret, new_key_and_csr()[1], central.ca)
    reg.redeem(new.token_id, new.secret, new_key_and_csr()[1], central.ca)  # the real one still works
    reg.close()


def _tampered_csr() -> str:
    _, csr = new_key_and_csr()
    der = x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER)
    assert b"alpr-edge" in der
    bad = der.replace(b"alpr-edge", b"alpr-evil")
    return ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bad).decode()
            + "-----END CERTIFICATE REQUEST-----\n")


def _weak_csr() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _wrong_curve_csr() -> str:
    key = ec.generate_private_key(ec.SECP521R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("csr, reason", [
    (_tampered_csr, "does not verify"),
    (_weak_csr, "at least 2048"),
    (_wrong_curve_csr, "P-256 or P-384"),
    (lambda: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a PEM"),
    (lambda: "x" * 20_000, "larger than"),
])
def test_a_bad_csr_is_refused_and_does_not_burn_the_token(central, csr, reason):
    reg = central.registry()
    new = _new_token(reg)
    with pytest.raises(EnrollmentError, match=reason):
        reg.redeem(new.token_id, new.secret, csr(), central.ca)
    assert [t["token_id"] for t in reg.pending_tokens(central.user())] == [new.token_id]
    reg.redeem(new.token_id, new.secret, new_key_and_csr()[1], central.ca)
    reg.close()


def test_concurrent_redemptions_of_one_token_issue_one_certificate(central):
    reg = central.registry()
    new = _new_token(reg)
    registries = [central.registry() for _ in range(6)]  # separate SQLite connections
    csrs = [new_key_and_csr()[1] for _ in registries]
    results, barrier = [], threading.Barrier(len(registries))

    def go(r, csr):
        barrier.wait()
        try:
            results.append(r.redeem(new.token_id, new.secret, csr, central.ca)[0].cert_serial)
        except EnrollmentError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=go, args=(r, c)) for r, c in zip(registries, csrs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    issued = [r for r in results if "already used" not in r]
    assert len(issued) == 1, results
    count = reg.db.execute("SELECT count(*) FROM device_certificates").fetchone()[0]
    assert count == 1
    for r in registries + [reg]:
        r.close()


def test_provision_over_https_refuses_used_and_forged_tokens(tmp_path, central):
    central.start_enrollment()
    token, device_id = central.token("lane-1:file")
    first = provision(token, central.central_url, tmp_path / "a" / "edge.toml")
    assert first.device_id == device_id
    with pytest.raises(ProvisionError, match="already used"):
        provision(token, central.central_url, tmp_path / "b" / "edge.toml")
    t = Token.parse(token)
    forged = str(Token(t.token_id, base64.urlsafe_b64encode(b"\1" * 32).rstrip(b"=").decode(), t.pin))
    with pytest.raises(ProvisionError, match="not recognised"):
        provision(forged, central.central_url, tmp_path / "c" / "edge.toml")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c" / "edge.toml").exists()


def test_a_wrong_ca_fingerprint_stops_provisioning_before_the_token_is_sent(tmp_path, central):
    central.start_enrollment()
    token, _ = central.token("lane-1:file")
    t = Token.parse(token)
    other_pin = base64.urlsafe_b64encode(b"\7" * 32).rstrip(b"=").decode()
    with pytest.raises(ProvisionError, match="does not match the fingerprint"):
        provision(str(Token(t.token_id, t.secret, other_pin)), central.central_url, tmp_path / "edge.toml")
    reg = central.registry()
    assert [p["token_id"] for p in reg.pending_tokens(central.user())] == [t.token_id]  # never reached central's check
    reg.close()
    assert not (tmp_path / "edge.toml").exists()


def test_the_device_checks_the_host_name_against_the_pinned_ca(tmp_path, central):
    from central.fleet import pki
    key, cert = central.ca.issue("central.example", server_names=("central.example",))
    pki.write_secret(central.data / "ca" / "enrollment.key", key)
    pki.write_public(central.data / "ca" / "enrollment.crt", cert)
    central.start_enrollment()
    token, _ = central.token("lane-1:file")
    with pytest.raises(ProvisionError, match="does not verify against the pinned CA"):
        provision(token, central.central_url, tmp_path / "edge.toml")
    reg = central.registry()
    assert len(reg.pending_tokens(central.user())) == 1  # the token was never sent
    reg.close()


def test_ca_key_is_0600_and_can_be_passphrase_protected(tmp_path):
    secret = tmp_path / "ca.pass"
    secret.write_bytes(b"correct horse battery staple\n")
    fp = init_ca(tmp_path / "ca.key", tmp_path / "ca.crt", passphrase=b"correct horse battery staple")
    assert mode(tmp_path / "ca.key") == 0o600 and len(fp) == 64
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ca.key").read_bytes()
    with pytest.raises(ConfigError, match="passphrase"):
        CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.crt")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.crt", b"wrong")
    ca = CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.crt", b"correct horse battery staple")
    cert = ca.sign_csr(new_key_and_csr()[1], "cam-x")
    cert.verify_directly_issued_by(ca.cert)
    with pytest.raises(FileExistsError):
        init_ca(tmp_path / "ca.key", tmp_path / "ca.crt")


def test_ca_init_with_a_passphrase_file_from_config(tmp_path):
    from click.testing import CliRunner

    from central.cli import main
    (tmp_path / "pass").write_text("s3cret-passphrase\n")
    (tmp_path / "central.toml").write_text(f"""
data_dir = "{tmp_path / 'data'}"
[mqtt]
tls = false
[ca]
passphrase_file = "{tmp_path / 'pass'}"
""")
    result = CliRunner().invoke(main, ["ca", "init", "--config", str(tmp_path / "central.toml")])
    assert result.exit_code == 0, result.output
    assert b"ENCRYPTED" in (tmp_path / "data" / "ca" / "ca.key").read_bytes()
    for name in ("ca.key", "broker.key", "enrollment.key", "collector.main.key"):
        assert mode(tmp_path / "data" / "ca" / name) == 0o600
    (tmp_path / "pass").write_text("wrong\n")
    result = CliRunner().invoke(main, ["enroll", "create", "--config", str(tmp_path / "central.toml"),
                                       "--camera", "lane-1"])
    assert result.exit_code == 78 and "passphrase" in result.output


def test_enroll_serve_needs_no_data_private_key_and_stops_on_sigterm(tmp_path, central):
    import subprocess
    import sys
    import time
    from pathlib import Path

    from edge_agent.config import load as load_edge_config
    text = central.config.read_text().replace("[enrollment]\n", '[enrollment]\ndata_public_key = "data-key.pub.pem"\n')
    central.config.write_text(text + '[keys]\ndata_private_keys = ["not-here.pem"]\n')
    serve = subprocess.Popen([str(Path(sys.executable).parent / "alpr-central"), "enroll", "serve", "--config",
                              str(central.config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        token, device_id = central.token("lane-1:file")
        deadline = time.monotonic() + 20
        while True:  # until the endpoint listens
            try:
                result = provision(token, central.central_url, tmp_path / "edge.toml")
                break
            except ProvisionError as exc:
                if "cannot reach" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert result.device_id == device_id
        cfg = load_edge_config(tmp_path / "edge.toml")
        assert open(cfg.sync.central_public_key, "rb").read() == (central.data / "data-key.pub.pem").read_bytes()
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=20)
    assert serve.returncode == 0, out
    assert token.split(".")[2] not in out  # the secret is never logged
