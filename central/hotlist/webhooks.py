"""Outbound webhooks for dispatch / CAD systems.

Each ``[[hotlist.webhooks]]`` receiver gets every hit of its categories as a
JSON POST (:meth:`central.hotlist.hits.HitBook.payload`: the read with its
crop and context image in base64, camera, location and heading, and the
entry's fields). The matcher queues a delivery row in the same transaction
as the hit (``webhook_deliveries``), so a delivery survives a restart; one
thread per receiver sends them, so a slow or dead receiver delays only
itself, never ingest nor the other receivers.

Signature: headers ``X-ALPR-Timestamp: <unix seconds>`` and
``X-ALPR-Signature: sha256=<hex>``, the HMAC-SHA256 under the receiver's
secret of ``<timestamp>.<body bytes>``. The receiver recomputes it, compares
in constant time, and refuses old timestamps (replays). ``X-ALPR-Delivery``
carries the delivery id (the same on every retry: deduplicate on it).

A better read of a hit's pass (:mod:`.matcher`) is queued, in the matcher's
transaction, for every receiver the hit was queued for: ``X-ALPR-Event:
hit-upgraded`` (the hit moved to it) or ``hit-better-read-noted`` (the hit
was checked and stays), body :meth:`HitBook.upgrade_payload`. It is a row of
the same queue (``upgrade_id`` set), so it has its own delivery id, and the
same sender signs, retries and records it, after the hit's own delivery to
that receiver has ended.

A non-2xx answer, a timeout or a refused connection is retried with
exponential backoff (``retry_seconds``, default 2, then 4, 8 ... seconds, at
most 10 minutes apart) up to
``max_attempts``; then the delivery is ``failed``. Every attempt is recorded
(``webhook_attempts``: time, HTTP status or error, duration), never the body.
The secret comes from a file readable by its owner only (0600). Redirects
are not followed (a 3xx is a failed attempt) and no proxy from the
environment is used; an https receiver is verified against the system CAs or
the receiver's ``ca_file``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..config import Webhook
from ..errors import ConfigError, PolicyError
from ..governance.audit import parse_ts, transaction, ts, utcnow
from ..governance.users import Permission, User, require
from .hits import UPGRADE_EVENTS, HitBook
from .matcher import connect

logger = logging.getLogger(__name__)

MAX_BACKOFF = 600.0


def read_secret(path: str | Path) -> bytes:
    """The receiver's secret; refused unless only its owner can read the file."""
    p = Path(path)
    try:
        if p.stat().st_mode & 0o077:
            raise ConfigError(f"{p}: webhook secret readable by others; chmod 600 it")
        secret = p.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the webhook secret ({exc.strerror})") from None
    if len(secret) < 16:
        raise ConfigError(f"{p}: a webhook secret is at least 16 bytes")
    return secret


def write_secret(path: str | Path) -> bytes:
    """Generate a random secret into a new 0600 file (for setup and tests)."""
    secret = os.urandom(32).hex().encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret + b"\n")
    return secret


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
                     tolerance: float = 300.0) -> bool:
    """What a receiver does (documented for integrators; used by the tests)."""
    try:
        t = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - t) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, t, body), signature or "")


def backoff(attempts: int, first: float = 2.0) -> float:
    """Seconds before the next try after ``attempts`` failed ones."""
    return min(MAX_BACKOFF, first * 2.0 ** (attempts - 1))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx itself is the answer: a failed attempt


