#!/usr/bin/env bash
# Build the benchmark venv (outside the repo) that has torchvision and litert-torch.
#
# The system interpreter keeps torch 2.13 (CPU) untouched; torchvision does not import with
# it, so the venv shadows it with torch 2.14.1 + torchvision 0.29.1 (a CUDA build that runs
# on the CPU, ~5.5 GB, taken from the local wheel mirror). The venv sees the system
# site-packages so onnx/onnxruntime/tensorflow/keras/ai-edge-litert are the SAME versions as
# in the system interpreter; pip never uninstalls packages outside the venv.
#
# Usage: bash benchmarks/setup_env.sh [VENV_DIR]     (default /work/bench-venv)
# Then:  python -m benchmarks run --python /work/bench-venv/bin/python
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-/work/bench-venv}"
case "$venv" in "$here"/*) echo "refusing to create the venv inside the repo: $venv" >&2; exit 2;; esac

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$py" -m pip install -q --no-deps -e "$here"
# the charting extra of the benchmark report
"$py" -m pip install -q matplotlib
# litert-torch (torch -> TFLite anchor): needs torch<2.15 and ai-edge-litert 2.3.
# Keep the torch we just installed; report (not fail) when it cannot be installed.
if "$py" -m pip install -q "litert-torch" "torch==2.14.1" "torchvision==0.29.1"; then
  echo "litert-torch: installed"
else
  echo "litert-torch: NOT installable here; the torch->tflite anchor will be reported as unavailable" >&2
fi
"$py" - <<'PY'
import importlib
for name in ("torch", "torchvision", "onnx", "onnxruntime", "keras", "tensorflow",
             "ai_edge_litert", "litert_torch", "matplotlib", "modelconv"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:15s} {getattr(mod, '__version__', 'ok')}")
    except Exception as exc:  # report every missing piece, do not stop
        print(f"{name:15s} unavailable: {type(exc).__name__}: {exc}")
PY
