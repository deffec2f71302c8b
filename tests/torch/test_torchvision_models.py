"""torchvision models built from code with random weights (weights=None), converted to ONNX and
TFLite and verified against torch eager. Needs torchvision (CI installs the torch 2.14.1 /
torchvision 0.29.1 pair); skipped without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import modelconv
from tests.tflite_helpers import inner_transposes

torchvision = pytest.importorskip("torchvision")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.models

#: name -> (constructor kwargs, input side)
ONNX_MODELS: dict[str, tuple[dict[str, Any], int]] = {
    "resnet18": ({}, 128),
    "mobilenet_v2": ({}, 128),
    "mobilenet_v3_small": ({}, 128),
    "efficientnet_b0": ({}, 128),
    "densenet121": ({}, 96),
    "convnext_tiny": ({}, 96),
    "regnet_y_400mf": ({}, 128),
    "squeezenet1_0": ({}, 128),
    "shufflenet_v2_x0_5": ({}, 128),
    "inception_v3": ({"aux_logits": False, "init_weights": True}, 160),
    "vit_b_16": ({"image_size": 64}, 64),
}
TFLITE_MODELS = ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "vit_b_16"]


def _model(name: str) -> tuple[Any, tuple[Any, ...]]:
    kwargs, side = ONNX_MODELS[name]
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model, (torch.randn(1, 3, side, side),)


@pytest.mark.parametrize("name", list(ONNX_MODELS))
def test_torchvision_to_onnx(tmp_path: Path, name: str) -> None:
    model, args = _model(name)
    result = modelconv.convert(model, tmp_path / f"{name}.onnx", example_inputs=args, rtol=1e-4)
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs litert")
@pytest.mark.parametrize("name", TFLITE_MODELS)
def test_torchvision_to_tflite(tmp_path: Path, name: str) -> None:
    from modelconv.exporters.tflite.inspect import inspect_tflite

    model, args = _model(name)
    out = tmp_path / f"{name}.tflite"
    result = modelconv.convert(model, out, example_inputs=args, rtol=1e-4)
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4
    if name != "vit_b_16":  # CNNs: the layout pass leaves no TRANSPOSE inside
        assert inner_transposes(out) == 0
        nhwc = tmp_path / f"{name}_nhwc.tflite"
        modelconv.convert(model, nhwc, example_inputs=args, nhwc_io=True, verify=False)
        assert "TRANSPOSE" not in inspect_tflite(nhwc).op_counts

