"""OCR accuracy by plate layout, on seeded synthetic crops.

    .venv/bin/python bench/bench_ocr_layouts.py [--model-dir DIR] [--n 300] [--json]

Real test sets have too few plates of each layout to say much, so this renders
``--n`` plates per layout with the project's generator (fixed seeds, so runs
compare), cuts them the way the detector delivers them
(``models.synth.augment.ocr_crop``), reads each with
``TFLiteRecognizer.read_crop`` and prints top-1 / top-5 exact match:

* ``mix``: the generator's default mix of layouts;
* ``plain``: nothing beside the serial;
* ``wheelchair``, ``stacked`` (vertical two-character text beside the serial,
  not part of the label), ``emblem``, ``art``: that graphic beside the serial;
* ``two-row``: a small row of 2-3 characters above the serial (some states'
  motorcycle and special plates). The label is both rows, top first; the
  reader is one-line CTC, so it is also scored on the main row alone.

The generator is also what the OCR trains on, so these figures are
optimistic next to real plates (``bench_recognition.py`` measures those);
they are for comparing layouts and models, not for the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402
from models.synth import fonts  # noqa: E402
from models.synth.augment import ocr_crop  # noqa: E402
from models.synth.plates import LETTERS, _paste, render_plate  # noqa: E402

LAYOUTS = ("mix", "plain", "wheelchair", "stacked", "emblem", "art", "two-row")


def two_row_plate(rng) -> tuple[np.ndarray, str, str]:
    """A plate with a small top row: ``(bgr, label of both rows, main row)``."""
    plate, main = render_plate(rng, side=None)
    h, w = plate.shape[:2]
    band_h = int(h * 0.32)
    colour = np.median(plate[int(h * 0.3) : int(h * 0.4), : int(w * 0.08)].reshape(-1, 3), 0)
    band = np.empty((band_h, w, 3), np.uint8)
    band[:] = colour.astype(np.uint8)
    top = "".join(str(rng.choice(list(LETTERS + "0123456789"))) for _ in range(int(rng.integers(2, 4))))
    ink = np.full(3, 20.0) if colour.mean() > 110 else np.full(3, 235.0)
    font = fonts.truetype_fonts(main_only=True) or fonts.HERSHEY[:1]
    mask = fonts.text_mask(top, font[int(rng.integers(len(font)))])
    th = band_h * 0.75
    tw = min(w * 0.5, th * mask.shape[1] / mask.shape[0])
    _paste(band, mask, ((w - tw) / 2, band_h * 0.18, tw, th), ink)
    return np.vstack([band, plate]), top + main, main


def score(rec, layout: str, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    top1 = top5 = main_only = 0
    for _ in range(n):
        main = None
        if layout == "two-row":
            plate, label, main = two_row_plate(rng)
        else:
            side = "random" if layout == "mix" else None if layout == "plain" else layout
            plate, label = render_plate(rng, side=side)
        crop, label = ocr_crop(rng, plate, label)
        text, _conf, alts, _chars = rec.read_crop(crop)
        cands = [text] + [a.plate for a in alts[:4]]
        top1 += text == label
        top5 += label in cands
        main_only += main is not None and text == main
    out = {"n": n, "top1": round(top1 / n, 4), "top5": round(top5 / n, 4)}
    if layout == "two-row":
        out["main_row_top1"] = round(main_only / n, 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None, help="folder with manifest.json (default: shipped models)")
    ap.add_argument("--n", type=int, default=300, help="plates per layout")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rec = TFLiteRecognizer(model_dir=a.model_dir, num_threads=1, plate_rules="generic")
    try:
        res = {"model_version": rec.model_version}
        for k, layout in enumerate(LAYOUTS):
            res[layout] = score(rec, layout, a.n, 9100 + k)
    finally:
        rec.close()
    if a.json:
        print(json.dumps(res))
        return
    print(f"model {res['model_version']}, {a.n} seeded synthetic crops per layout, generic plate rules")
    for layout in LAYOUTS:
        r = res[layout]
        extra = f", main row alone {r['main_row_top1']:.3f}" if "main_row_top1" in r else ""
        print(f"{layout:>10}: top-1 {r['top1']:.3f} top-5 {r['top5']:.3f}{extra}")


if __name__ == "__main__":
    main()
