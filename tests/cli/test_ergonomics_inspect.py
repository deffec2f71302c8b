"""``inspect`` per format: real shapes, honest producer/opset, weights listed, TFLite
quantization, and JSON that matches the schema documented in docs/inspect.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from modelconv.cli import main
from tests.paths import ROOT

KERAS = ROOT / "fixtures" / "keras"
ONNX = ROOT / "fixtures" / "onnx"


def _documented(section: str) -> set[str]:
    """The keys of one table in docs/inspect.md (rows ``| `key` | ...``)."""
    text = (ROOT / "docs" / "inspect.md").read_text()
    body = text.split(f"### {section}", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", body, flags=re.M))


def _inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["inspect", *argv, "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    _check_schema(doc)
    return doc


def _check_schema(doc: dict[str, Any]) -> None:
    assert set(doc) == _documented("Top-level keys")
    for spec in doc["inputs"] + doc["outputs"]:
        assert set(spec) == _documented("Tensor spec")
        assert all(d is None or isinstance(d, int | str) for d in spec["shape"])
    tensor_keys = _documented("Tensor (`tensors`)")
    for t in doc["tensors"]:
        assert set(t) in (tensor_keys, tensor_keys - {"quantization"}), set(t)
        if t.get("quantization") is not None:
            assert set(t["quantization"]) == _documented("Quantization")


def test_onnx(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _inspect(capsys, str(ONNX / "mlp.onnx"))
    assert doc["format"] == "onnx" and doc["opset"] == 13
    assert doc["outputs"][0]["shape"] == [2, 4] and doc["tensors"] == []


@pytest.mark.parametrize("name", ["k3_cnn.keras", "k2_cnn.h5", "k3_cnn.h5"])
def test_keras_shapes_and_producer(capsys: pytest.CaptureFixture[str], name: str) -> None:
    doc = _inspect(capsys, str(KERAS / name))
    assert doc["outputs"] == [{"name": "dense", "dtype": "float32", "shape": ["batch", 4]}]
    assert doc["opset"] is None
    assert doc["producer"].startswith("Keras ") and "modelconv" not in doc["producer"]
    assert doc["producer"].split()[1][0] == name[1]  # k2_ -> Keras 2.x, k3_ -> Keras 3.x


def test_savedmodel(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _inspect(capsys, str(KERAS / "k3_savedmodel"))
    assert doc["outputs"][0]["shape"] == [None, 4]
    assert doc["opset"] is None and doc["producer"].startswith("TensorFlow")


def test_text_output_has_no_false_opset(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["inspect", str(KERAS / "k3_cnn.keras")]) == 0
    text = capsys.readouterr().out
    assert "opset" not in text and "producer: Keras 3" in text
    assert "dense: float32 ['batch', 4]" in text


def test_safetensors_lists_tensors_without_model(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    header = {"__metadata__": {"format": "pt"},
              "b": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]},
              "w": {"dtype": "F32", "shape": [4, 3], "data_offsets": [8, 56]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + np.zeros(56, np.uint8).tobytes())
    doc = _inspect(capsys, str(path))
    assert doc["format"] == "safetensors"
    assert doc["tensors"] == [{"name": "b", "dtype": "float16", "shape": [4], "bytes": 8},
                              {"name": "w", "dtype": "float32", "shape": [4, 3], "bytes": 48}]
    assert doc["num_parameters"] == 16 and doc["parameter_bytes"] == 56


def test_state_dict_lists_tensors_without_model(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    doc = _inspect(capsys, str(path))
    assert doc["format"] == "state_dict" and doc["inputs"] == []
    assert doc["tensors"] == [
        {"name": "bias", "dtype": "float32", "shape": [2], "bytes": 8},
        {"name": "weight", "dtype": "float32", "shape": [2, 3], "bytes": 24}]
    assert doc["num_parameters"] == 8


def test_pt2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.pt2"
    ep = torch.export.export(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()),
                             (torch.zeros(1, 3),))
    torch.export.save(ep, path)
    doc = _inspect(capsys, str(path))
    assert doc["format"] == "pt2" and doc["opset"] is None and doc["producer"] == "PyTorch"
    assert doc["outputs"][0]["shape"] == [1, 2] and doc["num_parameters"] == 8


def test_tflite_quantization(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert")
    import modelconv

    out = tmp_path / "m.tflite"
    modelconv.convert(ONNX / "mlp.onnx", out, quantize="dynamic", verify=False)
    doc = _inspect(capsys, str(out))
    assert doc["format"] == "tflite" and doc["opset"] is None
    quantized = [t for t in doc["tensors"] if t["quantization"]]
    assert quantized, doc["tensors"]
    q = quantized[0]
    assert q["dtype"] == "int8" and q["quantization"]["scale_count"] >= 1
    assert q["quantization"]["scale"] > 0
    assert any(t["quantization"] is None and t["dtype"] == "float32" for t in doc["tensors"])
