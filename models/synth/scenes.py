"""Detector training samples: real ``detect/`` scenes (train split only) with
their boxed plates, plus synthetic US plates composited into them.

Also :func:`scene_with_plates`, which tests and the bench use to build a
whole frame (e.g. 1280x720) with known plates and boxes.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from . import fonts
from .augment import night_traffic, photometric, warp_plate
from .plates import LETTERS, render_plate


class DetectSource:
    """Index of ``boxes.jsonl`` (one split). Images are read lazily."""

    def __init__(self, root: str, split: str = "train") -> None:
        self.root = root
        with open(os.path.join(root, "boxes.jsonl"), encoding="utf-8") as fh:
            self.items = [r for r in map(json.loads, fh) if r["split"] == split]
        if not self.items:
            raise ValueError(f"no {split} images in {root}")

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int):
        r = self.items[i]
        img = cv2.imread(os.path.join(self.root, r["image"]), cv2.IMREAD_COLOR)
        return img, [list(map(float, b)) for b in r["plates"]]


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-6)


def paste_plate(rng, img: np.ndarray, width: float, boxes: list, *, text=None, hershey_only=False, tries=10,
                side="random"):
    """Composite one warped synthetic plate about ``width`` px wide into
    ``img`` (in place) where it does not overlap ``boxes``. ``side`` is
    :func:`render_plate`'s. Returns ``(box, label)`` or ``None``."""
    H, W = img.shape[:2]
    plate, label = render_plate(rng, text, hershey_only=hershey_only, side=side)
    plate = photometric(rng, plate, strength=0.5)
    warped, alpha, quad = warp_plate(rng, plate, width, max_tilt=rng.uniform(0.0, 0.12))
    h, w = warped.shape[:2]
    if w >= W - 2 or h >= H - 2:
        return None
    for _ in range(tries):
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        x0, y0 = quad.min(0)
        x1, y1 = quad.max(0)
        box = [x + float(x0), y + float(y0), float(x1 - x0), float(y1 - y0)]
        if all(_iou(box, b) < 0.05 and not _overlaps(box, b) for b in boxes):
            break
    else:
        return None
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    if rng.random() < 0.5:  # a dark mounting rim around the plate
        rim = cv2.dilate(alpha, np.ones((3, 3), np.uint8)).astype(np.float32)[..., None] / 255.0
        img[y : y + h, x : x + w] = (img[y : y + h, x : x + w] * (1 - rim * 0.7)).astype(np.uint8)
    roi = img[y : y + h, x : x + w].astype(np.float32)
    img[y : y + h, x : x + w] = (roi * (1 - a) + warped.astype(np.float32) * a).astype(np.uint8)
    return box, label