class WebhookSender:
    """Delivers one receiver's queue; :meth:`run` in its own thread.

    The queue is a table (:attr:`deliveries`) with its attempts table; a
    subclass names them and builds the body (:meth:`message`). Deliveries of
    one subject to one receiver go in order: one waits while an earlier one
    of the same subject is pending (being retried), so a receiver never gets
    an update of something before the thing itself. :class:`Sender` delivers
    hits and their upgrades; :class:`central.fleet.alert_feed.AlertSender`
    fleet alerts."""

    event = ""                           # X-ALPR-Event (unless message() says otherwise)
    deliveries = ""                      # delivery_id, <subject>, endpoint, status, attempts, next_at, created_at
    attempts_table = ""
    subject = ""

    def __init__(self, path: str | Path, hook: Webhook, *, clock=utcnow) -> None:
        self.hook = hook
        self.secret = read_secret(hook.secret_file)
        self.conn = connect(path)
        self._clock = clock
        self.wakeup = threading.Event()
        handlers = [urllib.request.ProxyHandler({}), _NoRedirect()]
        if hook.url.startswith("https://"):
            context = ssl.create_default_context(cafile=hook.ca_file or None)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def due(self, limit: int = 20) -> list[tuple[int, int, int]]:
        """Deliveries due now, each leased to this sender (its ``next_at`` moved
        past the attempt's timeout) in one transaction, so that the senders of
        several collector processes never send the same delivery at once."""
        now = self._clock()
        lease = ts(now + dt.timedelta(seconds=self.hook.timeout * limit + 30))
        with transaction(self.conn):
            rows = self.conn.execute(f"SELECT delivery_id, {self.subject}, attempts FROM {self.deliveries} d "
                                     f"WHERE endpoint = ? AND status = 'pending' AND next_at <= ? AND {self._ready} "
                                     "ORDER BY delivery_id LIMIT ?", [self.hook.name, ts(now), limit]).fetchall()
            self.conn.executemany(f"UPDATE {self.deliveries} SET next_at = ? WHERE delivery_id = ?",
                                  [(lease, r[0]) for r in rows])
        return rows

    def next_due(self) -> dt.datetime | None:
        row = self.conn.execute(f"SELECT min(next_at) FROM {self.deliveries} d WHERE endpoint = ? "
                                f"AND status = 'pending' AND {self._ready}", [self.hook.name]).fetchone()
        return parse_ts(row[0]) if row[0] else None

    @property
    def _ready(self) -> str:
        """SQL: delivery ``d`` waits for no earlier pending one of its subject."""
        return (f"NOT EXISTS (SELECT 1 FROM {self.deliveries} p WHERE p.{self.subject} = d.{self.subject} "
                f"AND p.endpoint = d.endpoint AND p.status = 'pending' AND p.delivery_id < d.delivery_id)")

    def payload(self, subject_id: int) -> dict:
        """The JSON body of a delivery of ``subject_id``; PolicyError if it is gone."""
        raise NotImplementedError

    def message(self, delivery_id: int, subject_id: int) -> tuple[str, dict]:
        """The event name (``X-ALPR-Event``) and JSON body of one delivery."""
        return self.event, self.payload(subject_id)

    def deliver(self, delivery_id: int, hit_id: int, attempts: int) -> bool:
        try:
            event, doc = self.message(delivery_id, hit_id)
            body = json.dumps({**doc, "delivery_id": delivery_id}, sort_keys=True).encode()
        except PolicyError:  # the hit was purged meanwhile
            with transaction(self.conn):
                self.conn.execute(f"UPDATE {self.deliveries} SET status = 'failed' WHERE delivery_id = ?",
                                  [delivery_id])
            return False
        stamp = int(time.time())
        request = urllib.request.Request(self.hook.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "alpr-central-webhook/1",
            "X-ALPR-Timestamp": str(stamp), "X-ALPR-Signature": sign(self.secret, stamp, body),
            "X-ALPR-Delivery": str(delivery_id), "X-ALPR-Event": event})
        started = time.monotonic()
        code, error = None, ""
        try:
            with self._opener.open(request, timeout=self.hook.timeout) as response:
                code = response.status
                response.read(65536)
        except urllib.error.HTTPError as exc:
            code, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            error = f"{type(reason).__name__}: {reason}"[:200]
        seconds = time.monotonic() - started
        ok = code is not None and 200 <= code < 300
        attempt = attempts + 1
        now = self._clock()
        status = "delivered" if ok else ("failed" if attempt >= self.hook.max_attempts else "pending")
        delay = backoff(attempt, self.hook.retry_seconds)
        with transaction(self.conn):
            self.conn.execute(f"INSERT INTO {self.attempts_table} VALUES (?,?,?,?,?,?)",
                              [delivery_id, attempt, ts(now), code, error, seconds])
            self.conn.execute(f"UPDATE {self.deliveries} SET attempts = ?, status = ?, next_at = ? "
                              "WHERE delivery_id = ?",
                              [attempt, status, ts(now + dt.timedelta(seconds=delay)), delivery_id])
        if ok:
            logger.info("webhook %s: delivery %d (%s %d) delivered on attempt %d", self.hook.name, delivery_id,
                        event, hit_id, attempt)
        else:
            logger.warning("webhook %s: delivery %d (%s %d) attempt %d failed (%s)%s", self.hook.name,
                           delivery_id, event, hit_id, attempt, error or code,
                           "; giving up" if status == "failed" else f"; retry in {delay:.1f}s")
        return ok

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for delivery_id, hit_id, attempts in self.due():
                    if stop.is_set():
                        break
                    self.deliver(delivery_id, hit_id, attempts)
                nxt = self.next_due()
            except Exception:
                logger.exception("webhook %s: sender round failed; retrying", self.hook.name)
                stop.wait(2.0)
                continue
            wait = 5.0 if nxt is None else max(0.05, min(5.0, (nxt - self._clock()).total_seconds()))
            self.wakeup.wait(wait)
            self.wakeup.clear()
        self.conn.close()


