"""The device registry through ``alpr-central device | enroll | broker``:
life cycle, the ACL and CRL generated from it, config errors, and the
collector's registry check."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509

from central.ingest.collector import Collector
from central.ingest.keys import load_opener
from edge_agent.wire import PlateRead, Sealer, encode_batch, encode_read, load_public_key, new_read_id
from test_enrollment_env import CentralEnv


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    """A whole central on each backend (PostgreSQL: a throwaway cluster's database)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pid_file=False, pg_url=url)
    yield env
    env.close()


def _acl(central) -> str:
    return (central.data / "broker" / "acl").read_text()


def _crl_serials(central) -> set[str]:
    crl = x509.load_pem_x509_crl((central.data / "broker" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(central.ca.cert.public_key())
    return {format(r.serial_number, "x") for r in crl}


def test_device_life_cycle_drives_the_broker_acl_and_crl(central):
    a, b = central.provisioned("lane-1"), central.provisioned("lane-1", "lane-2:device")
    result = central.cli("broker", "config")
    assert result.exit_code == 0, result.output
    conf = (central.data / "broker" / "mosquitto.conf").read_text()
    for line in ("require_certificate true", "use_identity_as_username true", "allow_anonymous false",
                 f"crlfile {central.data / 'broker' / 'crl.pem'}"):
        assert line in conf.splitlines()
    assert "pattern" not in _acl(central)
    assert f"user {a}" in _acl(central) and f"topic write alpr/v1/devices/{b}/reads" in _acl(central)

    listed = [json.loads(line) for line in central.cli("device", "list", "--json").output.splitlines()]
    assert {(d["device_id"], d["status"], d["owner"]) for d in listed} == {(a, "active", "department"),
                                                                          (b, "active", "department")}
    result = central.cli("device", "suspend", a, "--reason", "maintenance", as_="tech")
    assert result.exit_code == 0 and "reload the broker now" in result.output
    assert f"user {a}" not in _acl(central) and f"user {b}" in _acl(central)
    assert central.cli("device", "resume", a, as_="tech").exit_code == 0
    assert f"user {a}" in _acl(central)

    serial = central.registry().device(a).cert_serial
    refused = central.cli("device", "revoke", a, "--reason", "stolen", as_="tech")  # revocation: admin only
    assert refused.exit_code == 1 and "may not revoke devices" in refused.output, refused.output
    assert f"user {a}" in _acl(central)
    result = central.cli("device", "revoke", a, "--reason", "stolen")
    assert result.exit_code == 0, result.output
    assert f"user {a}" not in _acl(central) and serial in _crl_serials(central)
    assert serial not in {central.registry().device(b).cert_serial} and len(_crl_serials(central)) == 1

    final = central.cli("device", "resume", a)
    assert final.exit_code == 1 and "final" in final.output
    again = central.cli("enroll", "create", "--camera", "lane-1", "--device", a)
    assert again.exit_code == 1 and "revoked" in again.output
    shown = json.loads(central.cli("device", "show", a, "--json").output)
    assert [e["action"] for e in shown["events"]] == ["enroll-create", "provision", "device-suspended",
                                                      "device-active", "device-revoked"]
    assert [e["actor"] for e in shown["events"]] == ["tech", f"device:{a}", "tech", "tech", "ada"]
    assert isinstance(shown["events"][-1]["detail"], dict)        # real JSON, not JSON in a string
    assert "stolen" in json.dumps(shown["events"][-1]["detail"])
    human = central.cli("device", "show", a).output                 # words: no reprs, no braces, no None
    assert f"device id            {a}" in human and "history" in human and "device-revoked" in human
    assert not any(bad in human for bad in ("None", "['", "{", "}")), human


def test_a_pending_device_cannot_be_resumed_and_unknown_ids_are_errors(central):
    result = central.cli("enroll", "create", "--camera", "lane-1", "--device", "gate-7", "--json")
    assert result.exit_code == 0
    token = json.loads(result.output)["token"]
    listed = central.cli("enroll", "list").output
    assert "gate-7" in listed and token.split(".")[2] not in listed  # ids only, never the secret
    resumed = central.cli("device", "resume", "gate-7")
    assert resumed.exit_code == 1 and "never been provisioned" in resumed.output
    missing = central.cli("device", "revoke", "nope", "--reason", "x")
    assert missing.exit_code == 1 and "no device 'nope'" in missing.output


@pytest.mark.parametrize("args, code, message", [
    (["--camera", "lane-1", "--expires", "soon"], 2, "30m, 24h, 2d"),
    (["--camera", "lane-1", "--expires", "30d"], 2, "at most 72h"),
    (["--camera", "Lane 1"], 1, "lower-case"),
    (["--camera", "lane-1:ftp"], 1, "source must be"),
    (["--camera", "lane-1", "--camera", "lane-1"], 1, "unique"),
    (["--camera", "lane-1", "--owner", "acme"], 1, "no business 'acme'"),
    (["--camera", "lane-1", "--device", "Bad_ID"], 1, "device id"),
    # "$" matched before a final newline: the id reached the ACL as two lines and
    # Mosquitto ran with no ACL at all (any device could publish as any other)
    (["--camera", "lane-1", "--device", "gate-7\n"], 1, "device id"),
    (["--camera", "lane-1\n"], 1, "lower-case"),
])
def test_enroll_create_refuses_bad_requests(central, args, code, message):
    result = central.cli("enroll", "create", *args)
    assert result.exit_code == code and message in result.output, result.output


@pytest.mark.parametrize("table, line, message", [
    ("ca", "device_cert_days = 0", "ca.device_cert_days"),
    ("enrollment", "prot = 1", "enrollment.prot: unknown key"),
    ("broker", "dir = 5", "broker.dir: expected a string"),
    ("enrollment", "max_token_hours = 10000", "enrollment.max_token_hours"),
])
def test_config_errors_exit_78_naming_the_key(central, table, line, message):
    text = central.config.read_text()
    header = f"[{table}]\n"
    text = text.replace(header, header + line + "\n") if header in text else text + header + line + "\n"
    central.config.write_text(text)
    result = central.cli("device", "list")
    assert result.exit_code == 78 and message in result.output, result.output


def test_the_collector_stores_only_active_devices_and_the_check_is_cached_briefly(central):
    a = central.provisioned("lane-1")
    store = central.store()
    registry = central.registry()
    now = [0.0]
    collector = Collector(store, load_opener([central.data / "data-key.pem"]),
                          device_allowed=registry.allow_list(ttl=5.0, monotonic=lambda: now[0]))
    sealer_pub = load_public_key((central.data / "data-key.pub.pem").read_bytes())

    def message(device):
        read = PlateRead(new_read_id(), device, "lane-1", dt.datetime.now(dt.timezone.utc), "ABC123", 0.9,
                         (1, 1, 1, 1))
        return (f"alpr/v1/devices/{device}/reads",
                encode_batch(new_read_id(), [Sealer(sealer_pub, device).seal(read.read_id, encode_read(read))]))

    assert collector.handle(*message(a)) is not None and store.count() == 1
    assert collector.handle(*message("never-enrolled")) is None
    registry.set_status(a, "suspended", user=central.user("tech"))
    now[0] = 4.0   # within the cache window the old answer stands ...
    assert collector.handle(*message(a)) is not None and store.count() == 2
    now[0] = 5.5   # ... and after it, the registry's
    assert collector.handle(*message(a)) is None and store.count() == 2
    assert collector.counters["rejected.unknown-device"] == 2
    registry.close()
    store.close()


def test_a_resume_racing_a_revoke_never_undoes_it(central, monkeypatch):
    """The resume's checks ran before its write transaction: a revoke committed
    in between was overwritten (the device active again with a revoked certificate)."""
    import central.fleet.registry as registry_mod

    device = central.provisioned("lane-1")
    tech = central.registry()
    assert tech.set_status(device, "suspended", user=central.user("tech")).status == "suspended"
    stale = tech.device(device)  # what the resume's checks read ...
    central.registry().set_status(device, "revoked", user=central.user(), reason="stolen")  # ... then this commits
    monkeypatch.setattr(registry_mod.Registry, "device", lambda self, device_id: stale)
    with pytest.raises(registry_mod.RegistryError, match="revoked or its business withdrew"):
        tech.set_status(device, "active", user=central.user("tech"))
    monkeypatch.undo()
    assert central.registry().device(device).status == "revoked"
