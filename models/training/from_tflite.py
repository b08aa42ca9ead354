"""Recover Keras training weights from a shipped int8 ``.tflite`` model.

    PYTHONPATH=. .venv-train/bin/python -m models.training.from_tflite ocr \
        models/plate_ocr.tflite /tmp/ocr-init.weights.h5
    PYTHONPATH=. .venv-train/bin/python -m models.training.from_tflite detector \
        models/plate_detector.tflite /tmp/det-init.weights.h5

Training checkpoints live in scratch folders and do not survive a machine;
the shipped models do. This turns a shipped model back into a warm start for
``--init`` of the trainers, so a new training continues from the shipped
weights instead of from scratch.

TFLite folds each BatchNormalization into the convolution before it (scaled
kernel plus a bias) and stores both as int8/int32 with per-channel scales.
The kernels and biases are dequantised and put into the Keras convolutions;
each BatchNormalization after a convolution is then set so that it passes the
folded result through unchanged, both with its moving statistics (inference)
and, to within the batch statistics of real inputs, in training mode: its
mean and variance are measured on ``calibration`` inputs and gamma/beta
undo them. Quantisation error remains (int8 weights); the recovered float
model matches the int8 file closely, which ``main`` checks and prints.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

logger = logging.getLogger(__name__)
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _interpreter(path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the train venv has TensorFlow's own
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    return it


def _dequant(it, index: int) -> np.ndarray:
    d = next(t for t in it.get_tensor_details() if t["index"] == index)
    q = d["quantization_parameters"]
    v = it.get_tensor(index).astype(np.float64)
    scales, zps, axis = q["scales"], q["zero_points"], q["quantized_dimension"]
    if len(scales) == 0:
        return v.astype(np.float32)
    shape = [1] * v.ndim
    if len(scales) > 1:
        shape[axis] = len(scales)
    return ((v - np.reshape(zps, shape)) * np.reshape(scales, shape)).astype(np.float32)


def conv_params(path: str) -> list[tuple[np.ndarray, np.ndarray, frozenset]]:
    """``(kernel, bias, upstream)`` of every convolution in execution order:
    kernel and bias as float in Keras layout (Conv2D: kh, kw, in, out;
    depthwise: kh, kw, ch, 1); ``upstream`` holds the positions (in this list)
    of the nearest convolutions feeding it, -1 for the model input."""
    it = _interpreter(path)
    ops = it._get_ops_details()
    producer = {int(t): k for k, op in enumerate(ops) if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    graph_inputs = {int(d["index"]) for d in it.get_input_details()}
    conv_pos = {k: n for n, k in enumerate(k for k, op in enumerate(ops) if op["op_name"] in CONV_OPS)}

    def upstream(tensors, seen) -> set:
        found = set()
        for t in map(int, tensors):
            if t in graph_inputs:
                found.add(-1)
            elif t in producer and producer[t] not in seen:
                k = producer[t]
                seen.add(k)
                found |= {conv_pos[k]} if k in conv_pos else upstream(ops[k]["inputs"], seen)
        return found

    out = []
    for k, op in enumerate(ops):
        if op["op_name"] not in CONV_OPS:
            continue
        x, w, b = (int(v) for v in op["inputs"][:3])
        kernel = _dequant(it, w).transpose(1, 2, 3, 0)  # (out|1),kh,kw,(in|ch) -> kh,kw,(in|ch),(out|1)
        channels = kernel.shape[3] if op["op_name"] == "CONV_2D" else kernel.shape[2] * kernel.shape[3]
        bias = _dequant(it, b) if b >= 0 else np.zeros(channels, np.float32)
        out.append((kernel, bias, frozenset(upstream([x], set()))))
    return out


def conv_params_of(model) -> list:
    """The Keras convolutions of ``model`` (to count them against a file's)."""
    from tensorflow.keras import layers as L

    return [layer for layer in model.layers if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D))]


def _keras_upstream(layer, conv_types) -> set:
    """Names of the nearest convolution layers feeding ``layer`` ("" = input)."""
    found, stack, seen = set(), list(_inputs(layer)), set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if isinstance(op, conv_types):
            found.add(op.name)
        elif not _inputs(op):
            found.add("")
        else:
            stack.extend(_inputs(op))
    return found


def _inputs(layer) -> list:
    try:
        x = layer.input
    except (AttributeError, ValueError):
        return []
    xs = x if isinstance(x, (list, tuple)) else [x]
    return [t._keras_history.operation for t in xs if t._keras_history.operation is not layer]


