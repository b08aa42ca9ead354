"""Sync: drain the outbox to central over MQTT v5 and delete what central acks.

The outbox is the only source of truth. A batch is published QoS 1 and stays
in the outbox until central's application-level ack names its reads as stored;
a batch without an ack within ``ack_timeout`` (or when the connection drops) is
sent again, and central stores a re-sent read once. Publishing while
disconnected never happens, so nothing can be dropped silently by the client
library's queue.

Fresh reads first: at every (re)connect the reads already buffered are the
*backlog* (``seq <= boundary``), sent oldest first, ``max_in_flight`` batches at
once, within ``max_rate``, except the newest ``live_batch_size`` of them (read
while the link was down, they may be seconds old: a wanted car that passed
just before the reconnect), which go first on the *live lane* with the reads
buffered after the reconnect. The live lane sends small
batches (``live_batch_size``), at most ``live_in_flight`` of them unacknowledged,
sent ahead of the next backlog batch and outside the rate cap, so a read
captured while a device catches up after an outage reaches central within
seconds, not after the whole backlog. The two lanes cover disjoint reads; a
resend (ack timeout, reconnect, unnamed read) starts both over, and central
stores a re-sent read once, so nothing is lost or duplicated by the reordering.

Status: retained ``online`` on connect, retained ``offline`` as last will and on
clean shutdown.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .errors import BufferError_
from .outbox import Outbox
from .wire import MalformedMessage, Topics, decode_ack, encode_batch, new_read_id
from .wire.schema import MAX_BATCH_BYTES

# Central acknowledged a batch without naming one of its reads (it could not
# decode that envelope) this many times: the read is parked, counted, not resent.
MAX_UNNAMED = 3

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _InFlight:
    read_ids: tuple[str, ...]
    last_seq: int
    sent_at: float
    live: bool = False


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    host: str
    port: int
    device_id: str
    tls: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    batch_size: int = 500
    max_in_flight: int = 8
    max_rate: float = 0.0
    ack_timeout: float = 30.0
    keepalive: int = 30
    topic_prefix: str = "alpr/v1/devices"
    live_batch_size: int = 50      # reads per live-lane batch (fresh reads, sent ahead of a backlog)
    live_in_flight: int = 2        # unacknowledged live-lane batches at once


class SyncClient:
    """Runs in its own thread (:meth:`run`) until ``stop`` is set."""

    def __init__(self, settings: SyncSettings, outbox: Outbox, *, clock=time.monotonic) -> None:
        self.s = settings
        self.outbox = outbox
        self.topics = Topics(settings.topic_prefix)
        self._clock = clock
        self._acks: queue.Queue[bytes] = queue.Queue()
        # Set by an ack, a new read in the outbox, or a (re)connect: the loop
        # sleeps on it instead of polling the database.
        self._wake = threading.Event()
        outbox.on_add = self._wake.set
        self._connected = threading.Event()
        self._ready = threading.Event()      # connected and subscribed to our ack topic
        self._inflight: dict[str, _InFlight] = {}
        self._cursor = 0                     # backlog lane: highest seq sent
        self._boundary = 0                   # reads up to this seq were buffered when the session began
        self._live_cursor = 0                # live lane: highest seq sent
        self._generation = 0                 # bumps on every (re)connect
        self._sent_generation = -1
        self._tokens = 0.0
        self._token_time = clock()
        self.last_ack_at: float | None = None  # wall clock, for status
        self.last_error: str | None = None
        self.counters = {"batches_sent": 0, "reads_sent": 0, "acks": 0, "resends": 0, "bad_acks": 0,
                         "unnamed_in_ack": 0, "parked_unnamed": 0, "parked_too_large": 0,
                         "live_batches_sent": 0, "live_reads_sent": 0}
        self._unnamed: dict[str, int] = {}  # read id -> acks of its batch that named it neither way
        self.audit_publisher = None          # edge_agent.auditlog.AuditPublisher, set by the agent
        self._audit_sub_mid = None
        self.audit_acks = True               # False: the broker refused our audit-ack subscription
        self.config_receiver = None          # edge_agent.remote_config.RemoteConfigAgent, set by the agent
        self._config_sub_mid = None
        self.update_client = None            # edge_agent.update.fetcher.UpdateClient, set by the agent
        self.client = self._make_client()

    # -- paho wiring -----------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.s.device_id, protocol=mqtt.MQTTv5)
        if self.s.tls:
            c.tls_set(ca_certs=self.s.ca_file, certfile=self.s.cert_file, keyfile=self.s.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.will_set(self.topics.status(self.s.device_id), b"offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=60)
        c.max_inflight_messages_set(max(20, self.s.max_in_flight * 2))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        return c

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            # Never mark ourselves connected after a refusal.
            self.last_error = f"broker refused connection: {reason_code}"
            logger.error("broker %s:%s refused the connection: %s", self.s.host, self.s.port, reason_code)
            return
        logger.info("connected to broker %s:%s", self.s.host, self.s.port)
        self.last_error = None
        self._connected.set()
        client.subscribe(self.topics.ack(self.s.device_id), qos=1)
        # its own subscription: a refusal must not stop the reads
        self._audit_sub_mid = client.subscribe(self.topics.audit_ack(self.s.device_id), qos=1)[1]
        client.publish(self.topics.status(self.s.device_id), b"online", qos=1, retain=True)
        if self.config_receiver is not None:  # remote configuration: its own subscription, its state retained
            self._config_sub_mid = client.subscribe(self.topics.config(self.s.device_id), qos=1)[1]
            self.config_receiver.publish = lambda payload: client.publish(
                self.topics.config_state(self.s.device_id), payload, qos=1, retain=True)
            client.publish(self.topics.config_state(self.s.device_id), self.config_receiver.state_payload(),
                           qos=1, retain=True)
        if self.update_client is not None:  # update offers and chunks: their own subscriptions
            self.update_client.on_connect(client)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if mid is not None and mid == self._config_sub_mid:
            if any(rc.is_failure for rc in reason_codes):
                logger.warning("broker refused the remote configuration subscription (an older broker ACL: run "
                               "'alpr-central broker config'); remote configuration is off until it allows it")
            return
        if self.update_client is not None and self.update_client.on_subscribed(mid, reason_codes):
            return
        if mid == self._audit_sub_mid:
            refused = any(rc.is_failure for rc in reason_codes)
            if refused and self.audit_acks:
                logger.warning("broker refused the audit-ack subscription (an older broker ACL: run "
                               "'alpr-central broker config'); audit records count as sent on the broker's ack")
            self.audit_acks = not refused
            return
        if any(rc.is_failure for rc in reason_codes):
            self.last_error = "broker refused the ack subscription"
            logger.error("broker refused the subscription to our ack topic")
            return
        self._generation += 1
        self._ready.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        self._ready.clear()
        if self.update_client is not None:
            self.update_client.on_disconnect()
        if reason_code != 0:
            self.last_error = f"disconnected: {reason_code}"
            logger.warning("disconnected from broker: %s; reconnecting with backoff", reason_code)

    def _on_message(self, client, userdata, message):
        if self.config_receiver is not None and message.topic == self.topics.config(self.s.device_id):
            self.config_receiver.on_message(message.payload)
            return
        if self.audit_publisher is not None and message.topic == self.topics.audit_ack(self.s.device_id):
            self.audit_publisher.on_ack(message.payload)
            return
        if self.update_client is not None and self.update_client.accepts(message.topic):
            self.update_client.on_message(message.topic, message.payload)
            return
        self._acks.put(message.payload)
        self._wake.set()

    # -- the loop --------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive, clean_start=True)
        self.client.loop_start()
        try:
            while not stop.is_set():
                try:
                    self._step(stop)
                except Exception:  # keep syncing whatever one step did
                    logger.exception("sync step failed; retrying")
                    stop.wait(1.0)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            if self._connected.is_set():
                info = self.client.publish(self.topics.status(self.s.device_id), b"offline", qos=1, retain=True)
                info.wait_for_publish(timeout=2)
            self.client.disconnect()
        except Exception:  # pragma: no cover - best effort on the way out
            logger.debug("error during sync shutdown", exc_info=True)
        self.client.loop_stop()

    def _restart(self) -> None:
        """Send everything unacknowledged again, oldest first, from both lanes."""
        self._inflight.clear()
        self._cursor = 0
        self._live_cursor = self._boundary

    def _step(self, stop: threading.Event) -> None:
        self._drain_acks(timeout=0.0)
        if not self._ready.is_set():
            self._inflight.clear()
            self._cursor = 0
            self._wake.wait(0.5)
            self._wake.clear()
            return
        if self._sent_generation != self._generation:
            # New session: anything in flight may have been lost; resend it. What is
            # buffered now is the backlog, but for its newest reads; they and what comes
            # later take the live lane.
            if self._inflight:
                self.counters["resends"] += len(self._inflight)
            self._boundary = self.outbox.seq_before_newest(self.s.live_batch_size)
            self._restart()
            self._sent_generation = self._generation
        now = self._clock()
        if self.audit_publisher is not None:
            self.audit_publisher.acks_enabled = self.audit_acks
            self.audit_publisher.step(self.client, self.topics.audit(self.s.device_id), self._generation, now)
        expired = [b for b, f in self._inflight.items() if now - f.sent_at > self.s.ack_timeout]
        if expired:
            logger.warning("%d batches not acknowledged within %.0fs; resending", len(expired), self.s.ack_timeout)
            self.counters["resends"] += len(expired)
            self._restart()
        sent = self._send_live(now)
        while self._backlog_in_flight() < self.s.max_in_flight and self._ready.is_set():
            self._send_live(now)  # a read buffered meanwhile goes ahead of the next backlog batch
            allowed = self._take_tokens()
            if allowed == 0:
                break
            rows = self.outbox.pending(self._cursor, allowed, self._boundary)
            if not rows and self._live_behind():
                rows = self.outbox.pending(self._cursor, allowed, self._boundary)
            if not rows:
                self._give_back(allowed)
                break
            rows = self._fit(rows)
            if not rows:
                continue
            if not self._publish(rows, now, live=False):
                self._give_back(len(rows))
                break
            self._cursor = rows[-1].seq
            sent = True
        if not sent:
            # Nothing to send or the window is full: sleep until an ack, a new
            # read or a connection change; wake anyway to check ack timeouts.
            self._wake.wait(0.05 if self.s.max_rate > 0 and self._tokens < 1 else 1.0)
            self._wake.clear()

    def _live_behind(self) -> bool:
        """The backlog lane is done but reads pile up behind the live lane's
        small window (a burst while online): what is waiting now becomes
        backlog, sent at the backlog lane's pace; reads buffered after it stay
        live. The lanes stay disjoint: the backlog lane resumes where the live
        lane stopped."""
        newest = self.outbox.last_seq()
        if newest - self._live_cursor <= self.s.live_batch_size * self.s.live_in_flight:
            return False
        self._cursor, self._boundary = self._live_cursor, newest
        self._live_cursor = newest
        return True

    def _backlog_in_flight(self) -> int:
        return sum(1 for f in self._inflight.values() if not f.live)

    def _send_live(self, now: float) -> bool:
        """Send reads buffered since the session began, ahead of the backlog."""
        sent = False
        while (sum(1 for f in self._inflight.values() if f.live) < self.s.live_in_flight
               and self._ready.is_set()):
            rows = self.outbox.pending(self._live_cursor, max(1, min(self.s.live_batch_size, self.s.batch_size)))
            if not rows:
                break
            rows = self._fit(rows, metered=False)  # the live lane is not rate-capped
            if not rows:
                continue
            if not self._publish(rows, now, live=True):
                break
            self._live_cursor = rows[-1].seq
            sent = True
        return sent

    def _publish(self, rows, now: float, *, live: bool) -> bool:
        batch_id = new_read_id()
        info = self.client.publish(self.topics.reads(self.s.device_id),
                                   encode_batch(batch_id, [r.envelope for r in rows]), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            logger.warning("publish refused by client (%s); will retry", mqtt.error_string(info.rc))
            return False
        self._inflight[batch_id] = _InFlight(tuple(r.read_id for r in rows), rows[-1].seq, now, live)
        lane = "live_" if live else ""
        self.counters[f"{lane}batches_sent"] += 1
        self.counters[f"{lane}reads_sent"] += len(rows)
        return True

    def _fit(self, rows, *, metered: bool = True):
        """The first of ``rows`` that fit in one batch of ``MAX_BATCH_BYTES`` (a
        bigger message is refused by the broker, which drops the connection, and
        would be sent again after every reconnect). A read too big for a batch of
        its own is parked in the outbox, counted, never sent."""
        size, fit = 64, []
        for r in rows:
            n = 4 + len(r.envelope)
            if size + n > MAX_BATCH_BYTES:
                break
            fit.append(r)
            size += n
        if not fit:
            self.outbox.mark_rejected([(rows[0].read_id, "too large to send")])
            self.counters["parked_too_large"] += 1
            logger.error("a read of %d bytes is larger than a batch may be (%d); parked in the outbox",
                         len(rows[0].envelope), MAX_BATCH_BYTES)
        if metered:
            self._give_back(len(rows) - len(fit))
        return fit

    def _take_tokens(self) -> int:
        if self.s.max_rate <= 0:
            return self.s.batch_size
        now = self._clock()
        # the bucket holds at least one read, so a rate under 1 read/s still sends
        self._tokens = min(max(self.s.max_rate, 1.0), self._tokens + (now - self._token_time) * self.s.max_rate)
        self._token_time = now
        n = min(self.s.batch_size, int(self._tokens))
        self._tokens -= n
        return n

    def _give_back(self, n: int) -> None:
        if self.s.max_rate > 0:
            self._tokens += n

    def _drain_acks(self, timeout: float) -> None:
        """Handle every ack waiting, deleting their reads in one transaction (one
        fsync for many acks while a backlog drains, not one per batch)."""
        try:
            payloads = [self._acks.get(timeout=timeout) if timeout else self._acks.get_nowait()]
        except queue.Empty:
            return
        while True:
            try:
                payloads.append(self._acks.get_nowait())
            except queue.Empty:
                break
        acks = []
        for payload in payloads:
            try:
                acks.append(decode_ack(payload))
            except MalformedMessage:
                self.counters["bad_acks"] += 1
                logger.warning("ignored a malformed ack (%d bytes)", len(payload))
        if acks:
            self._handle_acks(acks)

    def _handle_acks(self, acks) -> None:
        try:
            deleted = self.outbox.acknowledge([rid for ack in acks for rid in ack.stored])
            rejected = [r for ack in acks for r in ack.rejected]
            if rejected:
                self.outbox.mark_rejected(rejected)
                logger.warning("central rejected %d reads of %d batches; parked in the outbox", len(rejected),
                               sum(1 for ack in acks if ack.rejected))
        except BufferError_ as exc:  # a full disk: the batches stay in flight and are sent (and acked) again
            logger.error("%s; the batches will be sent again", exc)
            return
        for ack in acks:
            sent = self._inflight.pop(ack.batch_id, None)
            if sent is not None:
                self._unnamed_reads(ack, sent)
            self.counters["acks"] += 1
        self.last_ack_at = time.time()
        logger.debug("%d batches acknowledged: %d reads deleted", len(acks), deleted)

    def _unnamed_reads(self, ack, sent: _InFlight) -> None:
        """Reads of an acknowledged batch that central named neither stored nor
        rejected (it could not decode their envelopes): sent again, and parked
        after ``MAX_UNNAMED`` such acks, so none is stranded or retried for ever."""
        named = set(ack.stored) | {rid for rid, _why in ack.rejected}
        for rid in named:
            self._unnamed.pop(rid, None)
        unnamed = [rid for rid in sent.read_ids if rid not in named]
        if not unnamed:
            return
        self.counters["unnamed_in_ack"] += len(unnamed)
        give_up = []
        for rid in unnamed:
            self._unnamed[rid] = self._unnamed.get(rid, 0) + 1
            if self._unnamed[rid] >= MAX_UNNAMED:
                give_up.append((rid, "central never named it in an ack"))
                del self._unnamed[rid]
        if give_up:
            try:
                self.counters["parked_unnamed"] += self.outbox.mark_rejected(give_up)
            except BufferError_ as exc:
                logger.error("%s", exc)
        logger.warning("central's ack of batch %s left %d of its reads unnamed; %s", ack.batch_id, len(unnamed),
                       f"{len(give_up)} parked after {MAX_UNNAMED} tries, the rest sent again" if give_up
                       else "sending them again")
        # send again from the oldest unacknowledged read (central stores a re-sent read once)
        self._cursor, self._live_cursor = 0, self._boundary

    @property
    def connected(self) -> bool:
        return self._ready.is_set()
