"""Train the plate detector (tiny CenterNet-style, single class) and export TFLite.

    nice -n 15 .venv-train/bin/python -m models.training.detector --data /tmp/alpr-det \
        --out models/ --epochs 20 --batch 16 --seed 1

Input: 384x384 RGB letterboxed frame scaled to 0..1. Output (1, 96, 96, 5):
channel 0 heatmap logit, 1-2 centre offset (sigmoid, cells), 3-4 log box
width/height in cells (stride 4). Trained on ``detect/`` train images plus
synthetic US plates composited into them (see models.synth.scenes).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import time

import numpy as np

logger = logging.getLogger(__name__)
SIZE, STRIDE = 384, 4


def build_model(size: int = SIZE):
    from tensorflow import keras
    from tensorflow.keras import layers as L

    def cbr(x, ch, k=3, s=1):
        x = L.Conv2D(ch, k, strides=s, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU(6.0)(x)

    def ds(x, ch, s=1):
        x = L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU(6.0)(x)
        return cbr(x, ch, k=1)

    inp = keras.Input((None, None, 3), name="image")
    x = cbr(inp, 16, s=2)  # /2
    x = ds(x, 24, s=2)  # /4
    c4 = ds(x, 32)
    x = ds(c4, 48, s=2)  # /8
    c8 = ds(x, 48)
    x = ds(c8, 80, s=2)  # /16
    x = ds(x, 80)
    c16 = ds(x, 80)
    x = ds(c16, 128, s=2)  # /32
    c32 = ds(x, 128)
    p = cbr(c32, 64, k=1)
    p = L.Add()([L.UpSampling2D()(p), cbr(c16, 64, k=1)])
    p = ds(p, 64)
    p = L.Add()([L.UpSampling2D()(p), cbr(c8, 64, k=1)])
    p = ds(p, 48)
    p = L.Add()([L.UpSampling2D()(p), cbr(c4, 48, k=1)])
    p = ds(p, 48)
    heat = L.Conv2D(1, 1, bias_initializer=keras.initializers.Constant(-4.6))(p)
    reg = L.Conv2D(4, 1)(p)
    out = L.Concatenate(name="out")([heat, reg])
    return keras.Model(inp, out)


def targets(boxes_list, size: int = SIZE):
    """Heatmap / regression targets for a batch of box lists (input pixels)."""
    g = size // STRIDE
    n = len(boxes_list)
    heat = np.zeros((n, g, g), np.float32)
    reg = np.zeros((n, g, g, 4), np.float32)
    mask = np.zeros((n, g, g), np.float32)
    ys, xs = np.mgrid[0:g, 0:g].astype(np.float32)
    for i, boxes in enumerate(boxes_list):
        for x, y, w, h in boxes:
            if w < 2 or h < 1:
                continue
            cx, cy = (x + w / 2) / STRIDE, (y + h / 2) / STRIDE
            ix, iy = min(int(cx), g - 1), min(int(cy), g - 1)
            wc, hc = w / STRIDE, h / STRIDE
            sx, sy = max(0.6, wc / 6), max(0.6, hc / 6)
            gauss = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
            heat[i] = np.maximum(heat[i], gauss)
            reg[i, iy, ix] = [cx - ix, cy - iy, np.log(wc), np.log(hc)]
            mask[i, iy, ix] = 1.0
    return heat, reg, mask


def _crop_boxes(boxes, ox, oy, size):
    out = []
    for x, y, w, h in boxes:
        cx, cy = x + w / 2 - ox, y + h / 2 - oy
        if 0 <= cx < size and 0 <= cy < size:
            out.append([x - ox, y - oy, w, h])
    return out


def load(paths):
    xs, boxes = [], []
    for p in paths:
        d = np.load(p)
        xs.append(d["x"])
        off = 0
        for c in d["counts"]:
            boxes.append(d["boxes"][off : off + c].tolist())
            off += c
    return np.concatenate(xs), boxes


def export(model, rep_x, path, int8=True, size=SIZE):
    from .export import export_tflite

    reps = (rep_x[i : i + 1, ..., ::-1].astype(np.float32) / 255.0 for i in range(min(200, len(rep_x))))
    export_tflite(model, (1, size, size, 3), reps, path, int8=int8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="folder of det-*.npz chunks (models.training.data det)")
    ap.add_argument("--out", default="models")
    ap.add_argument("--work", default="/tmp/alpr-det-work")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-budget", type=float, default=0, help="stop after this many minutes (0: none)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--export-only", action="store_true", help="load the checkpoint in --work and export")
    ap.add_argument("--crop", type=int, default=256, help="train on random crops of this size (fully convolutional)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import tensorflow as tf

    tf.random.set_seed(a.seed)
    os.makedirs(a.work, exist_ok=True)
    model = build_model()
    ckpt = os.path.join(a.work, "det.weights.h5")
    if (a.resume or a.export_only) and os.path.exists(ckpt):
        model.load_weights(ckpt)
    logger.info("params %d", model.count_params())
    x, boxes = load(sorted(glob.glob(os.path.join(a.data, "det-*.npz"))))
    opt = tf.keras.optimizers.Adam(a.lr)

    @tf.function
    def step(xb, heat, reg, mask):
        xb = tf.cast(xb, tf.float32) / 255.0
        with tf.GradientTape() as tape:
            out = model(xb, training=True)
            p = tf.clip_by_value(tf.sigmoid(out[..., 0]), 1e-4, 1 - 1e-4)
            pos = tf.cast(heat >= 0.999, tf.float32)
            neg = 1.0 - pos
            fl = -pos * (1 - p) ** 2 * tf.math.log(p) - neg * (1 - heat) ** 4 * p**2 * tf.math.log(1 - p)
            npos = tf.maximum(tf.reduce_sum(pos), 1.0)
            l_heat = tf.reduce_sum(fl) / npos
            off = tf.sigmoid(out[..., 1:3])
            l_off = tf.reduce_sum(tf.abs(off - reg[..., 0:2]) * mask[..., None]) / npos
            l_wh = tf.reduce_sum(tf.abs(out[..., 3:5] - reg[..., 2:4]) * mask[..., None]) / npos
            loss = l_heat + l_off + 0.5 * l_wh
        g = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(g, model.trainable_variables))
        return loss, l_heat, l_wh

    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    for ep in range(0 if a.export_only else a.epochs):
        order = rng.permutation(len(x))
        hist = []
        for i in range(0, len(x) - a.batch + 1, a.batch):
            frac = (ep + i / len(x)) / a.epochs
            if a.time_budget:
                frac = max(frac, (time.time() - t0) / (a.time_budget * 60))
            if a.time_budget and time.time() - t0 > a.time_budget * 60:
                break
            opt.learning_rate = a.lr * (0.02 + 0.49 * (1 + np.cos(np.pi * min(frac, 1.0))))
            b = order[i : i + a.batch]
            xb = x[b][..., ::-1]  # BGR -> RGB
            bx = [boxes[j] for j in b]
            if rng.random() < 0.5:
                xb = xb[:, :, ::-1]
                bx = [[[SIZE - bb[0] - bb[2], bb[1], bb[2], bb[3]] for bb in bl] for bl in bx]
            if a.crop and a.crop < SIZE:
                ox, oy = (int(v) * STRIDE for v in rng.integers(0, (SIZE - a.crop) // STRIDE + 1, 2))
                xb = xb[:, oy : oy + a.crop, ox : ox + a.crop]
                bx = [_crop_boxes(bl, ox, oy, a.crop) for bl in bx]
            heat, reg, mask = targets(bx, xb.shape[1])
            hist.append([float(v) for v in step(np.ascontiguousarray(xb), heat, reg, mask)])
        m = np.mean(hist, 0)
        logger.info("epoch %d loss %.3f heat %.3f wh %.3f (%.0fs)", ep, m[0], m[1], m[2], time.time() - t0)
        model.save_weights(ckpt)
        if a.time_budget and time.time() - t0 > a.time_budget * 60:
            logger.info("time budget reached")
            break
    os.makedirs(a.out, exist_ok=True)
    export(model, x[:200], os.path.join(a.out, "plate_detector.tflite"), int8=True)
    export(model, x[:200], os.path.join(a.work, "plate_detector_f32.tflite"), int8=False)
    logger.info("exported")


if __name__ == "__main__":
    main()
