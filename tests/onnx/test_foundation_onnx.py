"""ONNX -> ONNX end to end: opset conversion, external data, safety, determinism."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelconv
from modelconv.errors import (
    ExportError,
    ModelLoadError,
    OutputExistsError,
    UnsafeModelError,
    UnsupportedOpsError,
)
from modelconv.verification.runners import OnnxRuntimeRunner
from tests.hostile.corpus import external_data_model
from tests.paths import ROOT

FIXTURES = ROOT / "fixtures" / "onnx"
CNN = FIXTURES / "small_cnn.onnx"


def _opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_convert_to_other_opset_runs_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    result = modelconv.convert(CNN, out, opset=19)
    assert _opset(out) == 19
    assert result.verified and result.report is not None
    assert result.report.outputs[0].name == "probs"
    assert result.report.outputs[0].max_abs < 1e-5
    assert set(result.timings) >= {"import", "passes", "export", "verify", "total"}
    runner = OnnxRuntimeRunner(out)
    (probs,) = runner.run([np.ones((2, 3, 32, 32), np.float32)])
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_default_keeps_source_opset(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    modelconv.convert(FIXTURES / "mlp.onnx", out)
    assert _opset(out) == 13


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    modelconv.convert(CNN, a, opset=18, verify=False)
    modelconv.convert(CNN, b, opset=18, verify=False)
    assert a.read_bytes() == b.read_bytes()


def test_external_data_on_request_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        modelconv.convert(CNN, folder / "m.onnx", external_data=True)
        assert (folder / "m.onnx.data").stat().st_size > 0
        outs.append(folder)
    assert (outs[0] / "m.onnx").read_bytes() == (outs[1] / "m.onnx").read_bytes()
    assert (outs[0] / "m.onnx.data").read_bytes() == (outs[1] / "m.onnx.data").read_bytes()
    # the written model with external data converts again (importer reads it lazily)
    modelconv.convert(outs[0] / "m.onnx", tmp_path / "again.onnx")


def test_embedding_inputs_stay_in_vocabulary(tmp_path: Path) -> None:
    result = modelconv.convert(FIXTURES / "embedding.onnx", tmp_path / "e.onnx", dim_values={
        "seq": 5})
    assert result.verified
    assert result.report is not None and result.report.input_shapes == [[1, 5]]


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        modelconv.convert(CNN, out)
    assert out.read_bytes() == b"keep me"
    modelconv.convert(CNN, out, overwrite=True)
    assert onnx.load(str(out)).graph.node


def test_missing_output_folder(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        modelconv.convert(CNN, tmp_path / "nope" / "out.onnx")


def test_bad_opset_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    with pytest.raises(ExportError, match="opset"):
        modelconv.convert(CNN, out, opset=3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_folder_is_refused(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    src = external_data_model(folder, location)
    with pytest.raises(UnsafeModelError, match="outside"):
        modelconv.convert(src, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_external_data_symlink_and_hardlink_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 16)
    src = external_data_model(folder, "data.bin")
    os.symlink(secret, folder / "data.bin")
    with pytest.raises(UnsafeModelError, match="link"):
        modelconv.convert(src, tmp_path / "out.onnx")
    (folder / "data.bin").unlink()
    os.link(secret, folder / "data.bin")
    with pytest.raises(UnsafeModelError, match="hard link"):
        modelconv.convert(src, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_external_data_missing_or_short(tmp_path: Path) -> None:
    src = external_data_model(tmp_path, "data.bin")
    with pytest.raises(ModelLoadError, match="missing"):
        modelconv.convert(src, tmp_path / "out.onnx")
    (tmp_path / "data.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ModelLoadError, match="bytes"):
        modelconv.convert(src, tmp_path / "out.onnx")


def test_external_data_inside_folder_works(tmp_path: Path) -> None:
    src = external_data_model(tmp_path, "data.bin")
    (tmp_path / "data.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    result = modelconv.convert(src, tmp_path / "out.onnx")
    assert result.verified


def test_graph_with_cycle_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
        "cycle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])])
    path = tmp_path / "cycle.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelLoadError, match="cycle"):
        modelconv.convert(path, tmp_path / "out.onnx")


def test_unknown_custom_ops_are_listed_together(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Magic", ["x"], ["a"], domain="evil.corp", name="m1"),
         helper.make_node("Magic", ["a"], ["b"], domain="evil.corp", name="m2"),
         helper.make_node("Frobnicate", ["b"], ["y"], name="f1")],
        "custom", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("evil.corp", 1)])
    path = tmp_path / "custom.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(UnsupportedOpsError) as info:
        modelconv.convert(path, tmp_path / "out.onnx")
    assert set(info.value.unsupported) == {"evil.corp::Magic", "Frobnicate"}
    assert info.value.unsupported["evil.corp::Magic"] == ["m1", "m2"]


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "t.onnx"
    path.write_bytes(CNN.read_bytes()[:1500])
    with pytest.raises(ModelLoadError):
        modelconv.convert(path, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_inspect_reports_signature_and_parameters() -> None:
    info = modelconv.inspect(CNN)
    assert info.format == "onnx" and info.opset == 17
    assert [s.name for s in info.inputs] == ["x"]
    assert info.inputs[0].shape == ("batch", 3, 32, 32)
    assert info.op_counts["Conv"] == 2
    assert info.num_parameters == 8 * 3 * 9 + 8 + 8 * 8 * 9 + 8 + 4 * 8 + 10 * 8 + 10
    assert info.parameter_bytes == info.num_parameters * 4


def test_save_load_roundtrip(tmp_path: Path) -> None:
    source = modelconv.load(CNN)
    written = modelconv.save(source, tmp_path / "copy.onnx")
    assert written == [tmp_path / "copy.onnx"]
    report = modelconv.verify(CNN, tmp_path / "copy.onnx")
    assert report.passed and not report.skipped


def test_unknown_option_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        modelconv.convert(CNN, tmp_path / "o.onnx", no_such_option=1)


def test_copy_of_fixture_folder_with_external_data_converts(tmp_path: Path) -> None:
    folder = tmp_path / "ext"
    folder.mkdir()
    modelconv.convert(CNN, folder / "m.onnx", external_data=True, verify=False)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    result = modelconv.convert(moved / "m.onnx", tmp_path / "o.onnx", opset=20)
    assert result.verified


def test_time_limit_stops_the_conversion_and_leaves_nothing(tmp_path: Path) -> None:
    from modelconv.errors import ConversionTimeoutError

    with pytest.raises(ConversionTimeoutError, match="time limit"):
        modelconv.convert(CNN, tmp_path / "out.onnx", timeout=1e-6)
    assert list(tmp_path.iterdir()) == []
