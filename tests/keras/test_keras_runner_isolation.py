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



def test_hiding_tensorflow_leaves_no_false_probe_behind() -> None:
    """Keras caches whether TensorFlow imports; a probe made while the Keras runner hid it
    must be forgotten, or IntegerLookup would later say TensorFlow is not installed."""
    import importlib.util
    import os
    import subprocess
    import sys

    import pytest

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs tensorflow installed")
    code = (
        "import sys\n"
        "from keras.src.utils import module_utils\n"
        "from modelconv.verification.runners_keras import _tensorflow_hidden\n"
        "assert 'tensorflow' not in sys.modules\n"
        "with _tensorflow_hidden():\n"
        "    assert module_utils.tensorflow.available is False\n"
        "print('AFTER', module_utils.tensorflow._available)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "AFTER None" in out.stdout, out.stdout
