"""Across frames: one vehicle pass yields one read.

Detections in consecutive frames of one camera join a track when their boxes
overlap (IoU) or their texts are similar. A track is closed - and its read
emitted - when it has not been seen for ``window_seconds``, or, for a car that
stays in view, once it is ``max_track_seconds`` old. The text is voted per
character across the track's detections (weighted by per-character confidence)
and the best-confidence detection's crop is kept. The same plate on the same
camera within ``reemit_seconds`` of its last read is suppressed (a parked car
does not yield a read every few seconds); a car still in view is read again
after that interval from what was seen since its last read (its time, crop and
box are the new sighting's). Frames the motion gate skips (``still``) keep the
plates of the last processed frame in view. Two detections of one frame never
join one track (two cars with look-alike plates stay two reads), and a clock
set back closes the open tracks instead of holding them.

Time is frame capture time, so replaying a file behaves like a live camera.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import difflib

from .reads import Alternate, Detection, Frame

__all__ = ["Track", "Tracker"]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


@dataclasses.dataclass
class Track:
    camera_id: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    box: tuple[int, int, int, int]
    detections: list[Detection] = dataclasses.field(default_factory=list)
    best: Detection | None = None
    best_frame: Frame | None = None
    emitted_at: dt.datetime | None = None
    last_plate: str = ""  # the newest detection's text (the detections are cleared at each read)
    read_plate: str = ""  # the text of the track's last read
    read_done: bool = False  # read out: the next detection starts what makes the next read

    MAX_DETECTIONS = 64

    velocity: tuple[float, float] = (0.0, 0.0)  # box centre movement, pixels per second

    def predicted_box(self, at: dt.datetime) -> tuple[int, int, int, int]:
        """Where the plate should be at ``at`` if it keeps moving as it did."""
        dt_s = (at - self.last_seen).total_seconds()
        x, y, w, h = self.box
        return (int(x + self.velocity[0] * dt_s), int(y + self.velocity[1] * dt_s), w, h)

    def add(self, det: Detection, frame: Frame) -> None:
        if self.read_done:  # a parked car: its next read is made of what is seen from now on
            self.detections, self.best, self.best_frame, self.read_done = [], None, None, False
        if self.detections and frame.captured_at > self.last_seen:
            dt_s = (frame.captured_at - self.last_seen).total_seconds()
            self.velocity = ((det.box[0] + det.box[2] / 2 - self.box[0] - self.box[2] / 2) / dt_s,
                             (det.box[1] + det.box[3] / 2 - self.box[1] - self.box[3] / 2) / dt_s)
        self.detections.append(det)
        if len(self.detections) > self.MAX_DETECTIONS:  # a parked car: keep the recent ones
            del self.detections[0]
        self.last_seen = frame.captured_at
        self.box = det.box
        self.last_plate = det.plate
        if self.best is None or det.confidence > self.best.confidence:
            self.best, self.best_frame = det, frame


    def vote(self) -> Detection:
        """The track's consensus plate, with up to 5 alternates; each character's
        confidence is the confidence its voters gave it, summed over the track's
        detections of the voted length and divided by their number (the plate's
        confidence is the lowest of them)."""
        by_len = collections.Counter(len(d.plate) for d in self.detections)
        length = max(by_len, key=lambda n: (sum(d.confidence for d in self.detections if len(d.plate) == n), n))
        same = [d for d in self.detections if len(d.plate) == length]
        chars, confs = [], []
        for i in range(length):
            score: dict[str, float] = collections.defaultdict(float)
            for d in same:
                c = d.char_confidences[i] if len(d.char_confidences) == length else d.confidence
                score[d.plate[i]] += c
            ch = max(score, key=lambda k: (score[k], k))
            chars.append(ch)
            confs.append(score[ch] / len(same))
        plate = "".join(chars)
        confidence = round(min(confs) if confs else 0.0, 4)
        # Alternates: other texts seen in the track and the recognizer's own.
        alt_score: dict[str, float] = collections.defaultdict(float)
        for d in self.detections:
            if d.plate != plate:
                alt_score[d.plate] = max(alt_score[d.plate], d.confidence * 0.9)
            for a in d.alternates:
                if a.plate != plate:
                    alt_score[a.plate] = max(alt_score[a.plate], a.confidence)
        alts = sorted(alt_score.items(), key=lambda kv: -kv[1])[:5]
        return Detection(plate, min(1.0, confidence), self.best.box,
                         tuple(Alternate(p, round(min(1.0, c), 4)) for p, c in alts),
                         tuple(round(min(1.0, c), 4) for c in confs))


class Tracker:
    def __init__(self, *, window_seconds: float = 1.5, max_track_seconds: float = 10.0,
                 reemit_seconds: float = 300.0, min_hits: int = 1, iou_threshold: float = 0.2,
                 text_similarity: float = 0.7) -> None:
        self.window = dt.timedelta(seconds=window_seconds)
        self.max_age = dt.timedelta(seconds=max_track_seconds)
        self.reemit = dt.timedelta(seconds=reemit_seconds)
        self.min_hits = min_hits
        self.iou_threshold = iou_threshold
        self.text_similarity = text_similarity
        self._tracks: dict[str, list[Track]] = collections.defaultdict(list)
        self._last_emit: dict[tuple[str, str], dt.datetime] = {}
        self._last_frame_at: dict[str, dt.datetime] = {}
        self.suppressed = 0

    def _in_window(self, gap: dt.timedelta) -> bool:
        return dt.timedelta(0) <= gap <= self.window  # a negative gap: the clock was set back

    def update(self, frame: Frame, detections: list[Detection]) -> list[tuple[Detection, Track]]:
        """Feed one frame's detections; returns the reads that are now final."""
        tracks = self._tracks[frame.camera_id]
        live = [t for t in tracks if self._in_window(frame.captured_at - t.last_seen)]
        for det in sorted(detections, key=lambda d: -d.confidence):
            match = self._match(live, det, frame.captured_at)
            if match is None:
                match = Track(frame.camera_id, frame.captured_at, frame.captured_at, det.box)
                tracks.append(match)
            else:  # one detection per track per frame: two cars in one frame are two tracks
                live = [t for t in live if t is not match]
            match.add(det, frame)
        self._last_frame_at[frame.camera_id] = frame.captured_at
        return self._close(frame.camera_id, frame.captured_at, flush=False)

    def still(self, frame: Frame) -> list[tuple[Detection, Track]]:
        """A frame the motion gate skipped: nothing moved, so the plates seen in
        the camera's last processed frame are still in view (their tracks stay
        open; a still frame is no detection). Returns the reads now final."""
        last = self._last_frame_at.get(frame.camera_id)
        if last is not None and self._in_window(frame.captured_at - last):
            for t in self._tracks[frame.camera_id]:
                if t.last_seen == last:
                    t.last_seen = frame.captured_at
            self._last_frame_at[frame.camera_id] = frame.captured_at
        return self._close(frame.camera_id, frame.captured_at, flush=False)

    def flush(self) -> list[tuple[Detection, Track]]:
        out = []
        for camera_id in list(self._tracks):
            out.extend(self._close(camera_id, None, flush=True))
        return out

    def _match(self, live: list[Track], det: Detection, at: dt.datetime) -> Track | None:
        best, best_score = None, 0.0
        for t in live:
            # A fast car moves more than a plate width between frames: also compare
            # with where its motion so far says the plate should be now.
            overlap = max(iou(t.box, det.box), iou(t.predicted_box(at), det.box))
            voted = t.read_plate if t.read_done or t.best is None else t.best.plate
            text = max(difflib.SequenceMatcher(None, t.last_plate, det.plate).ratio(),
                       difflib.SequenceMatcher(None, voted, det.plate).ratio())
            score = overlap + text
            if (overlap >= self.iou_threshold or text >= self.text_similarity) and score > best_score:
                best, best_score = t, score
        return best

    def _close(self, camera_id: str, now: dt.datetime | None, flush: bool):
        out, keep = [], []
        for t in self._tracks[camera_id]:
            ended = flush or not self._in_window(now - t.last_seen)
            if t.emitted_at is None:
                due = ended or now - t.first_seen >= self.max_age
            else:  # still in view after its read: read again after the interval, from what was seen since
                due = not ended and now - t.emitted_at >= self.reemit
            if due and not t.read_done and len(t.detections) >= self.min_hits:
                read = t.vote()
                key = (camera_id, read.plate)
                last = self._last_emit.get(key)
                at = t.last_seen
                if t.emitted_at is None and last is not None and dt.timedelta(0) <= at - last < self.reemit:
                    self.suppressed += 1
                else:
                    out.append((read, t))
                    self._last_emit[key] = at
                t.emitted_at, t.read_plate, t.read_done = at, read.plate, True
            if not ended:
                keep.append(t)
        self._tracks[camera_id] = keep
        # forget suppression memory that can no longer matter
        if now is not None and len(self._last_emit) > 10_000:
            self._last_emit = {k: v for k, v in self._last_emit.items() if now - v < self.reemit}
        return out
