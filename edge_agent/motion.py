"""Motion gating: skip frames that barely differ from the last processed one.

Cheap by design: the frame is shrunk to a small grey image (default 160 px
wide), blurred, and compared with the last *processed* frame; the frame counts
as changed when the fraction of pixels whose grey level moved by more than
``pixel_delta`` exceeds ``threshold``.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["MotionGate"]


class MotionGate:
    def __init__(self, *, threshold: float = 0.01, pixel_delta: int = 18, width: int = 160, max_skip: int = 0) -> None:
        """``threshold``: fraction of changed pixels (0..1) that lets a frame
        through; ``pixel_delta``: grey-level change (1..255) that counts as a
        changed pixel; ``width``: comparison width in pixels (16..1920);
        ``max_skip``: if > 0, let a frame through after this many skipped ones
        even without motion (0 = never force)."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in 0..1, got {threshold!r}")
        if isinstance(pixel_delta, bool) or not isinstance(pixel_delta, int) or not 1 <= pixel_delta <= 255:
            raise ValueError(f"pixel_delta must be an integer in 1..255, got {pixel_delta!r}")
        if isinstance(width, bool) or not isinstance(width, int) or not 16 <= width <= 1920:
            raise ValueError(f"width must be an integer in 16..1920, got {width!r}")
        if isinstance(max_skip, bool) or not isinstance(max_skip, int) or max_skip < 0:
            raise ValueError(f"max_skip must be an integer >= 0, got {max_skip!r}")
        self.threshold = float(threshold)
        self.pixel_delta = pixel_delta
        self.width = width
        self.max_skip = max_skip
        self._last: np.ndarray | None = None
        self._skipped = 0

    def _small(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
            raise ValueError("image must be a non-empty 2-D or 3-D numpy array")
        grey = image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
        h, w = grey.shape[:2]
        nh = max(1, round(h * self.width / w))
        small = cv2.resize(grey, (self.width, nh), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (5, 5), 0)

    def changed_fraction(self, image: np.ndarray) -> float:
        """Fraction of changed pixels vs. the last processed frame (1.0 if none)."""
        small = self._small(image)
        if self._last is None or self._last.shape != small.shape:
            return 1.0
        diff = cv2.absdiff(small, self._last)
        return float(np.count_nonzero(diff > self.pixel_delta)) / diff.size

    def should_process(self, image: np.ndarray) -> bool:
        """True if ``image`` should be recognised; it then becomes the reference."""
        small = self._small(image)
        if self._last is None or self._last.shape != small.shape:
            moved = True
        else:
            diff = cv2.absdiff(small, self._last)
            moved = np.count_nonzero(diff > self.pixel_delta) / diff.size > self.threshold
        if not moved and self.max_skip and self._skipped >= self.max_skip:
            moved = True
        if moved:
            self._last = small
            self._skipped = 0
        else:
            self._skipped += 1
        return moved

    def reset(self) -> None:
        self._last = None
        self._skipped = 0
