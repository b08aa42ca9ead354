"""Does a second detector look at a higher resolution, keeping only plates too
small for the first look, find more small plates, and at what cost?

    .venv/bin/python bench/bench_small_plates.py [--sizes 512,640,768] [--synthetic 20] [--json]

The agent's detector sees a frame letterboxed to ``detect_size`` (384) on its
long side, so a 60 px plate in a 1280x720 frame is 18 px there. A second look
runs the detector again on the whole frame at a larger input (``--sizes``) and
keeps a box from it only when it is small in the first look's input (narrower
than ``--max-widths`` px there), is scored by the box verifier like every box,
passes the detect threshold and overlaps no box of the first look. Big plates
are left to the first look, so they are found exactly as before.

Figures, for the first look alone and each (size, max width) pair:
- detect/ val (real, 259 images; most are 416 px or smaller, so a larger
  input upsamples them): recall by plate width, recall on plates >= 60 px,
  precision;
- scenes-eu-br (real, 222 images): recall, precision with the listed
  unlabelled plates ignored;
- synthetic 1280x720 and 1920x1080 frames with one US plate of 30-80 px (the
  generator's; seeded), recall;
- the second look's median cost per frame (detector + verifier, one thread).

The sets are read, never trained on; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.recognition._detect import iou, nms  # noqa: E402
from edge_agent.recognition._evaluate import _bucket, _match, load_scenes  # noqa: E402
from edge_agent.recognition._reference import UNLABELLED  # noqa: E402
from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402
from models.synth.scenes import scene_with_plates  # noqa: E402

DATA = os.environ.get("ALPR_DATA", "/work/shared/data")
SYNTH_WIDTHS = (30, 40, 50, 60, 80)


def second_look(rec, big, img, first):
    """Candidates of the look at ``big.det_size``: (box, score, width in the first look's input), timed."""
    H, W = img.shape[:2]
    scale = rec.det_size / max(H, W)
    t0 = time.perf_counter()
    floor = rec.detect_threshold ** 2
    dets = nms([(*d, 0) for d in big._detect_once(img, floor)], 0.4, rec.max_plates * 3)
    out = []
    for bx, by, bw, bh, sc, _ in dets:
        if bw * scale >= 48 or any(iou((bx, by, bw, bh), f[:4]) > 0.3 for f in first):
            continue   # only candidates that could pass any width limit below, and new ones
        s = float(np.sqrt(sc * rec._verify(img, (bx, by, bw, bh))))
        if s >= rec.detect_threshold:
            out.append(([bx, by, bw, bh], s, bw * scale))
    return out, (time.perf_counter() - t0) * 1000


def collect(rec, bigs, items):
    """Per image: ground truth, first-look boxes, second-look candidates per size, cost."""
    rows = []
    for path, gt, _texts in items:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        first = [list(b[:4]) for b in rec.detect(img)]
        extra = {}
        for size, big in bigs.items():
            extra[size] = second_look(rec, big, img, first)
        rows.append((path, gt, first, extra))
    return rows


def figures(rows, size, max_w, unlabelled=None, folder=""):
    n_gt = n_det = n_match = n_ign = 0
    by_width, readable, ms = {}, [0, 0], []
    for path, gt, first, extra in rows:
        boxes = list(first)
        if size is not None:
            cands, t = extra[size]
            ms.append(t)
            boxes += [b for b, _s, w in cands if w < max_w]
        pairs = _match(gt, boxes)
        matched = {i for i, _ in pairs}
        n_gt += len(gt)
        n_det += len(boxes)
        n_match += len(matched)
        name = os.path.relpath(path, folder)
        if unlabelled and name in unlabelled:
            used = {j for _i, j in pairs}
            n_ign += len(_match(unlabelled[name], [b for j, b in enumerate(boxes) if j not in used]))
        for i, g in enumerate(gt):
            c = by_width.setdefault(_bucket(g[2]), [0, 0])
            c[0] += i in matched
            c[1] += 1
            if g[2] >= 60:
                readable[0] += i in matched
                readable[1] += 1
    out = {"recall": round(n_match / n_gt, 4), "precision": round(n_match / max(1, n_det), 4),
           "detections": n_det, "recall_from_60px": round(readable[0] / max(1, readable[1]), 4),
           "by_width": {k: f"{f}/{n}" for k, (f, n) in sorted(by_width.items())}}
    if unlabelled is not None:
        out["precision_checked"] = round(n_match / max(1, n_det - n_ign), 4)
    if ms:
        out["second_look_ms_p50"] = round(float(np.median(ms)), 2)
    return out


def synthetic(n):
    items = []
    for size in ((1280, 720), (1920, 1080)):
        for width in SYNTH_WIDTHS:
            for i in range(n):
                rng = np.random.default_rng(50_000 + 131 * width + i + size[0])
                img, placed = scene_with_plates(rng, size, (("7ABC123", width),), hershey_only=False)
                if placed:
                    items.append((size, width, img, placed[0][0]))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,640,768", help="detector input long sides of the second look")
    ap.add_argument("--max-widths", default="16,24,32", help="keep second-look boxes narrower than this in the "
                                                            "first look's input (px)")
    ap.add_argument("--synthetic", type=int, default=20, help="synthetic frames per (frame size, plate width)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    widths = [int(w) for w in a.max_widths.split(",")]
    rec = TFLiteRecognizer(num_threads=1)
    bigs = {s: TFLiteRecognizer(num_threads=1, detect_size=s, verify=False) for s in sizes}
    result = {"model_version": rec.model_version, "first_look_size": rec.det_size, "sets": {}}
    sets = [("detect-val", os.path.join(DATA, "detect"), "val", None),
            ("scenes-eu-br", os.path.join(DATA, "scenes-eu-br"), None, UNLABELLED.get("scenes-eu-br", {}))]
    for name, folder, split, unl in sets:
        if not os.path.isdir(folder):
            print(f"{folder} is absent: {name} skipped", file=sys.stderr)
            continue
        rows = collect(rec, bigs, load_scenes(folder, split))
        res = {"first look only": figures(rows, None, 0, unl, folder)}
        for s in sizes:
            for w in widths:
                res[f"+ look at {s}, boxes < {w} px"] = figures(rows, s, w, unl, folder)
        result["sets"][name] = res
    synth = synthetic(a.synthetic)
    res = {}
    for s in [None, *sizes]:
        for w in ([0] if s is None else widths):
            found = {}
            for (size, width, img, box) in synth:
                first = [list(b[:4]) for b in rec.detect(img)]
                boxes = list(first)
                if s is not None:
                    cands, _t = second_look(rec, bigs[s], img, first)
                    boxes += [b for b, _sc, bw in cands if bw < w]
                key = f"{size[0]}x{size[1]} {width}px"
                f = found.setdefault(key, [0, 0])
                f[0] += any(iou(b, box) >= 0.5 for b in boxes)
                f[1] += 1
            res["first look only" if s is None else f"+ look at {s}, boxes < {w} px"] = \
                {k: round(f / n, 2) for k, (f, n) in found.items()}
    result["sets"]["synthetic"] = res
    if a.json:
        print(json.dumps(result, indent=1))
        return
    print(f"models {result['model_version']}, first look at {result['first_look_size']}, one thread")
    for name, res in result["sets"].items():
        print(f"\n{name}")
        for k, v in res.items():
            print(f"  {k:<32} {json.dumps(v)}")


if __name__ == "__main__":
    main()
