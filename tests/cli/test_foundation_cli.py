"""The modelconv command: exit codes, one-paragraph errors, light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from modelconv.cli import main
from tests.paths import ROOT

FIXTURES = ROOT / "fixtures" / "onnx"
CNN = FIXTURES / "small_cnn.onnx"


def test_convert_prints_verification(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.onnx"
    code = main(["convert", str(CNN), str(out), "--opset", "18", "--quiet",
                 "--report", str(tmp_path / "r.json")])
    text = capsys.readouterr().out
    assert code == 0
    assert "verification PASSED" in text and "max abs" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is True and report["outputs"][0]["name"] == "probs"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"", "ModelLoadError"),
        (bytes(range(7, 255)) * 8, "UnsupportedFormatError"),
        (b"this is a text file, not a model\n", "UnsupportedFormatError"),
        (None, "ModelLoadError"),  # truncated ONNX
    ],
)
def test_bad_inputs_exit_nonzero_with_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, kind: str
) -> None:
    src = tmp_path / "bad.onnx"
    src.write_bytes(CNN.read_bytes()[:1200] if content is None else content)
    out = tmp_path / "out.onnx"
    code = main(["convert", str(src), str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error ({kind})" in err
    assert "Traceback" not in err
    assert "\n\n" not in err.strip()
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]


def test_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.onnx"
    assert main(["convert", str(CNN), str(good), "--quiet"]) == 0
    assert main(["verify", str(CNN), str(good)]) == 0
    # perturb one weight: not equivalent, and the drifting layer is named
    model = onnx.load(str(good))
    for init in model.graph.initializer:
        if init.name == "c2_w":
            arr = numpy_helper.to_array(init).copy()
            arr[0, 0, 0, 0] += 5.0
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    capsys.readouterr()
    assert main(["verify", str(CNN), str(bad)]) == 1
    text = capsys.readouterr().out
    assert "FAILED" in text and "first diverging layer: 'conv2'" in text


def test_inspect_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(CNN), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "onnx" and info["op_counts"]["Conv"] == 2


def test_formats_lists_readers_and_writers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formats"]) == 0
    text = capsys.readouterr().out
    assert "onnx" in text and "tflite" in text and "keras-h5" in text


def test_debug_shows_traceback(tmp_path: Path) -> None:
    src = tmp_path / "empty.onnx"
    src.write_bytes(b"")
    from modelconv.errors import ModelLoadError

    with pytest.raises(ModelLoadError):
        main(["--debug", "convert", str(src), str(tmp_path / "o.onnx")])


def test_help_and_import_do_not_load_frameworks() -> None:
    code = (
        "import sys, modelconv, modelconv.cli\n"
        "try:\n    modelconv.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_console_script_runs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "modelconv", "convert", str(CNN),
                          str(tmp_path / "o.onnx"), "--opset", "20", "--quiet"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "verification PASSED" in out.stdout


def test_user_inputs_from_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype("f4"))
    out = tmp_path / "o.onnx"
    assert main(["convert", str(CNN), str(out), "--inputs", str(inputs), "--quiet",
                 "--report", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["input_shapes"] == [[3, 3, 32, 32]]
