"""Train the plate detector (tiny CenterNet-style, single class) and export TFLite.

    PYTHONPATH=. nice -n 10 .venv-train/bin/python -m models.training.detector \
        --widen-from /tmp/det-030.weights.h5 --width 1.5 --work /tmp/det6-work --out /tmp/det6-out \
        --time-budget 110 --eval-every 8 --mine-every 10 --threads 1 --seed 6

(models 0.4.0: the 0.3.0 detector, recovered from its shipped file with
``models.training.from_tflite`` or kept from its training, widened 1.5x;
see models/CHANGELOG.md for the whole chain.)

Input: RGB frame letterboxed to 384 (long side; the runtime pads to a multiple
of 32, so a 16:9 frame is 384x224) scaled to 0..1. Output (1, H/4, W/4, 5):
channel 0 heatmap logit, 1-2 centre offset (sigmoid, cells), 3-4 log box
width/height in cells (stride 4).

Training samples are made on the fly by one worker process
(``models.synth.scenes.det_sample``: ``detect/`` train images scaled like the
runtime letterbox with zoom, crops, flips, lighting, plus synthetic US plates
pasted in) into a replay buffer, so the trainer never waits for data. Every
``--eval-every`` minutes the float model is scored on ``detect/`` val with the
runtime's own letterbox/decode/NMS; the best checkpoint (F1 at IoU >= 0.5 at
its best threshold) is exported. ``detect/`` val therefore picks the
checkpoint and the threshold: figures on it are slightly optimistic.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import multiprocessing
import os
import time

import cv2
import numpy as np

logger = logging.getLogger(__name__)
SIZE, STRIDE = 384, 4
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def conv_blocks(width: float = 1.0):
    """The two blocks the small CNNs here (detector, box verifier) are built
    from: ``cbr`` convolution + batch norm + ReLU6, and ``ds`` depthwise 3x3 +
    batch norm + ReLU6 then a 1x1 ``cbr``; ``width`` multiplies channels."""
    from tensorflow.keras import layers as L

    def cbr(x, ch, k=3, s=1):
        x = L.Conv2D(int(round(ch * width)), k, strides=s, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU(6.0)(x)

    def ds(x, ch, s=1):
        x = L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU(6.0)(x)
        return cbr(x, ch, k=1)

    return cbr, ds


def build_model(size: int = SIZE, width: float = 1.0):
    """The detector graph; ``width`` multiplies every layer's channels (models
    0.4.0 use 1.5, earlier ones 1.0)."""
    from tensorflow import keras
    from tensorflow.keras import layers as L

    cbr, ds = conv_blocks(width)
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


def targets(boxes_list, size: int):
    """Heatmap / regression targets for a batch of box lists (input pixels).

    ``reg`` holds the centre offset (only meaningful at the centre cell,
    ``mask``) and log width/height, which is also taught on the 3x3 cells
    around the centre (``wmask``): a peak one cell off still gets a good box."""
    g = size // STRIDE
    n = len(boxes_list)
    heat = np.zeros((n, g, g), np.float32)
    reg = np.zeros((n, g, g, 4), np.float32)
    mask = np.zeros((n, g, g), np.float32)
    wmask = np.zeros((n, g, g), np.float32)
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
            y0, y1, x0, x1 = max(iy - 1, 0), min(iy + 2, g), max(ix - 1, 0), min(ix + 2, g)
            reg[i, y0:y1, x0:x1, 2:4] = [np.log(wc), np.log(hc)]
            wmask[i, y0:y1, x0:x1] = np.maximum(wmask[i, y0:y1, x0:x1], 0.5)
            reg[i, iy, ix] = [cx - ix, cy - iy, np.log(wc), np.log(hc)]
            mask[i, iy, ix] = 1.0
            wmask[i, iy, ix] = 1.0
    return heat, reg, mask, wmask


def make_loss(tf):
    """CenterNet focal loss on the heatmap, L1 on offset and log size, and a
    GIoU loss on the decoded centre box (IoU >= 0.5 is what counts)."""

    def loss_fn(out, heat, reg, mask, wmask):
        p = tf.clip_by_value(tf.sigmoid(out[..., 0]), 1e-4, 1 - 1e-4)
        pos = tf.cast(heat >= 0.999, tf.float32)
        fl = -pos * (1 - p) ** 2 * tf.math.log(p) - (1 - pos) * (1 - heat) ** 4 * p**2 * tf.math.log(1 - p)
        npos = tf.maximum(tf.reduce_sum(pos), 1.0)
        l_heat = tf.reduce_sum(fl) / npos
        off = tf.sigmoid(out[..., 1:3])
        l_off = tf.reduce_sum(tf.abs(off - reg[..., 0:2]) * mask[..., None]) / npos
        l_wh = tf.reduce_sum(tf.abs(out[..., 3:5] - reg[..., 2:4]) * wmask[..., None]) / tf.maximum(tf.reduce_sum(wmask), 1.0)
        pwh = tf.exp(tf.clip_by_value(out[..., 3:5], -4.0, 6.0))
        twh = tf.exp(reg[..., 2:4])
        p0, p1 = off - pwh / 2, off + pwh / 2
        t0, t1 = reg[..., 0:2] - twh / 2, reg[..., 0:2] + twh / 2
        inter = tf.reduce_prod(tf.maximum(tf.minimum(p1, t1) - tf.maximum(p0, t0), 0.0), -1)
        union = tf.reduce_prod(pwh, -1) + tf.reduce_prod(twh, -1) - inter
        hull = tf.reduce_prod(tf.maximum(p1, t1) - tf.minimum(p0, t0), -1)
        giou = inter / union - (hull - union) / hull
        l_giou = tf.reduce_sum((1.0 - giou) * mask) / npos
        return l_heat + l_off + l_wh + l_giou, l_heat, l_giou

    return loss_fn


def _produce(queue, root: str, seed: int, crop: int, chunk: int, night: float = 0.0) -> None:
    """Worker process: make training samples forever, ``chunk`` at a time."""
    from ..synth.scenes import DetectSource, det_sample

    src = DetectSource(root, split="train")
    rng = np.random.default_rng(seed)
    while True:
        queue.put([det_sample(rng, src, crop, SIZE, night) for _ in range(chunk)])


class Replay:
    """Ring buffer of recent samples; the trainer draws batches from it and
    tops it up from the worker without blocking."""

    def __init__(self, n: int, crop: int) -> None:
        self.x = np.zeros((n, crop, crop, 3), np.uint8)
        self.boxes: list = [[] for _ in range(n)]
        self.filled = self.pos = self.added = 0

    def add(self, samples) -> None:
        for img, bx in samples:
            self.x[self.pos], self.boxes[self.pos] = img, bx
            self.pos = (self.pos + 1) % len(self.x)
            self.filled = min(self.filled + 1, len(self.x))
            self.added += 1

    def batch(self, rng, n: int):
        idx = rng.integers(0, self.filled, n)
        return self.x[idx][..., ::-1], [self.boxes[i] for i in idx]  # BGR -> RGB


def runtime_module(name: str):
    """A module of the runtime's ``edge_agent/recognition`` (``_detect``,
    ``_ctc``: numpy/OpenCV only), loaded by file path: importing the
    ``edge_agent`` package would pull in the agent's dependencies, which the
    training environment does not have."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "edge_agent", "recognition", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"alpr_runtime{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def runtime_detect():
    """The runtime's own ``_detect`` module (letterbox, decode, NMS)."""
    return runtime_module("_detect")


class ValSet:
    """``detect/`` val images letterboxed exactly as at run time, grouped by
    input shape so they can be run in batches."""

    def __init__(self, root: str, size: int = SIZE) -> None:
        self.det = runtime_detect()
        groups: dict = {}
        with open(os.path.join(root, "boxes.jsonl"), encoding="utf-8") as fh:
            for r in map(json.loads, fh):
                if r["split"] != "val":
                    continue
                x, s = self.det.letterbox(cv2.imread(os.path.join(root, r["image"])), size, 32)
                groups.setdefault(x.shape, []).append((x[0], [[v * s for v in b] for b in r["plates"]]))
        self.groups = list(groups.values())

    def score(self, model, batch: int = 8) -> dict:
        """Recall, precision and F1 at IoU >= 0.5 for each threshold."""
        counts = {t: [0, 0, 0] for t in THRESHOLDS}  # tp, gt, detections
        for items in self.groups:
            for i in range(0, len(items), batch):
                part = items[i : i + batch]
                out = model(np.stack([x for x, _ in part]), training=False).numpy()
                for o, (_, gts) in zip(out, part):
                    dets = self.det.nms(self.det.decode(o, STRIDE, min(THRESHOLDS)), 0.4)
                    for t in THRESHOLDS:
                        d = [q for q in dets if q[4] >= t]
                        c = counts[t]
                        c[0] += _matches(self.det.iou, gts, d)
                        c[1] += len(gts)
                        c[2] += len(d)
        res = {}
        for t, (tp, n, nd) in counts.items():
            r, p = tp / max(n, 1), tp / max(nd, 1)
            res[t] = (r, p, 2 * r * p / max(r + p, 1e-9))
        return res


class Miner:
    """Hard examples from the ``detect/`` train split: the current model is
    run over every train image the way the runtime sees it (letterbox at
    ``SIZE``, and a second time zoomed in so small plates are tried too);
    where it fires on no plate (a false positive at ``thr``, but under 0.65:
    the most confident ones are mostly plates the labels left out) or misses
    a plate (no box at IoU >= 0.5 scoring ``thr``: a plate found with a score
    under the operating threshold counts as missed), a window around that
    spot becomes a training sample. The newest ``n``
    windows are kept; a share of every batch is drawn from them."""

    def __init__(self, root: str, n: int, crop: int, thr: float = 0.4) -> None:
        from ..synth.scenes import DetectSource

        self.det = runtime_detect()
        self.src = DetectSource(root, split="train")
        self.n, self.crop, self.thr, self.fp_max = n, crop, thr, 0.65
        self.items: list = []  # (image index, focus box, scale)
        self.stats = (0, 0)

    def mine(self, model, rng) -> None:
        found, fps, misses = [], 0, 0
        for i in range(len(self.src)):
            img, boxes = self.src.load(i)
            if img is None:
                continue
            for zoom in (1.0, float(rng.uniform(1.3, 2.0))):
                x, s = self.det.letterbox(img, int(round(SIZE * zoom / 32)) * 32, 32)
                out = model(x, training=False).numpy()[0]
                dets = self.det.nms(self.det.decode(out, STRIDE, self.thr), 0.4)
                gts = [[v * s for v in b] for b in boxes]
                for d in dets:
                    # very confident "false positives" are mostly plates the labels left out
                    if d[4] < self.fp_max and max((self.det.iou(g, d[:4]) for g in gts), default=0.0) < 0.3:
                        found.append((i, [v / s for v in d[:4]], s))
                        fps += 1
                for g, b in zip(gts, boxes):
                    if max((self.det.iou(g, d[:4]) for d in dets), default=0.0) < 0.5:
                        found.append((i, b, s))
                        misses += 1
        order = rng.permutation(len(found))
        self.items = ([found[k] for k in order] + self.items)[: self.n]
        self.stats = (fps, misses)

    def batch(self, rng, n: int):
        from ..synth.scenes import hard_sample

        xs, bxs = [], []
        for k in rng.integers(0, len(self.items), n):
            i, focus, scale = self.items[k]
            img, boxes = self.src.load(i)
            x, b = hard_sample(rng, img, boxes, focus, self.crop, scale)
            xs.append(x[..., ::-1])  # BGR -> RGB
            bxs.append(b)
        return np.stack(xs), bxs


def _matches(iou, gts, dets, thr: float = 0.5) -> int:
    """Greedy one-to-one matches of ground truth to detections at IoU >= thr."""
    used, tp = set(), 0
    for g in gts:
        best, bi = thr, -1
        for k, d in enumerate(dets):
            v = iou(g, d[:4])
            if k not in used and v >= best:
                best, bi = v, k
        if bi >= 0:
            used.add(bi)
            tp += 1
    return tp


def export(model, rep_x, path, int8=True, size=SIZE):
    from .export import export_tflite

    reps = (x[None, ..., ::-1].astype(np.float32) / 255.0 for x in rep_x)
    export_tflite(model, (1, size, size, 3), reps, path, int8=int8)


def calibration_images(root: str, seed: int, n: int = 150):
    """Training-distribution images at full input size for int8 calibration."""
    from ..synth.scenes import DetectSource, det_sample

    src = DetectSource(root, split="train")
    rng = np.random.default_rng(seed + 7)
    return [det_sample(rng, src, SIZE, SIZE)[0] for _ in range(n)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="/work/shared/data/detect")
    ap.add_argument("--out", default="/tmp/det2-out", help="folder for plate_detector.tflite (int8)")
    ap.add_argument("--work", default="/tmp/alpr-det-work", help="checkpoints, float export, log")
    ap.add_argument("--init", default=None, help="warm-start from these weights (same architecture and --width)")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (models 0.4.0: 1.5)")
    ap.add_argument("--widen-from", default=None,
                    help="warm-start by widening these weights (of width --from-width) to --width (function-preserving)")
    ap.add_argument("--from-width", type=float, default=1.0, help="width of the --widen-from weights")
    ap.add_argument("--time-budget", type=float, required=True, help="train this many minutes, then export")
    ap.add_argument("--eval-every", type=float, default=8.0, help="minutes between val scores")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256, help="training crop size (the model is fully convolutional)")
    ap.add_argument("--buffer", type=int, default=2000, help="replay buffer size (samples)")
    ap.add_argument("--fresh", type=float, default=0.5, help="new samples per trained sample (the rest are replayed)")
    ap.add_argument("--mine-every", type=float, default=0.0,
                    help="minutes between hard-example mining passes over detect/ train (0: no mining)")
    ap.add_argument("--hard-share", type=float, default=0.25, help="share of each batch drawn from mined windows")
    ap.add_argument("--mine-threshold", type=float, default=0.4,
                    help="score a box must reach to count as a detection when mining (models 0.4.0: 0.4; "
                         "the runtime's detect_threshold is 0.5)")
    ap.add_argument("--night", type=float, default=0.0,
                    help="share of generated samples turned into night traffic scenes (models.synth.augment.night_traffic)")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="decay of an exponential moving average of the weights; when set, the average is what is "
                         "scored, kept and exported (e.g. 0.998)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--export-only", action="store_true", help="export the best checkpoint in --work")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    best_ckpt = os.path.join(a.work, "det-best.weights.h5")
    queue = None
    if not a.export_only:  # fork the worker before TensorFlow starts its threads
        queue = multiprocessing.get_context("fork").Queue(maxsize=8)
        worker = multiprocessing.get_context("fork").Process(
            target=_produce, args=(queue, a.data_root, a.seed, a.crop, 32, a.night), daemon=True)
        worker.start()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(a.seed)
    model = build_model(width=a.width)
    if a.init:
        model.load_weights(a.init)
    elif a.widen_from:
        from .widen import widen

        narrow = build_model(width=a.from_width)
        narrow.load_weights(a.widen_from)
        widen(narrow, model, seed=a.seed)
        logger.info("widened %s from %d to %d parameters", a.widen_from, narrow.count_params(), model.count_params())
    if a.export_only:
        model.load_weights(best_ckpt)
    else:
        train(tf, model, a, queue, best_ckpt)
        worker.terminate()
        model.load_weights(best_ckpt)
    reps = calibration_images(a.data_root, a.seed)
    export(model, reps, os.path.join(a.out, "plate_detector.tflite"), int8=True)
    export(model, reps, os.path.join(a.work, "plate_detector_f32.tflite"), int8=False)
    logger.info("exported %s", os.path.join(a.out, "plate_detector.tflite"))


