"""The pass pipelines run through onnx_ir's pass manager: a failing pass is named."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelconv.errors import ExportError
from modelconv.passes import cleanup
from modelconv.passes.fuse_batchnorm import FuseBatchNormPass


def _model() -> ir.Model:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"]),
                               helper.make_node("Relu", ["c"], ["y"])], "g", [x], [y], [w])
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


def _boom(self: object, model: ir.Model) -> ir.passes.PassResult:
    raise RuntimeError("boom")


def test_cleanup_names_the_failing_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FuseBatchNormPass, "call", _boom)
    with pytest.raises(ir.passes.PassError, match="FuseBatchNormPass") as info:
        cleanup(_model())
    assert "FoldConstantsPass" in str(info.value)  # and the passes that ran before it


def test_tflite_fold_names_the_failing_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ai_edge_litert")
    from modelconv.exporters.tflite import prepare
    from modelconv.passes.constant_folding import FoldConstantsPass

    monkeypatch.setattr(FoldConstantsPass, "call", _boom)
    with pytest.raises(ExportError, match=r"FoldConstantsPass failed: boom"):
        prepare.infer_and_fold(_model())
