"""`.keras` models whose graph lives in a package's code (keras_hub backbones): the config
audit and its refusals (no Keras needed), and the package route end to end (``models``)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelconv
from modelconv.errors import MissingDependencyError, UnsafeModelError
from modelconv.importers.keras import import_keras
from modelconv.importers.keras.packages import check_packages, needs_package_route
from modelconv.options import ConvertOptions

BERT_CONFIG: dict[str, Any] = {
    "module": "keras_hub.src.models.bert.bert_backbone", "class_name": "BertBackbone",
    "config": {"name": "bert_backbone", "trainable": True,
               "dtype": {"module": "keras", "class_name": "DTypePolicy",
                         "config": {"name": "float32"}, "registered_name": None},
               "vocabulary_size": 100, "num_layers": 2, "num_heads": 2, "hidden_dim": 32,
               "intermediate_dim": 64, "dropout": 0.1, "max_sequence_length": 32,
               "num_segments": 2},
    "registered_name": "keras_hub>BertBackbone", "build_config": {"input_shape": None},
    "compile_config": {},
}


def _write_keras(path: Path, config: dict[str, Any]) -> Path:
    h5py = pytest.importorskip("h5py")
    weights = path.with_suffix(".h5")
    with h5py.File(weights, "w"):
        pass
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps(config))
        z.write(weights, "model.weights.h5")
    return path


def _edited(src: Path, dst: Path, edit: Any) -> Path:
    """Copy a .keras archive with its config.json changed by ``edit(config)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return dst


def test_backbone_needs_the_package_route() -> None:
    assert needs_package_route(BERT_CONFIG)
    plain = {"class_name": "Functional", "module": "keras", "config": {"layers": []}}
    assert not needs_package_route(plain)


def test_refused_without_flag_names_class_package_and_flag(tmp_path: Path) -> None:
    path = _write_keras(tmp_path / "bert.keras", BERT_CONFIG)
    with pytest.raises(UnsafeModelError) as err:
        import_keras(path, ConvertOptions())
    text = str(err.value)
    assert "BertBackbone" in text and "'keras_hub'" in text
    assert "--allow-package keras_hub" in text
    assert "not a Keras model" not in text


def test_cli_refusal_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelconv.cli import main

    path = _write_keras(tmp_path / "bert.keras", BERT_CONFIG)
    out = tmp_path / "bert.onnx"
    assert main(["convert", str(path), str(out)]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "UnsafeModelError" in err and "BertBackbone" in err
    assert "--allow-package keras_hub" in err
    # allowing another package does not allow keras_hub
    assert main(["convert", str(path), str(out), "--allow-package", "timm"]) != 0
    assert "--allow-package keras_hub" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_module_outside_allowlist_refused_before_import(tmp_path: Path) -> None:
    config = json.loads(json.dumps(BERT_CONFIG))
    config["config"]["dtype"]["module"] = "modelconv_marker_pkg.evil"
    with pytest.raises(UnsafeModelError, match="modelconv_marker_pkg"):
        check_packages(config, ["keras_hub"], "x.keras")
    assert "modelconv_marker_pkg" not in sys.modules
    config["config"]["dtype"]["module"] = "os"  # installed, but not allowed
    with pytest.raises(UnsafeModelError, match=r"package 'os'.*--allow-package os"):
        check_packages(config, ["keras_hub"], "x.keras")


def test_script_classes_and_lambda_refused_even_when_allowed() -> None:
    config = json.loads(json.dumps(BERT_CONFIG))
    config["config"]["extra"] = {"module": "__main__", "class_name": "MyLayer",
                                 "registered_name": "Custom>MyLayer", "config": {}}
    with pytest.raises(UnsafeModelError, match="MyLayer"):
        check_packages(config, ["keras_hub", "__main__", "Custom"], "x.keras")
    config["config"]["extra"] = {"module": "keras.layers", "class_name": "Lambda",
                                 "config": {"function": "x"}}
    with pytest.raises(UnsafeModelError, match="Lambda"):
        check_packages(config, ["keras_hub"], "x.keras")


def test_allowed_package_must_be_installed() -> None:
    config = json.loads(json.dumps(BERT_CONFIG))
    config["module"] = "modelconv_not_installed_pkg.models"
    config["registered_name"] = "modelconv_not_installed_pkg>BertBackbone"
    with pytest.raises(MissingDependencyError, match="not installed"):
        check_packages(config, ["modelconv_not_installed_pkg"], "x.keras")


# --- the route end to end (Keras 3 + keras_hub on torch) -----------------------------------

_BUILD = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = "torch"
    sys.modules["tensorflow"] = None
    import numpy as np, keras, keras_hub
    out = sys.argv[1]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    text = dict(vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32,
                intermediate_dim=64, max_sequence_length=32)
    models = {
        "bert": keras_hub.models.BertBackbone(**text),
        "gpt2": keras_hub.models.GPT2Backbone(**text),
        "vit": keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8,
                                            num_layers=2, num_heads=2, hidden_dim=32,
                                            mlp_dim=64),
    }
    mask = np.ones((1, 16), "int32"); mask[0, 12:] = 0
    feeds = {
        "bert": {"token_ids": rng.integers(0, 100, (1, 16)).astype("int32"),
                 "segment_ids": rng.integers(0, 2, (1, 16)).astype("int32"),
                 "padding_mask": mask},
        "gpt2": {"token_ids": rng.integers(0, 100, (1, 16)).astype("int32"),
                 "padding_mask": mask},
        "vit": {"images": rng.standard_normal((1, 32, 32, 3)).astype("float32")},
    }
    for name, model in models.items():
        model.save(os.path.join(out, name + ".keras"))
        x = feeds[name] if name != "vit" else feeds[name]["images"]
        y = model(x, training=False)
        y = y if isinstance(y, dict) else {"out": y}
        np.savez(os.path.join(out, name + ".npz"),
                 **{"in_" + k: v for k, v in feeds[name].items()},
                 **{"out_" + k: keras.ops.convert_to_numpy(v) for k, v in y.items()})
