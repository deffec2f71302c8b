"""Subprocess jobs of ``python -m benchmarks scale``: write weights, convert, verify, anchors.

``python -m benchmarks.scale_jobs JOB JSON`` runs one job and prints one JSON line. Each
job runs in a fresh process so the parent can sample its memory from /proc/PID/status.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

SEQ = 16


def write_weights(name: str, path: str) -> dict[str, Any]:
    """Random seeded weights for decoder ``name`` as .safetensors, streamed tensor by tensor."""
    import numpy as np
    import torch

    from benchmarks import decoders

    with torch.device("meta"):
        model = decoders.Decoder(decoders.CONFIGS[name])
    entries, seen, offset = {}, set(), 0
    params = []
    for pname, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        n = param.numel() * 4
        entries[pname] = {"dtype": "F32", "shape": list(param.shape),
                          "data_offsets": [offset, offset + n]}
        params.append((pname, tuple(param.shape)))
        offset += n
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    tmp = Path(path + ".tmp")
    rng = np.random.default_rng(0)
    with open(tmp, "wb") as fh:
        fh.write(len(header).to_bytes(8, "little"))
        fh.write(header)
        for pname, shape in params:
            if pname.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                arr = 1 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
            else:
                arr = 0.02 * rng.standard_normal(shape, dtype=np.float32)
            fh.write(arr.astype(np.float32).tobytes())
            del arr
    tmp.replace(path)
    return {"bytes": offset, "params": offset // 4}


def convert(name: str, src: str, dst: str) -> dict[str, Any]:
    """modelconv.convert without verification (verified in its own process afterwards)."""
    import modelconv

    t = time.perf_counter()
    result = modelconv.convert(src, dst, model=f"benchmarks.decoders:{name}",
                               input_shapes=[(1, SEQ)], input_dtypes=["int64"],
                               verify=False, overwrite=True)
    return {"convert_s": time.perf_counter() - t, "timings": result.timings,
            "files": [str(p) for p in result.outputs], "warnings": result.warnings}


def verify(name: str, src: str, dst: str) -> dict[str, Any]:
    """modelconv.verify on one sample (source and converted model run one after the other)."""
    import modelconv

    t = time.perf_counter()
    report = modelconv.verify(src, dst, model=f"benchmarks.decoders:{name}",
                              input_shapes=[(1, SEQ)], input_dtypes=["int64"], samples=1)
    worst = max(report.outputs, key=lambda o: o.max_abs) if report.outputs else None
    return {"verify_s": time.perf_counter() - t, "passed": report.passed,
            "max_abs_err": getattr(worst, "max_abs", None),
            "max_rel_err": getattr(worst, "max_rel", None),
            "summary": report.summary()}


def _module(name: str, src: str) -> Any:
    """The decoder with the file's weights loaded the ordinary way (as a user would)."""
    from safetensors.torch import load_file

    from benchmarks import decoders

    model = decoders.build(name)
    model.load_state_dict(load_file(src), strict=False)
    return model


def anchor_torch_onnx(name: str, src: str, dst: str) -> dict[str, Any]:
    """torch.onnx.export(dynamo=True) with external data."""
    import torch

    t = time.perf_counter()
    model = _module(name, src)
    ids = torch.zeros(1, SEQ, dtype=torch.int64)
    program = torch.onnx.export(model, (ids,), dynamo=True, external_data=True)
    program.save(dst, external_data=True)
    return {"convert_s": time.perf_counter() - t, "files": [dst, dst + ".data"]}


def anchor_litert_torch(name: str, src: str, dst: str) -> dict[str, Any]:
    """litert_torch.convert(...).export(dst)."""
    import litert_torch
    import torch

    t = time.perf_counter()
    model = _module(name, src)
    edge = litert_torch.convert(model, (torch.zeros(1, SEQ, dtype=torch.int64),))
    edge.export(dst)
    return {"convert_s": time.perf_counter() - t, "files": [dst]}


def baseline() -> dict[str, Any]:
    """Only the imports a conversion needs: the memory every conversion starts from."""
    import onnx  # noqa: F401
    import torch  # noqa: F401

    import modelconv.exporters.onnx
    import modelconv.importers.torch  # noqa: F401

    time.sleep(0.5)  # let the parent sample
    return {}


JOBS = {"baseline": baseline, "write": write_weights, "convert": convert, "verify": verify,
        "torch_onnx": anchor_torch_onnx, "litert_torch": anchor_litert_torch}


if __name__ == "__main__":
    job, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        out = {"status": "ok", **JOBS[job](**args)}
    except Exception as exc:  # reported in the table, not raised
        out = {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:400]}
    print("RESULT " + json.dumps(out, default=str), flush=True)
