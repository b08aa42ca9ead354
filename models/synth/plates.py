"""Render US-style licence plates (flat, front view) with OpenCV only.

Everything is driven by a ``numpy.random.Generator`` so a seed gives the same
plate every time. :func:`render_plate` returns a BGR image and the label: only
the main characters. Real US plates carry big graphics the reader must skip,
so the renderer draws them as distractors that are *not* part of the label (as
in the OpenALPR US benchmark labels): state names (also in red script),
slogans, month/year stickers, the wheelchair symbol, state emblems between the
character groups, vertical stacked two-character text, frames and bolts.
Main characters are tall and condensed like real plate fonts.
"""

from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

from . import fonts

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # real US labels use O and 0 as different characters
# Many states leave I, O and Q out of standard serials (they read as 1 and 0),
# but many series use them (us-crops' labels: Rhode Island XO706, West Virginia
# OEC617, Louisiana OQK466, Indiana 824BOJ; most European plates): a plate's
# letter group uses every letter on 35 % of plates. With 8 % (models up to
# 0.6.0) the OCR reads a letter group's O as 0 ("PRO" -> "PR0" on the
# hand-read detect/ val crops of bench/bench_ocr_real.py).
SERIAL_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
ALL_LETTERS_SHARE = 0.35
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
    ("NL-LNNNN", 2), ("NL-NNNNN", 1), ("NN-LLNNN", 1),  # county prefixes (Idaho, Montana)
)


def random_pattern(rng: np.random.Generator) -> str:
    weights = np.array([w for _p, w in PATTERNS], float)
    return PATTERNS[rng.choice(len(PATTERNS), p=weights / weights.sum())][0]


def fill_pattern(rng: np.random.Generator, pattern: str) -> str:
    letters = LETTERS if rng.random() < ALL_LETTERS_SHARE else SERIAL_LETTERS
    out = []
    for ch in pattern:
        if ch == "L":
            out.append(letters[rng.integers(len(letters))])
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
    if ttf and rng.random() < 0.85:
        return ttf[rng.integers(len(ttf))]
    return int(fonts.HERSHEY[rng.integers(2 if main else len(fonts.HERSHEY))])


def _pick_script_font(rng, hershey_only: bool):
    """A cursive face for script state names ("California" in red)."""
    ttf = () if hershey_only else fonts.truetype_fonts(role=fonts.SCRIPT)
    if ttf and rng.random() < 0.6:
        return ttf[rng.integers(len(ttf))]
    return int(fonts.HERSHEY_SCRIPT[rng.integers(len(fonts.HERSHEY_SCRIPT))])


@functools.lru_cache(maxsize=2048)
def _decor_mask(text: str, font) -> np.ndarray:
    """Headers and slogans repeat a lot: render each (text, font) once."""
    return fonts.text_mask(text, font)


def _text_colour(rng, bg_light: bool) -> np.ndarray:
    if bg_light:
        palette = ([20, 20, 20], [120, 40, 10], [20, 20, 150], [30, 90, 20], [90, 20, 90])
    else:
        palette = ([245, 245, 245], [40, 210, 240], [200, 230, 250], [230, 230, 200])
    c = np.array(palette[rng.integers(len(palette))], float) + rng.uniform(-20, 20, 3)
    return np.clip(c, 0, 255)


def _draw_header(rng, img, accent, light: bool, hershey_only: bool) -> None:
    """State name on top: block capitals, or a big red script name."""
    H, W = img.shape[:2]
    state = STATES[rng.integers(len(STATES))]
    if rng.random() < 0.3:
        font = _pick_script_font(rng, hershey_only)
        state = state.title() if rng.random() < 0.8 else state
        h = H * rng.uniform(0.14, 0.27)
        colour = np.clip(np.array([30, 30, 200]) + rng.uniform(-30, 30, 3), 0, 255) if light else accent
    else:
        font = _pick_font(rng, hershey_only, False)
        h = H * rng.uniform(0.09, 0.22)
        colour = accent
    m = _decor_mask(state, font)
    w = min(W * 0.92, h * m.shape[1] / m.shape[0] * rng.uniform(0.8, 1.3))
    _paste(img, m, ((W - w) / 2 + rng.uniform(-0.05, 0.05) * W, H * rng.uniform(0.02, 0.08), w, h), colour)


