"""Function-preserving widening of a trained model (Net2WiderNet, Chen et
al. 2016), shared by the detector and OCR trainers' ``--widen-from``.

Both models are plain chains of convolutions and BatchNorms built with a
``width`` channel multiplier, so the narrow and the wide graph have the same
layers in the same order and only channel counts differ.
"""

from __future__ import annotations

import numpy as np


def width_of(first_conv_channels: int) -> float:
    """The ``width`` of a detector or OCR whose first convolution has this
    many channels (both start with 16 at width 1.0)."""
    return first_conv_channels / 16


def widen(narrow, wide, noise: float = 0.01, seed: int = 0) -> None:
    """Copy the trained ``narrow`` model into the wider ``wide`` one: wide
    channel j repeats narrow channel j mod C, and a convolution reading
    repeated channels divides their weights by the repeat count, so ``wide``
    computes the same function. Layers whose shape did not change (the
    heads) are copied as they are; small noise on the widened ones lets the
    repeats drift apart in training."""
    rng = np.random.default_rng(seed)

    def reps(c_old, c_new):
        idx = np.arange(c_new) % c_old
        return idx, np.bincount(idx, minlength=c_old)[idx].astype(np.float32)

    nl = [layer for layer in narrow.layers if layer.weights]
    wl = [layer for layer in wide.layers if layer.weights]
    if len(nl) != len(wl):
        raise ValueError("widen: the two models are not the same graph")
    for a, b in zip(nl, wl):
        new = []
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            if wa.ndim == 4:  # Conv2D (kh, kw, in, out) or depthwise (kh, kw, ch, 1)
                i_idx, i_cnt = reps(wa.shape[2], wb.shape[2])
                o_idx, _ = reps(wa.shape[3], wb.shape[3])
                w = wa[:, :, i_idx][:, :, :, o_idx]
                if type(a).__name__ != "DepthwiseConv2D":
                    w = w / i_cnt[None, None, :, None]
                w = w + rng.normal(0, noise * (np.std(wa) + 1e-8), w.shape).astype(np.float32) * (wb.shape != wa.shape)
            else:  # biases and BatchNorm vectors follow the output channels
                w = wa[reps(wa.shape[0], wb.shape[0])[0]]
            new.append(w.astype(np.float32))
        b.set_weights(new)
