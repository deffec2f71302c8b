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