def _draw_footer(rng, img, accent, hershey_only: bool) -> None:
    H, W = img.shape[:2]
    slogan = SLOGANS[rng.integers(len(SLOGANS))]
    m = _decor_mask(slogan, _pick_font(rng, hershey_only, False))
    h = H * rng.uniform(0.06, 0.14)
    w = min(W * 0.9, h * m.shape[1] / m.shape[0] * rng.uniform(0.8, 1.2))
    _paste(img, m, ((W - w) / 2, H * rng.uniform(0.79, 0.9), w, h), accent)


def _draw_stickers(rng, img) -> None:
    """Month/year registration stickers in the corners."""
    H, W = img.shape[:2]
    for _ in range(rng.integers(1, 3)):
        sw, sh = W * rng.uniform(0.07, 0.16), H * rng.uniform(0.1, 0.22)
        sx = rng.choice([W * rng.uniform(0.01, 0.05), W * rng.uniform(0.95, 0.99) - sw])
        sy = rng.choice([H * rng.uniform(0.02, 0.06), H * rng.uniform(0.94, 0.98) - sh])
        col = rng.uniform(0, 255, 3).tolist()
        cv2.rectangle(img, (int(sx), int(sy)), (int(sx + sw), int(sy + sh)), col, -1)
        if rng.random() < 0.4:
            text = MONTHS[rng.integers(len(MONTHS))]
        else:
            text = "".join(DIGITS[rng.integers(10)] for _ in range(2 if rng.random() < 0.7 else 4))
        _paste(img, fonts.text_mask(text, cv2.FONT_HERSHEY_SIMPLEX), (sx + 2, sy + 2, sw - 4, sh - 4),
               (255 - np.array(col)).tolist())


MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@functools.lru_cache(maxsize=1)
def _wheelchair() -> np.ndarray:
    """Mask of the international accessibility symbol (drawn, no asset)."""
    m = np.zeros((100, 90), np.uint8)
    cv2.circle(m, (52, 12), 10, 255, -1, cv2.LINE_AA)
    cv2.line(m, (48, 28), (44, 58), 255, 11, cv2.LINE_AA)
    cv2.line(m, (46, 40), (68, 40), 255, 8, cv2.LINE_AA)
    cv2.line(m, (44, 58), (68, 58), 255, 9, cv2.LINE_AA)
    cv2.line(m, (68, 58), (80, 84), 255, 9, cv2.LINE_AA)
    cv2.ellipse(m, (42, 68), (27, 27), 0, 200, 480, 255, 8, cv2.LINE_AA)
    return m


