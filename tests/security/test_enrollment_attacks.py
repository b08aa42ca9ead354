"""Network attacker and field insider at the enrollment endpoint: forged,
used and expired tokens, path-like URLs; and config check catching key paths
that name no key (issue 20.6). Real HTTPS endpoint, real registry."""

from __future__ import annotations

import base64
import http.client
import ssl

import pytest
from click.testing import CliRunner

from central.cli import main
from central.fleet.enrollment import Token
from edge_agent.provision import ProvisionError, provision
from test_enrollment_env import CentralEnv


@pytest.fixture
def site(tmp_path):
    env = CentralEnv(tmp_path / "site", pid_file=False)
    env.start_enrollment()
    yield env
    env.close()


def test_forged_used_and_expired_tokens_are_refused_over_https(site, tmp_path):
    token, device = site.token("lane-1:file")
    t = Token.parse(token)
    forged = str(Token(t.token_id, base64.urlsafe_b64encode(b"\1" * 32).rstrip(b"=").decode(), t.pin))
    with pytest.raises(ProvisionError, match="not recognised"):
        provision(forged, site.central_url, tmp_path / "forged" / "edge.toml")
    assert provision(token, site.central_url, tmp_path / "real" / "edge.toml").device_id == device
    with pytest.raises(ProvisionError, match="already used"):
        provision(token, site.central_url, tmp_path / "again" / "edge.toml")
    short, _ = site.token("lane-1:file", expires="1m")
    registry = site.registry()
    try:  # expire it the way time would
        registry.db.execute("UPDATE enrollment_tokens SET expires_at = '2000-01-01T00:00:00.000000Z' "
                            "WHERE token_id = ?", [Token.parse(short).token_id])
    finally:
        registry.close()
    with pytest.raises(ProvisionError, match="expired"):
        provision(short, site.central_url, tmp_path / "late" / "edge.toml")
    assert not (tmp_path / "forged" / "edge.toml").exists() and not (tmp_path / "late" / "edge.toml").exists()


@pytest.mark.parametrize("path", ["/v1/../../etc/passwd", "/v1/ca/../../../etc/shadow", "/%2e%2e/%2e%2e/etc/passwd",
                                  "//etc/passwd", "/v1/health/../../ca/ca.key"])
def test_path_like_urls_reach_nothing(site, path):
    ctx = ssl.create_default_context(cafile=str(site.data / "ca" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", site.enroll_port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status in (400, 401, 404) and b"PRIVATE KEY" not in body and b"root:" not in body


def test_config_check_refuses_key_paths_that_name_no_key(site, tmp_path):
    ok = CliRunner().invoke(main, ["config", "check", "--config", str(site.config)])
    assert ok.exit_code == 0, ok.output
    text = site.config.read_text()
    for key, name, replacement in (("key_file", "collector.main.key", site.data / "ca" / "ca.crt"),  # not a key
                                   ("cert_file", "collector.main.crt", site.data / "data-key.pem")):  # not a cert
        bad = tmp_path / f"bad-{key}.toml"
        bad.write_text(text.replace(str(site.data / "ca" / name), str(replacement)))
        result = CliRunner().invoke(main, ["config", "check", "--config", str(bad)])
        assert result.exit_code == 78 and f"mqtt.{key}" in result.output, result.output
    (site.data / "signing-key.pem").write_text("not a key\n")
    result = CliRunner().invoke(main, ["config", "check", "--config", str(site.config)])
    assert result.exit_code == 78 and "sharing.signing_key" in result.output and "not a PEM private key" in \
        result.output
    (site.data / "signing-key.pem").unlink()
    other = tmp_path / "other.key"
    from central.fleet import pki
    ca_key, ca_cert = pki.new_ca("x")
    pki.write_secret(other, pki.issue(ca_key, ca_cert, "x")[0])
    bad = tmp_path / "mismatch.toml"
    bad.write_text(text.replace(str(site.data / "ca" / "collector.main.key"), str(other)))
    result = CliRunner().invoke(main, ["config", "check", "--config", str(bad)])
    assert result.exit_code == 78 and "does not match the certificate" in result.output
