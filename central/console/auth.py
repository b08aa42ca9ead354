"""Passwords, sign-in, lockout and server-side sessions of the browser console.

- A password is hashed with Argon2id (``argon2-cffi``: memory-hard, salted,
  parameters in the hash so they can be raised later; a hash made with older
  parameters is upgraded at the next sign-in). Personal tokens
  (:mod:`central.governance.users`) stay the CLI's and the API's credential.
- A failed sign-in is written to the access log (never the password, never an
  unknown name that was typed: it may be a password typed in the wrong box).
  ``lockout_failures`` failures within ``lockout_window_minutes`` lock the
  account for ``lockout_minutes``; while locked even the right password fails.
  Every failure gets the same message, whatever the reason.
- A session is a random 256-bit token in a cookie; the database keeps only its
  SHA-256, with a CSRF token, the time it began and the time it was last used.
  It ends after ``session_idle_minutes`` without a request or
  ``session_max_hours`` after sign-in, at sign-out, when the password changes
  and when the account is disabled.

The clock is a parameter, so timeouts and lockouts are tested without waiting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import sqlite3

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..config import Console
from ..errors import AuthenticationError, PolicyError
from ..governance.audit import AccessLog, parse_ts, transaction, ts, utcnow
from ..governance.users import Permission, User, UserDirectory, require

logger = logging.getLogger(__name__)

SIGN_IN_FAILED = ("sign-in failed: wrong user name or password, or the account is locked after repeated "
                  "failures (ask an administrator, or wait)")
_HASHER = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (64 MiB, t=3)
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))  # unknown users cost the same time as known ones


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ConsoleSession:
    user: User
    csrf: str
    created_at: dt.datetime
    last_seen_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class SignedIn:
    session: ConsoleSession
    token: str = dataclasses.field(repr=False)


class ConsoleAuth:
    """Passwords and sessions in the store's SQLite database; every change and
    every sign-in attempt goes to the access log."""

    def __init__(self, conn: sqlite3.Connection, settings: Console = Console(), *, clock=utcnow) -> None:
        self.conn = conn
        self.settings = settings
        self._clock = clock
        self.users = UserDirectory(conn, clock=clock)
        self.log = AccessLog(conn, clock=clock)

    # -- passwords -------------------------------------------------------------
    def set_password(self, actor: User, name: str, password: str) -> None:
        """Set ``name``'s password (the user themselves, or an admin). Ends the
        user's console sessions and clears a lockout."""
        if actor.name != name:
            require(actor, Permission.MANAGE_USERS)
        elif actor.disabled:
            raise PolicyError(f"user {name} is disabled")
        n = self.settings.min_password_length
        if not isinstance(password, str) or len(password) < n:
            raise PolicyError(f"a password has at least {n} characters (a passphrase of several words is best)")
        if len(password) > 1024:
            raise PolicyError("a password has at most 1024 characters")
        if password.strip() != password or password.lower() == name.lower():
            raise PolicyError("a password neither is the user name nor starts or ends with spaces")
        digest = _HASHER.hash(password)
        now = ts(self._clock())
        with transaction(self.conn):
            self.users.get(name)
            self.conn.execute(
                "INSERT INTO user_passwords (user_name, hash, set_at, set_by) VALUES (?,?,?,?) "
                "ON CONFLICT(user_name) DO UPDATE SET hash=excluded.hash, set_at=excluded.set_at, "
                "set_by=excluded.set_by, failures=0, first_failure_at=NULL, locked_until=NULL",
                [name, digest, now, actor.name])
            ended = self.conn.execute("UPDATE console_sessions SET ended_at = ? WHERE user_name = ? AND ended_at "
                                      "IS NULL", [now, name]).rowcount
            self.log.append(user=actor.name, organization=actor.organization, action="password-set",
                            detail={"user": name, "sessions_ended": ended})

    def change_own_password(self, user: User, current: str, new: str, *, remote: str = "") -> None:
        """A signed-in user's own change: the current password is checked like
        a sign-in (a wrong one counts towards the lockout); the new one must
        differ. Ends every session of the user, this one included."""
        row = self.conn.execute("SELECT hash FROM user_passwords WHERE user_name = ?", [user.name]).fetchone()
        try:
            ok = row is not None and _HASHER.verify(row[0], current or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok:
            full = self.conn.execute("SELECT p.hash, p.failures, p.first_failure_at, p.locked_until, u.disabled "
                                     "FROM user_passwords p JOIN users u ON u.name = p.user_name "
                                     "WHERE p.user_name = ?", [user.name]).fetchone()
            self._failed(user.name, user.organization, full, self._clock(), "wrong current password", remote)
            raise AuthenticationError("the current password is wrong")
        if new == current:
            raise PolicyError("the new password must differ from the current one")
        self.set_password(user, user.name, new)

    def has_password(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM user_passwords WHERE user_name = ?", [name]).fetchone() is not None

    # -- sign-in -----------------------------------------------------------------
    def sign_in(self, name: str, password: str, *, remote: str = "") -> SignedIn:
        """A new session for the right password of an enabled, unlocked user;
        :class:`AuthenticationError` (one message for every reason) otherwise."""
        now = self._clock()
        name = (name or "").strip().lower()[:64]
        row = self.conn.execute("SELECT p.hash, p.failures, p.first_failure_at, p.locked_until, u.disabled, "
                                "u.organization FROM user_passwords p JOIN users u ON u.name = p.user_name "
                                "WHERE p.user_name = ?", [name]).fetchone()
        known = self.conn.execute("SELECT organization FROM users WHERE name = ?", [name]).fetchone()
        try:
            _HASHER.verify(row[0] if row else _DUMMY, password or "")
            matched = row is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            matched = False
        if known is None:
            self.log.append(user="-", organization="", action="sign-in-failed",
                            detail={"reason": "unknown user or no password", "remote": remote}, at=now)
            logger.warning("console sign-in failed for an unknown user from %s", remote or "?")
            raise AuthenticationError(SIGN_IN_FAILED)
        org = known[0]
        locked = row is not None and row[3] is not None and parse_ts(row[3]) > now
        if not matched or locked or row[4]:
            reason = ("no password set" if row is None else "account locked" if locked
                      else "account disabled" if row[4] else "wrong password")
            self._failed(name, org, row, now, reason, remote)
            raise AuthenticationError(SIGN_IN_FAILED)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with transaction(self.conn):
            self.conn.execute("UPDATE user_passwords SET failures=0, first_failure_at=NULL, locked_until=NULL "
                              "WHERE user_name = ?", [name])
            if _HASHER.check_needs_rehash(row[0]):
                self.conn.execute("UPDATE user_passwords SET hash = ? WHERE user_name = ?",
                                  [_HASHER.hash(password), name])
            self.conn.execute("INSERT INTO console_sessions VALUES (?,?,?,?,?,NULL)",
                              [_sha(token), name, csrf, ts(now), ts(now)])
            self.conn.execute("UPDATE users SET last_active_at = ? WHERE name = ?", [ts(now), name])
            self.log.append(user=name, organization=org, action="sign-in", detail={"remote": remote}, at=now)
        logger.info("console sign-in: %s from %s", name, remote or "?")
        user = self.users.get(name)
        return SignedIn(ConsoleSession(user, csrf, now, now), token)

    def _failed(self, name: str, org: str, row, now: dt.datetime, reason: str, remote: str) -> None:
        s = self.settings
        with transaction(self.conn):
            self.log.append(user=name, organization=org, action="sign-in-failed",
                            detail={"reason": reason, "remote": remote}, at=now)
            if row is None or reason == "account locked":
                return
            # read again inside the write transaction: concurrent failures all count
            row = self.conn.execute("SELECT hash, failures, first_failure_at FROM user_passwords WHERE "
                                    "user_name = ?", [name]).fetchone()
            first = parse_ts(row[2]) if row[2] else None
            if first is None or now - first > dt.timedelta(minutes=s.lockout_window_minutes):
                failures, first = 1, now
            else:
                failures = row[1] + 1
            locked_until = None
            if failures >= s.lockout_failures:
                locked_until = now + dt.timedelta(minutes=s.lockout_minutes)
                self.log.append(user=name, organization=org, action="account-locked",
                                detail={"failures": failures, "until": ts(locked_until)}, at=now)
                logger.warning("console account %s locked after %d failed sign-ins", name, failures)
            self.conn.execute("UPDATE user_passwords SET failures=?, first_failure_at=?, locked_until=? "
                              "WHERE user_name=?", [failures, ts(first), locked_until and ts(locked_until), name])

    def unlock(self, actor: User, name: str) -> None:
        require(actor, Permission.MANAGE_USERS)
        with transaction(self.conn):
            self.users.get(name)
            self.conn.execute("UPDATE user_passwords SET failures=0, first_failure_at=NULL, locked_until=NULL "
                              "WHERE user_name = ?", [name])
            self.log.append(user=actor.name, organization=actor.organization, action="account-unlock",
                            detail={"user": name})

    def locked(self, name: str) -> dt.datetime | None:
        row = self.conn.execute("SELECT locked_until FROM user_passwords WHERE user_name = ?", [name]).fetchone()
        until = parse_ts(row[0]) if row and row[0] else None
        return until if until and until > self._clock() else None

    # -- sessions ----------------------------------------------------------------
    def session(self, token: str | None) -> ConsoleSession:
        """The live session a cookie names, refreshed; :class:`AuthenticationError`
        when there is none, it timed out or its user was disabled."""
        if not token:
            raise AuthenticationError("sign in first")
        now = self._clock()
        key = _sha(token)
        row = self.conn.execute("SELECT user_name, csrf, created_at, last_seen_at, ended_at FROM console_sessions "
                                "WHERE session_sha256 = ?", [key]).fetchone()
        if row is None or row[4] is not None:
            raise AuthenticationError("sign in first")
        created, last = parse_ts(row[2]), parse_ts(row[3])
        user = self.users.get(row[0])
        idle = now - last > dt.timedelta(minutes=self.settings.session_idle_minutes)
        old = now - created > dt.timedelta(hours=self.settings.session_max_hours)
        if idle or old or user.disabled:
            reason = "idle" if idle else "absolute" if old else "user disabled"
            with transaction(self.conn):
                self.conn.execute("UPDATE console_sessions SET ended_at = ? WHERE session_sha256 = ?", [ts(now), key])
                self.log.append(user=user.name, organization=user.organization, action="session-expired",
                                detail={"reason": reason}, at=now)
            raise AuthenticationError("your session ended (timed out); sign in again")
        if now - last > dt.timedelta(seconds=30):  # one write per half minute, not per request
            with transaction(self.conn):
                self.conn.execute("UPDATE console_sessions SET last_seen_at = ? WHERE session_sha256 = ?",
                                  [ts(now), key])
                self.conn.execute("UPDATE users SET last_active_at = ? WHERE name = ?", [ts(now), user.name])
            last = now
        return ConsoleSession(user, row[1], created, last)

    def still_valid(self, token: str | None) -> bool:
        """Whether the session would still be accepted now (for a long-lived
        stream); unlike :meth:`session` it neither refreshes nor ends it."""
        if not token:
            return False
        row = self.conn.execute("SELECT s.created_at, s.last_seen_at, s.ended_at, u.disabled FROM console_sessions s "
                                "JOIN users u ON u.name = s.user_name WHERE session_sha256 = ?",
                                [_sha(token)]).fetchone()
        if row is None or row[2] is not None or row[3]:
            return False
        now = self._clock()
        return (now - parse_ts(row[1]) <= dt.timedelta(minutes=self.settings.session_idle_minutes)
                and now - parse_ts(row[0]) <= dt.timedelta(hours=self.settings.session_max_hours))

    def sign_out(self, token: str | None) -> None:
        if not token:
            return
        now = self._clock()
        with transaction(self.conn):
            row = self.conn.execute("SELECT user_name FROM console_sessions WHERE session_sha256 = ? AND ended_at "
                                    "IS NULL", [_sha(token)]).fetchone()
            if row is None:
                return
            self.conn.execute("UPDATE console_sessions SET ended_at = ? WHERE session_sha256 = ?",
                              [ts(now), _sha(token)])
            user = self.users.get(row[0])
            self.log.append(user=user.name, organization=user.organization, action="sign-out", at=now)

    def csrf_ok(self, session: ConsoleSession, presented: str | None) -> bool:
        return bool(presented) and secrets.compare_digest(session.csrf, presented)
