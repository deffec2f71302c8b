"""``python -m benchmarks transposes``: TRANSPOSE ops and LiteRT latency of vision transformers.

For each timm model (default ``vit_tiny_patch16_224`` and ``levit_128s``, built with
``pretrained=False`` and every parameter perturbed by a seeded ``0.02 * N(0, 1)`` so that no
branch is all zeros for a converter to fold away), modelconv (``modelconv.convert(module,
out, verify=False)``) and litert-torch (``litert_torch.convert(module, args).export``) each
convert the same module in a fresh process. A third process then reads both files, counts
their operators by type, checks their outputs against torch's, and times them with the
``ai_edge_litert`` Interpreter (``num_threads=1``): the two files are invoked in alternating
rounds, so that load from other processes on the machine falls on both alike, and the
median of ``--runs`` invocations of each is reported.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, child_env, log

MODELS = ("vit_tiny_patch16_224", "levit_128s")
CONVERTERS = ("modelconv", "litert-torch")
COUNTED = ("TRANSPOSE", "RESHAPE", "FULLY_CONNECTED", "BATCH_MATMUL")

_CONVERT = """
import json, sys
import numpy as np, timm, torch
name, converter, out, ref = sys.argv[1:5]
torch.manual_seed(0)
model = timm.create_model(name, pretrained=False).eval()
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.02 * torch.randn_like(p))
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    np.savez(ref, x=x.numpy(), y=model(x).numpy())
if converter == "modelconv":
    import modelconv
    modelconv.convert(model, out, example_inputs=(x,), verify=False, overwrite=True)
else:
    import litert_torch
    litert_torch.convert(model, (x,)).export(out)
print(json.dumps({"ok": True}))
"""

_EVALUATE = """
import json, statistics, sys, time
from pathlib import Path
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from benchmarks.evaluate import tflite_op_count
ref = np.load(sys.argv[1]); runs = int(sys.argv[2]); paths = sys.argv[3:]
x, y = ref["x"], ref["y"]
interps, times, res = [], [], []
for path in paths:
    it = Interpreter(model_path=path, num_threads=1)
    d = it.get_input_details()[0]
    it.allocate_tensors()
    it.set_tensor(d["index"], x if tuple(d["shape"]) == x.shape else x.transpose(0, 2, 3, 1))
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    total, counts = tflite_op_count(Path(path))
    err = float(np.abs(out - y).max() / np.abs(y).max())
    interps.append(it); times.append([])
    res.append({"ops": total, "counts": counts, "max_rel_err": err})
for _ in range(2 + runs):
    for it, t in zip(interps, times):
        start = time.perf_counter(); it.invoke(); t.append((time.perf_counter() - start) * 1e3)
for r, t in zip(res, times):
    r["latency_ms"] = statistics.median(t[2:])
print(json.dumps(res))
"""


def _child(script: str, args: list[str], python: str, timeout: float) -> dict[str, Any] | list:
    """Run ``script`` in a fresh interpreter; its last stdout line is JSON (or an error)."""
    try:
        proc = subprocess.run([python, "-c", script, *args], env=child_env("torch"),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:g} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_transposes(models: list[str], python: str, runs: int,
                   timeout: float) -> dict[str, Any]:
    """Convert every model with both converters and evaluate each pair.

    Returns:
        ``{model: {converter: {"ops", "counts", "max_rel_err", "latency_ms"} | {"error"}}}``.
    """
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mctransposes-") as tmp:
        for name in models:
            rec: dict[str, Any] = {}
            ref = str(Path(tmp) / f"{name}_ref.npz")
            files = {}
            for conv in CONVERTERS:
                path = str(Path(tmp) / f"{name}_{conv}.tflite")
                got = _child(_CONVERT, [name, conv, path, ref], python, timeout)
                if isinstance(got, dict) and "error" in got:
                    log(f"{name}: {conv} failed: {got['error']}")
                    rec[conv] = got
                else:
                    files[conv] = path
            if files:
                evaluated = _child(_EVALUATE, [ref, str(runs), *files.values()], python,
                                   timeout)
                for i, conv in enumerate(files):
                    rec[conv] = (evaluated if isinstance(evaluated, dict)
                                 else evaluated[i])
            out[name] = rec
    return out


def table(res: dict[str, Any]) -> str:
    """The results as a markdown table, one row per (model, converter)."""
    head = ["model", "converter", *COUNTED, "ops", "latency ms (1 thr)", "max rel err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rec in res.items():
        for conv in CONVERTERS:
            r = rec.get(conv, {"error": "not run"})
            if "error" in r:
                lines.append(f"| {name} | {conv} | error: {r['error']} |")
                continue
            cells = [str(r["counts"].get(op, 0)) for op in COUNTED]
            lines.append(f"| {name} | {conv} | " + " | ".join(cells)
                         + f" | {r['ops']} | {r['latency_ms']:.1f} | {r['max_rel_err']:.1e} |")
        mc, lt = rec.get("modelconv", {}), rec.get("litert-torch", {})
        if "latency_ms" in mc and "latency_ms" in lt:
            lines.append(f"| {name} | mc/litert | "
                         + " | ".join(_ratio(mc["counts"].get(op, 0), lt["counts"].get(op, 0))
                                      for op in COUNTED)
                         + f" | {_ratio(mc['ops'], lt['ops'])}"
                         + f" | {_ratio(mc['latency_ms'], lt['latency_ms'])} | |")
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main_transposes(models: list[str], python: str, runs: int, timeout: float) -> int:
    """``transposes`` entry point: prints the table and the JSON; exit 1 on an error."""
    res = run_transposes(models or list(MODELS), python, runs, timeout)
    print(table(res))
    print(json.dumps(res, indent=1))
    return 0 if all("error" not in r for rec in res.values() for r in rec.values()) else 1
