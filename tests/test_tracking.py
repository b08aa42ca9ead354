"""Across frames: one vehicle pass yields one read; votes; parked cars."""

from __future__ import annotations

import datetime as dt

from edge_agent.reads import Alternate, Detection, Frame
from edge_agent.tracking import Tracker

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


def frame(i, fps=10.0, camera="lane-1"):
    return Frame(camera, i + 1, T0 + dt.timedelta(seconds=i / fps), None)


def det(plate, x, conf=0.9, chars=None, alts=()):
    return Detection(plate, conf, (x, 300, 150, 75), alts, tuple(chars or [conf] * len(plate)))


def run(tracker, detections_per_frame, fps=10.0):
    out = []
    for i, dets in enumerate(detections_per_frame):
        out += tracker.update(frame(i, fps), dets)
    return out + tracker.flush()


def test_one_pass_one_read_with_per_character_vote():
    # The OCR misreads one character in 2 of 7 frames; the vote fixes it.
    texts = ["7ABC123", "7ABC123", "7A8C123", "7ABC123", "7A8C123", "7ABC123", "7ABC123"]
    frames = [[det(t, 100 + 40 * i)] for i, t in enumerate(texts)] + [[]] * 20
    reads = run(Tracker(), frames)
    assert len(reads) == 1
    read, track = reads[0]
    assert read.plate == "7ABC123"
    assert "7A8C123" in [a.plate for a in read.alternates]
    assert len(track.detections) == 7


def test_low_confidence_characters_lose_the_vote():
    frames = [[det("7ABC123", 100, chars=[.9, .9, .2, .9, .9, .9, .9])],
              [det("7A8C123", 110, chars=[.9, .9, .95, .9, .9, .9, .9])],
              [det("7ABC123", 120, chars=[.9, .9, .3, .9, .9, .9, .9])]]
    [(read, _)] = run(Tracker(), frames)
    assert read.plate == "7A8C123"  # 0.95 beats 0.2 + 0.3
    # the voted read keeps a confidence per character: its voters' share of the track
    assert read.char_confidences == (0.9, 0.9, round(0.95 / 3, 4), 0.9, 0.9, 0.9, 0.9)
    assert read.confidence == min(read.char_confidences)


def test_two_vehicles_in_the_same_frame_are_two_reads():
    frames = [[det("7ABC123", 100 + 10 * i), det("5XYZ987", 900 - 10 * i)] for i in range(5)]
    reads = run(Tracker(), frames)
    assert sorted(r.plate for r, _ in reads) == ["5XYZ987", "7ABC123"]


def test_consecutive_vehicles_are_separate_reads():
    frames = [[det("7ABC123", 100 + 50 * i)] for i in range(10)] + [[]] * 3 + \
             [[det("8DEF456", 100 + 50 * i)] for i in range(10)] + [[]] * 30
    reads = run(Tracker(), frames)
    assert [r.plate for r, _ in reads] == ["7ABC123", "8DEF456"]


def test_parked_car_emits_once_then_after_the_reemit_interval():
    tracker = Tracker(max_track_seconds=10, reemit_seconds=60)
    frames = [[det("7ABC123", 500)] for _ in range(10 * 150)]  # 150 s in view at 10 fps
    emitted = []
    for i, dets in enumerate(frames):
        emitted += [(i, r.plate) for r, _ in tracker.update(frame(i), dets)]
    # first read at 10 s, then every 60 s while it stays
    assert [i for i, _ in emitted] == [100, 700, 1300]


def test_same_plate_soon_after_is_suppressed():
    tracker = Tracker(reemit_seconds=300)
    frames = ([[det("7ABC123", 100 + 50 * i)] for i in range(5)] + [[]] * 30) * 2
    reads = run(tracker, frames)
    assert len(reads) == 1 and tracker.suppressed == 1


def test_cameras_are_tracked_separately():
    tracker = Tracker()
    out = tracker.update(frame(0, camera="a"), [det("7ABC123", 100)])
    out += tracker.update(frame(0, camera="b"), [det("7ABC123", 100)])
    out += tracker.flush()
    assert sorted(t.camera_id for _, t in out) == ["a", "b"]