def _emblem(rng, img, box) -> None:
    """A state emblem (fruit, clover, seal, flag, star) filling ``box``."""
    x, y, w, h = box
    cx, cy, r = int(x + w / 2), int(y + h / 2), max(3, int(min(w, h) * 0.45))
    kind = rng.integers(5)
    c = rng.uniform(0, 255, 3).tolist()
    if kind == 0:  # orange / peach with a leaf
        fruit = [rng.uniform(0, 60), rng.uniform(100, 180), rng.uniform(200, 255)]
        cv2.circle(img, (cx, cy), r, fruit, -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx + r // 2, cy - r), (max(2, r // 2), max(1, r // 4)), -30, 0, 360, (40, 140, 40), -1, cv2.LINE_AA)
    elif kind == 1:  # clover
        green = (rng.uniform(20, 80), rng.uniform(120, 200), rng.uniform(20, 80))
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            cv2.circle(img, (cx + dx * r // 2, cy + dy * r // 2), max(2, r // 2), green, -1, cv2.LINE_AA)
    elif kind == 2:  # seal
        cv2.circle(img, (cx, cy), r, c, -1, cv2.LINE_AA)
        cv2.circle(img, (cx, cy), int(r * 0.75), (255 - np.array(c)).tolist(), max(1, r // 8), cv2.LINE_AA)
    elif kind == 3:  # flag
        x0, y0, x1, y1 = int(x), int(cy - h * 0.3), int(x + w), int(cy + h * 0.3)
        cv2.rectangle(img, (x0, y0), (x1, y1), (245, 245, 245), -1)
        for k in range(0, 5, 2):
            ys = int(y0 + (y1 - y0) * k / 5)
            cv2.rectangle(img, (x0, ys), (x1, ys + max(1, (y1 - y0) // 5)), (40, 40, 200), -1)
        cv2.rectangle(img, (x0, y0), (int(x0 + w * 0.4), int(y0 + (y1 - y0) * 0.5)), (120, 40, 20), -1)
    else:  # star
        ang = np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([cx + rad * np.cos(ang), cy - rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(img, [pts], c, cv2.LINE_AA)


def _draw_side(rng, img, kind: str, box, ink, font) -> None:
    """Draw a big left/right graphic that is not part of the label."""
    x, y, w, h = box
    if kind == "wheelchair":
        if rng.random() < 0.3:  # white symbol on a blue square
            cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), (160, 80, 20), -1)
            _paste(img, _wheelchair(), (x + w * 0.1, y + h * 0.1, w * 0.8, h * 0.8), (250, 250, 250))
        else:
            _paste(img, _wheelchair(), (x, y, w, h), ink)
    elif kind == "stacked":  # e.g. "4 H", "R T": two or three characters stacked vertically
        n = 2 if rng.random() < 0.85 else 3
        colour = ink if rng.random() < 0.6 else _text_colour(rng, bool(img.mean() > 127))
        cw = min(w * rng.uniform(0.45, 0.8), h / n)
        for k in range(n):
            c = CHARSET[rng.integers(len(CHARSET))]
            _paste(img, fonts.glyph_mask(c, font), (x + (w - cw) / 2, y + k * h / n + h * 0.03, cw, h / n - h * 0.06), colour)
    elif kind == "art":
        _art(rng, img, box)
    else:
        _emblem(rng, img, box)


def _draw_band(rng, img, width: float, font) -> None:
    """A full-height coloured band at the plate's left edge, not part of the
    label: a ring of stars or an emblem with one to three small letters under
    it (the European band, "RO", "LT", "D"), or a short word written down it
    (specialty plates' cause bands). Real first characters right of such a
    band were dropped by OCR models trained without one."""
    H = img.shape[0]
    w = max(4, int(width))
    colour = (rng.uniform(120, 200), rng.uniform(30, 90), rng.uniform(0, 40)) if rng.random() < 0.6 else rng.uniform(0, 255, 3)
    cv2.rectangle(img, (0, 0), (w, H), tuple(float(c) for c in colour), -1)
    ink = (250, 250, 250) if float(np.mean(colour)) < 140 else (20, 20, 20)
    if rng.random() < 0.7:
        cx, cy, r = w / 2, H * rng.uniform(0.2, 0.35), w * 0.32
        if rng.random() < 0.6:  # a ring of small stars
            for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
                cv2.circle(img, (int(cx + r * np.cos(a)), int(cy + r * np.sin(a))), max(1, int(w / 20)), (40, 200, 240), -1, cv2.LINE_AA)
        else:
            _emblem(rng, img, (cx - r, cy - r, 2 * r, 2 * r))
        code = "".join(LETTERS[int(k)] for k in rng.integers(0, 26, int(rng.integers(1, 4))))
        th = min(H * rng.uniform(0.12, 0.2), w * 0.9 / max(1, len(code)) * 1.6)
        tw = min(w * 0.85, th * 0.65 * len(code))
        _paste(img, fonts.text_mask(code, font), (cx - tw / 2, H * rng.uniform(0.58, 0.72), tw, th), ink)
    else:  # a word down the band
        word = SLOGANS[rng.integers(len(SLOGANS))].split()[0].upper()[:9]
        m = cv2.rotate(_decor_mask(word, _pick_font(rng, False, False)), cv2.ROTATE_90_COUNTERCLOCKWISE)
        bh = H * rng.uniform(0.5, 0.85)
        bw = min(w * 0.8, bh * m.shape[1] / m.shape[0])
        _paste(img, m, (w / 2 - bw / 2, (H - bh) / 2, bw, bh), ink)


def _art(rng, img, box) -> None:
    """Plate artwork that is not a character: a composite of shapes in a few
    colours, sometimes framed, sometimes with small text inside (Alaska's
    "50" flag, Indiana's torch and stars, Maine's pine cone, "DONATE LIFE",
    an archer or a bird). Real plates put such pictures left of the serial,
    often taller than the characters; a reader must not turn them into text."""
    x, y, w, h = box
    light = bool(img.mean() > 127)
    if rng.random() < 0.3:  # a coloured box behind it
        cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), _colour(rng, not light).tolist(), -1)
    for _ in range(int(rng.integers(2, 7))):
        c = (_text_colour(rng, light) if rng.random() < 0.5 else rng.uniform(0, 255, 3)).tolist()
        kind = rng.integers(6)
        px, py = x + rng.uniform(0, 1) * w, y + rng.uniform(0, 1) * h
        if kind == 0:  # blob / polygon silhouette
            n = int(rng.integers(3, 9))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(0.15, 0.5, n) * min(w, h)
            pts = np.stack([px + rad * np.cos(ang), py + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], c, cv2.LINE_AA)
        elif kind == 1:  # pine tree / branch: stacked triangles or a stem with needles
            tw, th = w * rng.uniform(0.3, 0.8), h * rng.uniform(0.5, 1.0)
            for k in range(3):
                yy = py - th / 2 + k * th / 4
                pts = np.array([[px, yy], [px - tw / 2 * (k + 1) / 3, yy + th / 3], [px + tw / 2 * (k + 1) / 3, yy + th / 3]], np.int32)
                cv2.fillPoly(img, [pts], c, cv2.LINE_AA)
        elif kind == 2:  # strokes (a bow, wings, a torch's rays)
            for _k in range(int(rng.integers(2, 8))):
                p0 = (int(px + rng.uniform(-0.5, 0.5) * w), int(py + rng.uniform(-0.5, 0.5) * h))
                p1 = (int(px + rng.uniform(-0.5, 0.5) * w), int(py + rng.uniform(-0.5, 0.5) * h))
                cv2.line(img, p0, p1, c, int(rng.integers(1, max(2, int(w / 10)))), cv2.LINE_AA)
        elif kind == 3:  # arc / ring
            ax = (max(2, int(w * rng.uniform(0.15, 0.5))), max(2, int(h * rng.uniform(0.15, 0.5))))
            a0 = float(rng.uniform(0, 360))
            cv2.ellipse(img, (int(px), int(py)), ax, 0, a0, a0 + float(rng.uniform(90, 360)), c,
                        int(rng.integers(1, max(2, int(w / 8)))), cv2.LINE_AA)
        elif kind == 4:  # small text: a word, a number or letters (not part of the plate number)
            if rng.random() < 0.5:
                word = "".join(CHARSET[rng.integers(len(CHARSET))] for _ in range(int(rng.integers(1, 5))))
            else:
                word = SLOGANS[rng.integers(len(SLOGANS))].split()[0].upper()[:8]
            m = _decor_mask(word, _pick_font(rng, False, False))
            tw = w * rng.uniform(0.4, 1.0)
            th = min(h * rng.uniform(0.12, 0.45), tw * m.shape[0] / m.shape[1] * 1.6)
            _paste(img, m, (x + (w - tw) * rng.uniform(0, 1), y + (h - th) * rng.uniform(0, 1), tw, th), c)
        else:
            _emblem(rng, img, (px - w / 4, py - h / 4, w / 2, h / 2))


# Glyph traits of real US serial fonts that a font file rarely has, drawn per plate (a state's font
# draws every 1 of a plate alike) when render_plate(traits=True); see GlyphTraits. Off by default so
# the seeded held-outs and tests keep their images; a training run opts in.
@dataclasses.dataclass(frozen=True)
class GlyphTraits:
    bare_one: bool = False     # every 1 a bare stem (Idaho, New Hampshire, Massachusetts)
    short_q: bool = False      # Q = the font's O with a short stub of a tail (Mississippi, Illinois)
    county_one: bool = False   # a county prefix (NL-...) starts with 1 or 2 as Idaho's mostly do

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "GlyphTraits":
        """Per-plate traits from a child generator seeded from ``rng``'s state without
        advancing it, so a plate's other draws are those it has without traits."""
        child = np.random.default_rng(rng.bit_generator.state["state"]["state"] % (2**63) + 7)
        return cls(bare_one=child.random() < 0.25, short_q=child.random() < 0.35, county_one=child.random() < 0.7)


TRAIT_PATTERNS = (("NL-LNNNN", 4), ("NL-LLNNN", 3), ("NL-NNNNN", 2), ("NL-LNNNL", 1))  # Idaho-style, with traits


def _glyphs(rng, group: str, font, traits: GlyphTraits = GlyphTraits()) -> list[np.ndarray]:
    """Character masks, sometimes made heavier (real plate strokes are thick)."""
    masks = [fonts.glyph_mask(c, font, int(rng.integers(3, 8)) if isinstance(font, int) else 2) for c in group]
    masks = [_serif_i(m) if c == "I" and rng.random() < 0.5 else m for c, m in zip(group, masks)]
    masks = [_plain_one(m) if c == "1" and (rng.random() < 0.15 or traits.bare_one) else m for c, m in zip(group, masks)]
    if traits.short_q and "Q" in group:
        o = fonts.glyph_mask("O", font, int(rng.integers(3, 8)) if isinstance(font, int) else 2)
        masks = [_short_q(o) if c == "Q" else m for c, m in zip(group, masks)]
    masks = [_open_four(m) if c == "4" and rng.random() < 0.35 else m for c, m in zip(group, masks)]
    k = int(rng.choice([0, 0, 3, 5])) if isinstance(font, str) else 0
    if k:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        masks = [cv2.dilate(m, kernel) for m in masks]
    return masks


def _serif_i(stem: np.ndarray) -> np.ndarray:
    """An I with bars at top and bottom, as most US plate fonts draw it (so it
    cannot pass for a 1); built from the font's own stem."""
    h, w = stem.shape
    sw = max(int(round(h * 0.42)), w + 4)
    bar = max(2, int(round(h * 0.12)))
    out = np.zeros((h, sw), np.uint8)
    x0 = (sw - w) // 2
    out[:, x0 : x0 + w] = stem
    out[:bar] = 255
    out[h - bar :] = 255
    return out


def _plain_one(one: np.ndarray) -> np.ndarray:
    """A 1 drawn as a bare stem with no flag or foot, as Idaho's, New
    Hampshire's and Massachusetts' plate fonts draw it (models 0.4.0 read it
    as I): a bar as tall as the font's 1 and as thick as its stroke. The label
    stays 1; that a bare stem is usually a 1 is the real-world prior, since
    standard serials mostly skip I."""
    h = one.shape[0]
    middle = one[int(h * 0.35) : max(int(h * 0.7), int(h * 0.35) + 1)] > 127  # below the flag, above the foot
    t = max(2, int(np.median(middle.sum(1))))
    out = np.zeros((h, t + 2), np.uint8)
    out[:, 1 : t + 1] = 255
    return out


def _short_q(o: np.ndarray) -> np.ndarray:
    """A Q drawn as the font's O with a short stub of a tail at the lower right, as
    Mississippi's and Illinois' plate fonts draw it (0.9.0 read such a Q as O)."""
    h, w = o.shape
    out = o.copy()
    t = max(2, int(round(min(w * 0.16, h * 0.1))))
    x0, y0 = int(w * 0.62), int(h * 0.8)
    cv2.line(out, (x0, y0), (min(w - 1, x0 + int(w * 0.22)), h - 1), 255, t)
    return out


def _open_four(four: np.ndarray) -> np.ndarray:
    """A 4 whose top is open (left stroke, bar, right stem), as California's
    and Illinois' plate fonts draw it; same size as the font's own 4."""
    h, w = four.shape
    t = max(2, int(round(min(w * 0.2, h * 0.12))))
    out = np.zeros((h, w), np.uint8)
    stem = int(w * 0.62)
    bar = int(h * 0.64)
    cv2.rectangle(out, (stem, 0), (min(stem + t, w - 1), h - 1), 255, -1)
    cv2.fillConvexPoly(out, np.array([[int(w * 0.12), 0], [int(w * 0.12) + t, 0], [t, bar + t], [0, bar + t]], np.int32), 255)
    cv2.rectangle(out, (0, bar), (w - 1, min(bar + t, h - 1)), 255, -1)
    return out


def _draw_main(rng, img, text: str, ink, light: bool, hershey_only: bool, side: str | None,
               traits: GlyphTraits = GlyphTraits()) -> None:
    """The labelled characters: tall, condensed, in groups with a separator or emblem between."""
    H, W = img.shape[:2]
    font = _pick_font(rng, hershey_only, True)
    groups = [_glyphs(rng, g, font, traits) for g in text.split("-") if g]
    ch = H * rng.uniform(0.42, 0.62)
    ref = fonts.glyph_mask("0", font)
    squeeze = min(rng.uniform(0.36, 0.62) / (ref.shape[1] / ref.shape[0]), 1.1)
    mono = rng.random() < 0.3
    cell = ch * ref.shape[1] / ref.shape[0] * squeeze
    space = ch * rng.uniform(0.03, 0.2)
    widths = [[ch * m.shape[1] / m.shape[0] * squeeze for m in g] for g in groups]
    if rng.random() < 0.35:  # a plate font: every wide glyph fills one cell, so O and 0 look alike
        widths = [[cell if w > 0.6 * cell else w for w in g] for g in widths]
    advances = [[max(cell, w) if mono else w for w in g] for g in widths]
    mid_emblem = len(groups) > 1 and rng.random() < 0.15
    gap = ch * (rng.uniform(0.9, 1.3) if mid_emblem else rng.uniform(0.25, 0.8))
    tall = side is not None and rng.random() < 0.45  # artwork taller than the characters
    # the gap between a side graphic and the serial: from touching to wide (it was always 2 % of the width,
    # and the OCR dropped real first characters that stand close to artwork or a band)
    side_gap = W * rng.uniform(0.004, 0.05)
    if side == "band":
        reserve = W * rng.uniform(0.07, 0.13) + side_gap
    else:
        reserve = ch * rng.uniform(0.55, 0.95) * (rng.uniform(1.0, 1.6) if tall else 1.0) + side_gap if side else 0.0
    total = sum(sum(a) + space * (len(a) - 1) for a in advances) + gap * (len(groups) - 1)
    limit = W * rng.uniform(0.74, 0.92) - reserve
    k = min(1.0, limit / total)
    if k < 0.75:  # too long for the plate: smaller characters as well as narrower
        ch *= max(0.7, (k / 0.75) ** 0.5)
    widths = [[w * k for w in g] for g in widths]
    advances = [[a * k for a in g] for g in advances]
    space, gap, total = space * k, gap * k, total * k
    side_left = side == "band" or rng.random() < 0.85
    x = (W - total - reserve) / 2 + rng.uniform(-0.02, 0.02) * W + (reserve if side_left else 0.0)
    cy = H * rng.uniform(0.47, 0.57)
    y = cy - ch / 2
    if side == "band":  # at the plate's left edge, the serial after it (as near as the centring puts it)
        x = max(x, reserve + W * 0.01)
        _draw_band(rng, img, reserve - side_gap, font)
    elif side:
        sx = x - reserve if side_left else x + total + side_gap
        sh = H * rng.uniform(0.6, 0.92) if tall else ch * 1.1
        if side == "stacked":  # each stacked character at most about half the serial's height
            sh = min(sh, ch * 1.15)  # (taller ones, unlabelled, were as big as the serial's own characters)
        sy = min(max(cy - sh / 2 + rng.uniform(-0.08, 0.08) * H, 0.0), H - sh)
        _draw_side(rng, img, side, (sx, sy, reserve - side_gap, sh), ink, font)
    emboss = rng.random() < 0.4
    sep = rng.integers(4)  # 0 none, 1 dash, 2 dot, 3 logo
    for i, (masks, ws, adv) in enumerate(zip(groups, widths, advances)):
        for m, w, a in zip(masks, ws, adv):
            gx = x + (a - w) / 2
            if emboss:
                _paste(img, m, (gx + 2, y + 2, w, ch), np.clip(ink * 0.3, 0, 255))
                _paste(img, m, (gx - 1, y - 1, w, ch), np.clip(ink + 90, 0, 255))
            _paste(img, m, (gx, y, w, ch), ink)
            x += a + space
        x -= space
        if i < len(groups) - 1:
            _draw_separator(rng, img, sep, mid_emblem, (x, cy, gap, ch), ink, light)
            x += gap


def _draw_separator(rng, img, sep: int, emblem: bool, geom, ink, light: bool) -> None:
    x, cy, gap, ch = geom
    cx = int(x + gap / 2)
    if emblem:
        box = (x + gap * 0.1, cy - ch * 0.45, gap * 0.8, ch * 0.9)
        (_art if rng.random() < 0.5 else _emblem)(rng, img, box)
    elif sep == 1:
        cv2.line(img, (int(cx - gap * 0.25), int(cy)), (int(cx + gap * 0.25), int(cy)), ink.tolist(), max(2, int(ch * 0.08)))
    elif sep == 2:
        cv2.circle(img, (cx, int(cy)), max(2, int(ch * 0.06)), ink.tolist(), -1, cv2.LINE_AA)
    elif sep == 3:
        col = _colour(rng, not light).tolist()
        cv2.ellipse(img, (cx, int(cy)), (max(3, int(gap * 0.35)), int(ch * 0.3)), 0, 0, 360, col, -1, cv2.LINE_AA)


def _draw_frame(rng, img, ink, light: bool) -> None:
    """Thin borders, dealer frames and bolts (often read as I/J/1 when ignored)."""
    H, W = img.shape[:2]
    if rng.random() < 0.45:
        t = int(rng.integers(1, 9))
        col = (_colour(rng, not light) if rng.random() < 0.6 else ink).tolist()
        inset = int(rng.integers(0, 6))
        cv2.rectangle(img, (inset, inset), (W - 1 - inset, H - 1 - inset), col, t)
    if rng.random() < 0.6:
        r = max(2, int(H * rng.uniform(0.025, 0.045)))
        col = np.clip(rng.uniform(60, 220) + rng.uniform(-10, 10, 3), 0, 255).tolist()
        for sx in (0.2 + rng.uniform(-0.04, 0.04), 0.8 + rng.uniform(-0.04, 0.04)):
            for sy in ((0.1, 0.9) if rng.random() < 0.5 else (0.1,)):
                cv2.circle(img, (int(W * sx), int(H * sy)), r, col, -1, cv2.LINE_AA)
                cv2.circle(img, (int(W * sx), int(H * sy)), max(1, r // 2), (30, 30, 30), -1, cv2.LINE_AA)


SIDE_KINDS = ("wheelchair", "stacked", "emblem", "art", "band")
SIDE_WEIGHTS = (0.07, 0.11, 0.07, 0.13, 0.06)  # 44 % of plates carry a big graphic or band beside the serial


def render_plate(
    rng: np.random.Generator,
    text: str | None = None,
    *,
    hershey_only: bool = False,
    size: tuple[int, int] = (320, 160),
    side: str | None = "random",
    traits: bool = False,
) -> tuple[np.ndarray, str]:
    """Render one flat plate. Returns ``(bgr_image, label)``.

    ``text`` may contain ``-`` or spaces to mark group gaps; they are not part
    of the returned label. ``side`` forces the big graphic beside the text
    (one of :data:`SIDE_KINDS` or None); by default one is drawn on 44 % of
    plates (:data:`SIDE_WEIGHTS`), 45 % of the graphics taller than the characters.
    ``traits`` draws :class:`GlyphTraits` for the plate (bare-stem 1s, short-tailed
    Qs, Idaho-style county prefixes with a leading 1 or 2 on a tenth of the plates);
    without it the plate is exactly the one the same ``rng`` always gave.
    """
    W, H = size
    light = rng.random() < 0.82
    img = _background(rng, W, H, light)
    ink = _text_colour(rng, light)
    glyph_traits = GlyphTraits.draw(rng) if traits else GlyphTraits()
    if text is None:
        text = fill_pattern(rng, random_pattern(rng))
        if traits:   # a tenth of the plates Idaho-style: a county prefix, mostly 1 or 2
            child = np.random.default_rng(rng.bit_generator.state["state"]["state"] % (2**63) + 11)
            if child.random() < 0.1:
                weights = np.array([w for _p, w in TRAIT_PATTERNS], float)
                text = fill_pattern(child, TRAIT_PATTERNS[child.choice(len(TRAIT_PATTERNS), p=weights / weights.sum())][0])
                if glyph_traits.county_one:
                    text = ("1" if child.random() < 0.65 else "2") + text[1:]
    text = text.upper().replace(" ", "-")
    label = "".join(c for c in text if c in CHARSET)
    accent = _text_colour(rng, light) if rng.random() < 0.6 else ink
    if rng.random() < 0.9:
        _draw_header(rng, img, accent, light, hershey_only)
    if rng.random() < 0.8:
        _draw_footer(rng, img, accent, hershey_only)
    if rng.random() < 0.5:
        _draw_stickers(rng, img)
    if side == "random":
        r = rng.random()
        edges = np.cumsum(SIDE_WEIGHTS)
        side = SIDE_KINDS[int(np.searchsorted(edges, r, side="right"))] if r < edges[-1] else None
    _draw_main(rng, img, text, ink, light, hershey_only, side, glyph_traits)
    _draw_frame(rng, img, ink, light)
    return img, label
