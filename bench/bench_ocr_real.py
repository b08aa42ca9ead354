"""OCR exact match on real plate crops that may choose models: detect/ val.

    .venv/bin/python bench/bench_ocr_real.py [--data /work/shared/data/detect] [--model-dir DIR]
        [--boxes given|detected] [--against DIR] [--texts FILE] [--json]

``detect/`` boxes plates without their text, and it is the only real set the
shipped models may be trained or chosen on (its README). So the texts of the
166 legible single-row plates at least 60 px wide of its val split were read by
eye and stored in ``models/training/detect_val_texts.jsonl`` (image, box, text;
plates left out: blurred past doubt, two-row, non-Latin, cut off, or an I/1
or O/0 the plate does not settle). About 60 % are Romanian dashcam plates (many
the same car in several frames), the rest from many countries and a few US
states: the figure measures reading real photographs, not US fonts. Each crop
is cut as the agent cuts a detector box (``box_padding``) and read with
``TFLiteRecognizer.read_crop``. Prints top-1 / top-5 exact match, overall and
for the Romanian frames and the others apart, and the top-1 misses by kind
(``_evaluate.error_kind``: confusable, first or last character dropped, other).
With ``--boxes detected`` each plate is cut from the detector's box that
overlaps the hand-read one most (IoU >= 0.5; a plate without one counts as
missed), as the agent reads it, rather than from the hand-drawn box.
``--texts FILE`` reads another hand-read set in the same format (image paths
under ``--data``), e.g. a site's own cameras (models/MODEL_CARD.md, "Adapting
to a site").
With ``--against DIR`` the crops are also read with that folder's models and
the two compared crop by crop (``_evaluate.paired``: right only with
``--model-dir``'s, right only with DIR's, sign test p), as OCR candidates are
chosen (models/CHANGELOG.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import cv2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.recognition._detect import iou, plate_crop  # noqa: E402
from edge_agent.recognition._evaluate import error_counts, paired  # noqa: E402
from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402

TEXTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "training", "detect_val_texts.jsonl")


def load_texts(path: str = TEXTS) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def score(rec: TFLiteRecognizer, folder: str, rows: list[dict], detected: bool = False) -> dict:
    """Top-1/top-5 of ``rows`` read from their hand-drawn boxes, or with
    ``detected`` from the detector's best-overlapping box (``found`` counts
    the plates that have one)."""
    groups: dict[str, list[tuple[bool, bool]]] = {"all": [], "romanian": [], "other": []}
    reads, hits, found = [], [], 0
    name, img, dets = None, None, []
    for r in rows:
        if r["image"] != name:
            name, img = r["image"], cv2.imread(os.path.join(folder, r["image"]), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"cannot read {r['image']}")
            dets = [d[:4] for d in rec.detect(img)] if detected else []
        box = r["box"]
        if detected:
            box = max(dets, key=lambda d: iou(d, r["box"]), default=None)
            box = box if box is not None and iou(box, r["box"]) >= 0.5 else None
            found += box is not None
        plate, alts = "", ()  # a plate the detector missed reads as nothing
        if box is not None:
            plate, _conf, alts, _chars = rec.read_crop(plate_crop(img, box, rec.box_padding))
            reads.append((plate, r["text"]))
        hit = (plate == r["text"], r["text"] in [plate] + [a.plate for a in alts[:4]])
        hits.append(hit[0])
        groups["all"].append(hit)
        groups["romanian" if os.path.basename(r["image"]).startswith("rl-") else "other"].append(hit)
    out = {k: {"crops": len(v), "top1": round(sum(h[0] for h in v) / len(v), 4), "top5": round(sum(h[1] for h in v) / len(v), 4)}
           for k, v in groups.items() if v}
    return out | {"errors": error_counts(reads), "hits": hits} | ({"found": found} if detected else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data/detect", help="the detect/ folder (boxes.jsonl, images/)")
    ap.add_argument("--model-dir", default=None, help="folder with manifest.json (default: shipped models)")
    ap.add_argument("--boxes", choices=("given", "detected"), default="given",
                    help="cut each plate from its hand-drawn box (default) or from the detector's box, as the agent does")
    ap.add_argument("--against", default=None, help="also read with this folder's models and compare crop by crop")
    ap.add_argument("--texts", default=TEXTS, help="hand-read plates, JSON lines {image, box, text} (default: the detect/ val texts)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        print(f"skipped {a.data}: folder not present")
        return
    rec = TFLiteRecognizer(model_dir=a.model_dir, num_threads=1)
    try:
        res = {"model_version": rec.model_version, **score(rec, a.data, load_texts(a.texts), a.boxes == "detected")}
    finally:
        rec.close()
    hits = res.pop("hits")
    if a.against:
        other = TFLiteRecognizer(model_dir=a.against, num_threads=1)
        try:
            theirs = score(other, a.data, load_texts(a.texts), a.boxes == "detected")
        finally:
            other.close()
        res["against"] = {"model_version": other.model_version, "top1": theirs["all"]["top1"], **paired(theirs["hits"], hits)}
    if a.json:
        print(json.dumps(res))
        return
    print(f"model {res['model_version']}, int8, 1 thread, generic plate rules, {rec.ocr_views} views, "
          + (f"detector's boxes ({res['found']} of {len(hits)} plates found)" if "found" in res else "hand-drawn boxes"))
    for k in ("all", "romanian", "other"):
        if k in res:
            print(f"{k}: {res[k]['crops']} crops, top-1 {res[k]['top1']:.4f}, top-5 {res[k]['top5']:.4f}")
    print("top-1 misses by kind: " + ", ".join(f"{k} {v}" for k, v in res["errors"].items())
          + " (confusable: right once O/0, I/1 and other look-alikes are folded)")
    if "against" in res:
        c = res["against"]
        print(f"against {a.against} ({c['model_version']}, top-1 {c['top1']:.4f}): right only here {c['better']}, "
              f"right only there {c['worse']}, sign test p = {c['p']}")


if __name__ == "__main__":
    main()
