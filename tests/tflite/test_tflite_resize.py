"""ONNX Resize (every official backend node case) and training-mode Dropout for TFLite:
each case either runs in LiteRT with the case's expected output, or is refused at export
with an UnsupportedOpsError naming the op. Never a wrong answer."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

pytest.importorskip("ai_edge_litert")

from modelconv.errors import UnsupportedOpsError
from modelconv.exporters.tflite import convert_to_tflite
from tests.litert_isolated import IsolatedLiteRT


def _node_cases(prefixes: tuple[str, ...]) -> list[Any]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [c for c in collect_testcases() if c.name.startswith(prefixes)]


_CASES = _node_cases(("test_resize_", "test_dropout", "test_training_dropout"))
RESIZE = [c for c in _CASES if c.name.startswith("test_resize_")]
DROPOUT = [c for c in _CASES if "dropout" in c.name]

# Cases LiteRT's resize kernels express exactly: these must convert and match.
MUST_CONVERT = {
    "test_resize_upsample_scales_nearest", "test_resize_upsample_sizes_nearest",
    "test_resize_downsample_scales_nearest", "test_resize_upsample_scales_linear",
    "test_resize_upsample_scales_linear_align_corners",
}


def frozen(case: Any) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray]]:
    """The case's model with every input but the first made a constant from its data."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    inputs, outputs = case.data_sets[0]
    names = [v.name for v in model.graph.input]
    for name, arr in list(zip(names, inputs, strict=True))[1:]:
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    del model.graph.input[1:]
    return model, {names[0]: np.asarray(inputs[0])}, [np.asarray(o) for o in outputs]


@pytest.fixture(scope="module")
def litert() -> Iterator[IsolatedLiteRT]:
    worker = IsolatedLiteRT()
    yield worker
    worker.close()


def ok_or_refused(case: Any, litert: IsolatedLiteRT, op: str) -> str:
    model, feeds, expected = frozen(case)
    try:
        data = convert_to_tflite(ir.serde.deserialize_model(model))
    except UnsupportedOpsError as exc:
        assert all(key.startswith(op) for key in exc.unsupported), exc.unsupported
        return "refused"
    got = litert.run(data, feeds)
    assert got.status == "ok", got.message
    for want, out in zip(expected, got.outputs, strict=True):
        assert out.shape == want.shape
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    return "ok"


@pytest.mark.parametrize("case", RESIZE, ids=[c.name for c in RESIZE])
def test_resize_node_case(case: Any, litert: IsolatedLiteRT) -> None:
    outcome = ok_or_refused(case, litert, "Resize")
    if case.name in MUST_CONVERT:
        assert outcome == "ok"


def test_resize_cases_found() -> None:
    assert len(RESIZE) >= 30 and {c.name for c in RESIZE} >= MUST_CONVERT


@pytest.mark.parametrize("case", DROPOUT, ids=[c.name for c in DROPOUT])
def test_dropout_node_case(case: Any, litert: IsolatedLiteRT) -> None:
    """Inference Dropout is the identity (its mask all True); training mode is refused."""
    outcome = ok_or_refused(case, litert, "Dropout")
    assert outcome == ("refused" if "training" in case.name else "ok")


