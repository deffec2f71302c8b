"""Ops without a TFLite lowering are expanded into their ONNX function body
(modelconv/passes/expand_functions.py), and Scan is unrolled (passes/unroll_scan.py): what
the node tests do not show on their own.

The node suite (tests/onnx_conformance.py) runs the ops themselves (Attention, Swish,
SoftmaxCrossEntropyLoss, ...); here: the source name carried onto the body, the body for the
model's opset version (none: still refused, naming the op), the schema's attribute defaults,
float16 whole ops computed in float32, nested functions, and Scan's reverse directions and
non-zero axes.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

pytest.importorskip("ai_edge_litert")

from modelconv.errors import UnsupportedOpsError
from modelconv.exporters.tflite import convert_to_tflite
from modelconv.ir.builder import SOURCE_KEY
from modelconv.passes.expand_functions import ExpandFunctionsPass, function_body
from modelconv.passes.shape_inference import ShapeInferencePass
from modelconv.verification.runners_litert import LiteRTRunner


def _model(op: str, opset: int, dtype: int = TensorProto.FLOAT, shape: tuple[int, ...] = (2, 5),
           **attrs: object) -> ir.Model:
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    node.metadata_props.add(key=SOURCE_KEY, value="block.act")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, shape)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ir.serde.deserialize_model(proto)


def _run(model: ir.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(LiteRTRunner(convert_to_tflite(model)).run([x])[0])


def test_body_replaces_the_node_and_keeps_its_source_name() -> None:
    model = _model("Swish", 24, alpha=0.5)
    ShapeInferencePass()(model)
    assert ExpandFunctionsPass(lambda n: n.op_type == "Swish")(model).modified
    ops = [n.op_type for n in model.graph]
    assert "Swish" not in ops and "Sigmoid" in ops
    assert {n.metadata_props.get(SOURCE_KEY) for n in model.graph} == {"block.act"}
    assert model.graph.outputs[0].name == "y"
    x = np.linspace(-4, 4, 10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_allclose(_run(_model("Swish", 24, alpha=0.5), x),
                               x / (1 + np.exp(-0.5 * x)), atol=1e-6)


def test_schema_default_fills_an_omitted_attribute() -> None:
    # ThresholdedRelu's body reads alpha by reference; the node leaves it at its default 1.0
    x = np.asarray([[-2, 0.5, 1.0, 1.5, 3]] * 2, np.float32)
    np.testing.assert_array_equal(_run(_model("ThresholdedRelu", 22), x),
                                  np.where(x > 1.0, x, 0))


def test_no_body_at_the_models_opset_is_still_refused_by_name() -> None:
    # Shrink has a function body from opset 18 on; at opset 9 there is none to expand
    old = _model("Shrink", 9)
    assert function_body(next(iter(old.graph)), old.opset_imports) is None
    new = _model("Shrink", 18)
    body = function_body(next(iter(new.graph)), new.opset_imports)
    assert body is not None and len(body.outputs) == 1
    model = _model("Unique", 22, shape=(1, 2, 4))  # no body, no lowering
    with pytest.raises(UnsupportedOpsError, match="Unique"):
        convert_to_tflite(model)


def test_float16_whole_op_runs_its_body_in_float32() -> None:
    # Swish in float16 steps (Mul, Sigmoid, Mul each rounded) is ulps off the op's value
    x = np.linspace(-6, 6, 10).astype(np.float16).reshape(2, 5)
    got = _run(_model("Swish", 24, TensorProto.FLOAT16), x)
    assert got.dtype == np.float16
    want = (x.astype(np.float64) / (1 + np.exp(-x.astype(np.float64)))).astype(np.float16)
    np.testing.assert_array_equal(got, want)


def test_nested_functions_are_expanded_in_later_rounds() -> None:
    # SwiGLU's body (Swish(A) * B) calls Swish, itself a function
    node = helper.make_node("SwiGLU", ["a", "b"], ["y"], alpha=1.5)
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4]) for n in "aby"]
    graph = helper.make_graph([node], "g", info[:2], info[2:])
    model = ir.serde.deserialize_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)]))
    a = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    b = np.linspace(1, 2, 8, dtype=np.float32).reshape(2, 4)
    got = LiteRTRunner(convert_to_tflite(model)).run([a, b])[0]
    np.testing.assert_allclose(got, a / (1 + np.exp(-1.5 * a)) * b, atol=1e-5)


@pytest.mark.parametrize(("in_dir", "out_dir", "axis"), [(0, 0, 0), (1, 0, 1), (0, 1, 1),
                                                         (1, 1, 0)])
def test_scan_unrolled_in_every_direction(in_dir: int, out_dir: int, axis: int) -> None:
    # running sum over the scan axis: s_t = s_{t-1} + x_t, y_t = s_t * w (w from outside)
    import onnxruntime as ort

    f = TensorProto.FLOAT
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
         helper.make_node("Mul", ["s_out", "w"], ["y_t"])], "body",
        [helper.make_tensor_value_info(n, f, [3]) for n in ("s_in", "x_t")],
        [helper.make_tensor_value_info(n, f, [3]) for n in ("s_out", "y_t")])
    xs_shape = [4, 3] if axis == 0 else [3, 4]
    scan = helper.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], body=body,
                            num_scan_inputs=1, scan_input_directions=[in_dir],
                            scan_output_directions=[out_dir], scan_input_axes=[axis],
                            scan_output_axes=[axis])
    graph = helper.make_graph(
        [scan], "g", [helper.make_tensor_value_info("s0", f, [3]),
                      helper.make_tensor_value_info("xs", f, xs_shape)],
        [helper.make_tensor_value_info("s_final", f, [3]),
         helper.make_tensor_value_info("ys", f, xs_shape)],
        initializer=[helper.make_tensor("w", f, [3], [1.0, -2.0, 0.5])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    rng = np.random.default_rng(0)
    s0 = rng.standard_normal(3).astype(np.float32)
    xs = rng.standard_normal(xs_shape).astype(np.float32)
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]
                                ).run(None, {"s0": s0, "xs": xs})
    model = ir.serde.deserialize_model(proto)
    got = LiteRTRunner(convert_to_tflite(model)).run([s0, xs])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_refused_body_ops_name_the_op_they_came_from() -> None:
    # Celu has a lowering, float32 only; its bfloat16 body is checked op by op and refused
    model = _model("Celu", 28, TensorProto.BFLOAT16, alpha=2.0)
    with pytest.raises(UnsupportedOpsError) as info:
        convert_to_tflite(model)
    keys = list(info.value.unsupported)
    assert keys and all("in the ONNX function body of Celu" in k for k in keys), keys
    assert all(places == ["block.act"] for places in info.value.unsupported.values())
