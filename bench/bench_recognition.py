"""Benchmark the shipped recognition models and print the figures.

    .venv/bin/python bench/bench_recognition.py [--data /work/shared/data] [--threads 1] [--json]

Measures: model sizes; RSS with models loaded; one-thread latency of detector +
OCR on synthetic 1280x720 and 1920x1080 frames with one plate (median, p90);
OCR latency per crop; and, when the shared data folder exists, us-crops OCR
top-1/top-5 (as labelled, with O/0 or O/0 and I/1 taken as one character, and
without the six crops whose label plainly does not match the plate:
``US_CROPS_LABEL_DEFECTS``), detection
recall/precision at IoU >= 0.5 on detect/ val and on scenes-eu-br (there
also the precision with the detections of the other cars' plates that its
labels leave out ignored: ``SCENES_EU_BR_UNLABELLED_PLATES``; on detect/ val
also without the images that are copies of train images:
``DETECT_VAL_COPIES_OF_TRAIN``) and of the
reads the agent emits (a box the OCR reads under ``min_confidence`` gives no
read), end-to-end exact match on scenes-eu-br. Also us-crops top-1 for the
crops of the states that have plate rules (``_rules.RULES``; a crop's state
is its file name's first two letters), read with the generic rules and with
their state's (``plate_rules = "ca"`` and so on, as a deployment that knows
its state would set). Folders that are absent are skipped with a message.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from edge_agent.reads import Frame  # noqa: E402
from edge_agent.recognition._evaluate import eval_crops, eval_scenes, load_crops, percentiles  # noqa: E402
from edge_agent.recognition._reference import (  # noqa: E402
    DETECT_VAL_COPIES_OF_TRAIN, SCENES_EU_BR_UNLABELLED_PLATES, US_CROPS_LABEL_DEFECTS)
from edge_agent.recognition._rules import RULES  # noqa: E402
from edge_agent.recognition.tflite import TFLiteRecognizer  # noqa: E402
from models import model_dir  # noqa: E402
from models.synth.scenes import scene_with_plates  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def frame_latency(rec, size, runs: int, seed: int = 7) -> dict:
    img, _placed = scene_with_plates(np.random.default_rng(seed), size=size, plates=(("7ABC123", size[0] // 7),))
    frame = Frame("bench", 0, dt.datetime.now(dt.timezone.utc), img)
    for _ in range(3):
        rec.recognize(frame)
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rec.recognize(frame)
        ms.append((time.perf_counter() - t0) * 1000)
    return percentiles(ms)


def crop_latency(rec, runs: int) -> dict:
    from models.synth.plates import render_plate

    rng = np.random.default_rng(11)
    crops = [render_plate(rng, hershey_only=True)[0] for _ in range(20)]
    for c in crops[:3]:
        rec.read_crop(c)
    ms = []
    for i in range(runs):
        t0 = time.perf_counter()
        rec.read_crop(crops[i % len(crops)])
        ms.append((time.perf_counter() - t0) * 1000)
    return percentiles(ms)




def state_rules(rec, models: str, folder: str, limit: int | None, exclude=()) -> dict:
    """us-crops top-1 with the generic rules (``rec``) and with each crop's
    state's rules, over the crops of the states ``RULES`` knows."""
    by_state: dict[str, list[tuple[str, str]]] = {}
    for path, text in load_crops(folder)[:limit]:
        state = os.path.basename(path)[:2].lower()
        if state in RULES and state != "generic" and os.path.relpath(path, folder) not in exclude:
            by_state.setdefault(state, []).append((path, text))
    out: dict = {"crops": 0, "generic": 0, "state": 0, "states": {}}
    for state, items in sorted(by_state.items()):
        own = TFLiteRecognizer(model_dir=models, num_threads=rec.num_threads, plate_rules=state)
        try:
            g = s = 0
            for path, text in items:
                img = cv2.imread(path, cv2.IMREAD_COLOR)
                g += rec.read_crop(img)[0] == text
                s += own.read_crop(img)[0] == text
        finally:
            own.close()
        out["states"][state] = {"crops": len(items), "generic": g, "state": s}
        out["crops"] += len(items)
        out["generic"] += g
        out["state"] += s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--limit", type=int, default=None, help="at most this many items per data folder")
    ap.add_argument("--tile-grid", type=int, default=1)
    ap.add_argument("--detect-size", type=int, default=None, help="detector input long side (free-shape detectors)")
    ap.add_argument("--model-dir", default=None, help="folder with manifest.json (default: the shipped models)")
    ap.add_argument("--no-verify", action="store_true", help="do not run the set's box verifier")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res: dict = {}
    models = a.model_dir or str(model_dir())
    with open(os.path.join(models, "manifest.json"), encoding="utf-8") as fh:
        man = json.load(fh)
    res["model_bytes"] = {k: os.path.getsize(os.path.join(models, v["file"])) for k, v in man["models"].items()}
    res["model_bytes_total"] = sum(res["model_bytes"].values())
    rec = TFLiteRecognizer(model_dir=models, num_threads=a.threads, tile_grid=a.tile_grid, detect_size=a.detect_size,
                           verify=not a.no_verify)
    res["model_version"] = rec.model_version
    res["runtime"] = rec.runtime
    res["threads"] = a.threads
    res["tile_grid"] = a.tile_grid
    res["detect_size"] = rec.det_size
    res["verify"] = rec.verify
    res["rss_mb_models_loaded"] = round(rss_mb(), 1)
    res["frame_1280x720_ms"] = frame_latency(rec, (1280, 720), a.runs)
    res["frame_1920x1080_ms"] = frame_latency(rec, (1920, 1080), a.runs)
    res["ocr_crop_ms"] = crop_latency(rec, a.runs * 4)
    skipped = []
    crops = os.path.join(a.data, "us-crops")
    if os.path.isdir(crops):
        res["us_crops"] = eval_crops(rec, crops, a.limit, exclude=US_CROPS_LABEL_DEFECTS)
    else:
        skipped.append(crops)
    for name, split in (("detect", "val"), ("scenes-eu-br", None)):
        folder = os.path.join(a.data, name)
        if os.path.isdir(folder):
            extra = SCENES_EU_BR_UNLABELLED_PLATES if name == "scenes-eu-br" else None
            res[name.replace("-", "_")] = eval_scenes(rec, folder, split, a.limit, unlabelled=extra)
            if name == "detect":
                res["detect_unseen"] = eval_scenes(rec, folder, split, a.limit, skip=DETECT_VAL_COPIES_OF_TRAIN)
        else:
            skipped.append(folder)
    res["rss_mb_after"] = round(rss_mb(), 1)
    if "us_crops" in res:
        res["us_crops_state_rules"] = state_rules(rec, models, crops, a.limit, US_CROPS_LABEL_DEFECTS)
    rec.close()
    if a.json:
        print(json.dumps(res))
        return
    print(f"models {res['model_version']} ({res['runtime']}, {a.threads} thread(s), detector long side {rec.det_size}, "
          f"box verifier {'on' if rec.verify else 'off'})")
    print(f"model sizes: {res['model_bytes']} total {res['model_bytes_total'] / 1e6:.2f} MB")
    print(f"RSS with models loaded: {res['rss_mb_models_loaded']} MB (after evaluation {res['rss_mb_after']} MB)")
    for k in ("frame_1280x720_ms", "frame_1920x1080_ms", "ocr_crop_ms"):
        print(f"{k}: median {res[k]['p50']} p90 {res[k]['p90']} (n={res[k]['n']})")
    if "us_crops" in res:
        u = res["us_crops"]
        print(f"us-crops OCR exact match: top-1 {u['top1']:.4f} top-5 {u['top5']:.4f} ({u['crops']} crops; "
              f"top-1 with confusables folded as central's search does: {u['top1_folded']:.4f})")
        print("  top-1 misses by kind: " + ", ".join(f"{k} {v}" for k, v in u["errors"].items()))
        print(f"  top-1 with O and 0 taken as one character {u['top1_o0']:.4f}, with O/0 and I/1 {u['top1_o0_i1']:.4f}")
        c = u["checked"]
        print(f"  without the {len(c['excluded'])} crops whose label does not match the image "
              f"(US_CROPS_LABEL_DEFECTS: {', '.join(sorted(c['excluded']))}): "
              f"top-1 {c['top1']:.4f} top-5 {c['top5']:.4f} ({c['crops']} crops; folded {c['top1_folded']:.4f})")
        r = res["us_crops_state_rules"]
        if r["crops"]:
            print(f"  the {r['crops']} checked crops of the {len(r['states'])} states with plate rules: top-1 generic rules "
                  f"{r['generic'] / r['crops']:.4f}, their state's rules {r['state'] / r['crops']:.4f} ("
                  + ", ".join(f"{k} {v['generic']}->{v['state']}/{v['crops']}" for k, v in r["states"].items()) + ")")
    for k in ("detect", "scenes_eu_br"):
        if k in res:
            r = res[k]
            line = f"{k} [{r['split'] or 'all'}]: recall@0.5 {r['recall']} precision {r['precision']} ({r['plates']} plates, {r['detections']} detections)"
            if "end_to_end_exact" in r:
                line += f", end-to-end exact {r['end_to_end_exact']}"
            print(line)
            print(f"  reads the agent emits: recall {r['reads']['recall']} precision {r['reads']['precision']} "
                  f"({r['reads']['reads']} reads; a box the OCR reads under min_confidence gives none)")
            if "checked" in r:
                c = r["checked"]
                print(f"  precision {c['precision']} with the {c['detections_on_them']} detections of plates the labels "
                      f"leave out ignored ({c['unlabelled_plates']} listed in SCENES_EU_BR_UNLABELLED_PLATES)")
            print("  recall by plate width (plates): "
                  + ", ".join(f"{b} {v['recall']} ({v['plates']})" for b, v in r["recall_by_width"].items())
                  + f"; plates 60 px and wider {r['recall_from_60px']['recall']} ({r['recall_from_60px']['plates']})")
            if k == "detect":
                u = res["detect_unseen"]
                print(f"  without the {len(DETECT_VAL_COPIES_OF_TRAIN)} images that are copies of train images "
                      f"(DETECT_VAL_COPIES_OF_TRAIN): recall@0.5 {u['recall']} precision {u['precision']} "
                      f"({u['plates']} plates; 60 px and wider {u['recall_from_60px']['recall']})")
    for s in skipped:
        print(f"skipped {s}: folder not present")


if __name__ == "__main__":
    main()
