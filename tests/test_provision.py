"""Field provisioning end to end, with a real Mosquitto (TLS, client
certificates, the per-device ACL generated from the registry), the real HTTPS
enrollment endpoint, real SQLite files and the real agent process."""

from __future__ import annotations

import datetime as dt
import json
import re
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from conftest import wait_for
from edge_agent.cli import main as edge_main
from edge_agent.config import load as load_edge_config
from edge_agent.outbox import Outbox
from edge_agent.provision import ProvisionError, provision, renew
from edge_agent.wire import PlateRead, Sealer, encode_batch, encode_read, load_public_key, new_read_id
from test_enrollment_env import CentralEnv, mode

pytestmark = pytest.mark.slow


@pytest.fixture
def central(tmp_path, mosquitto_bin):
    env = CentralEnv(tmp_path / "site")
    yield env
    env.close()


def _sidecar_edit(config_path, uri, sidecar):
    """What a tech would do for a file camera in a test: point it at a clip."""
    doc = tomllib.loads(config_path.read_text())
    doc["cameras"][0]["uri"] = str(uri)
    doc["cameras"][0]["fps"] = 0.0
    doc["recognition"] = {"type": "sidecar-oracle", "options": {"sidecar": str(sidecar)}}
    doc["sync"]["ack_timeout"] = 5.0
    from edge_agent.provision import dump_toml
    config_path.write_text(dump_toml(doc))


def _agent(config, *extra, timeout=90):
    proc = subprocess.run([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(config),
                           "--log-level", "info", *extra], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _prefill(config_path, n):
    cfg = load_edge_config(config_path)
    ob = Outbox(cfg.data_dir / "outbox.sqlite")
    sealer = Sealer(load_public_key(open(cfg.sync.central_public_key, "rb").read()), cfg.device.id)
    ids, items, now = [], [], time.time()
    for i in range(n):
        read = PlateRead(new_read_id(), cfg.device.id, cfg.cameras[0].id,
                         dt.datetime.fromtimestamp(now, dt.timezone.utc), f"BUF{i:04d}", 0.9, (1, 2, 30, 10))
        ids.append(read.read_id)
        items.append((read.read_id, now, sealer.seal(read.read_id, encode_read(read))))
    ob.add(items)
    ob.close()
    return ids


def test_enroll_provision_publish_stored(tmp_path, central, sample_clip):
    central.start_enrollment()
    central.start_broker()
    token, device_id = central.token("lane-1:file")
    edge_conf = tmp_path / "edge" / "edge.toml"
    result = CliRunner().invoke(edge_main, ["provision", "--token-file", "-", "--central", central.central_url,
                                            "--config", str(edge_conf), "--json"], input=token + "\n")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["device_id"] == device_id and doc["cameras_without_uri"] == ["lane-1"]
    # every file the device holds is 0600; the key never left it (central has no copy)
    identity = edge_conf.parent / "identity"
    files = sorted(p.name for p in identity.iterdir())
    assert len([f for f in files if f.endswith(".key")]) == 1, files
    for path in [edge_conf, *identity.iterdir()]:
        assert mode(path) == 0o600, path
    assert not any(p.suffix == ".key" and "device" in p.name for p in (central.data / "ca").iterdir())
    cfg = load_edge_config(edge_conf)
    cert = x509.load_pem_x509_certificate(open(cfg.sync.cert_file, "rb").read())
    assert cert.subject.rfc4514_string() == f"CN={device_id}"
    assert central.registry().device(device_id).status == "active"

    collector, store = central.start_collector()
    video, sidecar = sample_clip
    _sidecar_edit(edge_conf, video, sidecar)
    code, out = _agent(edge_conf, "--exit-when-drained")
    assert code == 0, out[-3000:]
    expected = json.loads(sidecar.read_text())["plates"]
    rows = store.db.execute("SELECT plate, device_id FROM reads").fetchall()
    assert sorted(p for p, _ in rows) == sorted(expected) and {d for _, d in rows} == {device_id}


def _probe(conf_path, topic_device=None):
    """Connect with the provisioned identity and publish one sealed read."""
    cfg = load_edge_config(conf_path)
    got = {"connected": None, "refused": [], "ok": []}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{cfg.device.id}-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=cfg.sync.ca_file, certfile=cfg.sync.cert_file, keyfile=cfg.sync.key_file,
              cert_reqs=ssl.CERT_REQUIRED)
    c.on_connect = lambda cl, u, f, rc, p: got.__setitem__("connected", not rc.is_failure)
    c.on_publish = lambda cl, u, mid, rc, p: (got["refused"] if rc.is_failure else got["ok"]).append(mid)
    c.connect_async(cfg.sync.host, cfg.sync.port)
    c.loop_start()
    device = topic_device or cfg.device.id

    def send():
        sealer = Sealer(load_public_key(open(cfg.sync.central_public_key, "rb").read()), device)
        read = PlateRead(new_read_id(), device, "lane-1", dt.datetime.now(dt.timezone.utc), "PROBE1", 0.9,
                         (1, 1, 1, 1))
        info = c.publish(f"alpr/v1/devices/{device}/reads",
                         encode_batch(new_read_id(), [sealer.seal(read.read_id, encode_read(read))]), qos=1)
        return info.mid
    return c, got, send


