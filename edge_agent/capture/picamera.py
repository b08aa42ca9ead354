"""Raspberry Pi camera through ``picamera2`` (apt ``python3-picamera2``; the
venv needs ``--system-site-packages``). Imported only when configured."""

from __future__ import annotations

import cv2

from ..errors import CaptureError
from ..reads import Frame
from . import Source


class PiCameraSource(Source):
    def __init__(self, camera) -> None:
        super().__init__(camera)
        self._cam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 - Pi only
        except ImportError as exc:
            raise CaptureError(
                f"camera {self.camera.id}: picamera2 is not installed; on a Pi run "
                "'apt install python3-picamera2' and create the venv with --system-site-packages") from exc
        try:
            cam = Picamera2()
            size = (self.camera.width or 1280, self.camera.height or 720)
            cam.configure(cam.create_video_configuration(main={"size": size, "format": "RGB888"}))
            cam.start()
        except Exception as exc:  # picamera2 raises assorted errors for a missing/busy sensor
            raise CaptureError(f"camera {self.camera.id}: cannot start the Pi camera: {exc}") from exc
        self._cam = cam

    def read(self) -> Frame | None:
        if self._cam is None:
            raise CaptureError(f"camera {self.camera.id}: not open")
        try:
            array = self._cam.capture_array("main")
        except Exception as exc:
            raise CaptureError(f"camera {self.camera.id}: capture failed: {exc}") from exc
        # picamera2's "RGB888" is BGR in memory order, which is what OpenCV expects.
        return self._frame(array if array.ndim == 3 else cv2.cvtColor(array, cv2.COLOR_GRAY2BGR))

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