def paste_badge(rng, img: np.ndarray, width: float, boxes: list, *, tries=10) -> list[float] | None:
    """Composite a car badge about ``width`` px wide into ``img`` (in place),
    away from ``boxes``: a negative the detector must learn to ignore. Models
    0.4.0 fired on them in ``scenes-eu-br`` (chrome model names such as
    "FLEX" or "GOL", maker emblems, oval country stickers such as "SK"): text
    and shapes on a car's back that are not a plate, i.e. no rectangle of
    plate background around a row of characters. Returns its box
    ``[x, y, w, h]`` if pasted, else None."""
    H, W = img.shape[:2]
    kind = rng.choice(["chrome", "oval", "emblem"], p=[0.55, 0.25, 0.2])
    if kind == "emblem":  # a ring or an ellipse with a star or bars inside
        h = max(6, int(width * rng.uniform(0.45, 0.8)))
        mask = np.zeros((h, int(width)), np.uint8)
        c, ax = (int(width) // 2, h // 2), (int(width) // 2 - 1, h // 2 - 1)
        cv2.ellipse(mask, c, ax, 0, 0, 360, 255, max(1, h // 10), cv2.LINE_AA)
        pts = [(c[0] + ax[0] * 0.8 * np.sin(a), c[1] - ax[1] * 0.8 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 4)[:3]]
        for q in pts:
            cv2.line(mask, c, (int(q[0]), int(q[1])), 255, max(1, h // 8), cv2.LINE_AA)
    else:
        n = int(rng.integers(1, 4)) if kind == "oval" else int(rng.integers(2, 8))
        word = "".join(LETTERS[int(k)] for k in rng.integers(0, 26, n))
        if kind == "chrome" and rng.random() < 0.5:
            word = word[0] + word[1:].lower()
        ttf = fonts.truetype_fonts()
        font = ttf[int(rng.integers(len(ttf)))] if ttf and rng.random() < 0.8 else int(fonts.HERSHEY[int(rng.integers(len(fonts.HERSHEY)))])
        text = fonts.text_mask(word, font)
        th = max(4, int(width * text.shape[0] / max(text.shape[1], 1)))
        text = cv2.resize(text, (int(width), th), interpolation=cv2.INTER_AREA)
        if kind == "oval":  # black letters on a white oval
            h = int(th * 1.9)
            mask = np.zeros((h, int(width * 1.6)), np.uint8)
            cv2.ellipse(mask, (mask.shape[1] // 2, h // 2), (mask.shape[1] // 2 - 1, h // 2 - 1), 0, 0, 360, 255, -1, cv2.LINE_AA)
            ink = np.zeros_like(mask)
            y0, x0 = (h - th) // 2, (mask.shape[1] - int(width)) // 2
            ink[y0 : y0 + th, x0 : x0 + int(width)] = text
        else:
            mask, ink = text, None
    h, w = mask.shape
    if w >= W - 2 or h >= H - 2 or w < 4 or h < 3:
        return None
    for _ in range(tries):
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        if not any(_overlaps([x, y, w, h], b) for b in boxes):
            break
    else:
        return None
    a = (mask.astype(np.float32) / 255.0)[..., None]
    roi = img[y : y + h, x : x + w].astype(np.float32)
    if kind == "oval":
        face = np.full_like(roi, rng.uniform(200, 250))
        face[ink > 127] = rng.uniform(0, 50)
    else:  # chrome: a vertical light-dark gradient with a dark edge
        g = np.linspace(rng.uniform(170, 250), rng.uniform(60, 140), h, dtype=np.float32)[:, None, None]
        face = np.broadcast_to(g, roi.shape).copy()
        edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8))
        face[edge > 127] *= 0.4
    img[y : y + h, x : x + w] = (roi * (1 - a) + face * a).clip(0, 255).astype(np.uint8)
    return [float(x), float(y), float(w), float(h)]


def _overlaps(a, b) -> bool:
    return not (a[0] + a[2] < b[0] or b[0] + b[2] < a[0] or a[1] + a[3] < b[1] or b[1] + b[3] < a[1])


def shrink(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """The runtime's resize (``edge_agent.recognition._detect.shrink``, which
    cannot be imported here without the agent's dependencies): bilinear to
    twice the size, then a 2:1 area average for large reductions. Training
    scenes must be scaled exactly like the frames the detector sees."""
    ih, iw = img.shape[:2]
    if w * 2 < iw and h * 2 < ih:
        img = cv2.resize(img, (w * 2, h * 2), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < iw else cv2.INTER_LINEAR)


def det_sample(rng, src: DetectSource, size: int, frame: int = 384, night: float = 0.0):
    """One ``size``x``size`` training image and its plate boxes [x, y, w, h].

    The scene is scaled the way the runtime letterboxes a frame to ``frame``
    pixels (same two-step ``shrink``), times a zoom so plates of every size
    are seen, with a little aspect jitter. Most windows are placed so one
    real plate is inside (positives are scarce), the rest anywhere. Then a
    horizontal flip, 0-3 synthetic US plates pasted in (the US-specific part),
    sometimes car badges as negatives (:func:`paste_badge`) and
    lighting/sensor effects; a ``night`` share of them first turned into a
    night traffic scene (:func:`night_traffic`)."""
    img, boxes = src.load(int(rng.integers(len(src))))
    if img is None:
        img, boxes = np.full((size, size, 3), 114, np.uint8), []
    h, w = img.shape[:2]
    zoom = 1.0 if rng.random() < 0.25 else float(np.exp(rng.uniform(np.log(0.6), np.log(2.5))))
    sx = frame / max(h, w) * zoom
    sy = sx * float(np.exp(rng.uniform(-0.15, 0.15))) if rng.random() < 0.3 else sx
    img = shrink(img, max(1, round(w * sx)), max(1, round(h * sy)))
    boxes = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in boxes]
    canvas, out = _window(rng, img, boxes, size)
    if rng.random() < 0.5:
        canvas = np.ascontiguousarray(canvas[:, ::-1])
        out = [[size - b[0] - b[2], b[1], b[2], b[3]] for b in out]
    k = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.4, 0.2, 0.15]))
    for _ in range(k):
        width = float(np.exp(rng.uniform(np.log(12), np.log(frame * 0.4))))
        r = paste_plate(rng, canvas, width, out, hershey_only=rng.random() < 0.2)
        if r is not None:
            out.append(r[0])
    for _ in range(int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1]))):
        paste_badge(rng, canvas, float(np.exp(rng.uniform(np.log(10), np.log(frame * 0.25)))), out)
    if night and rng.random() < night:
        canvas = night_traffic(rng, canvas, out)
    canvas = photometric(rng, canvas, strength=0.4)
    return canvas, out


