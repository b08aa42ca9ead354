"""Train the box verifier: a second opinion on each box the detector proposes.

    PYTHONPATH=. nice -n 5 .venv-train/bin/python -m models.training.verifier \\
        --detector models/plate_detector.tflite --ocr models/plate_ocr.tflite --plate-read 0.01 \\
        --work /tmp/verif-work3 --out /tmp/verif-out3 --epochs 12 --threads 1 --seed 1

(the 0.7.0 verifier; see models/CHANGELOG.md).

The detector scores a box from a 384-pixel letterbox of the whole frame; many
of its misses on ``detect/`` val are plates it boxes well but scores 0.25-0.5,
and its false positives are badges, emblems and signs. The verifier looks
only at the box, cut from the full-resolution frame with context around it
(``edge_agent.recognition._detect.verifier_crop``: 1.5x the box's width, 2x
its height, warped to 48x96 BGR), and says how likely it is a plate. At run
time a box scores the geometric mean of the two (``TFLiteRecognizer.detect``).

Training data come from the ``detect/`` train split (and synthetic plates
pasted into it): the shipped
detector (``--detector``, run with TensorFlow's own TFLite interpreter and
the runtime's letterbox/decode) is run over every train image, as given and
mirrored, on the whole frame and on 2x2 tiles, keeping every box scoring
0.1 or more. A box overlapping a labelled plate at IoU >= 0.5 is a positive,
one under 0.3 a negative (in between: not used; with ``--plate-read``, a
negative that overlaps no labelled plate and that the shipped OCR reads like a
plate is left out: the train labels miss many plates of other cars); every
labelled plate adds six positives, and synthetic US plates (positives) and
badges (negatives) are pasted into a copy of each image. Each crop is cut
from a randomly shifted and scaled box (the detector's boxes are not exact
either); brightness, contrast, grey, noise,
blur and mirroring are varied per batch. With ``--hard-weight``, background
boxes the detector scores ``--hard-score`` or more (the only ones the
verifier sees at run time) weigh more in the loss (tried after 0.7.0, not
used: see the model card). The last epoch is exported as int8.
``detect/`` val is only scored (ROC AUC of the verifier and of the detector
on the val boxes, printed each epoch); the run-time threshold is chosen with
``alpr-edge evaluate`` on ``detect/`` val, as for the detector.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import cv2
import numpy as np

from .detector import conv_blocks, runtime_detect, runtime_module

logger = logging.getLogger(__name__)
CANDIDATE_FLOOR = 0.1
POS_IOU, NEG_IOU = 0.5, 0.3


class Detector:
    """The shipped detector through ``tf.lite.Interpreter``, with the
    runtime's letterbox and decoding (the training environment has no
    ai-edge-litert)."""

    def __init__(self, path: str, size: int = 384) -> None:
        import tensorflow as tf

        self.det = runtime_detect()
        self.it = tf.lite.Interpreter(model_path=path, num_threads=1)
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]
        self.size, self.shape = size, None

    def _once(self, bgr, ox: int = 0, oy: int = 0):
        x, s = self.det.letterbox(bgr, self.size, 32)
        if x.shape != self.shape:
            self.it.resize_tensor_input(self.inp, x.shape)
            self.it.allocate_tensors()
            self.shape = x.shape
        self.it.set_tensor(self.inp, x)
        self.it.invoke()
        out = self.it.get_tensor(self.out)[0]
        return [(bx / s + ox, by / s + oy, bw / s, bh / s, sc) for bx, by, bw, bh, sc in self.det.decode(out, 4, CANDIDATE_FLOOR)]

    def candidates(self, bgr) -> list[tuple[float, float, float, float, float]]:
        """Boxes scoring CANDIDATE_FLOOR or more on the frame and its 2x2 tiles."""
        H, W = bgr.shape[:2]
        dets = self._once(bgr)
        for x0, y0, tw, th in self.det.tile_windows(W, H, 2):
            dets += self._once(bgr[y0 : y0 + th, x0 : x0 + tw], x0, y0)
        return dets


class Reader:
    """The shipped OCR through ``tf.lite.Interpreter``, to tell whether a box
    the labels call background reads like a plate (4-8 characters on a
    confident best CTC path): the ``detect/`` train labels leave out many
    plates of other cars (the Romanian dashcam frames box only the nearest),
    and taking those as negatives teaches the verifier to reject plates."""

    def __init__(self, path: str) -> None:
        import tensorflow as tf

        from ..synth.plates import CHARSET

        self.ctc, self.charset = runtime_module("_ctc"), CHARSET
        self.it = tf.lite.Interpreter(model_path=path, num_threads=1)
        self.it.allocate_tensors()
        inp = self.it.get_input_details()[0]
        self.inp, (_, self.h, self.w, _) = inp["index"], inp["shape"]
        self.out = self.it.get_output_details()[0]["index"]

    def plate_prob(self, bgr, box) -> tuple[str, float]:
        """Greedy text and its best-path probability for the padded box (as the runtime pads it)."""
        x, y, w, h = box[:4]
        H, W = bgr.shape[:2]
        x0, y0 = int(max(0, x - 0.1 * w)), int(max(0, y - 0.15 * h))
        x1, y1 = int(min(W, x + w + 0.1 * w)), int(min(H, y + h + 0.15 * h))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return "", 0.0
        grey = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        self.it.set_tensor(self.inp, (cv2.resize(grey, (self.w, self.h)).astype(np.float32) / 255.0)[None, :, :, None])
        self.it.invoke()
        probs = self.ctc.softmax(self.it.get_tensor(self.out)[0].astype(np.float32))
        return self.ctc.greedy(probs, self.charset, len(self.charset)), float(np.prod(probs.max(-1)))


def load_split(root: str, split: str) -> list[tuple[str, list]]:
    with open(os.path.join(root, "boxes.jsonl"), encoding="utf-8") as fh:
        return [(os.path.join(root, r["image"]), r["plates"]) for r in map(json.loads, fh) if r["split"] == split]


def jitter(box, rng):
    x, y, w, h = box[:4]
    x += rng.normal(0, 0.08) * w
    y += rng.normal(0, 0.08) * h
    sw, sh = np.exp(rng.normal(0, 0.12, 2))
    return x - (sw - 1) * w / 2, y - (sh - 1) * h / 2, w * sw, h * sh


def synthetic_crops(img, gts, rng, crop, n_plates: int, n_badges: int, xs: list, ys: list) -> None:
    """Synthetic US plates (positives) and badges/emblems (negatives) pasted
    into a copy of a train image, away from its labelled plates: the train
    split has few US plates, and the verifier must not reject them."""
    from ..synth.scenes import paste_badge, paste_plate

    img = img.copy()
    H, W = img.shape[:2]
    boxes = [list(b) for b in gts]
    for _ in range(n_plates):
        r = paste_plate(rng, img, float(rng.uniform(0.06, 0.35) * W), boxes)
        if r is not None:
            boxes.append(r[0])
            for _ in range(2):
                xs.append(crop(img, jitter(r[0], rng)))
                ys.append(1)
    for _ in range(n_badges):
        box = paste_badge(rng, img, float(rng.uniform(0.04, 0.2) * W), boxes)
        if box is not None:
            boxes.append(box)
            for _ in range(2):
                xs.append(crop(img, jitter(box, rng)))
                ys.append(0)


def training_crops(det: Detector, items, rng, n_plates: int = 2, n_badges: int = 1, reader: Reader | None = None,
                   plate_read: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops, labels and detector scores from the train images (see the
    module docstring; the score is the detector's for a crop of one of its
    boxes, 0 for labelled and pasted plates and badges). A background box
    that ``reader`` reads as a plate with best-path probability
    ``plate_read`` or more and that overlaps no labelled plate is left out
    (probably an unlabelled plate)."""
    crop, iou = det.det.verifier_crop, det.det.iou
    xs, ys, ss = [], [], []
    dropped = negatives = 0
    for path, gts in items:
        img = cv2.imread(path)
        if img is None:
            raise SystemExit(f"cannot read {path}")
        synthetic_crops(img, gts, rng, crop, n_plates, n_badges, xs, ys)
        ss += [0.0] * (len(ys) - len(ss))
        for flip in (False, True):
            if flip:
                img = np.ascontiguousarray(img[:, ::-1])
                gts = [[img.shape[1] - b[0] - b[2], b[1], b[2], b[3]] for b in gts]
            for g in gts:
                for _ in range(6):
                    xs.append(crop(img, jitter(g, rng)))
                    ys.append(1)
                    ss.append(0.0)
            for c in det.candidates(img):
                best = max((iou(g, c) for g in gts), default=0.0)
                if best >= POS_IOU:
                    xs.append(crop(img, jitter(c, rng)))
                    ys.append(1)
                    ss.append(c[4])
                elif best < NEG_IOU:
                    negatives += 1
                    if reader is not None and best < 0.05:  # a box off any labelled plate, not one cut through it
                        text, p = reader.plate_prob(img, c)
                        if 4 <= len(text) <= 8 and p >= plate_read:
                            dropped += 1
                            continue
                    for _ in range(2):
                        xs.append(crop(img, jitter(c, rng)))
                        ys.append(0)
                        ss.append(c[4])
    logger.info("background boxes: %d, left out as probably unlabelled plates: %d", negatives, dropped)
    return np.stack(xs), np.array(ys, np.float32), np.array(ss, np.float32)