class Sender(WebhookSender):
    """Delivers one receiver's hits (``X-ALPR-Event: hit``) and the upgrades of
    those hits (``hit-upgraded``, ``hit-better-read-noted``: a delivery row
    with an ``upgrade_id``), from ``webhook_deliveries``. An upgrade goes after
    the hit's own delivery to the receiver (delivered or given up)."""

    event = "hit"
    deliveries = "webhook_deliveries"    # ... and upgrade_id (NULL: the hit itself)
    attempts_table = "webhook_attempts"
    subject = "hit_id"

    def __init__(self, path: str | Path, hook: Webhook, *, clock=utcnow) -> None:
        super().__init__(path, hook, clock=clock)
        self.book = HitBook(self.conn, clock=clock)

    def payload(self, subject_id: int) -> dict:
        return self.book.payload(subject_id)

    def message(self, delivery_id: int, subject_id: int) -> tuple[str, dict]:
        row = self.conn.execute("SELECT upgrade_id FROM webhook_deliveries WHERE delivery_id = ?",
                                [delivery_id]).fetchone()
        if row is None or row[0] is None:
            return self.event, self.payload(subject_id)
        doc = self.book.upgrade_payload(row[0])
        return doc["type"], doc


def deliveries(conn, actor: User, hit_id: int) -> list[dict]:
    """A hit's deliveries and their attempts (``view-hits``)."""
    require(actor, Permission.VIEW_HITS)
    out = []
    for did, endpoint, status, attempts, created, upgrade_id, applied in conn.execute(
            "SELECT d.delivery_id, d.endpoint, d.status, d.attempts, d.created_at, d.upgrade_id, u.applied "
            "FROM webhook_deliveries d LEFT JOIN hit_upgrades u ON u.upgrade_id = d.upgrade_id WHERE d.hit_id = ? "
            "ORDER BY d.delivery_id", [hit_id]).fetchall():
        history = [{"attempt": a, "at": at, "status_code": code, "error": err, "seconds": sec}
                   for a, at, code, err, sec in conn.execute(
                       "SELECT attempt, at, status_code, error, seconds FROM webhook_attempts WHERE delivery_id = ? "
                       "ORDER BY attempt", [did]).fetchall()]
        event = "hit" if upgrade_id is None else UPGRADE_EVENTS[bool(applied)]
        out.append({"delivery_id": did, "endpoint": endpoint, "event": event, "upgrade_id": upgrade_id,
                    "status": status, "attempts": attempts, "created_at": created, "history": history})
    return out