def test_alternates_come_from_the_recognizer_too_and_are_capped_at_five():
    alts = tuple(Alternate(f"7ABC12{i}", 0.1 * i) for i in range(5))
    frames = [[det("7ABC123", 100, alts=alts)], [det("7ABC128", 110)]]
    [(read, _)] = run(Tracker(), frames)
    assert len(read.alternates) == 5
    assert all(a.plate != read.plate for a in read.alternates)


def test_a_fast_car_whose_boxes_never_overlap_is_still_one_pass():
    # 200 px per frame with a 150 px plate: consecutive boxes never overlap, and
    # two later frames read noise; once the motion is known, the prediction keeps
    # it one track.
    texts = ["2LBC434", "2LBC434", "LBGA38", "2LBC434", "LBG434", "2LBC434"]
    frames = [[det(t, 50 + 200 * i)] for i, t in enumerate(texts)] + [[]] * 20
    reads = run(Tracker(), frames)
    assert [r.plate for r, _ in reads] == ["2LBC434"]


def test_two_cars_in_opposite_directions_stay_apart():
    frames = [[det("7ABC123", 100 + 200 * i), det("5XYZ987", 1100 - 200 * i)] for i in range(5)] + [[]] * 20
    reads = run(Tracker(), frames)
    assert sorted(r.plate for r, _ in reads) == ["5XYZ987", "7ABC123"]


def test_two_cars_with_look_alike_plates_in_one_frame_are_two_reads():
    # A fleet's sequential plates, one character apart, in view together at the two
    # ends of the frame: text alone must not pull both detections into one track.
    frames = [[det("7ABC123", 100 + 10 * i), det("7ABC124", 900 - 10 * i)] for i in range(5)] + [[]] * 20
    reads = run(Tracker(), frames)
    assert sorted(r.plate for r, _ in reads) == ["7ABC123", "7ABC124"]
    assert all(len(track.detections) == 5 for _, track in reads)


def test_a_parked_cars_next_read_is_its_new_sighting():
    """Read again after the interval from what was seen since the last read: its
    crop, box and time are the new sighting's, not the first one's."""
    tracker = Tracker(max_track_seconds=10, reemit_seconds=60)
    emitted = []
    for i in range(10 * 150):  # 150 s in view at 10 fps; the car edges forward at 70 s
        x = 500 if i < 700 else 520
        for read, track in tracker.update(frame(i), [det("7ABC123", x, conf=0.8 + (i % 7) / 100)]):
            emitted.append((i, read, track.best_frame.captured_at, track.best.box))
    assert [i for i, *_ in emitted] == [100, 700, 1300]
    first, second, third = emitted
    assert first[2] <= T0 + dt.timedelta(seconds=10)
    assert T0 + dt.timedelta(seconds=10) < second[2] <= T0 + dt.timedelta(seconds=70)
    assert T0 + dt.timedelta(seconds=70) < third[2] <= T0 + dt.timedelta(seconds=130)
    assert third[1].box == third[3] == (520, 300, 150, 75)
    assert [r.plate for _, r, *_ in emitted] == ["7ABC123"] * 3


def test_a_clock_set_back_closes_open_tracks_instead_of_merging_the_next_car():
    # A barrier camera: car A waits 1 s, then NTP steps the clock back an hour;
    # 20 s later car B waits at the same spot.
    tracker, out = Tracker(), []
    clock = [T0 + dt.timedelta(seconds=i / 10) for i in range(10)]
    back = T0 - dt.timedelta(hours=1)
    clock += [back + dt.timedelta(seconds=i / 10) for i in range(200)]
    car_b = back + dt.timedelta(seconds=20)
    clock += [car_b + dt.timedelta(seconds=i / 10) for i in range(40)]
    for i, at in enumerate(clock):
        dets = [det("7ABC123", 500)] if i < 10 else [det("5XYZ987", 500)] if 210 <= i < 220 else []
        out += tracker.update(Frame("lane-1", i + 1, at, None), dets)
    out += tracker.flush()
    assert [(r.plate, len(t.detections)) for r, t in out] == [("7ABC123", 10), ("5XYZ987", 10)]


