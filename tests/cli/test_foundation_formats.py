"""Format detection by content."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from modelconv.errors import ModelLoadError, UnsupportedFormatError
from modelconv.formats import detect_format, resolve_source_format, resolve_target_format
from tests.paths import ROOT

FIXTURES = ROOT / "fixtures"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("a.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "keras-h5"),
        ("a.tflite", b"\x1c\0\0\0TFL3" + b"\0" * 100, "tflite"),
        ("a.safetensors", struct.pack("<Q", 2) + b"{}", "safetensors"),
        ("a.pt", b"\x80\x02" + b"\0" * 20, "state_dict"),
    ],
)
def test_magic_bytes(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    assert detect_format(_write(tmp_path / name, data)) == expected


def test_onnx_fixture_detected() -> None:
    assert detect_format(FIXTURES / "onnx" / "small_cnn.onnx") == "onnx"


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (["config.json", "metadata.json", "model.weights.h5"], "keras"),
        (["m/data.pkl", "m/data/0", "m/version"], "state_dict"),
        (["m/code/__torch__/m.py", "m/constants.pkl", "m/data.pkl"], "torchscript"),
        (["m/models/model.json", "m/archive_format"], "pt2"),
    ],
)
def test_zip_flavours(tmp_path: Path, members: list[str], expected: str) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for m in members:
            zf.writestr(m, b"x")
    assert detect_format(path) == expected


def test_savedmodel_folder(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01")
    assert detect_format(tmp_path) == "savedmodel"


def test_plain_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match="SavedModel"):
        detect_format(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="empty"):
        detect_format(_write(tmp_path / "m.onnx", b""))


def test_text_file(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match="text"):
        detect_format(_write(tmp_path / "m.onnx", b"just some notes\n"))


def test_extension_mismatch_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "model.onnx", b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(UnsupportedFormatError, match="content is 'keras-h5'"):
        resolve_source_format(path, None)


def test_declared_format_must_match_content(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match="declared format 'onnx'"):
        resolve_source_format(_write(tmp_path / "m", b"\x89HDF\r\n\x1a\n" + b"\0" * 64), "onnx")


def test_target_format_from_extension() -> None:
    assert resolve_target_format("x/model.onnx", None) == "onnx"
    assert resolve_target_format("x/model.tflite", None) == "tflite"
    with pytest.raises(UnsupportedFormatError, match="cannot tell"):
        resolve_target_format("x/model.bin", None)
    with pytest.raises(UnsupportedFormatError, match="cannot write"):
        resolve_target_format("x/model.h5", "keras-h5")