def train(tf, model, a, queue, best_ckpt: str) -> None:
    """Train until the time budget is spent (cosine learning rate over wall
    time), scoring on val every ``eval_every`` minutes and keeping the best."""
    logger.info("params %d", model.count_params())
    opt = tf.keras.optimizers.Adam(a.lr)
    loss_fn = make_loss(tf)
    # the moving average covers the trainable weights; batch-norm statistics are averages already
    ema = [tf.Variable(v, trainable=False) for v in model.trainable_variables] if a.ema else []

    @tf.function
    def step(xb, heat, reg, mask, wmask):
        xb = tf.cast(xb, tf.float32) / 255.0
        with tf.GradientTape() as tape:
            losses = loss_fn(model(xb, training=True), heat, reg, mask, wmask)
        g = tape.gradient(losses[0], model.trainable_variables)
        opt.apply_gradients(zip(g, model.trainable_variables))
        for e, v in zip(ema, model.trainable_variables):
            e.assign(a.ema * e + (1.0 - a.ema) * v)
        return losses

    def averaged(fn):
        """Run ``fn`` with the averaged weights in the model (the raw ones
        without ``--ema``), then put the raw weights back."""
        if not ema:
            return fn()
        raw = [v.numpy() for v in model.trainable_variables]
        for e, v in zip(ema, model.trainable_variables):
            v.assign(e)
        try:
            return fn()
        finally:
            for r, v in zip(raw, model.trainable_variables):
                v.assign(r)

    val = ValSet(a.data_root)
    rng = np.random.default_rng(a.seed)
    buf = Replay(a.buffer, a.crop)
    while buf.filled < 4 * a.batch:
        buf.add(queue.get())
    miner = Miner(a.data_root, 4000, a.crop, a.mine_threshold) if a.mine_every else None
    best, hist, t0 = -1.0, [], time.time()
    next_eval = 0.0  # score the starting weights first
    next_mine = 0.0
    while True:
        elapsed = time.time() - t0
        frac = min(elapsed / (a.time_budget * 60), 1.0)
        if buf.added < a.fresh * len(hist) * a.batch and not queue.empty():
            buf.add(queue.get())  # pulling only as needed leaves the worker idle, and the CPU to training
        opt.learning_rate = a.lr * (0.02 + 0.49 * (1 + np.cos(np.pi * frac)))
        if miner and elapsed >= next_mine and frac < 0.97:
            next_mine += a.mine_every * 60
            tm = time.time()
            miner.mine(model, rng)
            logger.info("mined %d false positives and %d missed plates in %.0fs", *miner.stats, time.time() - tm)
        xb, bx = buf.batch(rng, a.batch)
        n_hard = int(round(a.batch * a.hard_share)) if miner and miner.items else 0
        if n_hard:
            hx, hb = miner.batch(rng, n_hard)
            xb, bx = np.concatenate([xb[n_hard:], hx]), bx[n_hard:] + hb
        hist.append([float(v) for v in step(np.ascontiguousarray(xb), *targets(bx, a.crop))])
        if elapsed >= next_eval or frac >= 1.0:
            next_eval += a.eval_every * 60
            res = averaged(lambda: val.score(model))
            t_best = max(res, key=lambda t: res[t][2])
            r, p, f1 = res[t_best]
            m = np.mean(hist, 0)
            logger.info("%.0f min, %d steps, buffer %d: loss %.3f heat %.3f giou %.3f | val best thr %.2f recall %.3f "
                        "precision %.3f F1 %.3f | thr 0.3: recall %.3f precision %.3f", elapsed / 60, len(hist),
                        buf.filled, m[0], m[1], m[2], t_best, r, p, f1, res[0.3][0], res[0.3][1])
            if f1 > best:
                best = f1
                averaged(lambda: model.save_weights(best_ckpt))
                logger.info("new best checkpoint")
            averaged(lambda: model.save_weights(os.path.join(a.work, "det-last.weights.h5")))
            if frac >= 1.0:
                return


if __name__ == "__main__":
    main()