def test_still_frames_keep_what_was_in_view():
    """The motion gate lets a frame through only every 5 s while a car waits at a
    light; the skipped frames (``still``) keep its track open, so the reads of
    the frames that do go through add up to one read (min_hits 2)."""
    def waiting_car(gated):
        tracker, out = Tracker(min_hits=2), []
        for i in range(10 * 30):  # 30 s at 10 fps
            f = frame(i)
            if i % 50 == 0:
                out += tracker.update(f, [det("7ABC123", 500)])
            elif gated:
                out += tracker.still(f)
            else:
                out += tracker.update(f, [])
        return out + tracker.flush()

    reads = waiting_car(gated=True)
    assert [r.plate for r, _ in reads] == ["7ABC123"]
    assert len(reads[0][1].detections) >= 2
    assert waiting_car(gated=False) == []  # each sighting alone: under min_hits, as before


def test_still_frames_do_not_revive_a_track_that_left():
    tracker = Tracker()
    tracker.update(frame(0), [det("7ABC123", 500)])
    tracker.update(frame(1), [])  # processed: the car is gone from this frame on
    reads = []
    for i in range(2, 40):
        reads += tracker.still(frame(i))
    assert [r.plate for r, _ in reads] == ["7ABC123"]  # closed 1.5 s after it was last seen


class _Writer:
    def __init__(self):
        self.reads = []

    def write(self, finals):
        self.reads += [read.plate for read, _ in finals]


class _Reader:
    def recognize(self, f):
        return [det("7ABC123", 100 + 10 * f.seq)]


def test_a_camera_that_fails_hands_over_the_reads_of_the_cars_it_saw(monkeypatch):
    """A live stream dies after a car and stays down: the car's read is written
    while the worker retries, not held until the camera returns or the agent stops."""
    import threading
    import time
    import types

    from edge_agent import agent
    from edge_agent.errors import CaptureError

    class DyingStream:
        reads = 0

        def open(self):
            if DyingStream.reads:
                raise CaptureError("camera lane-1 unreachable")

        def read(self):
            DyingStream.reads += 1
            if DyingStream.reads > 10:
                raise CaptureError("stream lost")
            return Frame("lane-1", DyingStream.reads, dt.datetime.now(dt.timezone.utc), None)

        def close(self):
            pass

    monkeypatch.setattr(agent.capture, "create", lambda cam: DyingStream())
    writer, stop = _Writer(), threading.Event()
    worker = agent.CameraWorker(types.SimpleNamespace(id="lane-1", fps=0), _Reader(), threading.Lock(), Tracker(), writer)
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not writer.reads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.reads == ["7ABC123"]
        assert worker.state == "failed"
    finally:
        stop.set()
        thread.join()
    assert writer.reads == ["7ABC123"]  # and only once


def test_gated_frames_keep_a_waiting_car_in_view():
    """With the motion gate on, a car that stops in view is let through about
    every 5 s; its still frames keep its track open (min_hits 2 is reached)."""
    import threading
    import types

    import numpy as np

    from edge_agent.agent import CameraWorker

    class LateReader:  # the plate is readable only once the car has stopped
        def recognize(self, f):
            return [det("7ABC123", 500)] if f.seq > 20 else []

    writer, tracker = _Writer(), Tracker(min_hits=2)
    worker = CameraWorker(types.SimpleNamespace(id="lane-1", fps=10), LateReader(), threading.Lock(), tracker, writer,
                          motion_threshold=0.01)
    for i in range(10 * 60):  # drives in for 2 s, then waits 58 s
        img = np.full((720, 1280, 3), 60, np.uint8)
        x = min(100 + 25 * i, 550)
        img[350:450, x:x + 200] = 200
        worker._process(Frame("lane-1", i + 1, T0 + dt.timedelta(seconds=i / 10), img))
    writer.write(tracker.flush())
    assert worker.skipped > 500
    assert writer.reads == ["7ABC123"]
