"""The tf2onnx route (format ``savedmodel``) for what the other two routes cannot convert
(control flow, TensorList LSTMs, ops without a handler).

It runs tf2onnx in the TensorFlow worker subprocess, then the ONNX importer. The worker
freezes the chosen signature (``options.signature``, default serving_default), refuses
graphs that touch files or run Python (ReadFile, WriteFile, PyFunc, ...), and converts with
tf2onnx's Python API. tf2onnx keeps going when it cannot convert an op (it leaves the TF op
in the ONNX graph), so the result is checked here: every op must be a known ONNX op, else
UnsupportedOpsError. tf2onnx emits a non-standard ``Erfc`` for exact GELU; it is rewritten
into ``1 - Erf(x)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import (
    MissingDependencyError,
    ModelconvError,
    UnsafeModelError,
    UnsupportedOpsError,
)
from modelconv.formats import SourceModel
from modelconv.importers.tf.safety import UNSAFE_TF_OPS
from modelconv.ir.info import TensorSpec
from modelconv.options import ConvertOptions
from modelconv.workers import tf_worker

DEFAULT_OPSET = 18


def import_tf2onnx(path: Path, options: ConvertOptions, reason: str,
                   error: ModelconvError | None) -> SourceModel:
    """Convert the signature with tf2onnx in the TensorFlow worker, then the ONNX importer.

    Args:
        path: the SavedModel folder.
        options: the conversion options (``signature``, ``opset``).
        reason: why the TensorFlow-free routes did not convert it (kept as a warning).
        error: what to raise instead when TensorFlow is not installed (None: say that
            TensorFlow is missing).

    Returns:
        The converted model; TensorFlow runs the signature to verify it.

    Raises:
        MissingDependencyError: TensorFlow is not installed (and ``error`` is None).
        UnsafeModelError: the signature holds file/process ops.
        UnsupportedOpsError: tf2onnx left TensorFlow ops in the ONNX graph.
    """
    if not tf_worker.tf_available():
        if error is not None:
            raise error
        raise MissingDependencyError("tensorflow", "tf", "Converting a SavedModel")
    result = tf_worker.run_worker("tf2onnx", str(path.resolve()), signature=options.signature,
                                  opset=options.opset or DEFAULT_OPSET)
    meta = json.loads(bytes(result["meta"]).decode())
    if meta.get("unsafe"):
        raise UnsafeModelError(
            "SavedModel signature contains file/process ops: "
            + ", ".join(f"{op} ({', '.join(n[:3])})" for op, n in meta["unsafe"].items()),
            path=str(path), hint="modelconv refuses graphs that read/write files or run Python")
    import onnx

    proto = onnx.load_from_string(bytes(result["onnx"]))
    rewrite_erfc(proto)
    check_onnx_ops(proto, str(path))
    model = _to_ir(proto, options, str(path))
    specs = [TensorSpec(n, d, tuple(s)) for n, d, s in meta["inputs"]]
    sig = options.signature

    def make_runner() -> Any:
        from modelconv.verification.runners_tf import TFSavedModelRunner

        return TFSavedModelRunner(path, sig, specs, meta["outputs"])

    return SourceModel(
        model=model.model if isinstance(model, SourceModel) else model,
        format="savedmodel", path=str(path), make_runner=make_runner,
        int_ranges=model.int_ranges if isinstance(model, SourceModel) else {},
        warnings=[f"converted with tf2onnx: {reason}"] if reason else [],
    )

def _to_ir(proto: Any, options: ConvertOptions, display: str) -> Any:
    """Hand the ONNX model to the ONNX importer (the seam between the two importers)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="modelconv-sm-") as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        onnx.save(proto, onnx_path)
        try:
            from modelconv.importers.onnx import import_onnx
        except ImportError:  # pragma: no cover - ONNX importer not installed yet
            import onnx_ir as ir

            return ir.from_proto(proto)
        sm = import_onnx(onnx_path, options)
        _materialise(sm.model)
        return sm


def _materialise(model: Any) -> None:
    """Load every initializer into memory (the temporary folder is about to go)."""
    import onnx_ir as ir

    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is not None and not isinstance(tensor, ir.Tensor):
            value.const_value = ir.tensor(tensor.numpy(), name=tensor.name)


