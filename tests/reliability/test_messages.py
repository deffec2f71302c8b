"""Messages say what happened: format detection names pickles and bad safetensors headers,
pickled modules are named (and load under --trust-code), optional outputs are named,
progress never claims a failed stage, and options without effect are refused."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelconv.cli import main
from tests.conftest import CliRunner
from tests.hostile.corpus import CNN, MARKER, _RunsCode


def test_safetensors_header_claiming_2_60_bytes(tmp_path: Path,
                                                cli: CliRunner) -> None:
    src = tmp_path / "w.safetensors"
    src.write_bytes(struct.pack("<Q", 1 << 60) + b'{"w": {"dtype": "F32"}}')
    code, err = cli(["inspect", str(src)])
    assert code == 2 and "error (ModelLoadError)" in err, err
    assert f"declares {1 << 60} bytes" in err and "text" not in err


@pytest.mark.parametrize("protocol", [0, 1])
def test_protocol_0_and_1_pickles_are_named(protocol: int, tmp_path: Path,
                                            cli: CliRunner) -> None:
    pytest.importorskip("torch")
    src = tmp_path / "w.pt"
    src.write_bytes(pickle.dumps({"0.weight": [1.0, 2.0]}, protocol=protocol))
    code, err = cli(["convert", str(src), str(tmp_path / "o.onnx"), "--quiet",
                      "--model", "tests.hostile.archs:tiny_mlp"])
    assert code == 2 and "error (ModelLoadError)" in err and "protocol 0 or 1" in err, err
    assert "onnx" not in err.split("protocol")[0]


def test_protocol_0_pickle_with_code_is_unsafe(tmp_path: Path,
                                               cli: CliRunner) -> None:
    pytest.importorskip("torch")
    src = tmp_path / "evil.pt"
    src.write_bytes(pickle.dumps(_RunsCode(tmp_path), protocol=0))
    code, err = cli(["convert", str(src), str(tmp_path / "o.onnx"), "--quiet",
                      "--model", "tests.hostile.archs:tiny_mlp"])
    assert code == 2 and "error (UnsafeModelError)" in err and "system" in err, err
    assert not (tmp_path / MARKER).exists()


def test_whole_pickled_module(tmp_path: Path, cli: CliRunner) -> None:
    torch = pytest.importorskip("torch")
    src = tmp_path / "whole.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3)), src)
    code, err = cli(["convert", str(src), str(tmp_path / "o.onnx"), "--quiet",
                      "--input-shape", "1,4"])
    assert code == 2 and "error (UnsafeModelError)" in err, err
    assert "whole pickled nn.Module (Sequential)" in err and "--trust-code" in err
    assert err.rstrip().endswith("torch.save(model.state_dict(), path)"), err
    code, err = cli(["convert", str(src), str(tmp_path / "o.onnx"), "--quiet",
                      "--input-shape", "1,4", "--trust-code"])
    assert code == 0, err
    assert (tmp_path / "o.onnx").exists()


def _norm_model(path: Path, op: str) -> Path:
    if op == "LayerNormalization":
        inits = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in "sb"]
        node = helper.make_node(op, ["x", "s", "b"], ["y", "Mean", "InvStd"], axis=-1)
        shape, extra = [2, 4], helper.make_tensor_value_info("Mean", TensorProto.FLOAT, [2, 1])
        opset = 17
    else:
        inits = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in "sbmv"]
        node = helper.make_node(op, ["x", "s", "b", "m", "v"], ["y", "Mean", "Var"],
                                training_mode=1)
        shape, extra = [2, 4, 3, 3], helper.make_tensor_value_info("Mean", TensorProto.FLOAT,
                                                                   [4])
        opset = 15
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, shape), extra], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def test_training_outputs_are_named(tmp_path: Path, cli: CliRunner) -> None:
    pytest.importorskip("ai_edge_litert")
    src = _norm_model(tmp_path / "n.onnx", "BatchNormalization")
    code, err = cli(["convert", str(src), str(tmp_path / "o.tflite"), "--quiet"])
    assert code == 2 and "error (UnsupportedOpsError)" in err, err
    assert "used before it is produced" not in err
    assert "training_mode=1" in err


def test_layernorm_statistics_outputs_convert(tmp_path: Path,
                                              cli: CliRunner) -> None:
    """LayerNormalization's Mean output is an inference value: lowered and verified."""
    pytest.importorskip("ai_edge_litert")
    src = _norm_model(tmp_path / "n.onnx", "LayerNormalization")
    code, err = cli(["convert", str(src), str(tmp_path / "o.tflite"), "--quiet"])
    assert code == 0, err