def _provisioned(central, tmp_path, name, cameras=("lane-1:file",)):
    token, device_id = central.token(*cameras)
    conf = tmp_path / name / "edge.toml"
    provision(token, central.central_url, conf)
    return conf, device_id


def test_revoked_device_is_shut_out_and_nothing_it_sends_is_stored(tmp_path, central):
    central.start_enrollment()
    central.start_broker()
    conf_a, dev_a = _provisioned(central, tmp_path, "a")
    conf_b, dev_b = _provisioned(central, tmp_path, "b")
    assert central.cli("broker", "reload").exit_code == 0  # both devices in the ACL now
    collector, store = central.start_collector()
    status = json.loads(CliRunner().invoke(edge_main, ["status", "--config", str(conf_a), "--json"]).output)
    assert status["device_id"] == dev_a and status["broker_reachable"] is True and status["certificate_expires"]
    assert status["buffer_depth"] == 0
    c, got, send = _probe(conf_a)
    wait_for(lambda: got["connected"], 10, message="device a connected")
    send()
    wait_for(lambda: store.count() == 1, 10, message="a's read stored")

    # b may not publish under a's prefix: refused by the broker, nothing stored
    cb, got_b, send_b = _probe(conf_b, topic_device=dev_a)
    wait_for(lambda: got_b["connected"], 10, message="device b connected")
    mid = send_b()
    wait_for(lambda: mid in got_b["refused"], 10, message="broker refusal")
    cb.loop_stop()
    cb.disconnect()

    result = central.cli("device", "revoke", dev_a, "--reason", "stolen")
    assert result.exit_code == 0, result.output
    assert "reloaded" in result.output
    # the live connection: publishes are refused once the broker has re-read the ACL (SIGHUP)
    wait_for(lambda: send() in got["refused"] or (time.sleep(0.3) or bool(got["refused"])), 20,
             interval=0.2, message="refusal after revocation")
    c.loop_stop()
    c.disconnect()
    # a new connection with the revoked certificate fails (CRL); `alpr-edge status` says so
    c2, got2, _ = _probe(conf_a)
    time.sleep(2)
    assert got2["connected"] is not True
    c2.loop_stop()
    status = json.loads(CliRunner().invoke(edge_main, ["status", "--config", str(conf_a), "--json"]).output)
    assert status["broker_reachable"] is False and status["broker_error"]
    assert store.count() == 1
    # and even if the broker let it through, the collector would not store it
    sealer = Sealer(load_public_key((central.data / "data-key.pub.pem").read_bytes()), dev_a)
    read = PlateRead(new_read_id(), dev_a, "lane-1", dt.datetime.now(dt.timezone.utc), "LATE1", 0.9, (1, 1, 1, 1))
    assert collector.handle(f"alpr/v1/devices/{dev_a}/reads",
                            encode_batch(new_read_id(), [sealer.seal(read.read_id, encode_read(read))])) is None
    assert collector.counters["rejected.unknown-device"] >= 1 and store.count() == 1
    events = [e["action"] for e in central.registry().events(dev_a)]
    assert events[-1] == "device-revoked"


