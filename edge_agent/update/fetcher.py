"""Updates offered by central over MQTT (:mod:`edge_agent.wire.update`):
take an offer, fetch the bundle in chunks (each checked against the offer's
SHA-256, a bad one asked for again), check the whole file and the bundle's
signature with the trusted release key, and hand it to the root-side step
(``alpr-edge update apply-spool``, started by ``alpr-edge-update.path`` when a
bundle appears in the spool folder). Every state goes back to central.

The agent runs as ``alpr`` with ``NoNewPrivileges``: it cannot switch the
root-owned releases nor restart itself, so it never installs anything. It
writes the verified bundle into ``<data_dir>/update/spool/`` (renamed there
whole, so the root side never sees half a file) and watches the root side's
result in ``<app_dir>/state.json``. The root side verifies the signature
again with the key root owns: a compromised agent can hand over only what
the release key signed.

Files (``<data_dir>/update/``, the agent's): ``job.json`` (the offer and its
state, so a restart resumes), ``<rollout>.part`` (the verified chunks so far,
in order: a restart re-checks them and goes on where it stopped). Memory: at
most ``fetch_window`` chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path

from .. import __version__
from ..wire import Topics
from ..wire import release as fmt
from ..wire import update as wire
from ..wire.errors import MalformedMessage

logger = logging.getLogger(__name__)

SPOOL = "spool"
MAX_BAD_CHUNK = 3            # a chunk failing its SHA-256 this often refuses the update


def spool_name(rollout_id: int, version: str) -> str:
    return f"{rollout_id}-{version}.alpr"


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class UpdateClient:
    """Runs in its own thread (:meth:`run`); the sync client hands it its MQTT
    client on connect and the messages on the device's update topics."""

    def __init__(self, device_id: str, work_dir: str | os.PathLike, app_dir: str | os.PathLike, release_key: str,
                 *, topics: Topics | None = None, running_version: str = __version__, fetch_window: int = 4,
                 fetch_timeout: float = 30.0, apply_timeout: float = 1800.0, clock=time.time,
                 monotonic=time.monotonic) -> None:
        self.device_id = device_id
        self.work = Path(work_dir)
        self.spool = self.work / SPOOL
        self.app_state = Path(app_dir) / "state.json"
        self.release_key = Path(release_key)
        self.topics = topics or Topics()
        self.running_version = running_version
        self.window = fetch_window
        self.fetch_timeout = fetch_timeout
        self.apply_timeout = apply_timeout
        self._clock, self._mono = clock, monotonic
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=64)
        self._client = None
        self._sub_mids: set[int] = set()
        self._connected = threading.Event()
        self._reconnected = threading.Event()
        self.job: dict | None = None
        self._asked: dict[int, float] = {}     # chunk index -> when asked (monotonic)
        self._held: dict[int, bytes] = {}      # received ahead of the next one to append (<= window)
        self._have = 0                          # chunks appended to the part file
        self._whole = None                      # running SHA-256 of the part file
        self.counters = {"offers": 0, "chunks": 0, "bad_chunks": 0, "refetches": 0, "handed_off": 0}
        self.spool.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- what the sync client calls (paho's thread) -----------------------------------------------
    def subscriptions(self) -> list[str]:
        return [self.topics.update(self.device_id, leaf) for leaf in Topics.UPDATE_TO_DEVICE]

    def accepts(self, topic: str) -> bool:
        parsed = self.topics.update_of(topic)
        return parsed is not None and parsed[0] == self.device_id and parsed[1] in Topics.UPDATE_TO_DEVICE

    def on_connect(self, client) -> None:
        self._client = client
        self._sub_mids = {client.subscribe(topic, qos=1)[1] for topic in self.subscriptions()}
        self._connected.set()
        self._reconnected.set()

    def on_subscribed(self, mid, reason_codes) -> bool:
        """True if ``mid`` was one of ours (a refusal: an older broker ACL, said once)."""
        if mid not in self._sub_mids:
            return False
        if any(rc.is_failure for rc in reason_codes):
            logger.warning("broker refused the update subscription (an older broker ACL: run "
                           "'alpr-central broker config'); updates only by hand until then")
        return True

    def on_disconnect(self) -> None:
        self._connected.clear()

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            self._inbox.put((self.topics.update_of(topic)[1], bytes(payload)), timeout=5)
        except queue.Full:  # the thread is behind; a chunk is asked for again, an offer resent
            logger.warning("update messages are arriving faster than they are handled; one dropped")

    # -- the thread ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        last_poll = 0.0
        while not stop.is_set():
            try:
                try:
                    leaf, payload = self._inbox.get(timeout=0.5)
                except queue.Empty:
                    leaf = None
                if leaf == "offer":
                    self._on_offer(payload)
                elif leaf == "chunk":
                    self._on_chunk(payload)
                if self._reconnected.is_set() and self._connected.is_set():
                    self._reconnected.clear()
                    self._asked.clear()          # what was asked before the disconnect is asked again
                    if self.job:
                        self._report()
                self._pump()
                if self.job and self.job["state"] == "applying" and self._mono() - last_poll >= 1.0:
                    last_poll = self._mono()
                    self._check_applied()
            except Exception:  # noqa: BLE001 - the agent goes on; the next offer starts over
                logger.exception("update step failed; going on")
                stop.wait(1.0)

    # -- state -----------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            self.job = json.loads((self.work / "job.json").read_text())
        except (OSError, ValueError):
            self.job = None
            return
        if self.job.get("state") in ("offered", "downloading", "verified"):
            self.job["state"] = "downloading"  # a verified part not yet handed off is checked again
            self._resume_part()

    def _save(self) -> None:
        if self.job is None:
            (self.work / "job.json").unlink(missing_ok=True)
        else:
            _write_json(self.work / "job.json", self.job)

    def _set(self, state: str, reason: str = "") -> None:
        self.job.update(state=state, reason=reason[:wire.MAX_REASON], at_ms=int(self._clock() * 1000))
        self._save()
        logger.info("update %s (rollout %s): %s%s", self.job["version"], self.job["rollout_id"], state,
                    f" ({reason})" if reason else "")
        self._report()

    def _report(self) -> None:
        if self.job is None or self._client is None or not self._connected.is_set():
            return  # sent on the next connect
        report = wire.StateReport(self.device_id, self.job["rollout_id"], self.job["version"], self.job["state"],
                                  self.job.get("at_ms", 0), self.running_version, self.job.get("reason", ""),
                                  self._have if self.job["state"] == "downloading" else 0)
        self._client.publish(self.topics.update(self.device_id, "state"), wire.encode_state(report), qos=1)

    def _part(self) -> Path:
        return self.work / f"{self.job['rollout_id']}.part"

    def _drop_part(self) -> None:
        if self.job:
            self._part().unlink(missing_ok=True)
        self._asked.clear()
        self._held.clear()
        self._have = 0

    # -- offers ----------------------------------------------------------------------------------
    def _on_offer(self, payload: bytes) -> None:
        try:
            offer = wire.decode_offer(payload)
        except MalformedMessage as exc:
            logger.warning("ignored a malformed update offer: %s", exc)
            return
        self.counters["offers"] += 1
        job = self.job
        same = job is not None and job["rollout_id"] == offer.rollout_id
        if offer.withdraw:
            if same and job["state"] in ("offered", "downloading", "verified"):
                self._drop_part()
                self._set("withdrawn", "central paused or replaced the rollout")
            elif same:
                self._report()
            elif job is None or job["state"] != "applying":
                # not ours (any more): say so once, so central stops asking
                self.job = self._job(offer)
                self._set("withdrawn", "central paused or replaced the rollout")
            return
        if same and job["state"] != "withdrawn":
            self._report()  # central resent: it did not hear us; we go on where we are
            return
        if job is not None and job["state"] == "applying":
            logger.warning("update offer %s ignored: an update is being installed", offer.rollout_id)
            return
        if job is not None:
            self._drop_part()
        self.job = self._job(offer)
        running = fmt.parse_version(self.running_version)
        offered = fmt.parse_version(offer.version)
        if offered == running:
            self._set("healthy", f"already running {offer.version}")
            return
        if offered < running and not offer.allow_downgrade:
            self._set("refused", f"release {offer.version} is older than the running {self.running_version} "
                                 "and the offer does not allow a downgrade")
            return
        self._set("offered")
        self._set("downloading")
        self._resume_part()

    def _job(self, offer: wire.Offer) -> dict:
        return {**dataclasses.asdict(offer), "chunks": list(offer.chunks), "state": "offered", "reason": "",
                "bad": {}}

    # -- download --------------------------------------------------------------------------------
    def _resume_part(self) -> None:
        """Check what a part file already holds, chunk by chunk; keep the good prefix."""
        self._asked.clear()
        self._held.clear()
        self._whole = hashlib.sha256()
        self._have = 0
        part = self._part()
        if not part.exists():
            part.touch()
            return
        size = self.job["chunk_size"]
        good = 0
        with open(part, "rb") as fh:
            for index, expected in enumerate(self.job["chunks"]):
                piece = fh.read(size)
                if not piece or hashlib.sha256(piece).hexdigest() != expected:
                    break
                self._whole.update(piece)
                good += len(piece)
                self._have = index + 1
        if part.stat().st_size != good:
            os.truncate(part, good)
        if self._have:
            logger.info("update %s: resuming at chunk %d of %d", self.job["version"], self._have,
                        len(self.job["chunks"]))

    def _pump(self) -> None:
        """Ask for the next chunks (and again for the late ones); finish when all are in."""
        job = self.job
        if job is None or job["state"] != "downloading" or not self._connected.is_set() or self._client is None:
            return
        total = len(job["chunks"])
        if self._have == total:
            self._finish()
            return
        now = self._mono()
        for index in range(self._have, min(total, self._have + self.window)):
            if index in self._held:
                continue
            asked = self._asked.get(index)
            if asked is None or now - asked > self.fetch_timeout:
                if asked is not None:
                    self.counters["refetches"] += 1
                self._ask(index)

    def _ask(self, index: int) -> None:
        self._asked[index] = self._mono()
        self._client.publish(self.topics.update(self.device_id, "fetch"),
                             wire.encode_fetch(wire.Fetch(self.job["rollout_id"], index)), qos=1)

    def _on_chunk(self, payload: bytes) -> None:
        try:
            chunk = wire.decode_chunk(payload)
        except MalformedMessage as exc:
            logger.warning("ignored a malformed update chunk: %s", exc)
            return
        job = self.job
        if (job is None or job["state"] != "downloading" or chunk.rollout_id != job["rollout_id"]
                or chunk.index not in self._asked):
            return  # late, duplicate, or of an offer we dropped
        expected = job["chunks"][chunk.index]
        length = min(job["chunk_size"], job["size"] - chunk.index * job["chunk_size"])
        if len(chunk.data) != length or hashlib.sha256(chunk.data).hexdigest() != expected:
            self.counters["bad_chunks"] += 1
            bad = job["bad"]
            bad[str(chunk.index)] = bad.get(str(chunk.index), 0) + 1
            if bad[str(chunk.index)] >= MAX_BAD_CHUNK:
                self._drop_part()
                self._set("refused", f"chunk {chunk.index} failed its SHA-256 check {MAX_BAD_CHUNK} times")
                return
            logger.warning("update %s: chunk %d failed its SHA-256 check; asking again", job["version"], chunk.index)
            self._save()
            self._ask(chunk.index)
            return
        del self._asked[chunk.index]
        self._held[chunk.index] = chunk.data
        self.counters["chunks"] += 1
        appended = False
        with open(self._part(), "ab") as fh:
            while self._have in self._held:
                data = self._held.pop(self._have)
                fh.write(data)
                self._whole.update(data)
                self._have += 1
                appended = True
            if appended:
                fh.flush()
                os.fsync(fh.fileno())
        self._pump()

    def _finish(self) -> None:
        job = self.job
        if self._whole.hexdigest() != job["sha256"]:
            self._drop_part()
            self._set("refused", "the bundle does not match the offer's SHA-256")
            return
        try:
            key = fmt.load_public_key(self.release_key.read_bytes())
        except FileNotFoundError:
            self._drop_part()
            self._set("refused", "no release key is trusted on this device")
            return
        except fmt.BundleRefused as exc:
            self._drop_part()
            self._set("refused", str(exc))
            return
        try:
            manifest = fmt.open_bundle(self._part(), key)
            if manifest.version != job["version"]:
                raise fmt.BundleRefused(f"the bundle is release {manifest.version}, not the offered {job['version']}")
            if (fmt.parse_version(manifest.version) < fmt.parse_version(self.running_version)
                    and not manifest.allow_downgrade):
                raise fmt.BundleRefused(f"release {manifest.version} is older than the running "
                                        f"{self.running_version} and its signed manifest does not allow a downgrade")
        except fmt.BundleRefused as exc:
            self._drop_part()
            self._set("refused", str(exc))
            return
        self._set("verified")
        self._hand_off()

    def _hand_off(self) -> None:
        """Into the spool, whole (one rename): the root-side step takes it from there."""
        job = self.job
        for old in self.spool.glob("*.alpr"):  # an older hand-off nobody took: this one replaces it
            old.unlink(missing_ok=True)
        target = self.spool / spool_name(job["rollout_id"], job["version"])
        os.replace(self._part(), target)
        fd = os.open(self.spool, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        job["handed_at"] = self._clock()
        self.counters["handed_off"] += 1
        self._set("applying")

    # -- the root side's answer ------------------------------------------------------------------
    def _check_applied(self) -> None:
        job = self.job
        try:
            doc = json.loads(self.app_state.read_text()).get("spool") or {}
        except (OSError, ValueError, AttributeError):
            doc = {}
        if doc.get("file") == spool_name(job["rollout_id"], job["version"]) and doc.get("at", 0) >= job["handed_at"]:
            result = doc.get("result")
            state = {"switched": "healthy", "rolled-back": "rolled-back", "refused": "refused"}.get(result, "failed")
            if state == "healthy" and doc.get("version") == job["version"]:
                self.running_version = job["version"]  # what the restarted agent runs
            self._set(state, str(doc.get("reason", ""))[:wire.MAX_REASON] if state != "healthy" else "")
            return
        if self._clock() - job["handed_at"] > self.apply_timeout:
            (self.spool / spool_name(job["rollout_id"], job["version"])).unlink(missing_ok=True)
            self._set("failed", "the root-side update step did not answer in time "
                                "(is alpr-edge-update.path enabled?)")


def for_agent(config, topics: Topics) -> UpdateClient | None:
    """The agent's update client, or None when ``[update] enabled = false``."""
    u = config.update
    if not u.enabled:
        return None
    return UpdateClient(config.device.id, config.data_dir / "update", u.app_dir, u.release_key, topics=topics,
                        fetch_window=u.fetch_window, fetch_timeout=u.fetch_timeout_seconds,
                        apply_timeout=u.apply_timeout_minutes * 60)
