"""Small CNNs / RNNs built as ONNX graphs in code -> TFLite: layout, accuracy, quantization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

pytest.importorskip("ai_edge_litert")

from modelconv.errors import ExportError
from modelconv.exporters.tflite import convert_to_tflite
from modelconv.options import ConvertOptions
from modelconv.verification.runners_litert import LiteRTRunner
from tests.tflite.test_tflite_ops import close, make_model, run_both


class Net:
    """Tiny ONNX graph builder for the test models (seeded weights)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.consts: dict[str, np.ndarray] = {}
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{hint}{self.n}"

    def const(self, arr: np.ndarray, hint: str = "c") -> str:
        name = self.name(hint)
        self.consts[name] = arr
        return name

    def op(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1,
             bn: bool = True, pad: int | None = None) -> str:
        fan = cin // group * k * k
        wt = (self.rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(fan)).astype(
            np.float32)
        p = k // 2 if pad is None else pad
        y = self.op("Conv", [x, self.const(wt, "w")], kernel_shape=[k, k], strides=[stride] * 2,
                    pads=[p] * 4, group=group)
        if bn:
            normal = self.rng.standard_normal
            params = [1 + 0.1 * normal(cout), 0.1 * normal(cout), 0.1 * normal(cout),
                      1 + 0.1 * self.rng.random(cout)]
            y = self.op("BatchNormalization", [y] + [self.const(p.astype(np.float32), "bn")
                                                    for p in params])
        return y

    def gemm(self, x: str, cin: int, cout: int) -> str:
        wt = (self.rng.standard_normal((cout, cin)) / np.sqrt(cin)).astype(np.float32)
        b = (0.1 * self.rng.standard_normal(cout)).astype(np.float32)
        return self.op("Gemm", [x, self.const(wt, "fc"), self.const(b, "fcb")], transB=1)

    def scalar(self, v: float) -> str:
        return self.const(np.asarray(v, np.float32), "s")

    def model(self, x_shape: list[int], outputs: list[str]) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *x_shape[1:]])
        return make_model(self.nodes, [x], outputs, self.consts)


def resnet() -> onnx.ModelProto:
    """ResNet-style: stem, max-pool, two residual blocks (one downsampling), GAP, FC."""
    n = Net(1)
    y = n.op("Relu", [n.conv("input", 3, 32, 3, 2)])
    y = n.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    for cin, cout, stride in ((32, 32, 1), (32, 64, 2), (64, 128, 2)):
        h = n.op("Relu", [n.conv(y, cin, cout, 3, stride)])
        h = n.conv(h, cout, cout, 3)
        short = y if stride == 1 else n.conv(y, cin, cout, 1, stride)
        y = n.op("Relu", [n.op("Add", [h, short])])
    y = n.op("Flatten", [n.op("GlobalAveragePool", [y])])
    logits = n.gemm(y, 128, 10)
    return n.model([1, 3, 32, 32], [logits])


