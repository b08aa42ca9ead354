"""OpenCV ``VideoCapture`` sources: V4L2/USB devices, RTSP/HTTP streams, video files."""

from __future__ import annotations

import datetime as dt
import logging

import cv2

from ..errors import CaptureError
from ..reads import Frame
from . import Source, redact

logger = logging.getLogger(__name__)


class OpenCVSource(Source):
    def __init__(self, camera) -> None:
        super().__init__(camera)
        self._cap = None
        self._start: dt.datetime | None = None
        self.truncated = False

    @property
    def finite(self) -> bool:
        return self.camera.source == "file" and not self.camera.loop

    def open(self) -> None:
        cam = self.camera
        if cam.source == "device":
            target = int(cam.uri) if cam.uri.isdigit() else (cam.uri or 0)
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
        elif cam.source == "stream":
            cap = cv2.VideoCapture(cam.uri, cv2.CAP_FFMPEG)
        else:
            cap = cv2.VideoCapture(cam.uri)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(f"camera {cam.id}: cannot open {cam.source} {redact(cam.uri)}")
        if cam.width and cam.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, cam.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cam.height)
        self._cap = cap

    def read(self) -> Frame | None:
        if self._cap is None:
            raise CaptureError(f"camera {self.camera.id}: not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            if self.camera.source == "file":
                if self.camera.loop:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, image = self._cap.read()
                    if ok:
                        return self._frame(image)
                    raise CaptureError(f"camera {self.camera.id}: cannot rewind {redact(self.camera.uri)}")
                at = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
                expected = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
                if expected > 0 and at < expected:  # cut short (a copy interrupted, a full card): say so
                    self.truncated = True
                    logger.warning("camera %s: file ended after frame %d of the %d its header announces; "
                                   "truncated or damaged", self.camera.id, at, expected)
                return None
            raise CaptureError(f"camera {self.camera.id}: {self.camera.source} stopped delivering frames")
        return self._frame(image)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
