"""Evaluation of a recognizer over labelled folders in the formats of the
project's shared data (``boxes.jsonl``, ``labels.jsonl``, ``labels.csv``).

Metrics: detection recall / precision at IoU >= 0.5 (greedy one-to-one
matching; recall also by plate width in image pixels, since a set's misses
are often plates far smaller than a camera is set up to read, and on plates
at least 60 px wide alone), OCR exact match on crops (top-1, top-5 = plate + 4 alternates;
also ``top1_folded``: top-1 equal after folding confusable characters the
way central's confusion-tolerant search does, so O/0 or I/1 still finds it;
and the misses by kind, :func:`error_kind`),
end-to-end exact plate match (a ground-truth plate counts when a read whose
box has IoU >= 0.5 with it has exactly its text), latency percentiles;
misreads by character (:mod:`._confusion`: the top-1 read of each crop, and
the read of each labelled scene plate that got one, against its text); and,
for the project's reference sets (:mod:`._reference`), the figures as issue 27
rules them with its targets (:func:`ruled`).
Detection figures count the boxes the detector (and verifier) keep; ``reads``
counts the reads the agent emits (``recognize``: a box whose crop the OCR
reads with less than ``min_confidence`` gives no read), so it shows how many
plates yield a read at all and how many reads are not plates.
Plate texts are compared upper-case with spaces and dashes removed.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import time

import cv2
import numpy as np

from ..reads import Frame
from ..wire.schema import fold_confusables
from ._confusion import confusions
from ._detect import iou
from ._reference import TARGETS, reference_name

IOU = 0.5
WIDTH_BUCKETS = (20, 40, 80)  # plate width in image pixels: <20, 20-40, 40-80, >=80
READ_WIDTH = 60  # the smallest plates the agent is meant to read (issue 3: "down to about 60 px wide")


def _bucket(width: float) -> str:
    lo = 0
    for hi in WIDTH_BUCKETS:
        if width < hi:
            return f"{lo}-{hi}px" if lo else f"<{hi}px"
        lo = hi
    return f">={lo}px"


_BUCKETS = [_bucket(w) for w in (0, *WIDTH_BUCKETS)]


def _norm(text: str) -> str:
    return "".join(c for c in str(text).upper() if c.isalnum())


def percentiles(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    return {"n": len(ms), "p50": round(float(np.percentile(a, 50)), 2), "p90": round(float(np.percentile(a, 90)), 2),
            "p99": round(float(np.percentile(a, 99)), 2), "mean": round(float(a.mean()), 2)}


def _match(gt: list, pred: list) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU (best pairs first)."""
    pairs = sorted(((iou(g, p), i, j) for i, g in enumerate(gt) for j, p in enumerate(pred)), reverse=True)
    used_g, used_p, out = set(), set(), []
    for v, i, j in pairs:
        if v < IOU:
            break
        if i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
            out.append((i, j))
    return out


def load_scenes(folder: str, split: str | None = None) -> list[tuple[str, list[list[float]], list[str | None]]]:
    """``(image path, boxes, texts)`` from ``boxes.jsonl`` or ``labels.jsonl``."""
    items = []
    for name in ("boxes.jsonl", "labels.jsonl"):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                if split and r.get("split", split) != split:
                    continue
                boxes, texts = [], []
                for p in r["plates"]:
                    if isinstance(p, dict):
                        boxes.append([float(v) for v in p["box"]])
                        texts.append(_norm(p.get("text", "")) or None)
                    else:
                        boxes.append([float(v) for v in p])
                        texts.append(None)
                items.append((os.path.join(folder, r["image"]), boxes, texts))
        return items
    raise ValueError(f"{folder}: no boxes.jsonl or labels.jsonl")


def load_crops(folder: str) -> list[tuple[str, str]]:
    path = os.path.join(folder, "labels.csv")
    if not os.path.exists(path):
        raise ValueError(f"{folder}: no labels.csv")
    with open(path, encoding="utf-8", newline="") as fh:
        return [(os.path.join(folder, r["image"]), _norm(r["text"])) for r in csv.DictReader(fh)]


