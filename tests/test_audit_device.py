"""Device audit logs: the device's hash-chained, signed log; what it records;
syncing it over MQTT (real Mosquitto, TLS, ACL); and verification at central
that finds gaps, edits, reordering, forged signatures and key changes."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from central.cli import main as central_main
from central.ingest.collector import Collector, CollectorService
from central.config import Mqtt
from central.fleet.device_audit import DeviceAuditHandler, verify_device, verify_records
from central.ingest.keys import load_opener
from central.governance.users import Role, UserDirectory
from conftest import edge_config, wait_for
from edge_agent.auditlog import AuditPublisher, AuditWatch, DeviceAuditLog
from edge_agent.cli import main as edge_main
from edge_agent.outbox import Outbox
from edge_agent.sync import SyncClient, SyncSettings
from edge_agent.wire import MalformedMessage, Topics
from edge_agent.wire.audit import decode_audit_batch, encode_audit_batch

T = 1_790_000_000.0


class Clock:
    def __init__(self, t=T):
        self.t = t

    def __call__(self):
        return self.t


def new_key(path):
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.fixture
def log(tmp_path):
    clock = Clock()
    lg = DeviceAuditLog(tmp_path / "audit.sqlite", "cam-a", new_key(tmp_path / "k1.pem"), clock=clock)
    lg.clock = clock
    yield lg
    lg.close()


def issues(records, **kw):
    return [(i.kind, i.seq) for i in verify_records("cam-a", records, **kw).issues]


def test_log_is_chained_signed_and_verifies(log):
    log.note_config("config v1")
    log.append("cli", {"command": "status"})
    assert log.note_config("config v1") is None            # unchanged config: no record
    log.note_config("config v2")
    records = log.records()
    assert [r.event for r in records] == ["provisioned", "config-changed", "cli", "config-changed"]
    assert records[0].public_key.startswith("-----BEGIN PUBLIC KEY") and records[1].public_key == ""
    report = verify_records("cam-a", records)
    assert report.ok and report.records == 4 and report.events["config-changed"] == 2
    assert (log.path.stat().st_mode & 0o777) == 0o600


def test_verification_names_edits_gaps_reordering_and_forgeries(log, tmp_path):
    for i in range(5):
        log.append("cli", {"command": f"c{i}"})
    records = log.records()
    edited = list(records)
    edited[2] = dataclasses.replace(records[2], detail={"command": "nothing to see"})
    assert issues(edited) == [("altered", 3)]
    assert issues(records[:3] + records[4:]) == [("gap", 5)]
    swapped = list(records)
    swapped[2], swapped[3] = (dataclasses.replace(records[3], seq=3), dataclasses.replace(records[2], seq=4))
    got = issues(swapped)
    assert ("altered", 3) in got and ("altered", 4) in got
    # A forger without the device key: re-hash an edited record, sign with another key.
    other = DeviceAuditLog(tmp_path / "other.sqlite", "cam-a", new_key(tmp_path / "k9.pem"), clock=log.clock)
    forged = other.records()[0]
    fake = dataclasses.replace(forged, seq=6, prev_hash=records[-1].hash, public_key="", event="cli")
    from edge_agent.wire.audit import record_hash
    fake = dataclasses.replace(fake, hash=record_hash("cam-a", 6, fake.at, "cli", fake.detail, fake.prev_hash,
                                                      fake.key_id, ""))
    assert issues(records + [fake]) == [("unknown-key", 6)]
    fake_same_key = dataclasses.replace(fake, key_id=records[0].key_id)
    fake_same_key = dataclasses.replace(fake_same_key, hash=record_hash(
        "cam-a", 6, fake.at, "cli", fake.detail, fake.prev_hash, fake_same_key.key_id, ""))
    assert issues(records + [fake_same_key]) == [("bad-signature", 6)]
    other.close()


def test_key_rotation_and_certificate_check(tmp_path, pki_dir):
    clock = Clock()
    first = DeviceAuditLog(tmp_path / "a.sqlite", "cam-a", new_key(tmp_path / "k1.pem"), clock=clock)
    first.close()
    rotated = DeviceAuditLog(tmp_path / "a.sqlite", "cam-a", pki_dir / "cam-a.key", clock=clock)
    records = rotated.records()
    assert [r.event for r in records] == ["provisioned", "key-rotated"]
    report = verify_records("cam-a", records, cert_pem=(pki_dir / "cam-a.crt").read_bytes())
    assert report.ok and len(report.keys) == 2 and "key rotated at record 2" in report.notes[0]
    wrong = verify_records("cam-a", records, cert_pem=(pki_dir / "cam-b.crt").read_bytes())
    assert [(i.kind, i.seq) for i in wrong.issues] == [("key-mismatch", 2)]
    rotated.close()


def test_clock_going_back_across_a_restart_is_logged(tmp_path):
    clock = Clock()
    key = new_key(tmp_path / "k.pem")
    DeviceAuditLog(tmp_path / "a.sqlite", "cam-a", key, clock=clock).close()
    clock.t -= 3600
    log = DeviceAuditLog(tmp_path / "a.sqlite", "cam-a", key, clock=clock)
    last = log.records()[-1]
    assert last.event == "clock-jump" and last.detail == {"kind": "backwards-across-restart", "seconds": -3600.0}
    log.close()


def test_watch_logs_evictions_sync_gaps_and_clock_jumps(log, tmp_path):
    mono = Clock(1000.0)
    watch = AuditWatch(log, wall=log.clock, mono=mono)
    outbox = Outbox(tmp_path / "outbox.sqlite", max_age=730 * 86400.0, clock=log.clock)
    outbox.add([("r1", T - 800 * 86400, b"sealed-1"), ("r2", T - 10, b"sealed-2")])
    watch.tick(lambda: outbox.stats().counters, connected=True)
    assert outbox.expire() == 1                       # past the non-hit retention: dropped on the device
    mono.t += 11
    log.clock.t += 11
    watch.tick(lambda: outbox.stats().counters, connected=False)
    mono.t += 120
    log.clock.t += 120
    watch.tick({"evicted_age": 1}, connected=True)
    log.clock.t += 3600                                 # wall clock jumps an hour, monotonic 1 s
    mono.t += 1
    watch.tick({"evicted_age": 1}, connected=True)
    events = [(r.event, r.detail) for r in log.records()[1:]]
    assert events[0] == ("buffer-evicted", {"counts": {"evicted_age": 1},
                                            "reasons": ["older than the buffer age limit (non-hit retention)"]})
    assert events[1][0] == "sync-gap" and events[1][1]["seconds"] == 120.0
    assert events[2] == ("clock-jump", {"kind": "while-running", "seconds": 3599.0})
    assert len(events) == 3                            # counted evictions are not logged twice
    outbox.close()


def test_local_cli_use_is_logged(tmp_path, pki_dir):
    cfg = edge_config(tmp_path, pki_dir, 1883, uri=str(tmp_path / "clip.avi"))
    (tmp_path / "edge-cam-a").mkdir()   # a provisioned device has its data folder
    result = CliRunner().invoke(edge_main, ["config", "check", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    log = DeviceAuditLog(tmp_path / "edge-cam-a" / "audit.sqlite", "cam-a", pki_dir / "cam-a.key")
    events = [(r.event, r.detail.get("command")) for r in log.records()]
    assert ("cli", "config check") in events and events[0][0] == "provisioned"
    log.close()


def test_wire_batch_round_trip_and_rejects(log):
    records = log.records()
    assert decode_audit_batch(encode_audit_batch("cam-a", records)) == ("cam-a", records)
    bad = json.loads(encode_audit_batch("cam-a", records))
    bad["records"][0]["device_id"] = "cam-b"
    for payload in (b"junk", json.dumps(bad).encode(), b'{"v": 2, "records": []}'):
        with pytest.raises(MalformedMessage):
            decode_audit_batch(payload)


def test_device_log_syncs_to_central_and_verifies(tmp_path, pki_dir, broker, monkeypatch, store_factory):
    """On each backend: the collector's handler stores the device's records in
    central's database (PostgreSQL: the same database as everything else)."""
    db = tmp_path / "central" / "central.sqlite"
    store = store_factory(db)
    target = getattr(store, "url", "") or db
    handler = DeviceAuditHandler(target)
    service = CollectorService(Mqtt(host="127.0.0.1", port=broker.port, ca_file=str(pki_dir / "ca.crt"),
                                    cert_file=str(pki_dir / "collector.crt"), key_file=str(pki_dir / "collector.key"),
                                    client_id="central.collector-audit"),
                               Collector(store, load_opener([pki_dir / "data-key.pem"])), audit_handler=handler)
    stop_c, stop_s = threading.Event(), threading.Event()
    threading.Thread(target=service.run, args=(stop_c,), daemon=True).start()
    wait_for(service.ready.is_set, 15, message="collector subscription")
    log = DeviceAuditLog(tmp_path / "edge" / "audit.sqlite", "cam-a", pki_dir / "cam-a.key")
    for i in range(3):
        log.append("cli", {"command": f"c{i}"})
    outbox = Outbox(tmp_path / "edge" / "outbox.sqlite")
    sync = SyncClient(SyncSettings(host="127.0.0.1", port=broker.port, device_id="cam-a",
                                   ca_file=str(pki_dir / "ca.crt"), cert_file=str(pki_dir / "cam-a.crt"),
                                   key_file=str(pki_dir / "cam-a.key")), outbox)
    sync.audit_publisher = AuditPublisher(log, interval=0.1)
    th = threading.Thread(target=sync.run, args=(stop_s,), daemon=True)
    th.start()
    count = lambda: store.db.execute("SELECT count(*) FROM device_audit WHERE device_id = 'cam-a'").fetchone()[0]  # noqa: E731
    try:
        wait_for(lambda: count() == 4, 20, message="audit records at central")
        wait_for(lambda: log.pending() == [], 10, message="records marked published")
        # cam-b cannot write into cam-a's log: the broker's ACL drops it.
        forger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cam-b", protocol=mqtt.MQTTv5)
        forger.tls_set(ca_certs=str(pki_dir / "ca.crt"), certfile=str(pki_dir / "cam-b.crt"),
                       keyfile=str(pki_dir / "cam-b.key"))
        forger.connect("127.0.0.1", broker.port)
        forger.loop_start()
        forged = dataclasses.replace(log.records()[-1], seq=99)
        forger.publish(Topics().audit("cam-a"), encode_audit_batch("cam-a", [forged]), qos=1).wait_for_publish(5)
        log.append("cli", {"command": "after"})
        wait_for(lambda: count() == 5, 20, message="the next genuine record")
        forger.loop_stop()
        forger.disconnect()
        assert store.db.execute("SELECT count(*) FROM device_audit WHERE seq = 99").fetchone()[0] == 0
    finally:
        stop_s.set()
        th.join(10)
        stop_c.set()
    report = verify_device(store.db.conn, "cam-a", cert_pem=(pki_dir / "cam-a.crt").read_bytes())
    assert report.ok and report.last_seq == 5, report.issues
    users = UserDirectory(store.db.conn)
    admin, _ = users.bootstrap("ada", "City PD")
    _, token = users.add(admin, "audrey", "City Auditor", Role.AUDITOR)
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "central"}"\n[mqtt]\ntls = false\n' +
                   (f'[store]\nurl = "{target}"\n' if target != db else ''))
    monkeypatch.setenv("ALPR_TOKEN", token)
    res = CliRunner().invoke(central_main, ["audit", "device", "cam-a", "--config", str(cfg),
                                            "--cert", str(pki_dir / "cam-a.crt")])
    assert res.exit_code == 0 and "ok: chain and signatures intact, no gaps" in res.output, res.output
    store.db.execute("DELETE FROM device_audit WHERE seq = 3")
    res = CliRunner().invoke(central_main, ["audit", "device", "cam-a", "--config", str(cfg)])
    assert res.exit_code == 1 and "GAP        record 3 is missing" in res.output, res.output
    log.close()
    outbox.close()
    handler.close()
    time.sleep(0.1)
