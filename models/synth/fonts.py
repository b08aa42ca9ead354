"""Fonts for the synthetic plates.

TrueType fonts come from Debian packages (``fonts-dejavu-core``,
``fonts-routed-gothic``, ``fonts-opendin``, ``fonts-liberation2``) and are drawn
with OpenCV 5's ``cv2.FontFace``; OpenCV's built-in Hershey fonts are always
available. Missing packages are skipped; :func:`truetype_fonts` with
``required=True`` raises a clear error when none is installed.
"""

from __future__ import annotations

import functools
import logging
import os

import cv2
import numpy as np

logger = logging.getLogger(__name__)

FONT_ROOT = os.environ.get("ALPR_FONT_ROOT", "/usr/share/fonts/truetype")

# (relative path, debian package, good for the main characters?)
CANDIDATES: tuple[tuple[str, str, bool], ...] = (
    ("dejavu/DejaVuSansCondensed-Bold.ttf", "fonts-dejavu-core", True),
    ("dejavu/DejaVuSansCondensed.ttf", "fonts-dejavu-core", True),
    ("dejavu/DejaVuSans-Bold.ttf", "fonts-dejavu-core", True),
    ("dejavu/DejaVuSansMono-Bold.ttf", "fonts-dejavu-core", True),
    ("dejavu/DejaVuSans.ttf", "fonts-dejavu-core", True),
    ("dejavu/DejaVuSerifCondensed-Bold.ttf", "fonts-dejavu-core", False),
    ("dejavu/DejaVuSerif-Italic.ttf", "fonts-dejavu-core", False),
    ("dejavu/DejaVuSans-BoldOblique.ttf", "fonts-dejavu-core", False),
    ("routed-gothic/routed-gothic-narrow.ttf", "fonts-routed-gothic", True),
    ("routed-gothic/routed-gothic.ttf", "fonts-routed-gothic", True),
    ("routed-gothic/routed-gothic-wide.ttf", "fonts-routed-gothic", True),
    ("routed-gothic/routed-gothic-narrow-half-italic.ttf", "fonts-routed-gothic", False),
    ("opendin/OSP-DIN.ttf", "fonts-opendin", True),
    ("liberation2/LiberationSans-Bold.ttf", "fonts-liberation2", True),
    ("liberation2/LiberationSans-Regular.ttf", "fonts-liberation2", True),
    ("liberation2/LiberationMono-Bold.ttf", "fonts-liberation2", True),
    ("liberation2/LiberationSerif-Bold.ttf", "fonts-liberation2", False),
    ("liberation2/LiberationSerif-Italic.ttf", "fonts-liberation2", False),
)

HERSHEY = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
)


@functools.lru_cache(maxsize=None)
def truetype_fonts(main_only: bool = False, required: bool = False) -> tuple[str, ...]:
    """Paths of the installed candidate fonts."""
    found = tuple(
        os.path.join(FONT_ROOT, rel)
        for rel, _pkg, main in CANDIDATES
        if (main or not main_only) and os.path.exists(os.path.join(FONT_ROOT, rel))
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

    ``font`` is a TTF path or a Hershey font id (int). The mask is cropped to
    the ink so callers can stretch it into any box.
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