def eval_scenes(rec, folder: str, split: str | None = None, limit: int | None = None,
                unlabelled: dict[str, list[list[float]]] | None = None, skip=()) -> dict:
    """Detection recall/precision (and end-to-end exact match where plates
    have texts). ``unlabelled`` maps images (as named in the labels file) to
    boxes of plates the labels leave out (found by looking); a detection that
    matches none of the labelled plates but one of those, at IoU >= 0.5,
    counts neither way in ``checked`` (an "ignore" region, as in KITTI or
    COCO's crowd boxes). The as-labelled figures never use them. Images in
    ``skip`` (named as in the labels file) are left out altogether."""
    gone = {os.path.join(folder, k) for k in skip}
    items = [it for it in load_scenes(folder, split) if it[0] not in gone][:limit]
    extra = {os.path.join(folder, k): v for k, v in (unlabelled or {}).items()}
    n_gt = n_det = n_match = n_text = n_text_ok = n_ignored = n_reads = n_read_match = 0
    frame_ms = []
    by_width: dict[str, list[int]] = {}  # bucket -> [found, plates]
    readable = [0, 0]  # plates at least READ_WIDTH wide: [found, plates]
    read_pairs = []  # (read, text) of the labelled plates that got a read
    for k, (path, gt, texts) in enumerate(items):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read {path}")
        boxes = [b[:4] for b in rec.detect(img)]
        n_gt += len(gt)
        n_det += len(boxes)
        pairs = _match(gt, boxes)
        matched = {i for i, _j in pairs}
        n_match += len(matched)
        if path in extra:
            used = {j for _i, j in pairs}
            n_ignored += len(_match(extra[path], [b for j, b in enumerate(boxes) if j not in used]))
        for i, g in enumerate(gt):
            c = by_width.setdefault(_bucket(g[2]), [0, 0])
            c[0] += i in matched
            c[1] += 1
            if g[2] >= READ_WIDTH:
                readable[0] += i in matched
                readable[1] += 1
        t0 = time.perf_counter()
        reads = rec.recognize(Frame("eval", k, dt.datetime.now(dt.timezone.utc), img))
        frame_ms.append((time.perf_counter() - t0) * 1000)
        pairs = dict(_match(gt, [list(r.box) for r in reads]))
        n_reads += len(reads)
        n_read_match += len(pairs)
        for i, t in enumerate(texts):
            if t:
                n_text += 1
                if i in pairs:
                    read = _norm(reads[pairs[i]].plate)
                    read_pairs.append((read, t))
                    n_text_ok += read == t
    out = {
        "folder": folder, "split": split if os.path.exists(os.path.join(folder, "boxes.jsonl")) else None, "images": len(items), "plates": n_gt, "detections": n_det,
        "recall": round(n_match / n_gt, 4) if n_gt else None,
        "precision": round(n_match / n_det, 4) if n_det else None,
        "recall_by_width": {k: {"plates": n, "recall": round(f / n, 4)}
                            for k, (f, n) in sorted(by_width.items(), key=lambda kv: _BUCKETS.index(kv[0]))},
        f"recall_from_{READ_WIDTH}px": {"plates": readable[1],
                                        "recall": round(readable[0] / readable[1], 4) if readable[1] else None},
        "reads": {"reads": n_reads, "recall": round(n_read_match / n_gt, 4) if n_gt else None,
                  "precision": round(n_read_match / n_reads, 4) if n_reads else None},
        "frame_ms": percentiles(frame_ms),
    }
    if unlabelled is not None:
        kept = n_det - n_ignored
        out["checked"] = {"unlabelled_plates": sum(len(extra[p]) for p, _g, _t in items if p in extra),
                          "detections_on_them": n_ignored, "precision": round(n_match / kept, 4) if kept else None}
    if n_text:
        out["end_to_end_exact"] = round(n_text_ok / n_text, 4)
        out["confusions"] = confusions(read_pairs).as_json() | {"plates_without_read": n_text - len(read_pairs)}
    return out


def error_kind(read: str, truth: str) -> str | None:
    """How a read misses its plate: None (exact), ``"confusable"`` (equal once
    O/0, I/1 and the other look-alikes are folded as central's search folds
    them), ``"first_dropped"`` (the plate without its first character: the
    reader took it for artwork or a band), ``"last_dropped"``, or ``"other"``."""
    if read == truth:
        return None
    if fold_confusables(read) == fold_confusables(truth):
        return "confusable"
    if len(truth) > 1 and read == truth[1:]:
        return "first_dropped"
    if len(truth) > 1 and read == truth[:-1]:
        return "last_dropped"
    return "other"


def error_counts(pairs) -> dict[str, int]:
    """Counts of :func:`error_kind` over ``(read, truth)`` pairs (misses only)."""
    out = {"confusable": 0, "first_dropped": 0, "last_dropped": 0, "other": 0}
    for read, truth in pairs:
        kind = error_kind(read, truth)
        if kind:
            out[kind] += 1
    return out


def paired(base: list[bool], cand: list[bool]) -> dict:
    """Paired comparison of two models' hits on the same items: how many the
    candidate gets right that the base misses (``better``) and the reverse
    (``worse``), and the two-sided exact sign test's p on those (1.0 when
    they tie everywhere). The rule OCR candidates are chosen by."""
    if len(base) != len(cand):
        raise ValueError("paired: the two lists differ in length")
    better = sum(c and not b for b, c in zip(base, cand))
    worse = sum(b and not c for b, c in zip(base, cand))
    m = better + worse
    tail = sum(math.comb(m, i) for i in range(min(better, worse) + 1)) / 2**m
    return {"better": better, "worse": worse, "p": round(min(1.0, 2 * tail), 4)}


_O0, _O0_I1 = str.maketrans("O", "0"), str.maketrans("OI", "01")  # O/0 (and I/1) taken as one character
EQUATE = ("O0",)  # issue 27's ruling for us-crops: O and 0 are one character


