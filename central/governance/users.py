"""Users, roles and authentication.

Every action at central runs as an authenticated, named :class:`User`; there
are no shared accounts. A user authenticates with a personal API token
(``alpr_`` + 256 random bits) that is shown once and stored only as its
SHA-256 (a token is random, not a password, so a fast hash is enough; nobody
can guess one). Library functions take the ``User`` and check its role with
:func:`require`, so the rules hold whatever front end calls them.

Roles and what they may do (least privilege: the admin manages accounts and
agreements but cannot search plates or approve sharing):

========== ==============================================================
admin      manage users, agreements (incl. business MOUs) and hotlists; run purges;
           read logs; enroll, suspend and revoke devices; review accounts (sees no hits)
operator   search; enter sharing requests; request legal holds; see and verify hits
supervisor search; approve/deny sharing and legal holds; export bundles; manage
           hotlists; see and verify hits; review accounts
auditor    read-only: access log, device logs, reports, recipients, accounts, hotlists, hits
field-tech enroll devices; suspend and resume them (not revoke); every device's health
business   health of its own organization's devices only
========== ==============================================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3

from .audit import AccessLog, parse_ts, transaction, ts, utcnow
from ..errors import AuthenticationError, PermissionDenied, PolicyError
from ..store.database import IntegrityError

logger = logging.getLogger(__name__)


class Role(str, enum.Enum):
    ADMIN = "admin"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    FIELD_TECH = "field-tech"
    BUSINESS = "business"


_ROLE_WORDS = {Role.ADMIN: "an administrator", Role.OPERATOR: "an operator", Role.SUPERVISOR: "a supervisor",
               Role.AUDITOR: "an auditor", Role.FIELD_TECH: "a field technician", Role.BUSINESS: "a business account"}


class Permission(str, enum.Enum):
    MANAGE_USERS = "manage-users"
    MANAGE_AGREEMENTS = "manage-agreements"
    MANAGE_HOTLIST = "manage-hotlist"
    VIEW_HOTLIST = "view-hotlist"
    VIEW_HITS = "view-hits"
    VERIFY_HITS = "verify-hits"
    RUN_PURGE = "run-purge"
    SEARCH = "search"
    REQUEST_SHARE = "request-share"
    APPROVE_SHARE = "approve-share"
    EXPORT_SHARE = "export-share"
    REQUEST_HOLD = "request-hold"
    APPROVE_HOLD = "approve-hold"
    READ_AUDIT = "read-audit"
    READ_REPORTS = "read-reports"
    ENROLL = "enroll"
    DEVICE_HEALTH_ALL = "device-health-all"
    DEVICE_HEALTH_OWN = "device-health-own"
    REVOKE_DEVICE = "revoke-device"
    REVIEW_ACCOUNTS = "review-accounts"
    ADAPT_MODELS = "adapt-models"
    CONFIGURE_DEVICES = "configure-devices"
    MANAGE_RELEASES = "manage-releases"
    VIEW_RELEASES = "view-releases"


P = Permission

# What each permission lets a user do, in the words of an error message ("... may not <this>").
PERMISSION_WORDS: dict[Permission, str] = {
    P.MANAGE_USERS: "add, change or disable user accounts",
    P.MANAGE_AGREEMENTS: "enroll businesses or change their agreements",
    P.MANAGE_HOTLIST: "change hotlists",
    P.VIEW_HOTLIST: "see hotlists",
    P.VIEW_HITS: "see hotlist hits",
    P.VERIFY_HITS: "verify hotlist hits",
    P.RUN_PURGE: "run the retention purge",
    P.SEARCH: "search plate reads",
    P.REQUEST_SHARE: "ask to share reads with another agency",
    P.APPROVE_SHARE: "approve sharing reads with another agency",
    P.EXPORT_SHARE: "export shared reads",
    P.REQUEST_HOLD: "ask to keep reads past their retention period",
    P.APPROVE_HOLD: "approve keeping reads past their retention period",
    P.READ_AUDIT: "read the access log",
    P.READ_REPORTS: "read reports",
    P.ENROLL: "enroll devices",
    P.DEVICE_HEALTH_ALL: "see the health of every device",
    P.DEVICE_HEALTH_OWN: "see the health of a business's own devices",
    P.REVOKE_DEVICE: "revoke devices",
    P.REVIEW_ACCOUNTS: "review user accounts",
    P.ADAPT_MODELS: "adapt the recognition models",
    P.CONFIGURE_DEVICES: "push configurations to devices",
    P.MANAGE_RELEASES: "offer application updates to devices or change device groups",
    P.VIEW_RELEASES: "see device groups and the state of application updates",
}
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset({P.MANAGE_USERS, P.MANAGE_AGREEMENTS, P.MANAGE_HOTLIST, P.VIEW_HOTLIST, P.RUN_PURGE,
                           P.READ_AUDIT, P.READ_REPORTS, P.DEVICE_HEALTH_ALL, P.ENROLL, P.REVOKE_DEVICE,
                           P.REVIEW_ACCOUNTS, P.ADAPT_MODELS, P.CONFIGURE_DEVICES, P.MANAGE_RELEASES, P.VIEW_RELEASES}),
    Role.OPERATOR: frozenset({P.SEARCH, P.REQUEST_SHARE, P.REQUEST_HOLD, P.VIEW_HOTLIST, P.VIEW_HITS,
                              P.VERIFY_HITS}),
    Role.SUPERVISOR: frozenset({P.SEARCH, P.REQUEST_SHARE, P.APPROVE_SHARE, P.EXPORT_SHARE, P.REQUEST_HOLD,
                                P.APPROVE_HOLD, P.READ_REPORTS, P.MANAGE_HOTLIST, P.VIEW_HOTLIST, P.VIEW_HITS,
                                P.VERIFY_HITS, P.REVIEW_ACCOUNTS}),
    Role.AUDITOR: frozenset({P.READ_AUDIT, P.READ_REPORTS, P.DEVICE_HEALTH_ALL, P.VIEW_HOTLIST, P.VIEW_HITS,
                             P.REVIEW_ACCOUNTS, P.VIEW_RELEASES}),
    # Field techs keep the fleet running: every device's health (never a read).
    # They see which version each device runs and how its update went; offering one is an admin's.
    Role.FIELD_TECH: frozenset({P.ENROLL, P.DEVICE_HEALTH_ALL, P.VIEW_RELEASES}),
    Role.BUSINESS: frozenset({P.DEVICE_HEALTH_OWN}),
}

_NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,62}\Z")
TOKEN_PREFIX = "alpr_"


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    organization: str
    role: Role
    disabled: bool = False
    created_at: dt.datetime | None = None
    last_active_at: dt.datetime | None = None

    def can(self, permission: Permission) -> bool:
        return not self.disabled and permission in ROLE_PERMISSIONS[self.role]


def require(user: User, permission: Permission) -> User:
    """Raise :class:`PermissionDenied` unless ``user`` holds ``permission``."""
    if not isinstance(user, User):
        raise PermissionDenied("this action needs an authenticated user")
    if user.disabled:
        raise PermissionDenied(f"user {user.name} is disabled")
    if permission not in ROLE_PERMISSIONS[user.role]:
        # In words for the person; the permission's identifier goes to the service log.
        logger.info("permission denied: user %s role %s lacks %s", user.name, user.role.value, permission.value)
        raise PermissionDenied(f"{user.name} ({_ROLE_WORDS[user.role]}) may not "
                               f"{PERMISSION_WORDS.get(permission, permission.value.replace('-', ' '))}")
    return user


def require_device_access(user: User, device_organization: str) -> User:
    """For device health views: all devices, or (business) only the user's own
    organization's devices."""
    if user.can(Permission.DEVICE_HEALTH_ALL):
        return user
    if not user.can(Permission.DEVICE_HEALTH_OWN):   # staff without device access: refused in staff terms
        require(user, Permission.DEVICE_HEALTH_ALL)
    if device_organization != user.organization:
        raise PermissionDenied(f"user {user.name} may only see devices of {user.organization}")
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _row_user(row) -> User:
    name, org, role, disabled, created_at, _created_by, last = row
    return User(name, org, Role(role), bool(disabled), parse_ts(created_at), parse_ts(last) if last else None)


