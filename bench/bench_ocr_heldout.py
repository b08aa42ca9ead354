"""OCR exact match on held-out synthetic chunks, the figure that picks OCR checkpoints.

    .venv/bin/python bench/bench_ocr_heldout.py /tmp/alpr-ocr5/ocr-5-0000.npz [more.npz] [--model-dir DIR] [--json]

A chunk is what ``models.training.data ocr`` writes (64x128 grey crops and
their labels); the trainer holds out the first chunk of its data folder, and a
chunk of a seed it never trained on (e.g. ``--seed 55 --chunks 1``) is a
second held-out. Each crop is read two ways with the shipped int8 file:
``greedy`` (best path of the CTC output, as the trainer scores its float
model) and ``reader`` (``TFLiteRecognizer.read_crop``: beam search and the
generic plate rules, what the agent reports). With ``--against DIR`` each
chunk is also read with that folder's models and the readers compared crop by
crop (``_evaluate.paired``: right only with ``--model-dir``'s, right only with
DIR's, sign test p).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.recognition._ctc import greedy  # noqa: E402
from edge_agent.recognition._evaluate import paired  # noqa: E402
from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402


def score(rec: TFLiteRecognizer, path: str) -> dict:
    with np.load(path) as d:
        xs, labels = d["x"], [str(v) for v in d["y"]]
    ok_greedy, hits = 0, []
    for img, label in zip(xs, labels):
        rec._ocr.set_tensor(rec._ocr_in, (img.astype(np.float32) / 255.0)[None, :, :, None])
        rec._ocr.invoke()
        ok_greedy += greedy(rec._ocr.get_tensor(rec._ocr_out)[0], rec.charset, rec.blank) == label
        hits.append(rec.read_crop(img)[0] == label)
    n = len(labels)
    return {"n": n, "greedy": round(ok_greedy / n, 4), "reader": round(sum(hits) / n, 4), "hits": hits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chunks", nargs="+", help="ocr-*.npz files from models.training.data")
    ap.add_argument("--model-dir", default=None, help="folder with manifest.json (default: shipped models)")
    ap.add_argument("--against", default=None, help="also read with this folder's models and compare crop by crop")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rec = TFLiteRecognizer(model_dir=a.model_dir, num_threads=1, plate_rules="generic")
    other = TFLiteRecognizer(model_dir=a.against, num_threads=1, plate_rules="generic") if a.against else None
    try:
        res = {"model_version": rec.model_version, **{p: score(rec, p) for p in a.chunks}}
        for p in a.chunks:
            hits = res[p].pop("hits")
            if other:
                theirs = score(other, p)
                res[p]["against"] = {"model_version": other.model_version, "reader": theirs["reader"], **paired(theirs["hits"], hits)}
    finally:
        rec.close()
        if other:
            other.close()
    if a.json:
        print(json.dumps(res))
        return
    print(f"model {res['model_version']}, int8, 1 thread")
    for p in a.chunks:
        r = res[p]
        print(f"{p}: {r['n']} crops, exact greedy {r['greedy']:.4f}, reader (beam + generic rules) {r['reader']:.4f}")
        if "against" in r:
            c = r["against"]
            print(f"  against {a.against} ({c['model_version']}, reader {c['reader']:.4f}): right only here {c['better']}, "
                  f"right only there {c['worse']}, sign test p = {c['p']}")


if __name__ == "__main__":
    main()
