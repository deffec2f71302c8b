"""Localisation beyond modelconv's own files: ONNX -> ONNX (Polygraphy's case), ONNX -> TFLite,
and a torch module against a file torch.onnx wrote (no source names: matched by scope and
position), with the intermediate tensors fetched in bounded batches."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv import cli
from modelconv.verification import localize as loc
from modelconv.verification.report import VerificationReport
from tests.paths import ROOT

# torch.onnx-style node names: scopes with dots, as in '/layer1/layer1.0/conv1/Conv'
NAMES = ["/block.0/conv/Conv", "/block.0/act/Relu", "/block.1/conv/Conv", "/block.1/Mul",
         "/block.1/act/Relu", "/head/conv/Conv", "/head/pool/GlobalAveragePool", "/Flatten",
         "/fc/MatMul"]


def cnn(scale_bump: float = 0.0) -> onnx.ModelProto:
    """conv-relu-conv-mul-relu-conv-pool-flatten-matmul; ``scale_bump`` perturbs the Mul."""
    scale = np.linspace(0.5, 1.5, 8, dtype=np.float32).reshape(1, 8, 1, 1)
    scale[0, 3] += scale_bump
    rng = np.random.default_rng(0)
    inits = {k: (rng.standard_normal(shape) * 0.3).astype(np.float32) for k, shape in
             (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 3, 3)), ("w3", (8, 8, 3, 3)), ("fc", (8, 5)))}
    inits["scale"] = scale
    pads = {"pads": [1, 1, 1, 1]}
    ops = [("Conv", ["x", "w1"], pads), ("Relu", [], {}), ("Conv", ["w2"], pads),
           ("Mul", ["scale"], {}), ("Relu", [], {}), ("Conv", ["w3"], pads),
           ("GlobalAveragePool", [], {}), ("Flatten", [], {}), ("MatMul", ["fc"], {})]
    nodes, prev = [], None
    for k, (op, extra, attrs) in enumerate(ops):
        ins = extra if prev is None else [prev, *extra]
        out = "y" if k == len(ops) - 1 else f"{NAMES[k]}_output_0"
        nodes.append(helper.make_node(op, ins, [out], name=NAMES[k], **attrs))
        prev = out
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    good, bad = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(cnn(), good)
    onnx.save(cnn(scale_bump=1.5), bad)
    return good, bad


def test_onnx_vs_onnx_cli_names_the_perturbed_node(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = _pair(tmp_path)
    assert cli.main(["verify", str(good), str(bad), "--localize"]) == 1
    out = capsys.readouterr().out
    assert "first diverging layer: '/block.1/Mul'" in out, out
    assert "localisation failed" not in out and "no comparable" not in out, out


def test_onnx_vs_onnx_clean_passes_every_tensor(tmp_path: Path) -> None:
    good, _ = _pair(tmp_path)
    report = modelconv.verify(good, good, localize=True)
    assert report.passed and report.first_divergence is None
    assert [layer.source_name for layer in report.layers] == NAMES
    assert {layer.matched_by for layer in report.layers} == {"name"}


def test_renamed_tensors_are_matched_by_position(tmp_path: Path) -> None:
    """B's nodes and tensors renamed (a name-only tool such as Polygraphy compares nothing
    but the output): the shape/position match still names the perturbed Mul."""
    good, _ = _pair(tmp_path)
    model = cnn(scale_bump=1.5)
    renamed: dict[str, str] = {}
    for k, node in enumerate(model.graph.node):
        node.name = f"n{k}"
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        for i, name in enumerate(node.output):
            if name != "y":
                renamed[name] = node.output[i] = f"t{k}"
    bad = tmp_path / "renamed.onnx"
    onnx.save(model, bad)
    report = modelconv.verify(good, bad, localize=True)
    assert report.first_divergence is not None, report.notes
    assert report.first_divergence.source_name == "/block.1/Mul"
    assert report.first_divergence.matched_by == "position"
    assert [layer.passed for layer in report.layers[:3]] == [True, True, True]


def test_batches_bound_the_tensors_marked_per_run(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from modelconv.verification.runners import OnnxRuntimeRunner

    good, bad = _pair(tmp_path)
    asked: list[int] = []
    real = OnnxRuntimeRunner.intermediates

    def spy(self: Any, feeds: Any, names: Any) -> Any:
        asked.append(len(names))
        return real(self, feeds, names)

    monkeypatch.setattr(OnnxRuntimeRunner, "intermediates", spy)
    monkeypatch.setattr(loc, "BATCH_TENSORS", 2)
    report = modelconv.verify(good, bad, localize=True)
    assert asked and max(asked) <= 2 and len(asked) >= 2 * 5  # source + target, 5 batches
    assert report.first_divergence is not None
    assert report.first_divergence.source_name == "/block.1/Mul"
    assert len(report.layers) == len(NAMES)


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs litert")
def test_onnx_vs_tflite_names_the_drifting_layer(tmp_path: Path) -> None:
    good, bad = _pair(tmp_path)
    out = tmp_path / "a.tflite"
    assert modelconv.convert(good, out).verified
    report = modelconv.verify(bad, out, localize=True)
    first = report.first_divergence
    assert first is not None, report.notes
    # the Mul is folded into the conv before it; the TFLite op computing its value is named
    assert "/block.1/Mul" in [first.source_name, *first.fused_with], first
    assert report.layers[0].passed and report.layers[0].matched_by == "name"


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs keras to run")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_keras_vs_tf2onnx_style_names_are_matched_by_scope(tmp_path: Path) -> None:
    """A Keras model against an ONNX file named as tf2onnx names nodes
    ('sequential/conv2d_1/Conv'), with no source_name metadata and renamed tensors."""
    src = ROOT / "fixtures" / "keras" / "k3_cnn.keras"
    modelconv.convert(src, tmp_path / "k3.onnx", verify=False)
    model = onnx.load(str(tmp_path / "k3.onnx"))
    outputs, renamed, weight = {o.name for o in model.graph.output}, {}, None
    for k, node in enumerate(model.graph.node):
        layer = {p.key: p.value for p in node.metadata_props}.get("source_name", "input")
        if layer == "conv2d_1" and node.op_type == "Conv":
            weight = node.input[1]
        node.name = f"sequential/{layer}/{node.op_type}"
        del node.metadata_props[:]
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        for i, name in enumerate(node.output):
            if name not in outputs:
                renamed[name] = node.output[i] = f"t{k}"
    for init in model.graph.initializer:
        if init.name == weight:
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] += 3.0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    report = modelconv.verify(src, bad, localize=True)
    first = report.first_divergence
    assert first is not None and first.source_name == "conv2d_1", report.notes
    assert first.matched_by == "scope"
    assert all(layer.passed for layer in report.layers[:first.index])


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs litert")
def test_onnx_source_tflite_weight_fault_names_the_conv(tmp_path: Path) -> None:
    from tests.verification.test_localization import _perturb_tflite_conv

    good, _ = _pair(tmp_path)
    out = tmp_path / "a.tflite"
    assert modelconv.convert(good, out).verified
    _perturb_tflite_conv(out, 1)  # the second CONV_2D: /block.1/conv (Mul, Relu folded in)
    report = modelconv.verify(good, out, localize=True)
    first = report.first_divergence
    assert first is not None, report.notes
    assert "/block.1/conv/Conv" in [first.source_name, *first.fused_with], first
    assert all(layer.passed for layer in report.layers[:first.index])


torch = pytest.importorskip("torch")


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.act1 = torch.nn.ReLU()
        self.block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x: Any) -> Any:
        return self.fc(self.pool(self.block(self.act1(self.bn1(self.conv1(x))))).flatten(1))


def _torch_onnx(tmp_path: Path) -> tuple[Any, tuple[Any, ...], onnx.ModelProto]:
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 1.5)
    args = (torch.randn(1, 3, 16, 16),)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, args, str(path), dynamo=False)  # dynamo needs onnxscript
    return net, args, onnx.load(str(path))


def _summary(report: VerificationReport) -> str:
    return report.summary() + " " + "; ".join(report.notes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_vs_torch_onnx_file_compares_layers(tmp_path: Path) -> None:
    net, args, model = _torch_onnx(tmp_path)
    report = modelconv.verify(net, tmp_path / "net.onnx", example_inputs=args, localize=True)
    assert report.passed and report.first_divergence is None, _summary(report)
    compared = {layer.source_name for layer in report.layers}
    assert {"act1", "block.0", "block.1", "pool", "fc"} <= compared, compared
    # perturb the block's conv weight: the first diverging layer is that conv
    conv = next(n for n in model.graph.node if n.name == "/block/block.0/Conv")
    for init in model.graph.initializer:
        if init.name == conv.input[1]:
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] += 3.0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    report = modelconv.verify(net, bad, example_inputs=args, localize=True)
    assert report.first_divergence is not None, _summary(report)
    assert report.first_divergence.source_name in ("block.0", "block"), _summary(report)


def test_scope_path_reads_torch_onnx_node_names() -> None:
    assert loc.scope_path("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert loc.scope_path("/conv1/Conv") == "conv1"
    assert loc.scope_path("/Flatten") is None and loc.scope_path("Conv_3") is None


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="needs litert")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_int8_localisation_reports_each_layers_quantization_error_worst_first(
        tmp_path: Path) -> None:
    from modelconv.verification.html import render_html

    good, _ = _pair(tmp_path)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(1).standard_normal((8, 1, 3, 16, 16)).astype(
        np.float32))
    out = tmp_path / "a_int8.tflite"
    modelconv.convert(good, out, quantize="int8", calibration=str(calib), verify=False)
    report = modelconv.verify(good, out, quantize="int8", localize=True)
    assert report.passed, report.to_table()
    compared = [layer.source_name for layer in report.layers]
    assert "/block.0/act/Relu" in compared and "/fc/MatMul" in compared, compared
    worst = report.worst_layers()
    rels = [layer.max_rel for layer in worst]
    assert rels == sorted(rels, reverse=True) and rels[0] > 1e-4  # int8 error, not fp32 noise
    assert all(np.isfinite(layer.cosine) for layer in worst)
    table = report.to_table()
    assert "per-layer int8 quantization error" in table
    assert table.index(worst[0].source_name) < table.index(worst[-1].source_name)
    data = report.to_dict()
    assert [w["source_name"] for w in data["worst_layers"]] == [w.source_name for w in worst][:10]
    page = render_html(report)
    assert 'id="worst-layers"' in page and worst[0].source_name in page
    # the same layers in the fp32 file are exact: the error is the quantization's
    fp32 = tmp_path / "a.tflite"
    modelconv.convert(good, fp32, verify=False)
    exact = modelconv.verify(good, fp32, localize=True)
    assert max(layer.max_rel for layer in exact.layers) < 1e-4 < rels[0]