def test_reprovision_and_renewal_keep_buffered_reads(tmp_path, central):
    central.start_enrollment()
    conf, device_id = _provisioned(central, tmp_path, "edge")
    buffered = _prefill(conf, 25)
    first = load_edge_config(conf)
    first_serial = central.registry().device(device_id).cert_serial

    # wrong device's token: refused *before* it is used, buffered reads untouched
    other_token, _ = central.token("lane-9:file")
    with pytest.raises(ProvisionError, match="holds buffered reads"):
        provision(other_token, central.central_url, conf)
    assert central.registry().pending_tokens(central.user())[0]["device_id"] != device_id

    token, _ = central.token("lane-1:file", device=device_id)
    with pytest.raises(ProvisionError, match="Nothing was sent"):
        provision(token, central.central_url, conf, data_dir=str(tmp_path / "elsewhere"))
    result = provision(token, central.central_url, conf,
                       camera_uris={"lane-1": "/srv/clips/lane-1.avi", "lane-7": "/x.avi"})
    assert result.device_id == device_id and result.kept_buffered_reads == 25 and not result.cameras_without_uri
    assert result.unknown_camera_uris == ("lane-7",)
    again = load_edge_config(conf)
    assert again.cameras[0].uri == "/srv/clips/lane-1.avi"
    assert again.device.data_dir == first.device.data_dir and again.sync.cert_file != first.sync.cert_file
    ob = Outbox(again.data_dir / "outbox.sqlite")
    assert sorted(p.read_id for p in ob.pending(0, 100)) == sorted(buffered)
    ob.close()
    reg = central.registry()
    second_serial = reg.device(device_id).cert_serial
    assert second_serial != first_serial
    assert first_serial in {r.serial for r in reg.revoked_certificates()}  # the old key may be lost

    assert renew(conf, within=dt.timedelta(days=30)) is None  # a year left: not due
    result = CliRunner().invoke(edge_main, ["renew", "--config", str(conf), "--if-expiring-within", "400"])
    assert result.exit_code == 0 and "25 buffered read(s) kept" in result.output, result.output
    assert load_edge_config(conf).sync.cert_file != again.sync.cert_file
    renewed = renew(conf)
    assert renewed.kept_buffered_reads == 25
    assert central.registry().device(device_id).cert_serial not in (first_serial, second_serial)
    assert load_edge_config(conf).device.data_dir == first.device.data_dir
    assert load_edge_config(conf).cameras[0].uri == "/srv/clips/lane-1.avi"  # local edits survive
    for path in (conf.parent / "identity").iterdir():
        assert mode(path) == 0o600


