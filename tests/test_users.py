"""Users and roles: named accounts, hashed tokens, roles enforced in the
library, disabled and inactive accounts."""

from __future__ import annotations

import datetime as dt

import pytest

from central.errors import AuthenticationError, PermissionDenied, PolicyError
from central.governance.search import search
from central.store import Search
from central.governance.users import Permission, Role, User, UserDirectory, require, require_device_access
from test_governance_support import PURPOSES, T0, world  # noqa: F401


def test_bootstrap_only_on_an_empty_user_table(world):
    with pytest.raises(PolicyError, match="bootstrap only works on an empty user table"):
        world.users.bootstrap("mallory", "Evil Corp")


def test_tokens_authenticate_and_are_stored_hashed(world):
    token = world.tokens["otto"]
    user = world.users.authenticate(token)
    assert (user.name, user.role) == ("otto", Role.OPERATOR)
    stored = [r[0] for r in world.conn.execute("SELECT token_sha256 FROM user_tokens")]
    assert token not in stored and all(len(s) == 64 for s in stored)
    for bad in (None, "", "alpr_nope", token + "x", token[:-1]):
        with pytest.raises(AuthenticationError, match="authentication failed"):
            world.users.authenticate(bad)


def test_a_new_token_revokes_the_old_one(world):
    old = world.tokens["otto"]
    new = world.users.new_token(world.operator, "otto")
    assert world.users.authenticate(new).name == "otto"
    with pytest.raises(AuthenticationError):
        world.users.authenticate(old)
    with pytest.raises(PermissionDenied):  # an operator cannot mint tokens for others
        world.users.new_token(world.operator, "sue")


def test_disabled_accounts_cannot_authenticate_or_act(world):
    world.users.set_disabled(world.admin, "otto", True)
    with pytest.raises(AuthenticationError):
        world.users.authenticate(world.tokens["otto"])
    disabled = world.users.get("otto")
    with pytest.raises(PermissionDenied, match="disabled"):
        require(disabled, Permission.SEARCH)
    with pytest.raises(PolicyError, match="own account"):
        world.users.set_disabled(world.admin, "ada", True)
    world.users.set_disabled(world.admin, "otto", False)
    with pytest.raises(AuthenticationError):  # tokens stay revoked; a new one is needed
        world.users.authenticate(world.tokens["otto"])


@pytest.mark.parametrize("role,allowed", [
    (Role.ADMIN, {Permission.MANAGE_USERS, Permission.RUN_PURGE, Permission.READ_AUDIT}),
    (Role.OPERATOR, {Permission.SEARCH, Permission.REQUEST_SHARE}),
    (Role.SUPERVISOR, {Permission.SEARCH, Permission.APPROVE_SHARE, Permission.APPROVE_HOLD}),
    (Role.AUDITOR, {Permission.READ_AUDIT, Permission.READ_REPORTS}),
    (Role.FIELD_TECH, {Permission.ENROLL, Permission.DEVICE_HEALTH_ALL}),
    (Role.BUSINESS, {Permission.DEVICE_HEALTH_OWN}),
])
def test_roles_grant_what_they_should_and_nothing_else(role, allowed):
    user = User("someone", "Org", role)
    for p in allowed:
        assert require(user, p) is user
    forbidden = {Permission.SEARCH, Permission.APPROVE_SHARE, Permission.MANAGE_USERS} - allowed
    for p in forbidden:
        with pytest.raises(PermissionDenied):
            require(user, p)


def test_admin_cannot_search_plates_and_business_cannot_read_plates(world):
    world.add_read("7ABC123", T0)
    for who in (world.admin, world.business, world.tech, world.auditor):
        with pytest.raises(PermissionDenied):
            search(world.store, Search(plate="7ABC123"), user=who, purpose="stolen-vehicle", case_number="C-1",
                   purposes=PURPOSES)
    refused = [e for e in world.users.log.entries(action="search-refused")]
    assert [e.user for e in refused] == ["ada", "bob", "tech", "audrey"] and all(e.result_count == 0 for e in refused)


def test_business_sees_only_its_own_devices(world):
    assert require_device_access(world.business, "Bob's Garage")
    with pytest.raises(PermissionDenied, match="only see devices of Bob's Garage"):
        require_device_access(world.business, "City PD")
    assert require_device_access(world.auditor, "City PD")
    with pytest.raises(PermissionDenied):
        require_device_access(world.operator, "City PD")


def test_inactive_accounts_are_reported(world):
    world.clock.now = T0 + dt.timedelta(days=100)
    world.users.authenticate(world.tokens["sue"])
    names = {u.name for u in world.users.inactive(world.auditor, days=90)}
    assert "sue" not in names and {"otto", "sam", "bob"} <= names
    with pytest.raises(PermissionDenied):
        world.users.inactive(world.operator)


def test_bad_names_roles_and_duplicates_are_refused(world):
    for name in ("", "A", "shared account", "x" * 70):
        with pytest.raises(PolicyError):
            world.users.add(world.admin, name, "City PD", Role.OPERATOR)
    with pytest.raises(PolicyError, match="exists already"):
        world.users.add(world.admin, "otto", "City PD", Role.OPERATOR)
    with pytest.raises(PolicyError, match="unknown role"):
        world.users.add(world.admin, "zed", "City PD", "root")
    with pytest.raises(PermissionDenied):
        world.users.add(world.supervisor, "zed", "City PD", Role.ADMIN)


def test_user_management_is_in_the_access_log(world):
    actions = [(e.user, e.action, e.detail.get("user")) for e in world.users.log.entries()]
    assert actions[0] == ("ada", "user-bootstrap", "ada")
    assert ("ada", "user-add", "bob") in actions


def test_fresh_directory_on_the_same_db_sees_the_users(world):
    other = UserDirectory(world.conn)
    assert other.authenticate(world.tokens["audrey"]).role is Role.AUDITOR
