"""Recognition: turn a :class:`~edge_agent.reads.Frame` into plate detections.

Every engine is one module behind the :class:`Recognizer` interface and is
chosen by the ``[recognition] type`` config key through :func:`create`.
"""

from __future__ import annotations

import abc
import importlib
from typing import Any

from ..reads import Detection, Frame

__all__ = ["Recognizer", "create", "ENGINES"]


class Recognizer(abc.ABC):
    """Finds plates in frames. Implementations must be safe to call from one
    thread at a time and must never log plate text."""

    #: Identifies the model(s) that produced a read; stored with every read.
    model_version: str = "unknown"

    @abc.abstractmethod
    def recognize(self, frame: Frame) -> list[Detection]:
        """Return the plates in ``frame`` (possibly none)."""

    def close(self) -> None:  # pragma: no cover - default no-op
        """Release model resources."""


# type name -> "module:Class". Modules are imported lazily so that a Pi without
# a given runtime can still run the others.
ENGINES: dict[str, str] = {
    "tflite": "edge_agent.recognition.tflite:TFLiteRecognizer",
    # Test double: reads the plate texts a generated sample declared in its
    # sidecar file. It cannot read a real plate; never the default.
    "sidecar-oracle": "edge_agent.recognition.oracle:SidecarOracle",
}


def create(kind: str, options: dict[str, Any]) -> Recognizer:
    try:
        target = ENGINES[kind]
    except KeyError:
        raise ValueError(
            f"unknown recognition type {kind!r}; choose one of {', '.join(sorted(ENGINES))}"
        ) from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**options)
