"""Render US-style licence plates (flat, front view) with OpenCV only.

Everything is driven by a ``numpy.random.Generator`` so a seed gives the same
plate every time. :func:`render_plate` returns a BGR image and the label: only
the main characters; state names, slogans, stickers and small stacked
characters are distractors that are *not* part of the label (as in the
OpenALPR US benchmark labels).
"""

from __future__ import annotations

import cv2
import numpy as np

from . import fonts

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LETTERS = "ABCDEFGHIJKLMNPQRSTUVWXYZ"  # O is rare on US plates
DIGITS = "0123456789"

STATES = (
    "ALABAMA", "ALASKA", "ARIZONA", "ARKANSAS", "CALIFORNIA", "COLORADO", "CONNECTICUT",
    "DELAWARE", "FLORIDA", "GEORGIA", "HAWAII", "IDAHO", "ILLINOIS", "INDIANA", "IOWA",
    "KANSAS", "KENTUCKY", "LOUISIANA", "MAINE", "MARYLAND", "MASSACHUSETTS", "MICHIGAN",
    "MINNESOTA", "MISSISSIPPI", "MISSOURI", "MONTANA", "NEBRASKA", "NEVADA", "NEW HAMPSHIRE",
    "NEW JERSEY", "NEW MEXICO", "NEW YORK", "NORTH CAROLINA", "NORTH DAKOTA", "OHIO",
    "OKLAHOMA", "OREGON", "PENNSYLVANIA", "RHODE ISLAND", "SOUTH CAROLINA", "SOUTH DAKOTA",
    "TENNESSEE", "TEXAS", "UTAH", "VERMONT", "VIRGINIA", "WASHINGTON", "WEST VIRGINIA",
    "WISCONSIN", "WYOMING", "Washington, D.C.", "California", "Florida", "Texas", "Ohio",
)
SLOGANS = (
    "THE EMPIRE STATE", "Garden State", "Sunshine State", "LAND OF LINCOLN", "FIRST IN FLIGHT",
    "Green Mountain State", "Ocean State", "LAND OF ENCHANTMENT", "Live Free or Die",
    "Famous Potatoes", "Great Lakes", "America's Dairyland", "THE LONE STAR STATE",
    "Grand Canyon State", "Centennial State", "Show Me State", "Big Sky Country",
    "TAXATION WITHOUT REPRESENTATION", "dmv.ca.gov", "WILD, WONDERFUL", "Keystone State",
    "JACKSON COUNTY", "Heart of Dixie", "The Natural State", "Discover the Spirit",
    "Sportsman's Paradise", "10,000 Lakes", "Aloha State", "Beautiful", "visitPA.com",
)

# pattern characters: L letter, N digit, A any, "-" a group gap
PATTERNS = (
    ("NLLLNNN", 10), ("LLL-NNNN", 10), ("LLL-NNN", 10), ("NNN-LLL", 6), ("LL-NNNNN", 4),
    ("NNN-NNNN", 3), ("LLNN-LLL", 3), ("NLL-NNNN", 3), ("LNN-LLL", 3), ("NN-LLL-NN", 2),
    ("NNNNNN", 3), ("LLLL-NN", 2), ("NNN-NNN", 3), ("LLNNNN", 2), ("NLLNNN", 2),
    ("NNNN", 1), ("LL-NNNN", 3), ("NLNNNNL", 2), ("AAAAAAA", 5), ("AAAAAA", 4), ("AAAAA", 3),
    ("AAAA", 2), ("AAA", 1), ("AAAAAAAA", 2), ("NN-NNNNN", 1), ("LLL-NNNNN", 1),
)


def random_pattern(rng: np.random.Generator) -> str:
    weights = np.array([w for _p, w in PATTERNS], float)
    return PATTERNS[rng.choice(len(PATTERNS), p=weights / weights.sum())][0]


def fill_pattern(rng: np.random.Generator, pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "L":
            out.append(LETTERS[rng.integers(len(LETTERS))])
        elif ch == "N":
            out.append(DIGITS[rng.integers(10)])
        elif ch == "A":
            out.append(CHARSET[rng.integers(len(CHARSET))])
        else:
            out.append(ch)
    return "".join(out)


def _colour(rng, light: bool) -> np.ndarray:
    if light:
        base = rng.uniform(185, 255, 3)
        if rng.random() < 0.35:  # tinted (yellow, blue, green, pink...)
            base[rng.integers(3)] -= rng.uniform(30, 90)
    else:
        base = rng.uniform(0, 90, 3)
        if rng.random() < 0.6:
            base[rng.integers(3)] += rng.uniform(40, 140)
    return np.clip(base, 0, 255)


def _paste(img: np.ndarray, mask: np.ndarray, box, colour) -> None:
    """Alpha-blend ``colour`` into ``img`` through ``mask`` stretched to ``box``."""
    x, y, w, h = (int(round(v)) for v in box)
    if w < 2 or h < 2:
        return
    m = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA if w < mask.shape[1] else cv2.INTER_LINEAR)
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    a = (m[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32) / 255.0)[..., None]
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (roi * (1 - a) + np.asarray(colour, np.float32) * a).astype(np.uint8)


