"""The edge agent: capture -> recognition -> tracking -> sealed outbox -> sync.

One thread per camera runs capture, recognition and tracking, and hands final
reads to :class:`ReadWriter`, which seals them and commits them to the outbox.
The sync thread drains the outbox. A housekeeping loop expires old reads and
writes ``status.json`` for ``alpr-edge status``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2

from . import __version__, auditlog, capture, datalock, health, recognition, watchdog
from .config import EdgeConfig
from .errors import BufferError_, CaptureError, ConfigError
from .motion import MotionGate
from .outbox import Outbox
from .reserve import Reserve
from .tamper import TamperDetector, TamperSettings
from .reads import Detection, Frame, Location, PlateRead
from .sync import SyncClient, SyncSettings
from .tracking import Track, Tracker
from .wire import MalformedMessage, Sealer, encode_read, load_public_key, new_read_id

logger = logging.getLogger(__name__)

FULL_BELOW = 1 << 20  # status calls the data folder full below this many free bytes


def _day(epoch: float | None) -> str | None:
    """The UTC date of an outbox day start (capture times are kept as days only)."""
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, dt.timezone.utc).date().isoformat()


def encode_jpeg(image, max_bytes: int) -> bytes | None:
    """JPEG of ``image`` no larger than ``max_bytes`` (lower quality, then smaller)."""
    if image is None or image.size == 0:
        return None
    img = image
    for _ in range(6):
        for quality in (90, 75, 60, 45):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(buf) <= max_bytes:
                return buf.tobytes()
        img = cv2.resize(img, (max(1, img.shape[1] // 2), max(1, img.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    return None


def _tamper(config: EdgeConfig) -> TamperSettings:
    h = config.health
    return TamperSettings(check_seconds=h.tamper_check_seconds, black_level=h.black_level, blur_ratio=h.blur_ratio,
                          moved_ratio=h.moved_ratio, confirm_checks=h.confirm_checks)


class ReadWriter:
    """Turns a tracker's final detection into a sealed outbox row."""

    def __init__(self, config: EdgeConfig, outbox: Outbox, sealer: Sealer, model_version: str) -> None:
        self.config = config
        self.outbox = outbox
        self.sealer = sealer
        self.model_version = model_version[:64]
        self.cameras = {c.id: c for c in config.cameras}
        self.written = 0
        self.lost = 0  # reads that could not be buffered (disk full, broken file): counted, logged
        self.invalid = 0  # reads the recognizer made that the wire contract refuses: counted, logged
        self.last_written_at: float | None = None  # in memory only (the heartbeat's coarse last read time)

    def to_read(self, det: Detection, track: Track) -> PlateRead:
        frame = track.best_frame
        images = self.config.images
        crop = context = None
        if frame is not None and frame.image is not None:
            if images.crop:
                x, y, w, h = track.best.box
                mx, my = w // 8, h // 4
                crop = encode_jpeg(frame.image[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx],
                                   images.crop_max_bytes)
            if images.context:
                context = encode_jpeg(frame.image, images.context_max_bytes)
        cam = self.cameras[track.camera_id]
        location = None
        if cam.latitude is not None and cam.longitude is not None:
            location = Location(cam.latitude, cam.longitude, cam.heading)
        captured = frame.captured_at if frame is not None else track.first_seen
        return PlateRead(
            read_id=new_read_id(), device_id=self.config.device.id,
            camera_id=track.camera_id, captured_at=captured, plate=det.plate,
            confidence=float(det.confidence), box=tuple(int(v) for v in det.box), alternates=det.alternates[:5],
            crop_jpeg=crop, context_jpeg=context, location=location, model_version=self.model_version)

    def write(self, finals: list[tuple[Detection, Track]]) -> None:
        items = []
        for det, track in finals:
            try:
                read = self.to_read(det, track)
            except MalformedMessage as exc:  # one bad read never costs the others, nor restarts the camera
                self.invalid += 1
                logger.error("dropped a read the wire contract refuses (%s); %d so far", exc, self.invalid)
                continue
            items.append((read.read_id, read.captured_at.timestamp(), self.sealer.seal(read.read_id, encode_read(read))))
        if items:
            try:
                self.outbox.add(items)
            except BufferError_ as exc:
                self.lost += len(items)
                logger.error("could not buffer %d reads (%d lost so far): %s", len(items), self.lost, exc)
                return
            self.written += len(items)
            self.last_written_at = time.time()
            # debug, not info: a journal line per read would say when reads were taken
            logger.debug("buffered %d reads (outbox depth %d)", len(items), self.outbox.depth)


