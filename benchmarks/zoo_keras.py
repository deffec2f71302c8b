"""Keras 3 benchmark models (keras.applications with weights=None, and an LSTM classifier),
and their tf_keras (Keras 2) twins for the tf.keras SavedModel route.

Imported only in subprocesses whose KERAS_BACKEND is tensorflow (see benchmarks.worker).
"""

from __future__ import annotations

from typing import Any

from benchmarks.zoo import ModelSpec


def build_keras(spec: ModelSpec) -> Any:
    """A freshly built, seeded Keras model for ``spec`` (BatchNorm statistics perturbed)."""
    model = _build(spec)
    perturb_norms(model)
    return model


def perturb_norms(model: Any, seed: int = 1) -> None:
    """Non-trivial BatchNormalization statistics (fresh ones are near identities)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        new = []
        for w in layer.weights:
            shape, name = tuple(w.shape), w.path.split("/")[-1]
            if name in ("gamma", "moving_variance"):
                new.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
            else:  # beta, moving_mean
                new.append((rng.standard_normal(shape) * 0.1).astype("float32"))
        layer.set_weights(new)


def build_tfkeras_twin(spec: ModelSpec, weights: list[Any]) -> Any:
    """The same architecture built with tf_keras (Keras 2), holding ``weights``."""
    import tf_keras

    model = _build(spec, tf_keras)
    model.set_weights(weights)
    return model


def _build(spec: ModelSpec, keras: Any = None) -> Any:
    if keras is None:
        import keras

    keras.utils.set_random_seed(0)
    apps = keras.applications
    shape = tuple(spec.inputs[0].shape[1:])
    if spec.name == "k_mobilenetv2":
        return apps.MobileNetV2(weights=None, input_shape=shape, classifier_activation=None)
    if spec.name == "k_resnet50":
        return apps.ResNet50(weights=None, input_shape=shape, classifier_activation=None)
    if spec.name == "k_efficientnetb0":
        return apps.EfficientNetB0(weights=None, input_shape=shape, classifier_activation=None)
    if spec.name == "k_lstm":
        inp = keras.Input(shape, dtype="int32", name=spec.inputs[0].name)
        x = keras.layers.Embedding(spec.inputs[0].high, 64, name="embed")(inp)
        x = keras.layers.LSTM(64, name="lstm")(x)
        out = keras.layers.Dense(4, name="logits")(x)  # logits: softmax would hide errors
        return keras.Model(inp, out, name="lstm_classifier")
    raise KeyError(f"no keras builder for {spec.name}")
