"""QDQ ONNX models (onnxruntime static quantization) -> int8 TFLite with the model's own scales."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv.errors import OptionsError, UnsupportedOpsError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="needs ai-edge-litert")

_INT8, _FLOAT32 = 9, 0  # TensorType codes


def _cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv(3->8, pads) -> Relu -> Conv(8->8) -> Add(skip) -> MaxPool -> GAP -> Flatten -> Gemm."""
    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("w1", w(8, 3, 3, 3)), ("b1", w(8)), ("w2", w(8, 8, 3, 3)), ("b2", w(8)),
        ("wf", w(10, 8)), ("bf", w(10)), ("shape", np.array([1, 8], np.int64)))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["s"]),
        helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Reshape", ["g", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _mlp(rng: np.random.Generator) -> onnx.ModelProto:
    """MatMul -> Add -> Relu -> MatMul -> Add on [4, 32]."""
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32), n)
             for n, s in (("w1", (32, 64)), ("b1", (64,)), ("w2", (64, 16)), ("b2", (16,)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["m2"]),
             helper.make_node("Add", ["m2", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_only(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv(3->8) -> Relu -> Conv(8->4): ops onnxruntime's QOperator format writes as
    QLinearConv (no com.microsoft ops)."""
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (4, 8, 1, 1)), ("b2", (4,)))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "convs",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                             [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def quantize_static(model: onnx.ModelProto, tmp: Path, *, activations: str = "int8",
                    per_channel: bool = True, samples: int = 4, qoperator: bool = False) -> Path:
    """``model`` quantized by onnxruntime (QDQ, MinMax over seeded random samples)."""
    from onnxruntime import quantization as q

    src, dst = tmp / "float.onnx", tmp / "qdq.onnx"
    onnx.save(model, src)
    x = model.graph.input[0]
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    feeds = iter([{x.name: rng.standard_normal(shape).astype(np.float32)}
                  for _ in range(samples)])

    class Reader(q.CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    act = q.QuantType.QInt8 if activations == "int8" else q.QuantType.QUInt8
    fmt = q.QuantFormat.QOperator if qoperator else q.QuantFormat.QDQ
    q.quantize_static(src, dst, Reader(), quant_format=fmt, per_channel=per_channel,
                      activation_type=act, weight_type=q.QuantType.QInt8)
    return dst


def tflite_ops(path: Path) -> Counter[tuple[str, int]]:
    """(builtin name, type of input 0) -> count, for the ops of a .tflite file."""
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.subgraphs[0]
    return Counter((names[model.operatorCodes[op.opcodeIndex].builtinCode],
                    int(sub.tensors[op.inputs[0]].type)) for op in sub.operators)


def _convert_and_verify(src: Path, tmp: Path) -> tuple[Counter[tuple[str, int]], float]:
    dst = tmp / "out.tflite"
    modelconv.convert(src, dst, verify=False)
    report = modelconv.verify(src, dst)
    assert report.passed, report
    assert report.mode == "int8"
    return tflite_ops(dst), min(o.cosine for o in report.outputs)


def test_qdq_cnn_runs_int8_kernels(tmp_path: Path) -> None:
    src = quantize_static(_cnn(np.random.default_rng(1)), tmp_path)
    ops, cosine = _convert_and_verify(src, tmp_path)
    assert cosine >= 0.99
    assert ops[("CONV_2D", _INT8)] == 2 and ops[("CONV_2D", _FLOAT32)] == 0
    assert ops[("ADD", _INT8)] == 1 and ops[("MAX_POOL_2D", _INT8)] == 1
    assert ops[("FULLY_CONNECTED", _INT8)] == 1
    assert ops[("QUANTIZE", _FLOAT32)] == 1 and ops[("DEQUANTIZE", _INT8)] == 1  # the I/O only


def test_qdq_scales_are_the_models(tmp_path: Path) -> None:
    """The int8 filter holds the QDQ model's integers and per-channel scales, unchanged."""
    from ai_edge_litert import schema_py_generated as s

    src = quantize_static(_cnn(np.random.default_rng(1)), tmp_path)
    qdq = onnx.load(src)
    inits = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    dq = next(n for n in qdq.graph.node if n.op_type == "DequantizeLinear"
              and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4
              and inits[n.input[0]].shape[1] == 3)
    want_q, want_s = inits[dq.input[0]], inits[dq.input[1]]
    dst = tmp_path / "out.tflite"
    modelconv.convert(src, dst, verify=False)
    model = s.ModelT.InitFromPackedBuf(dst.read_bytes(), 0)
    sub = model.subgraphs[0]
    filters = [sub.tensors[op.inputs[1]] for op in sub.operators
               if model.operatorCodes[op.opcodeIndex].builtinCode == s.BuiltinOperator.CONV_2D]
    first = next(t for t in filters if list(t.shape) == [8, 3, 3, 3])
    data = np.frombuffer(bytes(model.buffers[first.buffer].data), np.int8).reshape(8, 3, 3, 3)
    np.testing.assert_array_equal(data, want_q.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(first.quantization.scale, want_s, rtol=1e-7)
    assert first.quantization.quantizedDimension == 0
    assert not np.any(first.quantization.zeroPoint)


def test_qdq_uint8_activations_become_int8(tmp_path: Path) -> None:
    """onnxruntime's uint8 activations: the same real values as int8 with zp - 128."""
    src = quantize_static(_cnn(np.random.default_rng(2)), tmp_path, activations="uint8")
    ops, cosine = _convert_and_verify(src, tmp_path)
    assert cosine >= 0.99
    assert ops[("CONV_2D", _INT8)] == 2 and ops[("FULLY_CONNECTED", _INT8)] == 1


def test_qdq_mlp_per_tensor(tmp_path: Path) -> None:
    src = quantize_static(_mlp(np.random.default_rng(3)), tmp_path, per_channel=False)
    ops, cosine = _convert_and_verify(src, tmp_path)
    assert cosine >= 0.99
    assert ops[("FULLY_CONNECTED", _INT8)] == 2 and ops[("FULLY_CONNECTED", _FLOAT32)] == 0


def test_qoperator_qlinearconv_runs_int8(tmp_path: Path) -> None:
    """QLinearConv (onnxruntime's QOperator format) -> the same int8 CONV_2D kernels."""
    src = quantize_static(_conv_only(np.random.default_rng(5)), tmp_path, qoperator=True)
    assert "QLinearConv" in {n.op_type for n in onnx.load(src).graph.node}
    ops, cosine = _convert_and_verify(src, tmp_path)
    assert cosine >= 0.99
    assert ops[("CONV_2D", _INT8)] == 2 and ops[("CONV_2D", _FLOAT32)] == 0


def test_quantize_dynamic_mlp_uses_hybrid_kernels(tmp_path: Path) -> None:
    """quantize_dynamic (DynamicQuantizeLinear + MatMulInteger): FULLY_CONNECTED with the
    model's int8 weights and run-time (asymmetric) activation quantization."""
    from ai_edge_litert import schema_py_generated as s
    from onnxruntime import quantization as q

    onnx.save(_mlp(np.random.default_rng(6)), tmp_path / "f.onnx")
    src = tmp_path / "dyn.onnx"
    q.quantize_dynamic(tmp_path / "f.onnx", src, weight_type=q.QuantType.QInt8)
    dst = tmp_path / "dyn.tflite"
    modelconv.convert(src, dst, verify=False)
    report = modelconv.verify(src, dst)
    assert report.passed and report.mode == "dynamic", report
    model = s.ModelT.InitFromPackedBuf(dst.read_bytes(), 0)
    sub = model.subgraphs[0]
    fcs = [op for op in sub.operators if model.operatorCodes[op.opcodeIndex].builtinCode
           == s.BuiltinOperator.FULLY_CONNECTED]
    assert len(fcs) == 2 and len(sub.operators) == 2
    assert all(sub.tensors[op.inputs[1]].type == _INT8 and sub.tensors[op.inputs[0]].type ==
               _FLOAT32 and op.builtinOptions.asymmetricQuantizeInputs for op in fcs)


def test_weight_only_qdq_keeps_int8_weights(tmp_path: Path) -> None:
    """DequantizeLinear on weights only: float compute on the exact weights, stored int8."""
    w = np.random.default_rng(4).integers(-127, 128, (16, 32)).astype(np.int8)
    scale = np.full(16, 0.01, np.float32)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
         helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])],
        [numpy_helper.from_array(w, "wq"), numpy_helper.from_array(scale, "ws"),
         numpy_helper.from_array(np.zeros(16, np.int8), "wz")])
    src = tmp_path / "wq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    dst = tmp_path / "wq.tflite"
    modelconv.convert(src, dst, verify=False)
    report = modelconv.verify(src, dst)
    assert report.passed and report.outputs[0].max_abs < 1e-4
    ops = tflite_ops(dst)
    assert ops[("DEQUANTIZE", _INT8)] == 1 and ops[("FULLY_CONNECTED", _FLOAT32)] == 1


def test_quantize_option_on_a_qdq_model_is_refused(tmp_path: Path) -> None:
    src = quantize_static(_mlp(np.random.default_rng(3)), tmp_path)
    with pytest.raises(OptionsError, match="already quantized"):
        modelconv.convert(src, tmp_path / "x.tflite", verify=False, fp16=True)


def test_float8_dequantize_is_refused_by_name(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["x", "s"], ["y"], name="dq8")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT8E4M3FN, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "s")])
    src = tmp_path / "f8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), src)
    with pytest.raises(UnsupportedOpsError, match=r"DequantizeLinear.*quantized type"):
        modelconv.convert(src, tmp_path / "f8.tflite", verify=False)


