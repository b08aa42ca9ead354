"""Device, enrollment and business actions run as authenticated named users
whose roles the registry itself checks: who may enroll, suspend, revoke and
sign agreements, who sees which devices' health, and that every action lands
in the hash-chained access log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from central.governance.audit import AccessLog, verify
from central.errors import AuthenticationError, PermissionDenied
from central.fleet.registry import CameraSpec, Terms
from central.governance.users import Role, UserDirectory
from edge_agent.provision import new_key_and_csr
from test_enrollment_env import CentralEnv

CAMS = [CameraSpec("lane-1", "file")]
HOUR = dt.timedelta(hours=1)
TERMS = Terms("plate reads", "CA public agencies with an agreement", 60)


@pytest.fixture
def central(tmp_path):
    env = CentralEnv(tmp_path / "site", pid_file=False)
    registry = env.registry()
    try:   # pat's business, enrolled first: an account of role business needs one
        _business(registry, env)
    finally:
        registry.close()
    env.add_user("pat", "acme", Role.BUSINESS)
    yield env
    env.close()


@pytest.fixture
def reg(central):
    registry = central.registry()
    yield registry
    registry.close()


def _business(reg, central, business_id="acme"):
    return reg.enroll_business(business_id, name="Acme", contact_name="Pat", contact_email="pat@acme.example",
                               contact_phone="", mou_id="MOU-1", terms=TERMS,
                               consent_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), user=central.user())


def _device_count(reg) -> int:
    return reg.db.execute("SELECT count(*) FROM devices").fetchone()[0]


@pytest.mark.parametrize("who", ["otto", "sue", "audrey", "pat"])
def test_only_admins_and_field_techs_create_enrollments(central, reg, who):
    with pytest.raises(PermissionDenied, match="may not enroll devices"):
        reg.create_enrollment(owner="department", cameras=CAMS, location="x", ttl=HOUR, user=central.user(who))
    assert _device_count(reg) == 0  # a refused action leaves nothing behind
    for allowed in ("tech", "ada"):
        new = reg.create_enrollment(owner="department", cameras=CAMS, location="x", ttl=HOUR,
                                    user=central.user(allowed))
        assert new.device.enrolled_by == allowed


def test_a_field_tech_suspends_and_resumes_but_only_an_admin_revokes(central, reg):
    device_id = central.provisioned("lane-1")
    tech = central.user("tech")
    assert reg.set_status(device_id, "suspended", user=tech, reason="lens cleaning").status == "suspended"
    assert reg.set_status(device_id, "active", user=tech).status == "active"
    for who in ("tech", "otto", "sue", "audrey", "pat"):
        with pytest.raises(PermissionDenied, match="may not revoke devices"):
            reg.set_status(device_id, "revoked", user=central.user(who), reason="stolen")
    for who in ("otto", "audrey", "pat"):
        with pytest.raises(PermissionDenied):
            reg.set_status(device_id, "suspended", user=central.user(who))
    assert reg.device(device_id).status == "active"
    assert reg.set_status(device_id, "revoked", user=central.user(), reason="stolen").status == "revoked"


def test_only_an_admin_signs_and_ends_business_agreements(central, reg):
    for who in ("tech", "otto", "sue", "audrey", "pat"):
        with pytest.raises(PermissionDenied, match="may not enroll businesses or change their agreements"):
            reg.enroll_business("acme", name="Acme", contact_name="Pat", contact_email="pat@acme.example",
                                contact_phone="", mou_id="MOU-1", terms=TERMS,
                                consent_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), user=central.user(who))
    assert reg.db.execute("SELECT business_id FROM businesses").fetchall() == [("acme",)]  # the fixture's
    _business(reg, central, "other")
    for who in ("tech", "otto", "sue", "audrey"):
        with pytest.raises(PermissionDenied):
            reg.withdraw_business("acme", user=central.user(who))
    with pytest.raises(PermissionDenied):   # a business user withdraws only its own business
        reg.withdraw_business("other", user=central.user("pat"))
    assert reg.withdraw_business("other", user=central.user()) == []


def test_a_business_user_withdraws_its_own_consent(central, reg):
    assert reg.withdraw_business("acme", user=central.user("pat")) == []
    assert reg.business("acme").status == "withdrawn"
    assert UserDirectory(reg.db).get("pat").disabled   # its logins end with it


def test_a_disabled_or_unauthenticated_user_is_refused(central, reg):
    tech = central.user("tech")        # authenticated earlier ...
    store_users = UserDirectory(reg.db)
    store_users.set_disabled(central.user(), "tech", True)   # ... and disabled since
    assert not tech.disabled
    with pytest.raises(PermissionDenied, match="disabled"):
        reg.create_enrollment(owner="department", cameras=CAMS, location="x", ttl=HOUR, user=tech)
    with pytest.raises(AuthenticationError):
        reg.authenticate(central.tokens["tech"])
    with pytest.raises(PermissionDenied, match="authenticated user"):
        reg.create_enrollment(owner="department", cameras=CAMS, location="x", ttl=HOUR, user="ada")
    forged = dataclasses.replace(central.user("otto"), role=Role.ADMIN)  # a User object the database disagrees with
    with pytest.raises(PermissionDenied, match="otto \\(an operator\\) may not"):
        reg.create_enrollment(owner="department", cameras=CAMS, location="x", ttl=HOUR, user=forged)
    assert _device_count(reg) == 0
    result = central.cli("enroll", "create", "--camera", "lane-1", as_=None)
    assert result.exit_code == 1 and "authentication failed" in result.output
    result = central.cli("device", "list", as_="tech")
    assert result.exit_code == 1 and "authentication failed" in result.output


def test_a_business_user_sees_its_own_devices_health_only(central, reg):
    _business(reg, central, "bobs")
    mine = central.provisioned("door-1", owner="acme")
    central.provisioned("lot-1", owner="bobs")
    dept = central.provisioned("lane-1")
    pat = central.user("pat")
    assert [h.device_id for h in reg.health(pat)] == [mine]
    assert [d.device_id for d in reg.list_devices(pat)] == [mine]
    assert reg.show_device(pat, mine)[0].device_id == mine
    for call in (lambda: reg.health(pat, "bobs"), lambda: reg.health(pat, "department"),
                 lambda: reg.list_devices(pat, owner="department"), lambda: reg.show_device(pat, dept),
                 lambda: reg.businesses(pat), lambda: reg.pending_tokens(pat)):
        with pytest.raises(PermissionDenied):
            call()
    auditor = central.user("audrey")
    assert {d.device_id for d in reg.list_devices(auditor)} == {mine, dept} | {d.device_id for d in
                                                                               reg.devices(owner="bobs")}
    assert [h.device_id for h in reg.health(auditor, "department")] == [dept]
    for who in ("otto", "sue"):
        with pytest.raises(PermissionDenied):
            reg.list_devices(central.user(who))
    # a field tech keeps the whole fleet running: every device's health
    assert {d.device_id for d in reg.list_devices(central.user("tech"))} == {d.device_id for d in reg.devices()}


def test_every_action_lands_in_the_access_log_and_the_chain_verifies(central):
    central.cli("business", "enroll", "--id", "acme-2", "--name", "Acme 2", "--contact-name", "Pat",
                "--contact-email", "pat@acme.example", "--mou", "MOU-1", "--shares", "plate reads",
                "--share-with", "CA public agencies", "--retention-days", "60", "--consent-date", "2026-01-01")
    token, device_id = central.token("lane-1:file")
    reg = central.registry()
    pending = reg.pending_tokens(central.user())[0]
    reg.redeem(pending["token_id"], token.split(".")[2], new_key_and_csr()[1], central.ca)
    reg.close()
    assert central.cli("device", "suspend", device_id, "--reason", "maintenance", as_="tech").exit_code == 0
    assert central.cli("device", "revoke", device_id, "--reason", "stolen", as_="tech").exit_code == 1
    assert central.cli("device", "revoke", device_id, "--reason", "stolen").exit_code == 0
    assert central.cli("business", "withdraw", "acme-2").exit_code == 0

    reg = central.registry()
    entries = [(e.user, e.organization, e.action, e.detail.get("subject"))
               for e in AccessLog(reg.db).entries() if not e.action.startswith(("user-", "token-"))]
    assert entries == [("ada", "City PD", "business-enroll", "acme"),     # the fixture's
                       ("ada", "City PD", "business-enroll", "acme-2"),
                       ("tech", "City PD", "enroll-create", device_id),
                       (f"device:{device_id}", "department", "provision", device_id),
                       ("tech", "City PD", "device-suspended", device_id),
                       ("ada", "City PD", "device-revoked", device_id),
                       ("ada", "City PD", "business-withdraw", "acme-2")]
    assert verify(reg.db).ok
    reg.close()
    result = central.cli("audit", "verify", "--json", as_="audrey")
    assert result.exit_code == 0 and json.loads(result.output)["ok"], result.output
