"""Shipped recognition models (TFLite) and the code that trains them.

The runtime only needs :func:`model_dir`; training code lives in
``models.training`` and the synthetic data generator in ``models.synth``.
"""

from __future__ import annotations

import json
import pathlib

__all__ = ["model_dir", "manifest"]


def model_dir() -> pathlib.Path:
    """Folder holding the shipped ``*.tflite`` files and ``manifest.json``."""
    return pathlib.Path(__file__).resolve().parent


def manifest(folder: str | pathlib.Path | None = None) -> dict:
    """Parsed ``manifest.json`` of ``folder`` (default: the shipped models)."""
    path = pathlib.Path(folder) if folder is not None else model_dir()
    with open(path / "manifest.json", encoding="utf-8") as fh:
        return json.load(fh)
