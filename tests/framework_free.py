"""Check, in a fresh process, that a conversion loads no framework."""

from __future__ import annotations

import subprocess
import sys


def assert_runs_without(body: str, modules: tuple[str, ...]) -> None:
    """Run ``body`` (Python statements) in a fresh interpreter; fail if it fails or if any
    of ``modules`` got imported on the way.

    Args:
        body: the statements to run.
        modules: top-level module names that must stay unimported.
    """
    code = (
        "import sys\n"
        f"{body}\n"
        f"bad = [m for m in {modules!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ok" in proc.stdout


def assert_keras_import_loads_no_framework(files: list[str]) -> None:
    """Import each Keras file with modelconv in a subprocess; fail if TensorFlow, Keras,
    tf_keras or torch got imported on the way.

    Args:
        files: paths of .keras / .h5 files.
    """
    assert_runs_without(
        "from modelconv.importers.keras import import_keras\n"
        "from modelconv.options import ConvertOptions\n"
        f"for f in {files!r}:\n"
        "    import_keras(f, ConvertOptions())",
        ("tensorflow", "keras", "tf_keras", "torch"))
