"""Regressions found by the benchmarks and the verifier's localisation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv.testing import assert_equivalent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="needs ai-edge-litert")


def test_tanh_after_mul_is_not_fused_away(tmp_path: Path) -> None:
    """TFLite kernels ignore a fused TANH: Mul+Tanh must stay two ops."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["t"]), helper.make_node("Tanh", ["t"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(np.array(3.0, np.float32), "k")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    modelconv.convert(src, tmp_path / "m.tflite", verify=False)
    report = assert_equivalent(src, tmp_path / "m.tflite")
    assert report.outputs[0].max_abs < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs transformers")
def test_gpt2_tanh_gelu_to_tflite(tmp_path: Path) -> None:
    import torch
    import transformers

    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                  n_positions=32, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    lm = transformers.GPT2LMHeadModel(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lm(input_ids=ids, use_cache=False).logits

    model = Logits().eval()
    ids = torch.randint(0, 100, (1, 8))
    result = modelconv.convert(model, tmp_path / "g.tflite", example_inputs=(ids,))
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4


def _op_counts(data: bytes) -> dict[str, int]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    counts: dict[str, int] = {}
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        counts[name] = counts.get(name, 0) + 1
    return counts


def _fused(data: bytes, code_name: str) -> list[int]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    want = getattr(schema.BuiltinOperator, code_name)
    return [op.builtinOptions.fusedActivationFunction for op in model.subgraphs[0].operators
            if max(model.operatorCodes[op.opcodeIndex].builtinCode,
                   model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == want]


def test_grouped_conv_relu_is_one_conv2d_with_relu() -> None:
    """Grouped Conv + Relu: one CONV_2D (groups from the filter shape) carrying RELU; no
    SPLIT / CONCATENATION (LiteRT refused the RELU fused into CONCATENATION at prepare)."""
    import onnx_ir as ir
    import onnxruntime as ort

    from modelconv.exporters.tflite import convert_to_tflite
    from tests.litert_isolated import IsolatedLiteRT

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 6, 6])],
        [numpy_helper.from_array(rng.standard_normal((16, 2, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    data = convert_to_tflite(ir.serde.deserialize_model(model))
    assert _op_counts(data) == {"TRANSPOSE": 2, "CONV_2D": 1}  # NCHW I/O kept
    assert _fused(data, "CONV_2D") == [1]  # ActivationFunctionType.RELU
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    worker = IsolatedLiteRT()
    try:
        got = worker.run(data, {"x": x})
    finally:
        worker.close()
    assert got.status == "ok", got.message
    np.testing.assert_allclose(got.outputs[0], ref, rtol=1e-4, atol=1e-4)


def test_activation_never_fused_where_the_kernel_ignores_it() -> None:
    """emit() keeps a fused activation only on ops whose kernel applies it: CONCATENATION
    (Prepare requires NONE) and TANH on ADD (the kernel clamps for the RELU family only) get
    a separate activation op."""
    from ai_edge_litert import schema_py_generated as schema

    from modelconv.exporters.tflite.graph import LoweringContext, TflGraph

    g = TflGraph()
    ctx = LoweringContext(g)
    a, b = (g.add_tensor(n, np.float32, [2, 3]) for n in ("a", "b"))
    y, z, r = (g.add_tensor(n, np.float32, s) for n, s in (("y", [2, 6]), ("z", [2, 3]),
                                                             ("r", [2, 3])))
    cat = schema.ConcatenationOptionsT()
    cat.axis, cat.fusedActivationFunction = 1, schema.ActivationFunctionType.RELU
    ctx.emit("CONCATENATION", [a, b], [y], cat)
    add = schema.AddOptionsT()
    add.fusedActivationFunction = schema.ActivationFunctionType.TANH
    ctx.emit("ADD", [a, b], [z], add)
    relu = schema.AddOptionsT()
    relu.fusedActivationFunction = schema.ActivationFunctionType.RELU6
    ctx.emit("ADD", [a, b], [r], relu)
    lstm = schema.UnidirectionalSequenceLSTMOptionsT()
    lstm.fusedActivationFunction = schema.ActivationFunctionType.TANH  # the cell activation
    ctx.emit("UNIDIRECTIONAL_SEQUENCE_LSTM", [a], [z], lstm)
    assert [(op.code, op.outputs[0] in (y, z, r)) for op in g.ops] == [
        ("CONCATENATION", False), ("RELU", True), ("ADD", False), ("TANH", True), ("ADD", True),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", True)]
    assert [getattr(op.options, "fusedActivationFunction", 0) for op in g.ops] == [
        0, 0, 0, 0, 3, 4]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_resnext_block_few_ops(tmp_path: Path) -> None:
    """A ResNeXt-style bottleneck (grouped 3x3) converts, verifies, and has one CONV_2D per
    torch Conv2d (it had SPLIT + 32 CONV_2D + CONCATENATION per grouped conv)."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.reduce = torch.nn.Conv2d(64, 64, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(64)
            self.grouped = torch.nn.Conv2d(64, 64, 3, padding=1, groups=32, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(64)
            self.expand = torch.nn.Conv2d(64, 64, 1, bias=False)
            self.bn3 = torch.nn.BatchNorm2d(64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.reduce(x)))
            y = torch.relu(self.bn2(self.grouped(y)))
            return torch.relu(self.bn3(self.expand(y)) + x)

    torch.manual_seed(0)
    block = Block().eval()
    for bn in (block.bn1, block.bn2, block.bn3):
        torch.nn.init.uniform_(bn.running_var, 0.5, 1.5)
        torch.nn.init.normal_(bn.running_mean, 0, 0.1)
    dst = tmp_path / "block.tflite"
    result = modelconv.convert(block, dst, example_inputs=(torch.randn(1, 64, 8, 8),))
    assert result.verified
    counts = _op_counts(dst.read_bytes())
    assert counts.get("CONV_2D") == 3 and "SPLIT" not in counts and "CONCATENATION" not in counts
    assert sum(counts.values()) <= 6, counts
