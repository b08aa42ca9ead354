"""Train the plate OCR (small conv CTC model) on synthetic chunks and export TFLite.

    PYTHONPATH=. nice -n 10 .venv-train/bin/python -m models.training.ocr --data /tmp/alpr-ocr9 \
        --out /tmp/ocr9-out --work /tmp/ocr9-work --epochs 40 --batch 64 --lr 5e-4 --seed 9 \
        --width 1.5 --init /tmp/ocr-050.weights.h5 --threads 1 --time-budget 115

(models 0.6.0: the 0.5.0 weights, which ``models.training.from_tflite``
recovers from the shipped file, trained 115 more minutes on one thread; 0.5.0
was 0.4.0's widened 1.5x with ``--widen-from``. ``--time-budget`` ends
training and exports by itself. With ``--width 1.5`` the checkpoint in
``--work`` and any ``--init`` are width 1.5; models/CHANGELOG.md has the
whole chain and the data commands.)

Input: 64x128 grey (uint8 scaled to 0..1 inside the model). Output: logits of
shape (1, 32, 37): 32 time steps, 36 characters + CTC blank (last index).
Every batch is re-cut on the fly (scale/shift jitter). Model selection uses a
held-out synthetic chunk only (the first chunk of ``--data``).

``--real models/training/detect_train_texts.jsonl`` (repeatable) mixes
hand-read real crops (train-split plates of ``detect/``, none of them also
among the val texts) into every batch (``--real-per-batch``, jittered like the rest).
``--context N`` adds N dilated residual blocks over the 32 columns
(``build_model``); ``--init-context 0`` starts them from weights without
(the new blocks begin as the identity).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import time

import cv2
import numpy as np

from ..synth.plates import CHARSET

logger = logging.getLogger(__name__)
BLANK = len(CHARSET)
MAX_LEN = 10


def build_model(width: float = 1.0, context: int = 0):
    """The OCR graph; ``width`` multiplies every hidden layer's channels
    (models up to 0.4.0: 1.0). ``context`` adds that many residual blocks of
    dilated 1x3 convolutions (dilation 2, 4, 8, ...) over the 32 columns before
    the classifier, so each column sees the whole plate (models up to 0.6.0: 0,
    each column sees about 52 of the 128 pixels). A block's last batch norm
    starts at zero, so a model that gains blocks starts as the one it grew from
    (``transfer``)."""
    from tensorflow import keras
    from tensorflow.keras import layers as L

    def cbr(x, ch, k=3, s=1, pad="same"):
        x = L.Conv2D(int(round(ch * width)), k, strides=s, padding=pad, use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU(6.0)(x)

    inp = keras.Input((64, 128, 1), name="image")
    x = cbr(inp, 16, s=2)  # 32x64
    x = L.MaxPool2D(2)(x)  # 16x32
    x = cbr(x, 48)
    x = cbr(x, 64)
    x = L.MaxPool2D((2, 1))(x)  # 8x32
    x = cbr(x, 80)
    x = cbr(x, 80)
    x = L.MaxPool2D((2, 1))(x)  # 4x32
    x = cbr(x, 128, k=(4, 1), pad="valid")  # 1x32
    x = cbr(x, 128, k=(1, 3))
    x = cbr(x, 128, k=(1, 3))
    ch = int(round(128 * width))
    for i in range(context):
        d = 2 ** (i + 1)
        y = L.Conv2D(ch, (1, 3), dilation_rate=(1, d), padding="same", use_bias=False, name=f"ctx{i}_conv_a")(x)
        y = L.BatchNormalization(name=f"ctx{i}_bn_a")(y)
        y = L.ReLU(6.0, name=f"ctx{i}_relu")(y)
        y = L.Conv2D(ch, (1, 3), dilation_rate=(1, d), padding="same", use_bias=False, name=f"ctx{i}_conv_b")(y)
        y = L.BatchNormalization(gamma_initializer="zeros", name=f"ctx{i}_bn_b")(y)
        x = L.Add(name=f"ctx{i}_add")([x, y])
    x = L.Conv2D(BLANK + 1, 1)(x)
    out = L.Reshape((32, BLANK + 1), name="logits")(x)
    return keras.Model(inp, out)


def transfer(src, dst) -> int:
    """Copy ``src``'s weights into ``dst`` layer by layer in order, skipping
    the context blocks either has (``ctx*`` layers); returns layers copied."""
    a = [l for l in src.layers if l.weights and not l.name.startswith("ctx")]
    b = [l for l in dst.layers if l.weights and not l.name.startswith("ctx")]
    if len(a) != len(b):
        raise ValueError(f"transfer: {len(a)} layers with weights against {len(b)}")
    for la, lb in zip(a, b):
        lb.set_weights(la.get_weights())
    return len(a)


def encode(labels) -> tuple[np.ndarray, np.ndarray]:
    idx = {c: i for i, c in enumerate(CHARSET)}
    y = np.zeros((len(labels), MAX_LEN), np.int32)
    n = np.zeros((len(labels),), np.int32)
    for i, s in enumerate(labels):
        s = str(s)[:MAX_LEN]
        y[i, : len(s)] = [idx[c] for c in s]
        n[i] = len(s)
    return y, n


def greedy(logits: np.ndarray) -> list[str]:
    best = logits.argmax(-1)
    out = []
    for row in best:
        s, prev = [], -1
        for k in row:
            if k != prev and k != BLANK:
                s.append(CHARSET[k])
            prev = k
        out.append("".join(s))
    return out


def jitter(rng, xb: np.ndarray) -> np.ndarray:
    """On-the-fly crop jitter: detector boxes are sometimes loose, sometimes
    tight, and a bit off-centre, so each sample is re-cut (scale and shift
    with edge replication) anew every epoch. Zooming in up to 1.2x cuts into
    the plate like a tight hand-made crop, where the first and last
    characters touch the edge (models 0.3.0 dropped them on such crops)."""
    out = np.empty_like(xb)
    h, w = xb.shape[1:3]
    for k, img in enumerate(xb):
        if rng.random() < 0.25:
            out[k] = img
            continue
        sx, sy = rng.uniform(0.88, 1.2), rng.uniform(0.85, 1.15)
        tx = w / 2 * (1 - sx) + rng.uniform(-0.04, 0.04) * w
        ty = h / 2 * (1 - sy) + rng.uniform(-0.05, 0.05) * h
        m = np.array([[sx, 0, tx], [0, sy, ty]], np.float32)
        out[k] = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def list_chunks(folder: str) -> list[str]:
    """Finished chunks only: a generator may still be writing into ``folder``."""
    names = (p for p in glob.glob(os.path.join(folder, "ocr-*.npz")))
    return sorted(p for p in names if re.fullmatch(r"ocr-\d+-\d+\.npz", os.path.basename(p)))


def load(paths):
    xs, ys = [], []
    for p in paths:
        d = np.load(p)
        xs.append(d["x"])
        ys.extend(d["y"].tolist())
    return np.concatenate(xs), ys


def export(model, rep_x, path, int8=True):
    from .export import export_tflite

    reps = (rep_x[i : i + 1, ..., None].astype(np.float32) / 255.0 for i in range(min(300, len(rep_x))))
    export_tflite(model, (1, 64, 128, 1), reps, path, int8=int8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder of ocr-*.npz chunks (models.training.data)")
    ap.add_argument("--out", default="models")
    ap.add_argument("--work", default="/tmp/alpr-ocr-work")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-budget", type=float, default=0, help="stop after this many minutes (0: none)")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work")
    ap.add_argument("--init", help="start from these weights (same architecture and --width), e.g. an older run's checkpoint")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (models up to 0.4.0: 1.0)")
    ap.add_argument("--widen-from", help="start by widening these weights (of width --from-width) to --width (function-preserving)")
    ap.add_argument("--from-width", type=float, default=1.0, help="width of the --widen-from weights")
    ap.add_argument("--context", type=int, default=0, help="dilated residual blocks over the columns (models up to 0.6.0: 0)")
    ap.add_argument("--init-context", type=int, default=None,
                    help="context blocks of the --init weights when fewer than --context (new blocks start as identity)")
    ap.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    ap.add_argument("--real", action="append", default=[], help="JSON lines of hand-read real plates (models/training/detect_train_texts*.jsonl) mixed into every batch; repeat for several files")
    ap.add_argument("--real-folder", default="/work/shared/data/detect", help="the folder --real's image paths are under")
    ap.add_argument("--real-per-batch", type=int, default=6, help="samples of each batch drawn from --real (with jitter)")
    ap.add_argument("--export-only", action="store_true", help="load the checkpoint in --work and export")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import tensorflow as tf

    tf.random.set_seed(a.seed)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    chunks = list_chunks(a.data)
    val_x, val_y = load(chunks[:1])  # first chunk held out
    model = build_model(a.width, a.context)
    ckpt = os.path.join(a.work, "ocr.weights.h5")
    if (a.resume or a.export_only) and os.path.exists(ckpt):
        model.load_weights(ckpt)
    elif a.init and a.init_context is not None and a.init_context != a.context:
        src = build_model(a.width, a.init_context)
        src.load_weights(a.init)
        logger.info("initialised %d layers from %s (context %d -> %d)", transfer(src, model), a.init, a.init_context, a.context)
    elif a.init:
        model.load_weights(a.init)
        logger.info("initialised from %s", a.init)
    elif a.widen_from:
        from .widen import widen

        narrow = build_model(a.from_width)
        narrow.load_weights(a.widen_from)
        widen(narrow, model, seed=a.seed)
        logger.info("widened %s from %d to %d parameters", a.widen_from, narrow.count_params(), model.count_params())
    logger.info("params %d", model.count_params())
    opt = tf.keras.optimizers.Adam(a.lr)

    @tf.function
    def step(x, y, n):
        x = tf.cast(x, tf.float32)[..., None] / 255.0
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.nn.ctc_loss(y, logits, n, tf.fill([tf.shape(x)[0]], 32), logits_time_major=False, blank_index=BLANK)
            loss = tf.reduce_mean(loss)
        g = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(g, model.trainable_variables))
        return loss

    def evaluate():
        logits = model.predict(val_x[..., None].astype(np.float32) / 255.0, batch_size=256, verbose=0)
        pred = greedy(logits)
        return float(np.mean([p == t for p, t in zip(pred, val_y)]))

    if a.init or a.resume or a.widen_from:
        logger.info("start synth-val exact %.4f", evaluate())
    best, t0 = -1.0, time.time()
    rng = np.random.default_rng(a.seed)
    real_k = 0
    if a.real:
        from .data import real_crops

        parts = [real_crops(path, a.real_folder) for path in a.real]
        real_x, real_labels = np.concatenate([x for x, _ in parts]), [t for _, ts in parts for t in ts]
        real_y, real_n = encode(real_labels)
        real_k = min(a.real_per_batch, a.batch - 1)
        logger.info("%d real crops from %s, %d per batch", len(real_x), ", ".join(a.real), real_k)
    for ep in range(0 if a.export_only else a.epochs):
        chunks = list_chunks(a.data)[1:]  # picks up chunks written since the last epoch
        x, labels = load(chunks)
        y, n = encode(labels)
        order = rng.permutation(len(x))
        losses = []
        for i in range(0, len(x) - a.batch + 1, a.batch):
            frac = (ep + i / len(x)) / a.epochs
            if a.time_budget:
                frac = max(frac, (time.time() - t0) / (a.time_budget * 60))
            if a.time_budget and time.time() - t0 > a.time_budget * 60:
                break
            opt.learning_rate = a.lr * (0.02 + 0.49 * (1 + np.cos(np.pi * min(frac, 1.0))))
            b = order[i : i + a.batch - real_k]
            xb, yb, nb = x[b], y[b], n[b]
            if real_k:
                r = rng.integers(0, len(real_x), real_k)
                xb, yb, nb = np.concatenate([xb, real_x[r]]), np.concatenate([yb, real_y[r]]), np.concatenate([nb, real_n[r]])
            losses.append(float(step(jitter(rng, xb), yb, nb)))
            if len(losses) % 100 == 0:
                logger.info("epoch %d step %d loss %.3f (%.0fs)", ep, len(losses), np.mean(losses[-100:]), time.time() - t0)
        acc = evaluate()
        logger.info("epoch %d samples %d loss %.3f synth-val exact %.4f (%.0fs)", ep, len(x), np.mean(losses), acc, time.time() - t0)
        if acc > best:
            best = acc
            model.save_weights(ckpt)
        if a.time_budget and time.time() - t0 > a.time_budget * 60:
            logger.info("time budget reached")
            break
    if a.export_only:
        x, _labels = load(list_chunks(a.data)[1:2])
    model.load_weights(ckpt)
    logger.info("best synth-val exact %.4f", best)
    os.makedirs(a.out, exist_ok=True)
    export(model, x[:300], os.path.join(a.out, "plate_ocr.tflite"), int8=True)
    export(model, x[:300], os.path.join(a.work, "plate_ocr_f32.tflite"), int8=False)
    logger.info("exported %s", os.path.join(a.out, "plate_ocr.tflite"))


if __name__ == "__main__":
    main()
