"""``python -m benchmarks keras-hub``: keras_hub backbones, modelconv's package route vs tf2onnx.

keras_hub backbones save only their constructor arguments, so a `.keras` file of one needs
keras_hub's code to rebuild its graph. modelconv converts the `.keras` file through its
package route (``--allow-package keras_hub``: Keras 3 on torch, captured into the ATen
handlers); the established path is Keras 3 on TensorFlow, ``model.export()`` to a
SavedModel, then ``python -m tf2onnx.convert --saved-model``. Both are timed from the file
they start from (the `.keras` file, the SavedModel folder) in a fresh process each, with
``/usr/bin/time -v`` for wall time and peak resident memory. The models are built from small
configs (never presets: nothing is downloaded), once per backend.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, child_env, log

MODELS = ("bert", "gpt2", "vit")

_BUILD = """
import os, sys
backend, out = sys.argv[1], sys.argv[2]
os.environ["KERAS_BACKEND"] = backend
import keras, keras_hub
keras.utils.set_random_seed(0)
text = dict(vocabulary_size=30522, num_layers=4, num_heads=4, hidden_dim=256,
            intermediate_dim=1024, max_sequence_length=128)
models = {
    "bert": lambda: keras_hub.models.BertBackbone(**text),
    "gpt2": lambda: keras_hub.models.GPT2Backbone(**text),
    "vit": lambda: keras_hub.models.ViTBackbone(image_shape=(224, 224, 3), patch_size=16,
                                                num_layers=4, num_heads=4, hidden_dim=256,
                                                mlp_dim=1024),
}
for name, make in models.items():
    model = make()
    if backend == "torch":
        model.save(os.path.join(out, name + ".keras"))
    else:
        model.export(os.path.join(out, name + "_savedmodel"), verbose=False)
"""


def _timed(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, peak RSS MiB, ok."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    seconds = None
    if wall:
        h, m, sec = wall.groups()
        seconds = int(h or 0) * 3600 + int(m) * 60 + float(sec)
    return {"ok": proc.returncode == 0, "seconds": seconds,
            "rss_mib": int(rss.group(1)) / 1024 if rss else None,
            "error": "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1][:200]
            if proc.stderr.strip() else f"exit {proc.returncode}"}


def run_keras_hub(python: str = sys.executable, timeout: float = 1800) -> str:
    """Build the backbones, convert each both ways, and return the markdown table.

    Args:
        python: the interpreter that has modelconv, keras_hub, TensorFlow and tf2onnx.
        timeout: seconds allowed for one build or one conversion.

    Returns:
        A markdown table: one row per model and converter, then the ratios.
    """
    with tempfile.TemporaryDirectory(prefix="mc-keras-hub-") as tmp:
        folder = Path(tmp)
        for backend in ("torch", "tensorflow"):
            log(f"building the keras_hub backbones on {backend}")
            subprocess.run([python, "-c", _BUILD, backend, str(folder)], check=True,
                           env=child_env(None), timeout=timeout, capture_output=True)
        rows = ["| model | converter | convert s | peak RSS MiB | ok |", "|---|---|---|---|---|"]
        for name in MODELS:
            log(f"{name}: modelconv (package route)")
            mc = _timed([python, "-m", "modelconv", "convert", str(folder / f"{name}.keras"),
                         str(folder / f"{name}_mc.onnx"), "--allow-package", "keras_hub",
                         "--no-verify", "--quiet"], child_env(None), timeout)
            log(f"{name}: tf2onnx (SavedModel)")
            tf = _timed([python, "-m", "tf2onnx.convert", "--saved-model",
                         str(folder / f"{name}_savedmodel"), "--output",
                         str(folder / f"{name}_tf2onnx.onnx"), "--opset", "17"],
                        child_env(None), timeout)
            for label, m in (("modelconv", mc), ("tf2onnx", tf)):
                rows.append(f"| {name} | {label} | {_fmt(m['seconds'])} | {_fmt(m['rss_mib'])} "
                            f"| {'yes' if m['ok'] else 'no: ' + m['error']} |")
            if mc["seconds"] and tf["seconds"] and mc["rss_mib"] and tf["rss_mib"]:
                time_ratio = mc["seconds"] / tf["seconds"]
                rows.append(f"| {name} | modelconv / tf2onnx | {time_ratio:.2f}x "
                            f"| {mc['rss_mib'] / tf['rss_mib']:.2f}x | |")
        return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