@pytest.mark.models
@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="needs torchvision")
def test_qdq_resnet18(tmp_path: Path) -> None:
    """torchvision resnet18(weights=None), ORT static per-channel QDQ -> int8 TFLite."""
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    src = tmp_path / "r18.onnx"
    torch.onnx.export(net, (torch.randn(1, 3, 224, 224),), str(src), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["y"])
    qdq = quantize_static(onnx.load(src), tmp_path, samples=3)
    ops, cosine = _convert_and_verify(qdq, tmp_path)
    assert cosine >= 0.99
    assert ops[("CONV_2D", _INT8)] == 20 and ops[("CONV_2D", _FLOAT32)] == 0
    assert ops[("ADD", _INT8)] == 8 and ops[("FULLY_CONNECTED", _INT8)] == 1


def test_runtime_scale_quantize_matches_onnx(tmp_path: Path) -> None:
    """QuantizeLinear / DequantizeLinear with run-time scales: float ops, ONNX's rounding."""
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("z", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])])
    src = tmp_path / "rt.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    dst = tmp_path / "rt.tflite"
    modelconv.convert(src, dst, verify=False)
    from modelconv.verification.runners_litert import LiteRTRunner

    x = np.array([-3.0, -2.5, -0.5, 0.5, 1.5, 2.5, 300.0, 7.25], np.float32)
    s, z = np.array(1.0, np.float32), np.array(10, np.uint8)
    got = LiteRTRunner(dst).run([x, s, z])[0]
    want = (np.clip(np.rint(x / s) + 10, 0, 255) - 10) * s  # round half to even
    np.testing.assert_array_equal(got, want)


