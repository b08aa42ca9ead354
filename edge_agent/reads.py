"""The values that flow through the edge pipeline.

``Frame`` (capture -> recognition) and ``Detection`` (recognition -> tracking)
live here; ``PlateRead`` (tracking -> buffer -> sync) is part of the wire
contract and is re-exported from :mod:`edge_agent.wire.schema`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from .wire.schema import Alternate, Location, PlateRead

__all__ = ["Box", "Alternate", "Frame", "Detection", "PlateRead", "Location"]

# (x, y, w, h) in pixels of the frame the box was found in.
Box = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured image.

    ``image`` is a BGR ``numpy.ndarray`` (OpenCV convention). ``captured_at`` is
    an aware UTC datetime; ``seq`` increases by one per frame of one source and
    never repeats while the source object lives.
    """

    camera_id: str
    seq: int
    captured_at: dt.datetime
    image: Any = dataclasses.field(repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Detection:
    """What a :class:`~edge_agent.recognition.Recognizer` finds in one frame."""

    plate: str
    confidence: float
    box: Box
    alternates: tuple[Alternate, ...] = ()
    char_confidences: tuple[float, ...] = ()

    def __repr__(self) -> str:  # never show plate text in logs or tracebacks
        return f"Detection(confidence={self.confidence:.2f}, box={self.box})"
