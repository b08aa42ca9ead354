"""Site adaptation: fine-tune the shipped OCR on a site's confirmed reads and
write a signed model bundle (``alpr-central models adapt``).

The labelled set is crops of plates with their true text. At central they are
meant to come from what people at the site have confirmed: a hotlist hit's
visual check, a misread's corrected text, an operator's confirmation or
correction of a search result (those keep the retention of the reads they
came from). Until that export exists the command takes a folder with
``labels.csv`` (``image,text``; more columns, e.g. ``state``, are ignored;
image paths relative to the folder), the format of ``alpr-edge evaluate
--crops``.

What it does, in order (the rule in :data:`RULE` is fixed before training):

1. split the set by plate (:func:`split_by_plate`): no plate on both sides;
2. measure the shipped OCR on the held-back plates and on two generic
   synthetic held-outs made from seeds training never uses;
3. recover the shipped OCR's weights (``from_tflite``) and fine-tune them on
   the site's training plates mixed with synthetic plates (so US plates in
   general are not forgotten), one thread, CPU;
4. export a candidate after each of ``checks`` equal parts of the training,
   measure each as the agent reads (int8, four views, beam search);
5. choose by :data:`RULE`; refuse (no bundle) when no candidate passes;
6. write the bundle: the shipped detector and verifier, the new OCR, a
   manifest with every file's SHA-256 and version and how the OCR was made
   (counts and figures, never plate texts), signed with Ed25519
   (:mod:`models.bundle`).

TensorFlow (the ``train`` extra) is imported only inside :func:`adapt`;
the split, loading and choosing need numpy and OpenCV alone. Plate texts are
never logged.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Callable

import cv2
import numpy as np

from edge_agent.wire.schema import fold_confusables

from ..synth.plates import CHARSET
from .data import ocr_input

logger = logging.getLogger(__name__)

RULE = (
    "Written before training. (1) The site's crops are split by plate (text with look-alikes folded): "
    "about held_back of the plates are held back and never trained on. (2) Training is cut into `checks` "
    "equal parts; the int8 OCR after each part is a candidate. (3) Each candidate and the shipped OCR read "
    "the held-back crops and two generic synthetic held-outs (seeds training never uses: a mixed one and a "
    "legible one) as the agent reads (four views, beam search, generic rules). (4) A candidate is refused if "
    "its exact match on either synthetic held-out is more than `tolerance` points below the shipped OCR's, "
    "or if it is not right on more held-back crops than the shipped OCR (right only with it > right only "
    "with the shipped). (5) Of the candidates left, the one right on most held-back crops is chosen; ties go "
    "to the earlier (less training). (6) If every candidate is refused, no bundle is written."
)
HELDOUT_SEEDS = {"synthetic": 9_100_001, "synthetic_legible": 9_100_002}  # never training seeds
MAX_LEN = 10


class AdaptError(ValueError):
    """The labelled set cannot be used, or every candidate was refused."""


@dataclasses.dataclass(frozen=True)
class Example:
    image: str  # path of the crop
    text: str  # the plate's true text, upper-case letters and digits


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: int = 600
    batch: int = 32
    site_per_batch: int = 16  # of each batch, crops of the site's training plates; the rest synthetic
    lr: float = 1e-4
    checks: int = 3
    held_back: float = 0.25
    tolerance: float = 0.5  # points of synthetic exact match a candidate may lose
    synthetic_pool: int = 2000
    heldout_size: int = 400
    seed: int = 1
    threads: int = 1
    time_budget: float = 0.0  # minutes of training (0: none); the last part ends when it is spent


@dataclasses.dataclass(frozen=True)
class Candidate:
    step: int
    site_right: int
    better: int  # held-back crops right only with the candidate
    worse: int  # right only with the shipped OCR
    p: float
    synthetic: dict  # held-out name -> exact match
    refused: str | None  # why, or None


@dataclasses.dataclass(frozen=True)
class Result:
    train_plates: int
    train_crops: int
    held_back_plates: int
    held_back_crops: int
    shipped_site_right: int
    shipped_synthetic: dict
    candidates: tuple[Candidate, ...]
    chosen: int | None  # index into candidates
    bundle: str | None
    version: str | None
    minutes: float

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


def normalise(text: str) -> str:
    return "".join(c for c in str(text).upper() if c.isalnum())


def load_labelled(folder: str) -> tuple[list[Example], int]:
    """Examples from ``folder/labels.csv`` and how many rows were left out
    (empty text, characters outside the charset, longer than 10, missing image)."""
    path = os.path.join(folder, "labels.csv")
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise AdaptError(f"{folder}: cannot read labels.csv ({exc.strerror})") from None
    with fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"image", "text"} <= set(reader.fieldnames):
            raise AdaptError(f"{path}: needs the columns image and text")
        out, skipped = [], 0
        for row in reader:
            text = normalise(row["text"] or "")
            image = os.path.join(folder, row["image"] or "")
            if not text or len(text) > MAX_LEN or any(c not in CHARSET for c in text) or not os.path.isfile(image):
                skipped += 1
                continue
            out.append(Example(image, text))
    return out, skipped


def plate_key(text: str) -> str:
    """What makes two crops the same plate for the split: the text with
    look-alikes folded (a plate labelled once CUSTOM and once CUST0M is one)."""
    return fold_confusables(normalise(text))


def split_by_plate(examples: list[Example], held_back: float = 0.25, seed: int = 1) -> tuple[list[Example], list[Example]]:
    """``(train, held back)``: every crop of a plate (:func:`plate_key`) on
    one side. Plates are ordered by a keyed hash of their key (so the split
    does not follow file order and is the same for the same seed), then held
    back in that order until about ``held_back`` of the crops are. With two or
    more plates both sides get at least one."""
    if not 0 < held_back < 1:
        raise ValueError("held_back must be between 0 and 1")
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(plate_key(e.text), []).append(e)
    order = sorted(groups, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    target = held_back * len(examples)
    back_keys: list[str] = []
    n_back = 0
    for k in order:
        if n_back >= target:
            break
        back_keys.append(k)
        n_back += len(groups[k])
    if len(back_keys) == len(order) > 1:
        back_keys.pop()  # every plate held back: give the last one to training
    back = [e for k in back_keys for e in groups[k]]
    held = {plate_key(e.text) for e in back}
    train = [e for e in examples if plate_key(e.text) not in held]
    return train, back


def _crop(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise AdaptError(f"cannot read the image {os.path.basename(path)}")
    return img


def synthetic(n: int, seed: int, legible: bool = False) -> tuple[np.ndarray, list[str]]:
    """``n`` generated crops as OCR inputs (64x128 grey) and their texts."""
    from ..synth.augment import ocr_crop

    rng = np.random.default_rng(seed)
    xs, ys = np.empty((n, 64, 128), np.uint8), []
    for i in range(n):
        img, label = ocr_crop(rng, hershey_only=rng.random() < 0.15, legible=legible)
        xs[i] = ocr_input(img)
        ys.append(label)
    return xs, ys


def hits(rec, crops, texts) -> list[bool]:
    """Top-1 exact match per crop, read as the agent reads (``read_crop``)."""
    return [rec.read_crop(c)[0] == t for c, t in zip(crops, texts)]


def judge(shipped_site: list[bool], shipped_synth: dict, cand_site: list[bool], cand_synth: dict,
          tolerance: float, step: int) -> Candidate:
    """One candidate's figures and, by :data:`RULE` (4), why it is refused."""
    from edge_agent.recognition._evaluate import paired

    pr = paired(shipped_site, cand_site)
    synth = {k: round(sum(v) / len(v), 4) for k, v in cand_synth.items()}
    refused = None
    for k, v in shipped_synth.items():
        base = sum(v) / len(v)
        if synth[k] < base - tolerance / 100:
            refused = f"synthetic held-out {k}: {synth[k]:.4f} against the shipped {base:.4f} (more than {tolerance} points lower)"
            break
    if refused is None and not pr["better"] > pr["worse"]:
        refused = f"held-back plates: right only with it {pr['better']}, only with the shipped {pr['worse']}"
    return Candidate(step, sum(cand_site), pr["better"], pr["worse"], pr["p"], synth, refused)


