"""Startup cost: ``import modelconv`` and ``modelconv --help`` wall time vs the 0.2 s target."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, child_env

TARGET_S = 0.2
HEAVY = ("torch", "tensorflow", "keras", "onnxruntime", "onnx", "onnx_ir", "numpy", "jax")


def _wall(cmd: list[str], runs: int) -> tuple[float, list[float], str]:
    times, err = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO),
                              env=child_env(None), check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    return statistics.median(times), times, err


def help_command(python: str) -> list[str]:
    """The installed ``modelconv`` script next to ``python``, else ``python -m modelconv``."""
    script = Path(python).parent / "modelconv"
    return [str(script), "--help"] if script.exists() else [python, "-m", "modelconv", "--help"]


def measure_startup(python: str, runs: int = 5) -> dict[str, Any]:
    """Median wall seconds of: bare interpreter, ``import modelconv``, ``modelconv --help``."""
    out: dict[str, Any] = {"target_s": TARGET_S, "runs": runs}
    for key, cmd in (("python_baseline_s", [python, "-c", "pass"]),
                     ("import_modelconv_s", [python, "-c", "import modelconv"]),
                     ("help_s", help_command(python))):
        median, times, err = _wall(cmd, runs)
        out[key] = median
        out[key.removesuffix("_s") + "_all_s"] = [round(t, 4) for t in times]
        if err:
            out[key.removesuffix("_s") + "_error"] = err
    out["help_command"] = " ".join(help_command(python))
    probe = ("import json, sys, modelconv; "
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=str(REPO),
                          env=child_env(None), check=False)
    try:
        out["imported_by_import_modelconv"] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        out["imported_by_import_modelconv"] = None
    return out
