"""A generated sample clip: vehicles with rendered US-style plates drive past.

Used by the demo and the tests (no real footage ships with the project). The
clip is deterministic for a seed. Beside it, a sidecar JSON file lists every
plate and the frames and boxes where it is visible; the ``sidecar-oracle``
test double reads that file instead of the pixels.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import cv2
import numpy as np

STATES = ["CALIFORNIA", "NEVADA", "ARIZONA", "OREGON", "TEXAS", "WASHINGTON"]
PLATE_W, PLATE_H = 150, 76


def random_plate(rng: random.Random) -> str:
    """A plate in one of a few common US layouts (e.g. California 7ABC123)."""
    letters = string.ascii_uppercase.replace("O", "").replace("I", "")
    kind = rng.randrange(3)
    if kind == 0:
        return f"{rng.randrange(1, 10)}{''.join(rng.choices(letters, k=3))}{rng.randrange(1000):03d}"
    if kind == 1:
        return f"{''.join(rng.choices(letters, k=3))}{rng.randrange(10000):04d}"
    return f"{rng.randrange(100):02d}{''.join(rng.choices(letters, k=2))}{rng.randrange(1000):03d}"


def render_plate(text: str, state: str) -> np.ndarray:
    """A flat plate: state name on top, the serial in tall condensed
    characters about half the plate high, as on real US plates."""
    plate = np.full((PLATE_H, PLATE_W, 3), 245, np.uint8)
    cv2.rectangle(plate, (1, 1), (PLATE_W - 2, PLATE_H - 2), (40, 40, 40), 2)
    cv2.putText(plate, state, (PLATE_W // 2 - 4 * len(state), 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                (160, 40, 30), 1, cv2.LINE_AA)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, 2.0, 5)
    mask = np.zeros((th + base + 10, tw + 10), np.uint8)
    cv2.putText(mask, text, (5, th + 5), cv2.FONT_HERSHEY_DUPLEX, 2.0, 255, 5, cv2.LINE_AA)
    x, y, w, h = cv2.boundingRect(mask)
    box_w, box_h = min(PLATE_W - 24, int(len(text) * 19)), 36
    ink = cv2.resize(mask[y : y + h, x : x + w], (box_w, box_h), interpolation=cv2.INTER_AREA)[..., None] / 255.0
    x0, y0 = (PLATE_W - box_w) // 2, 22
    roi = plate[y0 : y0 + box_h, x0 : x0 + box_w]
    plate[y0 : y0 + box_h, x0 : x0 + box_w] = (roi * (1 - ink) + np.array([120, 30, 20]) * ink).astype(np.uint8)
    return plate


def _background(width: int, height: int) -> np.ndarray:
    bg = np.zeros((height, width, 3), np.uint8)
    bg[:] = (70, 75, 80)  # asphalt
    bg[: height // 3] = (150, 120, 90)  # wall / sky
    for x in range(0, width, 160):
        cv2.rectangle(bg, (x + 40, height * 2 // 3), (x + 120, height * 2 // 3 + 8), (220, 220, 220), -1)
    return bg


def generate(out_dir: str | Path, *, vehicles: int = 6, seed: int = 7, fps: int = 10, width: int = 1280,
             height: int = 720, frames_per_vehicle: int = 20, gap_frames: int = 8) -> tuple[Path, Path]:
    """Write ``sample.avi`` (MJPG) and ``sample.json`` into ``out_dir``; returns both paths."""
    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video, sidecar = out / "sample.avi", out / "sample.json"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video here")
    bg = _background(width, height)
    frames: list[list[dict]] = []
    plates = []
    for _ in range(vehicles):
        text, state = random_plate(rng), rng.choice(STATES)
        colour = tuple(int(c) for c in rng.choices(range(30, 230), k=3))
        plates.append(text)
        plate_img = render_plate(text, state)
        car_w, car_h = 420, 260
        y = height // 2 - car_h // 2 + 60
        for i in range(frames_per_vehicle):
            frame = bg.copy()
            x = int(-car_w + (width + car_w) * (i + 0.5) / frames_per_vehicle)
            visible = []
            cv2.rectangle(frame, (x, y), (x + car_w, y + car_h), colour, -1)
            cv2.rectangle(frame, (x + 40, y - 70), (x + car_w - 40, y), tuple(c // 2 for c in colour), -1)
            px, py = x + (car_w - PLATE_W) // 2, y + car_h - PLATE_H - 30
            if 0 <= px and px + PLATE_W <= width:
                frame[py:py + PLATE_H, px:px + PLATE_W] = plate_img
                visible.append({"plate": text, "box": [px, py, PLATE_W, PLATE_H]})
            writer.write(frame)
            frames.append(visible)
        for _ in range(gap_frames):
            writer.write(bg)
            frames.append([])
    writer.release()
    sidecar.write_text(json.dumps({"seed": seed, "fps": fps, "plates": plates, "frames": frames}))
    return video, sidecar
