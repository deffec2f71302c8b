"""Check, in a fresh process, that importing Keras files loads no framework."""

from __future__ import annotations

import subprocess
import sys


def assert_keras_import_loads_no_framework(files: list[str]) -> None:
    """Import each Keras file with modelconv in a subprocess; fail if TensorFlow, Keras,
    tf_keras or torch got imported on the way.

    Args:
        files: paths of .keras / .h5 files.
    """
    code = (
        "import sys\n"
        "from modelconv.importers.keras import import_keras\n"
        "from modelconv.options import ConvertOptions\n"
        f"for f in {files!r}:\n"
        "    import_keras(f, ConvertOptions())\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf_keras', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ok" in proc.stdout
