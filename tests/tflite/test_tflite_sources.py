"""Model-scale TFLite routes: keras.applications (weights=None) and a torch LSTM model to
.tflite, verified against the source (fp32 within 1e-4), CNNs with no TRANSPOSE inside."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelconv
from tests.tflite_helpers import inner_transposes

pytestmark = [pytest.mark.models,
              pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                 reason="needs ai-edge-litert")]

APPS = {"MobileNetV2": 96, "ResNet50": 64, "EfficientNetB0": 64, "ConvNeXtTiny": 32,
        "MobileNetV3Small": 64, "MobileNetV3Large": 64}


def _lively(model: Any, seed: int = 0) -> None:
    """He-scaled kernels and random batch-norm statistics: keras.applications' weights=None
    init (glorot depthwise kernels, unit BN) shrinks MobileNetV3's activations to ~1e-11,
    where any conversion would look exact."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            name = (getattr(w, "path", None) or w.name).rsplit("/", 1)[-1].split(":")[0]
            shape = tuple(w.shape)
            if type(layer).__name__ == "BatchNormalization":
                lo, hi = (0.5, 1.5) if name in ("gamma", "moving_variance") else (-0.1, 0.1)
                values.append(rng.uniform(lo, hi, shape))
            elif name == "depthwise_kernel":
                values.append(rng.normal(0, np.sqrt(2.0 / (shape[0] * shape[1])), shape))
            elif name == "kernel" and len(shape) >= 2:
                values.append(rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape))
            else:
                values.append(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        if values:
            layer.set_weights([v.astype("float32") for v in values])


def _vit_style(keras: Any) -> Any:
    """Patch-embedding conv, two pre-norm transformer blocks (MultiHeadAttention, GELU MLP),
    mean-pooled tokens, a classifier head."""
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Reshape((16, 32))(L.Conv2D(32, 8, strides=8, name="patches")(inp))
    for i in range(2):
        h = L.LayerNormalization(epsilon=1e-6, name=f"ln{i}a")(x)
        h = L.MultiHeadAttention(num_heads=4, key_dim=8, name=f"attn{i}")(h, h)
        x = L.Add()([x, h])
        h = L.LayerNormalization(epsilon=1e-6, name=f"ln{i}b")(x)
        h = L.Dense(64, activation="gelu", name=f"mlp{i}a")(h)
        x = L.Add()([x, L.Dense(32, name=f"mlp{i}b")(h)])
    x = L.GlobalAveragePooling1D()(L.LayerNormalization(epsilon=1e-6)(x))
    return keras.Model(inp, L.Dense(10, name="head")(x), name="vit_style")


def _text_lstm(keras: Any) -> Any:
    """Embedding -> LSTM -> bidirectional LSTM -> dense: a text classifier."""
    L = keras.layers
    tok = keras.Input((12,), dtype="int32", name="tokens")
    x = L.Embedding(100, 16)(tok)
    x = L.LSTM(24, return_sequences=True)(x)
    x = L.Bidirectional(L.LSTM(16))(x)
    return keras.Model(tok, L.Dense(3, activation="softmax")(x), name="text_lstm")


@pytest.mark.parametrize("name", sorted(APPS))
def test_keras_application_to_tflite(tmp_path: Path, name: str) -> None:
    keras = pytest.importorskip("keras")
    size = APPS[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classes=10, classifier_activation=None)
    _lively(model)
    src = tmp_path / f"{name}.keras"
    model.save(src)
    out = tmp_path / f"{name}.tflite"
    result = modelconv.convert(src, out, rtol=1e-4)
    assert result.verified and result.report is not None
    assert result.report.outputs[0].max_rel < 1e-4
    if name != "ConvNeXtTiny":  # its LayerNorm/Dense blocks are channels-last by design
        assert inner_transposes(out) == 0


@pytest.mark.parametrize("kind", ["vit", "lstm"])
def test_keras_vit_and_lstm_to_tflite(tmp_path: Path, kind: str) -> None:
    keras = pytest.importorskip("keras")
    from modelconv.exporters.tflite.inspect import inspect_tflite

    keras.utils.set_random_seed(0)
    model = _vit_style(keras) if kind == "vit" else _text_lstm(keras)
    _lively(model)
    src = tmp_path / f"{kind}.keras"
    model.save(src)
    out = tmp_path / f"{kind}.tflite"
    result = modelconv.convert(src, out, rtol=1e-4)
    assert result.verified and result.report is not None
    assert result.report.outputs[0].max_rel < 1e-4
    ops = inspect_tflite(out).op_counts
    if kind == "lstm":
        assert ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 3  # one + a forward/backward pair
    else:
        assert ops.get("BATCH_MATMUL", 0) >= 4 and ops.get("GELU") == 2


def test_torch_lstm_to_tflite_uses_fused_op(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from modelconv.exporters.tflite.inspect import inspect_tflite

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(50, 16)
            self.lstm = torch.nn.LSTM(16, 32, batch_first=True)
            self.head = torch.nn.Linear(32, 5)

        def forward(self, ids: Any) -> Any:
            return self.head(self.lstm(self.embed(ids))[0])

    torch.manual_seed(0)
    model = Tagger().eval()
    out = tmp_path / "tagger.tflite"
    result = modelconv.convert(model, out, example_inputs=(torch.randint(0, 50, (1, 7)),),
                               rtol=1e-4)
    assert result.verified and result.report is not None
    assert result.report.outputs[0].max_rel < 1e-4
    assert inspect_tflite(out).op_counts.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
