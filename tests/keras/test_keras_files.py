"""End-to-end Keras file tests on the shipped fixtures (no TensorFlow needed unless marked),
plus the importer's safety refusals."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest

import modelconv
from modelconv.errors import (
    ModelLoadError,
    UnsafeModelError,
    UnsupportedOpsError,
)
from modelconv.importers.keras import import_keras
from modelconv.options import ConvertOptions
from modelconv.verification.runners import OnnxRuntimeRunner
from tests.framework_free import assert_keras_import_loads_no_framework
from tests.paths import ROOT

h5py = pytest.importorskip("h5py")
FIX = ROOT / "fixtures" / "keras"
FILES = ["k3_cnn.keras", "k3_cnn.h5", "k3_multi.keras", "k3_multi.h5", "k3_text.keras",
         "k2_cnn.h5", "k2_text.h5", "k3_ops.keras", "k2_ops.h5"]


def _ref(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    stem = name.rsplit(".", 1)[0]
    with np.load(FIX / f"{stem}.npz") as data:
        ins = [data[f"in{i}"] for i in range(sum(k.startswith("in") for k in data.files))]
        outs = [data[f"out{i}"] for i in range(sum(k.startswith("out") for k in data.files))]
    return ins, outs


def _convert(path: Path) -> Any:
    return import_keras(path, ConvertOptions())


@pytest.mark.parametrize("name", FILES)
def test_fixture_matches_framework_outputs(name: str) -> None:
    sm = _convert(FIX / name)
    ins, outs = _ref(name)
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run(ins)
    assert len(got) == len(outs)
    for g, w in zip(got, outs, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4 * max(1.0, float(np.abs(w).max())), rtol=0)
    assert sm.format == ("keras" if name.endswith(".keras") else "keras-h5")
    assert all(n.metadata_props.get("source_name") for n in sm.model.graph
               if n.op_type not in ("Transpose",))


def test_cnn_layout_single_boundary_transpose() -> None:
    sm = _convert(FIX / "k3_cnn.keras")
    ops = [n.op_type for n in sm.model.graph]
    # one NHWC->NCHW after the input, one NCHW->NHWC before Flatten
    assert ops.count("Transpose") == 2
    assert sm.model.graph.inputs[0].shape[3] == 3  # input stays NHWC


def test_multi_io_shared_nested_names() -> None:
    sm = _convert(FIX / "k3_multi.keras")
    g = sm.model.graph
    assert [v.name for v in g.inputs] == ["a", "b"]
    assert [v.name for v in g.outputs] == ["head1", "head2"]
    sources = {n.metadata_props.get("source_name") for n in g}
    assert "block/dense" in sources or any(s and s.startswith("block/") for s in sources)
    # the shared Dense is applied twice but its kernel is stored once
    shared = [name for name in g.initializers if name.startswith("shared.kernel")]
    assert len(shared) == 1


def test_text_model_int_ranges() -> None:
    sm = _convert(FIX / "k3_text.keras")
    assert sm.int_ranges.get("tokens") == (0, 50)


def _edit_h5_config(src: Path, dst: Path, edit: Any) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        edit(cfg)
        f.attrs["model_config"] = json.dumps(cfg)
    return dst


def _layers(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return cfg["config"]["layers"]


def test_lambda_refused(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        layer = _layers(cfg)[3]
        layer["class_name"] = "Lambda"
        layer["config"]["function"] = {"class_name": "__lambda__", "config": {"code": "x"}}

    path = _edit_h5_config(FIX / "k3_cnn.h5", tmp_path / "lam.h5", edit)
    with pytest.raises(UnsafeModelError, match="Lambda"):
        _convert(path)


def test_tf_op_lambda_is_a_name_not_code(tmp_path: Path) -> None:
    """tf.keras TFOpLambda layers name a TF function; unknown names are unsupported (never
    imported or called) and reported together."""
    sm = _convert(FIX / "k2_ops.h5")
    assert {"Reshape", "Concat", "ReduceMean", "ReduceSum", "Div", "Sub"} <= {
        n.op_type for n in sm.model.graph}

    def edit(cfg: dict[str, Any]) -> None:
        ops = [ly for ly in _layers(cfg) if ly["class_name"] == "TFOpLambda"]
        ops[0]["config"]["function"] = "io.write_file"
        ops[1]["config"]["function"] = "py_function"

    path = _edit_h5_config(FIX / "k2_ops.h5", tmp_path / "tfop.h5", edit)
    with pytest.raises(UnsupportedOpsError) as info:
        _convert(path)
    assert {"TFOpLambda(tf.io.write_file)", "TFOpLambda(tf.py_function)"} <= set(
        info.value.unsupported)


def test_custom_object_refused(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        layer = _layers(cfg)[2]
        layer.update(class_name="MyLayer", module="my_package.layers",
                     registered_name="my_package>MyLayer")

    path = _edit_h5_config(FIX / "k3_cnn.h5", tmp_path / "custom.h5", edit)
    with pytest.raises(UnsafeModelError, match="MyLayer"):
        _convert(path)


def test_unsupported_layers_listed_at_once(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        _layers(cfg)[2]["class_name"] = "FancyNorm"
        _layers(cfg)[4]["class_name"] = "FancyConv"
        _layers(cfg)[5]["class_name"] = "FancyConv"

    path = _edit_h5_config(FIX / "k3_cnn.h5", tmp_path / "unsup.h5", edit)
    with pytest.raises(UnsupportedOpsError) as info:
        _convert(path)
    assert set(info.value.unsupported) == {"FancyNorm", "FancyConv"}
    assert len(info.value.unsupported["FancyConv"]) == 2


def test_weight_shape_checked_against_config(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        _layers(cfg)[-1]["config"]["units"] = 5

    path = _edit_h5_config(FIX / "k3_cnn.h5", tmp_path / "shape.h5", edit)
    with pytest.raises(ModelLoadError, match="shape"):
        _convert(path)


def test_external_link_refused(tmp_path: Path) -> None:
    path = tmp_path / "ext.h5"
    shutil.copy(FIX / "k3_cnn.h5", path)
    with h5py.File(path, "r+") as f:
        f["model_weights/evil"] = h5py.ExternalLink("/etc/passwd", "/x")
    with pytest.raises(UnsafeModelError, match="external link"):
        _convert(path)


def test_external_storage_refused(tmp_path: Path) -> None:
    path = tmp_path / "extstore.h5"
    shutil.copy(FIX / "k3_cnn.h5", path)
    (tmp_path / "raw.bin").write_bytes(b"\0" * 16)
    with h5py.File(path, "r+") as f:
        f.create_dataset("model_weights/raw", shape=(4,), dtype="f4",
                         external=[(str(tmp_path / "raw.bin"), 0, 16)])
    with pytest.raises(UnsafeModelError, match="external"):
        _convert(path)


def test_zip_path_traversal_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.keras"
    with zipfile.ZipFile(FIX / "k3_cnn.keras") as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("../../escape.txt", "boom")
    with pytest.raises(UnsafeModelError, match="escapes"):
        _convert(path)


def test_zip_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(FIX / "k3_cnn.keras") as src, \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item))
        dst.writestr("padding.bin", b"\0" * (64 * 2**20))
    with pytest.raises(UnsafeModelError, match="zip bomb"):
        _convert(path)


@pytest.mark.parametrize("name", ["k3_cnn.h5", "k3_cnn.keras"])
def test_truncated_file_is_load_error(name: str, tmp_path: Path) -> None:
    data = (FIX / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as info:
        _convert(path)
    assert str(path) in str(info.value)


def test_conversion_imports_no_framework() -> None:
    assert_keras_import_loads_no_framework([str(FIX / n) for n in FILES])


def test_keras_runner_keras3() -> None:
    pytest.importorskip("keras")
    from modelconv.verification.runners_keras import KerasRunner

    runner = KerasRunner(FIX / "k3_multi.keras")
    assert [s.name for s in runner.input_specs()] == ["a", "b"]
    ins, outs = _ref("k3_multi.keras")
    for got, want in zip(runner.run(ins), outs, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    inter = runner.intermediates(ins, ["skip"])
    assert inter["skip"].shape == (2, 8)


@pytest.mark.tf
def test_keras_runner_keras2_subprocess() -> None:
    pytest.importorskip("tf_keras")
    sm = _convert(FIX / "k2_text.h5")
    assert sm.runner_unavailable is None
    runner = sm.make_runner()
    ins, outs = _ref("k2_text.h5")
    np.testing.assert_allclose(runner.run(ins)[0], outs[0], atol=1e-5)


def _keras3_torch() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def test_keras3_h5_with_application_layer_verifies(tmp_path: Path) -> None:
    """A legacy .h5 names ConvNeXt's LayerScale by class only; the runner hands Keras the
    class from the installed keras.applications so it can load the file."""
    keras = _keras3_torch()
    from keras.src.applications.convnext import LayerScale

    inp = keras.Input((3, 3, 4), name="x")
    out = LayerScale(0.5, 4, name="scale")(keras.layers.Conv2D(4, 1, name="conv")(inp))
    model = keras.Model(inp, out)
    model.get_layer("scale").set_weights([np.array([0.5, -1.0, 2.0, 3.0], np.float32)])
    model.save(tmp_path / "ls.h5")
    result = modelconv.convert(tmp_path / "ls.h5", tmp_path / "ls.onnx")
    assert result.verified


def test_keras3_h5_keras_cannot_load_skips_verification(tmp_path: Path) -> None:
    """Keras 3 writes `x + y` (an op) into a legacy .h5 without its module and its own h5
    loader takes it for the Add layer: modelconv converts the file and says verification
    was skipped instead of failing."""
    keras = _keras3_torch()
    a = keras.Input((4,), name="a")
    model = keras.Model(a, keras.layers.Dense(4, name="d")(a) + a)
    model.save(tmp_path / "op.h5")
    result = modelconv.convert(tmp_path / "op.h5", tmp_path / "op.onnx")
    assert result.report is not None and result.report.skipped
    assert "cannot load" in result.report.skip_reason
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    got = OnnxRuntimeRunner(result.output).run([x])[0]
    want = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.tf
def test_keras2_worker_load_failure_is_runner_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    from modelconv.errors import RunnerUnavailableError
    from modelconv.workers.tf_worker import run_worker

    (tmp_path / "junk.h5").write_bytes(b"not a model")
    with pytest.raises(RunnerUnavailableError, match=r"tf_keras .* cannot load"):
        run_worker("keras2", str(tmp_path / "junk.h5"), [np.zeros((1, 2), np.float32)])


def test_keras_zip_layer_index_built_once_per_container(monkeypatch: pytest.MonkeyPatch) -> None:
    """.keras weights are found through one name index per ``layers`` group (scanning the
    group for every layer made a 770-layer NASNet take 13 s to import)."""
    from modelconv.importers.keras import weights

    calls: list[str] = []

    def counting(container: Any) -> dict[str, str]:
        calls.append(container.name)
        return real(container)

    real = weights.layer_keys
    monkeypatch.setattr(weights, "layer_keys", counting)
    sm = _convert(FIX / "k3_multi.keras")
    assert sorted(calls) == ["/layers", "/layers/functional/layers"]
    ins, outs = _ref("k3_multi.keras")
    got = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run(ins)
    np.testing.assert_allclose(got[0], outs[0], atol=1e-5)