def _qdq(x: str, scale: float, zero: int, name: str) -> tuple[list[onnx.NodeProto],
                                                              list[onnx.TensorProto]]:
    inits = [numpy_helper.from_array(np.array(scale, np.float32), f"{name}_s"),
             numpy_helper.from_array(np.array(zero, np.int8), f"{name}_z")]
    nodes = [helper.make_node("QuantizeLinear", [x, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
             helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                              [name])]
    return nodes, inits


def test_two_activation_matmul_int8_and_softmax_float_island(tmp_path: Path) -> None:
    """MatMul of two quantized activations (non-zero zero points) -> int8 BATCH_MATMUL within
    one output step of onnxruntime; Softmax whose output scale is not LiteRT's fixed 1/256
    runs in float between DEQUANTIZE/QUANTIZE, with a warning naming it."""
    parts = [_qdq("a", 0.02, 5, "da"), _qdq("b", 0.03, -7, "db"), _qdq("m", 0.05, 3, "dm"),
             _qdq("p", 1 / 255, -128, "dp")]
    nodes = [n for p in parts[:2] for n in p[0]] + [helper.make_node("MatMul", ["da", "db"],
                                                                     ["m"])]
    nodes += parts[2][0] + [helper.make_node("Softmax", ["dm"], ["p"], axis=-1)] + parts[3][0]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 4, 8]),
                     helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 8, 6])],
        [helper.make_tensor_value_info("dm", TensorProto.FLOAT, [2, 4, 6]),
         helper.make_tensor_value_info("dp", TensorProto.FLOAT, [2, 4, 6])],
        [t for p in parts for t in p[1]])
    src = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    dst = tmp_path / "mm.tflite"
    with pytest.warns(UserWarning, match=r"run in float.*SOFTMAX"):
        modelconv.convert(src, dst, verify=False)
    ops = tflite_ops(dst)
    assert ops[("BATCH_MATMUL", _INT8)] == 1 and ops[("SOFTMAX", _FLOAT32)] == 1
    report = modelconv.verify(src, dst)
    assert report.passed
    assert report.outputs[0].max_abs <= 0.05 + 1e-6  # one step of dm's grid
    assert report.outputs[1].max_abs <= 1 / 255 + 1e-6


def test_uint16_qdq_is_computed_exactly_with_float_ops(tmp_path: Path) -> None:
    """uint16 (no LiteRT QUANTIZE kernel): Q/DQ with constant parameters as float ops + CAST."""
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6]),
         helper.make_tensor_value_info("q", TensorProto.UINT16, [6])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "s"),
         numpy_helper.from_array(np.array(30000, np.uint16), "z")])
    src = tmp_path / "u16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), src)
    dst = tmp_path / "u16.tflite"
    modelconv.convert(src, dst, verify=False)
    from modelconv.verification.runners_litert import LiteRTRunner

    x = np.array([-20000.0, -1.25, 0.25, 0.75, 3.0, 20000.0], np.float32)
    y, q = LiteRTRunner(dst).run([x])
    want_q = np.clip(np.rint(x / 0.5) + 30000, 0, 65535)
    np.testing.assert_array_equal(q, want_q.astype(np.uint16))
    np.testing.assert_array_equal(y, (want_q - 30000) * 0.5)


