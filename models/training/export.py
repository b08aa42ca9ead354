"""Keras model -> TFLite (int8 weights and activations, float32 in/out)."""

from __future__ import annotations

import numpy as np


def export_tflite(model, input_shape, rep_inputs, path: str, int8: bool = True) -> None:
    """Write ``model`` as TFLite to ``path``.

    ``rep_inputs`` is an iterable of float32 arrays of ``input_shape`` used to
    calibrate int8 quantisation (synthetic/training data only).

    A model whose Keras input leaves height and width free (the fully
    convolutional detector) is exported with them free too (-1 in the TFLite
    shape signature), so the runtime can feed a 16:9 frame as 384x224 instead
    of padding it to a square. ``input_shape`` then only sizes the calibration.
    """
    import tensorflow as tf

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = list(input_shape)
    if len(spec) == 4 and model.input_shape[1] is None and model.input_shape[2] is None:
        spec[1] = spec[2] = None
    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec(spec, tf.float32)))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if int8:
        reps = [np.asarray(r, np.float32) for r in rep_inputs]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([r] for r in reps)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    data = conv.convert()
    with open(path, "wb") as fh:
        fh.write(data)
