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
