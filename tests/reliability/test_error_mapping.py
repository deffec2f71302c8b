"""Only errors that mean a bad file become ModelLoadError / ExportError; a bug in modelconv
surfaces as an internal error that says so (traceback behind --debug)."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelconv.exporters.onnx
import modelconv.importers.onnx
from modelconv.cli import main
from modelconv.errors import ModelLoadError
from tests.hostile.corpus import CNN


def _handler_bug(*args: object, **kwargs: object) -> None:
    raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")


@pytest.mark.parametrize("target", ["importer", "exporter"])
def test_bug_is_reported_as_a_bug(target: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    if target == "importer":
        monkeypatch.setattr(modelconv.importers.onnx, "import_onnx", _handler_bug)
    else:
        monkeypatch.setattr(modelconv.exporters.onnx, "export_onnx", _handler_bug)
    code = main(["convert", str(CNN), str(tmp_path / "out.onnx"), "--quiet"])
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps lines at 100
    assert code == 2
    assert "internal error (TypeError)" in err and "bug in modelconv" in err, err
    assert "please report it" in err and "--debug" in err
    assert "corrupt" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(modelconv.importers.onnx, "import_onnx", _handler_bug)
    with pytest.raises(TypeError):
        main(["--debug", "convert", str(CNN), str(tmp_path / "out.onnx"), "--quiet"])


def test_truncated_file_is_still_a_load_error(tmp_path: Path) -> None:
    import modelconv

    bad = tmp_path / "t.onnx"
    bad.write_bytes(CNN.read_bytes()[:1500])
    with pytest.raises(ModelLoadError):
        modelconv.load(bad)


def test_unreadable_file_is_a_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelconv

    def unreadable(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(modelconv.importers.onnx, "import_onnx", unreadable)
    with pytest.raises(ModelLoadError, match="Permission denied"):
        modelconv.load(CNN)


def test_oserror_outside_load_and_save_is_an_internal_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import modelconv.verification.verifier

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(modelconv.verification.verifier, "verify_runners", broken)
    code = main(["convert", str(CNN), str(tmp_path / "out.onnx"), "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "internal error (OSError)" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
