"""Verifying a Keras 3 file runs Keras on the torch backend without importing TensorFlow
(Keras' legacy-h5 decoder would otherwise import it, which crashed beside CUDA torch)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT


@pytest.mark.skipif(importlib.util.find_spec("keras") is None or
                    importlib.util.find_spec("torch") is None, reason="needs keras and torch")
@pytest.mark.parametrize("fixture", ["k3_cnn.h5", "k3_multi.keras"])
def test_keras3_verification_does_not_import_tensorflow(tmp_path: Path, fixture: str) -> None:
    code = (
        "import sys, modelconv\n"
        f"r = modelconv.convert({str(ROOT / 'fixtures' / 'keras' / fixture)!r}, "
        f"{str(tmp_path / 'o.onnx')!r})\n"
        "print('VERIFIED', r.verified, 'TF', 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert "VERIFIED True TF False" in out.stdout
