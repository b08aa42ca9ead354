"""How the OCR reads the glyph traits of US serial fonts that issue 27's
misreads point at, on generated crops: bare-stem 1s (Idaho's county numbers,
read as I), Qs with a short stub of a tail (Mississippi, read as O), and
Idaho-style county prefixes.

    .venv/bin/python bench/bench_glyph_traits.py [--n 600] [--model-dir DIR] [--json]

Reads the same seeded legible crops twice, as the generator draws them
without traits and with ``traits=True`` (models/synth/plates.py GlyphTraits),
and prints exact match and the misread pairs that concern these traits
(1->I, Q->O) for both, plus the pairs on the crops that carry each trait.
The seeds (700000+) are apart from every training and held-out seed.
A model trained with traits should close the gap between the two columns;
the shipped models were trained without them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.recognition._confusion import confusions  # noqa: E402
from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402
from models.synth.augment import ocr_crop  # noqa: E402
from models.synth.plates import GlyphTraits  # noqa: E402

PAIRS = (("1", "I"), ("I", "1"), ("Q", "O"), ("Q", "0"), ("O", "Q"), ("0", "Q"))


def run(rec, n: int, traits: bool) -> dict:
    pairs, kinds = [], {"bare_one": [], "short_q": []}
    for i in range(n):
        rng = np.random.default_rng(700_000 + i)
        t = GlyphTraits.draw(rng)
        img, label = ocr_crop(rng, legible=True, traits=traits)
        read = rec.read_crop(img)[0]
        pairs.append((read, label))
        if t.bare_one and "1" in label:
            kinds["bare_one"].append((read, label))
        if t.short_q and "Q" in label:
            kinds["short_q"].append((read, label))
    out = {"crops": n, "exact": round(sum(r == t for r, t in pairs) / n, 4), "pairs": _pairs(pairs)}
    for k, v in kinds.items():
        out[f"crops_with_{k}"] = {"crops": len(v), "exact": round(sum(r == t for r, t in v) / max(1, len(v)), 4),
                                  "pairs": _pairs(v)}
    return out


def _pairs(pairs) -> dict:
    """Counts of the trait pairs among the substitutions of (read, true) pairs."""
    got = {(s["true"], s["read"]): s["count"] for s in confusions(pairs).as_json()["substitutions"]}
    return {f"{a}->{b}": got.get((a, b), 0) for a, b in PAIRS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rec = TFLiteRecognizer(num_threads=1, **({"model_dir": a.model_dir} if a.model_dir else {}))
    res = {"model_version": rec.model_version, "without_traits": run(rec, a.n, False), "with_traits": run(rec, a.n, True)}
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"models {res['model_version']}, {a.n} legible generated crops, seeds 700000+")
    for k in ("without_traits", "with_traits"):
        print(f"  {k:<15} {json.dumps(res[k])}")


if __name__ == "__main__":
    main()
