"""How small a plate the detector finds, by frame size and detector input size.

    .venv/bin/python bench/bench_plate_size.py [--model-dir DIR] [--scenes 40] [--no-verify] [--json]

Renders seeded synthetic frames (720p and 1080p) with one plate of a given
width, runs the detector alone on one thread and prints, for each detector
input long side (``detect_size``; only the model's own size for a fixed-shape
detector) and each tile grid, the recall at IoU >= 0.5 per plate width and the
median detection time. Recall only: the synthetic backgrounds say nothing
about false positives (bench_recognition.py measures precision on real scenes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.recognition._detect import iou  # noqa: E402
from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402
from models.synth.scenes import scene_with_plates  # noqa: E402

WIDTHS = (40, 60, 80, 120, 180)
FRAMES = ((1280, 720), (1920, 1080))


def scenes(size, width: int, n: int):
    out = []
    for i in range(n):
        rng = np.random.default_rng(10_000 + 97 * width + i)
        img, placed = scene_with_plates(rng, size, (("7ABC123", width),), hershey_only=False)
        if placed:
            out.append((img, placed[0][0]))
    return out


def measure(rec, frames) -> dict:
    found, ms = 0, []
    for img, box in frames:
        t0 = time.perf_counter()
        dets = rec.detect(img)
        ms.append((time.perf_counter() - t0) * 1000)
        found += any(iou(d[:4], box) >= 0.5 for d in dets)
    return {"recall": round(found / max(1, len(frames)), 3), "n": len(frames), "detect_ms_p50": round(float(np.median(ms)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None, help="folder with manifest.json (default: the shipped models)")
    ap.add_argument("--scenes", type=int, default=40, help="frames per (frame size, plate width)")
    ap.add_argument("--sizes", default="384,512,640", help="detector input long sides to try (free-shape detector)")
    ap.add_argument("--no-verify", action="store_true", help="do not run the set's box verifier")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    base = TFLiteRecognizer(model_dir=a.model_dir, verify=not a.no_verify)
    sizes = [int(s) for s in a.sizes.split(",")] if base._det_dynamic else [base.det_size]
    base.close()
    data = {(f, w): scenes(f, w, a.scenes) for f in FRAMES for w in WIDTHS}
    rows = []
    for size in sizes:
        for grid in (1, 2):
            rec = TFLiteRecognizer(model_dir=a.model_dir, detect_size=size, tile_grid=grid, verify=not a.no_verify)
            for f in FRAMES:
                row = {"frame": f"{f[0]}x{f[1]}", "detect_size": size, "tile_grid": grid}
                for w in WIDTHS:
                    row[f"w{w}"] = measure(rec, data[(f, w)])
                rows.append(row)
            rec.close()
    if a.json:
        print(json.dumps(rows))
        return
    print(f"recall at IoU >= 0.5 by plate width in pixels (median detect ms); one thread; "
          f"box verifier {'off' if a.no_verify or not base.verify else 'on'}")
    print(f"{'frame':>10} {'size':>5} {'tiles':>5} " + " ".join(f"{w:>14}" for w in WIDTHS))
    for r in rows:
        cells = " ".join(f"{r[f'w{w}']['recall']:>6.2f} ({r[f'w{w}']['detect_ms_p50']:>4.1f})" for w in WIDTHS)
        print(f"{r['frame']:>10} {r['detect_size']:>5} {r['tile_grid']:>5} {cells}")


if __name__ == "__main__":
    main()