def val_crops(det: Detector, items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every val candidate as the runtime cuts it, its label and detector score."""
    xs, ys, ss = [], [], []
    for path, gts in items:
        img = cv2.imread(path)
        for c in det.candidates(img):
            xs.append(det.det.verifier_crop(img, c))
            ys.append(max((det.det.iou(g, c) for g in gts), default=0.0) >= POS_IOU)
            ss.append(c[4])
    return np.stack(xs), np.array(ys), np.array(ss)


def build_model(width: float = 1.0, name: str = "verifier"):
    """Depthwise-separable CNN on a 48x96 BGR crop -> one logit (plate or not)."""
    from tensorflow import keras
    from tensorflow.keras import layers as L

    cbr, ds = conv_blocks(width)
    inp = keras.Input((*runtime_detect().VERIFY_SHAPE, 3), name="crop")
    x = cbr(inp, 16, s=2)  # 24x48
    x = ds(ds(x, 32), 32, s=2)  # 12x24
    x = ds(ds(x, 64), 64, s=2)  # 6x12
    x = ds(ds(x, 96), 128, s=2)  # 3x6
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    return keras.Model(inp, L.Dense(1, name="plate_logit")(x), name=name)


def merged_model(weights: list[str], width: float = 1.0):
    """One graph that runs several trained verifiers on the same crop and
    averages their logits (one file, one interpreter call at run time)."""
    from tensorflow import keras
    from tensorflow.keras import layers as L

    inp = keras.Input((*runtime_detect().VERIFY_SHAPE, 3), name="crop")
    outs = []
    for i, path in enumerate(weights):
        member = build_model(width, name=f"member{i}")
        member.load_weights(path)
        outs.append(member(inp))
    return keras.Model(inp, L.Average(name="plate_logit_mean")(outs) if len(outs) > 1 else outs[0])


def augment(xb: np.ndarray, rng) -> np.ndarray:
    """uint8 BGR crops -> float32 0..1, varied photometrically and mirrored."""
    xb = xb.astype(np.float32)
    n = len(xb)
    flip = rng.random(n) < 0.5
    xb[flip] = xb[flip, :, ::-1]
    xb = xb * rng.uniform(0.6, 1.4, (n, 1, 1, 1)) + rng.uniform(-40, 40, (n, 1, 1, 1))
    grey = rng.random(n) < 0.2
    if grey.any():
        xb[grey] = np.repeat(xb[grey].mean(-1, keepdims=True), 3, -1)
    xb += rng.uniform(0, 8, (n, 1, 1, 1)) * rng.standard_normal(xb.shape).astype(np.float32)
    for i in np.nonzero(rng.random(n) < 0.25)[0]:
        xb[i] = cv2.GaussianBlur(xb[i], (0, 0), rng.uniform(0.5, 1.5))
    return np.clip(xb, 0, 255) * (1.0 / 255.0)


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC (rank statistic; ties broken by order)."""
    order = np.argsort(score, kind="stable")
    rank = np.empty(len(score))
    rank[order] = np.arange(len(score))
    npos = int(label.sum())
    return float((rank[label].sum() - npos * (npos - 1) / 2) / max(1, npos * (len(label) - npos)))


def train(tf, keras, a, x, y, s, xv, yv, sv, rng):
    """Train one verifier on the crops; log val AUC each epoch; save its weights in ``a.work``.
    Negatives the detector scores ``a.hard_score`` or more weigh ``a.hard_weight`` in the loss."""
    model = build_model(a.width)
    w = np.where((y == 0) & (s >= a.hard_score), a.hard_weight, 1.0).astype(np.float32)
    logger.info("hard negatives (detector score >= %.2f, weight %.1f): %d crops", a.hard_score, a.hard_weight,
                int(((y == 0) & (s >= a.hard_score)).sum()))
    steps = a.epochs * (len(x) // a.batch)
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(a.lr, steps))
    lossf = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb, wb):
        with tf.GradientTape() as tape:
            loss = lossf(yb[:, None], model(xb, training=True), sample_weight=wb)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    t0 = time.time()
    for ep in range(a.epochs):
        perm = rng.permutation(len(x))
        losses = [float(step(augment(x[idx], rng), y[idx], w[idx])) for idx in np.split(perm[: steps // a.epochs * a.batch], steps // a.epochs)]
        pv = 1 / (1 + np.exp(-model.predict(xv.astype(np.float32) / 255.0, batch_size=256, verbose=0)[:, 0]))
        logger.info("epoch %d loss %.4f val AUC verifier %.4f, sqrt(detector*verifier) %.4f (%.0f s)",
                    ep + 1, np.mean(losses), auc(pv, yv), auc(np.sqrt(sv * pv), yv), time.time() - t0)
    model.save_weights(os.path.join(a.work, "verifier.weights.h5"))
    return model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="/work/shared/data/detect")
    ap.add_argument("--detector", default="models/plate_detector.tflite", help="the detector whose boxes are verified")
    ap.add_argument("--work", default="/tmp/verif-work", help="crops cache, weights, log")
    ap.add_argument("--out", default="/tmp/verif-out", help="folder for plate_verifier.tflite (int8)")
    ap.add_argument("--ocr", default="models/plate_ocr.tflite", help="the OCR that spots unlabelled plates")
    ap.add_argument("--plate-read", type=float, default=1.0,
                    help="leave out background boxes the OCR reads as 4-8 characters with at least this best-path "
                         "probability (1: keep all)")
    ap.add_argument("--plates", type=int, default=2, help="synthetic US plates pasted into each train image")
    ap.add_argument("--badges", type=int, default=1, help="synthetic badges pasted into each train image")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    ap.add_argument("--hard-score", type=float, default=0.25,
                    help="background boxes the detector scores at least this are hard negatives")
    ap.add_argument("--hard-weight", type=float, default=1.0, help="loss weight of hard negatives (1: as any other crop)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--merge", nargs="+", metavar="WEIGHTS",
                    help="do not train: export one verifier that averages the logits of these trained "
                         "verifier.weights.h5 files (the crops in --work calibrate int8)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import tensorflow as tf
    from tensorflow import keras

    from .export import export_tflite

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)

    extra = "" if (a.plates, a.badges) == (2, 1) else f"-p{a.plates}b{a.badges}"
    cache = os.path.join(a.work, f"crops-seed{a.seed}-read{a.plate_read}{extra}.npz")
    if os.path.exists(cache):
        d = np.load(cache)
        x, y, xv, yv, sv = d["x"], d["y"], d["xv"], d["yv"], d["sv"]
        if "s" in d.files:
            s = d["s"]
        elif a.hard_weight != 1.0 and not a.merge:
            raise SystemExit(f"{cache} was written without detector scores; delete it to use --hard-weight")
        else:
            s = np.zeros_like(y)
    else:
        det = Detector(a.detector)
        t0 = time.time()
        reader = Reader(a.ocr) if a.plate_read < 1.0 else None
        x, y, s = training_crops(det, load_split(a.data_root, "train"), rng, a.plates, a.badges, reader=reader,
                                 plate_read=a.plate_read)
        xv, yv, sv = val_crops(det, load_split(a.data_root, "val"))
        np.savez(cache, x=x, y=y, s=s, xv=xv, yv=yv, sv=sv)
        logger.info("crops: %d train (%.0f %% plates), %d val boxes, %.0f s", len(x), 100 * y.mean(), len(xv), time.time() - t0)
    logger.info("val boxes: detector score AUC %.4f", auc(sv, yv))

    if a.merge:
        model = merged_model(a.merge, a.width)
        pv = 1 / (1 + np.exp(-model.predict(xv.astype(np.float32) / 255.0, batch_size=256, verbose=0)[:, 0]))
        logger.info("merged %d verifiers: val AUC %.4f, sqrt(detector*verifier) %.4f", len(a.merge), auc(pv, yv),
                    auc(np.sqrt(sv * pv), yv))
    else:
        model = train(tf, keras, a, x, y, s, xv, yv, sv, rng)
    rep = [x[i : i + 1].astype(np.float32) / 255.0 for i in rng.choice(len(x), 300, replace=False)]
    path = os.path.join(a.out, "plate_verifier.tflite")
    export_tflite(model, (1, *runtime_detect().VERIFY_SHAPE, 3), rep, path, int8=True)
    logger.info("wrote %s (%d bytes)", path, os.path.getsize(path))


if __name__ == "__main__":
    main()