class CameraWorker:
    def __init__(self, camera, recognizer, lock: threading.Lock, tracker: Tracker, writer: ReadWriter,
                 motion_threshold: float = 0.0, tamper: TamperDetector | None = None) -> None:
        self.camera = camera
        self.tamper = tamper or TamperDetector(TamperSettings(check_seconds=0))
        self.failures = 0  # times the source failed (opened or read): the heartbeat's camera errors
        # Still frames (nothing moved) skip recognition: most of a Pi's CPU on a quiet street.
        self.gate = MotionGate(threshold=motion_threshold, max_skip=50) if motion_threshold > 0 else None
        self.skipped = 0
        self.bad_frames = 0  # frames the recognizer refused (corrupt, odd shape): counted, skipped
        self.source = None
        self._unreadable = 0  # images folder sources before this one could not decode
        self.recognizer = recognizer
        self.lock = lock
        self.tracker = tracker
        self.writer = writer
        self.state = "starting"
        self.last_error: str | None = None
        self.frames = 0
        self.fps = 0.0
        self.finished = threading.Event()

    @property
    def unreadable(self) -> int:
        """Images a folder source could not decode (counted, logged, skipped)."""
        return self._unreadable + getattr(self.source, "skipped", 0)

    def _retire(self, source) -> None:
        if self.source is source:
            self._unreadable += getattr(source, "skipped", 0)
            self.source = None

    def run(self, stop: threading.Event) -> None:
        backoff = 1.0
        try:
            while not stop.is_set():
                source = self.source = capture.create(self.camera)
                frames_before = self.frames
                try:
                    source.open()
                    self.state, self.last_error = "running", None
                    if self._pump(source, stop):
                        return  # a finite source ended
                except CaptureError as exc:
                    backoff = 1.0 if self.frames > frames_before else backoff  # it worked a while: start over
                    self.state, self.last_error = "failed", str(exc)
                    self.failures += 1
                    logger.error("%s; retrying in %.0fs", exc, backoff)
                except Exception:
                    backoff = 1.0 if self.frames > frames_before else backoff
                    self.state, self.last_error = "failed", "unexpected error (see log)"
                    self.failures += 1
                    logger.exception("camera %s failed; retrying in %.0fs", self.camera.id, backoff)
                finally:
                    source.close()
                    self._retire(source)
                # The camera is down: the cars seen before are gone from view, so their
                # reads are final now, not when the camera comes back or the agent stops.
                self.writer.write(self.tracker.flush())
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
        finally:
            self.writer.write(self.tracker.flush())
            self.state = "stopped" if self.state != "finished" else self.state
            self.finished.set()

    def _pump(self, source, stop: threading.Event) -> bool:
        interval = 1.0 / self.camera.fps if self.camera.fps > 0 else 0.0
        window_start, window_frames = time.monotonic(), 0
        while not stop.is_set():
            started = time.monotonic()
            frame = source.read()
            if frame is None:
                self.state = "finished"
                if getattr(source, "truncated", False):  # shown in status, not only logged
                    self.last_error = "the file ended before its last frame (truncated or damaged)"
                logger.info("camera %s: source ended after %d frames", self.camera.id, self.frames)
                return True
            self.tamper.observe(frame.image, started)
            try:
                self._process(frame)
            except (ValueError, cv2.error) as exc:  # a frame the recognizer refuses: counted, logged, skipped
                self.bad_frames += 1
                logger.warning("camera %s: skipped a frame the recognizer refused (%s); %d so far",
                               self.camera.id, exc, self.bad_frames)
            self.frames += 1
            window_frames += 1
            if started - window_start >= 5.0:
                self.fps = window_frames / (started - window_start)
                window_start, window_frames = started, 0
            if interval:
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        return False

    def _process(self, frame: Frame) -> None:
        if self.gate is not None and not self.gate.should_process(frame.image):
            self.skipped += 1
            self.writer.write(self.tracker.still(frame))  # nothing moved: what was in view still is
            return
        with self.lock:
            detections = self.recognizer.recognize(frame)
        self.writer.write(self.tracker.update(frame, detections))


