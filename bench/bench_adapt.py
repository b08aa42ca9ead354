"""Does site adaptation work? us-crops stands in for a site's confirmed reads.

    .venv/bin/python bench/bench_adapt.py [--data /work/shared/data] [--minutes 10] [--json]

(needs the ``train`` extra: TensorFlow.) The 745 us-crops crops are split by
plate into two halves (``models.training.adapt.split_by_plate``, seed 1). For
each half in turn, ``models.training.adapt.adapt`` (what ``alpr-central
models adapt`` runs, with its rule) adapts the shipped OCR on that half, and
the shipped and the adapted models read the *other* half, which adaptation
never saw (it also never chose on it: adapt holds back part of its own half
to choose with). Figures: top-1 as labelled and with O and 0 as one
character, and the paired count (right only after / only before, sign test).

us-crops is AGPL-3.0 and may not train the shipped models (shared data
README): the adapted models are outputs of this bench only. They are written
to a temporary folder and deleted when it ends, never committed, never
shipped. ``--minutes`` bounds each half's training (one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import cv2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.recognition._evaluate import paired  # noqa: E402
from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402
from models.bundle import init_signing_key, load_private_key  # noqa: E402
from models.training.adapt import AdaptError, Settings, adapt, load_labelled, plate_key, split_by_plate  # noqa: E402

O0 = str.maketrans("O", "0")


def read(rec, examples) -> list[str]:
    return [rec.read_crop(cv2.imread(e.image, cv2.IMREAD_COLOR))[0] for e in examples]


def figures(reads, examples) -> dict:
    n = len(examples)
    return {"top1": round(sum(r == e.text for r, e in zip(reads, examples)) / n, 4),
            "top1_o0": round(sum(r.translate(O0) == e.text.translate(O0) for r, e in zip(reads, examples)) / n, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per half (one thread)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1.5e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    folder = os.path.join(a.data, "us-crops")
    if not os.path.isdir(folder):
        print(f"skipped: {folder} not present")
        return
    examples, skipped = load_labelled(folder)
    half_a, half_b = split_by_plate(examples, 0.5, a.seed)
    assert not {plate_key(e.text) for e in half_a} & {plate_key(e.text) for e in half_b}
    settings = Settings(steps=a.steps, lr=a.lr, time_budget=a.minutes, seed=a.seed)
    res = {"crops": len(examples), "left_out": skipped, "settings": settings.__dict__, "runs": []}
    shipped = TFLiteRecognizer(num_threads=1)
    work = tempfile.mkdtemp(prefix="alpr-bench-adapt-")
    try:
        init_signing_key(os.path.join(work, "k.pem"), os.path.join(work, "k.pub"))
        key = load_private_key(os.path.join(work, "k.pem"))
        for name, train, test in (("adapt on A, read B", half_a, half_b), ("adapt on B, read A", half_b, half_a)):
            before = read(shipped, test)
            run = {"run": name, "adapt_crops": len(train), "test_crops": len(test), "before": figures(before, test)}
            out = os.path.join(work, name[9])
            try:
                r = adapt(train, out, key, settings=settings, progress=lambda m: print(m, file=sys.stderr))
                run["adapt"] = r.as_json()
                rec = TFLiteRecognizer(model_dir=out, num_threads=1, bundle_key=os.path.join(work, "k.pub"))
                try:
                    after = read(rec, test)
                finally:
                    rec.close()
                run["after"] = figures(after, test)
                run["paired"] = paired([b == e.text for b, e in zip(before, test)], [x == e.text for x, e in zip(after, test)])
            except AdaptError as exc:
                run["refused"] = str(exc)
                run["adapt"] = getattr(exc, "result", None) and exc.result.as_json()
            finally:
                shutil.rmtree(out, ignore_errors=True)  # bench output only: never kept
            res["runs"].append(run)
    finally:
        shipped.close()
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(res))
        return
    print(f"us-crops: {len(examples)} crops ({skipped} left out), halves A {len(half_a)} / B {len(half_b)} crops, split by plate")
    for run in res["runs"]:
        ad = run.get("adapt") or {}
        line = (f"{run['run']}: before top-1 {run['before']['top1']:.4f} (O=0 {run['before']['top1_o0']:.4f})")
        if "after" in run:
            line += (f", after {run['after']['top1']:.4f} (O=0 {run['after']['top1_o0']:.4f}); right only after "
                     f"{run['paired']['better']}, only before {run['paired']['worse']}, p = {run['paired']['p']}")
        else:
            line += f"; refused: {run['refused']}"
        print(line)
        if ad:
            c = ad["candidates"]
            print(f"  adapt: {ad['train_crops']} crops trained, {ad['held_back_crops']} held back to choose; "
                  f"{ad['minutes']} min; candidates at steps {[x['step'] for x in c]}, chosen {ad['chosen']}; "
                  f"synthetic held-outs base {ad['shipped_synthetic']}, chosen "
                  f"{c[ad['chosen']]['synthetic'] if ad['chosen'] is not None else '-'}")


if __name__ == "__main__":
    main()
