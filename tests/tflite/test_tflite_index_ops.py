"""TFLite lowerings of GatherND / ScatterND (modelconv/exporters/tflite/ops_index.py), each
ONNX node compared between onnxruntime and LiteRT."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("ai_edge_litert") is None:
    pytest.skip("needs litert", allow_module_level=True)

from modelconv.errors import UnsupportedOpsError
from tests.tflite.test_tflite_ops import Case, build_case, close, i64, run_both

IDX2 = np.array([[[1, 0], [0, -1]], [[1, 2], [0, 0]]], np.int64)  # (2, 2, 2) into (2, 3, 4)
IDX1 = np.array([[2], [0]], np.int64)

CASES = [
    Case("gather_nd_const", "GatherND", [("x", [2, 3, 4])], {"i": IDX2}),
    Case("gather_nd_full", "GatherND", [("x", [2, 3, 4])],
         {"i": np.array([[1, 2, 3], [0, -1, 0]], np.int64)}),
    Case("gather_nd_runtime", "GatherND", [("x", [3, 4, 2])], order=["x", "i"],
         int_inputs={"i": ([5, 1], 3)}),
    Case("scatter_nd", "ScatterND", [("x", [3, 4, 2]), ("u", [2, 4, 2])], {"i": IDX1},
         order=["x", "i", "u"]),
    Case("scatter_nd_add", "ScatterND", [("x", [3, 4, 2]), ("u", [3, 2])],
         {"i": np.array([[0, 1], [0, 1], [2, -1]], np.int64)}, {"reduction": "add"},
         order=["x", "i", "u"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op(case: Case) -> None:
    model, feeds = build_case(case)
    ref, got, _ = run_both(model, feeds)
    for r, g in zip(ref, got, strict=True):
        close(np.asarray(r), g, case.tol)


def test_scatter_nd_repeated_indices_refused() -> None:
    case = Case("dup", "ScatterND", [("x", [3, 2]), ("u", [2, 2])], {"i": i64(1, 1).reshape(2, 1)},
                order=["x", "i", "u"])
    model, feeds = build_case(case)
    with pytest.raises(UnsupportedOpsError, match="repeated constant indices"):
        run_both(model, feeds)
