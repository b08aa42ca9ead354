"""Staged rollouts over MQTT (central/fleet/rollout.py, update_service.py;
edge_agent/update/fetcher.py, handoff.py): real Mosquitto configured by
`alpr-central broker config` (per-device ACL), real TLS identities issued by
central's CA, real SQLite, real signed bundles, the real sync client carrying
the update client, and the real root-side step (`alpr-edge update apply-spool`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.config import Mqtt
from central.fleet import release as rel
from central.fleet.registry import CameraSpec
from central.fleet.rollout import Rollouts, stage
from central.fleet.update_service import UpdateService
from central.governance.users import Role
from central.ingest.collector import Collector, CollectorService
from central.ingest.keys import load_opener
from central.store.database import connect
from conftest import wait_for
from edge_agent.cli import main as edge_main
from edge_agent.outbox import Outbox
from edge_agent.sync import SyncClient, SyncSettings
from edge_agent.update.fetcher import UpdateClient, spool_name
from edge_agent.wire import MalformedMessage
from edge_agent.wire import update as wire
from test_enrollment_env import CentralEnv
from test_update import make_wheel

ROOT = Path(__file__).resolve().parents[1]


def group_cli(env: CentralEnv, *args, as_: str = "ada"):
    """``alpr-central device group <sub> ...`` (CentralEnv.cli splits one word of subcommand)."""
    from central.cli import main as central_main
    sub, *rest = args
    return CliRunner().invoke(central_main, ["device", "group", sub, "--config", str(env.config), *rest],
                              env={"ALPR_TOKEN": env.tokens[as_], "ALPR_TOKEN_FILE": None})


# -- units -----------------------------------------------------------------------------------
def test_stages_are_exact_stable_and_only_grow():
    devices = [f"cam-{i:03d}" for i in range(37)]
    half = stage(devices, 50)
    assert len(half) == 19 and half == stage(list(reversed(devices)), 50)  # ceil, order-independent
    assert set(stage(devices, 10)) <= set(half) <= set(stage(devices, 90))
    assert stage(devices, 100) == sorted(devices, key=lambda d: hashlib.sha256(f"alpr-rollout:{d}".encode())
                                         .hexdigest())
    assert len(stage(["a", "b"], 50)) == 1 and len(stage(["a"], 1)) == 1


def test_update_messages_round_trip_and_refuse_junk():
    offer = wire.Offer(3, "1.2.3", 5000, "a" * 64, 2048, ("b" * 64, "c" * 64, "d" * 64), False, "k1")
    assert wire.decode_offer(wire.encode_offer(offer)) == offer
    chunk = wire.Chunk(3, 1, "e" * 64, b"\x00\xff" * 10)
    assert wire.decode_chunk(wire.encode_chunk(chunk)) == chunk
    report = wire.StateReport("cam-a", 3, "1.2.3", "refused", 17, "0.1.0", "bad", 0)
    assert wire.decode_state(wire.encode_state(report)) == report
    with pytest.raises(MalformedMessage, match="number of chunk hashes"):
        wire.decode_offer(wire.encode_offer(offer).replace(b'"size":5000', b'"size":9000'))
    with pytest.raises(MalformedMessage, match="state must be"):
        wire.decode_state(wire.encode_state(report).replace(b"refused", b"exploded"))
    with pytest.raises(MalformedMessage):
        wire.decode_chunk(b"\x00\x00\x10\x00{}")


# -- the fleet: central, broker, devices -------------------------------------------------------
@pytest.fixture
def keys(tmp_path):
    private, public, _ = rel.init_key(tmp_path / "keys" / "release-key.pem")
    other, other_pub, _ = rel.init_key(tmp_path / "other" / "release-key.pem")
    return {"private": private, "public": public, "other": other, "other_pub": other_pub}


@pytest.fixture
def bundle(tmp_path, keys):
    wheel = make_wheel(tmp_path / "wheels", "9.0.0", "raise SystemExit(3)\n")
    out = tmp_path / "bundles" / "r-9.0.0.alpr"
    rel.build(out, rel.load_key(keys["private"]), wheel=wheel, models_dir=ROOT / "models")
    return out


class Device:
    """An enrolled device: its identity from central's CA, an edge config
    trusting the release key, and the real sync client with the update client."""

    def __init__(self, env: CentralEnv, root: Path, release_pub: Path) -> None:
        from edge_agent.provision import new_key_and_csr
        from cryptography.hazmat.primitives import serialization
        registry = env.registry()
        try:
            new = registry.create_enrollment(owner="department", cameras=[CameraSpec.parse("lane-1:file")],
                                             location="test", ttl=dt.timedelta(hours=1), user=env.user("tech"))
            key, csr = new_key_and_csr()
            device, cert_pem = registry.redeem(new.token_id, new.secret, csr, env.ca)
        finally:
            registry.close()
        self.id = device.device_id
        self.dir = root / self.id
        self.data = self.dir / "data"
        self.data.mkdir(parents=True, mode=0o700)
        self.app = self.dir / "app"
        self.key_file, self.cert_file = self.dir / "device.key", self.dir / "device.crt"
        self.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        self.key_file.chmod(0o600)
        self.cert_file.write_bytes(cert_pem)
        self.config = self.dir / "edge.toml"
        shutil.copyfile(release_pub, self.dir / "release-key.pub.pem")
        self.config.write_text(f"""
