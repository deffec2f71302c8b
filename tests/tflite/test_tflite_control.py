"""If lowered inline: a run-time condition evaluates both branches and selects; a constant
condition inlines the taken branch only; branches reading values the layout passes may have
changed are refused by name. LiteRT runs in a child process."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("ai_edge_litert")

from modelconv.errors import UnsupportedOpsError
from modelconv.exporters.tflite import convert_to_tflite
from tests.litert_isolated import IsolatedLiteRT


@pytest.fixture(scope="module")
def litert() -> Iterator[IsolatedLiteRT]:
    worker = IsolatedLiteRT()
    yield worker
    worker.close()


def _branch(name: str, op: str, operand: str) -> onnx.GraphProto:
    k = numpy_helper.from_array(np.asarray([2.0], np.float32), f"{name}_k")
    return helper.make_graph(
        [helper.make_node("Constant", [], [f"{name}_c"], value=k),
         helper.make_node(op, [operand, f"{name}_c"], [f"{name}_out"])],
        name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [2, 3])])


def _model(cond: bool | None = None, operand: str = "x") -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("If", ["cond"], ["y"],
                              then_branch=_branch("then", "Add", operand),
                              else_branch=_branch("else", "Mul", operand))]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    inits = []
    if cond is None:
        inputs.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    else:
        inits.append(numpy_helper.from_array(np.asarray(cond), "cond"))
    graph = helper.make_graph(nodes, "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


X = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)


@pytest.mark.parametrize("cond", [True, False])
def test_if_runtime_condition_selects(cond: bool, litert: IsolatedLiteRT) -> None:
    """Both branches run; the condition fed at run time picks x + 2 or x * 2."""
    data = convert_to_tflite(ir.serde.deserialize_model(_model()))
    got = litert.run(data, {"x": X, "cond": np.asarray(cond)})
    assert got.status == "ok", got.message
    np.testing.assert_array_equal(got.outputs[0], X + 2 if cond else X * 2)


@pytest.mark.parametrize("cond", [True, False])
def test_if_constant_condition_inlines_taken_branch(cond: bool,
                                                    litert: IsolatedLiteRT) -> None:
    """A constant condition lowers only the taken branch (no SELECT_V2 in the file)."""
    from modelconv.exporters.tflite.export import build_graph
    from modelconv.options import ConvertOptions

    model = ir.serde.deserialize_model(_model(cond))
    codes = [op.code for op in build_graph(model, ConvertOptions()).ops]
    assert "SELECT_V2" not in codes and ("ADD" in codes) == cond and ("MUL" in codes) != cond
    got = litert.run(convert_to_tflite(model), {"x": X})
    assert got.status == "ok", got.message
    np.testing.assert_array_equal(got.outputs[0], X + 2 if cond else X * 2)


def test_if_branch_reading_computed_outer_value_refused() -> None:
    """A branch reading an outer node's output (its layout may change) is refused by name."""
    with pytest.raises(UnsupportedOpsError, match="reads 'r' computed outside the branch"):
        convert_to_tflite(ir.serde.deserialize_model(_model(operand="r")))
