"""Load a TFLite interpreter from ``ai_edge_litert`` or, failing that,
``tflite_runtime``. Never imports tensorflow."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os

logger = logging.getLogger(__name__)

RUNTIMES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


def interpreter_class(runtime: str = "auto"):
    """The ``Interpreter`` class of ``runtime`` ("auto" tries ai_edge_litert
    first, then tflite_runtime). Raises RuntimeError if none is installed."""
    names = list(RUNTIMES) if runtime == "auto" else [runtime]
    errors = []
    for name in names:
        try:
            mod = importlib.import_module(RUNTIMES[name])
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return mod.Interpreter, name
    raise RuntimeError("no TFLite runtime available (" + "; ".join(errors) + "); install ai-edge-litert")


def load_interpreter(path: str, num_threads: int, runtime: str = "auto", content: bytes | None = None):
    """An allocated interpreter of the model at ``path``, or of ``content``
    (the model's bytes, already verified) when given."""
    cls, name = interpreter_class(runtime)
    if content is not None:
        interp = cls(model_content=content, num_threads=num_threads)
    else:
        interp = cls(model_path=path, num_threads=num_threads)
    interp.allocate_tensors()
    logger.debug("loaded %s with %s", os.path.basename(path), name)
    return interp, name


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str, verify: bool = True) -> dict:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path, encoding="utf-8") as fh:
            man = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"model_dir: no manifest.json in {folder}") from None
    for key in ("detector", "ocr"):
        if key not in man.get("models", {}):
            raise ValueError(f"model_dir: manifest in {folder} has no {key!r} model")
    for key in ("detector", "ocr", "verifier"):  # the box verifier is optional
        if key not in man["models"]:
            continue
        entry = man["models"][key]
        file = os.path.join(folder, entry["file"])
        if not os.path.exists(file):
            raise ValueError(f"model_dir: {entry['file']} missing in {folder}")
        if verify and sha256(file) != entry["sha256"]:
            raise ValueError(f"model_dir: {entry['file']} does not match its manifest checksum")
    return man
