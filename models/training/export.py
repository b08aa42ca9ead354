"""Keras model -> TFLite (int8 weights and activations, float32 in/out)."""

from __future__ import annotations

import numpy as np


def export_tflite(model, input_shape, rep_inputs, path: str, int8: bool = True) -> None:
    """Write ``model`` as TFLite to ``path``.

    ``rep_inputs`` is an iterable of float32 arrays of ``input_shape`` used to
    calibrate int8 quantisation (synthetic/training data only).
    """
    import tensorflow as tf

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec(input_shape, tf.float32)))
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