""")


@pytest.fixture(scope="module")
def hub_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # located, not imported: importing keras_hub here would load Keras on its default
    # backend in the test process
    if importlib.util.find_spec("keras_hub") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("needs keras_hub and torch")
    out = tmp_path_factory.mktemp("keras_hub")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    subprocess.run([sys.executable, "-c", _BUILD, str(out)], check=True, env=env,
                   timeout=300)
    return out


@pytest.mark.models
@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
def test_backbone_to_onnx_matches_keras(hub_models: Path, name: str, tmp_path: Path) -> None:
    from modelconv.verification.runners import OnnxRuntimeRunner

    result = modelconv.convert(hub_models / f"{name}.keras", tmp_path / f"{name}.onnx",
                               allow_packages=["keras_hub"])
    report = result.report
    assert report is not None and report.passed and not report.skipped
    assert all(o.max_abs < 1e-4 for o in report.outputs)
    # independent of the verifier: the outputs Keras computed when it saved the model
    ref = np.load(hub_models / f"{name}.npz")
    runner = OnnxRuntimeRunner((tmp_path / f"{name}.onnx").read_bytes())
    names = [s.name for s in runner.input_specs()]
    got = runner.run([ref[f"in_{n}"] for n in names])
    wanted = {k[4:]: ref[k] for k in ref.files if k.startswith("out_")}
    outs = runner.output_names() if len(wanted) > 1 else ["out"]
    assert sorted(outs) == sorted(wanted)
    for n, g in zip(outs, got, strict=True):
        np.testing.assert_allclose(g, wanted[n], atol=1e-4, rtol=0)


@pytest.mark.models
@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
def test_backbone_to_tflite_matches_keras(hub_models: Path, name: str,
                                          tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    result = modelconv.convert(hub_models / f"{name}.keras", tmp_path / f"{name}.tflite",
                               allow_packages=["keras_hub"])
    report = result.report
    assert report is not None and report.passed and not report.skipped
    assert all(o.max_abs < 1e-4 for o in report.outputs)


@pytest.mark.models
def test_edited_module_refused_without_importing(hub_models: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["config"]["dtype"]["module"] = "modelconv_marker_pkg"

    path = _edited(hub_models / "bert.keras", tmp_path / "edited.keras", edit)
    with pytest.raises(UnsafeModelError, match="modelconv_marker_pkg"):
        modelconv.convert(path, tmp_path / "out.onnx", allow_packages=["keras_hub"])
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.models
def test_registered_name_must_be_the_packages_class(hub_models: Path, tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["registered_name"] = "keras_hub>NoSuchBackbone"

    path = _edited(hub_models / "bert.keras", tmp_path / "edited.keras", edit)
    with pytest.raises(UnsafeModelError, match="NoSuchBackbone"):
        modelconv.convert(path, tmp_path / "out.onnx", allow_packages=["keras_hub"])


@pytest.mark.models
def test_dynamic_batch_names_every_input(hub_models: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "gpt2.onnx"
    result = modelconv.convert(hub_models / "gpt2.keras", out, allow_packages=["keras_hub"],
                               dynamic_batch=True)
    assert result.report is not None and result.report.passed
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["token_ids", "padding_mask"]
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "batch" for i in graph.input)
