"""SIGTERM is handled like Ctrl-C: exit 2, no temporary folder, no unverified output.

The CLI runs in a subprocess with the MODELCONV_TEST_PAUSE hook (modelconv/hooks.py), which
stops it at a known point; the test sends the signal only once the process says it is there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.corpus import CNN
from tests.paths import ROOT


def _run_until(point: str, folder: Path, sig: int) -> tuple[int, str]:
    env = {**os.environ, "MODELCONV_TEST_PAUSE": point,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelconv", "convert", str(CNN), str(folder / "out.onnx"),
         "--quiet"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # blocks until the hook speaks (or the process ends)
        seen.append(line)
        if line.startswith(f"modelconv: paused at {point}"):
            break
    else:
        proc.wait()
        pytest.fail(f"the process never reached {point}: {''.join(seen)}")
    names = [p.name for p in folder.iterdir()]
    if point == "export":  # the pause is inside the exporter's temporary folder
        assert any(n.startswith(".modelconv-") for n in names), names
    else:  # the output is complete and not yet verified
        assert "out.onnx" in names, names
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest


@pytest.mark.parametrize("point", ["export", "verify"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_leaves_nothing_behind(point: str, sig: int, tmp_path: Path) -> None:
    code, err = _run_until(point, tmp_path, sig)
    assert code == 2, err
    assert "Traceback" not in err, err
    assert ("terminated" if sig == signal.SIGTERM else "interrupted") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "debris left behind"
