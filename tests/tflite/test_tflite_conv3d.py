"""3-D Conv / ConvTranspose -> LiteRT CONV_3D / CONV_3D_TRANSPOSE, against onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from ai_edge_litert import schema_py_generated as s
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv.errors import UnsupportedOpsError

CASES: list[tuple[str, list[int], dict[str, Any], list[int]]] = [
    ("Conv", [4, 3, 3, 3, 2], {"pads": [1, 1, 0, 1, 1, 1], "strides": [1, 2, 1]}, [1, 3, 5, 6, 7]),
    ("Conv", [4, 3, 2, 3, 3], {"auto_pad": "SAME_LOWER", "strides": [2, 2, 1]}, [2, 3, 4, 5, 6]),
    ("Conv", [4, 3, 2, 3, 3], {"dilations": [1, 2, 2], "pads": [0, 1, 2, 1, 0, 0]},
     [1, 3, 4, 7, 8]),
    ("ConvTranspose", [3, 4, 3, 3, 2], {"strides": [2, 1, 2], "pads": [1, 0, 0, 1, 1, 0]},
     [1, 3, 3, 4, 5]),
    ("ConvTranspose", [3, 2, 2, 2, 2], {}, [1, 3, 3, 3, 3]),
    ("ConvTranspose", [3, 2, 3, 3, 3], {"auto_pad": "SAME_UPPER", "strides": [2, 2, 2]},
     [1, 3, 3, 3, 3]),
]


def _model(op: str, wshape: list[int], attrs: dict[str, Any], xshape: list[int],
           path: Path) -> Path:
    rng = np.random.default_rng(len(path.name))
    out_ch = wshape[1] if op == "ConvTranspose" else wshape[0]
    inits = [numpy_helper.from_array(rng.standard_normal(wshape).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(out_ch).astype(np.float32), "B")]
    nodes = [helper.make_node(op, ["x", "W", "B"], ["c"], **attrs),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list("abcde"))], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _op_names(path: Path) -> set[str]:
    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    return {names[model.operatorCodes[op.opcodeIndex].builtinCode]
            for op in model.subgraphs[0].operators}


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_conv3d_matches_onnxruntime(case: Any, tmp_path: Path) -> None:
    op, wshape, attrs, xshape = case
    src = _model(op, wshape, attrs, xshape, tmp_path / "m.onnx")
    dst = tmp_path / "m.tflite"
    result = modelconv.convert(src, dst)
    assert result.report is not None and result.report.passed and not result.report.skipped
    assert max(o.max_abs for o in result.report.outputs) < 1e-4
    kernel = "CONV_3D_TRANSPOSE" if op == "ConvTranspose" else "CONV_3D"
    assert kernel in _op_names(dst)


def test_grouped_conv3d_is_refused_by_name(tmp_path: Path) -> None:
    src = _model("Conv", [4, 1, 3, 3, 3], {"group": 3}, [1, 3, 5, 5, 5], tmp_path / "g.onnx")
    with pytest.raises(UnsupportedOpsError, match="3-D with groups"):
        modelconv.convert(src, tmp_path / "g.tflite")
    assert not (tmp_path / "g.tflite").exists()
