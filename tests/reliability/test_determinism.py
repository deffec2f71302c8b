"""Every route converts the same input to byte-identical output files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import modelconv
from tests.paths import ROOT

KERAS = ROOT / "fixtures" / "keras"
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TF = importlib.util.find_spec("tensorflow") is not None and \
    importlib.util.find_spec("tf2onnx") is not None
HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None


def _twice(tmp_path: Path, src: Any, suffix: str, **options: Any) -> tuple[bytes, bytes]:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}{suffix}"
        modelconv.convert(src, out, verify=False, **options)
        outs.append(out.read_bytes())
    return outs[0], outs[1]


def _net() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5),
    ).eval()


def _torch_sources(tmp_path: Path) -> dict[str, tuple[Any, dict[str, Any]]]:
    import torch
    from safetensors.torch import save_file

    net = _net()
    x = torch.randn(1, 3, 8, 8)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    torch.jit.trace(net, x).save(str(tmp_path / "ts.pt"))
    torch.export.save(torch.export.export(net, (x,)), str(tmp_path / "m.pt2"))
    shapes = {"input_shapes": [(1, 3, 8, 8)]}
    return {
        "module": (net, {"example_inputs": (x,)}),
        "state_dict": (tmp_path / "w.pt", {"model": _net(), **shapes}),
        "safetensors": (tmp_path / "w.safetensors", {"model": _net(), **shapes}),
        "torchscript": (tmp_path / "ts.pt", {"trust_code": True, **shapes}),
        "pt2": (tmp_path / "m.pt2", {}),
    }


@pytest.mark.parametrize("fixture", ["k2_cnn.h5", "k3_cnn.h5", "k3_cnn.keras",
                                     "k3_multi.keras", "k2_text.h5"])
def test_keras_to_onnx(tmp_path: Path, fixture: str) -> None:
    a, b = _twice(tmp_path, KERAS / fixture, ".onnx")
    assert a == b


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("kind", ["module", "state_dict", "safetensors", "torchscript", "pt2"])
def test_torch_to_onnx(tmp_path: Path, kind: str) -> None:
    src, options = _torch_sources(tmp_path)[kind]
    a, b = _twice(tmp_path, src, ".onnx", **options)
    assert a == b


@pytest.mark.skipif(not HAS_TF, reason="needs tensorflow and tf2onnx")
def test_savedmodel_to_onnx(tmp_path: Path) -> None:
    a, b = _twice(tmp_path, KERAS / "savedmodel", ".onnx")
    assert a == b


@pytest.mark.skipif(not HAS_LITERT, reason="needs ai-edge-litert")
@pytest.mark.parametrize("fixture", ["k3_cnn.keras", "k2_cnn.h5"])
@pytest.mark.parametrize("mode", [{}, {"fp16": True}, {"quantize": "dynamic"}])
def test_keras_to_tflite(tmp_path: Path, fixture: str, mode: dict[str, Any]) -> None:
    a, b = _twice(tmp_path, KERAS / fixture, ".tflite", **mode)
    assert a == b


@pytest.mark.skipif(not (HAS_LITERT and HAS_TORCH), reason="needs ai-edge-litert and torch")
def test_torch_to_tflite(tmp_path: Path) -> None:
    src, options = _torch_sources(tmp_path)["module"]
    a, b = _twice(tmp_path, src, ".tflite", **options)
    assert a == b


@pytest.mark.skipif(not HAS_LITERT, reason="needs ai-edge-litert")
def test_onnx_to_tflite(tmp_path: Path) -> None:
    a, b = _twice(tmp_path, ROOT / "fixtures" / "onnx" / "small_cnn.onnx", ".tflite")
    assert a == b


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_folded_weights_leave_no_dead_copies(tmp_path: Path) -> None:
    """A folded weight Transpose must not keep the original weight in the file."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 256)).eval()
    out = tmp_path / "m.onnx"
    modelconv.convert(net, out, example_inputs=(torch.randn(1, 256),))
    params = sum(p.numel() for p in net.parameters()) * 4
    assert out.stat().st_size < 1.1 * params
