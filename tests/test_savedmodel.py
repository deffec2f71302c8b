"""SavedModel importer (tf2onnx in a TensorFlow worker subprocess)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from modelconv.errors import UnsupportedOpsError
from modelconv.importers.savedmodel import check_onnx_ops, rewrite_erfc
from modelconv.options import ConvertOptions
from modelconv.verification.runners import OnnxRuntimeRunner

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "keras"
needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or
                              importlib.util.find_spec("tf2onnx") is None,
                              reason="tensorflow / tf2onnx not installed")


def _erfc_model() -> onnx.ModelProto:
    node = helper.make_node("Erfc", ["x"], ["y"], name="erfc")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_rewrite_erfc() -> None:
    proto = _erfc_model()
    with pytest.raises(UnsupportedOpsError, match="Erfc"):
        check_onnx_ops(proto, "m")
    assert rewrite_erfc(proto) == 1
    check_onnx_ops(proto, "m")
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    y = OnnxRuntimeRunner(proto.SerializeToString()).run([x])[0]
    from math import erfc

    np.testing.assert_allclose(y, [erfc(v) for v in x], atol=1e-6)


@pytest.mark.tf
@needs_tf
def test_savedmodel_fixture_converts_and_matches() -> None:
    from modelconv.importers.savedmodel import import_savedmodel

    sm = import_savedmodel(FIX / "savedmodel", ConvertOptions())
    assert not [n for n in sm.model.graph if n.op_type == "Erfc"]
    with np.load(FIX / "savedmodel.npz") as data:
        x, want = data["in0"], data["out0"]
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run([x])[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    runner = sm.make_runner()
    np.testing.assert_allclose(runner.run([x])[0], want, atol=1e-5)


@pytest.mark.tf
@needs_tf
def test_savedmodel_unknown_signature(tmp_path: Path) -> None:
    from modelconv.errors import ModelLoadError
    from modelconv.importers.savedmodel import import_savedmodel

    with pytest.raises(ModelLoadError, match="signature"):
        import_savedmodel(FIX / "savedmodel", ConvertOptions(signature="nope"))


@pytest.mark.tf
@needs_tf
def test_savedmodel_with_file_ops_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    from modelconv.errors import UnsafeModelError
    from modelconv.importers.savedmodel import import_savedmodel
    from modelconv.verification.runners_tf import worker_env

    target = tmp_path / "reader"
    code = (
        "import tensorflow as tf\n"
        "class M(tf.Module):\n"
        "    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])\n"
        "    def __call__(self, p):\n"
        "        return {'y': tf.io.read_file(p)}\n"
        "m = M()\n"
        f"tf.saved_model.save(m, {str(target)!r}, signatures={{'serving_default': m.__call__}})\n"
    )
    subprocess.run([sys.executable, "-c", code], env=worker_env(), check=True, timeout=300)
    with pytest.raises(UnsafeModelError, match="ReadFile"):
        import_savedmodel(target, ConvertOptions())
    shutil.rmtree(target, ignore_errors=True)
