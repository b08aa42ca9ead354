"""Remote configuration: the rules of what may be set, the signed message,
the device's store (real files: atomic apply, older/replayed refused, trial,
rollback), and the collector's side. The end-to-end run through a real
Mosquitto, central's CLI and a real agent process is in
tests/test_remote_config_e2e.py."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import edge_config
from edge_agent import config as config_mod
from edge_agent import remote_config
from edge_agent.cli import main as edge_main
from edge_agent.errors import ConfigError
from edge_agent.wire import devconfig as wire
from edge_agent.wire.devconfig import ConfigRefused, DeviceConfig


def _msg(key, version, settings, device="cam-a", by="ada"):
    return wire.sign(key, DeviceConfig(device, version, "2026-12-05T00:00:00.000Z", by,
                                       json.dumps(settings, sort_keys=True)))


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


# -- the rule and the message ---------------------------------------------------------
@pytest.mark.parametrize("settings,where", [
    ({"device": {"id": "cam-b"}}, "device: may not be set remotely"),
    ({"device": {"data_dir": "/tmp"}}, "device: may not be set remotely"),
    ({"sync": {"cert_file": "/tmp/x.crt"}}, "sync.cert_file: may not be set remotely"),
    ({"sync": {"key_file": "x.key"}}, "sync.key_file"),
    ({"sync": {"central_public_key": "x.pem"}}, "sync.central_public_key"),
    ({"sync": {"host": "evil.example"}}, "allow_broker_address"),
    ({"sync": {"tls": False}}, "sync.tls"),
    ({"recognition": {"type": "sidecar-oracle"}}, "recognition.type"),
    ({"recognition": {"options": {"bundle_key": "x"}}}, "recognition.options"),
    ({"remote_config": {"public_key": "mine.pem"}}, "remote_config: may not be set remotely"),
    ({"cameras": [{"id": "a", "source": "file", "uri": "/etc/shadow"}]}, "never a file on the device"),
    ({"cameras": [{"id": "a", "source": "stream", "loop": True}]}, r"cameras\[0\]\.loop"),
    ({"tracking": {"min_hits": "2"}}, "tracking.min_hits: expected int"),
    ({"health": {"interval_seconds": float("nan")}}, "finite"),
    ({}, "non-empty"),
])
def test_what_may_never_be_set_remotely_is_refused_naming_the_key(settings, where):
    with pytest.raises(ConfigRefused, match=where) as info:
        wire.check_settings(settings)
    assert info.value.reason == "not-allowed"


def test_what_may_be_set_remotely():
    ok = {"cameras": [{"id": "lane-1", "source": "stream", "uri": "rtsp://10.0.0.5/s", "fps": 8}],
          "recognition": {"motion_threshold": 0.02}, "tracking": {"min_hits": 2},
          "images": {"context": True}, "buffer": {"max_age_days": 30}, "health": {"interval_seconds": 30},
          "sync": {"batch_size": 100, "max_rate": 50}}
    assert wire.check_settings(ok) is ok
    assert wire.check_settings({"sync": {"host": "b2", "port": 8884}}, allow_broker_address=True)


def test_signed_message_round_trip_and_every_refusal(key):
    pub = key.public_key()
    cfg = wire.open_config(_msg(key, 3, {"tracking": {"min_hits": 2}}), pub, "cam-a")
    assert (cfg.version, cfg.issued_by, cfg.settings) == (3, "ada", {"tracking": {"min_hits": 2}})
    outer = json.loads(_msg(key, 3, {"tracking": {"min_hits": 2}}))
    unsigned = json.dumps({**outer, "signature": ""}).encode()
    with pytest.raises(ConfigRefused) as info:
        wire.open_config(unsigned, pub, "cam-a")
    assert info.value.reason == "unsigned"
    tampered = json.dumps({**outer, "config": outer["config"].replace('"min_hits":2', '"min_hits":9')}).encode()
    with pytest.raises(ConfigRefused) as info:
        wire.open_config(tampered, pub, "cam-a")
    assert info.value.reason == "bad-signature"
    with pytest.raises(ConfigRefused) as info:  # another key
        wire.open_config(_msg(Ed25519PrivateKey.generate(), 3, {"tracking": {"min_hits": 2}}), pub, "cam-a")
    assert info.value.reason == "bad-signature"
    with pytest.raises(ConfigRefused) as info:  # made for cam-b, replayed to cam-a
        wire.open_config(_msg(key, 3, {"tracking": {"min_hits": 2}}, device="cam-b"), pub, "cam-a")
    assert info.value.reason == "wrong-device"
    with pytest.raises(ConfigRefused) as info:  # signed, but a key never settable remotely
        wire.open_config(_msg(key, 3, {"sync": {"cert_file": "/x"}}), pub, "cam-a")
    assert info.value.reason == "not-allowed"
    for junk in (b"", b"{", b"[]", b'{"format":"other"}', b"x" * (wire.MAX_MESSAGE_BYTES + 1)):
        with pytest.raises(ConfigRefused) as info:
            wire.open_config(junk, pub, "cam-a")
        assert info.value.reason == "malformed"


def test_state_report_round_trip_and_refusals():
    s = wire.ConfigState("cam-a", 2, "refused", 3, "unsigned: the configuration is not signed",
                         "2026-12-05T00:00:00.000Z")
    assert wire.decode_state(wire.encode_state(s)) == s
    for bad in ({"state": "weird"}, {"applied_version": -1}, {"device_id": "CAM A"}, {"reason": "x" * 400},
                {"at": "yesterday"}):
        doc = {"v": 1, **{**s.__dict__, **bad}}
        with pytest.raises(wire.MalformedMessage):
            wire.decode_state(json.dumps(doc).encode())


# -- the device's store (real files) ----------------------------------------------------
def _device(tmp_path, pki_dir, key, extra=""):
    pub = tmp_path / "config-key.pub.pem"
    from central.fleet.remote_config import public_pem
    pub.write_bytes(public_pem(key))
    conf = edge_config(tmp_path, pki_dir, 1883, source="folder", uri=str(tmp_path / "frames"),
                       extra=f'[remote_config]\npublic_key = "{pub}"\ntrial_seconds = 10\n{extra}')
    base = config_mod.load(conf)
    return conf, base


def test_accept_keeps_the_previous_refuses_older_and_replayed(tmp_path, pki_dir, key):
    conf, base = _device(tmp_path, pki_dir, key)
    store = remote_config.ConfigStore.for_config(base)
    validate = remote_config.validator(conf)
    first = _msg(key, 1, {"tracking": {"min_hits": 2}})
    assert store.offer(first, validate).version == 1
    folder = base.data_dir / "remote-config"
    assert (folder / "current.msg").read_bytes() == first and not (folder / "previous.msg").exists()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert store.offer(first, validate) is None  # the broker's retained copy again: nothing happens
    store.confirm()
    second = _msg(key, 2, {"tracking": {"min_hits": 3}})
    store.offer(second, validate)
    assert (folder / "previous.msg").read_bytes() == first and (folder / "current.msg").read_bytes() == second
    assert store.report().state == "trial" and store.report().applied_version == 2
    store.confirm()
    assert store.report() == wire.ConfigState("cam-a", 2, "applied", 2, None, store.state["at"])
    # older, and a replay of a version already seen with other content: refused, nothing changed
    for msg in (_msg(key, 1, {"tracking": {"min_hits": 5}}), _msg(key, 2, {"tracking": {"min_hits": 5}})):
        with pytest.raises(ConfigRefused) as info:
            store.offer(msg, validate)
        assert info.value.reason == "older"
    assert (folder / "current.msg").read_bytes() == second
    report = store.report()
    assert (report.state, report.applied_version, report.offered_version) == ("refused", 2, 2)
    assert report.reason.startswith("older: version 2 is not newer")
    # state survives a restart of the agent
    again = remote_config.ConfigStore.for_config(base)
    assert again.report() == report and again.current().version == 2


def test_invalid_by_the_config_check_rules_is_refused(tmp_path, pki_dir, key):
    conf, base = _device(tmp_path, pki_dir, key)
    store = remote_config.ConfigStore.for_config(base)
    validate = remote_config.validator(conf)
    for settings, why in (({"tracking": {"min_hits": 0}}, "min_hits >= 1"),
                          ({"images": {"crop_max_bytes": 10}}, "images.crop_max_bytes"),
                          ({"cameras": [{"id": "lane 1", "source": "stream", "uri": "rtsp://x"}]}, r"cameras\[0\]\.id"),
                          ({"cameras": [{"id": "lane-2", "source": "stream"}]}, "uri: not set")):
        version = store.state["highest_version"] + 1
        with pytest.raises(ConfigRefused, match=why) as info:
            store.offer(_msg(key, version, settings), validate)
        assert info.value.reason == "invalid"
    assert store.current() is None and store.report().applied_version == 0


def test_no_trusted_key_refuses(tmp_path, pki_dir, key):
    conf, base = _device(tmp_path, pki_dir, key)
    store = remote_config.ConfigStore(tmp_path / "rc", None, "cam-a")
    with pytest.raises(ConfigRefused) as info:
        store.offer(_msg(key, 1, {"tracking": {"min_hits": 2}}), remote_config.validator(conf))
    assert info.value.reason == "no-key"


def test_a_start_that_never_came_up_is_rolled_back_at_the_next(tmp_path, pki_dir, key):
    conf, base = _device(tmp_path, pki_dir, key)
    store = remote_config.ConfigStore.for_config(base)
    validate = remote_config.validator(conf)
    store.offer(_msg(key, 1, {"tracking": {"min_hits": 2}}), validate)
    store.confirm()
    store.offer(_msg(key, 2, {"tracking": {"min_hits": 4}}), validate)
    eff = remote_config.load_for_start(conf, base)  # first start on trial: runs version 2
    assert eff.version == 2 and eff.config.tracking.min_hits == 4 and eff.rolled_back is None
    # ... the process dies before version 2 came up; the next start goes back to version 1
    eff = remote_config.load_for_start(conf, base)
    assert eff.version == 1 and eff.config.tracking.min_hits == 2 and "crashed or killed" in eff.rolled_back
    report = eff.store.report()
    assert (report.state, report.applied_version, report.offered_version) == ("rolled-back", 1, 2)
    folder = base.data_dir / "remote-config"
    assert wire.claimed_version((folder / "failed.msg").read_bytes()) == 2
    # the rolled-back version offered again (the broker's retained copy) is not taken again
    with pytest.raises(ConfigRefused):
        eff.store.offer(_msg(key, 2, {"tracking": {"min_hits": 7}}), validate)


def test_a_stored_config_that_stops_validating_is_rolled_back_at_start(tmp_path, pki_dir, key):
    conf, base = _device(tmp_path, pki_dir, key)
    store = remote_config.ConfigStore.for_config(base)
    store.offer(_msg(key, 1, {"images": {"crop_max_bytes": 40000}}), remote_config.validator(conf))
    store.confirm()
    result = CliRunner().invoke(edge_main, ["config", "check", "--config", str(conf)])
    assert result.exit_code == 0, result.output
    assert "remote configuration version 1 (applied)" in result.output
    # version 2 was accepted under looser rules (an older agent); this agent's rules refuse it
    store.offer(_msg(key, 2, {"sync": {"max_in_flight": 0}}), lambda settings: None)
    store.confirm()
    result = CliRunner().invoke(edge_main, ["config", "check", "--config", str(conf)])
    assert result.exit_code == 78 and "remote configuration version 2 does not validate" in result.output
    assert "sync.max_in_flight" in result.output
    eff = remote_config.load_for_start(conf, base)
    assert eff.version == 1 and eff.config.images.crop_max_bytes == 40000
    assert "version 2 does not validate at start" in eff.rolled_back
    assert (eff.store.report().state, eff.store.report().offered_version) == ("rolled-back", 2)


def test_stored_message_changed_on_disk_is_ignored(tmp_path, pki_dir, key):
    conf, base = _device(tmp_path, pki_dir, key)
    store = remote_config.ConfigStore.for_config(base)
    store.offer(_msg(key, 1, {"tracking": {"min_hits": 2}}), remote_config.validator(conf))
    store.confirm()
    current = base.data_dir / "remote-config" / "current.msg"
    doc = json.loads(current.read_bytes())
    doc["config"] = doc["config"].replace('"min_hits":2', '"min_hits":1')
    current.write_text(json.dumps(doc))  # the agent's account can write its data folder; the key is root's
    eff = remote_config.load_for_start(conf, base)
    assert eff.version == 0 and eff.config.tracking.min_hits == 1 and eff.config == base


def test_config_section_bounds(tmp_path, pki_dir):
    conf = edge_config(tmp_path, pki_dir, 1883, extra="[remote_config]\ntrial_seconds = 1\n")
    with pytest.raises(ConfigError, match="trial_seconds"):
        config_mod.load(conf)
    conf = edge_config(tmp_path, pki_dir, 1883, extra="[remote_config]\npublic_key = \"k.pem\"\n")
    cfg = config_mod.load(conf)
    assert cfg.remote_config.public_key == str(Path(conf).parent / "k.pem")
    assert not cfg.remote_config.allow_broker_address
    assert config_mod.load(edge_config(tmp_path, pki_dir, 1883)).remote_config.public_key == ""


# -- central: targeting, versions, the access log, the key ------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def site(request, tmp_path):
    """A central on each backend (PostgreSQL: a throwaway cluster, conftest.pg_cluster)."""
    from central.governance.users import Role
    from test_enrollment_env import CentralEnv
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pid_file=False, pg_url=url)
    env.add_user("pat", "acme", Role.BUSINESS)
    yield env
    env.close()


def _config_cli(site, *args, as_="ada"):
    from central.cli import main as central_main
    env = {"ALPR_TOKEN": site.tokens[as_] if as_ else None, "ALPR_TOKEN_FILE": None}
    return CliRunner().invoke(central_main, ["device", "config", *args, "--config", str(site.config)], env=env)


def test_push_targets_devices_owners_or_all_with_versions_per_device(site, tmp_path):
    city, shop = site.provisioned("lane-1"), site.provisioned("door", owner="acme")
    # no key yet: said plainly, nothing stored
    result = _config_cli(site, "push", "--all", "--set", "tracking.min_hits=2")
    assert result.exit_code == 1 and "init-key" in result.output
    assert _config_cli(site, "init-key", as_=None).exit_code == 0
    assert _config_cli(site, "push", "--all", "--device", city, "--set", "tracking.min_hits=2").exit_code == 2
    assert _config_cli(site, "push", "--all").exit_code == 2  # no settings
    result = _config_cli(site, "push", "--all", "--set", "tracking.min_hits=2", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(map(json.loads, result.output.splitlines()), key=lambda d: d["device_id"]) == sorted(
        [{"device_id": city, "version": 1}, {"device_id": shop, "version": 1}], key=lambda d: d["device_id"])
    assert _config_cli(site, "push", "--device", city, "--set", "buffer.max_age_days=30").exit_code == 0
    result = _config_cli(site, "push", "--owner", "acme", "--set", 'images.context=true', "--json")
    assert [json.loads(x) for x in result.output.splitlines()] == [{"device_id": shop, "version": 2}]
    rows = {d["device_id"]: d for d in map(json.loads, _config_cli(site, "status", "--json", as_="tech")
                                           .output.splitlines())}
    assert (rows[city]["latest_version"], rows[shop]["latest_version"]) == (2, 2)
    assert rows[city]["pushed_by"] == "ada" and rows[city]["applied_version"] is None
    assert not rows[city]["published"] and not rows[city]["in_sync"]
    # a business sees its own device's state only
    result = _config_cli(site, "status", "--json", as_="pat")
    assert [json.loads(x)["device_id"] for x in result.output.splitlines()] == [shop]
    assert _config_cli(site, "status", city, as_="pat").exit_code == 1
    assert _config_cli(site, "status", as_="otto").exit_code == 1  # an operator sees no devices
    # every push is one access-log entry; the messages verify and carry their device and version
    from edge_agent.wire.devconfig import load_public_key, open_config
    store = site.store()
    try:
        pushes = store.db.execute("SELECT detail FROM audit_log WHERE action = 'device-config-push'").fetchall()
        assert [json.loads(d)["keys"] for (d,) in pushes] == [["tracking.min_hits"], ["buffer.max_age_days"],
                                                             ["images.context"]]
        pub = load_public_key((site.data / "config-signing" / "config-key.pub.pem").read_bytes())
        msg = store.db.execute("SELECT message FROM device_configs WHERE device_id = ? AND version = 2",
                               [city]).fetchone()[0]
        assert open_config(bytes(msg), pub, city).settings == {"buffer": {"max_age_days": 30}}
    finally:
        store.close()


def test_the_config_key_is_kept_apart(tmp_path):
    from central.errors import RemoteConfigError
    from central.fleet.remote_config import init_key, load_key
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "data-key.pem").write_text("x")
    with pytest.raises(RemoteConfigError, match="already holds other keys"):
        init_key(tmp_path / "keys" / "config-key.pem")
    private, public, kid = init_key(tmp_path / "own" / "config-key.pem")
    assert oct(private.stat().st_mode & 0o777) == "0o600" and public.name == "config-key.pub.pem"
    with pytest.raises(RemoteConfigError, match="refusing to overwrite"):
        init_key(private)
    os.chmod(private, 0o644)
    with pytest.raises(RemoteConfigError, match="readable by others"):
        load_key(private)


def test_the_acl_lets_only_collectors_publish_configurations():
    from central.fleet.broker import acl_text
    text = acl_text(devices=["cam-a"])
    assert "topic read alpr/v1/devices/cam-a/config\n" in text
    assert "topic write alpr/v1/devices/cam-a/config-state\n" in text
    assert "topic write alpr/v1/devices/+/config\n" in text and "topic read alpr/v1/devices/+/config-state" in text
    assert "topic write alpr/v1/devices/cam-a/config\n" not in text
    pattern = acl_text()
    assert "pattern read alpr/v1/devices/%u/config\n" in pattern
    assert "pattern write alpr/v1/devices/%u/config-state\n" in pattern


def test_during_a_trial_a_refusal_keeps_the_trial_and_a_newer_keeps_the_last_good_to_return_to(tmp_path, pki_dir,
                                                                                                key):
    conf, base = _device(tmp_path, pki_dir, key)
    store = remote_config.ConfigStore.for_config(base)
    validate = remote_config.validator(conf)
    store.offer(_msg(key, 1, {"tracking": {"min_hits": 2}}), validate)
    store.confirm()                                           # version 1 came up
    store.offer(_msg(key, 2, {"tracking": {"min_hits": 3}}), validate)  # on trial
    with pytest.raises(ConfigRefused):
        store.offer(json.dumps({**json.loads(_msg(key, 3, {"tracking": {"min_hits": 4}})), "signature": ""})
                    .encode(), validate)
    assert store.in_trial and store.report().state == "refused"
    store.offer(_msg(key, 4, {"tracking": {"min_hits": 5}}), validate)  # another one before 2 came up
    store.rollback("version 4 did not come up")
    assert store.current().version == 1                      # the last one that came up, not version 2
    assert (store.report().applied_version, store.report().offered_version) == (1, 4)
    assert not store.in_trial


def test_central_config_check_checks_the_configuration_key(site):
    from central.cli import main as central_main
    check = lambda: CliRunner().invoke(central_main, ["config", "check", "--config", str(site.config)])  # noqa: E731
    assert check().exit_code == 0  # no key yet: remote configuration is optional
    assert _config_cli(site, "init-key", as_=None).exit_code == 0
    assert check().exit_code == 0
    key = site.data / "config-signing" / "config-key.pem"
    os.chmod(key, 0o640)
    result = check()
    assert result.exit_code == 78 and "remote_config.signing_key" in result.output and "chmod 600" in result.output
