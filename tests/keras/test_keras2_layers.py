"""The layer table's Keras 2 rows: tf_keras models of the layers tf_keras has, saved as .h5
in a subprocess (tests/builders/keras2_layers_build.py), converted to ONNX and TFLite and
compared with tf_keras' own outputs (``|got - ref| <= 1e-4 * max(1, max|ref|)``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import pytest

from modelconv.errors import UnsupportedOpsError
from modelconv.importers.keras import import_keras
from modelconv.options import ConvertOptions
from modelconv.verification.runners import OnnxRuntimeRunner
from tests.paths import ROOT, TESTS

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("tensorflow", "tf_keras")),
    reason="needs tensorflow and tf_keras to build the Keras 2 files")

ROWS = ["spectral_norm", "einsum_dense", "center_crop", "integer_lookup", "conv_lstm1d",
        "conv_lstm2d", "conv_lstm3d", "rnn_cells", "rnn_stacked"]
#: rows refused on purpose, and the label the refusal names
REFUSED = {"random_crop": "Keras 2 RandomCrop"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keras2_layers")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
    proc = subprocess.run([sys.executable, str(TESTS / "builders" / "keras2_layers_build.py"),
                           str(out), *ROWS, *REFUSED], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _reference(files: Path, name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(files / f"{name}.npz") as data:
        ins = [data[f"in:{i}"] for i in range(sum(k.startswith("in:") for k in data.files))]
        outs = [data[f"out:{i}"] for i in range(sum(k.startswith("out:") for k in data.files))]
    return ins, outs


def _compare(outs: list[np.ndarray], refs: list[np.ndarray]) -> None:
    assert len(outs) == len(refs)
    for got, want in zip(outs, refs, strict=True):
        assert got.shape == want.shape
        tol = 1e-4 * max(float(np.abs(want).max()), 1.0)
        np.testing.assert_allclose(got, want, atol=tol, rtol=0)


@pytest.mark.parametrize("name", ROWS)
def test_keras2_layer_to_onnx(files: Path, name: str) -> None:
    feeds, refs = _reference(files, name)
    sm = import_keras(str(files / f"{name}.h5"), ConvertOptions())
    runner = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    _compare(runner.run(feeds), refs)


@pytest.fixture(scope="module")
def litert() -> Any:
    pytest.importorskip("ai_edge_litert")
    from tests.litert_isolated import IsolatedLiteRT

    worker = IsolatedLiteRT()
    yield worker
    worker.close()


#: rows the TFLite exporter refuses (UnsupportedOpsError), and why (none today: CONV_3D and
#: the ONNX RNN op lower)
TFLITE_REFUSED: dict[str, str] = {}


@pytest.mark.parametrize("name", ROWS)
def test_keras2_layer_to_tflite(files: Path, name: str, litert: Any, tmp_path: Path) -> None:
    from modelconv.api import convert

    feeds, refs = _reference(files, name)
    dst = tmp_path / "m.tflite"
    if name in TFLITE_REFUSED:
        with pytest.raises(UnsupportedOpsError):
            convert(str(files / f"{name}.h5"), str(dst), verify=False)
        return
    convert(str(files / f"{name}.h5"), str(dst), verify=False)
    names = [t.name for t in import_keras(str(files / f"{name}.h5"),
                                          ConvertOptions()).model.graph.inputs]
    out = litert.run(dst.read_bytes(), dict(zip(names, feeds, strict=True)))
    assert out.status == "ok", out.message
    _compare(out.outputs, refs)


@pytest.mark.parametrize(("name", "label"), sorted(REFUSED.items()))
def test_keras2_layer_refused(files: Path, name: str, label: str) -> None:
    with pytest.raises(UnsupportedOpsError, match=label):
        import_keras(str(files / f"{name}.h5"), ConvertOptions())
