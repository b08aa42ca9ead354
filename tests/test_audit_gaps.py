"""Device audit records that used to go missing: a record is marked sent only
when central's ``audit-ack`` names it (real Mosquitto with the generated ACL,
real SQLite), so a suspend-then-resume and a stop while central is not
listening leave no gap; and ``audit device`` says why a gap exists when
central knows (suspended, offline) apart from a real break."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading

import pytest

from central.config import Mqtt
from central.fleet.broker import acl_text
from central.fleet.device_audit import DeviceAuditHandler, verify_device
from central.ingest.collector import Collector, CollectorService
from central.ingest.keys import load_opener
from central.store.sqlite import SQLiteStore
from conftest import wait_for
from edge_agent.auditlog import AuditPublisher, DeviceAuditLog
from edge_agent.outbox import Outbox
from edge_agent.sync import SyncClient, SyncSettings
from edge_agent.wire import MalformedMessage
from edge_agent.wire.audit import AuditAck, decode_audit_ack, encode_audit_ack


class Central:
    """A collector with a device audit handler; ``allowed`` plays the registry
    (a suspended device is refused, as the collector's allow list does)."""

    def __init__(self, port, pki_dir, db) -> None:
        self.allowed = {"cam-a"}
        self.store = SQLiteStore(db)
        self.handler = DeviceAuditHandler(db)
        self.service = CollectorService(
            Mqtt(host="127.0.0.1", port=port, ca_file=str(pki_dir / "ca.crt"), cert_file=str(pki_dir / "collector.crt"),
                 key_file=str(pki_dir / "collector.key"), client_id="central.collector-gaps"),
            Collector(self.store, load_opener([pki_dir / "data-key.pem"]), device_allowed=lambda d: d in self.allowed),
            audit_handler=self.handler)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,), daemon=True)
        self.thread.start()
        wait_for(self.service.ready.is_set, 15, message="collector subscription")

    def seqs(self) -> list[int]:
        return [r[0] for r in self.store.db.execute("SELECT seq FROM device_audit WHERE device_id = 'cam-a' "
                                                    "ORDER BY seq").fetchall()]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.handler.close()
        self.store.close()


class Device:
    def __init__(self, tmp_path, pki_dir, port) -> None:
        self.log = DeviceAuditLog(tmp_path / "edge" / "audit.sqlite", "cam-a", pki_dir / "cam-a.key")
        self.outbox = Outbox(tmp_path / "edge" / "outbox.sqlite")
        self.sync = SyncClient(SyncSettings(host="127.0.0.1", port=port, device_id="cam-a",
                                            ca_file=str(pki_dir / "ca.crt"), cert_file=str(pki_dir / "cam-a.crt"),
                                            key_file=str(pki_dir / "cam-a.key")), self.outbox)
        self.publisher = self.sync.audit_publisher = AuditPublisher(self.log, interval=0.1, timeout=1.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sync.run, args=(self.stop,), daemon=True)
        self.thread.start()
        wait_for(lambda: self.sync.connected, 15, message="device connected")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.log.close()
        self.outbox.close()


def test_the_ack_round_trips_and_refuses_junk():
    ack = AuditAck("cam-a", (1, 2, 3), (7,))
    assert decode_audit_ack(encode_audit_ack(ack)) == ack
    for junk in (b"{}", b"[]", b'{"v":1,"device_id":"cam-a","held":[0],"conflicts":[]}',
                 b'{"v":1,"device_id":"cam-a","held":[true],"conflicts":[]}', b"not json"):
        with pytest.raises(MalformedMessage):
            decode_audit_ack(junk)


def test_the_acl_lets_only_central_write_a_devices_audit_acks():
    assert "topic read alpr/v1/devices/cam-a/audit-ack" in acl_text(devices=["cam-a"])
    assert "topic write alpr/v1/devices/+/audit-ack" in acl_text(devices=["cam-a"])
    assert "write alpr/v1/devices/cam-a/audit-ack" not in acl_text(devices=["cam-a"]).replace(
        "topic write alpr/v1/devices/+/audit-ack", "")


