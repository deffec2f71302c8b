"""Model-scale TFLite routes: keras.applications (weights=None) and a torch LSTM model to
.tflite, verified against the source (fp32 within 1e-4), CNNs with no TRANSPOSE inside."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import modelconv
from tests.tflite_helpers import inner_transposes

pytestmark = [pytest.mark.models,
              pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                 reason="needs ai-edge-litert")]

APPS = {"MobileNetV2": 96, "ResNet50": 64, "EfficientNetB0": 64, "ConvNeXtTiny": 32}


@pytest.mark.parametrize("name", sorted(APPS))
def test_keras_application_to_tflite(tmp_path: Path, name: str) -> None:
    keras = pytest.importorskip("keras")
    size = APPS[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classes=10)
    src = tmp_path / f"{name}.keras"
    model.save(src)
    out = tmp_path / f"{name}.tflite"
    result = modelconv.convert(src, out, rtol=1e-4)
    assert result.verified and result.report is not None
    assert result.report.outputs[0].max_rel < 1e-4
    if name != "ConvNeXtTiny":  # its LayerNorm/Dense blocks are channels-last by design
        assert inner_transposes(out) == 0


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