def rewrite_erfc(proto: Any) -> int:
    """Replace every ``Erfc(x)`` node by ``Sub(1, Erf(x))``; returns how many."""
    from onnx import TensorProto, helper

    graph = proto.graph
    nodes, count = [], 0
    one_name = None
    for node in graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        if one_name is None:
            one_name = "modelconv_erfc_one"
            graph.initializer.append(helper.make_tensor(one_name, TensorProto.FLOAT, [], [1.0]))
        erf_out = f"{node.output[0]}_erf"
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf_out], name=f"{node.name}_erf"))
        nodes.append(helper.make_node("Sub", [one_name, erf_out], list(node.output),
                                      name=node.name))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def check_onnx_ops(proto: Any, display: str) -> None:
    """Every node must be a standard ONNX op (tf2onnx leaves unconverted TF ops in)."""
    import onnx

    opset = {o.domain: o.version for o in proto.opset_import}
    missing: dict[str, list[str]] = defaultdict(list)
    for node in proto.graph.node:
        domain = node.domain or ""
        if domain not in ("", "ai.onnx"):
            missing[f"{domain}::{node.op_type}"].append(node.name)
            continue
        try:
            onnx.defs.get_schema(node.op_type, opset.get("", DEFAULT_OPSET), domain)
        except onnx.defs.SchemaError:
            missing[node.op_type].append(node.name)
    if missing:
        raise UnsupportedOpsError("TensorFlow op", missing, path=display,
                                  hint="tf2onnx could not convert these ops")


# --------------------------------------------------------------------------------------
# worker side (run by modelconv.workers.tf_worker inside the TensorFlow process)


def _graph_ops(graph_def: Any) -> dict[str, list[str]]:
    ops: dict[str, list[str]] = defaultdict(list)
    for node in graph_def.node:
        ops[node.op].append(node.name)
    for fn in graph_def.library.function:
        for node in fn.node_def:
            ops[node.op].append(f"{fn.signature.name}/{node.name}")
    return ops


#: attributes that keep grappler from inlining a function call
_NO_INLINE_ATTRS = ("_XlaMustCompile", "_noinline")


def _drop_no_inline_marks(graph_def: Any) -> int:
    """Remove XLA-only / no-inline marks from call nodes and functions; returns how many."""
    count = 0
    holders = [node.attr for node in graph_def.node]
    for fn in graph_def.library.function:
        holders.append(fn.attr)
        holders.extend(node.attr for node in fn.node_def)
    for attrs in holders:
        for key in _NO_INLINE_ATTRS:
            if key in attrs:
                del attrs[key]
                count += 1
    return count


def tf2onnx_job(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """Worker job: freeze the signature, check its ops, convert with tf2onnx."""
    from tf2onnx import convert, tf_loader

    sig = spec.get("signature") or "serving_default"
    loaded = tf_loader.from_saved_model(
        spec["path"], None, None, signatures=[sig], return_concrete_func=True,
        return_initialized_tables=True, return_tensors_to_rename=True)
    frozen, inputs, outputs, renames = loaded[0], loaded[1], loaded[2], loaded[-1]
    if _drop_no_inline_marks(frozen):
        # Keras 3 jit-compiles some layers (grouped convolutions): their functions are
        # marked XLA-only and stay behind as StatefulPartitionedCall nodes that tf2onnx
        # cannot convert. Unmarked, grappler inlines them like any other function.
        import tensorflow as tf

        with tf.Graph().as_default():
            frozen = tf_loader.tf_optimize(inputs, outputs, frozen)
    ops = _graph_ops(frozen)
    unsafe = {op: names for op, names in ops.items() if op in UNSAFE_TF_OPS}
    meta: dict[str, Any] = {"unsafe": unsafe}
    if unsafe:
        return {"meta": _json_bytes(meta), "onnx": np.zeros(0, np.uint8)}
    proto, _ = convert.from_graph_def(frozen, input_names=inputs, output_names=outputs,
                                      opset=int(spec.get("opset", DEFAULT_OPSET)),
                                      tensors_to_rename=renames)
    inv = {v: k for k, v in renames.items()}
    meta["inputs"] = [[vi.name, _np_dtype(vi.type.tensor_type.elem_type),
                       [d.dim_value if d.HasField("dim_value") else None
                        for d in vi.type.tensor_type.shape.dim]] for vi in proto.graph.input]
    meta["outputs"] = [o.name for o in proto.graph.output]
    meta["tf_outputs"] = [inv.get(o.name, o.name) for o in proto.graph.output]
    return {"meta": _json_bytes(meta),
            "onnx": np.frombuffer(proto.SerializeToString(), dtype=np.uint8)}


def _np_dtype(elem_type: int) -> str:
    from onnx import helper

    return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))


def _json_bytes(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
