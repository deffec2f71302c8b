"""ONNX targets honour --fp16 / --quantize (they were ignored: same bytes as fp32, exit 0),
and every option a route would ignore is refused (exit 2) instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import modelconv
from modelconv.cli import main
from modelconv.errors import OptionsError
from modelconv.exporters.onnx_quantize import precision_of
from tests.paths import ROOT

FIXTURES = ROOT / "fixtures" / "onnx"
CNN = FIXTURES / "small_cnn.onnx"  # Conv, BatchNorm, Gemm...; input x [batch, 3, 32, 32]
MODES = {
    "float16": {"fp16": True},
    "dynamic": {"quantize": "dynamic"},
    "int8": {"quantize": "int8"},
}


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(3)
    for i in range(4):
        np.save(folder / f"s{i}.npy", rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    return folder


def _convert(dst: Path, calibration: Path, **options: object) -> modelconv.api.ConversionResult:
    if options.get("quantize") == "int8":
        options["calibration"] = calibration
    return modelconv.convert(CNN, dst, **options)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("fp32") / "m.onnx"
    modelconv.convert(CNN, out, verify=False)
    return out.read_bytes()


def _initializer_types(path: Path) -> set[int]:
    return {t.data_type for t in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_precision_option_changes_the_onnx_output(mode: str, tmp_path: Path, fp32: bytes,
                                                  calibration: Path) -> None:
    result = _convert(tmp_path / "m.onnx", calibration, **MODES[mode])
    data = result.output.read_bytes()
    assert data != fp32
    assert precision_of(result.output) == mode
    # verified with the tolerance of its precision, and it passed
    assert result.report is not None and result.report.mode == mode and result.report.passed
    types = _initializer_types(result.output)
    wanted = onnx.TensorProto.FLOAT16 if mode == "float16" else onnx.TensorProto.INT8
    assert wanted in types
    model = onnx.load(str(result.output))
    ops = {n.op_type for n in model.graph.node}
    if mode == "dynamic":
        assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= ops
    if mode == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # float I/O is kept, and onnxruntime runs it
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in (*model.graph.input, *model.graph.output))
    session = ort.InferenceSession(str(result.output), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    probs = session.run(None, {"x": x})[0]
    assert probs.shape == (2, 10) and np.allclose(probs.sum(-1), 1, atol=2e-2)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_precision_outputs_are_deterministic(mode: str, tmp_path: Path,
                                             calibration: Path) -> None:
    first = _convert(tmp_path / "a.onnx", calibration, verify=False, **MODES[mode])
    second = _convert(tmp_path / "b.onnx", calibration, verify=False, **MODES[mode])
    assert first.output.read_bytes() == second.output.read_bytes()


def test_fp16_keeps_small_constants_float32(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    modelconv.convert(CNN, out, fp16=True, verify=False)
    model = onnx.load(str(out))
    for tensor in model.graph.initializer:
        size = int(np.prod(tensor.dims))
        if tensor.data_type == onnx.TensorProto.FLOAT:
            assert size < 16, tensor.name
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert casts and all(a.i == onnx.TensorProto.FLOAT for n in casts for a in n.attribute)


def test_verify_reads_the_precision_of_the_file(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    modelconv.convert(CNN, out, quantize="dynamic", verify=False)
    report = modelconv.verify(CNN, out)  # no --quantize given: the file says it
    assert report.mode == "dynamic" and report.passed
    assert precision_of(CNN) == "float32"


def test_int8_without_calibration_is_refused_random_only_when_asked(tmp_path: Path) -> None:
    from modelconv.errors import ExportError

    with pytest.raises(ExportError, match="needs calibration data"):
        modelconv.convert(CNN, tmp_path / "m.onnx", quantize="int8", verify=False)
    assert not (tmp_path / "m.onnx").exists()
    result = modelconv.convert(CNN, tmp_path / "r.onnx", quantize="int8",
                               calibration="random", verify=False)
    assert any("random" in w for w in result.warnings)


@pytest.mark.parametrize(("dst", "args", "flag"), [
    ("m.tflite", ["--opset", "13"], "--opset"),
    ("m.tflite", ["--external-data"], "--external-data"),
    ("m.onnx", ["--int8-io", "--quantize", "int8"], "--int8-io"),
    ("m.tflite", ["--int8-io"], "--int8-io"),
    ("m.onnx", ["--nhwc-io"], "--nhwc-io"),
    ("m.onnx", ["--calibration", "x"], "--calibration"),
    ("m.tflite", ["--calibration", "x", "--quantize", "dynamic"], "--calibration"),
    ("m.onnx", ["--fp16", "--quantize", "dynamic"], "--fp16"),
    ("m.onnx", ["--no-verify", "--rtol", "0.1"], "--rtol"),
    ("m.onnx", ["--no-verify", "--localize"], "--localize"),
    ("m.onnx", ["--input-shape", "1,3,32,32"], "--input-shape"),
    ("m.onnx", ["--dynamic-batch"], "--dynamic-batch"),
    ("m.onnx", ["--signature", "other"], "--signature"),
    ("m.onnx", ["--model", "pkg:fn"], "--model"),
])
def test_ignored_options_are_refused(dst: str, args: list[str], flag: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / dst
    code = main(["convert", str(CNN), str(out), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert "OptionsError" in err and flag in err
    assert not out.exists()


def test_api_refuses_unknown_quantize_mode(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="not a mode"):
        modelconv.convert(CNN, tmp_path / "m.onnx", quantize="int4")


@pytest.mark.parametrize("options", [{"fp16": True}, {"quantize": "dynamic"}])
def test_precision_without_anything_to_convert_warns(options: dict[str, object],
                                                     tmp_path: Path) -> None:
    from benchmarks.scaling import chain_model

    src = chain_model(4, tmp_path / "chain.onnx")  # [1, 8] constants, no Conv/MatMul
    with pytest.warns(UserWarning, match="written in float32"):
        modelconv.convert(src, tmp_path / "m.onnx", verify=False, **options)
