"""A .tflite file that makes LiteRT abort never kills modelconv: the interpreter runs in a
worker process, the abort becomes a RuntimeCrashError (exit 2) naming the file and the op.

The aborting files are written here with the TFLite schema directly (CAST float->int8, then
an int8 ADD / LESS without quantization parameters, then CAST back), so the test does not
depend on what modelconv's exporter accepts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.paths import ROOT

pytest.importorskip("ai_edge_litert")
import flatbuffers
from ai_edge_litert import schema_py_generated as s

from modelconv import cli
from modelconv.errors import RuntimeCrashError
from modelconv.verification.runners_litert import LiteRTRunner
from modelconv.workers import litert as worker


def _tensor(name: str, ttype: int) -> Any:
    t = s.TensorT()
    t.name, t.type, t.shape, t.buffer = name, ttype, [2, 3], 0
    return t


def _op(code: int, ins: list[int], outs: list[int]) -> Any:
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, ins, outs
    return op


def bad_tflite(middle: str) -> bytes:
    """x (float) -> RELU -> CAST int8 -> ``middle`` (int8, unquantized) -> CAST float -> y."""
    out_type = s.TensorType.BOOL if middle == "LESS" else s.TensorType.INT8
    tensors = [_tensor("x", s.TensorType.FLOAT32), _tensor("r", s.TensorType.FLOAT32),
               _tensor("q", s.TensorType.INT8), _tensor("m", out_type),
               _tensor("y", s.TensorType.FLOAT32)]
    codes = []
    for name in ("RELU", "CAST", middle):
        code = s.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = getattr(s.BuiltinOperator, name)
        code.version = 1
        codes.append(code)
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs = tensors, [0], [4]
    graph.operators = [_op(0, [0], [1]), _op(1, [1], [2]), _op(2, [2, 2], [3]),
                       _op(1, [3], [4])]
    sig = s.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs, sig.outputs = [s.TensorMapT()], [s.TensorMapT()]
    sig.inputs[0].name, sig.inputs[0].tensorIndex = "x", 0
    sig.outputs[0].name, sig.outputs[0].tensorIndex = "y", 4
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [graph]
    model.buffers, model.signatureDefs = [s.BufferT()], [sig]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def relu_onnx(path: Path) -> Path:
    """The float model the bad files claim to be: y = relu(x), x: float[2, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


@pytest.mark.parametrize(("middle", "phase"), [("ADD", "preparing"), ("LESS", "running")])
def test_abort_is_a_typed_error_naming_the_op(tmp_path: Path, middle: str, phase: str) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(bad_tflite(middle))
    x = np.ones((2, 3), np.float32)
    with pytest.raises(RuntimeCrashError) as info:
        LiteRTRunner(path).run([x])
    text = str(info.value)
    assert str(path) in text and "SIGABRT" in text and phase in text, text
    assert f"#2 {middle}" in text and "int8[2, 3], int8[2, 3]" in text, text
    assert info.value.exit_code == 2
    # the process (and the shared worker, respawned) still runs models
    np.testing.assert_array_equal(_relu_runner().run([x])[0], x)


def _relu_runner() -> LiteRTRunner:
    import onnx_ir as ir

    from modelconv.exporters.tflite import convert_to_tflite

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return LiteRTRunner(convert_to_tflite(ir.serde.deserialize_model(model)))


def test_models_loaded_before_a_crash_keep_working(tmp_path: Path) -> None:
    runner = _relu_runner()
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    before = worker.shared_worker().generation
    with pytest.raises(RuntimeCrashError):
        LiteRTRunner(bad_tflite("ADD"))
    assert worker.shared_worker().generation == before  # the crash is not yet seen ...
    np.testing.assert_array_equal(runner.run([x])[0], np.maximum(x, 0))  # ... reloaded here
    assert worker.shared_worker().generation == before + 1
    assert runner.intermediates([x], ["y"])["y"].shape == (2, 3)


def test_interpreter_errors_stay_errors_without_a_respawn() -> None:
    runner = _relu_runner()
    generation = worker.shared_worker().generation
    with pytest.raises(worker.LiteRTError, match="nope"):  # the signature has no such input
        runner._model.run_signature("serving_default", {"nope": np.ones(3, np.float32)})
    assert worker.shared_worker().generation == generation


def test_cli_verify_of_an_aborting_file_exits_2_without_traceback(tmp_path: Path) -> None:
    src = relu_onnx(tmp_path / "relu.onnx")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bad_tflite("ADD"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "modelconv", "verify", str(src), str(bad)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "RuntimeCrashError" in proc.stderr and "ADD" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_convert_to_an_aborting_file_exits_2_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from modelconv import api

    def broken_exporter(model: Any, dst: Path, options: Any) -> list[Path]:
        dst.write_bytes(bad_tflite("LESS"))
        return [dst]

    real = api._component
    monkeypatch.setattr(api, "_component", lambda fmt, which: broken_exporter
                        if (fmt, which) == ("tflite", "exporter") else real(fmt, which))
    src = relu_onnx(tmp_path / "relu.onnx")
    dst = tmp_path / "out.tflite"
    assert cli.main(["convert", str(src), str(dst), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "RuntimeCrashError" in err and "LESS" in err and "Traceback" not in err, err
    assert not dst.exists()


def test_worker_package_is_a_leaf() -> None:
    """modelconv.workers imports nothing from the verifier or the importers at module level."""
    import ast

    for path in (ROOT / "modelconv" / "workers").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
        bad = [n for n in names if n.startswith(("modelconv.verification", "modelconv.importers"))]
        assert not bad, (path.name, bad)


def test_scalars_cross_the_worker_pipe_as_scalars() -> None:
    """np.ascontiguousarray turns 0-d into 1-D; a scalar output must stay 0-d (1-D x 1-D
    MatMul returned shape (1,) instead of ())."""
    import numpy as np

    from modelconv.workers.litert import _pack_arrays, _unpack_arrays

    layout, data = _pack_arrays({"s": np.float32(4.0), "v": np.arange(3, dtype=np.int64)})
    back = _unpack_arrays(layout, data)
    assert back["s"].shape == () and float(back["s"]) == 4.0
    assert back["v"].tolist() == [0, 1, 2]


def test_torch_runner_keeps_scalar_feeds_scalar() -> None:
    import numpy as np
    import torch

    from modelconv.ir.info import TensorSpec
    from modelconv.verification.runners_torch import TorchRunner

    seen: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x * 2

    TorchRunner(fn, [TensorSpec("x", "float32", ())], ["y"]).run([np.float32(3.0)])
    assert seen == [()]
