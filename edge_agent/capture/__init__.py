"""Frame sources. Each hardware or stream kind is one module behind
:class:`Source`, chosen by the camera's ``source`` config key.

``picamera2``  Raspberry Pi camera (``picamera2`` imported lazily, Pi only)
``device``     a V4L2 / USB camera through OpenCV (``uri`` = index or /dev/videoN)
``stream``     RTSP or HTTP stream through OpenCV (reconnects with backoff)
``file``       a video file (``loop`` replays it)
``folder``     a folder of images, in name order
"""

from __future__ import annotations

import abc
import datetime as dt
import re

from ..config import Camera
from ..reads import Frame

__all__ = ["Source", "create", "redact"]


class Source(abc.ABC):
    """Yields frames of one camera. ``read`` returns None at the end of a
    finite source and raises :class:`~edge_agent.errors.CaptureError` on
    failure; the agent retries a failed source with backoff."""

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self._seq = 0

    def _frame(self, image, captured_at: dt.datetime | None = None) -> Frame:
        self._seq += 1
        return Frame(self.camera.id, self._seq, captured_at or dt.datetime.now(dt.timezone.utc), image)

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:
        pass

    @property
    def finite(self) -> bool:
        return False


def redact(uri: str) -> str:
    """A stream URI fit for logs: user name and password (up to the last '@'
    of the authority, which a password may contain) and every query value removed
    (cameras take ``?user=...&pwd=...``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    path, q, query = tail.partition("?")
    if q:
        query = "&".join(part.partition("=")[0] + ("=***" if "=" in part else "") for part in query.split("&"))
    return f"{scheme}{sep}{authority}{slash}{path}{q}{query}"


def create(camera: Camera) -> Source:
    if camera.source == "picamera2":
        from .picamera import PiCameraSource
        return PiCameraSource(camera)
    if camera.source == "folder":
        from .folder import FolderSource
        return FolderSource(camera)
    from .opencv import OpenCVSource
    return OpenCVSource(camera)