def choose(candidates: list[Candidate]) -> int | None:
    """:data:`RULE` (5): the index of the candidate right on most held-back
    crops among those not refused, the earlier on ties; None if all are refused."""
    ok = [i for i, c in enumerate(candidates) if c.refused is None]
    return max(ok, key=lambda i: (candidates[i].site_right, -i)) if ok else None


def _model_set(folder: str, base_dir: str, ocr_file: str, version: str, base_man: dict) -> dict:
    """A model folder: the base set's detector and verifier, ``ocr_file`` as the OCR, its manifest."""
    from .manifest import build

    for key in ("detector", "verifier"):
        if key in base_man["models"]:
            name = base_man["models"][key]["file"]
            shutil.copyfile(os.path.join(base_dir, name), os.path.join(folder, name))
    shutil.copyfile(ocr_file, os.path.join(folder, "plate_ocr.tflite"))
    man = build(folder, version, int(base_man["models"]["detector"].get("input_size", 384)),
                detector_version=base_man["models"]["detector"]["version"], ocr_version=version,
                verifier_version=base_man["models"].get("verifier", {}).get("version"))
    man["name"] = base_man.get("name", man["name"])
    with open(os.path.join(folder, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump(man, fh, indent=2)
        fh.write("\n")
    return man


def adapt(examples: list[Example], out: str, signing_key, *, base_dir: str | None = None, version: str | None = None,
          settings: Settings = Settings(), progress: Callable[[str], None] = lambda msg: None,
          clock=lambda: dt.datetime.now(dt.timezone.utc)) -> Result:
    """Fine-tune, choose by :data:`RULE`, write the signed bundle to ``out``
    (which must not exist). Raises :class:`AdaptError` when the set is too
    small or every candidate is refused (the figures are in its ``result``)."""
    from edge_agent.recognition.tflite import TFLiteRecognizer

    from .. import model_dir
    from ..bundle import MANIFEST, sign_bundle

    s = settings
    base_dir = str(base_dir or model_dir())
    with open(os.path.join(base_dir, MANIFEST), encoding="utf-8") as fh:
        base_man = json.load(fh)
    if os.path.exists(out):
        raise AdaptError(f"{out} exists; give a new folder for the bundle")
    version = version or f"{base_man['version']}+site{clock():%Y%m%d%H%M}"
    if len(f"{base_man.get('name', 'alpr')}-{version}") > 64 or not all(c.isalnum() or c in ".+-_" for c in version):
        raise AdaptError("version: letters, digits and . + - _ only, and the model version at most 64 characters")
    train, back = split_by_plate(examples, s.held_back, s.seed)
    if len({plate_key(e.text) for e in train}) < 2 or not back:
        raise AdaptError(f"too few plates to adapt: {len(examples)} crops; need at least three different plates")
    t0 = time.time()
    progress(f"split by plate: {len(train)} crops to train, {len(back)} held back")
    site_x = np.stack([ocr_input(_crop(e.image)) for e in train])
    site_y = [e.text for e in train]
    back_crops, back_texts = [_crop(e.image) for e in back], [e.text for e in back]
    held = {k: synthetic(s.heldout_size, seed, legible=k.endswith("legible")) for k, seed in HELDOUT_SEEDS.items()}
    pool_x, pool_y = synthetic(s.synthetic_pool, s.seed * 7919 + 13)
    shipped = TFLiteRecognizer(model_dir=base_dir, num_threads=s.threads)
    try:
        shipped_site = hits(shipped, back_crops, back_texts)
        shipped_synth = {k: hits(shipped, x, y) for k, (x, y) in held.items()}
    finally:
        shipped.close()
    progress(f"shipped OCR: {sum(shipped_site)} of {len(back)} held-back crops right")

    import tensorflow as tf

    from .export import export_tflite
    from .from_tflite import conv_params, conv_params_of, load_into
    from .ocr import BLANK, build_model, encode, jitter
    from .widen import width_of

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(s.threads)
    tf.random.set_seed(s.seed)
    ocr_path = os.path.join(base_dir, base_man["models"]["ocr"]["file"])
    convs = conv_params(ocr_path)
    width = width_of(convs[0][0].shape[3])
    context = (len(convs) - len(conv_params_of(build_model(width)))) // 2
    model = build_model(width, context)
    load_into(model, ocr_path, pool_x[:128, ..., None].astype(np.float32) / 255.0)
    opt = tf.keras.optimizers.Adam(s.lr)

    @tf.function
    def step(x, y, n):
        x = tf.cast(x, tf.float32)[..., None] / 255.0
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.ctc_loss(y, logits, n, tf.fill([tf.shape(x)[0]], 32),
                                                 logits_time_major=False, blank_index=BLANK))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    rng = np.random.default_rng(s.seed)
    sy, sn = encode(site_y)
    py, pn = encode(pool_y)
    k_site = max(1, min(s.site_per_batch, s.batch - 1))
    reps = [pool_x[i : i + 1, ..., None].astype(np.float32) / 255.0 for i in range(min(200, len(pool_x)))]
    candidates: list[Candidate] = []
    work = tempfile.mkdtemp(prefix="alpr-adapt-")
    try:
        bounds = [round(s.steps * (i + 1) / s.checks) for i in range(s.checks)]
        done = 0
        for part, end in enumerate(bounds):
            losses = []
            while done < end:
                if s.time_budget and time.time() - t0 > s.time_budget * 60:
                    break
                a, b = rng.integers(0, len(site_x), k_site), rng.integers(0, len(pool_x), s.batch - k_site)
                xb = np.concatenate([site_x[a], pool_x[b]])
                yb, nb = np.concatenate([sy[a], py[b]]), np.concatenate([sn[a], pn[b]])
                opt.learning_rate = s.lr * 0.5 * (1 + np.cos(np.pi * done / max(1, s.steps)))
                losses.append(float(step(jitter(rng, xb), yb, nb)))
                done += 1
            folder = os.path.join(work, f"c{part}")
            os.makedirs(folder)
            export_tflite(model, (1, 64, 128, 1), reps, os.path.join(work, f"ocr{part}.tflite"), int8=True)
            _model_set(folder, base_dir, os.path.join(work, f"ocr{part}.tflite"), version, base_man)
            rec = TFLiteRecognizer(model_dir=folder, num_threads=s.threads)
            try:
                c = judge(shipped_site, shipped_synth, hits(rec, back_crops, back_texts),
                          {k: hits(rec, x, y) for k, (x, y) in held.items()}, s.tolerance, done)
            finally:
                rec.close()
            candidates.append(c)
            progress(f"candidate {part + 1}/{s.checks} after {done} steps (loss {np.mean(losses) if losses else float('nan'):.3f}): "
                     f"{c.site_right} held-back crops right, {'refused: ' + c.refused if c.refused else 'passes'}")
            if s.time_budget and time.time() - t0 > s.time_budget * 60:
                progress("time budget spent")
                break
        chosen = choose(candidates)
        result = Result(len({plate_key(e.text) for e in train}), len(train), len({plate_key(e.text) for e in back}),
                        len(back), sum(shipped_site), {k: round(sum(v) / len(v), 4) for k, v in shipped_synth.items()},
                        tuple(candidates), chosen, out if chosen is not None else None,
                        version if chosen is not None else None, round((time.time() - t0) / 60, 2))
        if chosen is None:
            err = AdaptError("every candidate was refused by the rule: no bundle written")
            err.result = result
            raise err
        os.makedirs(out)
        try:
            man = _model_set(out, base_dir, os.path.join(work, f"ocr{chosen}.tflite"), version, base_man)
            man["bundle"] = {"base": f"{base_man.get('name', 'alpr')}-{base_man['version']}",
                             "created_at": clock().isoformat(timespec="seconds"), "rule": RULE,
                             "settings": dataclasses.asdict(s), "adapted": {k: v for k, v in result.as_json().items()
                                                                            if k not in ("bundle",)}}
            with open(os.path.join(out, MANIFEST), "w", encoding="utf-8") as fh:
                json.dump(man, fh, indent=2)
                fh.write("\n")
            sign_bundle(out, signing_key)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # never leave a half-written bundle
            raise
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
