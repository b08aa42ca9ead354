"""The collector: MQTT in, durable store, application-level ack out.

For each batch message on ``alpr/v1/devices/<device>/reads`` (received through
a shared subscription, so several collectors can split the load):

1. the topic must name a valid device, the message must fit the size limit and
   parse as a batch frame;
2. each envelope must name the topic's device, open with one of central's data
   keys, and hold a valid version-1 read of that device with the same read id;
   a device's own claims are checked against the registry (``device_facts``):
   the camera must be one registered to it, the capture time no earlier than
   its enrollment and no older than the retention period (``max_age``);
3. the valid reads are stored in one transaction (a re-sent read id is stored
   once; a read id the retention purge removed is never stored again) and only
   then acknowledged on ``.../<device>/ack``; reads that failed step 2 or were
   purged are named in the ack as rejected so the device parks them.

Everything rejected is counted by reason and logged with ids and counts, never
plate text. Nothing a device sends can stop the collector. If the store fails,
nothing is acknowledged and the device sends again later.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.wire import (
    Ack, EnvelopeError, EnvelopeHeader, MalformedMessage, Opener, Topics, decode_batch, decode_read, encode_ack,
)
from edge_agent.wire.audit import encode_audit_ack

from ..config import Mqtt
from ..errors import StoreError
from ..store import Store
from ..store.database import DatabaseError

logger = logging.getLogger(__name__)

REASONS = ("bad-topic", "unknown-device", "oversized", "malformed", "wrong-device", "undecryptable",
           "invalid-schema", "from-the-future", "expired", "unknown-camera", "before-enrollment", "purged")


# How far ahead of central's clock a read's capture time may be (devices' clocks drift),
# and how far before the device's enrollment.
FUTURE_SLACK = dt.timedelta(days=1)
ENROLLMENT_SLACK = dt.timedelta(days=1)


class Collector:
    def __init__(self, store: Store, opener: Opener, *, topic_prefix: str = "alpr/v1/devices",
                 max_message_bytes: int = 8 << 20, clock: Callable[[], dt.datetime] | None = None,
                 device_allowed: Callable[[str], bool] | None = None,
                 device_facts: Callable[[str], object | None] | None = None,
                 max_age: dt.timedelta | None = None) -> None:
        self.store = store
        self.device_allowed = device_allowed  # e.g. the registry: only active devices are stored
        # e.g. Registry.device_facts(): cameras and enrollment time of an active device, else None
        self.device_facts = device_facts
        self.max_age = max_age  # the longest retention period: anything older would be purged at once
        self.opener = opener
        self.topics = Topics(topic_prefix)
        self.max_message_bytes = max_message_bytes
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.counters: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        # Called after each commit with the stored reads (e.g. the hotlist matcher's
        # wake-up). A listener must be quick; its failure never affects the ack.
        self.on_stored: list[Callable[[tuple], None]] = []

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def reject(self, reason: str, n: int = 1, device: str | None = None) -> None:
        with self._lock:
            self.counters[f"rejected.{reason}"] += n
        logger.warning("rejected %d item(s) from %s: %s", n, device or "unknown device", reason)

    def handle(self, topic: str, payload: bytes) -> tuple[str, Ack] | None:
        """Process one message; returns (ack topic, ack) or None when there is
        nothing to acknowledge. Raises :class:`StoreError` if storing failed."""
        item = self.prepare(topic, payload)
        if item is None:
            return None
        return self.commit([item])[0]

    def prepare(self, topic: str, payload: bytes) -> "Prepared | None":
        """Check, open and validate one message (everything but storing);
        None when nothing in it can be acknowledged."""
        with self._lock:
            self.counters["messages"] += 1
        device = self.topics.device_of(topic)
        if device is None:
            self.reject("bad-topic")
            return None
        if self.device_allowed is not None and not self.device_allowed(device):
            self.reject("unknown-device", device=device)  # not enrolled, suspended or revoked: nothing stored
            return None
        facts = self.device_facts(device) if self.device_facts is not None else None
        if self.device_facts is not None and facts is None:
            self.reject("unknown-device", device=device)
            return None
        if len(payload) > self.max_message_bytes:
            self.reject("oversized", device=device)
            return None
        try:
            batch = decode_batch(payload, self.max_message_bytes)
        except MalformedMessage:
            self.reject("malformed", device=device)
            return None
        reads, rejected = [], []
        reasons: collections.Counter[str] = collections.Counter()
        for envelope in batch.envelopes:
            try:
                header = EnvelopeHeader.parse(envelope)
            except MalformedMessage:
                reasons["malformed"] += 1  # no trustworthy read id to name
                continue
            if header.device_id != device:
                rejected.append((header.read_id, "wrong-device"))
                reasons["wrong-device"] += 1
                continue
            try:
                _, plaintext = self.opener.open(envelope, header)
            except EnvelopeError:
                rejected.append((header.read_id, "undecryptable"))
                reasons["undecryptable"] += 1
                continue
            try:
                read = decode_read(plaintext)
            except MalformedMessage:
                rejected.append((header.read_id, "invalid-schema"))
                reasons["invalid-schema"] += 1
                continue
            if read.device_id != device or read.read_id != header.read_id:
                rejected.append((header.read_id, "wrong-device"))
                reasons["wrong-device"] += 1
                continue
            problem = self._implausible(read, facts)
            if problem:
                rejected.append((header.read_id, problem))
                reasons[problem] += 1
                continue
            reads.append(read)
        for reason, n in reasons.items():
            self.reject(reason, n, device)
        # Acknowledged even when nothing in it could be named: the device then knows
        # the batch arrived and which of its reads central did not name (it sends
        # those again, and parks them after a few such acks).
        return Prepared(device, batch.batch_id, tuple(reads), tuple(rejected))

    def _implausible(self, read, facts) -> str | None:
        """Why a device's own claims about a read cannot be true, or None."""
        now = self._clock()
        if read.captured_at > now + FUTURE_SLACK:  # a broken device clock: it would never expire
            return "from-the-future"
        if self.max_age is not None and read.captured_at < now - self.max_age:
            return "expired"  # older than any retention period: the purge would delete it at once
        if facts is not None:
            if read.camera_id not in facts.cameras:
                return "unknown-camera"
            if read.captured_at < facts.enrolled_at - ENROLLMENT_SLACK:
                return "before-enrollment"
        return None

    def commit(self, items: list["Prepared"]) -> list[tuple[str, Ack]]:
        """Store the reads of several prepared messages in ONE transaction
        (group commit), then return the acks to send. A read the retention
        purge removed is not stored again (the store checks its tombstone in
        the same transaction) and is named as rejected, ``purged``. Raises
        :class:`StoreError`; then nothing is acknowledged."""
        reads = [r for item in items for r in item.reads]
        stored = set(self.store.add_reads(reads, self._clock())) if reads else set()
        if stored:
            fresh = tuple(r for r in reads if r.read_id in stored)
            for listener in self.on_stored:
                try:
                    listener(fresh)
                except Exception:
                    logger.exception("a listener of stored reads failed (the reads are stored and acked)")
        with self._lock:
            self.counters["reads_stored"] += len(stored)
        acks = []
        for item in items:
            gone = tuple((r.read_id, "purged") for r in item.reads if r.read_id not in stored)
            if gone:
                self.reject("purged", len(gone), item.device)
            acks.append((self.topics.ack(item.device), Ack(item.batch_id, tuple(r.read_id for r in item.reads
                                                                                if r.read_id in stored),
                                                           item.rejected + gone)))
        return acks


    def commit_each(self, items: list["Prepared"]) -> list[tuple[str, Ack]]:
        """Store each message in its own transaction; the acks of those that
        were stored (a message whose store fails is not acknowledged). Gives
        up after two failures in a row: the database is down, not one message bad."""
        acks, failed_in_a_row = [], 0
        for item in items:
            try:
                acks.extend(self.commit([item]))
                failed_in_a_row = 0
            except StoreError:
                logger.warning("store refused batch %s of %s (%d reads); not acknowledged", item.batch_id,
                               item.device, len(item.reads))
                failed_in_a_row += 1
                if failed_in_a_row == 2:
                    break
        return acks


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A checked message waiting to be stored."""

    device: str
    batch_id: str
    reads: tuple
    rejected: tuple[tuple[str, str], ...]


class CollectorService:
    """Runs a :class:`Collector` on a paho MQTT v5 client until stopped.

    Two stages overlap: paho's network thread checks, opens and validates each
    message (:meth:`Collector.prepare`); a writer thread stores whatever has
    queued up in one transaction (group commit) and then publishes the acks.
    The queue is bounded, so a slow disk slows the reading of the socket
    instead of growing memory. The broker's PUBACK may precede the commit; a
    read is only ever acknowledged to the *device* after the commit, so a crash
    in between loses nothing: the device sends it again.
    """

    # The most reads one transaction stores. Each group dirties a page of every
    # random-keyed index (read id, plate, folded plate, image key) per read or so,
    # whatever its size: on SQLite with 2.5 KB crops, groups of 10,000 wrote 9 KiB per
    # read against 24 KiB with 2,000, and two writers stored 23-26k reads/s instead of
    # 15k (docs/scaling.md). Groups are only this large when the writer is behind.
    MAX_GROUP_READS = 10_000

    def __init__(self, cfg: Mqtt, collector: Collector, audit_handler=None, status_handler=None,
                 health_handler=None, update_service=None) -> None:
        self.cfg = cfg
        self.collector = collector
        self.audit_handler = audit_handler  # central.fleet.device_audit.DeviceAuditHandler: device audit logs
        self.status_handler = status_handler  # central.fleet.device_status.DeviceStatusHandler: online/offline
        self.health_handler = health_handler  # central.fleet.health.HealthHandler: heartbeats
        self.config_handler = None  # central.fleet.remote_config.RemoteConfigHandler: pushes configurations, states
        self.update_service = update_service  # central.fleet.update_service.UpdateService: rollouts
        self.ready = threading.Event()
        self.last_error: str | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=mqtt.MQTTv5)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(1, 30)
        c.max_inflight_messages_set(200)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c
        self._pending: queue.Queue[Prepared] = queue.Queue(maxsize=64)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.last_error = f"broker refused connection: {reason_code}"
            logger.error("broker refused the collector: %s", reason_code)
            return
        logger.info("collector %s connected to %s:%s", self.cfg.client_id, self.cfg.host, self.cfg.port)
        topics = [(Topics(self.cfg.topic_prefix).reads_subscription(self.cfg.share_group), 1)]
        if self.audit_handler is not None:
            topics.append((Topics(self.cfg.topic_prefix).audit_subscription(self.cfg.share_group), 1))
        if self.status_handler is not None:  # not shared: every collector gets the retained state
            topics.append((self.status_handler.subscription, 1))
        if self.health_handler is not None:
            topics.append((self.health_handler.subscription(self.cfg.share_group), 1))
        if self.config_handler is not None:  # not shared: every collector gets the retained states
            topics.append((self.config_handler.subscription, 1))
        if self.update_service is not None:  # update fetches and state reports (rollouts)
            topics += [(t, 1) for t in self.update_service.subscriptions(self.cfg.share_group)]
        client.subscribe(topics)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            self.last_error = "broker refused the reads subscription"
            logger.error("broker refused the reads subscription: %s", reason_codes)
            return
        self.last_error = None
        self.ready.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.ready.clear()
        if reason_code != 0:
            logger.warning("collector disconnected: %s; reconnecting", reason_code)

    def _on_message(self, client, userdata, message):
        try:
            if self.audit_handler is not None and self.audit_handler.accepts(message.topic):
                device = self.audit_handler.topics.audit_device_of(message.topic)
                allowed = self.collector.device_allowed
                if allowed is not None and not allowed(device):
                    self.collector.reject("unknown-device", device=device)  # same rule as for reads
                    return
                ack = self.audit_handler.receive(message.topic, message.payload)
                if ack is not None:  # committed: the device may now mark these records sent
                    client.publish(self.audit_handler.topics.audit_ack(device), encode_audit_ack(ack), qos=1)
                return
            if self.health_handler is not None and self.health_handler.accepts(message.topic):
                device = self.health_handler.topics.health_device_of(message.topic)
                allowed = self.collector.device_allowed
                if allowed is not None and not allowed(device):
                    self.collector.reject("unknown-device", device=device)  # same rule as for reads
                    return
                self.health_handler.handle(message.topic, message.payload)
                return
            if self.config_handler is not None and self.config_handler.accepts(message.topic):
                device = self.config_handler.topics.config_state_device_of(message.topic)
                allowed = self.collector.device_allowed
                if allowed is None or allowed(device):
                    self.config_handler.handle(message.topic, message.payload)
                return
            if self.update_service is not None and self.update_service.accepts(message.topic):
                device = self.update_service.topics.update_of(message.topic)[0]
                allowed = self.collector.device_allowed
                if allowed is not None and not allowed(device):
                    self.collector.reject("unknown-device", device=device)  # same rule as for reads
                    return
                self.update_service.handle(client, message.topic, message.payload)
                return
            if self.status_handler is not None and message.topic.endswith("/status"):
                device = self.status_handler.device_of(message.topic)
                allowed = self.collector.device_allowed
                if device is not None and (allowed is None or allowed(device)):
                    self.status_handler.handle(message.topic, message.payload)
                return
            item = self.collector.prepare(message.topic, message.payload)
        except (StoreError, *DatabaseError) as exc:
            # A device's audit records, status or heartbeat that central cannot write now
            # (its disk full, the database locked): said once per message and counted; the
            # device sends unconfirmed audit records again, status and heartbeats anew.
            self.collector.count("handler_store_failed")
            logger.error("cannot record the message on %s: %s", message.topic, exc)
            return
        except Exception:  # a message must never stop the collector
            logger.exception("unexpected error handling a message on %s", message.topic)
            return
        if item is not None:
            self._pending.put(item)  # blocks while the writer is behind: backpressure

    def _write(self, stop: threading.Event) -> None:
        while True:
            try:
                items = [self._pending.get(timeout=0.5)]
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            n = len(items[0].reads)
            while n < self.MAX_GROUP_READS:
                try:
                    items.append(self._pending.get_nowait())
                except queue.Empty:
                    break
                n += len(items[-1].reads)
            try:
                acks = self.collector.commit(items)
            except StoreError:
                # One message the database refuses must not keep failing the others it
                # is grouped with (each resend lands in a new group): store them one by one.
                acks = self.collector.commit_each(items) if len(items) > 1 else []
                if len(acks) < len(items):
                    logger.exception("store failed; %d of %d batches not acknowledged (devices will resend)",
                                     len(items) - len(acks), len(items))
                    stop.wait(1.0)
            except Exception:  # the writer must go on
                logger.exception("unexpected error storing %d batches; not acknowledged", len(items))
                stop.wait(1.0)
                continue
            for topic, ack in acks:
                self.client.publish(topic, encode_ack(ack), qos=1)

    def run(self, stop: threading.Event) -> None:
        # No persistent session: on a shared subscription the broker goes on dealing
        # batches to a gone member's session until it expires, so a collector that
        # died would hold a share of every device's batches until each device's ack
        # timeout, again and again. Ending the session with the connection hands its
        # share to the others at once; what it held unacknowledged, devices resend.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive, clean_start=True,
                                  properties=props)
        writer_stop = threading.Event()
        writer = threading.Thread(target=self._write, args=(writer_stop,), name="collector-writer", daemon=True)
        writer.start()
        self.client.loop_start()
        last_log = time.monotonic()
        try:
            while not stop.wait(1.0):
                if self.config_handler is not None and self.ready.is_set():
                    try:  # configurations pushed since: to the broker, retained
                        self.config_handler.publish_pending(self.client)
                    except Exception:  # tried again in a second
                        logger.exception("publishing pushed configurations failed")
                if self.update_service is not None and self.ready.is_set():
                    try:  # offers and withdrawals due (rollouts)
                        self.update_service.tick(self.client)
                    except Exception:  # noqa: BLE001 - the collector goes on
                        logger.exception("publishing update offers failed; retrying")
                if time.monotonic() - last_log >= 60:
                    logger.info("collector counters: %s", dict(self.collector.counters))
                    last_log = time.monotonic()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            writer_stop.set()  # the writer stores what is queued, then ends
            writer.join(timeout=30)