class Agent:
    def __init__(self, config: EdgeConfig, *, clock=time.time, remote=None) -> None:
        self.config = config
        self._lock = datalock.DataDirLock(config.data_dir).acquire()  # a second agent here: AlreadyRunning
        try:
            self._open(config, clock)
        except BaseException:
            self._lock.release()  # a refused start (a bad key, a tampered model bundle) leaves the folder free
            raise
        self.remote = remote  # edge_agent.remote_config.RemoteConfigAgent, or None
        self.sync.config_receiver = remote

    def _open(self, config: EdgeConfig, clock) -> None:
        try:
            pem = Path(config.sync.central_public_key).read_bytes()
            recipient = load_public_key(pem)
        except OSError as exc:
            raise ConfigError(f"sync.central_public_key: cannot read {config.sync.central_public_key}: "
                              f"{exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"sync.central_public_key: {exc}") from None
        try:
            self.recognizer = recognition.create(config.recognition.type, dict(config.recognition.options))
        except OSError as exc:   # a model or sidecar file: named, without the errno
            raise ConfigError(f"recognition: cannot read {exc.filename or 'its files'}: "
                              f"{(exc.strerror or str(exc)).lower()}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"recognition: {exc}") from None
        buf = config.buffer
        self.reserve = Reserve(config.data_dir / "reserve", int(buf.reserve_megabytes * (1 << 20)))
        self.outbox = Outbox(config.data_dir / "outbox.sqlite", max_reads=buf.max_reads,
                             max_bytes=int(buf.max_megabytes * (1 << 20)), max_age=buf.max_age_days * 86400,
                             clock=clock, reserve=self.reserve)
        self.reserve.ensure()  # once there is room for it twice over
        self.sealer = Sealer(recipient, config.device.id)
        s = config.sync
        self.sync = SyncClient(SyncSettings(
            host=s.host, port=s.port, device_id=config.device.id, tls=s.tls, ca_file=s.ca_file,
            cert_file=s.cert_file, key_file=s.key_file, batch_size=s.batch_size, max_in_flight=s.max_in_flight,
            max_rate=s.max_rate, ack_timeout=s.ack_timeout, keepalive=s.keepalive, topic_prefix=s.topic_prefix),
            self.outbox)
        self._clock = clock
        self.audit = self.audit_watch = None  # the device's signed audit log (None without a key)
        self.audit_error: str | None = None
        self._audit_unrecorded: dict[str, int] = {}  # events while the log could not be opened
        self._open_audit()
        self.writer = ReadWriter(config, self.outbox, self.sealer, self.recognizer.model_version)
        lock = threading.Lock()
        t = config.tracking
        self.workers = [
            CameraWorker(cam, self.recognizer, lock, Tracker(
                window_seconds=t.window_seconds, max_track_seconds=t.max_track_seconds,
                reemit_seconds=t.reemit_seconds, min_hits=t.min_hits), self.writer,
                motion_threshold=config.recognition.motion_threshold, tamper=TamperDetector(_tamper(config)))
            for cam in config.cameras]
        self.health = health.HealthReporter(self, interval=config.health.interval_seconds)
        from .update import fetcher  # updates offered over MQTT (None: [update] enabled = false)
        self.updates = self.sync.update_client = fetcher.for_agent(config, self.sync.topics)
        self.started_at = time.time()
        self._status_error: str | None = None
        self.watchdog = watchdog.for_agent(self)  # systemd WatchdogSec: petted while cameras and sync progress

    def _open_audit(self) -> None:
        """Open the audit log; on a full disk run without it (events counted) and
        try again a minute later, instead of failing to start."""
        try:
            self.audit = auditlog.open_for(self.config, clock=self._clock, unrecorded=self._audit_unrecorded)
        except BufferError_ as exc:
            self.audit_error = str(exc)
            logger.error("%s; running without it (events counted) and trying again in a minute", exc)
            return
        self.audit_error = None
        self._audit_unrecorded = {}
        if self.audit:
            self.audit_watch = auditlog.AuditWatch(self.audit, wall=self._clock)
            self.sync.audit_publisher = auditlog.AuditPublisher(self.audit)

    def _note(self, event: str, detail: dict) -> None:
        if self.audit is not None:
            self.audit.note(event, detail)
        elif self.audit_error is not None:
            self._audit_unrecorded[event] = self._audit_unrecorded.get(event, 0) + 1

    def _expire(self) -> None:
        """Drop reads past the age limit; a full disk is logged and tried again a
        minute later (the cameras and sync keep running: no crash loop). Also
        writes the disk reserve again and reopens the audit log when it can."""
        try:
            self.outbox.expire()
        except BufferError_ as exc:
            logger.error("%s; trying again in a minute", exc)
        try:
            self.outbox.maintain()
        except Exception:
            logger.exception("outbox maintenance failed")
        if self.audit is None and self.audit_error is not None:
            self._open_audit()

    def run(self, stop: threading.Event, *, exit_when_drained: bool = False) -> None:
        """Run until ``stop`` is set (or, with ``exit_when_drained``, until every
        finite source has ended and the outbox is empty)."""
        capture_stop = threading.Event()
        sync_stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(capture_stop,), name=f"camera-{w.camera.id}", daemon=True)
                   for w in self.workers]
        if self.updates is not None:  # before sync: stopped with the cameras
            threads.append(threading.Thread(target=self.updates.run, args=(capture_stop,), name="updates",
                                            daemon=True))
        threads.append(threading.Thread(target=self.sync.run, args=(sync_stop,), name="sync", daemon=True))
        self._expire()  # reads past the age limit (non-hit retention) are dropped, never sent
        for th in threads:
            th.start()
        self._note("agent-start", {"pid": os.getpid()})  # a full disk is counted, never fatal
        self.watchdog.ready()
        last_expire = 0.0
        releases = self.reserve.releases
        try:
            while not stop.wait(1.0):
                now = time.monotonic()
                # every minute; every 5 s while the disk reserve is given up, so the
                # space acknowledgements free is handed back soon
                if now - last_expire > (60 if self.reserve.held or not self.reserve.size else 5):
                    self._expire()
                    last_expire = now
                elif self.audit is None and self.audit_error is not None and self.reserve.releases != releases:
                    self._open_audit()  # the reserve was just given back: room for the audit log too
                releases = self.reserve.releases
                self.write_status()
                self.watchdog.tick()
                self.health.tick()
                if self.remote is not None:  # a new remote configuration: confirm, roll back, or restart
                    self.remote.tick(self)
                    if self.remote.restart.is_set():
                        break
                if self.audit_watch:
                    self.audit_watch.tick(lambda: self.outbox.stats().counters, self.sync.connected)
                if exit_when_drained and all(w.finished.is_set() for w in self.workers) and self.outbox.depth == 0:
                    logger.info("all sources finished and the outbox is drained")
                    break
        finally:
            if self.remote is not None and self.remote.restart.is_set():
                self.watchdog.reloading("applying a remote configuration")  # the process goes on
            else:
                self.watchdog.stopping()
            capture_stop.set()
            for th in threads[:-1]:
                th.join(timeout=30)
            sync_stop.set()
            threads[-1].join(timeout=10)
            self.write_status()
            self._note("agent-stop", {})
            self.close()

    def close(self) -> None:
        """Close the audit log, the outbox and the recognizer and free the data
        folder (``run`` does this when it ends; an agent never run calls it)."""
        if self.audit:
            self.audit.close()
        self.outbox.close()
        self.recognizer.close()
        self._lock.release()

    def status(self) -> dict:
        stats = self.outbox.stats()
        return {
            "device_id": self.config.device.id,
            "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "broker": {"host": self.config.sync.host, "port": self.config.sync.port,
                       "connected": self.sync.connected, "last_error": self.sync.last_error},
            "last_ack_at": self.sync.last_ack_at,
            "buffer": {"depth": stats.depth, "bytes": stats.bytes, "oldest_day": _day(stats.oldest_day),
                       "rejected": stats.rejected, "counters": stats.counters},
            "sync": dict(self.sync.counters),
            "reads_lost_unbufferable": self.writer.lost,
            "disk": self.disk_status(),
            "audit": {"open": self.audit is not None, "error": self.audit_error,
                      "unrecorded": dict(self.audit.unrecorded if self.audit else self._audit_unrecorded)},
            "reads_invalid": self.writer.invalid,
            "cameras": [{"id": w.camera.id, "state": w.state, "fps": round(w.fps, 2), "frames": w.frames,
                         "skipped_still": w.skipped, "bad_frames": w.bad_frames,
                         "unreadable_images": w.unreadable, "last_error": w.last_error,
                         "failures": w.failures, "tamper": list(w.tamper.flags)}
                        for w in self.workers],
            "watchdog": {"stalled": list(self.watchdog.stalled)},  # alpr-edge status names a stalled loop
            "model_version": self.recognizer.model_version,
            "agent_version": __version__,  # the update health check expects the version it switched to
            "remote_config": dataclasses.asdict(self.remote.store.report()) if self.remote is not None else None,
        }

    def disk_status(self) -> dict:
        try:
            st = os.statvfs(self.config.data_dir)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = None
        # full: the outbox could not write for lack of space since the last read it
        # could, or less than 1 MiB is left
        full = self.outbox.disk_full or (free is not None and free < FULL_BELOW)
        return {"full": full, "full_errors": self.outbox.disk_full_errors, "free_bytes": free,
                "reserve_bytes": self.reserve.size, "reserve_held": self.reserve.held,
                "reserve_releases": self.reserve.releases, "outbox_exclusive": self.outbox.exclusive}

    def write_status(self) -> None:
        path = self.config.data_dir / "status.json"
        tmp = None
        try:
            text = json.dumps(self.status(), indent=1)
        except Exception:
            logger.exception("cannot build the status")
            return
        try:
            # A fresh, randomly named 0600 file (mkstemp: O_EXCL, never through a link
            # planted at a predictable name), then renamed over the last one.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status.json.")
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())  # whole on disk before it replaces the last one (power loss)
            os.replace(tmp, path)
            self._status_error = None
        except OSError as exc:
            # A full disk: rewrite the last status in place (its blocks are ours),
            # compact, so `alpr-edge status` still tells what is going on.
            try:
                if tmp:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "w") as fh:
                    fh.write(json.dumps(self.status(), separators=(",", ":")))
                    fh.truncate()
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as again:
                if self._status_error != again.strerror:  # once per kind of failure, not once a second
                    logger.error("cannot write %s: %s (then in place: %s)", path, exc.strerror, again.strerror)
                self._status_error = again.strerror
