"""Write seeded synthetic training data in chunks (``.npz``) to a scratch folder.

    PYTHONPATH=. nice -n 5 .venv/bin/python -m models.training.data ocr --out /tmp/alpr-ocr5 --chunks 60 --per-chunk 2000 --seed 5 --workers 1

``--traits`` draws the glyph traits of US serial fonts (bare-stem 1s,
short-tailed Qs, Idaho-style county prefixes) into the plates, as the
chunks of the OCR candidates T and T2 of 2026-12-05 were written (not shipped;
models/CHANGELOG.md).

(models 0.4.0: chunks 0-59 of seed 5 with the generator of commit dcb18b3,
chunks 60-89 (``--first 60 --chunks 30``) with that of commit 564716a, which
adds the open-top 4; chunk 0 is the trainer's held-out set. The chunks added
for models 0.5.0 and 0.6.0 are listed in models/CHANGELOG.md.)

Chunk ``i`` uses seed ``seed * 100003 + i``, so the data set is reproducible and
several processes can fill one folder. Never write these into the repository.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os

import cv2
import numpy as np

from edge_agent.recognition._detect import plate_crop

from ..synth.augment import ocr_crop

logger = logging.getLogger(__name__)

OCR_H, OCR_W = 64, 128


def ocr_input(bgr: np.ndarray) -> np.ndarray:
    """Same preprocessing as the runtime: grey, resized to 128x64, uint8."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    interp = cv2.INTER_AREA if grey.shape[1] > OCR_W else cv2.INTER_LINEAR
    return cv2.resize(grey, (OCR_W, OCR_H), interpolation=interp)


def real_crops(texts: str, folder: str, padding: float = 0.1) -> tuple[np.ndarray, list[str]]:
    """OCR inputs and texts of hand-read real plates: ``texts`` is a JSON
    lines file of ``{"image", "box": [x, y, w, h], "text"}`` (paths under
    ``folder``, the detect/ folder); each crop is cut as the agent cuts a
    detector box (``_detect.plate_crop``)."""
    import json

    xs, ys = [], []
    with open(texts, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    for r in rows:
        img = cv2.imread(os.path.join(folder, r["image"]), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read {r['image']} under {folder}")
        xs.append(ocr_input(plate_crop(img, r["box"], padding)))
        ys.append(r["text"])
    return np.stack(xs), ys


def _ocr_chunk(args) -> str:
    out, seed, idx, n, legible, traits = args
    path = os.path.join(out, f"ocr-{seed}-{idx:04d}.npz")
    if os.path.exists(path):
        return path
    rng = np.random.default_rng(seed * 100003 + idx)
    xs = np.empty((n, OCR_H, OCR_W), np.uint8)
    ys = []
    for i in range(n):
        img, label = ocr_crop(rng, hershey_only=rng.random() < 0.15, legible=legible, traits=traits)
        xs[i] = ocr_input(img)
        ys.append(label)
    tmp = path + ".part"  # not matched by the trainer's chunk pattern while being written
    with open(tmp, "wb") as fh:
        np.savez(fh, x=xs, y=np.array(ys))
    os.replace(tmp, path)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["ocr"], help="the detector makes its samples on the fly (models.training.detector)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--chunks", type=int, default=10)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--per-chunk", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--legible", action="store_true",
                    help="only crops a person reads without doubt (a held-out that tells models apart; never for training)")
    ap.add_argument("--traits", action="store_true",
                    help="draw glyph traits of US serial fonts per plate (models/synth/plates.py GlyphTraits); "
                         "without it every seeded chunk is what it was")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(a.out, exist_ok=True)
    idx = range(a.first, a.first + a.chunks)
    jobs = [(a.out, a.seed, i, a.per_chunk, a.legible, a.traits) for i in idx]
    with multiprocessing.Pool(a.workers) as pool:
        for path in pool.imap_unordered(_ocr_chunk, jobs):
            logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
