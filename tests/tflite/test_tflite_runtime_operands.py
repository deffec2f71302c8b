"""Run-time (graph-input) operands for TFLite: axes, bounds, pads, repeats, weights and
parameters fed to the kernels that read them as tensors, on shapes other than the ONNX node
tests'; constant operands still fold into constant tensors (no extra ops)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("ai_edge_litert")

from modelconv.errors import UnsupportedOpsError
from modelconv.exporters.tflite import convert_to_tflite
from modelconv.passes.backfill_shapes import BackfillShapesPass
from tests.litert_isolated import IsolatedLiteRT

_NP = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
       np.dtype(np.int32): TensorProto.INT32}


@pytest.fixture(scope="module")
def litert() -> Iterator[IsolatedLiteRT]:
    worker = IsolatedLiteRT()
    yield worker
    worker.close()


def _model(op: str, feeds: dict[str, np.ndarray], out_shape: list[int],
           consts: dict[str, np.ndarray] | None = None, order: list[str] | None = None,
           opset: int = 21, **attrs: Any) -> onnx.ModelProto:
    """One ``op`` node; ``feeds`` become graph inputs, ``consts`` initializers; ``order``
    names the node inputs ('' for an omitted one)."""
    consts = consts or {}
    names = order if order is not None else [*feeds, *consts]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, _NP[v.dtype], list(v.shape)) for k, v in feeds.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], litert: IsolatedLiteRT,
         spec: bool = False) -> tuple[np.ndarray, bytes]:
    """LiteRT's output for ``feeds``, checked against onnxruntime's (``spec``: the ONNX
    reference implementation's); and the file."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    data = convert_to_tflite(ir.serde.deserialize_model(model))
    got = litert.run(data, feeds)
    assert got.status == "ok", got.message
    ref = ReferenceEvaluator(model).run(None, feeds)[0] if spec else \
        ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_allclose(got.outputs[0], ref, rtol=1e-5, atol=1e-5)
    return got.outputs[0], data


def _ops(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    return [names[max(model.operatorCodes[op.opcodeIndex].builtinCode,
                      model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
            for op in model.subgraphs[0].operators]


X = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceLogSumExp", "ReduceL2"])
def test_reduce_runtime_axes(op: str, litert: IsolatedLiteRT) -> None:
    """Negative and unsorted run-time axes, keepdims=0, on a rank-4 input."""
    axes = np.array([-1, 1], np.int64)
    feeds = {"x": X, "axes": axes}
    _run(_model(op, feeds, [2, 4], keepdims=0), feeds, litert)


def test_reduce_constant_axes_fold(litert: IsolatedLiteRT) -> None:
    """Constant axes stay a constant tensor: one SUM op, no CAST / MINIMUM for the axes."""
    model = _model("ReduceSum", {"x": X}, [2, 4], {"axes": np.array([-1, 1], np.int64)},
                   keepdims=0)
    _, data = _run(model, {"x": X}, litert)
    assert _ops(data) == ["SUM"]


def test_slice_runtime_bounds_and_axes(litert: IsolatedLiteRT) -> None:
    """INT64 extremes, a negative step and a start below -dim on run-time axes."""
    feeds = {"x": X, "starts": np.array([-100, 3], np.int64),
             "ends": np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min], np.int64),
             "axes": np.array([1, -2], np.int64), "steps": np.array([2, -1], np.int64)}
    _run(_model("Slice", feeds, [2, 2, 4, 5]), feeds, litert)


def test_slice_constant_bounds_fold(litert: IsolatedLiteRT) -> None:
    consts = {"starts": np.array([1], np.int64), "ends": np.array([4], np.int64),
              "axes": np.array([3], np.int64)}
    _, data = _run(_model("Slice", {"x": X}, [2, 3, 4, 3], consts), {"x": X}, litert)
    assert _ops(data) == ["STRIDED_SLICE"]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_runtime_pads(mode: str, litert: IsolatedLiteRT) -> None:
    """Run-time pads on listed axes (wrap and edge also crop on one side)."""
    pads = np.array([2, -1, 1, 2], np.int64) if mode in ("edge", "wrap") else \
        np.array([2, 1, 1, 2], np.int64)
    feeds = {"x": X, "pads": pads}
    consts = {"value": np.array(1.5, np.float32), "axes": np.array([3, 1], np.int64)}
    out = [2, 4 if mode in ("edge", "wrap") else 6, 4, 8]
    order = ["x", "pads", "value" if mode == "constant" else "", "axes"]
    _run(_model("Pad", feeds, out, consts, order=order, mode=mode), feeds, litert)


def test_pad_runtime_axes(litert: IsolatedLiteRT) -> None:
    feeds = {"x": X, "pads": np.array([1, 0, 2, 3], np.int64),
             "axes": np.array([-1, 0], np.int64)}
    _run(_model("Pad", feeds, [5, 3, 4, 8], order=["x", "pads", "", "axes"]), feeds, litert)


def test_cumulative_runtime_axis(litert: IsolatedLiteRT) -> None:
    feeds = {"x": X, "axis": np.array(-2, np.int64)}
    _run(_model("CumSum", feeds, list(X.shape), reverse=1), feeds, litert)
    # onnxruntime has no CumProd kernel: numpy is the reference (exclusive, reverse)
    schema = onnx.defs.get_schema("CumProd")
    model = _model("CumProd", feeds, list(X.shape), opset=schema.since_version, exclusive=1,
                   reverse=1)
    got = litert.run(convert_to_tflite(ir.serde.deserialize_model(model)), feeds)
    assert got.status == "ok", got.message
    flipped = np.flip(X, axis=2)
    shifted = np.concatenate([np.ones_like(flipped[:, :, :1]), flipped[:, :, :-1]], axis=2)
    np.testing.assert_allclose(got.outputs[0], np.flip(np.cumprod(shifted, axis=2), axis=2),
                               rtol=1e-5, atol=1e-6)


def test_tile_runtime_repeats(litert: IsolatedLiteRT) -> None:
    feeds = {"x": X, "reps": np.array([1, 2, 1, 3], np.int64)}
    _run(_model("Tile", feeds, [2, 6, 4, 15]), feeds, litert)


def test_conv_runtime_weight_grouped(litert: IsolatedLiteRT) -> None:
    x = np.random.default_rng(1).standard_normal((1, 4, 9, 9)).astype(np.float32)
    feeds = {"x": x, "w": np.random.default_rng(2).standard_normal((6, 2, 3, 3))
             .astype(np.float32), "b": np.arange(6, dtype=np.float32)}
    _run(_model("Conv", feeds, [1, 6, 5, 5], group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
         feeds, litert)


def test_batchnorm_runtime_parameters(litert: IsolatedLiteRT) -> None:
    rng = np.random.default_rng(3)
    feeds = {"x": X, **{k: rng.standard_normal(3).astype(np.float32) for k in ("g", "b", "m")},
             "v": rng.random(3).astype(np.float32) + 0.5}
    _run(_model("BatchNormalization", feeds, list(X.shape), epsilon=1e-3), feeds, litert)


@pytest.mark.parametrize("weight_runtime", [False, True])
def test_conv_transpose_group_dilation_output_padding(weight_runtime: bool,
                                                      litert: IsolatedLiteRT) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    feeds = {"x": x, "w": w} if weight_runtime else {"x": x}
    consts = {} if weight_runtime else {"w": w}
    out_h, out_w = 2 * (5 - 1) + 1 + (2 * 2 + 1) - 1, 2 * (6 - 1) + 1 + 2  # ONNX's formula
    _run(_model("ConvTranspose", feeds, [1, 6, out_h, out_w], consts, order=["x", "w"],
                group=2, strides=[2, 2], dilations=[2, 1], pads=[1, 0, 0, 0],
                output_padding=[1, 1]), feeds, litert)


def test_gru_runtime_weights(litert: IsolatedLiteRT) -> None:
    rng = np.random.default_rng(5)
    s, b, i, h = 3, 2, 4, 5
    feeds = {"x": rng.standard_normal((s, b, i)).astype(np.float32),
             "w": rng.standard_normal((1, 3 * h, i)).astype(np.float32),
             "r": rng.standard_normal((1, 3 * h, h)).astype(np.float32),
             "bias": rng.standard_normal((1, 6 * h)).astype(np.float32)}
    _run(_model("GRU", feeds, [s, 1, b, h], hidden_size=h, linear_before_reset=1), feeds,
         litert)


def test_scatter_elements_runtime_indices(litert: IsolatedLiteRT) -> None:
    feeds = {"data": X, "idx": np.array([[[[-1, 0]]], [[[2, 1]]]], np.int64),
             "upd": np.ones((2, 1, 1, 2), np.float32)}
    _run(_model("ScatterElements", feeds, list(X.shape), axis=2), feeds, litert)


def test_center_crop_pad_and_eyelike(litert: IsolatedLiteRT) -> None:
    feeds = {"x": X, "shape": np.array([7, 2], np.int64)}
    _run(_model("CenterCropPad", feeds, [2, 3, 7, 2], axes=[2, 3]), feeds, litert)
    x2 = np.zeros((3, 5), np.float32)
    _run(_model("EyeLike", {"x": x2}, [3, 5], k=-1), {"x": x2}, litert)


def test_resize_runtime_scales_nearest_refused() -> None:
    """Run-time scales with nearest: the index jumps at half-way points, refused."""
    model = _model("Resize", {"x": X, "scales": np.array([1, 1, 2, 2], np.float32)},
                   [2, 3, 8, 10], order=["x", "", "scales"], mode="nearest")
    with pytest.raises(UnsupportedOpsError, match="run-time scales with mode=nearest"):
        convert_to_tflite(ir.serde.deserialize_model(model))


@pytest.mark.parametrize("attrs", [
    {"mode": "linear"},
    {"mode": "cubic", "coordinate_transformation_mode": "align_corners", "exclude_outside": 1},
    {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
], ids=["linear", "cubic_align_exclude", "linear_symmetric"])
def test_resize_runtime_scales(attrs: dict[str, Any], litert: IsolatedLiteRT) -> None:
    """Scales that are not output / input (0.6 of 4 is 2.4 -> 2) computed by ops. For
    align_corners onnxruntime divides by the rounded output length, the spec (and its
    reference implementation, which the node tests come from) by input * scale."""
    feeds = {"x": X, "scales": np.array([1, 1, 0.6, 1.7], np.float32)}
    _run(_model("Resize", feeds, [2, 3, 2, 8], order=["x", "", "scales"], **attrs), feeds,
         litert, spec=True)


def test_resize_runtime_sizes_cubic(litert: IsolatedLiteRT) -> None:
    """Run-time sizes are implied by the static output shape: cubic taps on two axes."""
    feeds = {"x": X, "sizes": np.array([7, 3], np.int64)}
    _run(_model("Resize", feeds, [2, 3, 7, 3], order=["x", "", "", "sizes"], mode="cubic",
                axes=[2, 3]), feeds, litert)


def test_backfill_shapes_through_unary_ops() -> None:
    """The static shape of Log's output flows back to the ReduceSum before it."""
    model = _model("ReduceSum", {"x": X, "axes": np.array([1], np.int64)}, [2, 4, 5],
                   keepdims=0)
    model.graph.node[0].output[0] = "s"
    model.graph.node.append(helper.make_node("Log", ["s"], ["y"]))
    m = ir.serde.deserialize_model(model)
    s_value = m.graph.node(0).outputs[0]
    assert s_value.shape is None
    assert BackfillShapesPass()(m).modified
    assert list(s_value.shape) == [2, 4, 5]  # type: ignore[arg-type]


@pytest.mark.parametrize(("op", "shape", "attrs"), [
    ("MaxPool", [1, 2, 6, 7, 5], {"kernel_shape": [2, 3, 2], "dilations": [2, 1, 2],
                                  "strides": [1, 2, 1], "ceil_mode": 1}),
    ("AveragePool", [1, 3, 11], {"kernel_shape": [3], "dilations": [3], "pads": [2, 1],
                                 "count_include_pad": 1}),
    ("AveragePool", [1, 2, 7, 9], {"kernel_shape": [2, 3], "dilations": [2, 2],
                                   "pads": [1, 0, 1, 2], "strides": [2, 1]}),
    ("LpPool", [1, 2, 9, 8], {"kernel_shape": [3, 2], "p": 3, "pads": [1, 1, 0, 1],
                              "strides": [2, 2]}),
], ids=["max3d_dilated_ceil", "avg1d_dilated_include_pad", "avg2d_dilated", "lp3_2d"])
def test_pool_taps(op: str, shape: list[int], attrs: dict[str, Any],
                   litert: IsolatedLiteRT) -> None:
    """Dilated, 3-D and Lp pooling by taps, against onnxruntime."""
    import onnxruntime as ort

    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    probe = _model(op, {"x": x}, [], opset=19, **attrs)
    probe.graph.output[0].type.tensor_type.ClearField("shape")
    out = ort.InferenceSession(probe.SerializeToString()).run(None, {"x": x})[0]
    _run(_model(op, {"x": x}, list(out.shape), opset=19, **attrs), {"x": x}, litert)


def test_compress_and_reverse_sequence_runtime(litert: IsolatedLiteRT) -> None:
    """Run-time condition (WHERE) and sequence lengths on batch-major data."""
    cond = np.array([True, False, True, True], np.bool_)
    feeds = {"x": X, "cond": cond}
    model = _model("Compress", {"x": X}, [2, 3, 3, 5], axis=2, order=["x", "cond"])
    model.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, [4]))
    _run(model, feeds, litert)
    x = X.reshape(2, 3, 20)
    feeds = {"x": x, "lens": np.array([3, 1], np.int64)}
    _run(_model("ReverseSequence", feeds, [2, 3, 20], batch_axis=0, time_axis=1), feeds,
         litert)


@pytest.mark.parametrize(("shape", "length", "attrs", "out"), [
    ([2, 6, 3, 2], None, {"inverse": 1}, [2, 6, 3, 2]),
    ([2, 5, 3, 1], 8, {"onesided": 1}, [2, 5, 5, 1 * 2]),
    ([1, 4, 3, 2], None, {"inverse": 1, "onesided": 1}, [1, 6, 3, 1]),
], ids=["inverse_complex", "rfft_padded", "irfft"])
def test_dft_matrices(shape: list[int], length: int | None, attrs: dict[str, Any],
                      out: list[int], litert: IsolatedLiteRT) -> None:
    """DFT variants as constant matrices, against the ONNX reference implementation."""
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    axis = 2 if length else 1
    consts = {"axis": np.array(axis, np.int64)}
    if length:
        consts["len"] = np.array(length, np.int64)
    order = ["x", "len" if length else "", "axis"]
    _run(_model("DFT", {"x": x}, out, consts, order=order, opset=20, **attrs), {"x": x},
         litert, spec=True)


@pytest.mark.parametrize("order", [0, 1])
def test_maxpool_indices(order: int, litert: IsolatedLiteRT) -> None:
    """MaxPool's indices output (row- or column-major), batch and channels included."""
    import onnxruntime as ort

    x = np.random.default_rng(8).standard_normal((2, 3, 7, 6)).astype(np.float32)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[3, 2], strides=[2, 2],
                            pads=[1, 0, 1, 1], storage_order=order)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 3]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3, 4, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    got = litert.run(convert_to_tflite(ir.serde.deserialize_model(model)), {"x": x})
    assert got.status == "ok", got.message
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(got.outputs[0], ref[0], rtol=1e-6)
    np.testing.assert_array_equal(got.outputs[1], ref[1])


@pytest.mark.parametrize("sizes_runtime", [False, True])
def test_resize_crop_runtime_roi(sizes_runtime: bool, litert: IsolatedLiteRT) -> None:
    """tf_crop_and_resize with a run-time roi (constant sizes keep the node channels-first:
    the roi is in NCHW order), extrapolated positions filled."""
    sizes = np.array([2, 3, 5, 7], np.int64)
    roi = np.array([0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3], np.float32)
    feeds = {"x": X, "roi": roi, **({"sizes": sizes} if sizes_runtime else {})}
    consts = {} if sizes_runtime else {"sizes": sizes}
    model = _model("Resize", feeds, [2, 3, 5, 7], consts, order=["x", "roi", "", "sizes"],
                   mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                   extrapolation_value=-3.0)
    _run(model, feeds, litert, spec=True)
