"""Declared sizes, odd dtypes, memory exhaustion and closed pipes give a typed error (or a
quiet exit), never a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv.importers.onnx
import modelconv.verification.verifier
from tests.conftest import CliRunner
from tests.hostile.corpus import CNN
from tests.paths import ROOT


def _relu(path: Path, shape: list[int], dtype: int = TensorProto.FLOAT) -> Path:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("y", dtype, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path



def test_input_shape_whose_element_count_overflows_int64(
        tmp_path: Path, cli: CliRunner) -> None:
    src = _relu(tmp_path / "big.onnx", [2 ** 32, 2 ** 32])
    code, err = cli(["convert", str(src), str(tmp_path / "out.onnx"), "--quiet"])
    assert code == 2 and "error (ShapeError)" in err and "18446744073709551616" in err, err
    assert not (tmp_path / "out.onnx").exists()


def test_negative_input_dim(tmp_path: Path, cli: CliRunner) -> None:
    src = _relu(tmp_path / "neg.onnx", [-3, 4])
    code, err = cli(["convert", str(src), str(tmp_path / "out.onnx"), "--quiet"])
    assert code == 2 and "error (ModelLoadError)" in err and "dim 0 = -3" in err, err


def test_complex_tensor_is_refused_without_traceback(
        tmp_path: Path, cli: CliRunner) -> None:
    src = _relu(tmp_path / "c.onnx", [4], TensorProto.COMPLEX64)
    code, err = cli(["convert", str(src), str(tmp_path / "out.onnx"), "--quiet"])
    assert code == 2 and "error (UnsupportedOpsError)" in err and "complex64" in err, err
    assert "InferenceError" not in err


def test_op_type_that_is_not_utf8(tmp_path: Path, cli: CliRunner) -> None:
    data = _relu(tmp_path / "r.onnx", [4]).read_bytes().replace(b"Relu", b"R\xfflu")
    (tmp_path / "r.onnx").write_bytes(data)
    code, err = cli(["inspect", str(tmp_path / "r.onnx")])
    assert code == 2 and "error (ModelLoadError)" in err and "UTF-8" in err, err


def test_library_warnings_print_one_line(tmp_path: Path,
                                         cli: CliRunner) -> None:
    """onnx_ir logs a failed shape inference with its traceback; the CLI shows one line."""
    import logging

    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers.clear()
    try:
        def noisy(*args: object) -> None:
            try:
                raise ValueError("inner detail")
            except ValueError:
                logging.getLogger("onnx_ir.passes").warning("Shape inference failed",
                                                             exc_info=True)
            raise OSError(errno.ENOMEM, "Cannot allocate memory")

        modelconv.importers.onnx.import_onnx, real = noisy, modelconv.importers.onnx.import_onnx
        try:
            code, err = cli(["convert", str(CNN), str(tmp_path / "o.onnx"), "--quiet"])
        finally:
            modelconv.importers.onnx.import_onnx = real
    finally:
        root.handlers[:] = saved
    assert "warning (onnx_ir.passes): Shape inference failed" in err
    assert "inner detail" not in err  # the traceback stays behind --debug
    assert code == 2 and "out of memory" in err, err


def test_out_of_memory_anywhere_is_reported_as_such(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        cli: CliRunner) -> None:
    def oom(*args: object, **kwargs: object) -> None:
        raise MemoryError()

    monkeypatch.setattr(modelconv.verification.verifier, "verify_runners", oom)
    code, err = cli(["convert", str(CNN), str(tmp_path / "o.onnx"), "--quiet"])
    assert code == 2 and "error (out of memory)" in err, err
    assert not (tmp_path / "o.onnx").exists()


def test_constant_folding_checks_sizes_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 9 GB external weight must not be read to decide it is too big to fold."""
    from modelconv.passes import constant_folding

    class Unreadable(ir.Tensor):  # type: ignore[misc]
        def numpy(self) -> np.ndarray:
            raise AssertionError("the tensor was read")

    monkeypatch.setattr(constant_folding, "MAX_INPUT_ELEMENTS", 10)
    weight = ir.Value(name="w", const_value=Unreadable(np.ones(100, np.float32)))
    node = ir.Node("", "ReduceSum", [weight], num_outputs=1)
    graph = ir.Graph([], node.outputs, nodes=[node], initializers=[weight])
    result = constant_folding.FoldConstantsPass()(ir.Model(graph, ir_version=10))
    assert not result.modified


@pytest.mark.parametrize("args", [
    ["inspect", "--json", str(CNN)], ["inspect", str(CNN)], ["formats"], ["ops"],
    ["ops", "--json"], ["--help"], ["--version"], ["verify", str(CNN), str(CNN), "--quiet"],
], ids=lambda a: " ".join(a[:2]).replace(str(CNN), "m.onnx"))
def test_closed_stdout_pipe_exits_quietly(args: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader (e.g. `head`) is gone before anything is printed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "modelconv", *args], stdout=write,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    os.close(write)
    assert proc.stderr.strip() == "", proc.stderr
    assert proc.returncode == (0 if args == ["--help"] else 2)  # argparse ignores EPIPE


def test_closed_pipe_after_convert_keeps_the_result(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "modelconv", "convert", str(CNN),
                           str(tmp_path / "o.onnx"), "--quiet"], stdout=write,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    os.close(write)
    assert proc.stderr.strip() == "", proc.stderr
    assert (tmp_path / "o.onnx").exists()  # converted and verified before printing failed


def test_truncated_external_data_initializer(tmp_path: Path,
                                             cli: CliRunner) -> None:
    """Declared sizes are checked against the data file before anything is allocated."""
    tensor = numpy_helper.from_array(np.ones(4, np.float32), "w")
    tensor.ClearField("raw_data")
    del tensor.dims[:]
    tensor.dims.extend([9 * 2 ** 28])  # 9 GiB of float32
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "0")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "w.bin").write_bytes(b"\0" * 64)
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["w"], ["s"], keepdims=0),
         helper.make_node("Add", ["x", "s"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [tensor])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "m.onnx")
    code, err = cli(["convert", str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"),
                      "--quiet"])
    assert code == 2 and "error (ModelLoadError)" in err, err
