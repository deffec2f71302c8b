"""``python -m benchmarks scaling``: is modelconv linear in the number of nodes?

A chain ``x → Add(c0) → Relu → Mul(c2) → Add(c3) → ...`` of N nodes, each Add/Mul with its
own constant operand (so no two initializers are equal and deduplication cannot shrink
it), is converted ONNX → ONNX and ONNX → TFLite at 10k and 100k nodes, each in a fresh
process (``verify=False``). The figure of merit is time(100k) / time(10k): 10 for a linear
pipeline; the check passes at ``--max-ratio`` (default 15).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, child_env, log

SIZES = (10_000, 100_000)
MAX_RATIO = 15.0
_OPS = ("Add", "Relu", "Mul")


def chain_model(n: int, path: Path) -> Path:
    """Write an N-node Add/Relu/Mul chain with distinct [1, 8] constants to ``path``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    prev = "x"
    for i in range(n):
        op = _OPS[i % 3]
        inputs = [prev]
        if op != "Relu":
            # exact in float32 and different for every node (no deduplication)
            value = 1.0 - i * 2.0**-22 if op == "Mul" else i * 2.0**-20
            inits.append(numpy_helper.from_array(np.full((1, 8), value, np.float32), f"c{i}"))
            inputs.append(f"c{i}")
        nodes.append(helper.make_node(op, inputs, [f"t{i}"], name=f"n{i}"))
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


_CHILD = """
import json, sys, time
import modelconv.api
start = time.perf_counter()
result = modelconv.api.convert(sys.argv[1], sys.argv[2], verify=False, overwrite=True)
print(json.dumps({"seconds": time.perf_counter() - start, "timings": result.timings}))
"""


def convert_once(src: Path, dst: Path, python: str, timeout: float) -> dict[str, Any]:
    """One conversion in a fresh process: {"seconds", "timings"} or {"error"}."""
    try:
        proc = subprocess.run([python, "-c", _CHILD, str(src), str(dst)], env=child_env(None),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:g} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_scaling(python: str = sys.executable, sizes: tuple[int, ...] = SIZES,
                targets: tuple[str, ...] = ("onnx", "tflite"), timeout: float = 900.0,
                max_ratio: float = MAX_RATIO) -> dict[str, Any]:
    """Time every (target, size); returns the records and whether each ratio passed."""
    out: dict[str, Any] = {"sizes": list(sizes), "max_ratio": max_ratio, "targets": {}}
    with tempfile.TemporaryDirectory(prefix="mcscaling-") as tmp:
        sources = {}
        for n in sizes:
            start = time.perf_counter()
            sources[n] = chain_model(n, Path(tmp) / f"chain{n}.onnx")
            log(f"chain of {n} nodes written in {time.perf_counter() - start:.1f} s")
        for target in targets:
            runs = {}
            for n in sizes:
                runs[n] = convert_once(sources[n], Path(tmp) / f"out{n}.{target}", python,
                                       timeout)
                log(f"  onnx -> {target} {n}: {runs[n]}")
            secs = [runs[n].get("seconds") for n in sizes]
            ratio = secs[-1] / secs[0] if None not in secs and secs[0] else None
            out["targets"][target] = {"runs": runs, "ratio": ratio,
                                      "passed": ratio is not None and ratio <= max_ratio}
    return out


def table(res: dict[str, Any]) -> str:
    """The scaling results as a markdown table."""
    sizes = res["sizes"]
    head = "| route | " + " | ".join(f"{n:,} nodes s" for n in sizes) + " | ratio | ok |"
    lines = [head, "|" + "---|" * (len(sizes) + 3)]
    for target, rec in res["targets"].items():
        cells = [f"{rec['runs'][n]['seconds']:.2f}" if "seconds" in rec["runs"][n]
                 else rec["runs"][n]["error"] for n in sizes]
        ratio = f"{rec['ratio']:.1f}x" if rec["ratio"] is not None else "-"
        verdict = f"{'yes' if rec['passed'] else 'NO'} (<= {res['max_ratio']:g}x)"
        lines.append(f"| onnx -> {target} | " + " | ".join(cells) + f" | {ratio} | {verdict} |")
    return "\n".join(lines) + "\n"


def main_scaling(python: str, targets: list[str], sizes: list[int], timeout: float,
                 max_ratio: float) -> int:
    """``scaling`` entry point: prints the table; exit 1 when a ratio exceeds the bound."""
    res = run_scaling(python, tuple(sizes) or SIZES, tuple(targets) or ("onnx", "tflite"),
                      timeout, max_ratio)
    print(table(res))
    print(json.dumps(res, indent=1))
    return 0 if all(r["passed"] for r in res["targets"].values()) else 1
