"""Fonts for the synthetic plates.

TrueType/OpenType fonts come from Debian packages and are drawn with OpenCV
5's ``cv2.FontFace``; OpenCV's built-in Hershey fonts are always available.
Real US plate characters are tall, condensed and heavy, so the list favours
condensed faces (Bebas Neue, Roboto Condensed, Liberation Sans Narrow, Yanone
Kaffeesatz, DejaVu Sans Condensed, Routed Gothic Narrow, OSP-DIN); wide faces
are squeezed by the plate renderer. A few bold serif faces (Liberation Serif,
DejaVu Serif Condensed, FreeSerif) draw characters too, as on Virginia's
specialty plates (models 0.4.0 read their serifed E as B). Script faces only draw distractors (state
names such as the red "California"). Missing packages are skipped;
:func:`truetype_fonts` with ``required=True`` raises a clear error when none is
installed. Only training needs these packages, never the runtime or tests.
"""

from __future__ import annotations

import functools
import logging
import os

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FONT_ROOT = os.environ.get("ALPR_FONT_ROOT", "/usr/share/fonts")

MAIN, DECOR, SCRIPT = "main", "decor", "script"

# (path under FONT_ROOT, debian package, role): MAIN faces may draw the plate
# characters, DECOR faces only headers/slogans, SCRIPT faces cursive headers.
CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("truetype/dejavu/DejaVuSansCondensed-Bold.ttf", "fonts-dejavu-extra", MAIN),
    ("truetype/dejavu/DejaVuSansCondensed.ttf", "fonts-dejavu-extra", MAIN),
    ("truetype/dejavu/DejaVuSans-Bold.ttf", "fonts-dejavu-core", MAIN),
    ("truetype/dejavu/DejaVuSansMono-Bold.ttf", "fonts-dejavu-core", MAIN),
    ("truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core", MAIN),
    ("truetype/dejavu/DejaVuSerifCondensed-Bold.ttf", "fonts-dejavu-extra", MAIN),
    ("truetype/dejavu/DejaVuSerif-Italic.ttf", "fonts-dejavu-extra", DECOR),
    ("truetype/dejavu/DejaVuSans-BoldOblique.ttf", "fonts-dejavu-extra", DECOR),
    ("truetype/routed-gothic/routed-gothic-narrow.ttf", "fonts-routed-gothic", MAIN),
    ("truetype/routed-gothic/routed-gothic.ttf", "fonts-routed-gothic", MAIN),
    ("truetype/routed-gothic/routed-gothic-wide.ttf", "fonts-routed-gothic", MAIN),
    ("truetype/routed-gothic/routed-gothic-narrow-half-italic.ttf", "fonts-routed-gothic", DECOR),
    ("truetype/opendin/OSP-DIN.ttf", "fonts-opendin", MAIN),
    ("truetype/liberation2/LiberationSans-Bold.ttf", "fonts-liberation2", MAIN),
    ("truetype/liberation2/LiberationSans-Regular.ttf", "fonts-liberation2", MAIN),
    ("truetype/liberation2/LiberationMono-Bold.ttf", "fonts-liberation2", MAIN),
    ("truetype/liberation2/LiberationSerif-Bold.ttf", "fonts-liberation2", MAIN),
    ("truetype/liberation2/LiberationSerif-Italic.ttf", "fonts-liberation2", SCRIPT),
    ("truetype/liberation/LiberationSansNarrow-Bold.ttf", "fonts-liberation", MAIN),
    ("truetype/liberation/LiberationSansNarrow-Regular.ttf", "fonts-liberation", MAIN),
    ("opentype/bebas-neue/BebasNeue-Bold.otf", "fonts-bebas-neue", MAIN),
    ("opentype/bebas-neue/BebasNeue-Regular.otf", "fonts-bebas-neue", MAIN),
    ("opentype/bebas-neue/BebasNeue-Book.otf", "fonts-bebas-neue", MAIN),
    ("truetype/roboto/unhinted/RobotoCondensed-Bold.ttf", "fonts-roboto-unhinted", MAIN),
    ("truetype/roboto/unhinted/RobotoCondensed-Medium.ttf", "fonts-roboto-unhinted", MAIN),
    ("truetype/roboto/unhinted/RobotoCondensed-Regular.ttf", "fonts-roboto-unhinted", MAIN),
    ("opentype/yanone-kaffeesatz/YanoneKaffeesatz-Bold.otf", "fonts-yanone-kaffeesatz", MAIN),
    ("opentype/yanone-kaffeesatz/YanoneKaffeesatz-Regular.otf", "fonts-yanone-kaffeesatz", MAIN),
    ("truetype/freefont/FreeSansBold.ttf", "fonts-freefont-ttf", MAIN),
    ("truetype/freefont/FreeSerifBold.ttf", "fonts-freefont-ttf", MAIN),
    ("truetype/croscore/Arimo-Bold.ttf", "fonts-croscore", MAIN),
    ("truetype/crosextra/Carlito-Bold.ttf", "fonts-crosextra-carlito", MAIN),
    ("opentype/lobster/lobster.otf", "fonts-lobster", SCRIPT),
)