def mobilenet_v3() -> onnx.ModelProto:
    """MobileNetV3-style: hardswish, depthwise, SE (GAP + 1x1 convs + hard-sigmoid), residual."""
    n = Net(2)
    y = n.op("HardSwish", [n.conv("input", 3, 16, 3, 2)])
    for cin, exp, cout, k, stride, se in ((16, 64, 24, 3, 2, False), (24, 96, 24, 5, 1, True),
                                          (24, 144, 48, 3, 2, True)):
        h = n.op("HardSwish", [n.conv(y, cin, exp, 1)])
        h = n.op("HardSwish", [n.conv(h, exp, exp, k, stride, group=exp)])
        if se:
            s = n.op("GlobalAveragePool", [h])
            s = n.op("Relu", [n.conv(s, exp, exp // 4, 1, bn=False)])
            s = n.op("HardSigmoid", [n.conv(s, exp // 4, exp, 1, bn=False)],
                     alpha=1 / 6, beta=0.5)
            h = n.op("Mul", [h, s])
        h = n.conv(h, exp, cout, 1)
        y = n.op("Add", [h, y]) if cin == cout and stride == 1 else h
    y = n.op("HardSwish", [n.conv(y, 48, 576, 1)])
    y = n.op("Flatten", [n.op("GlobalAveragePool", [y])])
    y = n.op("HardSwish", [n.gemm(y, 576, 1024)])
    return n.model([1, 3, 64, 64], [n.gemm(y, 1024, 1000)])


def efficientnet() -> onnx.ModelProto:
    """EfficientNet-style: swish, explicit Pad, MBConv with SE via ReduceMean + FC, concat."""
    n = Net(3)

    def swish(v: str) -> str:
        return n.op("Mul", [v, n.op("Sigmoid", [v])])

    pads = n.const(np.asarray([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads")
    y = swish(n.conv(n.op("Pad", ["input", pads]), 3, 32, 3, 2, pad=0))
    for cin, exp, cout, k, stride in ((32, 96, 32, 3, 1), (32, 128, 64, 5, 2)):
        h = swish(n.conv(y, cin, exp, 1))
        h = swish(n.conv(h, exp, exp, k, stride, group=exp))
        axes = n.const(np.asarray([2, 3], np.int64), "axes")
        s = n.op("ReduceMean", [h, axes], keepdims=0)
        s = n.op("Relu", [n.gemm(s, exp, exp // 4)])
        s = n.op("Sigmoid", [n.gemm(s, exp // 4, exp)])
        shape = n.const(np.asarray([-1, exp, 1, 1], np.int64), "shape")
        h = n.op("Mul", [h, n.op("Reshape", [s, shape])])
        h = n.conv(h, exp, cout, 1)
        y = n.op("Add", [h, y]) if cin == cout and stride == 1 else h
    branch = n.op("Relu", [n.conv(y, 64, 32, 3)])
    y = n.op("Concat", [y, branch], axis=1)
    up = n.op("Resize", [y, "", n.const(np.asarray([1, 1, 2, 2], np.float32), "sc")],
              mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    y = n.op("MaxPool", [up], kernel_shape=[2, 2], strides=[2, 2])
    y = swish(n.conv(y, 96, 1280, 1))
    y = swish(n.conv(y, 1280, 320, 1))
    y = n.op("Flatten", [n.op("GlobalAveragePool", [y])])
    return n.model([1, 3, 48, 48], [n.op("Softmax", [n.gemm(y, 320, 10)])])


def lstm_model(kind: str = "LSTM", direction: str = "forward",
               layout: int = 0) -> onnx.ModelProto:
    """[seq, batch, feat] -> LSTM/GRU -> (Y, Y_h) with a linear head on Y_h."""
    rng = np.random.default_rng(5)
    seq, batch, feat, hidden = 6, 2, 8, 16
    gates = 4 if kind == "LSTM" else 3
    dirs = 2 if direction == "bidirectional" else 1
    consts = {
        "W": (rng.standard_normal((dirs, gates * hidden, feat)) * 0.3).astype(np.float32),
        "R": (rng.standard_normal((dirs, gates * hidden, hidden)) * 0.3).astype(np.float32),
        "B": (rng.standard_normal((dirs, 2 * gates * hidden)) * 0.1).astype(np.float32),
        "head": (rng.standard_normal((dirs * hidden, 3)) * 0.3).astype(np.float32),
        "shape": np.asarray([batch, dirs * hidden], np.int64),
        "perm_shape": np.asarray([0], np.int64),
    }
    extra: dict[str, Any] = {"linear_before_reset": 1} if kind == "GRU" else {}
    if layout:
        extra["layout"] = 1
        extra["activations"] = ["Sigmoid", "Tanh", "Tanh"][: gates - 1] * dirs
    nodes = [
        helper.make_node(kind, ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden,
                         direction=direction, **extra),
        helper.make_node("Transpose", ["Y_h"], ["h_t"], perm=[0, 1, 2] if layout else [1, 0, 2]),
        helper.make_node("Reshape", ["h_t", "shape"], ["h"]),
        helper.make_node("MatMul", ["h", "head"], ["logits"]),
    ]
    x_shape = [seq, batch, feat] if not layout else [batch, seq, feat]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    del consts["perm_shape"]
    return make_model(nodes, [x], ["Y", "logits"], consts)


MODELS: dict[str, tuple[Callable[[], onnx.ModelProto], list[int]]] = {
    "resnet": (resnet, [1, 3, 32, 32]),
    "mobilenet_v3": (mobilenet_v3, [1, 3, 64, 64]),
    "efficientnet": (efficientnet, [1, 3, 48, 48]),
}


def op_names(data: bytes) -> list[str]:
    """Builtin names of the operators in a .tflite, in execution order."""
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromPackedBuf(data, 0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    return [names[model.operatorCodes[op.opcodeIndex].builtinCode]
            for op in model.subgraphs[0].operators]


def inner_transposes(data: bytes) -> int:
    """TRANSPOSE ops whose input is not a graph input and whose output is not a graph output."""
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromPackedBuf(data, 0)
    sub = model.subgraphs[0]
    codes = [oc.builtinCode for oc in model.operatorCodes]
    inputs, outputs = set(sub.inputs), set(sub.outputs)
    for op in sub.operators:  # (de)quantization at the boundary extends it
        if codes[op.opcodeIndex] == s.BuiltinOperator.QUANTIZE and op.inputs[0] in inputs:
            inputs.add(op.outputs[0])
        if codes[op.opcodeIndex] == s.BuiltinOperator.DEQUANTIZE and op.outputs[0] in outputs:
            outputs.add(op.inputs[0])
    count = 0
    for op in sub.operators:
        if codes[op.opcodeIndex] != s.BuiltinOperator.TRANSPOSE:
            continue
        if op.inputs[0] in inputs or op.outputs[0] in outputs:
            continue
        count += 1
    return count


def feeds_for(shape: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded normal input."""
    return {"input": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


@pytest.fixture(scope="module", params=sorted(MODELS))
def cnn(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto, list[int]]:
    build, shape = MODELS[request.param]
    return request.param, build(), shape


def test_cnn_matches_ort_without_inner_transposes(cnn: Any) -> None:
    _, model, shape = cnn
    ref, got, data = run_both(model, feeds_for(shape))
    close(ref[0], got[0], 1e-4)
    assert inner_transposes(data) == 0, op_names(data)
    names = op_names(data)
    assert "BATCH_NORMALIZATION" not in names
    assert names.count("TRANSPOSE") <= 1


def test_cnn_nhwc_io_has_no_transpose(cnn: Any) -> None:
    _, model, shape = cnn
    data = convert_to_tflite(ir.serde.deserialize_model(model), ConvertOptions(nhwc_io=True))
    assert "TRANSPOSE" not in op_names(data)
    runner = LiteRTRunner(data)
    assert runner.input_specs()[0].shape == (None, shape[2], shape[3], shape[1])
    x = feeds_for(shape)["input"]
    import onnxruntime as ort

    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    close(ref, runner.run([x.transpose(0, 2, 3, 1)])[0], 1e-4)


def test_fusions_applied() -> None:
    data = convert_to_tflite(ir.serde.deserialize_model(resnet()))
    names = op_names(data)
    assert "RELU" not in names and "ADD" in names  # relu fused into conv and add
    eff = op_names(convert_to_tflite(ir.serde.deserialize_model(efficientnet())))
    assert eff[:2] == ["TRANSPOSE", "CONV_2D"]  # the explicit input Pad went into the conv


def test_conv_bn_relu6_fuses_to_one_op() -> None:
    n = Net(6)
    y = n.op("Clip", [n.conv("input", 3, 8, 3), n.scalar(0.0), n.scalar(6.0)])
    ref, got, data = run_both(n.model([1, 3, 8, 8], [y]), feeds_for([1, 3, 8, 8]))
    close(ref[0], got[0], 1e-4)
    assert op_names(data) == ["TRANSPOSE", "CONV_2D", "TRANSPOSE"]


def test_deterministic(cnn: Any) -> None:
    _, model, _ = cnn
    a = convert_to_tflite(ir.serde.deserialize_model(model))
    b = convert_to_tflite(ir.serde.deserialize_model(model))
    assert a == b


def test_tensor_names_carry_ir_names() -> None:
    model = resnet()
    add_outs = {n.output[0] for n in model.graph.node if n.op_type == "Add"}
    # Add + Relu are fused: the fused tensor carries the Relu's (final) name.
    adds = [n.output[0] for n in model.graph.node if n.op_type == "Relu" and n.input[0] in add_outs]
    assert len(adds) == 3
    runner = LiteRTRunner(convert_to_tflite(ir.serde.deserialize_model(model)))
    x = feeds_for([1, 3, 32, 32])["input"]
    got = runner.intermediates([x], [*adds, "missing"])
    assert set(got) == set(adds)
    import onnxruntime as ort

    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
    close(ref, runner.run([x])[0], 1e-4)


@pytest.mark.parametrize("kind,direction,layout", [
    ("LSTM", "forward", 0), ("LSTM", "bidirectional", 0), ("GRU", "forward", 0),
    ("GRU", "reverse", 0), ("LSTM", "bidirectional", 1), ("GRU", "forward", 1)])
def test_recurrent(kind: str, direction: str, layout: int) -> None:
    x = np.random.default_rng(0).standard_normal((6, 2, 8)).astype(np.float32)
    ref, got, _ = run_both(lstm_model(kind, direction), {"x": x})
    if layout:  # onnxruntime has no batch-first RNNs: compare with the seq-first model
        data = convert_to_tflite(ir.serde.deserialize_model(lstm_model(kind, direction, 1)))
        got = LiteRTRunner(data).run([x.transpose(1, 0, 2)])
        got[0] = got[0].transpose(1, 2, 0, 3)
    for r, g in zip(ref, got, strict=True):
        close(r, g, 1e-4)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.fixture(scope="module")
def float_sizes() -> dict[str, int]:
    return {k: len(convert_to_tflite(ir.serde.deserialize_model(b())))
            for k, (b, _) in MODELS.items()}


def test_fp16_and_dynamic_sizes(cnn: Any, float_sizes: dict[str, int]) -> None:
    name, model, shape = cnn
    x = feeds_for(shape, 3)["input"]
    ref = LiteRTRunner(convert_to_tflite(ir.serde.deserialize_model(model))).run([x])[0]
    for opts, ratio, tol in ((ConvertOptions(fp16=True), 0.52, 1e-2),
                             (ConvertOptions(quantize="dynamic"), 0.27, 0.1)):
        data = convert_to_tflite(ir.serde.deserialize_model(model), opts)
        assert len(data) <= ratio * float_sizes[name], (len(data) / float_sizes[name])
        got = LiteRTRunner(data).run([x])[0]
        assert _cosine(ref, got) > 0.999
        assert np.abs(ref - got).max() <= tol * np.abs(ref).max()
    assert "DEQUANTIZE" in op_names(convert_to_tflite(ir.serde.deserialize_model(model),
                                                      ConvertOptions(fp16=True)))


def test_full_int8_with_calibration_folder(cnn: Any, tmp_path: Any) -> None:
    _, model, shape = cnn
    rng = np.random.default_rng(7)
    for k in range(4):
        np.save(tmp_path / f"s{k}.npy", rng.standard_normal(shape).astype(np.float32))
    data = convert_to_tflite(ir.serde.deserialize_model(model),
                             ConvertOptions(quantize="int8", calibration=tmp_path))
    names = op_names(data)
    assert names[0] == "QUANTIZE" and names[-1] == "DEQUANTIZE"
    assert inner_transposes(data) == 0
    x = rng.standard_normal(shape).astype(np.float32)
    ref = LiteRTRunner(convert_to_tflite(ir.serde.deserialize_model(model))).run([x])[0]
    got = LiteRTRunner(data).run([x])[0]
    assert got.dtype == np.float32
    assert _cosine(ref, got) >= 0.98, _cosine(ref, got)


def test_full_int8_npz_int8_io_and_calibration_required(tmp_path: Any) -> None:
    model = resnet()
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "cal.npz", input=rng.standard_normal((5, 3, 32, 32)).astype(np.float32))
    data = convert_to_tflite(ir.serde.deserialize_model(model), ConvertOptions(
        quantize="int8", calibration=tmp_path / "cal.npz", int8_io=True))
    runner = LiteRTRunner(data)
    assert runner.input_specs()[0].dtype == "int8"
    assert "QUANTIZE" not in op_names(data)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    ref = LiteRTRunner(convert_to_tflite(ir.serde.deserialize_model(model))).run([x])[0]
    assert _cosine(ref, runner.run([x])[0]) >= 0.98  # runner (de)quantizes at the boundary
    with pytest.raises(ExportError, match="calibration"):
        convert_to_tflite(ir.serde.deserialize_model(model), ConvertOptions(quantize="int8"))


def test_int8_lstm_falls_back_where_needed() -> None:
    data = convert_to_tflite(ir.serde.deserialize_model(lstm_model()),
                             ConvertOptions(quantize="int8", calibration="random"))
    x = np.random.default_rng(0).standard_normal((6, 2, 8)).astype(np.float32)
    ref = LiteRTRunner(convert_to_tflite(ir.serde.deserialize_model(lstm_model()))).run([x])
    got = LiteRTRunner(data).run([x])
    assert _cosine(ref[1], got[1]) >= 0.98


def test_keras_style_transposes_cancel() -> None:
    """NHWC input -> Transpose -> Conv/Relu/Add/Concat -> Transpose back: no TRANSPOSE left."""
    n = Net(4)
    x = n.op("Transpose", ["input"], perm=[0, 3, 1, 2])
    a = n.op("Relu", [n.conv(x, 3, 8, 3, bn=False)])
    b = n.op("Add", [a, n.conv(a, 8, 8, 1, bn=False)])
    c = n.op("Concat", [a, b], axis=1)
    s = n.op("Softmax", [c], axis=1)
    out = n.op("Transpose", [s], perm=[0, 2, 3, 1])
    model = make_model(n.nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                [1, 8, 8, 3])], [out], n.consts)
    ref, got, data = run_both(model, feeds_for([1, 8, 8, 3]))
    close(ref[0], got[0], 1e-4)
    assert "TRANSPOSE" not in op_names(data), op_names(data)
    # the source is already channels-last: nhwc_io must not permute it again
    same = convert_to_tflite(ir.serde.deserialize_model(model), ConvertOptions(nhwc_io=True))
    assert LiteRTRunner(same).input_specs()[0].shape == (1, 8, 8, 3)
    close(ref[0], LiteRTRunner(same).run([feeds_for([1, 8, 8, 3])["input"]])[0], 1e-4)


def test_dynamic_shape_subgraph_is_folded() -> None:
    """torch-style flatten (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) with batch=N."""
    n = Net(5)
    y = n.op("Relu", [n.conv("input", 3, 4, 3, bn=False)])
    shape = n.op("Shape", [y])
    batch = n.op("Gather", [shape, n.const(np.asarray(0, np.int64))], axis=0)
    dims = n.op("Concat", [n.op("Unsqueeze", [batch, n.const(np.asarray([0], np.int64))]),
                           n.const(np.asarray([-1], np.int64))], axis=0)
    out = n.gemm(n.op("Reshape", [y, dims]), 4 * 8 * 8, 5)
    model = n.model([1, 3, 8, 8], [out])
    ref, got, data = run_both(model, feeds_for([1, 3, 8, 8]))
    close(ref[0], got[0], 1e-4)
    names = op_names(data)
    assert "SHAPE" not in names and "GATHER" not in names


def test_buffers_after_flatbuffer_when_large(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelconv.exporters.tflite import writer

    model = resnet()
    small = convert_to_tflite(ir.serde.deserialize_model(model))
    monkeypatch.setattr(writer, "_FLATBUFFER_LIMIT", 1000)
    big = convert_to_tflite(ir.serde.deserialize_model(model))
    assert big != small
    x = feeds_for([1, 3, 32, 32])["input"]
    np.testing.assert_array_equal(LiteRTRunner(small).run([x])[0], LiteRTRunner(big).run([x])[0])


def test_vgg_style_flatten_into_fc_has_no_transpose() -> None:
    """Flatten of a 4x4 feature map before Gemm/MatMul: weight rows are permuted instead."""
    n = Net(8)
    y = n.op("MaxPool", [n.op("Relu", [n.conv("input", 3, 8, 3)])], kernel_shape=[2, 2],
             strides=[2, 2])
    flat = n.op("Flatten", [y])
    a = n.gemm(flat, 8 * 4 * 4, 6)
    b = n.op("MatMul", [flat, n.const(n.rng.standard_normal((128, 3)).astype(np.float32))])
    ref, got, data = run_both(n.model([1, 3, 8, 8], [a, b]), feeds_for([1, 3, 8, 8]))
    for r, g in zip(ref, got, strict=True):
        close(r, g, 1e-4)
    assert op_names(data).count("TRANSPOSE") == 1, op_names(data)


def test_erf_gelu_pattern_becomes_one_op() -> None:
    n = Net(9)
    x = n.gemm("input", 16, 16)
    e = n.op("Erf", [n.op("Div", [x, n.scalar(float(np.sqrt(2)))])])
    y = n.op("Mul", [n.op("Mul", [x, n.op("Add", [e, n.scalar(1.0)])]), n.scalar(0.5)])
    model = make_model(n.nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                [2, 16])], [y], n.consts)
    ref, got, data = run_both(model, {"input": feeds_for([2, 16])["input"]})
    close(ref[0], got[0], 1e-4)
    assert op_names(data) == ["FULLY_CONNECTED", "GELU"]


def test_convnext_block_transposes_cancel() -> None:
    """Depthwise 7x7 -> permute to channels-last -> LayerNorm -> MLP -> permute back -> add."""
    n = Net(10)
    x = n.conv("input", 3, 16, 3, bn=False)
    y = n.conv(x, 16, 16, 7, group=16, bn=False)
    y = n.op("Transpose", [y], perm=[0, 2, 3, 1])
    y = n.op("LayerNormalization", [y, n.const(np.ones(16, np.float32)),
                                    n.const(np.zeros(16, np.float32))], axis=-1)
    y = n.op("MatMul", [y, n.const(n.rng.standard_normal((16, 64)).astype(np.float32) * 0.2)])
    y = n.op("Gelu", [y])
    y = n.op("MatMul", [y, n.const(n.rng.standard_normal((64, 16)).astype(np.float32) * 0.2)])
    y = n.op("Add", [x, n.op("Transpose", [y], perm=[0, 3, 1, 2])])
    ref, got, data = run_both(n.model([1, 3, 8, 8], [y]), feeds_for([1, 3, 8, 8]))
    close(ref[0], got[0], 1e-4)
    assert inner_transposes(data) == 0, op_names(data)


def _lstm(direction: str, hidden: int = 16, feat: int = 8, peephole: bool = False,
          states: bool = False, acts: list[str] | None = None,
          outputs: tuple[str, ...] = ("Y", "Y_h")) -> onnx.ModelProto:
    """A bare ONNX LSTM on x [5, 2, feat]; with ``states`` h0 is a constant and c0 an input."""
    rng = np.random.default_rng(11)
    dirs = 2 if direction == "bidirectional" else 1
    consts = {"W": rng.standard_normal((dirs, 4 * hidden, feat)).astype(np.float32) * 0.3,
              "R": rng.standard_normal((dirs, 4 * hidden, hidden)).astype(np.float32) * 0.3,
              "B": rng.standard_normal((dirs, 8 * hidden)).astype(np.float32) * 0.1}
    names = ["x", "W", "R", "B"]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, feat])]
    if states or peephole:
        names += ["", "h0" if states else "", "c0" if states else ""]
    if states:
        consts["h0"] = rng.standard_normal((dirs, 2, hidden)).astype(np.float32)
        inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [dirs, 2, hidden]))
    if peephole:
        consts["P"] = rng.standard_normal((dirs, 3 * hidden)).astype(np.float32) * 0.3
        names.append("P")
    extra: dict[str, Any] = {"activations": acts} if acts else {}
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], hidden_size=hidden,
                            direction=direction, **extra)
    return make_model([node], inputs, list(outputs), consts)


def _lstm_feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim])
            .astype(np.float32) for i in model.graph.input}


@pytest.mark.parametrize("direction,peephole,states", [
    ("forward", False, False), ("reverse", True, True), ("bidirectional", True, True),
    ("bidirectional", False, False)])
def test_lstm_becomes_fused_op(direction: str, peephole: bool, states: bool) -> None:
    model = _lstm(direction, peephole=peephole, states=states)
    ref, got, data = run_both(model, _lstm_feeds(model, 0))
    for r, g in zip(ref, got, strict=True):
        close(r, g, 1e-4)
    names = op_names(data)
    assert names.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == (2 if direction[0] == "b" else 1)
    assert "LOGISTIC" not in names and len(names) <= 16, names
    # the state tensors are reset on every invocation: a second run gives the same answer
    import onnxruntime as ort

    runner = LiteRTRunner(data)
    for seed in (1, 2):
        feeds = _lstm_feeds(model, seed)
        expect = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
        outs = runner.run([feeds[s.name] for s in runner.input_specs()])
        for r, g in zip(expect, outs, strict=True):
            close(r, g, 1e-4)


@pytest.mark.parametrize("acts,outputs", [
    (["Sigmoid", "Tanh", "Relu"], ("Y", "Y_h")), (None, ("Y", "Y_c"))])
def test_lstm_falls_back_to_unrolled(acts: list[str] | None, outputs: tuple[str, ...]) -> None:
    model = _lstm("forward", acts=acts, outputs=outputs)
    ref, got, data = run_both(model, _lstm_feeds(model, 0))
    for r, g in zip(ref, got, strict=True):
        close(r, g, 1e-4)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in op_names(data)


def test_fused_lstm_fp16_and_hybrid_dynamic() -> None:
    from ai_edge_litert import schema_py_generated as s

    model = _lstm("bidirectional", hidden=48, feat=32)
    feeds = _lstm_feeds(model, 3)
    ref = LiteRTRunner(convert_to_tflite(ir.serde.deserialize_model(model))).run([feeds["x"]])
    for opts, tol in ((ConvertOptions(fp16=True), 1e-2), (ConvertOptions(quantize="dynamic"),
                                                          0.1)):
        data = convert_to_tflite(ir.serde.deserialize_model(model), opts)
        got = LiteRTRunner(data).run([feeds["x"]])
        for r, g in zip(ref, got, strict=True):
            close(r, g, tol)
            assert _cosine(r, g) > 0.999
    sub = s.ModelT.InitFromPackedBuf(data, 0).subgraphs[0]
    lstm = [op for op in sub.operators if len(op.inputs) == 24]
    weights = [sub.tensors[lstm[0].inputs[k]] for k in range(1, 9)]
    assert all(t.type == s.TensorType.INT8 and len(t.quantization.scale) == 1 for t in weights)