def hard_sample(rng, img: np.ndarray, boxes: list, focus, size: int, scale: float):
    """A training window of a ``detect/`` scene around ``focus`` (a box in
    the scene's pixels): where the detector fired on no plate, or missed one.
    ``scale`` is the letterbox scale the detector saw it at. Same flip and
    (lighter) lighting as :func:`det_sample`, no synthetic plates."""
    h, w = img.shape[:2]
    img = shrink(img, max(1, round(w * scale)), max(1, round(h * scale)))
    boxes = [[v * scale for v in b] for b in boxes]
    canvas, out = _window(rng, img, boxes, size, focus=[v * scale for v in focus])
    if rng.random() < 0.5:
        canvas = np.ascontiguousarray(canvas[:, ::-1])
        out = [[size - b[0] - b[2], b[1], b[2], b[3]] for b in out]
    return photometric(rng, canvas, strength=0.25), out


def _window(rng, img: np.ndarray, boxes: list, size: int, focus=None):
    """Place ``img`` on a grey ``size`` square (cropping or padding), 70 % of
    the time so that a random plate lies fully inside (always ``focus`` when
    given). Plates mostly cut off are greyed out so they are not taught as
    background."""
    h, w = img.shape[:2]
    lo_x, hi_x = min(0, size - w), max(0, size - w)
    lo_y, hi_y = min(0, size - h), max(0, size - h)
    if focus is not None or (boxes and rng.random() < 0.7):
        b = focus if focus is not None else boxes[int(rng.integers(len(boxes)))]
        lo_x, hi_x = _narrow(lo_x, hi_x, -b[0], size - b[0] - b[2])
        lo_y, hi_y = _narrow(lo_y, hi_y, -b[1], size - b[1] - b[3])
    ox, oy = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
    canvas = np.full((size, size, 3), 114, np.uint8)
    xa, ya, xb, yb = max(ox, 0), max(oy, 0), min(ox + w, size), min(oy + h, size)
    canvas[ya:yb, xa:xb] = img[ya - oy : yb - oy, xa - ox : xb - ox]
    out = []
    for b in boxes:
        x0, y0 = max(b[0] + ox, 0), max(b[1] + oy, 0)
        x1, y1 = min(b[0] + b[2] + ox, size), min(b[1] + b[3] + oy, size)
        if x1 - x0 < 0.6 * b[2] or y1 - y0 < 0.6 * b[3]:
            if x1 > x0 and y1 > y0:
                canvas[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = 114
            continue
        out.append([x0, y0, x1 - x0, y1 - y0])
    return canvas, out


def _narrow(lo: int, hi: int, a: float, b: float) -> tuple[int, int]:
    """``[lo, hi]`` intersected with ``[a, b]``, or unchanged if they miss."""
    nlo, nhi = max(lo, int(np.ceil(a))), min(hi, int(np.floor(b)))
    return (nlo, nhi) if nlo <= nhi else (lo, hi)


def scene_with_plates(rng, size=(1280, 720), plates=(("7ABC123", 160),), *, hershey_only=True, background=None,
                      side="random"):
    """A synthetic frame with the given ``(text, width_px)`` plates composited
    in (``side``: the graphic beside the serial, as for :func:`render_plate`;
    None for plain plates). Returns ``(bgr, [(box, label), ...])``.
    Deterministic for a seed."""
    W, H = size
    if background is None:
        yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        top, bottom = rng.uniform(60, 200, 3), rng.uniform(20, 120, 3)
        img = (top * (1 - yy) + bottom * yy).repeat(W, 1).astype(np.uint8)
        for _ in range(12):
            c = rng.uniform(0, 255, 3).tolist()
            x, y = int(rng.integers(W)), int(rng.integers(H))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(20, W // 3)), y + int(rng.integers(20, H // 3))), c, -1)
    else:
        img = cv2.resize(background, size)
    placed = []
    for text, width in plates:
        r = paste_plate(rng, img, float(width), [b for b, _l in placed], text=text, hershey_only=hershey_only, tries=50,
                        side=side)
        if r is not None:
            placed.append(r)
    return img, placed
