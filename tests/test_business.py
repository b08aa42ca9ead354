"""Private businesses: enrollment under an agreement (MOU, admin only),
cameras under that owner, business users (role business, organization = the
business id) who see only their own devices' health (never reads), and
withdrawal that suspends its devices and disables its users while stored reads
stay under retention."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl

import pytest

from central.governance.users import Role
from edge_agent.wire import PlateRead, new_read_id
from test_enrollment_env import CentralEnv

MOU = ["--contact-name", "Pat Owner", "--contact-email", "pat@acme.example", "--contact-phone", "555-0100",
       "--mou", "MOU-2026-014", "--shares", "plate reads and crops", "--share-with",
       "CA public agencies with an agreement", "--retention-days", "60", "--consent-date", "2026-11-01"]


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    """A whole central on each backend (PostgreSQL: a throwaway cluster's database)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    env = CentralEnv(tmp_path / "site", pid_file=False, pg_url=url)
    yield env
    env.close()


def _enroll(central, business_id, name="Acme Market"):
    result = central.cli("business", "enroll", "--id", business_id, "--name", name, *MOU)
    assert result.exit_code == 0, result.output
    return result


def _health(central, credential, path="/v1/health"):
    ctx = ssl.create_default_context(cafile=str(central.data / "ca" / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", central.enroll_port, context=ctx, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {credential}"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_business_enrollment_records_the_agreement(central):
    _enroll(central, "acme-market")
    doc = json.loads(central.cli("business", "list", "--json").output)
    assert doc["business_id"] == "acme-market" and doc["status"] == "active" and doc["mou_id"] == "MOU-2026-014"
    assert doc["terms"] == {"shared_data": "plate reads and crops",
                            "share_with": "CA public agencies with an agreement", "retention_days": 60}
    assert doc["contact"]["email"] == "pat@acme.example" and doc["consent_at"].startswith("2026-11-01")
    assert doc["enrolled_by"] == "ada"
    dup = central.cli("business", "enroll", "--id", "acme-market", "--name", "Acme", *MOU)
    assert dup.exit_code == 1 and "already enrolled" in dup.output


@pytest.mark.parametrize("change, message", [
    (("--contact-email", "not-an-address"), "not an e-mail"),
    (("--retention-days", "0"), "retention days"),
    (("--consent-date", "2999-01-01"), "not in the future"),
    (("--consent-date", "yesterday"), "ISO 8601"),
])
def test_business_enrollment_validates_its_terms(central, change, message):
    args = list(MOU)
    i = args.index(change[0])
    args[i + 1] = change[1]
    result = central.cli("business", "enroll", "--id", "acme", "--name", "Acme", *args)
    assert result.exit_code in (1, 2) and message in result.output, result.output


def test_a_business_user_sees_only_its_own_devices_health_never_reads(central):
    _enroll(central, "acme-market")
    _enroll(central, "bobs-garage", "Bob's Garage")
    mine = central.provisioned("door-1", owner="acme-market")
    theirs = central.provisioned("lot-1", owner="bobs-garage")
    dept = central.provisioned("lane-1")
    store = central.store()
    now = dt.datetime.now(dt.timezone.utc)
    store.add_reads([PlateRead(new_read_id(), mine, "door-1", now, "SECRET1", 0.9, (1, 1, 1, 1)),
                     PlateRead(new_read_id(), theirs, "lot-1", now, "SECRET2", 0.9, (1, 1, 1, 1))], now)
    store.close()
    result = central.cli("user", "add", "pat", "--organization", "acme-market", "--role", "business",
                         "--token-out", str(central.root / "pat.token"))
    assert result.exit_code == 0, result.output
    credential = central.tokens["pat"] = (central.root / "pat.token").read_text().strip()
    central.start_enrollment()
    status, body = _health(central, credential)
    assert status == 200, body
    doc = json.loads(body)
    assert doc["business_id"] == "acme-market"
    assert [d["device_id"] for d in doc["devices"]] == [mine]
    assert doc["devices"][0]["status"] == "active" and doc["devices"][0]["reads_last_24h"] == 1
    assert doc["devices"][0]["last_read_at"] and doc["devices"][0]["certificate_expires"]
    assert b"SECRET" not in body and theirs.encode() not in body and dept.encode() not in body
    staff_view = [json.loads(line) for line in central.cli("business", "health", "acme-market", "--json",
                                                           as_="audrey").output.splitlines()]
    assert [(h["device_id"], h["reads_last_24h"]) for h in staff_view] == [(mine, 1)]
    own_view = [json.loads(line) for line in central.cli("business", "health", "--json", as_="pat").output
                .splitlines()]
    assert own_view == staff_view
    for bad in ("", credential[:-1] + ("A" if credential[-1] != "A" else "B"), "alprb1.x.y", "Basic abc"):
        assert _health(central, bad)[0] == 401
    # someone else's business, the department, and staff without a health permission: refused
    for path in ("/v1/health?owner=bobs-garage", "/v1/health?owner=department", "/v1/health?owner=nope"):
        status, body = _health(central, credential, path)
        assert status == 403 and theirs.encode() not in body, body
    assert _health(central, central.tokens["otto"])[0] == 403
    audit = json.loads(_health(central, central.tokens["audrey"], "/v1/health?owner=bobs-garage")[1])
    assert [d["device_id"] for d in audit["devices"]] == [theirs]
    for args in (("business", "health", "bobs-garage"), ("device", "show", theirs), ("device", "show", "nope"),
                 ("device", "list", "--owner", "department"), ("business", "list")):
        refused = central.cli(*args, as_="pat")
        assert refused.exit_code == 1 and "may" in refused.output and theirs not in refused.output, refused.output
    listed = central.cli("device", "list", "--json", as_="pat")
    assert [json.loads(line)["device_id"] for line in listed.output.splitlines()] == [mine]
    assert central.cli("business", "health", "acme-market", as_="otto").exit_code == 1  # no health permission
    assert central.cli("business", "health", "acme-market", as_="tech").exit_code == 0  # field techs: whole fleet


def test_withdrawal_suspends_devices_and_disables_its_users_but_keeps_stored_reads(central):
    _enroll(central, "acme-market")
    device = central.provisioned("door-1", owner="acme-market")
    dept = central.provisioned("lane-1")
    store = central.store()
    now = dt.datetime.now(dt.timezone.utc)
    store.add_reads([PlateRead(new_read_id(), device, "door-1", now, "ABC123", 0.9, (1, 1, 1, 1))], now)
    credential = central.add_user("pat", "acme-market", Role.BUSINESS)
    central.add_user("other", "bobs-garage", Role.BUSINESS)
    pending = central.cli("enroll", "create", "--owner", "acme-market", "--camera", "door-2", "--json")
    pending_id = json.loads(pending.output)["device_id"]

    for who in ("tech", "other", "audrey"):  # agreements are the admin's (and each business's own consent)
        refused = central.cli("business", "withdraw", "acme-market", as_=who)
        assert refused.exit_code == 1 and "may not enroll businesses or change their agreements" in refused.output, refused.output
    result = central.cli("business", "withdraw", "acme-market")
    assert result.exit_code == 0, result.output
    assert device in result.output
    reg = central.registry()
    assert reg.device(device).status == "suspended" and reg.device(pending_id).status == "suspended"
    assert reg.device(dept).status == "active"
    assert reg.pending_tokens(central.user()) == []        # its outstanding tokens died with the agreement
    assert reg.business("acme-market").status == "withdrawn"
    assert central.user("pat").disabled and not central.user("other").disabled
    reg.close()
    acl = (central.data / "broker" / "acl").read_text()
    assert f"user {device}" not in acl and f"user {dept}" in acl
    assert store.count() == 1                 # stored reads follow the retention policy, not the withdrawal
    store.close()
    central.start_enrollment()
    assert _health(central, credential)[0] == 401
    refused = central.cli("enroll", "create", "--owner", "acme-market", "--camera", "door-3")
    assert refused.exit_code == 1 and "withdrawn" in refused.output
    resumed = central.cli("device", "resume", device)
    assert resumed.exit_code == 1 and "withdrawn" in resumed.output
    again = central.cli("business", "withdraw", "acme-market")
    assert again.exit_code == 1 and "already withdrawn" in again.output


def test_a_device_s_read_activity_comes_from_its_cameras_newest_reads(central):
    """The fleet pages' last read and reads in the last 24 h (index seeks per
    camera, no scan of the device's reads): the newest read over every camera,
    when central stored it, and the reads captured in the last 24 hours."""
    from central.fleet.activity import read_activity
    device = central.provisioned("door-1", "door-2", owner="department")
    other = central.provisioned("door-1")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    hour = dt.timedelta(hours=1)

    def read(camera, age, dev=device):
        return PlateRead(new_read_id(), dev, camera, now - age, "7ABC123", 0.9, (1, 1, 1, 1))

    store = central.store()
    try:
        store.add_reads([read("door-1", 30 * hour), read("door-1", 26 * hour)], now - 25 * hour)
        store.add_reads([read("door-1", 5 * hour), read("door-1", hour), read("door-2", 23 * hour)], now - hour)
        newest = read("door-2", dt.timedelta(minutes=10))
        store.add_reads([newest, read("door-1", dt.timedelta(minutes=1), dev=other)], now - 2 * hour)
    finally:
        store.close()
    reg = central.registry()
    try:
        activity = read_activity(reg.db, reg.device(device), now)
        quiet = read_activity(reg.db, reg.device(central.provisioned("lane-9")), now)
    finally:
        reg.close()
    assert activity.last_captured_at == newest.captured_at
    assert activity.last_stored_at == now - 2 * hour      # when central stored the newest read
    assert activity.reads_last_24h == 4                   # 5 h, 1 h, 23 h and 10 min ago; not 26 h or 30 h
    assert (quiet.last_captured_at, quiet.last_stored_at, quiet.reads_last_24h) == (None, None, 0)
