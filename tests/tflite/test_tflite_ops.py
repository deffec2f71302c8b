"""Per-op table: tiny ONNX models -> TFLite (modelconv exporter) -> LiteRT vs onnxruntime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

pytest.importorskip("ai_edge_litert")

from modelconv.errors import UnsupportedOpsError
from modelconv.exporters.tflite import convert_to_tflite
from modelconv.options import ConvertOptions
from modelconv.verification.runners_litert import LiteRTRunner

_NP = {TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64, TensorProto.BOOL: np.bool_,
       TensorProto.INT32: np.int32}


@dataclass
class Case:
    """One row: an op with its runtime inputs, constant inputs and attributes."""

    name: str
    op: str
    inputs: list[tuple[str, list[int]]]  # runtime float inputs (name, shape)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    order: list[str] | None = None  # node input order (names; "" = omitted)
    outputs: int = 1
    tol: float = 1e-4
    int_inputs: dict[str, tuple[list[int], int]] = field(default_factory=dict)
    opset: int = 21


def make_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
               outputs: list[str], consts: dict[str, np.ndarray],
               opset: int = 21) -> onnx.ModelProto:
    """A single-graph model (opset 21 unless given)."""
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
                             for o in outputs],
        [onnx.numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in inferred.graph.value_info}
    for out in model.graph.output:
        if out.name in known:
            out.CopyFrom(known[out.name])
        else:
            for o in inferred.graph.output:
                if o.name == out.name:
                    out.CopyFrom(o)
    return model


def run_both(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
             options: ConvertOptions | None = None) -> tuple[list[np.ndarray], list[np.ndarray],
                                                             bytes]:
    """(onnxruntime outputs, LiteRT outputs, tflite bytes) for ``model`` on ``feeds``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)
    data = convert_to_tflite(ir.serde.deserialize_model(model), options or ConvertOptions())
    runner = LiteRTRunner(data)
    got = runner.run([feeds[s.name] for s in runner.input_specs()])
    return ref, got, data


def close(ref: np.ndarray, got: np.ndarray, tol: float) -> None:
    """max|ref - got| <= tol * max|ref| (exact for integer/bool outputs)."""
    assert ref.shape == got.shape, (ref.shape, got.shape)
    if ref.dtype.kind in "biu":
        np.testing.assert_array_equal(ref, got)
        return
    scale = max(float(np.abs(ref).max()), 1e-6)
    err = float(np.abs(ref.astype(np.float64) - got).max())
    assert err <= tol * scale, f"max abs err {err} > {tol} * {scale}"


R = np.random.default_rng(0)


def w(*shape: int, scale: float = 0.5) -> np.ndarray:
    """Seeded float32 weights."""
    return (R.standard_normal(shape) * scale).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    """int64 constant."""
    return np.asarray(values, np.int64)


def f32(*values: float) -> np.ndarray:
    """float32 constant (scalar for one value)."""
    return np.asarray(values[0] if len(values) == 1 else values, np.float32)


X4 = [("x", [1, 4, 6, 6])]
X2 = [("x", [2, 5])]
X3 = [("x", [2, 3, 5])]

