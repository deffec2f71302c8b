"""Child-side measurements of a converted model: size, node/op count, 1-thread latency, error.

The error is ``max|y - ref| / max|ref|`` over all outputs (the same "max rel" as
modelconv's verifier), against the source framework's outputs stored by the model builder.
Inputs/outputs are matched by name, else by position; a 4-D tensor whose shape is the
NCHW<->NHWC transpose of the expected one is transposed (converters choose layouts).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def output_size(path: Path) -> int:
    """Bytes of the output and of every other file written next to it (external data)."""
    return sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file())


def onnx_node_count(path: Path) -> tuple[int, dict[str, int]]:
    """Nodes of the main graph and its subgraphs (functions not expanded), per op type."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return sum(counts.values()), dict(sorted(counts.items()))


def tflite_op_count(path: Path) -> tuple[int, dict[str, int]]:
    """Operators of every subgraph of a .tflite flatbuffer, per builtin op name."""
    from ai_edge_litert import schema_py_generated as schema

    buf = path.read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        custom = oc.CustomCode()
        codes.append(custom.decode() if custom else names.get(code, str(code)))
    counts: dict[str, int] = {}
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for j in range(sub.OperatorsLength()):
            name = codes[sub.Operators(j).OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return sum(counts.values()), dict(sorted(counts.items()))


def _fit(value: np.ndarray, shape: Sequence[int | None], dtype: Any) -> np.ndarray:
    """``value`` cast to ``dtype`` and, when needed, layout-transposed to ``shape``."""
    want = [d if isinstance(d, int) and d > 0 else None for d in shape]

    def ok(v: np.ndarray) -> bool:
        return len(want) == v.ndim and all(w is None or w == s for w, s in zip(want, v.shape,
                                                                               strict=True))

    if not ok(value) and value.ndim == 4:
        for perm in (_TO_NHWC, _TO_NCHW):
            if ok(value.transpose(perm)):
                value = value.transpose(perm)
                break
    return np.ascontiguousarray(value.astype(dtype, copy=False))


def _match(names: list[str], given: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Arrays for ``names``: by name when all match, else in the given order."""
    if all(n in given for n in names):
        return [given[n] for n in names]
    values = list(given.values())
    if len(values) != len(names):
        raise ValueError(f"the model has inputs {names}, the benchmark has {list(given)}")
    return values


def max_rel_error(outputs: list[np.ndarray], refs: list[np.ndarray]) -> tuple[float, float]:
    """(max rel, max abs) error over outputs; shapes are matched by transposing 4-D ones."""
    if len(outputs) < len(refs):
        raise ValueError(f"the model has {len(outputs)} outputs, the source {len(refs)}")
    worst_rel, worst_abs = 0.0, 0.0
    for out, ref in zip(outputs, refs, strict=False):
        got = _fit(np.asarray(out), ref.shape, np.float64)
        if got.shape != ref.shape:
            got = got.reshape(ref.shape) if got.size == ref.size else got
        if got.shape != ref.shape:
            raise ValueError(f"output shape {got.shape} != source output shape {ref.shape}")
        diff = np.abs(got - ref.astype(np.float64))
        abs_err = float(np.nanmax(diff)) if diff.size else 0.0
        if np.isnan(diff).any():
            abs_err = float("inf")
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        rel = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else float("inf"))
        worst_rel, worst_abs = max(worst_rel, rel), max(worst_abs, abs_err)
    return worst_rel, worst_abs


def _median_ms(run: Callable[[], list[np.ndarray]], runs: int,
               warmup: int = 2) -> tuple[float, list[np.ndarray]]:
    outputs: list[np.ndarray] = []
    for _ in range(warmup):
        outputs = run()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        outputs = run()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), outputs


def run_onnx(path: Path, inputs: dict[str, np.ndarray], runs: int) -> dict[str, Any]:
    """Latency (onnxruntime, 1 intra-op thread) and outputs of an ONNX model."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    start = time.perf_counter()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - start
    metas = sess.get_inputs()
    arrays = _match([m.name for m in metas], inputs)
    dtype_of = {"tensor(float)": np.float32, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(float16)": np.float16,
                "tensor(double)": np.float64}
    feed = {m.name: _fit(a, m.shape, dtype_of.get(m.type, np.float32))
            for m, a in zip(metas, arrays, strict=True)}
    latency, outs = _median_ms(lambda: [np.asarray(o) for o in sess.run(None, feed)], runs)
    return {"latency_ms": latency, "load_s": load_s, "outputs": outs}


def run_tflite(path: Path, inputs: dict[str, np.ndarray], runs: int) -> dict[str, Any]:
    """Latency (ai_edge_litert Interpreter, num_threads=1) and outputs of a .tflite model."""
    from ai_edge_litert.interpreter import Interpreter

    start = time.perf_counter()
    interp = Interpreter(model_path=str(path), num_threads=1)
    details = interp.get_input_details()
    arrays = _match([d["name"] for d in details], inputs)
    fitted = []
    for d, a in zip(details, arrays, strict=True):
        sig = [int(x) if x > 0 else None for x in d.get("shape_signature", d["shape"])]
        value = _fit(a, sig, d["dtype"])
        if tuple(d["shape"]) != value.shape:
            interp.resize_tensor_input(d["index"], list(value.shape))
        fitted.append((d["index"], value))
    interp.allocate_tensors()
    load_s = time.perf_counter() - start
    out_details = interp.get_output_details()

    def run() -> list[np.ndarray]:
        for index, value in fitted:
            interp.set_tensor(index, value)
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in out_details]

    latency, outs = _median_ms(run, runs)
    return {"latency_ms": latency, "load_s": load_s, "outputs": outs}


def evaluate(path: Path, inputs_npz: Path, reference_npz: Path, runs: int) -> dict[str, Any]:
    """All measurements of the converted model at ``path``."""
    with np.load(inputs_npz) as data:
        inputs = {k: data[k] for k in data.files}
    with np.load(reference_npz) as data:
        refs = [data[f"out{i}"] for i in range(len(data.files))]
    result: dict[str, Any] = {"size_bytes": output_size(path)}
    if path.suffix == ".tflite":
        result["nodes"], result["op_counts"] = tflite_op_count(path)
        ran = run_tflite(path, inputs, runs)
    else:
        result["nodes"], result["op_counts"] = onnx_node_count(path)
        ran = run_onnx(path, inputs, runs)
    outs = ran.pop("outputs")
    if len(outs) > len(refs) and len(refs) == 1:  # pick the output shaped like the source's
        same = [o for o in outs if o.size == refs[0].size]
        outs = same[:1] or outs
    result["max_rel_err"], result["max_abs_err"] = max_rel_error(outs, refs)
    result.update(ran)
    return result