class UserDirectory:
    """Accounts and tokens in the store's SQLite database. Every change is
    written to the access log in the same transaction."""

    def __init__(self, conn: sqlite3.Connection, *, clock=utcnow) -> None:
        self.conn = conn
        self._clock = clock
        self.log = AccessLog(conn, clock=clock)

    # -- accounts ------------------------------------------------------------
    def bootstrap(self, name: str, organization: str) -> tuple[User, str]:
        """Create the first admin; refused once any user exists."""
        with transaction(self.conn):
            if self.conn.execute("SELECT count(*) FROM users").fetchone()[0]:
                raise PolicyError("users exist already; bootstrap only works on an empty user table")
            user, token = self._create(name, organization, Role.ADMIN, created_by=name)
            self.log.append(user=name, organization=organization, action="user-bootstrap",
                            detail={"user": name, "role": Role.ADMIN.value})
        return user, token

    def add(self, actor: User, name: str, organization: str, role: Role | str) -> tuple[User, str]:
        require(actor, Permission.MANAGE_USERS)
        role = self._role(role)
        with transaction(self.conn):
            if role is Role.BUSINESS:  # a business account belongs to an enrolled business, by its id
                row = self.conn.execute("SELECT status FROM businesses WHERE business_id = ?",
                                        [organization.strip()]).fetchone()
                if row is None:
                    raise PolicyError(f"no business {organization.strip()!r} is enrolled: give the business id "
                                      "shown by 'alpr-central business list' (enroll it first with "
                                      "'alpr-central business enroll')")
                if row[0] == "withdrawn":
                    raise PolicyError(f"business {organization.strip()!r} has withdrawn from the program; "
                                      "it cannot get new accounts")
            user, token = self._create(name, organization, role, created_by=actor.name)
            self.log.append(user=actor.name, organization=actor.organization, action="user-add",
                            detail={"user": name, "role": role.value, "user_organization": organization})
        return user, token

    def _create(self, name: str, organization: str, role: Role, *, created_by: str) -> tuple[User, str]:
        if not _NAME_RE.match(name or ""):
            raise PolicyError("user name: 2-63 lower-case letters, digits and ._- starting with a letter "
                              "(one per person; no shared accounts)")
        if not organization or not organization.strip():
            raise PolicyError("every user belongs to an organization")
        now = ts(self._clock())
        try:
            self.conn.execute("INSERT INTO users VALUES (?,?,?,?,?,?,?)",
                              [name, organization.strip(), role.value, 0, now, created_by, None])
        except IntegrityError:
            raise PolicyError(f"user {name} exists already") from None
        token = self._new_token(name, now)
        return User(name, organization.strip(), role, False, parse_ts(now), None), token

    def _new_token(self, name: str, now: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.conn.execute("INSERT INTO user_tokens VALUES (?,?,?,?)", [_digest(token), name, now, None])
        return token

    @staticmethod
    def _role(role) -> Role:
        try:
            return Role(role)
        except ValueError:
            raise PolicyError(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}") from None

    def get(self, name: str) -> User:
        row = self.conn.execute("SELECT * FROM users WHERE name = ?", [name]).fetchone()
        if row is None:
            raise PolicyError(f"no user {name}")
        return _row_user(row)

    def list(self, actor: User) -> list[User]:
        if not (actor.can(Permission.REVIEW_ACCOUNTS) or actor.can(Permission.READ_AUDIT)):
            raise PermissionDenied(f"{actor.name} ({_ROLE_WORDS[actor.role]}) may not list user accounts")
        return [_row_user(r) for r in self.conn.execute("SELECT * FROM users ORDER BY name").fetchall()]

    def set_disabled(self, actor: User, name: str, disabled: bool) -> User:
        require(actor, Permission.MANAGE_USERS)
        if disabled and name == actor.name:
            raise PolicyError("you cannot disable your own account")
        with transaction(self.conn):
            self.get(name)
            self.conn.execute("UPDATE users SET disabled = ? WHERE name = ?", [int(disabled), name])
            if disabled:
                self.conn.execute("UPDATE user_tokens SET revoked_at = ? WHERE user_name = ? AND revoked_at IS NULL",
                                  [ts(self._clock()), name])
            self.log.append(user=actor.name, organization=actor.organization,
                            action="user-disable" if disabled else "user-enable", detail={"user": name})
        return self.get(name)

    def new_token(self, actor: User, name: str, *, revoke_others: bool = True) -> str:
        """Issue a fresh token for ``name`` (an admin for anyone, or a user for
        themselves); older tokens are revoked unless told otherwise."""
        if actor.name != name:
            require(actor, Permission.MANAGE_USERS)
        with transaction(self.conn):
            if self.get(name).disabled:
                raise PolicyError(f"user {name} is disabled")
            now = ts(self._clock())
            if revoke_others:
                self.conn.execute("UPDATE user_tokens SET revoked_at = ? WHERE user_name = ? AND revoked_at IS NULL",
                                  [now, name])
            token = self._new_token(name, now)
            self.log.append(user=actor.name, organization=actor.organization, action="token-issue",
                            detail={"user": name, "revoked_others": revoke_others})
        return token

    def inactive(self, actor: User, *, days: int = 90, now: dt.datetime | None = None) -> list[User]:
        """Enabled accounts not used for ``days`` (never-used ones count from
        their creation)."""
        now = now or self._clock()
        cutoff = now - dt.timedelta(days=days)
        return [u for u in self.list(actor)
                if not u.disabled and (u.last_active_at or u.created_at) < cutoff]

    # -- authentication ------------------------------------------------------
    def authenticate(self, token: str | None, *, now: dt.datetime | None = None) -> User:
        """The user a token belongs to. Any failure is the same
        :class:`AuthenticationError`, which says nothing about why, except
        to the holder of a genuine token whose business has withdrawn: that
        tells them only about their own account."""
        if not token or not token.startswith(TOKEN_PREFIX):
            raise AuthenticationError("authentication failed: give a valid personal token (--token-file or "
                                      "ALPR_TOKEN)")
        digest = _digest(token.strip())
        row = self.conn.execute("SELECT token_sha256, user_name, revoked_at FROM user_tokens WHERE token_sha256 = ?",
                                [digest]).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest):
            raise AuthenticationError("authentication failed: give a valid personal token (--token-file or "
                                      "ALPR_TOKEN)")
        user = self.get(row[1])
        if user.role is Role.BUSINESS and (row[2] is not None or user.disabled):
            withdrawn = self.conn.execute("SELECT withdrawn_at FROM businesses WHERE business_id = ? AND "
                                          "status = 'withdrawn'", [user.organization]).fetchone()
            if withdrawn:
                raise AuthenticationError(f"authentication failed: your business ({user.organization}) withdrew "
                                          f"from the program on {withdrawn[0][:10]}, which closed its accounts; "
                                          "to take part again, the department enrolls it anew")
        if row[2] is not None or user.disabled:
            raise AuthenticationError("authentication failed: give a valid personal token (--token-file or "
                                      "ALPR_TOKEN)")
        at = ts(now or self._clock())
        with transaction(self.conn):
            self.conn.execute("UPDATE users SET last_active_at = ? WHERE name = ?", [at, user.name])
        return dataclasses.replace(user, last_active_at=parse_ts(at))


def in_words(user: User) -> str:
    """``ada (a supervisor)``: a user and role as refusals name them."""
    return f"{user.name} ({_ROLE_WORDS[user.role]})"