def equate_table(groups) -> dict:
    """A ``str.translate`` table that maps every character of each group in
    ``groups`` (e.g. ``["O0", "I1"]``) to the group's last character.
    ValueError on a group that is not two or more distinct letters or digits."""
    table = {}
    for g in groups:
        g = str(g).upper()
        if len(g) < 2 or len(set(g)) != len(g) or not all(c.isascii() and c.isalnum() for c in g):
            raise ValueError(f"equate: {g!r} is not a group of two or more distinct letters or digits")
        for c in g[:-1]:
            table[ord(c)] = g[-1]
    return table


def eval_crops(rec, folder: str, limit: int | None = None, exclude: dict[str, str] | None = None,
               equate=EQUATE) -> dict:
    """OCR exact match on labelled crops, top-1 and top-5 (the read and its
    first four alternates), and top-1 with confusables folded (and with only
    O/0, or O/0 and I/1, taken as one character: ``top1_o0``, ``top1_o0_i1``). ``exclude``
    maps images (as named in labels.csv) whose label is known to be wrong to
    the reason; they stay in the as-labelled figures, and ``checked`` holds
    the figures without them. ``equated``: top-1 and top-5 with each group of
    ``equate`` taken as one character (default O and 0, as issue 27 rules
    us-crops). ``confusions``: the top-1 misreads by character."""
    eq = equate_table(equate)
    items = load_crops(folder)[:limit]
    bad = {os.path.join(folder, k) for k in (exclude or {})}
    hits = []  # (top-1, top-5, folded, label known bad, O/0 one character, O/0 and I/1, top-1 and top-5 equated, top-5 O/0)
    ms = []
    reads = []  # (read, label)
    for path, text in items:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read {path}")
        t0 = time.perf_counter()
        plate, _conf, alts, _chars = rec.read_crop(img)
        ms.append((time.perf_counter() - t0) * 1000)
        reads.append((plate, text))
        cands = [plate] + [a.plate for a in alts[:4]]
        same = text.translate(eq)
        hits.append((plate == text, text in cands, fold_confusables(plate) == fold_confusables(text), path in bad,
                     plate.translate(_O0) == text.translate(_O0), plate.translate(_O0_I1) == text.translate(_O0_I1),
                     plate.translate(eq) == same, any(c.translate(eq) == same for c in cands),
                     any(c.translate(_O0) == text.translate(_O0) for c in cands)))

    def rate(k, rows):
        return round(sum(h[k] for h in rows) / len(rows), 4) if rows else None

    out = {"folder": folder, "crops": len(hits), "top1": rate(0, hits), "top5": rate(1, hits), "top1_folded": rate(2, hits),
           "top1_o0": rate(4, hits), "top5_o0": rate(8, hits), "top1_o0_i1": rate(5, hits), "errors": error_counts(reads),
           "equated": {"groups": [str(g).upper() for g in equate], "top1": rate(6, hits), "top5": rate(7, hits)},
           "confusions": confusions(reads).as_json()}
    if exclude is not None:
        good = [h for h in hits if not h[3]]
        seen = {p for p, _ in items}
        out["checked"] = {"crops": len(good), "top1": rate(0, good), "top5": rate(1, good), "top1_folded": rate(2, good),
                          "excluded": {k: v for k, v in exclude.items() if os.path.join(folder, k) in seen}}
    return out | {"crop_ms": percentiles(ms)}


def ruled(result: dict, name: str | None, kind: str) -> dict | None:
    """The figures issue 27 rules for reference set ``name`` (a key of
    ``_reference.TARGETS``) out of ``result`` (of :func:`eval_crops` when
    ``kind`` is ``"crops"``, else of :func:`eval_scenes`), each with its
    target and whether it is met: ``{"set", "figures": {key: {"value",
    "target", "met"}}, "met"}``. None when ``name`` is not a reference set
    of that kind."""
    if name not in TARGETS or (kind == "crops") != (name == "us-crops"):
        return None
    if kind == "crops":
        # as ruled: O and 0 one character, whatever --equate asked for the "equated" figures
        values = {"top1_o0": result["top1_o0"], "top5_o0": result["top5_o0"]}
    else:
        values = {"recall": result["recall"], "precision": result["precision"],
                  "recall_from_60px": result[f"recall_from_{READ_WIDTH}px"]["recall"],
                  "precision_checked": result.get("checked", {}).get("precision"),
                  "end_to_end_exact": result.get("end_to_end_exact")}
    figures = {}
    for key, target in TARGETS[name].items():
        v = values[key]
        figures[key] = {"value": v, "target": target, "met": v is not None and v >= target}
    return {"set": name, "figures": figures, "met": all(f["met"] for f in figures.values())}


__all__ = ["eval_crops", "eval_scenes", "ruled", "reference_name", "equate_table", "error_kind", "error_counts",
           "paired", "percentiles", "load_crops", "load_scenes"]
