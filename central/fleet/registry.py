"""The device registry: devices, the businesses that enroll cameras under a
written agreement, and one-time enrollment tokens.

Lives in the same SQLite file as the reads (migrations ``01xx_*``). Every
change is made by an authenticated :class:`~central.governance.users.User` whose role the
registry checks (so the rules hold whatever front end calls it), is one
transaction, and leaves a row in ``registry_events`` and an entry in the
hash-chained access log (:class:`~central.governance.audit.AccessLog`), both naming the
user and organization. Devices act for themselves only when they prove it
(one-time token, or their current certificate): those entries name
``device:<id>``. The clock is injected.

Who may do what (the role table is in docs/governance.md)::

    create enrollment, suspend, resume    ENROLL            admin, field-tech
    revoke a device                       REVOKE_DEVICE     admin
    enroll / withdraw a business          MANAGE_AGREEMENTS admin
    list devices, businesses, tokens      DEVICE_HEALTH_ALL admin, auditor
    device health                         DEVICE_HEALTH_ALL, or DEVICE_HEALTH_OWN for the user's own business

Front ends show devices through ``list_devices``, ``show_device`` and
``health``, which check the user; ``device``, ``devices``, ``events``,
``is_active`` and ``active_device_ids`` are unchecked internal lookups for the
enrollment endpoint, the collector and the broker configuration.

Device life cycle::

    pending --(token redeemed, certificate issued)--> active
    active <--> suspended            (staff, or the owning business withdraws)
    any ----> revoked                (final: certificates revoked, ACL entry removed)

Token secrets are stored only as SHA-256 digests of 256
random bits and compared with :func:`hmac.compare_digest`; the row is found by
a separate public id, so lookups leak nothing about the secret.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from edge_agent.wire.topics import validate_device_id

from ..governance.audit import AccessLog
from .ca import CertificateAuthority, Revoked, load_csr, serial_hex
from ..errors import EnrollmentError, PermissionDenied, PolicyError, RegistryError
from ..store.database import IntegrityError
from ..governance.users import Permission, Role, User, UserDirectory, require, require_device_access

logger = logging.getLogger(__name__)

DEPARTMENT = "department"
STATUSES = ("pending", "active", "suspended", "revoked")
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime(_TS)


def _from_ts(text: str | dt.datetime | None) -> dt.datetime | None:
    if isinstance(text, dt.datetime):  # a column of PostgreSQL's reads table (timestamptz)
        return text.astimezone(dt.timezone.utc)
    return None if text is None else dt.datetime.strptime(text, _TS).replace(tzinfo=dt.timezone.utc)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    id: str
    source: str = "picamera2"

    @classmethod
    def parse(cls, spec: str) -> "CameraSpec":
        """``ID`` or ``ID:SOURCE`` (source: picamera2, device, stream, file, folder)."""
        cam_id, _, source = spec.partition(":")
        source = source or "picamera2"
        if not cam_id or not validate_id_like(cam_id):
            raise RegistryError(f"camera {spec!r}: id must be lower-case letters, digits and '-'")
        if source not in ("picamera2", "device", "stream", "file", "folder"):
            raise RegistryError(f"camera {spec!r}: source must be picamera2, device, stream, file or folder")
        return cls(cam_id, source)


def validate_id_like(value: str) -> bool:
    try:
        validate_device_id(value)
        return True
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Device:
    device_id: str
    owner: str
    location: str
    cameras: tuple[CameraSpec, ...]
    status: str
    status_reason: str
    cert_serial: str | None
    cert_expires_at: dt.datetime | None
    enrolled_by: str
    enrolled_at: dt.datetime
    updated_at: dt.datetime
    latitude: float | None = None
    longitude: float | None = None
    heading: float | None = None


@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    """What the collector checks a read's own claims against: the cameras
    registered to the device, and when it was enrolled (it took no reads before)."""
    cameras: frozenset[str]
    enrolled_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Terms:
    """What an agreement (MOU) lets the department share, with whom, and how long reads are kept."""
    shared_data: str
    share_with: str
    retention_days: int


@dataclasses.dataclass(frozen=True)
class Business:
    business_id: str
    name: str
    contact_name: str
    contact_email: str
    contact_phone: str
    mou_id: str
    terms: Terms
    consent_at: dt.datetime
    status: str
    enrolled_at: dt.datetime
    enrolled_by: str
    withdrawn_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class NewToken:
    token_id: str
    secret: str = dataclasses.field(repr=False)
    device: Device = None  # type: ignore[assignment]
    expires_at: dt.datetime = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True)
class DeviceHealth:
    """What a business user may see: health, never reads."""
    device_id: str
    status: str
    cert_expires_at: dt.datetime | None
    last_read_at: dt.datetime | None
    reads_last_24h: int


def _device(r: dict) -> Device:
    """A row of ``devices`` as a :class:`Device`."""
    return Device(r["device_id"], r["owner"], r["location"],
                  tuple(CameraSpec(**c) for c in json.loads(r["cameras"])), r["status"], r["status_reason"],
                  r["cert_serial"], _from_ts(r["cert_expires_at"]), r["enrolled_by"], _from_ts(r["enrolled_at"]),
                  _from_ts(r["updated_at"]), r["latitude"], r["longitude"], r["heading"])


class Registry:
    def __init__(self, path: str | Path, *, clock: Callable[[], dt.datetime] | None = None, store=None) -> None:
        """``path``: the SQLite file (migrated on open) or a ``postgresql://`` URL;
        ``store``: an open store whose connection to use instead (not closed here)."""
        from ..store.database import open_governance
        self._owned = store is None
        self._store = open_governance(path) if store is None else store
        self.db = self._store.db.conn
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._lock = threading.Lock()
        self._log = AccessLog(self.db, clock=self._clock)

    def close(self) -> None:
        if self._owned:
            self._store.close()

    # -- plumbing ----------------------------------------------------------
    def _tx(self, fn):
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self.db)
                self.db.execute("COMMIT")
                return result
            except BaseException:
                if self.db.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL)
                    self.db.execute("ROLLBACK")
                raise

    def _event(self, db, actor: User | str, action: str, subject: str, *, organization: str = "",
               **detail) -> None:
        """One row in ``registry_events`` and one access-log entry, inside the
        caller's transaction. ``actor``: the user, or ``device:<id>``."""
        name = actor.name if isinstance(actor, User) else actor
        org = actor.organization if isinstance(actor, User) else organization
        db.execute("INSERT INTO registry_events (at, actor, action, subject, detail) VALUES (?,?,?,?,?)",
                   [_ts(self._clock()), name, action, subject, json.dumps(detail, sort_keys=True)])
        self._log.append(user=name, organization=org, action=action, detail={"subject": subject, **detail})

    # -- who ---------------------------------------------------------------
    def authenticate(self, token: str | None) -> User:
        """The user a personal token belongs to (:class:`AuthenticationError` if none)."""
        with self._lock:
            return UserDirectory(self.db, clock=self._clock).authenticate(token)

    def _require(self, user: User, permission: Permission) -> User:
        """``require`` against the user's current record: a user disabled (or
        given another role) since they authenticated is judged as they are now."""
        require(user, permission)  # refuses non-users before touching the database
        with self._lock:
            return require(UserDirectory(self.db, clock=self._clock).get(user.name), permission)

    def _current(self, user: User) -> User:
        if not isinstance(user, User):
            require(user, Permission.DEVICE_HEALTH_OWN)  # raises: not a user
        with self._lock:
            current = UserDirectory(self.db, clock=self._clock).get(user.name)
        if current.disabled:
            raise PermissionDenied(f"user {current.name} is disabled")
        return current

    def _query(self, sql: str, args=()) -> list[dict]:
        with self._lock:
            cur = self.db.execute(sql, list(args))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def events(self, subject: str | None = None) -> list[dict]:
        where = "WHERE subject = ?" if subject else ""
        return self._query(f"SELECT at, actor, action, subject, detail FROM registry_events {where} ORDER BY id",
                           [subject] if subject else [])

    # -- businesses --------------------------------------------------------
    def enroll_business(self, business_id: str, *, name: str, contact_name: str, contact_email: str,
                        contact_phone: str, mou_id: str, terms: Terms, consent_at: dt.datetime, user: User) -> Business:
        user = self._require(user, Permission.MANAGE_AGREEMENTS)
        if business_id == DEPARTMENT or not validate_id_like(business_id):
            raise RegistryError("business id: lower-case letters, digits and '-' (not 'department')")
        for label, value in (("name", name), ("contact name", contact_name), ("contact email", contact_email),
                             ("MOU id", mou_id), ("shared data", terms.shared_data), ("share with", terms.share_with)):
            if not value or not value.strip():
                raise RegistryError(f"business {label} is required")
        if "@" not in contact_email:
            raise RegistryError("business contact email: not an e-mail address")
        if not 1 <= terms.retention_days <= 3650:
            raise RegistryError("retention days: 1-3650")
        if consent_at.tzinfo is None or consent_at > self._clock():
            raise RegistryError("consent date: must be a time-zone-aware date, not in the future")
        now = self._clock()

        def do(db):
            try:
                db.execute("INSERT INTO businesses VALUES (?,?,?,?,?,?,?,?,?,?,'active',?,?,NULL,NULL)",
                           [business_id, name, contact_name, contact_email, contact_phone, mou_id, terms.shared_data,
                            terms.share_with, terms.retention_days, _ts(consent_at), _ts(now), user.name])
            except IntegrityError:
                raise RegistryError(f"business {business_id!r} is already enrolled") from None
            self._event(db, user, "business-enroll", business_id, mou_id=mou_id)
        self._tx(do)
        logger.info("business %s enrolled under MOU %s by %s", business_id, mou_id, user.name)
        return self.business(business_id)

    def business(self, business_id: str) -> Business:
        rows = self._query("SELECT * FROM businesses WHERE business_id = ?", [business_id])
        if not rows:
            raise RegistryError(f"no business {business_id!r}")
        r = rows[0]
        return Business(r["business_id"], r["name"], r["contact_name"], r["contact_email"], r["contact_phone"],
                        r["mou_id"], Terms(r["shared_data"], r["share_with"], r["retention_days"]),
                        _from_ts(r["consent_at"]), r["status"], _from_ts(r["enrolled_at"]), r["enrolled_by"],
                        _from_ts(r["withdrawn_at"]))

    def businesses(self, user: User) -> list[Business]:
        require(self._current(user), Permission.DEVICE_HEALTH_ALL)
        return [self.business(r["business_id"])
                for r in self._query("SELECT business_id FROM businesses ORDER BY business_id")]

    def agreement(self, user: User, business_id: str | None = None) -> Business:
        """One business's enrollment and agreement terms: its own users read
        theirs (the default for them), staff who see every device's health
        read any. Logged as a read of the agreement."""
        current = self._current(user)
        business_id = business_id or current.organization
        require_device_access(current, business_id)
        found = self.business(business_id)
        self._tx(lambda db: self._event(db, current, "business-show", business_id))
        return found

    def withdraw_business(self, business_id: str, *, user: User, reason: str = "business withdrew") -> list[str]:
        """The business leaves the program (an admin, or one of the business's
        own users: consent is theirs to withdraw): its status becomes withdrawn, its
        devices are suspended (their reads stop being accepted), and its
        users (role business, organization = the business id) are disabled
        and their tokens revoked. Returns the suspended device ids."""
        current = self._current(user)
        if current.role is Role.BUSINESS and current.organization == business_id:
            user = current  # a business may always withdraw its own consent
        else:
            user = self._require(user, Permission.MANAGE_AGREEMENTS)
        if self.business(business_id).status == "withdrawn":
            raise RegistryError(f"business {business_id!r} has already withdrawn")
        now = _ts(self._clock())

        def do(db):
            db.execute("UPDATE businesses SET status='withdrawn', withdrawn_at=?, withdrawn_by=? WHERE business_id=?",
                       [now, user.name, business_id])
            ids = [r[0] for r in db.execute("SELECT device_id FROM devices WHERE owner=? AND status IN "
                                            "('pending','active')", [business_id])]
            for device_id in ids:
                db.execute("UPDATE devices SET status='suspended', status_reason=?, updated_at=? WHERE device_id=?",
                           [reason, now, device_id])
            db.execute("UPDATE enrollment_tokens SET used_at=? WHERE used_at IS NULL AND device_id IN "
                       "(SELECT device_id FROM devices WHERE owner=?)", [now, business_id])
            logins = [r[0] for r in db.execute("SELECT name FROM users WHERE role='business' AND organization=? "
                                               "AND disabled=0", [business_id])]
            for name in logins:
                db.execute("UPDATE users SET disabled=1 WHERE name=?", [name])
                db.execute("UPDATE user_tokens SET revoked_at=? WHERE user_name=? AND revoked_at IS NULL",
                           [now, name])
            self._event(db, user, "business-withdraw", business_id, suspended=ids, disabled_users=logins,
                        reason=reason)
            return ids
        ids = self._tx(do)
        logger.info("business %s withdrew; %d device(s) suspended", business_id, len(ids))
        return ids

    # -- enrollment tokens -------------------------------------------------
    def create_enrollment(self, *, owner: str, cameras: Sequence[CameraSpec], location: str, ttl: dt.timedelta,
                          user: User, device_id: str | None = None, latitude: float | None = None,
                          longitude: float | None = None, heading: float | None = None) -> NewToken:
        """Record (or re-enroll) a device as pending and mint its one-time token."""
        user = self._require(user, Permission.ENROLL)
        if owner != DEPARTMENT:
            if self.business(owner).status != "active":
                raise PolicyError(f"business {owner!r} has withdrawn; its cameras cannot be enrolled")
        if not cameras:
            raise RegistryError("at least one camera is required")
        if len({c.id for c in cameras}) != len(cameras):
            raise RegistryError("camera ids must be unique")
        if ttl <= dt.timedelta(0):
            raise RegistryError("token lifetime must be positive")
        device_id = device_id or f"cam-{secrets.token_hex(4)}"
        if not validate_id_like(device_id):
            raise RegistryError("device id: 1-63 lower-case letters, digits and '-'")
        now = self._clock()
        token_id, secret = secrets.token_urlsafe(9), secrets.token_urlsafe(32)
        cams = json.dumps([dataclasses.asdict(c) for c in cameras])

        def do(db):
            row = db.execute("SELECT status, owner FROM devices WHERE device_id=?", [device_id]).fetchone()
            if row is None:
                db.execute("INSERT INTO devices (device_id, owner, location, latitude, longitude, heading, cameras, "
                           "status, enrolled_by, enrolled_at, updated_at) VALUES (?,?,?,?,?,?,?,'pending',?,?,?)",
                           [device_id, owner, location, latitude, longitude, heading, cams, user.name, _ts(now),
                            _ts(now)])
            elif row[0] == "revoked":
                raise RegistryError(f"device {device_id!r} is revoked; enroll the camera under a new device id")
            elif row[1] != owner:
                raise RegistryError(f"device {device_id!r} belongs to {row[1]!r}, not {owner!r}")
            else:  # re-provisioning: same identity, new key; the record stays until the token is redeemed
                db.execute("UPDATE devices SET location=?, latitude=?, longitude=?, heading=?, cameras=?, "
                           "updated_at=? WHERE device_id=?",
                           [location, latitude, longitude, heading, cams, _ts(now), device_id])
            db.execute("INSERT INTO enrollment_tokens (token_id, secret_sha256, device_id, created_by, created_at, "
                       "expires_at) VALUES (?,?,?,?,?,?)",
                       [token_id, _digest(secret), device_id, user.name, _ts(now), _ts(now + ttl)])
            self._event(db, user, "enroll-create", device_id, owner=owner, token_id=token_id,
                        expires_at=_ts(now + ttl))
        self._tx(do)
        logger.info("enrollment token %s created for device %s (owner %s) by %s", token_id, device_id, owner,
                    user.name)
        return NewToken(token_id, secret, self.device(device_id), now + ttl)

    def pending_tokens(self, user: User) -> list[dict]:
        current = self._current(user)
        if not (current.can(Permission.ENROLL) or current.can(Permission.DEVICE_HEALTH_ALL)):
            require(current, Permission.ENROLL)  # raises, naming the role
        now = _ts(self._clock())
        return self._query("SELECT token_id, device_id, created_by, created_at, expires_at FROM enrollment_tokens "
                           "WHERE used_at IS NULL AND expires_at > ? ORDER BY created_at", [now])

    def redeem(self, token_id: str, secret: str, csr_pem: bytes | str, ca: CertificateAuthority, *,
               cert_days: int = 365, expect_device_id: str | None = None) -> tuple[Device, bytes]:
        """Check the token, sign the CSR and activate the device, atomically:
        a token is used at most once even under concurrent requests. Earlier
        certificates of the device are revoked (its old key may be lost).
        ``expect_device_id``: a re-provisioned device holding buffered reads
        sealed as that id; a token for another id is refused and not used."""
        load_csr(csr_pem)  # a bad CSR does not burn the token
        now = self._clock()

        def do(db):
            row = db.execute("SELECT secret_sha256, device_id, expires_at, used_at FROM enrollment_tokens "
                             "WHERE token_id = ?", [token_id]).fetchone()
            if row is None or not hmac.compare_digest(row[0], _digest(secret)):
                raise EnrollmentError("enrollment token not recognised (mistyped or forged); ask for a new one")
            if row[3] is not None:
                raise EnrollmentError("enrollment token already used; ask for a new one")
            if _from_ts(row[2]) <= now:
                raise EnrollmentError("enrollment token expired; ask for a new one")
            device_id = row[1]
            if expect_device_id and expect_device_id != device_id:
                raise EnrollmentError(f"this token is for device {device_id}, but this device is {expect_device_id} "
                                      f"and holds buffered reads; create the token with --device {expect_device_id}")
            owner, status = db.execute("SELECT owner, status FROM devices WHERE device_id=?", [device_id]).fetchone()
            if status == "revoked":
                raise EnrollmentError(f"device {device_id} is revoked")
            if owner != DEPARTMENT and db.execute("SELECT status FROM businesses WHERE business_id=?",
                                                  [owner]).fetchone()[0] != "active":
                raise EnrollmentError("the owning business has withdrawn; enrollment refused")
            cert = ca.sign_csr(csr_pem, device_id, days=cert_days, now=now)
            serial = serial_hex(cert)
            db.execute("UPDATE enrollment_tokens SET used_at=?, used_serial=? WHERE token_id=?",
                       [_ts(now), serial, token_id])
            db.execute("UPDATE device_certificates SET revoked_at=? WHERE device_id=? AND revoked_at IS NULL",
                       [_ts(now), device_id])
            self._record_cert(db, device_id, cert, now)
            new_status = "active" if status in ("pending", "active") else status
            db.execute("UPDATE devices SET status=?, updated_at=? WHERE device_id=?", [new_status, _ts(now), device_id])
            self._event(db, "device:" + device_id, "provision", device_id, organization=owner, token_id=token_id,
                        serial=serial)
            return device_id, cert
        device_id, cert = self._tx(do)
        logger.info("device %s provisioned (certificate %s)", device_id, serial_hex(cert))
        return self.device(device_id), cert.public_bytes(Encoding.PEM)

    def renew(self, device_id: str, presented_serial: str, csr_pem: bytes | str, ca: CertificateAuthority, *,
              cert_days: int = 365) -> tuple[Device, bytes]:
        """A new certificate for an active device that proved its identity
        with a current, unrevoked certificate (mutual TLS)."""
        load_csr(csr_pem)
        now = self._clock()

        def do(db):
            row = db.execute("SELECT status, owner FROM devices WHERE device_id=?", [device_id]).fetchone()
            if row is None or row[0] != "active":
                raise EnrollmentError(f"device {device_id} is not active; renewal refused")
            cert_row = db.execute("SELECT revoked_at, not_after FROM device_certificates WHERE serial=? AND "
                                  "device_id=?", [presented_serial, device_id]).fetchone()
            if cert_row is None or cert_row[0] is not None or _from_ts(cert_row[1]) <= now:
                raise EnrollmentError("the presented certificate is unknown, revoked or expired; re-provision")
            cert = ca.sign_csr(csr_pem, device_id, days=cert_days, now=now)
            self._record_cert(db, device_id, cert, now)
            self._event(db, "device:" + device_id, "renew", device_id, organization=row[1], serial=serial_hex(cert))
            return cert
        cert = self._tx(do)
        logger.info("device %s renewed its certificate (%s)", device_id, serial_hex(cert))
        return self.device(device_id), cert.public_bytes(Encoding.PEM)

    def _record_cert(self, db, device_id: str, cert, now: dt.datetime) -> None:
        serial, not_after = serial_hex(cert), _ts(cert.not_valid_after_utc)
        db.execute("INSERT INTO device_certificates VALUES (?,?,?,?,NULL)", [serial, device_id, _ts(now), not_after])
        db.execute("UPDATE devices SET cert_serial=?, cert_expires_at=? WHERE device_id=?",
                   [serial, not_after, device_id])

    # -- devices -----------------------------------------------------------
    def device(self, device_id: str) -> Device:
        rows = self._query("SELECT * FROM devices WHERE device_id = ?", [device_id])
        if not rows:
            raise RegistryError(f"no device {device_id!r}")
        return _device(rows[0])

    def devices(self, *, owner: str | None = None, status: str | None = None) -> list[Device]:
        where, args = [], []
        for column, value in (("owner", owner), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT * FROM devices WHERE {' AND '.join(where) or 'TRUE'} ORDER BY device_id"
        return [_device(r) for r in self._query(sql, args)]

    def set_status(self, device_id: str, status: str, *, user: User, reason: str = "") -> Device:
        """Suspend, resume (active) or revoke. Suspend and resume need
        ENROLL (admin, field tech: reversible, the everyday maintenance step);
        revocation is final, revokes every certificate of the device and needs
        REVOKE_DEVICE (admin)."""
        if status not in ("active", "suspended", "revoked"):
            raise RegistryError(f"status must be active, suspended or revoked, not {status!r}")
        user = self._require(user, Permission.REVOKE_DEVICE if status == "revoked" else Permission.ENROLL)
        current = self.device(device_id)
        if current.status == "revoked":
            raise RegistryError(f"device {device_id} is revoked; that is final")
        if status == "active":
            if current.cert_serial is None:
                raise RegistryError(f"device {device_id} has never been provisioned; it stays pending")
            if current.owner != DEPARTMENT and self.business(current.owner).status != "active":
                raise PolicyError(f"business {current.owner!r} has withdrawn; its devices stay suspended")
        now = _ts(self._clock())

        def do(db):
            # The checks above are repeated in the UPDATE itself, inside the write
            # transaction: a revoke (or a withdrawal) that commits between them and
            # this statement is never undone by a concurrent resume.
            sql = "UPDATE devices SET status=?, status_reason=?, updated_at=? WHERE device_id=? AND status <> 'revoked'"
            args = [status, reason, now, device_id]
            if status == "active":
                sql += (" AND (owner = ? OR owner IN (SELECT business_id FROM businesses WHERE status = 'active'))")
                args.append(DEPARTMENT)
            if db.execute(sql, args).rowcount != 1:
                raise RegistryError(f"device {device_id} was revoked or its business withdrew meanwhile; "
                                    "nothing changed")
            if status == "revoked":
                db.execute("UPDATE device_certificates SET revoked_at=? WHERE device_id=? AND revoked_at IS NULL",
                           [now, device_id])
                db.execute("UPDATE enrollment_tokens SET used_at=? WHERE device_id=? AND used_at IS NULL",
                           [now, device_id])
            self._event(db, user, f"device-{status}", device_id, reason=reason)
        self._tx(do)
        logger.info("device %s is now %s (by %s)", device_id, status, user.name)
        return self.device(device_id)

    def is_active(self, device_id: str) -> bool:
        rows = self._query("SELECT status FROM devices WHERE device_id = ?", [device_id])
        return bool(rows) and rows[0]["status"] == "active"

    def allow_list(self, ttl: float = 5.0, *, monotonic=time.monotonic) -> Callable[[str], bool]:
        """``is_active`` cached for ``ttl`` seconds, for the collector's hot path."""
        cache: dict[str, tuple[bool, float]] = {}

        def allowed(device_id: str) -> bool:
            hit = cache.get(device_id)
            now = monotonic()
            if hit is None or now - hit[1] > ttl:
                hit = (self.is_active(device_id), now)
                cache[device_id] = hit
            return hit[0]
        return allowed

    def device_facts(self, ttl: float = 5.0, *, monotonic=time.monotonic) -> Callable[[str], DeviceFacts | None]:
        """For the collector's hot path, cached for ``ttl`` seconds: the
        :class:`DeviceFacts` of an active device, None for any other (unknown,
        pending, suspended, revoked)."""
        cache: dict[str, tuple[DeviceFacts | None, float]] = {}

        def facts(device_id: str) -> DeviceFacts | None:
            hit = cache.get(device_id)
            now = monotonic()
            if hit is None or now - hit[1] > ttl:
                rows = self._query("SELECT status, cameras, enrolled_at FROM devices WHERE device_id = ?",
                                   [device_id])
                value = None
                if rows and rows[0]["status"] == "active":
                    value = DeviceFacts(frozenset(c["id"] for c in json.loads(rows[0]["cameras"])),
                                        _from_ts(rows[0]["enrolled_at"]))
                hit = (value, now)
                cache[device_id] = hit
            return hit[0]
        return facts

    def active_device_ids(self) -> list[str]:
        return [r["device_id"] for r in self._query("SELECT device_id FROM devices WHERE status='active' "
                                                     "ORDER BY device_id")]

    def revoked_certificates(self) -> list[Revoked]:
        return [Revoked(r["serial"], _from_ts(r["revoked_at"]))
                for r in self._query("SELECT serial, revoked_at FROM device_certificates WHERE revoked_at IS NOT "
                                     "NULL AND not_after > ? ORDER BY serial", [_ts(self._clock())])]

    def crl_entries(self) -> list[Revoked]:
        """What the broker's CRL must name: every revoked certificate, and the
        current certificates of suspended devices on hold (certificateHold),
        so the broker refuses a suspended device at the TLS handshake, not only
        at its first publish. A resume lifts the hold."""
        held = [Revoked(r["serial"], _from_ts(r["updated_at"]), hold=True)
                for r in self._query("SELECT c.serial, d.updated_at FROM device_certificates c JOIN devices d "
                                     "USING (device_id) WHERE d.status = 'suspended' AND c.revoked_at IS NULL "
                                     "AND c.not_after > ? ORDER BY c.serial", [_ts(self._clock())])]
        return self.revoked_certificates() + held

    # -- views (read-only) ---------------------------------------------------
    def list_devices(self, user: User, *, owner: str | None = None, status: str | None = None) -> list[Device]:
        """Devices as a user may see them: all (DEVICE_HEALTH_ALL), or a
        business user's own (``owner`` defaults to, and must be, theirs)."""
        user = self._current(user)
        if owner is None and not user.can(Permission.DEVICE_HEALTH_ALL):
            owner = user.organization
        if owner is None:
            require(user, Permission.DEVICE_HEALTH_ALL)
        else:
            require_device_access(user, owner)
        return self.devices(owner=owner, status=status)

    def show_device(self, user: User, device_id: str) -> tuple[Device, list[dict]]:
        """One device and its registry history, if the user may see it."""
        user = self._current(user)
        device = self.device(device_id) if user.can(Permission.DEVICE_HEALTH_ALL) else None
        if device is None:
            owner = self._query("SELECT owner FROM devices WHERE device_id = ?", [device_id])
            # a business user learns nothing about other owners' ids, not even whether they exist
            require_device_access(user, owner[0]["owner"] if owner else "")
            device = self.device(device_id)
        return device, self.events(device_id)

    def health(self, user: User, owner: str | None = None) -> list[DeviceHealth]:
        """Health of the owner's devices (default: the user's own
        organization): status, certificate expiry, when central stored the
        device's newest read and how many reads it captured in the last 24
        hours. No read content. Needs DEVICE_HEALTH_ALL, or DEVICE_HEALTH_OWN
        for the user's own business."""
        from .activity import read_activity  # it reads Device, defined here
        user = self._current(user)
        owner = owner or user.organization
        require_device_access(user, owner)
        if owner != DEPARTMENT:
            self.business(owner)
        now = self._clock()
        out = []
        for d in self.devices(owner=owner):
            with self._lock:
                activity = read_activity(self.db, d, now)
            out.append(DeviceHealth(d.device_id, d.status, d.cert_expires_at, activity.last_stored_at,
                                    activity.reads_last_24h))
        return out