[device]
id = "{self.id}"
data_dir = "{self.data}"
[[cameras]]
id = "lane-1"
source = "file"
uri = "clip.mp4"
[sync]
host = "127.0.0.1"
port = {env.broker_port}
ca_file = "{env.data / 'ca' / 'ca.crt'}"
cert_file = "{self.cert_file}"
key_file = "{self.key_file}"
central_public_key = "{env.data / 'data-key.pub.pem'}"
[update]
app_dir = "{self.app}"
""")
        self.env = env
        self.stop_event = threading.Event()
        self.thread = None

    def start(self, *, fetch_window: int = 4, fetch_timeout: float = 3.0) -> "Device":
        self.stop_event = threading.Event()
        self.outbox = Outbox(self.data / "outbox.sqlite")
        self.sync = SyncClient(SyncSettings(host="127.0.0.1", port=self.env.broker_port, device_id=self.id,
                                            ca_file=str(self.env.data / "ca" / "ca.crt"),
                                            cert_file=str(self.cert_file), key_file=str(self.key_file)), self.outbox)
        self.updates = UpdateClient(self.id, self.data / "update", self.app, str(self.dir / "release-key.pub.pem"),
                                    fetch_window=fetch_window, fetch_timeout=fetch_timeout)
        self.sync.update_client = self.updates
        self.threads = [threading.Thread(target=self.sync.run, args=(self.stop_event,), daemon=True),
                        threading.Thread(target=self.updates.run, args=(self.stop_event,), daemon=True)]
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(10)
        self.outbox.close()

    def state(self) -> str | None:
        return (self.updates.job or {}).get("state")

    def apply_spool(self, *extra):
        return CliRunner().invoke(edge_main, ["update", "apply-spool", "--config", str(self.config), "--app-dir",
                                              str(self.app), "--restart-command", "true", *extra])


class Fleet:
    def __init__(self, tmp_path: Path, keys, n: int, service_cls=UpdateService, pg_url: str = "") -> None:
        self.env = CentralEnv(tmp_path / "site", pid_file=True, pg_url=pg_url)
        self.env.add_user("pat", "acme", Role.BUSINESS)
        self.devices = [Device(self.env, tmp_path / "devices", keys["public"]) for _ in range(n)]
        self.env.start_broker()  # its ACL names the devices just enrolled
        db = self.env.database
        self.store = self.env.store()
        registry = self.env.registry()
        self.updates = service_cls(db, resend_seconds=2.0)
        self.service = CollectorService(
            Mqtt(host="127.0.0.1", port=self.env.broker_port, ca_file=str(self.env.data / "ca" / "ca.crt"),
                 cert_file=str(self.env.data / "ca" / "collector.main.crt"),
                 key_file=str(self.env.data / "ca" / "collector.main.key"), client_id="central.collector-test"),
            Collector(self.store, load_opener([self.env.data / "data-key.pem"]),
                      device_allowed=registry.allow_list(ttl=0.0)), update_service=self.updates)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop_event,), daemon=True)
        self.thread.start()
        wait_for(self.service.ready.is_set, 15, message="collector subscription")
        self._registry = registry
        self.keys = keys

    def by_id(self, device_id: str) -> Device:
        return next(d for d in self.devices if d.id == device_id)

    def rows(self) -> dict[str, dict]:
        conn = connect(self.env.database)
        try:
            cur = conn.execute("SELECT device_id, rollout_id, version, state, reason, running_version "
                               "FROM device_updates")
            return {r[0]: dict(zip(("device", "rollout", "version", "state", "reason", "running"), r))
                    for r in cur.fetchall()}
        finally:
            conn.close()

    def rollout(self, rollout_id: int) -> dict:
        conn = connect(self.env.database)
        try:
            r = conn.execute("SELECT status, status_reason, percent FROM rollouts WHERE rollout_id=?",
                             [rollout_id]).fetchone()
            return {"status": r[0], "reason": r[1], "percent": r[2]}
        finally:
            conn.close()

    def access_log(self) -> list[tuple[str, str, dict]]:
        conn = connect(self.env.database)
        try:
            return [(r[0], r[1], json.loads(r[2])) for r in
                    conn.execute("SELECT user, action, detail FROM audit_log ORDER BY seq")]
        finally:
            conn.close()

    def offer(self, bundle, *args, key="public"):
        result = self.env.cli("release", "offer", str(bundle), "--public-key", str(self.keys[key]), "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def close(self) -> None:
        for d in self.devices:
            if d.thread is not None or getattr(d, "threads", None):
                if not d.stop_event.is_set():
                    d.stop()
        self.stop_event.set()
        self.thread.join(10)
        self.updates.close()
        self.store.close()
        self._registry.close()
        self.env.close()


@pytest.fixture
def fleet_factory(request, tmp_path, keys, mosquitto_bin):
    """Fleets on SQLite; on PostgreSQL too for a test that parametrizes it
    (``@BOTH``: offer, stages, pause and resume, the central side)."""
    made = []
    url = request.getfixturevalue("pg_url") if getattr(request, "param", "sqlite") == "postgresql" else ""

    def make(n: int, service_cls=UpdateService) -> Fleet:
        f = Fleet(tmp_path, keys, n, service_cls, pg_url=url)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


BOTH = pytest.mark.parametrize("fleet_factory", ["sqlite", "postgresql"], indirect=True)


@BOTH
def test_a_staged_rollout_reaches_the_stable_half_hands_off_and_pauses_on_a_rollback(fleet_factory, bundle):
    fleet = fleet_factory(4)
    for d in fleet.devices:
        d.start()
    ids = [d.id for d in fleet.devices]
    assert group_cli(fleet.env, "create", "north", "--description", "north poles").exit_code == 0
    assert group_cli(fleet.env, "add", "north", *ids).exit_code == 0
    doc = fleet.offer(bundle, "--group", "north", "--percent", "50", "--max-failures", "1")
    rid = doc["rollout_id"]
    half = stage(ids, 50)
    assert len(half) == 2 and set(fleet.rows()) == set(half)
    # the stable half downloads, verifies and hands the bundle to the root-side step
    for device_id in half:
        d = fleet.by_id(device_id)
        wait_for(lambda: d.state() == "applying", 60, message=f"{device_id} hands off")
        spooled = d.data / "update" / "spool" / spool_name(rid, "9.0.0")
        assert spooled.read_bytes() == bundle.read_bytes()
        assert not list((d.data / "update").glob("*.part"))
    wait_for(lambda: all(r["state"] == "applying" for r in fleet.rows().values()), 15, message="central sees it")
    # the other half heard nothing (the broker delivers only a device's own offers)
    for d in fleet.devices:
        if d.id not in half:
            assert d.updates.counters["offers"] == 0 and d.state() is None
    # a field tech sees each device's version and state; an admin's offer is in the access log
    result = fleet.env.cli("release", "status", "--json", as_="tech")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    by_device = {d["device_id"]: d for d in status["devices"]}
    assert set(by_device) == set(ids)
    assert all(by_device[i]["state"] == "applying" and by_device[i]["version"] == "9.0.0" for i in half)
    assert all(by_device[i]["state"] is None for i in set(ids) - set(half))
    offers = [e for e in fleet.access_log() if e[1] == "release-offer"]
    assert offers and offers[0][0] == "ada" and sorted(offers[0][2]["devices"]) == sorted(half)
    # the root side installs the first one; its agent never comes up healthy: rolled back
    first, second = (fleet.by_id(i) for i in half)
    result = first.apply_spool("--health-timeout", "2")
    assert result.exit_code == 1, result.output
    assert "rolled-back" in result.output
    assert not list((first.data / "update" / "spool").glob("*.alpr"))  # taken
    wait_for(lambda: fleet.rows()[first.id]["state"] == "rolled-back", 20, message="rollback reported")
    assert "the agent has written no status" in fleet.rows()[first.id]["reason"]
    # ... and the rollout paused itself (max failures 1), in the access log as central's action
    wait_for(lambda: fleet.rollout(rid)["status"] == "paused", 5, message="auto pause")
    assert "1 of 2 devices failed" in fleet.rollout(rid)["reason"]
    assert [e for e in fleet.access_log() if e[1] == "release-auto-pause"][0][0] == "central"
    text = fleet.env.cli("release", "status", as_="tech").output
    assert "paused" in text and "rolled-back" in text
    # paused: no promotion until resumed; then the other half gets it
    refused = fleet.env.cli("release", "promote", str(rid))
    assert refused.exit_code == 1 and "resume it first" in refused.output
    assert fleet.env.cli("release", "resume", str(rid)).exit_code == 0
    assert fleet.env.cli("release", "promote", str(rid), "--percent", "100").exit_code == 0
    for d in fleet.devices:
        if d.id not in half:
            wait_for(lambda: d.state() == "applying", 60, message=f"{d.id} hands off after promotion")
    assert set(fleet.rows()) == set(ids)
    actions = [e[1] for e in fleet.access_log()]
    for action in ("device-group-create", "device-group-add", "release-offer", "release-resume", "release-promote"):
        assert action in actions


class CorruptOnce(UpdateService):
    """The wire between central and a device flips a byte of chunk 1, once."""
    done = False

    def read_chunk(self, path, offset, length):
        data = super().read_chunk(path, offset, length)
        if offset and not CorruptOnce.done:
            CorruptOnce.done = True
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data


def test_a_corrupted_chunk_is_fetched_again(fleet_factory, bundle):
    fleet = fleet_factory(1, CorruptOnce)
    d = fleet.devices[0].start(fetch_window=1)
    fleet.offer(bundle, "--device", d.id)
    wait_for(lambda: d.state() == "applying", 60, message="hand-off")
    assert CorruptOnce.done and d.updates.counters["bad_chunks"] == 1
    assert next((d.data / "update" / "spool").glob("*.alpr")).read_bytes() == bundle.read_bytes()


class Tampering(UpdateService):
    """Flips a byte of every chunk at these offsets (a wire or a store that keeps corrupting it)."""
    offsets: set[int] = set()

    def read_chunk(self, path, offset, length):
        data = super().read_chunk(path, offset, length)
        return bytes([data[0] ^ 1]) + data[1:] if offset in self.offsets else data


@BOTH
def test_a_tampered_bundle_is_refused_with_the_reason_at_central(fleet_factory, bundle, keys, tmp_path):
    fleet = fleet_factory(2, Tampering)
    a, b = (d.start() for d in fleet.devices)
    # signed by another key: central (told that key) offers it, the device refuses it
    foreign = tmp_path / "bundles" / "foreign.alpr"
    rel.build(foreign, rel.load_key(keys["other"]), wheel=next((tmp_path / "wheels").glob("*.whl")),
              models_dir=ROOT / "models")
    fleet.offer(foreign, "--device", b.id, key="other_pub")
    wait_for(lambda: fleet.rows()[b.id]["state"] == "refused", 60, message="foreign key refused")
    assert "signature does not verify" in fleet.rows()[b.id]["reason"]
    assert not list((b.data / "update" / "spool").glob("*.alpr"))  # nothing handed over
    # a chunk that never arrives intact: refused after three tries, the reason at central
    fleet.updates.offsets = {256 * 1024}
    doc = fleet.offer(bundle, "--device", a.id)
    wait_for(lambda: fleet.rows()[a.id]["state"] == "refused", 60, message="tampered chunk refused")
    assert "chunk 1 failed its SHA-256 check 3 times" in fleet.rows()[a.id]["reason"]
    assert a.updates.counters["bad_chunks"] == 3
    assert not list((a.data / "update" / "spool").glob("*.alpr")) and not list((a.data / "update").glob("*.part"))
    text = fleet.env.cli("release", "status", "--rollout", str(doc["rollout_id"]), as_="audrey").output
    assert "refused" in text and "SHA-256" in text


class Slow(UpdateService):
    def read_chunk(self, path, offset, length):
        import time
        time.sleep(0.2)
        return super().read_chunk(path, offset, length)


def test_a_download_resumes_after_a_disconnect(fleet_factory, tmp_path, keys):
    # a bigger bundle: 16 KiB chunks would be many; the default 256 KiB over ~1.7 MB gives 7
    wheel = make_wheel(tmp_path / "wheels-big", "9.1.0", "raise SystemExit(3)\n")
    big = tmp_path / "bundles" / "big.alpr"
    rel.build(big, rel.load_key(keys["private"]), wheel=wheel, models_dir=ROOT / "models")
    fleet = fleet_factory(1, Slow)
    d = fleet.devices[0].start(fetch_window=1)
    fleet.offer(big, "--device", d.id)
    wait_for(lambda: d.updates._have >= 3, 60, message="part of the download")
    d.stop()  # the agent stops (or the link drops) mid-download
    part = next((d.data / "update").glob("*.part"))
    held = part.stat().st_size
    assert 0 < held < big.stat().st_size
    d.start(fetch_window=1)
    assert d.updates._have * 256 * 1024 == held  # the verified chunks on disk are kept
    wait_for(lambda: d.state() == "applying", 60, message="resumed hand-off")
    assert d.updates.counters["chunks"] == -(-big.stat().st_size // (256 * 1024)) - held // (256 * 1024)
    assert next((d.data / "update" / "spool").glob("*.alpr")).read_bytes() == big.read_bytes()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_only_admins_offer_updates(request, backend, tmp_path, keys, bundle):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pid_file=False, pg_url=url)
    env.add_user("pat", "acme", Role.BUSINESS)
    try:
        device = env.provisioned("lane-1")
        assert group_cli(env, "create", "g1").exit_code == 0
        for who in ("tech", "pat", "otto", "sue", "audrey"):
            result = env.cli("release", "offer", str(bundle), "--device", device, "--public-key", str(keys["public"]),
                             as_=who)
            assert result.exit_code == 1 and "may not offer application updates" in result.output, who
            assert group_cli(env, "add", "g1", device, as_=who).exit_code == 1
        assert env.cli("release", "status", as_="tech").exit_code == 0
        assert env.cli("release", "status", as_="audrey").exit_code == 0
        for who in ("pat", "otto"):
            result = env.cli("release", "status", as_=who)
            assert result.exit_code == 1 and "may not see device groups" in result.output
        # a bundle central cannot verify is not offered
        result = env.cli("release", "offer", str(bundle), "--device", device, "--public-key", str(keys["other_pub"]))
        assert result.exit_code == 1 and "signature does not verify" in result.output
        conn = connect(env.database)
        assert conn.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 0
        conn.close()
        ok = env.cli("release", "offer", str(bundle), "--device", device, "--public-key", str(keys["public"]))
        assert ok.exit_code == 0 and "rollout 1: release 9.0.0 to device" in ok.output
        # groups list their members (group_concat on SQLite, string_agg on PostgreSQL)
        other = env.provisioned("lane-1")
        assert group_cli(env, "add", "g1", device, other).exit_code == 0
        assert group_cli(env, "add", "g1", device).exit_code == 0       # already a member: nothing changes
        assert group_cli(env, "create", "g2").exit_code == 0
        listed = json.loads(group_cli(env, "list", "--json", as_="tech").output)
        assert [(g["group"], g["devices"]) for g in listed] == [("g1", sorted([device, other])), ("g2", [])]
    finally:
        env.close()


def test_provisioning_trusts_the_release_key_central_sends_but_never_replaces_one(tmp_path, keys):
    from central.fleet.enrollment import EnrollmentServer, EnrollmentService, EnrollmentSettings, data_public_key_pem
    from edge_agent.provision import provision
    env = CentralEnv(tmp_path / "site", pid_file=False)
    registry = env.registry()
    service = EnrollmentService(registry, env.ca, data_public_key_pem(env.data / "data-key.pem"),
                                EnrollmentSettings("127.0.0.1", env.broker_port),
                                release_public_pem=keys["public"].read_bytes())
    server = EnrollmentServer(service, bind="127.0.0.1", port=env.enroll_port,
                              cert_file=str(env.data / "ca" / "enrollment.crt"),
                              key_file=str(env.data / "ca" / "enrollment.key")).start()
    try:
        conf = tmp_path / "dev" / "edge.toml"
        conf.parent.mkdir()
        token, _ = env.token()
        result = provision(token, env.central_url, conf, data_dir=str(tmp_path / "dev" / "data"))
        trusted = conf.parent / "release-key.pub.pem"
        assert trusted.read_bytes() == keys["public"].read_bytes() and "trusting release key" in result.release_key
        assert trusted.stat().st_mode & 0o777 == 0o644
        # re-provisioning against a central that now sends another key keeps the trusted one
        service.release_public_pem = keys["other_pub"].read_bytes()
        token, _ = env.token()
        result = provision(token, env.central_url, conf)
        assert trusted.read_bytes() == keys["public"].read_bytes()
        assert "kept the trusted release key" in result.release_key and "--replace" in result.release_key
    finally:
        server.stop()
        registry.close()
        env.close()


def test_the_acl_gives_each_device_only_its_own_update_topics():
    from central.fleet.broker import acl_text
    text = acl_text(devices=["cam-a"], collectors=("main",))
    block = text.split("user cam-a\n")[1]
    for line in ("topic read alpr/v1/devices/cam-a/update/offer", "topic read alpr/v1/devices/cam-a/update/chunk",
                 "topic write alpr/v1/devices/cam-a/update/fetch", "topic write alpr/v1/devices/cam-a/update/state"):
        assert line in block
    assert "+" not in block and "write alpr/v1/devices/cam-a/update/offer" not in block
    collector = text.split("user central.collector.main\n")[1].split("\n\n")[0]
    assert "topic write alpr/v1/devices/+/update/offer" in collector
    assert "topic read alpr/v1/devices/+/update/state" in collector
    assert "pattern read alpr/v1/devices/%u/update/offer" in acl_text()


@BOTH
def test_a_pause_withdraws_an_offer_not_yet_installed_and_resume_offers_it_again(fleet_factory, bundle):
    fleet = fleet_factory(1, Slow)
    d = fleet.devices[0].start(fetch_window=1)
    rid = fleet.offer(bundle, "--device", d.id)["rollout_id"]
    wait_for(lambda: d.updates._have >= 1, 60, message="download under way")
    assert fleet.env.cli("release", "pause", str(rid), "--reason", "vendor asked").exit_code == 0
    wait_for(lambda: fleet.rows()[d.id]["state"] == "withdrawn", 30, message="withdrawn")
    assert not list((d.data / "update").glob("*.part")) and not list((d.data / "update" / "spool").glob("*"))
    assert ("ada", "release-pause") in [(e[0], e[1]) for e in fleet.access_log()]
    assert fleet.env.cli("release", "resume", str(rid)).exit_code == 0
    wait_for(lambda: d.state() == "applying", 90, message="offered again after resume")
    wait_for(lambda: fleet.rows()[d.id]["state"] == "applying", 10, message="central sees it")


def test_a_running_agent_takes_an_offer_and_reports_the_root_sides_rollback(fleet_factory, bundle, sample_clip):
    """The agent itself (edge_agent/agent.py wiring): offer -> download -> hand-off;
    the root-side step finds the new release not healthy (the agent still runs
    0.1.0: the restart command does nothing) and rolls back; the agent says so."""
    from edge_agent import config as edge_config_mod
    from edge_agent.agent import Agent
    fleet = fleet_factory(1)
    d = fleet.devices[0]
    video, sidecar = sample_clip
    text = d.config.read_text().replace('uri = "clip.mp4"', f'uri = "{video}"\nfps = 10.0')
    d.config.write_text(text + f'[recognition]\ntype = "sidecar-oracle"\n[recognition.options]\nsidecar = "{sidecar}"\n')
    agent = Agent(edge_config_mod.load(d.config))
    assert agent.sync.update_client is agent.updates is not None
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.sync.connected, 30, message="agent connected")
        rid = fleet.offer(bundle, "--device", d.id)["rollout_id"]
        wait_for(lambda: fleet.rows()[d.id]["state"] == "applying", 60, message="agent hands off")
        assert (d.data / "update" / "spool" / spool_name(rid, "9.0.0")).exists()
        result = d.apply_spool("--health-timeout", "3", "--no-sync-check")
        assert result.exit_code == 1 and "rolled-back" in result.output, result.output
        wait_for(lambda: fleet.rows()[d.id]["state"] == "rolled-back", 30, message="agent reports the rollback")
        row = fleet.rows()[d.id]
        assert "is version 0.1.0, not 9.0.0" in row["reason"] and row["running"] == "0.1.0"
    finally:
        stop.set()
        runner.join(30)


def test_chunk_answers_are_rate_limited_per_device(tmp_path):
    """A device asking for chunks as fast as it can is answered at the set rate (clock injected)."""
    from central.store.sqlite import SQLiteStore as Store
    Store(tmp_path / "c.sqlite").close()
    now = [100.0]
    service = UpdateService(tmp_path / "c.sqlite", max_chunks_per_second=4, monotonic=lambda: now[0])
    try:
        assert [service._allow("cam-a") for _ in range(6)] == [True] * 4 + [False] * 2
        assert service._allow("cam-b")  # per device
        now[0] += 0.5
        assert [service._allow("cam-a") for _ in range(3)] == [True, True, False]
    finally:
        service.close()


def test_the_root_side_never_follows_the_agents_links(tmp_path):
    """The spool is the agent's folder: a spool (or update folder) swapped for a
    link, a bundle that is a link, or a bad name is never read or acted on elsewhere."""
    from edge_agent.update import handoff
    data = tmp_path / "data"
    (data / "update").mkdir(parents=True)
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    victim = elsewhere / "3-9.0.0.alpr"
    victim.write_bytes(b"root's file")
    (data / "update" / "spool").symlink_to(elsewhere)
    with pytest.raises(handoff.UpdateError, match="not a plain folder"):
        handoff._take(data / "update" / "spool", tmp_path / "in.alpr", data)
    assert victim.exists()
    (data / "update" / "spool").unlink()
    (data / "update").rename(tmp_path / "real-update")
    (data / "update").symlink_to(elsewhere)
    with pytest.raises(handoff.UpdateError):
        handoff._take(data / "update" / "spool", tmp_path / "in.alpr", data)
    (data / "update").unlink()
    (tmp_path / "real-update").rename(data / "update")
    spool = data / "update" / "spool"
    spool.mkdir()
    (spool / "4-9.0.0.alpr").symlink_to(victim)
    with pytest.raises(OSError):
        handoff._take(spool, tmp_path / "in.alpr", data)
    assert victim.read_bytes() == b"root's file" and not (tmp_path / "in.alpr").exists()
    (spool / "evil name.alpr").write_bytes(b"x")
    assert handoff._take(spool, tmp_path / "in.alpr", data) is None and not list(spool.iterdir())
