"""Build keras.applications models (weights=None) and small hand-made models in one Keras
dialect and save them in that dialect's file formats, with a reference output each.

Run as a script, in a process of its own (it imports TensorFlow)::

    python tests/builders/keras_dialect_build.py keras2 OUT_DIR SPEC_JSON
    python tests/builders/keras_dialect_build.py keras3 OUT_DIR SPEC_JSON

``SPEC_JSON`` is ``{"seed": 0, "models": {"MobileNetV2": ["h5", "savedmodel"], ...}}``:
the models to build and which of the dialect's formats to write. Formats and files:

- keras2 (tf_keras, ``TF_USE_LEGACY_KERAS=1``): ``h5`` -> ``NAME.k2.h5``,
  ``savedmodel`` -> ``NAME.k2_savedmodel/`` (``model.save`` in the TF format).
- keras3 (Keras 3, ``KERAS_BACKEND=tensorflow``): ``h5`` -> ``NAME.k3.h5`` (legacy h5),
  ``keras`` -> ``NAME.keras``, ``savedmodel`` -> ``NAME.k3_savedmodel/`` (``model.export``).

``NAME.<k2|k3>.npz`` holds the inputs (``in:<input name>``) and the model's outputs
(``out:<output name>``) on a fixed random input, in the model's input/output order. The
imported tests/keras/test_keras_app_dialects.py runs this; it never imports TensorFlow itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: keras.applications name -> square input size (small, but valid for the architecture)
APPS = {
    "MobileNetV2": 96,
    "ResNet50": 64,
    "EfficientNetB0": 64,
    "DenseNet121": 64,
    "InceptionV3": 75,
    "NASNetMobile": 32,
    "ConvNeXtTiny": 32,
}
#: models built here by hand
CUSTOM = ("TextLSTM", "MultiIO")
VOCAB = 1000
SEQ_LEN = 24


def text_lstm(keras: Any) -> Any:
    """An LSTM text classifier: Embedding + stacked LSTM + Bidirectional LSTM + Dense."""
    layers = keras.layers
    tokens = keras.Input((SEQ_LEN,), dtype="int32", name="tokens")
    # unit-variance embeddings: Keras' default (stddev 0.05) leaves the logits so close to
    # zero that the softmax is flat and hides any difference
    init = keras.initializers.RandomNormal(stddev=1.0)
    x = layers.Embedding(VOCAB, 32, embeddings_initializer=init, name="embed")(tokens)
    x = layers.LSTM(32, return_sequences=True, name="lstm")(x)
    x = layers.Bidirectional(layers.LSTM(16), name="bilstm")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(32, activation="relu", name="hidden")(x)
    return keras.Model(tokens, layers.Dense(5, activation="softmax", name="probs")(x),
                       name="text_lstm")


def multi_io(keras: Any) -> Any:
    """A functional model with an image and a feature input and two heads."""
    layers = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    feats = keras.Input((12,), name="features")
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="conv1")(image)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu")(x)
    x = layers.SeparableConv2D(24, 3, padding="same", activation="relu", name="sep")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    f = layers.Dense(24, activation="tanh", name="feat_dense")(feats)
    f = layers.LayerNormalization(name="feat_norm")(f)
    h = layers.Concatenate(name="merge")([x, f])
    h = layers.Dense(32, activation="relu", name="trunk")(h)
    h = layers.Add(name="skip")([h, layers.Dense(32, name="proj")(f)])
    classes = layers.Dense(10, activation="softmax", name="classes")(h)
    score = layers.Dense(1, name="score")(layers.Multiply(name="gate")([h, h]))
    return keras.Model([image, feats], [classes, score], name="multi_io")


def build(keras: Any, name: str) -> Any:
    """The model ``name`` (an application or a CUSTOM one); applications return 10 logits
    (a softmax would hide differences: it saturates or flattens on random weights)."""
    if name == "TextLSTM":
        return text_lstm(keras)
    if name == "MultiIO":
        return multi_io(keras)
    size = APPS[name]
    return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                             classes=10, classifier_activation=None)


def perturb_batchnorm(model: Any, rng: np.random.Generator) -> None:
    """Give every BatchNormalization non-trivial statistics (fresh ones are the identity)."""
    for layer in _all_layers(model):
        if type(layer).__name__ != "BatchNormalization":
            continue
        values = []
        for w in layer.weights:
            name = (getattr(w, "path", None) or w.name).rsplit("/", 1)[-1].split(":")[0]
            shape = tuple(w.shape)
            if name in ("gamma", "moving_variance"):
                values.append(rng.uniform(0.8, 1.2, shape))
            else:  # beta, moving_mean
                values.append(rng.normal(0.0, 0.05, shape))
        layer.set_weights([v.astype("float32") for v in values])


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def sample_inputs(model: Any, rng: np.random.Generator) -> list[np.ndarray]:
    """One batch-1 sample per model input: token ids, or image/feature values."""
    feeds = []
    for t in model.inputs:
        shape = [1 if d is None else int(d) for d in t.shape]
        if "int" in str(t.dtype):
            feeds.append(rng.integers(0, VOCAB, shape).astype("int32"))
        elif len(shape) == 4:
            feeds.append(rng.uniform(0, 255, shape).astype("float32"))
        else:
            feeds.append(rng.normal(0, 1, shape).astype("float32"))
    return feeds


def _names(tensors: Any) -> list[str]:
    names = []
    for t in tensors:
        history = getattr(t, "_keras_history", None)
        layer = history[0] if history is not None else None
        names.append(layer.name if layer is not None else t.name.split(":")[0])
    return names


def _save_reference(model: Any, feeds: list[np.ndarray], path: Path) -> None:
    outs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    outs = list(outs) if isinstance(outs, list | tuple) else [outs]
    arrays = {f"in:{n}": f for n, f in zip(_names(model.inputs), feeds, strict=True)}
    arrays.update({f"out:{n}": np.asarray(o)
                   for n, o in zip(_names(model.outputs), outs, strict=True)})
    np.savez(path, **arrays)  # type: ignore[arg-type]


def main(dialect: str, out: Path, spec: dict[str, Any]) -> None:
    """Build and save every model of ``spec`` in ``dialect``; prints seconds per model."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    if dialect == "keras2":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as keras
    else:
        import keras

    seed = int(spec.get("seed", 0))
    tag = "k2" if dialect == "keras2" else "k3"
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, formats) in enumerate(spec["models"].items()):
        start = time.perf_counter()
        keras.utils.set_random_seed(seed + i)
        keras.backend.clear_session()
        model = build(keras, name)
        rng = np.random.default_rng(seed + i)
        perturb_batchnorm(model, rng)
        _save_reference(model, sample_inputs(model, rng), out / f"{name}.{tag}.npz")
        for fmt in formats:
            if fmt == "h5":
                model.save(out / f"{name}.{tag}.h5")
            elif fmt == "keras" and dialect == "keras3":
                model.save(out / f"{name}.keras")
            elif fmt == "savedmodel" and dialect == "keras2":
                model.save(str(out / f"{name}.k2_savedmodel"), save_format="tf")
            elif fmt == "savedmodel":
                model.export(str(out / f"{name}.k3_savedmodel"), verbose=False)
            else:
                raise ValueError(f"no format {fmt!r} in {dialect}")
        print(f"{dialect} {name}: {time.perf_counter() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]))
