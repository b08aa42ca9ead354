"""Remote configuration end to end, as it runs in the field: central made
the way an operator does (``device config init-key``, the HTTPS enrollment
endpoint, Mosquitto with the ACL from the registry, ``alpr-central run``), a
device provisioned over HTTPS (it gets the configuration public key in the
answer), and the real agent process (``alpr-edge run``) replaying a clip.
An admin pushes with ``alpr-central device config push``; the collector
publishes it retained; the agent applies it, restarts in place and reports;
``device config status`` shows what each device runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from click.testing import CliRunner

from central.cli import main as central_main
from central.governance.users import Role
from conftest import wait_for
from edge_agent.provision import dump_toml, provision
from test_enrollment_env import CentralEnv
from test_watchdog import NotifySocket

pytestmark = pytest.mark.slow


@pytest.fixture
def central(tmp_path, mosquitto_bin):
    env = CentralEnv(tmp_path / "site")
    env.add_user("pat", "acme", Role.BUSINESS)
    yield env
    env.close()


def _cli(central, *args, as_="ada"):
    """``alpr-central device config ...`` as user ``as_`` (CentralEnv.cli knows two levels)."""
    env = {"ALPR_TOKEN": central.tokens[as_] if as_ else None, "ALPR_TOKEN_FILE": None}
    return CliRunner().invoke(central_main, ["device", "config", *args, "--config", str(central.config)], env=env)


def _status(central, device_id, as_="tech"):
    result = _cli(central, "status", device_id, "--json", as_=as_)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_signed_config_applied_unsigned_invalid_refused_broken_rolled_back(tmp_path, central, sample_clip):
    result = _cli(central, "init-key", as_=None)
    assert result.exit_code == 0, result.output
    key_dir = central.data / "config-signing"
    assert oct(key_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((key_dir / "config-key.pem").stat().st_mode & 0o777) == "0o600"
    assert _cli(central, "init-key", as_=None).exit_code == 1  # never overwritten

    central.start_enrollment()
    central.start_broker()
    token, device_id = central.token("lane-1:file")
    conf = tmp_path / "edge" / "edge.toml"
    provision(token, central.central_url, conf)
    doc = tomllib.loads(conf.read_text())
    trusted = Path(doc["remote_config"]["public_key"])  # from the enrollment answer, beside the config
    assert trusted.read_bytes() == (key_dir / "config-key.pub.pem").read_bytes()
    video, sidecar = sample_clip
    doc["cameras"][0].update(uri=str(video), fps=5.0, loop=True)
    doc["recognition"] = {"type": "sidecar-oracle", "options": {"sidecar": str(sidecar)}}
    doc["remote_config"]["trial_seconds"] = 10.0
    conf.write_text(dump_toml(doc))

    central_log, agent_log = tmp_path / "central.log", tmp_path / "agent.log"
    run = subprocess.Popen([str(Path(sys.executable).parent / "alpr-central"), "run", "--config",
                            str(central.config), "--log-level", "info"],
                           stdout=open(central_log, "wb"), stderr=subprocess.STDOUT)
    systemd = NotifySocket(str(tmp_path / "notify"))  # the agent tells systemd it reloads, never that it stops
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run", "--config", str(conf),
                              "--log-level", "info"], stdout=open(agent_log, "wb"), stderr=subprocess.STDOUT,
                             env={**os.environ, "NOTIFY_SOCKET": systemd.address})
    try:
        # the device reports what it runs as soon as it connects: its own file only
        wait_for(lambda: _status(central, device_id)["state"] == "applied", 60, interval=0.5,
                 message="first config-state report\n" + _log(agent_log)[-2000:])
        assert _status(central, device_id)["applied_version"] == 0

        # a business user and a field tech may not push; nothing is stored for them
        for who in ("pat", "tech"):
            result = _cli(central, "push", "--device", device_id, "--set",
                                 "tracking.min_hits=2", as_=who)
            assert result.exit_code == 1 and "may not push configurations to devices" in result.output, result.output
        assert _status(central, device_id)["latest_version"] is None
        # a key never settable remotely is refused at central before anything is signed
        result = _cli(central, "push", "--device", device_id, "--set", "sync.cert_file=\"x\"")
        assert result.exit_code == 1 and "sync.cert_file: may not be set remotely" in result.output

        # 1. signed: applied, the agent restarts in place with it and reports version 1
        result = _cli(central, "push", "--device", device_id, "--set", "tracking.min_hits=2",
                             "--set", "health.interval_seconds=30")
        assert result.exit_code == 0, result.output
        assert f"{device_id}: version 1 signed" in result.output
        wait_for(lambda: (lambda s: (s["applied_version"], s["state"]) == (1, "applied"))(
            _status(central, device_id)), 90, interval=0.5, message="version 1 applied\n" + _log(agent_log)[-3000:])
        check = subprocess.run([sys.executable, "-m", "edge_agent.cli", "config", "check", "--config", str(conf)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0 and "remote configuration version 1 (applied)" in check.stdout, check
        assert "remote configuration version 1 accepted" in _log(agent_log)
        said = [m for _, m in systemd.messages]
        assert any(m.startswith("RELOADING=1") for m in said) and not any("STOPPING=1" in m for m in said)
        assert sum(m.startswith("READY=1") for m in said) >= 2, said
        assert tomllib.loads(conf.read_text()) == doc  # the tech's file is never rewritten
        # the push is in the access log with the keys it changed, never their values
        from central.store.sqlite import SQLiteStore
        store = SQLiteStore(central.data / "central.sqlite")
        try:
            (detail, user), = store.db.execute(
                "SELECT detail, user FROM audit_log WHERE action = 'device-config-push'").fetchall()
            assert user == "ada" and json.loads(detail)["keys"] == ["health.interval_seconds", "tracking.min_hits"]
            assert json.loads(detail)["devices"] == {device_id: 1}

            # 2. unsigned (someone who can write central's database but holds no key): refused and logged
            signed = store.db.execute("SELECT message FROM device_configs WHERE version = 1").fetchone()[0]
            outer = json.loads(signed)
            forged = outer["config"].replace('"version":1', '"version":2').replace('"min_hits":2', '"min_hits":1')
            unsigned = json.dumps({**outer, "config": forged, "signature": ""}).encode()
            with store.db.conn:
                store.db.execute("INSERT INTO device_configs VALUES (?,?,?,?,?,?,?,NULL)",
                                 [device_id, 2, "{}", unsigned, outer["key_id"], "mallory", "2026-12-05T00:00:00.000000Z"])
        finally:
            store.close()
        wait_for(lambda: _status(central, device_id)["state"] == "refused", 60, interval=0.5,
                 message="unsigned refused\n" + _log(agent_log)[-3000:])
        s = _status(central, device_id)
        assert s["applied_version"] == 1 and s["offered_version"] == 2 and s["reason"].startswith("unsigned")
        assert "remote configuration refused" in _log(agent_log) and "unsigned" in _log(agent_log)

        # 3. invalid by the config check rules: refused, version 1 stays
        result = _cli(central, "push", "--device", device_id, "--set", "tracking.min_hits=0")
        assert result.exit_code == 0 and "version 3 signed" in result.output, result.output
        wait_for(lambda: _status(central, device_id)["offered_version"] == 3, 60, interval=0.5,
                 message="invalid refused\n" + _log(agent_log)[-3000:])
        s = _status(central, device_id)
        assert (s["state"], s["applied_version"]) == ("refused", 1) and s["reason"].startswith("invalid")
        assert "min_hits" in s["reason"]

        # 4. a camera that cannot open: applied on trial, not up within 10 s, rolled back to version 1
        cams = tmp_path / "cams.toml"
        cams.write_text('[[cameras]]\nid = "lane-1"\nsource = "device"\nuri = "/dev/video-none-here"\n')
        result = _cli(central, "push", "--device", device_id, "--file", str(cams))
        assert result.exit_code == 0 and "version 4 signed" in result.output, result.output
        wait_for(lambda: _status(central, device_id)["state"] == "rolled-back", 90, interval=0.5,
                 message="rolled back\n" + _log(agent_log)[-3000:])
        s = _status(central, device_id)
        assert (s["applied_version"], s["offered_version"]) == (1, 4) and "camera lane-1" in s["reason"]
        assert agent.poll() is None  # the agent runs on, with version 1
        text = _cli(central, "status", as_="ada").output
        assert device_id in text and "rolled-back" in text
        # the business user sees only its own devices' configuration state
        result = _cli(central, "status", device_id, as_="pat")
        assert result.exit_code == 1
    finally:
        agent.terminate()
        run.terminate()
        try:
            agent.wait(30)
        finally:
            run.wait(30)
            systemd.close()
    # the device's own signed audit log holds what happened, in order
    import sqlite3
    from edge_agent import config as config_mod
    db = sqlite3.connect(config_mod.load(conf).data_dir / "audit.sqlite")
    try:
        events = [json.loads(r[0])["event"] for r in db.execute("SELECT record FROM records ORDER BY seq")]
    finally:
        db.close()
    events = [e for e in events if e.startswith("config-") and e != "config-changed"]  # changed: every new one
    assert events[:2] == ["config-accepted", "config-applied"], events
    assert events.count("config-refused") == 2 and events[-2:] == ["config-accepted", "config-rolled-back"], events
