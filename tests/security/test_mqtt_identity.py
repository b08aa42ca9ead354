"""Network attacker / malicious device on the broker: client-id takeover,
suspended, revoked and foreign certificates, no certificate, topic spoofing
(issue 20.2). Real Mosquitto with the generated configuration."""

from __future__ import annotations

import pytest

from conftest import wait_for
from central.fleet import pki
from edge_agent.config import load as load_edge_config
from edge_agent.provision import provision
from test_enrollment_env import CentralEnv

from .attack import Client, handshake_fails, sealed_batch, settle


def _client(broker, pki_dir, stem: str, client_id: str = "") -> Client:
    return Client(broker.port, pki_dir / "ca.crt", pki_dir / f"{stem}.crt", pki_dir / f"{stem}.key",
                  client_id=client_id)


def test_another_devices_certificate_cannot_take_over_a_device_session(broker, pki_dir):
    victim = _client(broker, pki_dir, "cam-a", client_id="cam-a").start()
    attackers = []
    try:
        assert victim.wait_connected()
        for client_id in ("cam-a", "", "central.collector.test"):
            attackers.append(_client(broker, pki_dir, "cam-b", client_id=client_id).start())
            assert attackers[-1].wait_connected()  # it gets in, as itself
        settle(1.0)
        assert victim.connected.is_set() and victim.disconnects == []
    finally:
        for c in [victim, *attackers]:
            c.stop()


def test_a_device_cannot_knock_the_collector_off_and_reads_keep_flowing(broker, collector_factory, pki_dir):
    central = collector_factory(broker.port)
    drops = []
    original = central.service.client.on_disconnect
    central.service.client.on_disconnect = lambda *a: (drops.append(a[3]), original(*a))
    identity = pki.collector_identity("test")
    attackers = [_client(broker, pki_dir, "cam-b", client_id=cid).start()
                 for cid in (identity, central.service.cfg.client_id)]
    device = _client(broker, pki_dir, "cam-a").start()
    try:
        assert device.wait_connected()
        settle(1.0)
        read_id, payload = sealed_batch((pki_dir / "data-key.pub.pem").read_bytes(), "cam-a")
        device.publish("alpr/v1/devices/cam-a/reads", payload)
        wait_for(lambda: read_id in central.read_ids(), 10, message="the read stored")
        assert drops == [] and central.service.ready.is_set()
    finally:
        for c in [device, *attackers]:
            c.stop()


def test_two_collectors_with_their_own_certificates_share_the_load_without_kicking(broker, pki_dir):
    a = _client(broker, pki_dir, "collector").start()
    b = _client(broker, pki_dir, "collector-b").start()
    try:
        assert a.wait_connected() and b.wait_connected()
        settle(0.5)
        assert a.disconnects == [] and b.disconnects == []
    finally:
        a.stop()
        b.stop()


def test_a_device_cannot_publish_under_another_devices_prefix_or_read_its_acks(broker, collector_factory, pki_dir):
    central = collector_factory(broker.port)
    attacker = _client(broker, pki_dir, "cam-b").start()
    try:
        assert attacker.wait_connected()
        attacker.client.subscribe("alpr/v1/devices/cam-a/ack", qos=1)
        attacker.client.subscribe("alpr/v1/devices/+/reads", qos=1)
        read_id, payload = sealed_batch((pki_dir / "data-key.pub.pem").read_bytes(), "cam-a")
        mid = attacker.publish("alpr/v1/devices/cam-a/reads", payload)
        wait_for(lambda: mid in attacker.published, 10, message="broker's answer")
        assert attacker.published[mid] is False  # PUBACK "not authorized"
        settle(0.5)
        assert read_id not in central.read_ids() and attacker.messages == []
    finally:
        attacker.stop()


def test_clients_without_or_with_a_foreign_certificate_are_refused(broker, pki_dir, tmp_path):
    assert handshake_fails(broker.port, pki_dir / "ca.crt", None, None)
    ca_key, ca_cert = pki.new_ca("Not central's CA")
    key, cert = pki.issue(ca_key, ca_cert, "cam-a")  # the right name, the wrong issuer
    pki.write_secret(tmp_path / "f.key", key)
    pki.write_public(tmp_path / "f.crt", cert)
    assert handshake_fails(broker.port, pki_dir / "ca.crt", tmp_path / "f.crt", tmp_path / "f.key")


@pytest.fixture
def site(tmp_path, mosquitto_bin):
    env = CentralEnv(tmp_path / "site")
    env.start_enrollment()
    env.start_broker()
    yield env
    env.close()


def _provisioned(site, tmp_path, name):
    token, device_id = site.token("lane-1:file")
    conf = tmp_path / name / "edge.toml"
    provision(token, site.central_url, conf)
    sync = load_edge_config(conf).sync
    return device_id, (site.broker_port, sync.ca_file, sync.cert_file, sync.key_file)


def _connects(port, ca, cert, key) -> bool:
    return not handshake_fails(port, ca, cert, key)


def refused_soon(creds) -> None:
    """The broker acts on SIGHUP at its next loop turn, within about a second."""
    wait_for(lambda: handshake_fails(*creds, timeout=2.0), 10, interval=0.2, message="the broker to refuse it")


def test_a_suspended_device_is_refused_at_connect_and_let_in_again_on_resume(site, tmp_path):
    device, creds = _provisioned(site, tmp_path, "edge")
    assert _connects(*creds)
    result = site.cli("device", "suspend", device, "--reason", "maintenance")
    assert result.exit_code == 0 and "reloaded" in result.output, result.output
    refused_soon(creds)  # its certificate is on hold in the CRL
    # Mosquitto keeps every CRL it loaded and OpenSSL uses the newest (lastUpdate has
    # one-second resolution): a resume in the same second as the suspend would not count.
    settle(1.1)
    result = site.cli("device", "resume", device)
    assert result.exit_code == 0 and "reloaded" in result.output, result.output
    wait_for(lambda: _connects(*creds), 15, interval=0.2, message="the resumed device let in")


def test_a_revoked_device_is_refused_at_connect(site, tmp_path):
    device, creds = _provisioned(site, tmp_path, "edge")
    other, other_creds = _provisioned(site, tmp_path, "other")
    assert site.cli("device", "revoke", device, "--reason", "stolen").exit_code == 0
    refused_soon(creds)
    assert _connects(*other_creds)  # everyone else still gets in
    assert site.cli("device", "suspend", other, "--reason", "x").exit_code == 0
    refused_soon(other_creds)
