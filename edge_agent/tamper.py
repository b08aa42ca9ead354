"""Camera tamper detection: is the view covered (black), out of focus or
smeared (blurred), or turned away from where it was installed (moved)?

Each camera's worker hands every frame to :meth:`TamperDetector.observe`; every
``tamper_check_seconds`` the frame is shrunk to 160 pixels wide, grey, and
compared with the camera's *reference*, the first view this agent saw that was
neither black nor featureless:

- **black**: mean brightness below ``black_level`` (a hand, tape, a bag);
- **blurred**: sharpness (variance of the Laplacian over the image's variance,
  so dusk does not count) below ``blur_ratio`` of the reference's (spray,
  condensation, a knocked focus ring);
- **moved**: the normalised correlation of the gradient images with the
  reference's below ``moved_ratio`` (the pole turned, the camera pushed). Cars
  passing cover part of the view and change little of the structure of the
  road, kerbs and buildings; a turned camera changes all of it.

A condition is reported after ``confirm_checks`` consecutive checks show it,
and cleared after as many that do not, so one odd frame (a lorry filling the
view, a flash) does not raise an alert. The result rides in the heartbeat
(:mod:`edge_agent.wire.health`); central raises the alert.

The reference lives in memory only (an image of the street is not kept on
disk): a restarted agent takes a new one, so a field tech who re-aims a camera
restarts the agent to accept the new view.
"""

from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np

WIDTH = 160


@dataclasses.dataclass(frozen=True)
class TamperSettings:
    check_seconds: float = 5.0
    black_level: float = 12.0
    blur_ratio: float = 0.25
    moved_ratio: float = 0.5
    confirm_checks: int = 3
    min_reference_contrast: float = 8.0     # a view flatter than this (grey std) cannot serve as a reference


@dataclasses.dataclass(frozen=True)
class Measure:
    brightness: float
    sharpness: float
    similarity: float | None     # to the reference; None while there is none


def _small_grey(image: np.ndarray) -> np.ndarray:
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape[:2]
    if w > WIDTH:
        grey = cv2.resize(grey, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA)
    return grey


def _gradient(grey: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(grey.astype(np.float32), (3, 3), 0)
    mag = cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    mag -= mag.mean()
    norm = float(np.linalg.norm(mag))
    return mag / norm if norm > 0 else mag


class TamperDetector:
    """One camera's tamper state; thread-safe to read (:attr:`flags`) while the
    camera's thread calls :meth:`observe`."""

    def __init__(self, settings: TamperSettings = TamperSettings()) -> None:
        self.s = settings
        self._ref_grad: np.ndarray | None = None
        self._ref_sharp = 0.0
        self._last_check: float | None = None
        self._streak = {"black": 0, "blurred": 0, "moved": 0}
        self._flags: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.last: Measure | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(k for k in ("black", "blurred", "moved") if k in self._flags)

    def observe(self, image: np.ndarray | None, now: float) -> None:
        """Look at a frame if a check is due (``now``: a monotonic clock)."""
        if self.s.check_seconds <= 0 or image is None or image.size == 0:
            return
        if self._last_check is not None and now - self._last_check < self.s.check_seconds:
            return
        self._last_check = now
        self.check(image)

    def check(self, image: np.ndarray) -> Measure:
        """Measure one frame now and update the confirmed conditions."""
        grey = _small_grey(image)
        brightness = float(grey.mean())
        contrast = float(grey.std())
        # detail relative to contrast: dusk or a dimmer scene lowers both alike, a blur only the first
        sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var()) / max(contrast * contrast, 1.0)
        grad = _gradient(grey)
        seen = set()
        similarity = None
        if brightness < self.s.black_level:
            seen.add("black")
        elif self._ref_grad is None:
            if contrast >= self.s.min_reference_contrast:
                self._ref_grad, self._ref_sharp = grad, sharpness
        else:
            if grad.shape == self._ref_grad.shape:
                similarity = float((grad * self._ref_grad).sum())
            if sharpness < self.s.blur_ratio * self._ref_sharp:
                seen.add("blurred")     # a smeared view correlates poorly too: not also "moved"
            elif similarity is None or similarity < self.s.moved_ratio:
                seen.add("moved")       # a different resolution is a different camera or view
        self._confirm(seen)
        self.last = Measure(brightness, sharpness, similarity)
        return self.last

    def _confirm(self, seen: set[str]) -> None:
        flags = set(self._flags)
        for kind in self._streak:
            present = kind in seen
            if present == (kind in flags):
                self._streak[kind] = 0
                continue
            self._streak[kind] += 1
            if self._streak[kind] >= self.s.confirm_checks:
                (flags.add if present else flags.discard)(kind)
                self._streak[kind] = 0
        with self._lock:
            self._flags = frozenset(flags)