def test_quantize_dynamic_cnn_uses_hybrid_conv(tmp_path: Path) -> None:
    """quantize_dynamic on convolutions (DynamicQuantizeLinear + ConvInteger, per channel):
    hybrid CONV_2D with the model's int8 filters."""
    from onnxruntime import quantization as q

    onnx.save(_cnn(np.random.default_rng(7)), tmp_path / "f.onnx")
    src = tmp_path / "dyn.onnx"
    q.quantize_dynamic(tmp_path / "f.onnx", src, weight_type=q.QuantType.QInt8, per_channel=True)
    assert "ConvInteger" in {n.op_type for n in onnx.load(src).graph.node}
    dst = tmp_path / "dyn.tflite"
    modelconv.convert(src, dst, verify=False)
    report = modelconv.verify(src, dst)
    assert report.passed and report.mode == "dynamic", report
    weights = _weight_types(dst)
    assert weights["CONV_2D"] == [_INT8, _INT8] and weights["FULLY_CONNECTED"] == [_INT8]


def test_asymmetric_uint8_weights_stay_exact_in_float(tmp_path: Path) -> None:
    """uint8 weights with non-zero zero points (no LiteRT int8 filter takes them): the ops run
    in float on DEQUANTIZE'd int8 weights (zero point - 128), exactly the QDQ model's values."""
    from onnxruntime import quantization as q

    onnx.save(_cnn(np.random.default_rng(8)), tmp_path / "f.onnx")
    rng = np.random.default_rng(0)
    feeds = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                  for _ in range(3)])

    class Reader(q.CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    src = tmp_path / "u8w.onnx"
    q.quantize_static(tmp_path / "f.onnx", src, Reader(), quant_format=q.QuantFormat.QDQ,
                      per_channel=False, activation_type=q.QuantType.QUInt8,
                      weight_type=q.QuantType.QUInt8)
    dst = tmp_path / "u8w.tflite"
    with pytest.warns(UserWarning, match="run in float"):
        modelconv.convert(src, dst, verify=False)
    report = modelconv.verify(src, dst)
    assert report.passed and report.outputs[0].max_abs < 1e-5
    ops = tflite_ops(dst)
    assert ops[("CONV_2D", _FLOAT32)] == 2 and ops[("DEQUANTIZE", _INT8)] >= 3 + 1


def _weight_types(path: Path) -> dict[str, list[int]]:
    """builtin name -> the tensor types of its weight inputs (CONV_2D / FULLY_CONNECTED)."""
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    sub = model.subgraphs[0]
    found: dict[str, list[int]] = {}
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex].builtinCode
        for name in ("CONV_2D", "FULLY_CONNECTED"):
            if code == getattr(s.BuiltinOperator, name):
                found.setdefault(name, []).append(int(sub.tensors[op.inputs[1]].type))
    return found


def test_int8_tensors_carry_the_dequantized_names(tmp_path: Path) -> None:
    """Each int8 activation is named after the source's DequantizeLinear output (the rounded
    value it holds), so --localize compares like with like, layer by layer."""
    src = quantize_static(_cnn(np.random.default_rng(1)), tmp_path)
    dst = tmp_path / "out.tflite"
    modelconv.convert(src, dst, verify=False)
    report = modelconv.verify(src, dst, localize=True)
    by_name = {layer.source_name: layer for layer in report.layers}
    for name in ("r1_DequantizeLinear", "c2_DequantizeLinear", "s_DequantizeLinear",
                 "p_DequantizeLinear", "g_DequantizeLinear"):
        assert by_name[name].matched_by == "name" and by_name[name].cosine > 0.999, name


def test_localize_reads_quantize_outputs_as_the_reals_they_stand_for(tmp_path: Path) -> None:
    """An ONNX QuantizeLinear output holds integers; LiteRT reports the same tensor as
    dequantized reals. The localizer dequantizes the source side with the node's own
    scale and zero point, so a faithful int8 file shows no divergence there."""
    src = quantize_static(_cnn(np.random.default_rng(1)), tmp_path)
    dst = tmp_path / "out.tflite"
    modelconv.convert(src, dst, verify=False)
    report = modelconv.verify(src, dst, localize=True)
    quantize_rows = [layer for layer in report.layers if "QuantizeLinear" in layer.converted_ops]
    assert quantize_rows, [layer.source_name for layer in report.layers]
    for layer in quantize_rows:
        assert layer.passed and layer.cosine > 0.999, (layer.source_name, layer.max_abs)
    assert report.first_divergence is None