def load_into(model, path: str, calibration: np.ndarray) -> None:
    """Put the weights of the TFLite file ``path`` into the Keras ``model``
    (same architecture), then calibrate the BatchNormalizations."""
    from tensorflow import keras
    from tensorflow.keras import layers as L

    conv_types = (L.Conv2D, L.DepthwiseConv2D)
    convs = [l for l in model.layers if isinstance(l, conv_types)]
    params = conv_params(path)
    if len(convs) != len(params):
        raise ValueError(f"{path}: {len(params)} convolutions, the Keras model has {len(convs)}")
    # execution order and Keras layer order differ where branches merge: pair
    # a layer with the convolution of the same shape fed by the same convolutions
    match: dict[str, int] = {"": -1}
    pairs = []
    for layer in convs:  # topological order: a layer's upstream convolutions are matched before it
        ups = frozenset(match[n] for n in _keras_upstream(layer, conv_types))
        cand = [k for k, (kern, _, up) in enumerate(params)
                if k not in match.values() and kern.shape == tuple(layer.kernel.shape) and up == ups]
        if len(cand) != 1:
            raise ValueError(f"{path}: {len(cand)} convolutions match {layer.name} {tuple(layer.kernel.shape)}")
        match[layer.name] = cand[0]
        pairs.append((layer, params[cand[0]]))
    bn_after = {}
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            bn_after[layer.input._keras_history.operation.name] = layer
    for layer, (kernel, bias, _) in pairs:
        bn = bn_after.get(layer.name)
        if layer.use_bias:
            layer.set_weights([kernel, bias])
        else:
            layer.set_weights([kernel])
            if bn is None:
                raise ValueError(f"{layer.name}: no bias and no BatchNormalization after it")
            eps = bn.epsilon
            bn.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), np.full_like(bias, 1 - eps)])
    # measure each folded convolution's output statistics and make the
    # BatchNormalizations reproduce them in training mode too
    bns = [(layer, bn_after[layer.name]) for layer, _ in pairs if layer.name in bn_after]
    probe = keras.Model(model.inputs, [layer.output for layer, _ in bns])
    outs = probe.predict(calibration, batch_size=32, verbose=0)
    outs = outs if isinstance(outs, list) else [outs]
    for (layer, bn), o in zip(bns, outs):
        m = o.reshape(-1, o.shape[-1]).mean(0)
        s = np.maximum(o.reshape(-1, o.shape[-1]).std(0), 1e-3)
        _, beta, _, _ = bn.get_weights()
        bn.set_weights([s, beta + m, m, s * s - bn.epsilon])


def _calibration(kind: str, n: int, seed: int, data_root: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "ocr":
        from ..synth.augment import ocr_crop
        from .data import ocr_input

        return np.stack([ocr_input(ocr_crop(rng)[0]) for _ in range(n)])[..., None].astype(np.float32) / 255.0
    from ..synth.scenes import DetectSource, det_sample
    from .detector import SIZE

    src = DetectSource(data_root, split="train")
    return np.stack([det_sample(rng, src, SIZE, SIZE)[0][..., ::-1] for _ in range(n)]).astype(np.float32) / 255.0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["ocr", "detector"])
    ap.add_argument("tflite")
    ap.add_argument("out", help="Keras weights file (.weights.h5) for the trainer's --init")
    ap.add_argument("--samples", type=int, default=128, help="calibration inputs (synthetic / detect train)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--data-root", default="/work/shared/data/detect", help="detect/ folder (detector calibration, train split)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.kind == "ocr":
        from .ocr import build_model
        from .widen import width_of

        convs = conv_params(a.tflite)
        width = width_of(convs[0][0].shape[3])
        # every context block adds two convolutions to the plain graph's
        context = (len(convs) - len(conv_params_of(build_model(width)))) // 2
        model = build_model(width, context)
    else:
        from .detector import build_model
        from .widen import width_of

        model = build_model(width=width_of(conv_params(a.tflite)[0][0].shape[3]))
    cal = _calibration(a.kind, a.samples, a.seed, a.data_root)
    load_into(model, a.tflite, cal)
    model.save_weights(a.out)
    # check: the recovered float model against the int8 file on a few inputs
    it = _interpreter(a.tflite)
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    diffs, corr = [], []
    for x in cal[:8]:
        if -1 in list(inp["shape_signature"]):
            it.resize_tensor_input(inp["index"], (1, *x.shape))
            it.allocate_tensors()
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        ref = it.get_tensor(outp["index"]).ravel()
        got = model(x[None], training=False).numpy().ravel()
        diffs.append(np.abs(ref - got).mean())
        corr.append(np.corrcoef(ref, got)[0, 1])
    logger.info("wrote %s; float vs int8 file: mean |diff| %.4f, correlation %.4f", a.out, np.mean(diffs), np.mean(corr))


if __name__ == "__main__":
    main()