def test_test_camera_runs_the_configured_recognizer(tmp_path, sample_clip):
    video, sidecar = sample_clip
    expected = json.loads(sidecar.read_text())["frames"][0]
    conf = tmp_path / "edge.toml"
    (tmp_path / "pub.pem").write_bytes(b"")
    conf.write_text(f"""
[device]
id = "cam-t"
data_dir = "{tmp_path / 'data'}"
[[cameras]]
id = "lane-1"
source = "file"
uri = "{video}"
[recognition]
type = "sidecar-oracle"
[recognition.options]
sidecar = "{sidecar}"
[sync]
tls = false
central_public_key = "{tmp_path / 'pub.pem'}"
""")
    shot = tmp_path / "frame.jpg"
    result = CliRunner().invoke(edge_main, ["test-camera", "--config", str(conf), "--save", str(shot), "--json",
                                            "--frames", "1", "--show-text"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [p["text"] for p in doc["frames"][0]["plates"]] == [e["plate"] for e in expected]
    assert doc["recognizer"].startswith("sidecar-oracle")
    assert {"load_recognizer_ms", "open_ms", "grab_ms_mean", "recognize_ms_mean"} <= set(doc["summary"])
    assert shot.read_bytes()[:2] == b"\xff\xd8" and mode(shot) == 0o600
    bad = CliRunner().invoke(edge_main, ["test-camera", "--config", str(conf), "--camera", "nope"])
    assert bad.exit_code == 2 and "lane-1" in bad.output
    conf.write_text(conf.read_text().replace(str(video), str(tmp_path / "missing.avi")))
    missing = CliRunner().invoke(edge_main, ["test-camera", "--config", str(conf)])
    assert missing.exit_code == 1 and "lane-1" in missing.output


def test_provision_says_what_it_did_in_words(tmp_path, central):
    """Issue 23's sweep: no Python values (a list of cameras, a raw time) in provision's human output."""
    central.start_enrollment()
    token, device_id = central.token("lane-1:file")
    conf = tmp_path / "edge" / "edge.toml"
    result = CliRunner().invoke(edge_main, ["provision", "--token-file", "-", "--central", central.central_url,
                                            "--config", str(conf)], input=token + "\n")
    assert result.exit_code == 0, result.output
    fields = {line[:21].strip(): line[21:] for line in result.output.splitlines()[:6]}   # label, 2 spaces, value
    assert fields["device"] == device_id and fields["config"] == str(conf) and fields["buffered reads kept"] == "0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", fields["certificate expires"]), result.output
    assert f"camera lane-1 has no uri yet: set it in {conf}" in result.output
    assert not re.search(r"\[|\]|\bNone\b|\(\)|_", result.output.split("\nnext:")[0].replace(str(tmp_path), "")), \
        result.output


def test_provision_against_an_unreachable_central_is_a_temporary_failure(tmp_path):
    from central.fleet.broker import free_port
    token = "alpr1.abc.def.ghi"
    result = CliRunner().invoke(edge_main, ["provision", "--central",
                                            f"https://127.0.0.1:{free_port()}", "--config",
                                            str(tmp_path / "edge.toml")], env={"ALPR_ENROLLMENT_TOKEN": token})
    assert result.exit_code == 75 and "cannot reach central" in result.output
    assert not (tmp_path / "edge.toml").exists()
    (tmp_path / "token").write_text("garbage\n")
    result = CliRunner().invoke(edge_main, ["provision", "--token-file", str(tmp_path / "token"), "--central",
                                            "https://x", "--config", str(tmp_path / "edge.toml")])
    assert result.exit_code == 1 and "not an enrollment token" in result.output





def test_alpr_central_run_stores_reads_only_from_active_devices(tmp_path, central):
    central.start_enrollment()
    central.start_broker()
    conf_a, dev_a = _provisioned(central, tmp_path, "a")
    conf_b, dev_b = _provisioned(central, tmp_path, "b")
    reg = central.registry()
    reg.set_status(dev_b, "suspended", user=central.user("tech"))  # the broker is *not* told: only the collector stands guard
    reg.close()
    alpr_central = str(Path(sys.executable).parent / "alpr-central")  # the installed entry point
    proc = subprocess.Popen([alpr_central, "run", "--config", str(central.config),
                             "--log-level", "info"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    clients, senders = [], []
    try:
        for conf in (conf_a, conf_b):
            c, got, send = _probe(conf)
            clients.append(c)
            senders.append(send)
            wait_for(lambda: got["connected"], 10, message="device connected")
        from central.store.sqlite import SQLiteStore
        store = SQLiteStore(central.data / "central.sqlite")

        def stored_from_a():  # keep both devices sending until the collector is up and has stored one of a's
            for send in senders:
                send()
            return store.db.execute("SELECT count(*) FROM reads WHERE device_id = ?", [dev_a]).fetchone()[0]
        try:
            try:
                wait_for(stored_from_a, 60, interval=0.5, message="a's read stored by alpr-central run")
            except AssertionError:
                proc.terminate()
                raise AssertionError(proc.communicate(timeout=20)[0][-3000:]) from None
            time.sleep(1.0)
            assert {r[0] for r in store.db.execute("SELECT device_id FROM reads")} == {dev_a}
        finally:
            store.close()
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "unknown-device" in out and "PROBE1" not in out


def test_systemd_credentials_mode(tmp_path, central, monkeypatch):
    """Key in the credentials folder under systemd's fixed name, named relatively
    in the config; tools run by a person still find it; renewal keeps the mode."""
    import getpass
    central.start_enrollment()
    central.start_broker()
    creds = tmp_path / "credentials"
    token, device_id = central.token("lane-1:file")
    conf = tmp_path / "etc" / "edge.toml"
    with pytest.raises(ProvisionError, match="no account"):
        provision(token, central.central_url, conf, credentials_dir=str(creds), user="no-such-user-here")
    provision(token, central.central_url, conf, credentials_dir=str(creds), user=getpass.getuser())
    doc = tomllib.loads(conf.read_text())
    assert doc["sync"]["key_file"] == "device.key" and mode(creds / "device.key") == 0o600
    assert not list((conf.parent / "identity").glob("*.key"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))  # as systemd would for the service
    assert load_edge_config(conf).sync.key_file == str(creds / "device.key")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert central.cli("broker", "reload").exit_code == 0
    status = json.loads(CliRunner().invoke(edge_main, ["status", "--config", str(conf), "--json"]).output)
    assert status["broker_reachable"] is True, status
    old_key = (creds / "device.key").read_bytes()
    renew(conf)
    assert (creds / "device.key").read_bytes() != old_key and mode(creds / "device.key") == 0o600
    assert tomllib.loads(conf.read_text())["sync"]["key_file"] == "device.key"
    assert central.registry().device(device_id).status == "active"


def test_secret_writes_never_follow_a_link_the_agent_account_could_plant(tmp_path):
    """root writes into a directory the agent's account can write to (renew):
    a link planted at the old, predictable temp name, or at the file itself,
    must never redirect the write onto another file."""
    import os
    import stat

    from central.errors import UnsafePathError
    from central.fleet.pki import write_public, write_secret
    from edge_agent.provision import write_private

    planted_links = set()
    for write in (write_private, write_secret, write_public):
        victim = tmp_path / f"victim-{write.__name__}"
        victim.write_bytes(b"root's file")
        target = tmp_path / f"{write.__name__}.pem"
        planted = tmp_path / f".{target.name}.tmp{os.getpid()}"  # the old, predictable temp name
        os.symlink(victim, planted)
        planted_links.add(planted)
        write(target, b"new secret")
        assert victim.read_bytes() == b"root's file"
        assert target.read_bytes() == b"new secret" and not target.is_symlink()
        os.unlink(target)
        os.symlink(victim, target)
        if write is write_private:  # the edge: a link at the file's own name is replaced, not followed
            write(target, b"again")
            assert target.read_bytes() == b"again"
        else:  # central (central/files.py): refused, nothing written anywhere
            with pytest.raises(UnsafePathError):
                write(target, b"again")
            assert target.is_symlink()
            os.unlink(target)
            write(target, b"again")
        assert victim.read_bytes() == b"root's file"
        mode = stat.S_IMODE(os.stat(target).st_mode)
        assert mode == (0o644 if write is write_public else 0o600)
        assert [p.name for p in tmp_path.iterdir() if ".pem." in p.name and p not in planted_links] == []  # no temp left