CASES = [
    Case("conv", "Conv", X4, {"W": w(6, 4, 3, 3), "B": w(6)}, {"pads": [1, 1, 1, 1]}),
    Case("conv_stride_valid", "Conv", X4, {"W": w(6, 4, 3, 3)}, {"strides": [2, 2]}),
    Case("conv_asym_pads", "Conv", X4, {"W": w(6, 4, 3, 3)}, {"pads": [0, 1, 2, 0]}),
    Case("conv_same_upper", "Conv", X4, {"W": w(6, 4, 3, 3)},
         {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    Case("conv_dilated", "Conv", X4, {"W": w(5, 4, 3, 3)}, {"dilations": [2, 2], "pads": [2] * 4}),
    Case("conv_depthwise", "Conv", X4, {"W": w(4, 1, 3, 3), "B": w(4)},
         {"group": 4, "pads": [1] * 4}),
    Case("conv_depthwise_mult2", "Conv", X4, {"W": w(8, 1, 3, 3)}, {"group": 4}),
    Case("conv_grouped", "Conv", X4, {"W": w(6, 2, 3, 3)}, {"group": 2, "pads": [1] * 4}),
    Case("conv1d", "Conv", X3, {"W": w(4, 3, 3)}, {"pads": [1, 1]}),
    Case("conv_transpose", "ConvTranspose", X4, {"W": w(4, 3, 3, 3)},
         {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    Case("conv_transpose_valid", "ConvTranspose", X4, {"W": w(4, 3, 2, 2), "B": w(3)},
         {"strides": [2, 2]}),
    Case("gemm", "Gemm", X2, {"W": w(5, 3), "C": w(3)}),
    Case("gemm_transb_alpha", "Gemm", X2, {"W": w(3, 5), "C": w(3)},
         {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    Case("matmul_const", "MatMul", X3, {"W": w(5, 4)}),
    Case("gemm_dynamic_b_full_c", "Gemm", [("a", [2, 5]), ("b", [3, 5])], {"C": w(2, 3)},
         {"transB": 1, "alpha": 0.5, "beta": 3.0}),
    Case("matmul_dynamic", "MatMul", [("a", [2, 3, 4]), ("b", [2, 4, 5])]),
    Case("maxpool", "MaxPool", X4, attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("maxpool_pads", "MaxPool", X4,
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("maxpool_ceil", "MaxPool", [("x", [1, 3, 7, 7])],
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    Case("avgpool", "AveragePool", X4, attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
    Case("avgpool_pads_exclude", "AveragePool", X4,
         attrs={"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    Case("avgpool_pads_include", "AveragePool", X4,
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                "count_include_pad": 1}),
    Case("avgpool_ceil", "AveragePool", [("x", [1, 3, 7, 7])],
         attrs={"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    Case("global_avg", "GlobalAveragePool", X4),
    Case("global_max", "GlobalMaxPool", X4),
    Case("reduce_mean", "ReduceMean", X3, {"axes": i64(1)}, {"keepdims": 0}),
    Case("reduce_sum_keep", "ReduceSum", X3, {"axes": i64(-1)}),
    Case("reduce_max", "ReduceMax", X3, {"axes": i64(0, 2)}, {"keepdims": 0}),
    Case("reduce_min", "ReduceMin", X3, {"axes": i64(1)}),
    Case("reduce_l2", "ReduceL2", X3, {"axes": i64(2)}),
    Case("pad_const", "Pad", X3, {"pads": i64(0, 1, 2, 0, 2, 1), "v": f32(0.5)},
         order=["x", "pads", "v"]),
    Case("pad_reflect", "Pad", X4, {"pads": i64(0, 0, 1, 2, 0, 0, 2, 1)}, {"mode": "reflect"}),
    Case("concat", "Concat", [("a", [2, 3]), ("b", [2, 4])], attrs={"axis": 1}),
    Case("reshape", "Reshape", X3, {"s": i64(3, -1)}),
    Case("flatten", "Flatten", X4, attrs={"axis": 2}),
    Case("squeeze", "Squeeze", [("x", [2, 1, 3])], {"axes": i64(1)}),
    Case("unsqueeze", "Unsqueeze", X3, {"axes": i64(0, 3)}),
    Case("transpose", "Transpose", X3, attrs={"perm": [2, 0, 1]}),
    Case("slice", "Slice", X3, {"s": i64(0, 1), "e": i64(2, 5), "a": i64(0, 2)}),
    Case("slice_neg_step", "Slice", X3, {"s": i64(-1), "e": i64(-100), "a": i64(2),
                                         "st": i64(-2)}),
    Case("gather_axis1", "Gather", X3, {"idx": i64(2, 0, -1)}, {"axis": 2}),
    Case("gather_scalar", "Gather", X3, {"idx": np.asarray(1, np.int64)}, {"axis": 1}),
    Case("embedding", "Gather", [], {"table": w(10, 4)}, order=["table", "ids"],
         int_inputs={"ids": ([2, 3], 10)}),
    Case("split_equal", "Split", [("x", [2, 6])], attrs={"axis": 1, "num_outputs": 3},
         outputs=3),
    Case("split_sizes", "Split", [("x", [2, 6])], {"sp": i64(2, 4)}, {"axis": 1}, outputs=2),
    Case("expand", "Expand", [("x", [3, 1])], {"s": i64(2, 3, 4)}),
    Case("tile", "Tile", X2, {"r": i64(2, 3)}),
    Case("cumsum", "CumSum", X3, {"ax": np.asarray(2, np.int64)}, {"reverse": 1}),
    Case("argmax", "ArgMax", X3, attrs={"axis": 2, "keepdims": 0}),
    Case("argmin_keep", "ArgMin", X3, attrs={"axis": 1}),
    *[Case(op.lower(), op, [("a", [2, 3, 4]), ("b", [3, 1])]) for op in
      ("Add", "Sub", "Mul", "Max", "Min")],
    Case("div", "Div", [("a", [2, 3])], {"b": f32(2.0, -4.0, 0.5)}),
    Case("pow", "Pow", [("a", [2, 3])], {"b": f32(2.0)}),
    *[Case(op.lower(), op, [("a", [2, 3]), ("b", [2, 3])], outputs=1) for op in
      ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")],
    *[Case(op.lower(), op, X3) for op in
      ("Relu", "Sigmoid", "Tanh", "Exp", "Abs", "Neg", "Erf", "HardSwish", "Softplus",
       "Sin", "Floor")],
    Case("sqrt", "Sqrt", [("x", [2, 3])], tol=1e-4),
    Case("log", "Log", [("x", [2, 3])], tol=1e-4),
    Case("clip6", "Clip", X3, {"lo": f32(0.0), "hi": f32(6.0)}),
    Case("clip_any", "Clip", X3, {"lo": f32(-0.3), "hi": f32(0.4)}),
    Case("leaky_relu", "LeakyRelu", X3, attrs={"alpha": 0.2}),
    Case("prelu", "PRelu", X4, {"slope": w(4, 1, 1)}),
    Case("hard_sigmoid", "HardSigmoid", X3, attrs={"alpha": 0.25, "beta": 0.4}),
    Case("softmax_last", "Softmax", X3),
    Case("softmax_axis1", "Softmax", X3, attrs={"axis": 1}),
    Case("log_softmax", "LogSoftmax", X3),
    Case("gelu", "Gelu", X3),
    Case("gelu_tanh", "Gelu", X3, attrs={"approximate": "tanh"}),
    Case("elu", "Elu", X3),
    Case("elu_alpha", "Elu", X3, attrs={"alpha": 0.5}),
    Case("layernorm", "LayerNormalization", X3, {"g": w(5), "b": w(5)}, {"epsilon": 1e-5}),
    Case("batchnorm", "BatchNormalization", X4,
         {"g": w(4), "b": w(4), "m": w(4), "v": np.abs(w(4)) + 0.5}),
    Case("instancenorm", "InstanceNormalization", X4, {"g": w(4), "b": w(4)}),
    Case("resize_nearest", "Resize", X4, {"roi": np.zeros(0, np.float32),
                                          "sc": f32(1, 1, 2, 2)},
         {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
          "nearest_mode": "floor"}),
    Case("resize_bilinear_half", "Resize", X4, {"roi": np.zeros(0, np.float32),
                                                "sc": f32(1, 1, 2, 2)},
         {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}),
    Case("resize_bilinear_align", "Resize", X4, {"roi": np.zeros(0, np.float32),
                                                 "sc": f32(1, 1, 2, 2)},
         {"mode": "linear", "coordinate_transformation_mode": "align_corners"}),
    Case("resize_nearest_half", "Resize", X4, {"roi": np.zeros(0, np.float32),
                                               "sc": f32(1, 1, 2, 2)},
         {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
          "nearest_mode": "round_prefer_ceil"}),
    Case("depth_to_space", "DepthToSpace", [("x", [1, 8, 3, 3])], attrs={"blocksize": 2}),
    Case("identity", "Identity", X3),
    Case("dropout", "Dropout", X3),
    Case("mean3", "Mean", [("a", [2, 3]), ("b", [2, 3]), ("c", [1, 3])]),
    Case("sum3", "Sum", [("a", [2, 3]), ("b", [2, 3]), ("c", [3])]),
    Case("softsign", "Softsign", X3),
    Case("mish", "Mish", X3),
    Case("where", "Where", [("a", [2, 3]), ("b", [2, 3])], order=["cond", "a", "b"],
         consts={"cond": np.asarray([[True, False, True], [False, False, True]])}),
    Case("not_and", "Not", [], {"c": np.asarray([True, False])}, order=["c"]),
    Case("cast_int", "Cast", X3, attrs={"to": TensorProto.INT32}),
    Case("mod", "Mod", [], {"a": np.asarray([5, -7, 9], np.int64)}, order=["a", "b"],
         int_inputs={"b": ([3], 4)}),
    Case("reduce_prod", "ReduceProd", X3, {"axes": i64(2)}),
    Case("reduce_sum_square", "ReduceSumSquare", X3, {"axes": i64(1)}, {"keepdims": 0}),
    Case("space_to_depth", "SpaceToDepth", X4, attrs={"blocksize": 2}),
    Case("conv_transpose_same", "ConvTranspose", X4, {"W": w(4, 5, 4, 4)},
         {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    Case("maxpool1d", "MaxPool", X3, attrs={"kernel_shape": [2], "strides": [2]}),
    Case("reciprocal", "Reciprocal", [("x", [2, 3])]),
    Case("layernorm_stats", "LayerNormalization", X3, {"g": w(3, 5), "b": w(3, 5)},
         {"axis": 1, "epsilon": 1e-3}, outputs=3),
    Case("layernorm_no_bias", "LayerNormalization", X3, {"g": w(5)}),
    Case("rmsnorm", "RMSNormalization", X3, {"g": w(5)}, opset=23),
    Case("rmsnorm_axis1", "RMSNormalization", X3, {"g": w(3, 5)}, {"axis": 1, "epsilon": 1e-3},
         opset=23),
    Case("selu", "Selu", X3, attrs={"alpha": 1.5, "gamma": 1.2}),
    Case("selu_default", "Selu", X3),
    Case("celu", "Celu", X3, attrs={"alpha": 2.0}),
    Case("tril_k", "Trilu", X3, {"k": np.asarray(1, np.int64)}, {"upper": 0}),
    Case("triu", "Trilu", [("x", [3, 4])]),
    Case("reduce_l1", "ReduceL1", X3, {"axes": i64(1, 2)}),
    Case("reduce_log_sum", "ReduceLogSum", X3, {"axes": i64(0)}, {"keepdims": 0}),
    Case("reduce_log_sum_exp", "ReduceLogSumExp", X3, {"axes": i64(-1)}, {"keepdims": 0}),
    Case("einsum_bmm", "Einsum", [("a", [2, 3, 4]), ("b", [2, 4, 5])],
         attrs={"equation": "bij,bjk->bik"}),
    Case("einsum_transpose_sum", "Einsum", X3, attrs={"equation": "ijk->kj"}),
    Case("einsum_outer", "Einsum", [("a", [3]), ("b", [4])], attrs={"equation": "i,j"}),
    Case("pad_edge", "Pad", X3, {"p": i64(0, 2, 1, 0, 1, 3)}, {"mode": "edge"}),
    Case("pad_edge_crop", "Pad", X3, {"p": i64(0, -1, 2, 1, 2, -2)}, {"mode": "edge"}),
    Case("pad_wrap_crop", "Pad", X3, {"p": i64(0, -1, 2, 0, 2, 1)}, {"mode": "wrap"}),
    Case("depth_to_space_crd", "DepthToSpace", [("x", [1, 8, 3, 2])],
         attrs={"blocksize": 2, "mode": "CRD"}),
    Case("argmax_last", "ArgMax", X3, attrs={"axis": 1, "select_last_index": 1}),
    Case("argmin_last_flat", "ArgMin", X3, attrs={"axis": -1, "keepdims": 0,
                                                  "select_last_index": 1}),
    Case("gather_elements", "GatherElements", X3, attrs={"axis": 1}, order=["x", "i"],
         int_inputs={"i": ([2, 2, 5], 3)}),
    Case("gather_elements_const_neg", "GatherElements", X3,
         {"i": np.asarray([[[-1, 0, 4]], [[2, -5, 1]]], np.int64)}, {"axis": -1}),
    Case("topk", "TopK", X3, {"k": i64(2)}, {"axis": 1}, outputs=2),
    Case("topk_smallest_last", "TopK", X3, {"k": i64(3)}, {"largest": 0}, outputs=2),
    Case("lrn", "LRN", X4, attrs={"size": 3, "alpha": 0.01, "beta": 0.6, "bias": 1.5}),
    Case("castlike", "CastLike", X3, {"t": np.zeros(1, np.int32)}),
    Case("onehot", "OneHot", [], {"d": i64(5), "v": f32(-1.0, 2.0)}, order=["i", "d", "v"],
         int_inputs={"i": ([2, 3], 5)}),
    Case("onehot_axis0_neg", "OneHot", [], {"i": np.asarray([[-1, 2], [0, -4]], np.int64),
                                            "d": i64(4), "v": f32(0.0, 1.0)},
         {"axis": 0}, order=["i", "d", "v"]),
    Case("conv_transpose1d", "ConvTranspose", X3, {"W": w(3, 4, 3), "B": w(4)},
         {"strides": [2], "pads": [1, 1], "output_padding": [1]}),
    Case("conv_transpose1d_same", "ConvTranspose", X3, {"W": w(3, 2, 4)},
         {"strides": [2], "pads": [1, 1]}),
    Case("einsum_ellipsis", "Einsum", [("a", [2, 3, 4]), ("b", [4, 5])],
         attrs={"equation": "...j,jk->...k"}),
]


def build_case(case: Case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The ONNX model and seeded feeds for one table row."""
    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in case.inputs}
    if case.op in ("Sqrt", "Log"):
        feeds = {k: np.abs(v) + 0.1 for k, v in feeds.items()}
    if case.op in ("Pow", "ReduceLogSum"):
        feeds = {k: np.abs(v) + 0.1 for k, v in feeds.items()}
    infos = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in case.inputs]
    for n, (shape, hi) in case.int_inputs.items():
        feeds[n] = rng.integers(0, hi, shape).astype(np.int64)
        infos.append(helper.make_tensor_value_info(n, TensorProto.INT64, shape))
    order = case.order or [n for n, _ in case.inputs] + list(case.consts)
    outs = [f"y{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, order, outs, **case.attrs)
    return make_model([node], infos, outs, case.consts, case.opset), feeds


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op(case: Case) -> None:
    model, feeds = build_case(case)
    ref, got, _ = run_both(model, feeds)
    assert len(ref) == len(got)
    for r, g in zip(ref, got, strict=True):
        close(np.asarray(r), g, case.tol)


def test_lowerings_registered_for_every_table_op() -> None:
    from modelconv.exporters.tflite import LOWERINGS  # the package import registers them

    assert {c.op for c in CASES} <= set(LOWERINGS.keys())


def test_unsupported_ops_listed_at_once() -> None:
    nodes = [helper.make_node("Unique", ["x"], ["d"]), helper.make_node("Einsum", ["x"], ["e"],
                                                                         equation="ii->i"),
             helper.make_node("Unique", ["x"], ["d2"])]
    for n, src in zip(nodes, ["layer.a", "layer.b", "layer.c"], strict=True):
        n.metadata_props.add(key="source_name", value=src)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])
    model = make_model(nodes, [x], ["d", "e", "d2"], {})
    with pytest.raises(UnsupportedOpsError) as info:
        convert_to_tflite(ir.serde.deserialize_model(model))
    assert info.value.unsupported == {"Unique": ["layer.a", "layer.c"],
                                      "Einsum (diagonal (a repeated letter in 'ii'))": ["layer.b"]}


def test_attribute_limits_reported_together() -> None:
    """Attribute-level limits and missing lowerings come in ONE UnsupportedOpsError."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("ScatterElements", ["x", "sidx", "x"], ["a"], reduction="mul"),
        helper.make_node("ScatterND", ["x", "nidx", "upd"], ["a2"], reduction="max"),
        helper.make_node("Resize", ["x", "", "scales"], ["b"], mode="nearest"),
        helper.make_node("Pad", ["x", "pads"], ["c"], mode="reflect"),
        helper.make_node("RandomNormalLike", ["x"], ["m"]),
        helper.make_node("Unique", ["sq"], ["d"]),
        helper.make_node("LSTM", ["seq", "W", "R", "", "", "", "", "P"], ["y", "yh", "yc"],
                         hidden_size=2, activations=["Sigmoid", "Tanh", "Relu"]),
        helper.make_node("LSTM", ["seq", "W", "R"], ["y2", "yh2"], hidden_size=2, clip=1.0),
    ]
    for k, n in enumerate(nodes):
        n.metadata_props.add(key="source_name", value=f"layer{k}")
    consts = {"sidx": np.zeros((1, 4, 5, 5), np.int64),
              "nidx": np.zeros((1, 1), np.int64),
              "upd": rng.standard_normal((1, 4, 5, 5)).astype(np.float32),
              "pads": np.asarray([0, 0, -1, 1, 0, 0, 1, 1], np.int64),
              "W": rng.standard_normal((1, 8, 3)).astype(np.float32),
              "R": rng.standard_normal((1, 8, 2)).astype(np.float32),
              "P": rng.standard_normal((1, 6)).astype(np.float32)}
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5]),
              helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4]),
              helper.make_tensor_value_info("sq", TensorProto.FLOAT, [3, 3]),
              helper.make_tensor_value_info("seq", TensorProto.FLOAT, [4, 1, 3])]
    model = make_model(nodes, inputs, ["a", "a2", "b", "c", "m", "d", "y", "y2"], consts)
    with pytest.raises(UnsupportedOpsError) as info:
        convert_to_tflite(ir.serde.deserialize_model(model))
    assert info.value.unsupported == {
        "ScatterElements (reduction=mul)": ["layer0"],
        "ScatterND (reduction=max)": ["layer1"],
        "Resize (run-time scales with mode=nearest)": ["layer2"],
        "Pad (negative pads (cropping))": ["layer3"],
        "RandomNormalLike": ["layer4"],
        "Unique": ["layer5"],
        "LSTM (peepholes with a non-default activation, clip or Y_c output)": ["layer6"],
        "LSTM (clip / parameterised activations)": ["layer7"],
    }, info.value.unsupported


def test_dynamic_batch_fixed_to_one_with_signature() -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    data = convert_to_tflite(ir.serde.deserialize_model(make_model([node], [x], ["y"], {})))
    spec = LiteRTRunner(data).input_specs()[0]
    assert spec.shape == (None, 3)


def test_export_writes_file(tmp_path: Any) -> None:
    from modelconv.exporters.tflite import export_tflite

    node = helper.make_node("Relu", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    model = ir.serde.deserialize_model(make_model([node], [x], ["y"], {}))
    paths = export_tflite(model, tmp_path / "m.tflite", ConvertOptions())
    assert paths == [tmp_path / "m.tflite"]
    assert paths[0].read_bytes()[4:8] == b"TFL3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_inspect_and_support_matrix(tmp_path: Any) -> None:
    from modelconv.exporters.tflite.inspect import inspect_tflite
    from modelconv.support import support_matrix

    case = next(c for c in CASES if c.name == "conv")
    model, _ = build_case(case)
    path = tmp_path / "conv.tflite"
    path.write_bytes(convert_to_tflite(ir.serde.deserialize_model(model)))
    info = inspect_tflite(path)
    assert info.format == "tflite" and info.op_counts["CONV_2D"] == 1
    assert info.inputs[0].name == "x" and info.outputs[0].name == "y0"
    assert info.num_parameters == 6 * 4 * 3 * 3 + 6 + 2 * 4  # weights, bias, 2 perms
    rows = support_matrix()["TFLite exporter: ONNX ops lowered"]["supported"]
    assert {"Conv", "LSTM", "Resize", "Gemm"} <= set(rows)


def test_gemm_tanh_not_fused_and_seq_dim_defaults() -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"]), helper.make_node("Tanh", ["g"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])
    model = make_model(nodes, [x], ["y"], {"w": w(8, 3)})
    with pytest.warns(UserWarning, match="fixed to 8"):
        data = convert_to_tflite(ir.serde.deserialize_model(model))
    runner = LiteRTRunner(data)
    # seq is the Gemm's contraction dim: it cannot change, so only the batch stays dynamic
    assert runner.input_specs()[0].shape == (None, 8)
    import onnxruntime as ort

    for batch in (1, 3):
        feed = np.random.default_rng(batch).standard_normal((batch, 8)).astype(np.float32)
        ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": feed})[0]
        close(ref, runner.run([feed])[0], 1e-4)


QUANT_MODES = {"fp16": (ConvertOptions(fp16=True), 0.02),
               "dynamic": (ConvertOptions(quantize="dynamic"), 0.02),
               "int8": (ConvertOptions(quantize="int8", calibration="random"), 0.15)}


@pytest.mark.parametrize("mode", sorted(QUANT_MODES))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_quantized(case: Case, mode: str) -> None:
    """Every table op still loads, runs and stays close when quantized."""
    options, tol = QUANT_MODES[mode]
    model, feeds = build_case(case)
    ref, got, _ = run_both(model, feeds, ConvertOptions.from_kwargs(options))
    for r, g in zip(ref, got, strict=True):
        r = np.asarray(r)
        if r.dtype.kind in "biu":
            np.testing.assert_array_equal(r, g)
        else:
            assert np.abs(r - g).max() <= tol * max(float(np.abs(r).max()), 1e-6)


def test_einsum_three_operands_float() -> None:
    """Three operands are contracted pairwise (float only: uncalibrated int8 of a chain of
    run-time BATCH_MATMULs is outside the quantized table's tolerance)."""
    case = Case("einsum_chain", "Einsum", [("a", [2, 3]), ("b", [3, 4]), ("c", [4, 2])],
                attrs={"equation": "ij,jk,kl->il"})
    model, feeds = build_case(case)
    ref, got, _ = run_both(model, feeds)
    close(np.asarray(ref[0]), got[0], 1e-4)


def test_gather_runtime_negative_indices() -> None:
    """GATHER refuses negative positions at run time: they are wrapped before it."""
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [3])
    model = make_model([node], [x, i], ["y"], {})
    feeds = {"x": w(2, 5), "i": np.asarray([-1, 0, -5], np.int64)}
    ref, got, _ = run_both(model, feeds)
    close(np.asarray(ref[0]), got[0], 0.0)


def test_optional_graph_input_refused() -> None:
    """Optional / sequence values have no TFLite tensor: refused, not written."""
    opt = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    node = helper.make_node("Identity", ["o"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_value_info("o", opt)],
                              [helper.make_value_info("y", opt)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedOpsError, match=r"graph input of type Optional"):
        convert_to_tflite(ir.serde.deserialize_model(model))


def test_int8_calibration_ignores_non_finite_activations() -> None:
    """An activation holding -inf at run time (a mask: Where(x > 0, x, -inf), as in a
    causal decoder) is given the range of its finite values, and the int8 conversion
    completes: it used to crash on a NaN scale (an untyped ValueError)."""
    from ai_edge_litert import schema_py_generated as schema

    from modelconv.workers.litert import LiteRTModel

    graph = helper.make_graph(
        [helper.make_node("Greater", ["x", "zero"], ["keep"]),
         helper.make_node("Where", ["keep", "x", "ninf"], ["m"]),
         helper.make_node("Softmax", ["m"], ["y"], axis=-1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
         onnx.numpy_helper.from_array(np.array(-np.inf, np.float32), "ninf")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    floats = convert_to_tflite(ir.serde.deserialize_model(model))
    count = schema.Model.GetRootAs(floats, 0).Subgraphs(0).TensorsLength()
    feed = np.array([[0.5, -0.5, 2.0, -2.0], [-0.5, 0.25, 1.0, -1.0]], np.float32)
    interp = LiteRTModel(floats, threads=1, preserve_all=True, describe=False)
    ranges = interp.minmax({0: feed}, list(range(count)))
    assert len(ranges) >= 3
    assert all(np.isfinite(lo) and np.isfinite(hi) for lo, hi in ranges.values()), ranges
    data = convert_to_tflite(ir.serde.deserialize_model(model),
                             ConvertOptions(quantize="int8", calibration="random"))
    assert LiteRTRunner(data).run([feed])[0].shape == (2, 4)