def test_used_optional_output_without_a_check_is_named(tmp_path: Path) -> None:
    """The net under every lowering: an output it did not produce is named."""
    pytest.importorskip("ai_edge_litert")
    import onnx_ir as ir

    from modelconv.errors import UnsupportedOpsError
    from modelconv.exporters.tflite.export import lower
    from modelconv.exporters.tflite.registry import LOWERINGS

    model = ir.from_proto(onnx.load(str(_norm_model(tmp_path / "n.onnx",
                                                    "BatchNormalization"))))
    saved = LOWERINGS._checks.pop("BatchNormalization")
    try:
        with pytest.raises(UnsupportedOpsError, match="BatchNormalization output 1 'Mean'"):
            lower(model, {})
    finally:
        LOWERINGS._checks["BatchNormalization"] = saved


def test_failed_import_is_not_reported_done(tmp_path: Path,
                                            cli: CliRunner) -> None:
    src = tmp_path / "neg.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    code, err = cli(["convert", str(src), str(tmp_path / "o.onnx")])
    assert code == 2 and "import failed" in err and "import done" not in err, err


def test_a_stage_reporting_itself_done_early_is_not_believed() -> None:
    from modelconv.api import _stage
    from modelconv.options import ConvertOptions

    seen: list[tuple[str, float]] = []
    opts = ConvertOptions(progress=lambda stage, f: seen.append((stage, f)))
    with pytest.raises(RuntimeError), _stage({}, "import", opts):
        opts.report_progress("import", 1.0)  # an importer saying "done" before it is
        raise RuntimeError("later failure")
    assert ("import", 1.0) not in seen


@pytest.mark.parametrize("extra, needle", [
    (["--batch-size", "4", "mlp"], "--batch-size (batch_size) has no effect here"),
    (["--dim", "seq=4"], "--dim seq: no input has a dimension of that name"),
    (["--opset", "18", "--to", "tflite"], "--opset (opset) has no effect for a tflite output"),
    (["--calibration", "x.npz"], "--calibration (calibration) has no effect without"),
    (["--int8-io", "--to", "tflite"], "--int8-io (int8_io) has no effect without"),
    (["--int8-io"], "--int8-io (int8_io) has no effect for an ONNX output"),
    (["--nhwc-io"], "--nhwc-io (nhwc_io) has no effect for an ONNX output"),
    (["--no-verify", "--seed", "3"], "--seed (seed) has no effect with --no-verify"),
    (["--no-verify", "--rtol", "0.1"], "--rtol (rtol) has no effect with --no-verify"),
    (["--no-verify", "--report", "r.json"], "--report has no effect with --no-verify"),
    (["--signature", "other"], "--signature (signature) has no effect for a onnx source"),
    (["--model", "x:y"], "--model (model) has no effect for a onnx source"),
    (["--input-shape", "1,3,32,32"], "--input-shape (input_shapes) has no effect"),
    (["--dynamic-batch"], "--dynamic-batch (dynamic_batch) has no effect"),
    (["--trust-code"], "--trust-code (trust_code) has no effect for a onnx source"),
], ids=lambda v: v[0] if isinstance(v, list) else "")
def test_option_without_effect_is_refused(extra: list[str], needle: str, tmp_path: Path,
                                          cli: CliRunner) -> None:
    out = tmp_path / ("o.tflite" if "tflite" in extra else "o.onnx")
    src = CNN.with_name("mlp.onnx") if "mlp" in extra else CNN  # mlp: static [2, 16]
    extra = [e for e in extra if e not in ("--to", "tflite", "mlp")]
    code, err = cli(["convert", str(src), str(out), "--quiet", *extra])
    assert code == 2 and "error (OptionsError)" in err and needle in err, err
    assert os.listdir(tmp_path) == []


def test_batch_size_with_a_dynamic_batch_is_accepted(tmp_path: Path) -> None:
    src = tmp_path / "dyn.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    assert main(["convert", str(src), str(tmp_path / "o.onnx"), "--quiet", "--batch-size",
                 "4", "--dim", "N=4"]) == 0


def test_pt2_dynamic_batch_is_refused(tmp_path: Path, cli: CliRunner) -> None:
    pytest.importorskip("torch")
    from tests.hostile.pt2 import base_pt2

    code, err = cli(["convert", str(base_pt2(tmp_path)), str(tmp_path / "o.onnx"), "--quiet",
                      "--dynamic-batch"])
    assert code == 2 and "error (OptionsError)" in err and "dynamic_shapes" in err, err
