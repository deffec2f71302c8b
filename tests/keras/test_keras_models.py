"""Model-scale checks: keras.applications (weights=None) -> .keras -> IR -> onnxruntime."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import onnx_ir as ir  # noqa: E402

from modelconv.importers.keras import import_keras  # noqa: E402
from modelconv.options import ConvertOptions  # noqa: E402
from modelconv.verification.runners import OnnxRuntimeRunner  # noqa: E402

APPS = {
    "MobileNetV2": (96, {}),
    "ResNet50": (64, {}),
    "EfficientNetB0": (64, {}),
    "DenseNet121": (64, {}),
    "InceptionV3": (75, {}),
    "NASNetMobile": (224, {}),
    "ConvNeXtTiny": (32, {}),
}


@pytest.mark.models
@pytest.mark.parametrize("name", sorted(APPS))
def test_application(name: str, tmp_path: Path) -> None:
    size, kwargs = APPS[name]
    factory: Any = getattr(keras.applications, name)
    try:
        model = factory(weights=None, input_shape=(size, size, 3), classes=10, **kwargs)
    except ValueError as exc:  # e.g. NASNet is not available on the torch backend
        if "backend" in str(exc):
            pytest.skip(str(exc)[:200])
        raise
    path = tmp_path / f"{name}.keras"
    model.save(path)
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(x, training=False))
    sm = import_keras(path, ConvertOptions())
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run([x])[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())),
                               rtol=0)
    assert int(np.argmax(got)) == int(np.argmax(want))


@pytest.mark.models
@pytest.mark.parametrize("name", ["MobileNetV3Small", "MobileNetV3Large"])
def test_mobilenet_v3_keras3_h5(name: str, tmp_path: Path) -> None:
    """Keras 3 writes hard-swish's ``x + 3.0`` / ``x * (1/6)`` as Add/Multiply entries with
    the constant among the inbound args; the .h5 conversion dropped them (max rel ~0.9)."""
    model = getattr(keras.applications, name)(weights=None, input_shape=(96, 96, 3),
                                              classes=10, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # moving statistics away from 0/1, so errors show
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.8, 1.2, gamma.shape),
                               rng.normal(0, 0.1, beta.shape), rng.normal(0, 0.1, mean.shape),
                               var * rng.uniform(1.0, 1.2, var.shape)])
    path = tmp_path / f"{name}.h5"
    model.save(path)
    x = rng.uniform(0, 255, (1, 96, 96, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(x, training=False))
    assert float(np.std(want)) > 1e-3  # a model whose output depends on the input
    sm = import_keras(path, ConvertOptions())
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run([x])[0]
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())),
                               rtol=0)
