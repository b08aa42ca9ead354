"""Write ``models/manifest.json`` for the shipped TFLite files.

    .venv/bin/python -m models.training.manifest --dir models --version 1.0.0

Shapes are read from the TFLite files (needs a TFLite runtime, not TensorFlow).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

from ..synth.plates import CHARSET


def sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def io_shapes(path: str) -> tuple[list[int], list[int]]:
    """Input shape signature (-1 for a free dimension) and output shape of a
    TFLite file, read from the file itself so the manifest cannot disagree."""
    from edge_agent.recognition._runtime import load_interpreter

    interp, _ = load_interpreter(path, 1)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    return [int(v) for v in inp["shape_signature"]], [int(v) for v in out["shape_signature"]]


def build(folder: str, version: str, detect_size: int = 384, detector_version: str | None = None,
          ocr_version: str | None = None, verifier_version: str | None = None) -> dict:
    """The manifest of the files in ``folder`` (detector, OCR and, when
    ``plate_verifier.tflite`` is there, the box verifier); ``version`` is the
    set's, and each model's unless given (a model carried over unchanged keeps its own)."""
    det = os.path.join(folder, "plate_detector.tflite")
    ocr = os.path.join(folder, "plate_ocr.tflite")
    det_in, _ = io_shapes(det)
    ocr_in, ocr_out = io_shapes(ocr)
    free = det_in[1] < 0 or det_in[2] < 0
    size = detect_size if free else det_in[1]
    man = {
        "name": "alpr-us",
        "version": version,
        "models": {
            "detector": {
                "name": "plate_detector",
                "version": detector_version or version,
                "file": "plate_detector.tflite",
                "sha256": sha256(det),
                "bytes": os.path.getsize(det),
                "input_shape": det_in,
                "input_size": size,
                "input": (f"RGB float32 0..1, letterboxed (long side {size}, pad bottom/right with 114 "
                          + ("to a multiple of 32; -1: free height/width)" if free else "to a square)")),
                "output": "(1, H/4, W/4, 5): heatmap logit, centre offset x/y (sigmoid), log w/h in cells",
                "stride": 4,
                "quantization": "int8 (float32 input/output)",
            },
            "ocr": {
                "name": "plate_ocr",
                "version": ocr_version or version,
                "file": "plate_ocr.tflite",
                "sha256": sha256(ocr),
                "bytes": os.path.getsize(ocr),
                "input_shape": ocr_in,
                "input": f"grey float32 0..1, crop resized to {ocr_in[2]}x{ocr_in[1]}",
                "output": f"({', '.join(map(str, ocr_out))}) CTC logits, blank last",
                "charset": CHARSET,
                "blank_index": len(CHARSET),
                "quantization": "int8 (float32 input/output)",
            },
        },
    }
    ver = os.path.join(folder, "plate_verifier.tflite")
    if os.path.exists(ver):
        ver_in, _ = io_shapes(ver)
        man["models"]["verifier"] = {
            "name": "plate_verifier",
            "version": verifier_version or version,
            "file": "plate_verifier.tflite",
            "sha256": sha256(ver),
            "bytes": os.path.getsize(ver),
            "input_shape": ver_in,
            "input": (f"BGR float32 0..1, {ver_in[2]}x{ver_in[1]}: the detector's box widened to 1.5x its width "
                      "and 2x its height (edge_agent.recognition._detect.verifier_crop)"),
            "output": "(1, 1) logit: the box is a plate",
            "quantization": "int8 (float32 input/output)",
        }
    return man


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="models")
    ap.add_argument("--version", required=True, help="version of the set (and of each model unless given below)")
    ap.add_argument("--detector-version", help="the detector's own version, when it is carried over unchanged")
    ap.add_argument("--ocr-version", help="the OCR's own version, when it is carried over unchanged")
    ap.add_argument("--verifier-version", help="the verifier's own version, when it is carried over unchanged")
    ap.add_argument("--detect-size", type=int, default=384, help="default input long side of a free-shape detector")
    a = ap.parse_args(argv)
    man = build(a.dir, a.version, a.detect_size, a.detector_version, a.ocr_version, a.verifier_version)
    with open(os.path.join(a.dir, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(man, fh, indent=2)
        fh.write("\n")
    print(json.dumps({k: v["sha256"] for k, v in man["models"].items()}))


if __name__ == "__main__":
    main()
