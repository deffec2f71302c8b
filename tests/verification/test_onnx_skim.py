"""The ONNX precision reader skims the file: nodes, inputs and initializer types, weights'
bytes skipped (onnx_skim.skim_graph), with the verdicts of a full parse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelconv.verification.onnx_skim import skim_graph
from modelconv.verification.precision import file_precision, onnx_precision


def _model(path: Path, weight: np.ndarray, *, cast_to: int | None = None,
           quant: bool = False, external: bool = False) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(weight, "w")]
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(
        np.ones(3, np.float32), "c"))]
    if cast_to is not None:
        nodes.append(helper.make_node("Cast", ["w"], ["wc"], to=cast_to))
        nodes.append(helper.make_node("Cast", ["wc"], ["wf"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", ["w"], ["wf"]))
    if quant:  # weight-only DequantizeLinear of a constant: "dynamic"
        inits += [numpy_helper.from_array(np.ones(2, np.int8), "q"),
                  numpy_helper.from_array(np.array(0.5, np.float32), "s")]
        nodes.append(helper.make_node("DequantizeLinear", ["q", "s"], ["dq"]))
    nodes.append(helper.make_node("MatMul", ["x", "wf"], ["y"]))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 19)])
    onnx.save_model(model, str(path), save_as_external_data=external,
                    all_tensors_to_one_file=True, location=f"{path.name}.data",
                    size_threshold=0)
    return path


@pytest.mark.parametrize(("external", "quant"), [(False, False), (True, True)])
def test_skim_matches_a_full_parse(tmp_path: Path, external: bool, quant: bool) -> None:
    path = _model(tmp_path / "m.onnx", np.ones((4, 4), np.float16).astype(np.float32),
                  cast_to=TensorProto.BFLOAT16, quant=quant, external=external)
    full = onnx.load(str(path), load_external_data=False).graph
    skimmed = skim_graph(path)
    assert skimmed.nodes == list(full.node)
    assert skimmed.inputs == list(full.input)
    assert skimmed.initializer_names == [t.name for t in full.initializer]
    assert skimmed.initializer_types == [t.data_type for t in full.initializer]


@pytest.mark.parametrize(("weight", "kwargs", "mode"), [
    (np.ones((64, 64), np.float32), {}, "float32"),
    (np.ones((64, 64), np.float16), {"cast_to": TensorProto.FLOAT}, "float16"),
    (np.ones((64, 64), np.float32), {"cast_to": TensorProto.BFLOAT16}, "bfloat16"),
    (np.ones((64, 64), np.float32), {"quant": True}, "dynamic"),
    (np.ones((64, 64), np.float16), {"cast_to": TensorProto.FLOAT, "external": True},
     "float16"),
])
def test_precision_is_read_without_parsing_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weight: np.ndarray,
        kwargs: dict[str, object], mode: str) -> None:
    path = _model(tmp_path / "m.onnx", weight, **kwargs)  # type: ignore[arg-type]

    def no_full_parse(*args: object, **kw: object) -> None:
        raise AssertionError("the whole ModelProto was parsed")

    monkeypatch.setattr(onnx, "load", no_full_parse)
    monkeypatch.setattr(onnx, "load_model", no_full_parse)
    assert onnx_precision(path) == mode


def test_a_truncated_or_empty_file_has_no_precision(tmp_path: Path) -> None:
    path = _model(tmp_path / "m.onnx", np.ones((256, 256), np.float32))
    data = path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:len(data) // 2])
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert file_precision(tmp_path / "cut.onnx", "onnx") is None
    assert skim_graph(tmp_path / "empty.onnx").nodes == []
    with pytest.raises(ValueError, match=r"truncated|declares|varint"):
        skim_graph(tmp_path / "cut.onnx")
