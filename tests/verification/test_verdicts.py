"""Verdicts you can trust (issue 14): NaN never passes, realistic generated inputs, the
converted file's own precision, int8 I/O, calibration required, skipped = exit 3,
``--reference``, several samples, self-describing reports, typed signature mismatches."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv.cli import main
from modelconv.errors import ExportError, ShapeError, SignatureMismatchError
from modelconv.ir.info import TensorSpec
from modelconv.testing import assert_equivalent
from modelconv.verification.compare import compare_arrays, tolerance_for
from modelconv.verification.html import render_html
from modelconv.verification.inputs import generate_inputs, input_kind
from modelconv.verification.report import VerificationReport
from tests.paths import ROOT

FIXTURES = ROOT / "fixtures" / "onnx"
CNN = FIXTURES / "small_cnn.onnx"
MLP = FIXTURES / "mlp.onnx"


def _save(nodes: list[Any], inputs: list[Any], outputs: list[Any], path: Path,
          inits: list[Any] | None = None) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits or [])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _float(name: str, shape: list[Any]) -> Any:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _nan_model(path: Path) -> Path:
    """y = (x - x) / (x - x): NaN everywhere, in every runtime."""
    return _save([helper.make_node("Sub", ["x", "x"], ["z"]),
                  helper.make_node("Div", ["z", "z"], ["y"])],
                 [_float("x", [2, 4])], [_float("y", [2, 4])], path)


def _cnn_outputs(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(CNN), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


def _perturbed_cnn(tmp_path: Path) -> Path:
    model = onnx.load(str(CNN))
    for init in model.graph.initializer:
        if init.name == "c2_w":
            arr = numpy_helper.to_array(init).copy()
            arr[0, 0, 0, 0] += 5.0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    path = tmp_path / "perturbed.onnx"
    onnx.save(model, path)
    return path


def _calibration(tmp_path: Path, count: int = 5) -> Path:
    rng = np.random.default_rng(11)
    path = tmp_path / "cal.npz"
    np.savez(path, x=rng.standard_normal((count, 1, 3, 32, 32)).astype(np.float32))
    return path


# --- 1. NaN / Inf ----------------------------------------------------------------------

def test_all_nan_output_never_passes_and_reports_no_metrics() -> None:
    nan = np.full((2, 3), np.nan, np.float32)
    m = compare_arrays("y", nan, nan.copy(), tolerance_for("float32"))
    assert not m.passed and "no finite value" in m.reason
    assert math.isnan(m.max_abs) and math.isnan(m.cosine)
    assert m.to_dict()["max_abs"] is None and m.to_dict()["cosine"] is None
    inf = np.full((4,), np.inf, np.float32)
    assert not compare_arrays("y", inf, inf.copy(), tolerance_for("float32")).passed


def test_finite_positions_must_match() -> None:
    ref = np.arange(6, dtype=np.float32).reshape(2, 3)
    act = ref.copy()
    act[1, 2] = np.inf
    m = compare_arrays("y", ref, act, tolerance_for("float32"))
    assert not m.passed and "finite positions differ at 1" in m.reason
    assert m.max_abs == 0.0  # the finite positions agree; the verdict still fails


def test_nan_source_output_fails_on_the_cli(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    model = _nan_model(tmp_path / "nan.onnx")
    report = tmp_path / "r.json"
    assert main(["verify", str(model), str(model), "--report", str(report)]) == 1
    text = capsys.readouterr().out
    assert "FAILED" in text and "no finite value" in text
    data = json.loads(report.read_text())
    assert data["outputs"][0]["max_abs"] is None and data["outputs"][0]["cosine"] is None


def test_nan_torch_module_never_converts_as_passed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Nan(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.log(-(x * x) - 1.0)

    from modelconv.errors import VerificationError

    with pytest.raises(VerificationError, match="no finite value"):
        modelconv.convert(Nan(), tmp_path / "nan.onnx", example_inputs=(torch.ones(2, 3),))


T5_FACTORY = '''
from transformers import T5Config, T5EncoderModel


def build():
    cfg = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                   relative_attention_num_buckets=8, dropout_rate=0.0)
    return T5EncoderModel(cfg).eval()
'''


def test_t5_encoder_from_safetensors_passes_with_finite_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    (tmp_path / "t5factory.py").write_text(T5_FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import t5factory  # type: ignore[import-not-found]

    torch.manual_seed(0)
    weights = {k: v.clone().contiguous() for k, v in t5factory.build().state_dict().items()}
    save_file(weights, str(tmp_path / "t5.safetensors"))
    code = main(["convert", "t5.safetensors", "t5.onnx", "--model", "t5factory:build",
                 "--input-shape", "2,8", "--input-shape", "2,8", "--input-dtype", "int64",
                 "--input-dtype", "int64", "--quiet", "--report", "r.json"])
    data = json.loads((tmp_path / "r.json").read_text())
    assert code == 0, data
    out = data["outputs"][0]
    assert out["passed"] and out["max_abs"] is not None and out["cosine"] > 0.9999
    assert data["samples"] == 3
    source = modelconv.load(tmp_path / "t5.safetensors", model="t5factory:build",
                            input_shapes=[(2, 8), (2, 8)], input_dtypes=["int64", "int64"])
    assert source.int_ranges["input_ids"] == (0, 64)


# --- 2. realistic generated inputs -----------------------------------------------------

def test_mask_inputs_are_zero_one_with_a_tail_of_zeros() -> None:
    specs = [TensorSpec("input_ids", "int64", (4, 12)),
             TensorSpec("attention_mask", "int64", (4, 12)),
             TensorSpec("token_type_ids", "int64", (4, 12)),
             TensorSpec("position_ids", "int64", (4, 12)),
             TensorSpec("src_key_padding_mask", "bool", (4, 12)),
             TensorSpec("pixel_mask", "float32", (4, 12))]
    ids, mask, types, pos, pad, pix = generate_inputs(specs, seed=0,
                                                      int_ranges={"input_ids": (0, 30)})
    assert ids.min() >= 0 and ids.max() < 30
    assert set(np.unique(mask)) == {0, 1}
    for row in mask:
        ones = int(row.sum())
        assert 0 < ones < 12 and np.all(row[:ones] == 1) and np.all(row[ones:] == 0)
        assert ones >= 9  # mostly ones: at most a quarter padded
    assert set(np.unique(types)) <= {0, 1}
    assert np.array_equal(pos[0], np.arange(12))
    assert pad.dtype == np.bool_ and pad.any(axis=1).all() and (~pad).any(axis=1).all()
    assert pix.dtype == np.float32 and set(np.unique(pix)) == {0.0, 1.0}
    assert generate_inputs([TensorSpec("token_type_ids", "int64", (1, 50))],
                           int_ranges={"token_type_ids": (0, 3)})[0].max() == 2


def test_input_kind_rules() -> None:
    assert input_kind("attention_mask", "int64") == "mask"
    assert input_kind("padding_mask", "float32") == "mask"
    assert input_kind("segment_ids", "int32") == "type_ids"
    assert input_kind("tokens", "int32", (0, 50)) == "ids"
    assert input_kind("tokens", "int32") == "int"
    assert input_kind("x", "float32") == "float"


def test_index_ranges_are_found_through_reshape_and_cast(tmp_path: Path) -> None:
    table = numpy_helper.from_array(np.ones((7, 3), np.float32), "table")
    shape = numpy_helper.from_array(np.array([-1], np.int64), "flat")
    path = _save([helper.make_node("Reshape", ["ids", "flat"], ["r"]),
                  helper.make_node("Cast", ["r"], ["c"], to=TensorProto.INT64),
                  helper.make_node("Gather", ["table", "c"], ["y"])],
                 [helper.make_tensor_value_info("ids", TensorProto.INT32, [2, 5])],
                 [_float("y", [10, 3])], tmp_path / "emb.onnx", [table, shape])
    source = modelconv.load(path)
    from modelconv.ir.info import infer_int_ranges

    assert infer_int_ranges(source.model.graph) == {"ids": (0, 7)}
    out = tmp_path / "out.onnx"
    assert modelconv.convert(path, out).verified  # ids >= 7 would make ORT fail


# --- 3./4./5. precision read from the file, int8 I/O, calibration ------------------------

@pytest.mark.parametrize(("flags", "mode"), [
    (["--fp16"], "float16"), (["--quantize", "dynamic"], "dynamic"),
    (["--quantize", "int8", "--calibration", "CAL"], "int8"),
    (["--quantize", "int8", "--calibration", "CAL", "--int8-io"], "int8")])
def test_verify_reads_the_tflite_files_precision(tmp_path: Path, flags: list[str],
                                                 mode: str) -> None:
    pytest.importorskip("ai_edge_litert")
    from modelconv.verification.precision import file_precision

    flags = [str(_calibration(tmp_path)) if f == "CAL" else f for f in flags]
    out = tmp_path / "m.tflite"
    assert main(["convert", str(CNN), str(out), "--quiet", *flags]) == 0
    assert file_precision(out, "tflite") == mode
    report = tmp_path / "r.json"
    assert main(["verify", str(CNN), str(out), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["mode"] == mode
    assert main(["verify", str(_perturbed_cnn(tmp_path)), str(out)]) == 1


def test_onnx_precision_from_initializers_and_quant_ops(tmp_path: Path) -> None:
    from modelconv.verification.precision import onnx_precision

    w16 = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    half = _save([helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
                  helper.make_node("MatMul", ["xh", "w"], ["yh"]),
                  helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT)],
                 [_float("x", [1, 4])], [_float("y", [1, 4])], tmp_path / "h.onnx", [w16])
    assert onnx_precision(half) == "float16"
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    qdq = _save([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
                [_float("x", [1, 4])], [_float("y", [1, 4])], tmp_path / "q.onnx", [scale, zero])
    assert onnx_precision(qdq) == "int8"
    assert onnx_precision(CNN) == "float32"


def test_int8_io_model_passes(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    out = tmp_path / "io.tflite"
    result = modelconv.convert(CNN, out, quantize="int8", calibration=_calibration(tmp_path),
                               int8_io=True)
    assert result.verified and result.report is not None
    assert result.report.outputs[0].cosine > 0.99


def test_int8_needs_calibration_or_an_explicit_random(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    out = tmp_path / "q.tflite"
    assert main(["convert", str(CNN), str(out), "--quantize", "int8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs calibration data" in err and "--calibration random" in err
    assert not out.exists()
    with pytest.raises(ExportError, match="calibration"):
        modelconv.convert(CNN, out, quantize="int8")
    assert main(["convert", str(CNN), str(out), "--quantize", "int8", "--calibration",
                 "random", "--quiet", "--report", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert "warning: int8 ranges were calibrated on random" in err
    assert "UserWarning" not in err and ".py:" not in err
    # several samples, none of them the calibration's own first sample (seed 0)
    assert "seeds 1..3" in json.loads((tmp_path / "r.json").read_text())["inputs"]


def test_int8_verifies_on_the_calibration_data(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    result = modelconv.convert(CNN, tmp_path / "q.tflite", quantize="int8",
                               calibration=_calibration(tmp_path, 5))
    assert result.report is not None and result.report.samples == 5
    assert "calibration data" in result.report.inputs


# --- 6. a skipped verification is loud -------------------------------------------------

def _unrunnable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The source imports, but its runtime cannot run it here (as Keras 3 with some .h5)."""
    import modelconv.api as api

    real = api.load

    def load(src: Any, options: Any = None, **kwargs: Any) -> Any:
        source = real(src, options, **kwargs)
        source.make_runner, source.runner_unavailable = None, "the runtime cannot load it"
        return source

    monkeypatch.setattr(api, "load", load)


