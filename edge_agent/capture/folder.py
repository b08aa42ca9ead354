"""A folder of still images, replayed in name order (field tests, demos)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from ..errors import CaptureError
from ..reads import Frame
from . import Source

logger = logging.getLogger(__name__)

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class FolderSource(Source):
    def __init__(self, camera) -> None:
        super().__init__(camera)
        self._files: list[Path] = []
        self._pos = 0
        self.skipped = 0

    @property
    def finite(self) -> bool:
        return not self.camera.loop

    def open(self) -> None:
        folder = Path(self.camera.uri)
        if not folder.is_dir():
            raise CaptureError(f"camera {self.camera.id}: {folder} is not a folder")
        # regular files only: a FIFO or device named *.jpg would block the reader for ever
        self._files = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
        self._pos = 0
        self._read_this_pass = 0

    def read(self) -> Frame | None:
        while True:
            if self._pos >= len(self._files):
                if not self.camera.loop or not self._files:
                    return None
                if not self._read_this_pass:  # a whole pass and not one readable image: not a camera
                    raise CaptureError(f"camera {self.camera.id}: no readable image in {self.camera.uri}")
                self._pos, self._read_this_pass = 0, 0
            path = self._files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self._read_this_pass += 1
                return self._frame(image)
            self.skipped += 1  # corrupt or unreadable: counted, logged, skipped
            logger.warning("camera %s: skipped unreadable image %s", self.camera.id, path.name)