RESIZE_VS_ORT = [
    # (name, input H/W, scales or None, sizes or None, attributes, expected outcome)
    ("linear_half_pixel_down2_scales", (8, 8), (0.5, 0.5), None, {"mode": "linear"}, "ok"),
    ("linear_pytorch_down2_sizes", (8, 6), None, (4, 3),
     {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, "ok"),
    ("linear_pytorch_to_1", (4, 4), None, (1, 2),
     {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, "ok"),
    ("linear_scales_0p6_inexact", (4, 4), (0.6, 0.6), None, {"mode": "linear"}, "ok"),
    ("linear_scales_0p6_exact", (5, 5), (0.6, 0.6), None, {"mode": "linear"}, "ok"),
    ("linear_antialias_up", (3, 3), (2.0, 2.0), None, {"mode": "linear", "antialias": 1}, "ok"),
    ("linear_antialias_down", (8, 8), (0.5, 0.5), None, {"mode": "linear", "antialias": 1},
     "ok"),
    ("linear_align_corners_sizes", (3, 4), None, (7, 5),
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, "ok"),
    ("linear_asymmetric_up2", (3, 4), (2.0, 2.0), None,
     {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, "ok"),
    ("nearest_default_up3", (3, 4), (3.0, 3.0), None, {"mode": "nearest"}, "ok"),
    ("nearest_default_down2", (8, 8), (0.5, 0.5), None, {"mode": "nearest"}, "ok"),
    ("nearest_floor_asymmetric_up2", (3, 4), None, (6, 8),
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
      "nearest_mode": "floor"}, "ok"),
    ("nearest_ceil_half_pixel_up2", (3, 4), (2.0, 2.0), None,
     {"mode": "nearest", "nearest_mode": "ceil"}, "ok"),
    ("cubic_exclude_outside_down", (8, 6), (0.5, 0.5), None,
     {"mode": "cubic", "exclude_outside": 1, "cubic_coeff_a": -0.5}, "ok"),
    ("cubic_antialias_down", (8, 8), (0.4, 0.6), None, {"mode": "cubic", "antialias": 1}, "ok"),
    ("nearest_not_smaller", (3, 4), None, (5, 5),
     {"mode": "nearest", "keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]}, "ok"),
    ("linear_axes_3_2", (3, 4), (1.5, 2.0), None, {"mode": "linear", "axes": [3, 2]}, "ok"),
    ("cubic_up2", (3, 4), (2.0, 2.0), None, {"mode": "cubic"}, "ok"),
]


@pytest.mark.parametrize(("name", "hw", "scales", "sizes", "attrs", "expect"), RESIZE_VS_ORT,
                         ids=[r[0] for r in RESIZE_VS_ORT])
def test_resize_against_onnxruntime(name: str, hw: tuple[int, int], scales: Any, sizes: Any,
                                    attrs: dict[str, Any], expect: str,
                                    litert: IsolatedLiteRT) -> None:
    """Down- and upsampling in every coordinate mode: exact flags or a typed refusal."""
    import onnxruntime as ort

    consts = [onnx.numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    ins = ["x", "roi"]
    listed = "axes" in attrs  # scales / sizes of the listed axes only
    if scales is not None:
        consts.append(onnx.numpy_helper.from_array(
            np.asarray([*([] if listed else [1, 1]), *scales], np.float32), "sc"))
        ins.append("sc")
    else:
        consts.append(onnx.numpy_helper.from_array(
            np.asarray([*([] if listed else [1, 2]), *sizes], np.int64), "sz"))
        ins += ["", "sz"]
    node = helper.make_node("Resize", ins, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, *hw])],
        [helper.make_value_info("y", onnx.TypeProto())], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.graph.output[0].CopyFrom(model.graph.value_info[0] if model.graph.value_info
                                   else model.graph.output[0])
    x = np.random.default_rng(0).standard_normal((1, 2, *hw)).astype(np.float32)
    try:
        data = convert_to_tflite(ir.serde.deserialize_model(model))
    except UnsupportedOpsError as exc:
        assert next(iter(exc.unsupported)).startswith("Resize ("), exc.unsupported
        assert expect == "refused"
        return
    assert expect == "ok"
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = litert.run(data, {"x": x})
    assert got.status == "ok", got.message
    np.testing.assert_allclose(got.outputs[0], ref, rtol=1e-5, atol=1e-5)


def test_dropout_runtime_training_mode_refused() -> None:
    """A training_mode that is a graph input cannot be known at export: refused."""
    node = helper.make_node("Dropout", ["x", "", "t"], ["y"], name="drop")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                      helper.make_tensor_value_info("t", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedOpsError) as info:
        convert_to_tflite(ir.serde.deserialize_model(model))
    assert info.value.unsupported == {"Dropout (run-time training_mode)": ["drop"]}


@pytest.mark.parametrize(("op", "outputs", "attrs", "key"), [
    ("BatchNormalization", ["y"], {"training_mode": 1}, "BatchNormalization (training_mode=1)"),
    ("BatchNormalization", ["y", "rm", "rv"], {"training_mode": 1},
     "BatchNormalization (training_mode=1)"),
])  # LayerNormalization's Mean / InvStdDev are lowered (test_tflite_ops: layernorm_stats)
def test_normalisation_training_outputs_refused(op: str, outputs: list[str],
                                                attrs: dict[str, Any], key: str) -> None:
    """Training-mode statistics are refused by name, not lowered as inference."""
    rng = np.random.default_rng(0)
    n_params = 4 if op == "BatchNormalization" else 2
    params = [onnx.numpy_helper.from_array(rng.random(3).astype(np.float32) + 0.5, f"p{k}")
              for k in range(n_params)]
    node = helper.make_node(op, ["x", *(p.name for p in params)], outputs, name="norm", **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 3])],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outputs], params)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model = onnx.shape_inference.infer_shapes(model)
    for out in model.graph.output:
        for info_ in model.graph.value_info:
            if info_.name == out.name:
                out.CopyFrom(info_)
    with pytest.raises(UnsupportedOpsError) as info:
        convert_to_tflite(ir.serde.deserialize_model(model))
    assert info.value.unsupported == {key: ["norm"]}
