"""TEST DOUBLE: a recognizer that cannot read plates.

It returns the plates that :mod:`edge_agent.sample` declared in a clip's
sidecar file, by frame number, so the data path (tracking, sealing, buffer,
sync, central) can be tested before - and independently of - the models.
It is never the default and must never be configured on a real camera.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..reads import Detection, Frame
from . import Recognizer


class SidecarOracle(Recognizer):
    model_version = "sidecar-oracle (test double)"

    def __init__(self, *, sidecar: str, confidence: float = 0.95) -> None:
        doc = json.loads(Path(sidecar).read_text())
        self._frames = doc["frames"]
        self._confidence = confidence

    def recognize(self, frame: Frame) -> list[Detection]:
        entries = self._frames[(frame.seq - 1) % len(self._frames)]
        return [Detection(e["plate"], self._confidence, tuple(e["box"]), (),
                          tuple(self._confidence for _ in e["plate"])) for e in entries]
