"""Fault injection: a perturbed weight or a changed attribute in the converted file makes
verification fail and name the source layer that owns it (torch -> ONNX, Keras -> ONNX,
torch -> TFLite); a clean conversion passes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import modelconv
from modelconv.verification.report import VerificationReport
from tests.paths import ROOT

torch = pytest.importorskip("torch")
KERAS = ROOT / "fixtures" / "keras"


class Net(torch.nn.Module):
    """conv-bn-relu, conv-leakyrelu, pool, fc: every layer a named module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.act1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.act2 = torch.nn.LeakyReLU(0.1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x: Any) -> Any:
        x = self.act2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


def _net() -> tuple[Any, tuple[Any, ...]]:
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():  # non-trivial BN statistics
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 1.5)
    return net, (torch.randn(1, 3, 16, 16),)


def _onnx_node(model: onnx.ModelProto, source: str, op_type: str) -> onnx.NodeProto:
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if meta.get("source_name") == source and node.op_type == op_type:
            return node
    raise AssertionError(f"no {op_type} node from {source}")


def _perturb_initializer(model: onnx.ModelProto, name: str) -> None:
    for init in model.graph.initializer:
        if init.name == name:
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] += 2.0 + abs(float(arr.flat[0])) * 4
            init.CopyFrom(numpy_helper.from_array(arr, name))
            return
    raise AssertionError(f"no initializer {name}")


def _first(report: VerificationReport) -> str:
    assert not report.passed
    assert report.first_divergence is not None, report.notes
    return report.first_divergence.source_name


def test_torch_onnx_clean_passes_and_weight_fault_is_localised(tmp_path: Path) -> None:
    net, args = _net()
    out = tmp_path / "net.onnx"
    assert modelconv.convert(net, out, example_inputs=args).verified
    model = onnx.load(str(out))
    _perturb_initializer(model, _onnx_node(model, "conv2", "Conv").input[1])
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    assert _first(modelconv.verify(net, bad, example_inputs=args)) == "conv2"


def test_torch_onnx_attribute_fault_is_localised(tmp_path: Path) -> None:
    net, args = _net()
    out = tmp_path / "net.onnx"
    modelconv.convert(net, out, example_inputs=args, verify=False)
    model = onnx.load(str(out))
    for attr in _onnx_node(model, "act2", "LeakyRelu").attribute:
        if attr.name == "alpha":
            attr.f = 0.9
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    assert _first(modelconv.verify(net, bad, example_inputs=args)) == "act2"


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs keras to run")
def test_keras_onnx_weight_fault_is_localised(tmp_path: Path) -> None:
    src = KERAS / "k3_cnn.keras"
    out = tmp_path / "cnn.onnx"
    assert modelconv.convert(src, out).verified
    model = onnx.load(str(out))
    _perturb_initializer(model, _onnx_node(model, "conv2d_1", "Conv").input[1])
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    assert _first(modelconv.verify(src, bad)) == "conv2d_1"


def _perturb_tflite_conv(path: Path, nth: int) -> str:
    """Perturb the weights of the ``nth`` CONV_2D op; returns its output tensor's name."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = model.subgraphs[0]
    conv_code = schema.BuiltinOperator.CONV_2D
    convs = [op for op in graph.operators
             if max(model.operatorCodes[op.opcodeIndex].builtinCode,
                    model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == conv_code]
    op = convs[nth]
    weight = graph.tensors[op.inputs[1]]
    data = np.frombuffer(bytes(bytearray(model.buffers[weight.buffer].data)), np.float32).copy()
    data[0] += 2.0 + abs(float(data[0])) * 4
    model.buffers[weight.buffer].data = np.frombuffer(data.tobytes(), np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    name = graph.tensors[op.outputs[0]].name
    return name.decode() if isinstance(name, bytes) else name


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs litert")
def test_torch_tflite_weight_fault_is_localised(tmp_path: Path) -> None:
    net, args = _net()
    out = tmp_path / "net.tflite"
    assert modelconv.convert(net, out, example_inputs=args).verified
    _perturb_tflite_conv(out, 1)  # the second conv in execution order: conv2
    report = modelconv.verify(net, out, example_inputs=args)
    first = _first(report)
    assert report.first_divergence is not None
    assert "conv2" in [first, *report.first_divergence.fused_with]