def _background(rng, W, H, light) -> np.ndarray:
    c1 = _colour(rng, light)
    img = np.empty((H, W, 3), np.float32)
    img[:] = c1
    if rng.random() < 0.5:  # gradient
        c2 = np.clip(c1 + rng.uniform(-60, 60, 3), 0, 255)
        t = np.linspace(0, 1, H if rng.random() < 0.6 else W, dtype=np.float32)
        t = t[:, None, None] if len(t) == H else t[None, :, None]
        img = img * (1 - t) + c2 * t
    img = img.astype(np.uint8)
    for _ in range(rng.integers(0, 4) if rng.random() < 0.6 else 0):  # scenery
        c = np.clip(_colour(rng, light) + rng.uniform(-50, 50, 3), 0, 255).tolist()
        kind = rng.integers(3)
        if kind == 0:
            cv2.ellipse(img, (int(rng.integers(W)), int(rng.integers(H))), (int(rng.integers(10, W // 2)), int(rng.integers(10, H // 2))),
                        float(rng.uniform(0, 180)), 0, 360, c, -1, cv2.LINE_AA)
        elif kind == 1:
            pts = np.stack([np.linspace(0, W, 8), H * rng.uniform(0.3, 1.0, 8)], 1).astype(np.int32)
            pts = np.vstack([pts, [[W, H], [0, H]]])
            cv2.fillPoly(img, [pts], c, cv2.LINE_AA)
        else:
            for _k in range(rng.integers(2, 8)):
                y = int(rng.integers(H))
                cv2.line(img, (0, y), (W, y + int(rng.integers(-20, 20))), c, int(rng.integers(1, 4)), cv2.LINE_AA)
    if rng.random() < 0.6:  # soften the scenery
        img = cv2.addWeighted(img, 0.55, np.full_like(img, c1.astype(np.uint8)), 0.45, 0)
    return img


def _pick_font(rng, hershey_only: bool, main: bool):
    ttf = () if hershey_only else fonts.truetype_fonts(main_only=main)
    if ttf and rng.random() < 0.8:
        return ttf[rng.integers(len(ttf))]
    return int(fonts.HERSHEY[rng.integers(2 if main else len(fonts.HERSHEY))])


def _text_colour(rng, bg_light: bool) -> np.ndarray:
    if bg_light:
        palette = ([20, 20, 20], [120, 40, 10], [20, 20, 150], [30, 90, 20], [90, 20, 90])
    else:
        palette = ([245, 245, 245], [40, 210, 240], [200, 230, 250], [230, 230, 200])
    c = np.array(palette[rng.integers(len(palette))], float) + rng.uniform(-20, 20, 3)
    return np.clip(c, 0, 255)


def render_plate(
    rng: np.random.Generator,
    text: str | None = None,
    *,
    hershey_only: bool = False,
    size: tuple[int, int] = (320, 160),
) -> tuple[np.ndarray, str]:
    """Render one flat plate. Returns ``(bgr_image, label)``.

    ``text`` may contain ``-`` or spaces to mark group gaps; they are not part
    of the returned label.
    """
    W, H = size
    light = rng.random() < 0.82
    img = _background(rng, W, H, light)
    ink = _text_colour(rng, light)
    if text is None:
        text = fill_pattern(rng, random_pattern(rng))
    text = text.upper().replace(" ", "-")
    label = "".join(c for c in text if c in CHARSET)

    # header (state name) and footer (slogan / county)
    accent = _text_colour(rng, light) if rng.random() < 0.6 else ink
    if rng.random() < 0.9:
        state = STATES[rng.integers(len(STATES))]
        m = fonts.text_mask(state, _pick_font(rng, hershey_only, False))
        h = H * rng.uniform(0.09, 0.2)
        w = min(W * 0.92, h * m.shape[1] / m.shape[0] * rng.uniform(0.8, 1.3))
        _paste(img, m, ((W - w) / 2 + rng.uniform(-0.05, 0.05) * W, H * rng.uniform(0.03, 0.08), w, h), accent)
    if rng.random() < 0.8:
        slogan = SLOGANS[rng.integers(len(SLOGANS))]
        m = fonts.text_mask(slogan, _pick_font(rng, hershey_only, False))
        h = H * rng.uniform(0.06, 0.13)
        w = min(W * 0.9, h * m.shape[1] / m.shape[0] * rng.uniform(0.8, 1.2))
        _paste(img, m, ((W - w) / 2, H * rng.uniform(0.8, 0.9), w, h), accent)

    # stickers in the corners
    for _ in range(rng.integers(0, 3) if rng.random() < 0.5 else 0):
        sw, sh = W * rng.uniform(0.07, 0.14), H * rng.uniform(0.1, 0.2)
        sx = rng.choice([W * 0.03, W * 0.97 - sw])
        sy = rng.choice([H * 0.04, H * 0.96 - sh])
        col = rng.uniform(0, 255, 3).tolist()
        cv2.rectangle(img, (int(sx), int(sy)), (int(sx + sw), int(sy + sh)), col, -1)
        digits = "".join(DIGITS[rng.integers(10)] for _ in range(2))
        _paste(img, fonts.text_mask(digits, cv2.FONT_HERSHEY_SIMPLEX), (sx + 2, sy + 2, sw - 4, sh - 4),
               (255 - np.array(col)).tolist())

    # main characters
    font = _pick_font(rng, hershey_only, True)
    groups = [g for g in text.split("-") if g]
    masks = [fonts.text_mask(g, font, thickness=int(rng.integers(3, 7))) for g in groups]
    ch = H * rng.uniform(0.38, 0.55)
    stretch = rng.uniform(0.6, 1.1)  # plate fonts are condensed
    widths = [ch * m.shape[1] / m.shape[0] * stretch for m in masks]
    gap = ch * rng.uniform(0.25, 0.7) if len(groups) > 1 else 0.0
    stacked = rng.random() < 0.08
    reserve = W * 0.1 if stacked else 0.0
    total = sum(widths) + gap * (len(groups) - 1)
    limit = W * rng.uniform(0.72, 0.93) - reserve
    if total > limit:
        k = limit / total
        widths = [w * k for w in widths]
        gap *= k
        total = limit
    cy = H * rng.uniform(0.47, 0.56)
    x = (W - total - reserve) / 2 + rng.uniform(-0.03, 0.03) * W + (reserve if stacked and rng.random() < 0.5 else 0)
    y = cy - ch / 2
    emboss = rng.random() < 0.4
    sep = rng.integers(4)  # 0 none, 1 dash, 2 dot, 3 logo
    for i, (m, w) in enumerate(zip(masks, widths)):
        if emboss:
            _paste(img, m, (x + 2, y + 2, w, ch), np.clip(ink * 0.3, 0, 255))
            _paste(img, m, (x - 1, y - 1, w, ch), np.clip(ink + 90, 0, 255))
        _paste(img, m, (x, y, w, ch), ink)
        x += w
        if i < len(groups) - 1:
            cx = int(x + gap / 2)
            if sep == 1:
                cv2.line(img, (int(cx - gap * 0.25), int(cy)), (int(cx + gap * 0.25), int(cy)), ink.tolist(), max(2, int(ch * 0.08)))
            elif sep == 2:
                cv2.circle(img, (cx, int(cy)), max(2, int(ch * 0.06)), ink.tolist(), -1, cv2.LINE_AA)
            elif sep == 3:
                col = _colour(rng, not light).tolist()
                cv2.ellipse(img, (cx, int(cy)), (max(3, int(gap * 0.35)), int(ch * 0.3)), 0, 0, 360, col, -1, cv2.LINE_AA)
            x += gap
    if stacked:  # two small stacked letters beside the main text (not labelled)
        letters = "".join(LETTERS[rng.integers(len(LETTERS))] for _ in range(2))
        sx = x + W * 0.02 if x + reserve < W * 0.97 else (W - total - reserve) / 2 - reserve * 0.2
        for k, c in enumerate(letters):
            _paste(img, fonts.text_mask(c, font), (sx, y + k * ch * 0.52, reserve * 0.5, ch * 0.45), ink)

    # frame and screws
    if rng.random() < 0.35:
        t = int(rng.integers(2, 9))
        col = (_colour(rng, not light) if rng.random() < 0.6 else ink).tolist()
        cv2.rectangle(img, (0, 0), (W - 1, H - 1), col, t)
    if rng.random() < 0.5:
        r = max(2, int(H * 0.03))
        col = np.clip(rng.uniform(100, 220) + rng.uniform(-10, 10, 3), 0, 255).tolist()
        for sx in (0.22, 0.78):
            for sy in ((0.1, 0.9) if rng.random() < 0.5 else (0.1,)):
                cv2.circle(img, (int(W * sx), int(H * sy)), r, col, -1, cv2.LINE_AA)
    return img, label