def test_skip_is_not_a_pass() -> None:
    report = VerificationReport.skip("no runtime")
    assert report.skipped and not report.passed and report.verdict == "NOT VERIFIED"


def test_unverifiable_conversion_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _unrunnable(monkeypatch)
    out = tmp_path / "o.onnx"
    assert main(["convert", str(CNN), str(out), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "NOT VERIFIED" in err and "the runtime cannot load it" in err
    assert "--reference" in err
    assert out.exists()  # converted, not verified
    assert main(["convert", str(CNN), str(out), "--quiet", "--overwrite", "--no-verify"]) == 0
    assert main(["verify", str(CNN), str(out)]) == 3
    result = modelconv.convert(CNN, out, overwrite=True)
    assert not result.verified and result.report is not None and result.report.skipped
    assert not result.report.passed
    with pytest.raises(AssertionError, match="not verified"):
        assert_equivalent(CNN, out)


def test_exit_codes_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = capsys.readouterr().out
    assert "3  converted, not verified" in text and "1  not equivalent" in text


# --- 7. --reference --------------------------------------------------------------------

def test_reference_outputs_make_an_unrunnable_source_verifiable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    np.savez(tmp_path / "ref.npz", probs=_cnn_outputs(x))
    np.savez(tmp_path / "pos.npz", output_0=_cnn_outputs(x))
    np.savez(tmp_path / "bad.npz", probs=_cnn_outputs(x)[:, ::-1].copy())
    out = tmp_path / "o.onnx"
    modelconv.convert(CNN, out, verify=False)
    _unrunnable(monkeypatch)
    args = ["verify", str(CNN), str(out), "--inputs", str(tmp_path / "in.npz")]
    assert main([*args, "--reference", str(tmp_path / "ref.npz")]) == 0
    assert main([*args, "--reference", str(tmp_path / "pos.npz")]) == 0
    assert main([*args, "--reference", str(tmp_path / "bad.npz")]) == 1
    assert main(["convert", str(CNN), str(out), "--overwrite", "--quiet", "--inputs",
                 str(tmp_path / "in.npz"), "--reference", str(tmp_path / "ref.npz")]) == 0
    report = modelconv.verify(CNN, out, inputs=tmp_path / "in.npz",
                              reference=tmp_path / "ref.npz")
    assert report.passed and report.source_runtime.startswith("reference")
    assert assert_equivalent(CNN, out, inputs=tmp_path / "in.npz",
                             reference=tmp_path / "ref.npz").passed
    result = modelconv.convert(CNN, out, overwrite=True, inputs=tmp_path / "in.npz",
                               reference=tmp_path / "ref.npz")
    assert result.verified
    with pytest.raises(ShapeError, match="--inputs"):
        modelconv.verify(CNN, out, reference=tmp_path / "ref.npz")


# --- 8. several samples ----------------------------------------------------------------

def test_three_samples_by_default_plus_batch_two(tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    report = modelconv.convert(CNN, out).report
    assert report is not None
    assert report.samples == 4 and "seeds 0..2" in report.inputs and "batch 2" in report.inputs
    assert modelconv.verify(MLP, MLP, samples=5).samples == 5  # static batch: no batch-2 sample
    assert main(["verify", str(MLP), str(MLP), "--samples", "2", "--report",
                 str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["samples"] == 2


# --- 9. self-describing reports --------------------------------------------------------

def test_reports_name_files_inputs_tolerance_and_verdict(tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    result = modelconv.convert(CNN, out)
    report = result.report
    assert report is not None
    page = render_html(report)
    for text in (str(CNN), str(out), "generated, seeds 0..2", "rtol 0.0001", "PASSED"):
        assert text in page, text
    assert "PASSED" in repr(report) and str(out) in repr(report)
    assert "<table" in report._repr_html_()
    assert "onnx -> onnx" in repr(result) and "PASSED" in repr(result)
    assert "<table" in result._repr_html_()


# --- 10. incompatible signatures are an error, not a verdict ---------------------------

def test_different_signatures_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(CNN), str(MLP)]) == 2
    assert "SignatureMismatchError" in capsys.readouterr().err
    two = _save([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])],
                [_float("x", [2, 16])], [_float("y", [2, 16]), _float("z", [2, 16])],
                tmp_path / "two.onnx")
    one = _save([helper.make_node("Relu", ["x"], ["y"])], [_float("x", [2, 16])],
                [_float("y", [2, 16])], tmp_path / "one.onnx")
    with pytest.raises(SignatureMismatchError, match="output"):
        modelconv.verify(two, one)


def test_inputs_are_matched_by_name(tmp_path: Path) -> None:
    def sub(path: Path, order: list[str]) -> Path:
        return _save([helper.make_node("Sub", ["a", "b"], ["y"])],
                     [_float(n, [2, 3]) for n in order], [_float("y", [2, 3])], path)

    ab, ba = sub(tmp_path / "ab.onnx", ["a", "b"]), sub(tmp_path / "ba.onnx", ["b", "a"])
    assert modelconv.verify(ab, ba).passed


def test_channels_last_tflite_is_fed_transposed_inputs(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    result = modelconv.convert(CNN, tmp_path / "nhwc.tflite", nhwc_io=True)
    assert result.verified


def test_keras_h5_keras_cannot_reload_exits_3_until_a_reference_is_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real case: Keras 3 writes ``x + y`` into a legacy .h5 that its own loader
    misreads. The conversion is written but not verified (3); recorded outputs verify it."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    a = keras.Input((4,), name="a")
    model = keras.Model(a, keras.layers.Dense(4, name="d")(a) + a)
    model.save(tmp_path / "op.h5")
    out = tmp_path / "op.onnx"
    assert main(["convert", str(tmp_path / "op.h5"), str(out), "--quiet"]) == 3
    assert "NOT VERIFIED" in capsys.readouterr().err
    x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    np.savez(tmp_path / "in.npz", a=x)
    np.savez(tmp_path / "ref.npz", output_0=keras.ops.convert_to_numpy(model(x)))
    np.savez(tmp_path / "bad.npz", output_0=keras.ops.convert_to_numpy(model(x)) + 1.0)
    args = ["verify", str(tmp_path / "op.h5"), str(out), "--inputs", str(tmp_path / "in.npz")]
    assert main([*args, "--reference", str(tmp_path / "ref.npz")]) == 0
    assert main([*args, "--reference", str(tmp_path / "bad.npz")]) == 1
