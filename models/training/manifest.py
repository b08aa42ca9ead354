"""Write ``models/manifest.json`` for the shipped TFLite files.

    python -m models.training.manifest --dir models --version 1.0.0
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


def build(folder: str, version: str) -> dict:
    det = os.path.join(folder, "plate_detector.tflite")
    ocr = os.path.join(folder, "plate_ocr.tflite")
    return {
        "name": "alpr-us",
        "version": version,
        "models": {
            "detector": {
                "name": "plate_detector",
                "version": version,
                "file": "plate_detector.tflite",
                "sha256": sha256(det),
                "bytes": os.path.getsize(det),
                "input_shape": [1, 384, 384, 3],
                "input": "RGB float32 0..1, letterboxed (long side 384, pad bottom/right with 114)",
                "output": "(1, 96, 96, 5): heatmap logit, centre offset x/y (sigmoid), log w/h in cells",
                "stride": 4,
                "quantization": "int8 (float32 input/output)",
            },
            "ocr": {
                "name": "plate_ocr",
                "version": version,
                "file": "plate_ocr.tflite",
                "sha256": sha256(ocr),
                "bytes": os.path.getsize(ocr),
                "input_shape": [1, 64, 128, 1],
                "input": "grey float32 0..1, crop resized to 128x64",
                "output": "(1, 32, 37) CTC logits, blank last",
                "charset": CHARSET,
                "blank_index": len(CHARSET),
                "quantization": "int8 (float32 input/output)",
            },
        },
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="models")
    ap.add_argument("--version", required=True)
    a = ap.parse_args(argv)
    man = build(a.dir, a.version)
    with open(os.path.join(a.dir, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(man, fh, indent=2)
        fh.write("\n")
    print(json.dumps({k: v["sha256"] for k, v in man["models"].items()}))


if __name__ == "__main__":
    main()