def test_a_suspend_then_resume_leaves_no_gap(tmp_path, pki_dir, broker):
    central = Central(broker.port, pki_dir, tmp_path / "central.sqlite")
    device = Device(tmp_path, pki_dir, broker.port)
    try:
        wait_for(lambda: central.seqs() == [1] and device.log.pending() == [], 20, message="provisioned record sent")
        central.allowed.discard("cam-a")                    # suspended: central refuses what it sends
        for i in range(3):
            device.log.append("cli", {"command": f"while-suspended-{i}"})
        wait_for(lambda: central.service.collector.counters.get("rejected.unknown-device", 0) >= 2, 20,
                 message="central refusing the suspended device, twice (a resend)")
        assert central.seqs() == [1]
        assert [r.seq for r in device.log.pending()] == [2, 3, 4]   # not marked sent: the broker's PUBACK is not enough
        central.allowed.add("cam-a")                        # resumed
        device.log.append("cli", {"command": "after-resume"})
        wait_for(lambda: central.seqs() == [1, 2, 3, 4, 5], 20, message="every record at central")
        wait_for(lambda: device.log.pending() == [], 10, message="all marked sent")
        assert device.publisher.counters["resends"] >= 1
    finally:
        device.close()
        central.close()
    report = verify_device(SQLiteStore(tmp_path / "central.sqlite").db.conn, "cam-a",
                           cert_pem=(pki_dir / "cam-a.crt").read_bytes())
    assert report.ok and report.last_seq == 5, report.issues


def test_records_sent_while_central_was_not_listening_are_sent_again_after_a_restart(tmp_path, pki_dir, broker):
    device = Device(tmp_path, pki_dir, broker.port)           # central is down: the broker takes them, nobody stores
    device.log.append("cli", {"command": "before-stop"})
    wait_for(lambda: device.publisher._inflight is not None, 10, message="published")
    device.close()                                            # a clean stop
    log = DeviceAuditLog(tmp_path / "edge" / "audit.sqlite", "cam-a", pki_dir / "cam-a.key")
    assert [r.seq for r in log.pending()] == [1, 2]
    log.close()
    central = Central(broker.port, pki_dir, tmp_path / "central.sqlite")
    device = Device(tmp_path, pki_dir, broker.port)
    try:
        wait_for(lambda: central.seqs() == [1, 2] and device.log.pending() == [], 20, message="sent again")
    finally:
        device.close()
        central.close()


# -- why a gap exists -------------------------------------------------------------
def test_audit_device_says_why_a_gap_exists_when_central_knows(tmp_path, pki_dir):
    t = [dt.datetime(2026, 12, 1, 10, tzinfo=dt.timezone.utc).timestamp()]
    log = DeviceAuditLog(tmp_path / "audit.sqlite", "cam-a", pki_dir / "cam-a.key", clock=lambda: t[0])
    for i in range(8):
        t[0] += 3600
        if i == 5:
            log.append("sync-gap", {"seconds": 7200.0, "from": "2026-12-01T14:10:00+00:00",
                                    "to": "2026-12-01T15:50:00+00:00"})
        else:
            log.append("cli", {"command": f"c{i}"})
    records = log.records()          # seq 1 provisioned at 10:00, then one an hour: seq 2 at 11:00 ... seq 9 at 18:00
    log.close()
    db = tmp_path / "central.sqlite"
    store = SQLiteStore(db)
    handler = DeviceAuditHandler(db)
    from edge_agent.wire.audit import encode_audit_batch
    # central lost seq 3 (suspended 11:30-12:30), seq 6 (the device offline) and seq 9's predecessor 8 (no reason)
    kept = [r for r in records if r.seq not in (3, 6, 8)]
    handler.handle("alpr/v1/devices/cam-a/audit", encode_audit_batch("cam-a", kept))
    handler.close()
    store.db.execute("INSERT INTO registry_events (at, actor, action, subject, detail) VALUES "
                     "('2026-12-01T11:30:00.000000Z', 'tech', 'device-suspended', 'cam-a', '{}'), "
                     "('2026-12-01T12:30:00.000000Z', 'tech', 'device-active', 'cam-a', '{}')")
    report = verify_device(store.db.conn, "cam-a")
    gaps = {i.seq: i for i in report.issues if i.kind == "gap"}
    assert set(gaps) == {4, 7, 9} and not report.ok
    assert gaps[4].reason == "suspended" and "suspended from 2026-12-01T11:30" in gaps[4].message
    assert "by tech" in gaps[4].message and gaps[4].message.startswith("record 3 is missing")
    assert gaps[7].reason == "offline" and "broker unreachable" in gaps[7].message
    assert gaps[9].reason == "" and "a possible break" in gaps[9].message
    assert json.loads(json.dumps(report.as_dict()))["issues"][0]["reason"] == "suspended"
    store.close()