HERSHEY = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
)
HERSHEY_SCRIPT = (cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX)


@functools.lru_cache(maxsize=None)
def truetype_fonts(main_only: bool = False, required: bool = False, role: str | None = None) -> tuple[str, ...]:
    """Paths of the installed candidate fonts (``role`` picks one role only).
    None with OpenCV 4 (the ``edge-legacy`` extra), which cannot draw TrueType
    text: the generator then draws with Hershey fonts only."""
    if not hasattr(cv2, "FontFace"):
        if required:
            raise RuntimeError(f"TrueType fonts need OpenCV >= 5 (cv2.FontFace); this is OpenCV {cv2.__version__}")
        return ()
    found = tuple(
        os.path.join(FONT_ROOT, rel)
        for rel, _pkg, r in CANDIDATES
        if (role is None or r == role)
        and (r == MAIN or not main_only)
        and os.path.exists(os.path.join(FONT_ROOT, rel))
    )
    if required and not found:
        pkgs = sorted({pkg for _r, pkg, _m in CANDIDATES})
        raise RuntimeError(
            f"no TrueType font found under {FONT_ROOT}; install the Debian packages {', '.join(pkgs)}"
        )
    return found


@functools.lru_cache(maxsize=64)
def _face(path: str):
    return cv2.FontFace(path)


def text_mask(text: str, font, *, thickness: int = 2) -> np.ndarray:
    """Tight uint8 mask (0..255) of ``text`` drawn in ``font``.

    ``font`` is a TTF/OTF path or a Hershey font id (int). The mask is cropped
    to the ink so callers can stretch it into any box.
    """
    if not text:
        return np.zeros((1, 1), np.uint8)
    if isinstance(font, str):
        size = 64
        canvas = np.zeros((size * 2, size * (len(text) + 2)), np.uint8)
        cv2.putText(canvas, text, (size // 2, int(size * 1.4)), 255, _face(font), size)
    else:
        scale = 2.0
        (w, h), base = cv2.getTextSize(text, font, scale, thickness)
        canvas = np.zeros((h + base + 20, w + 20), np.uint8)
        cv2.putText(canvas, text, (10, h + 10), font, scale, 255, thickness, cv2.LINE_AA)
    x, y, w, h = cv2.boundingRect((canvas > 20).astype(np.uint8))
    if w == 0 or h == 0:
        return np.zeros((1, 1), np.uint8)
    return canvas[y : y + h, x : x + w]


@functools.lru_cache(maxsize=4096)
def glyph_mask(char: str, font, thickness: int = 2) -> np.ndarray:
    """Cached :func:`text_mask` of one character, padded to the cap height.

    The mask keeps the character's own glyph (O and 0 differ per font) and is
    padded vertically so every character of a font shares one baseline and
    cap height (a short glyph stays short instead of being stretched).
    """
    ref = text_mask("H", font, thickness=thickness)
    m = text_mask(char, font, thickness=thickness)
    if m.shape[0] >= ref.shape[0]:
        return m
    pad = ref.shape[0] - m.shape[0]
    return np.pad(m, ((pad // 2, pad - pad // 2), (0, 0)))
