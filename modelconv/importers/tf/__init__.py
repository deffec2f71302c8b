"""TensorFlow SavedModel importer.

Three routes, tried in this order:

- **Keras** (format ``savedmodel-keras``, no TensorFlow): a SavedModel written by
  tf.keras / tf_keras carries ``keras_metadata.pb`` with the model's Keras config. When
  that config is a layer graph (Functional/Sequential) and the default ``serving_default``
  signature is asked for, the model is converted by the Keras layer handlers, its weights
  read from the checkpoint's tensor bundle (:mod:`modelconv.importers.tf.files.object_graph`).
- **graph** (format ``savedmodel-graph``, no TensorFlow): any other SavedModel (Keras 3
  ``model.export()``, ``tf.saved_model.save`` of a ``tf.Module``, subclassed models) whose
  signature uses only ops with a handler is converted op by op from its TF graph
  (:mod:`modelconv.importers.tf`), variables read from the tensor bundle.
- **tf2onnx** (format ``savedmodel``) for the rest (control flow, TensorList LSTMs, ops
  without a handler): the reason is in the warnings.

Nothing of the graph runs on the first two routes, yet (as on the tf2onnx route) the ops
the SavedModel can run are read from ``saved_model.pb`` first and file/process ops are
refused: verification runs it.

The tf2onnx route runs tf2onnx in a TensorFlow worker subprocess, then the ONNX importer.
The worker freezes the chosen signature (``options.signature``, default serving_default),
refuses graphs that touch files or run Python (ReadFile, WriteFile, PyFunc, ...), and
converts with tf2onnx's Python API. tf2onnx keeps going when it cannot convert an op (it
leaves the TF op in the ONNX graph), so the result is checked here: every op must be a
known ONNX op, else UnsupportedOpsError. tf2onnx emits a non-standard ``Erfc`` for exact
GELU; it is rewritten into ``1 - Erf(x)``.
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
    ModelLoadError,
    UnsafeModelError,
    UnsupportedFormatError,
    UnsupportedOpsError,
)
from modelconv.formats import SourceModel
from modelconv.options import ConvertOptions

#: ops that read/write files, run Python or map memory: never inside an inference graph
UNSAFE_TF_OPS = {
    "ReadFile", "WriteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc", "MatchingFiles",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints", "ImmutableConst", "WholeFileReader", "WholeFileReaderV2",
    "TFRecordReader", "TFRecordReaderV2", "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2", "TextLineReader", "TextLineReaderV2", "IdentityReader",
    "IdentityReaderV2", "LMDBReader", "ReaderReadV2", "DeleteSessionTensor",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "PrintV2", "Print",
    "WriteSummary", "WriteScalarSummary", "WriteImageSummary", "WriteHistogramSummary",
    "WriteAudioSummary", "WriteGraphSummary", "WriteRawProtoSummary", "CreateSummaryFileWriter",
    "CreateSummaryDbWriter", "ExperimentalDatasetToTFRecord", "DatasetToTFRecord",
    "SaveDataset", "SaveDatasetV2", "LoadDataset", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "DecodeProtoV2", "EncodeProto",
}
#: what the checkpoint saver's own save/restore functions hold (allowed there only)
CHECKPOINT_OPS = {"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
                  "MergeV2Checkpoints"}
DEFAULT_OPSET = 18
NATIVE_SIGNATURE = "serving_default"
NATIVE_FORMAT = "savedmodel-keras"
GRAPH_FORMAT = "savedmodel-graph"


def import_savedmodel(src: str | os.PathLike[str], options: ConvertOptions) -> SourceModel:
    """Convert a SavedModel folder's signature into the IR."""
    from modelconv.verification.runners_tf import TFSavedModelRunner, run_worker, tf_available

    path = Path(src)
    if not (path / "saved_model.pb").is_file():
        raise ModelLoadError("not a SavedModel folder (no saved_model.pb)", path=str(path))
    options.report_progress("import", 0.0)
    native = _import_native(path, options)
    if isinstance(native, SourceModel):
        options.report_progress("import", 1.0)
        return native
    graph = _import_graph(path, options)
    if isinstance(graph, SourceModel):
        options.report_progress("import", 1.0)
        return graph
    reason, native_error = graph
    if not tf_available():
        if native_error is not None:
            raise native_error
        raise MissingDependencyError("tensorflow", "tf", "Converting a SavedModel")
    result = run_worker("tf2onnx", str(path.resolve()), signature=options.signature,
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
    options.report_progress("import", 1.0)
    from modelconv.ir.info import TensorSpec

    specs = [TensorSpec(n, d, tuple(s)) for n, d, s in meta["inputs"]]
    sig = options.signature
    return SourceModel(
        model=model.model if isinstance(model, SourceModel) else model,
        format="savedmodel", path=str(path),
        make_runner=lambda: TFSavedModelRunner(path, sig, specs, meta["outputs"]),
        int_ranges=model.int_ranges if isinstance(model, SourceModel) else {},
        warnings=[f"converted with tf2onnx: {reason}"] if reason else [],
    )


# --------------------------------------------------------------------------------------
# graph route (any SavedModel whose ops have handlers, no TensorFlow)


def _import_graph(path: Path, options: ConvertOptions
                  ) -> SourceModel | tuple[str, ModelconvError | None]:
    """The signature converted op by op from the TF graph, or why not (and the error to
    raise when tf2onnx is not available either)."""
    from modelconv.importers.tf.files.tfgraph import read_saved_model
    from modelconv.importers.tf.graph.convert import convert_signature
    from modelconv.ir.info import TensorSpec

    display = str(path)
    _refuse_unsafe_ops(read_saved_model(path, display), display)
    try:
        converted = convert_signature(path, options.signature, display)
    except UnsafeModelError:
        raise
    except ModelconvError as exc:
        return f"the graph route cannot convert it ({exc.message})", exc
    specs = [TensorSpec(name, dtype, shape) for name, dtype, shape in converted.inputs]
    return _native_source(converted.model, GRAPH_FORMAT, path, options.signature, specs,
                          converted.outputs)


def _native_source(model: Any, fmt: str, path: Path, signature: str, specs: list[Any],
                   outputs: list[str]) -> SourceModel:
    """A SourceModel converted without TensorFlow; TensorFlow runs it for verification when
    installed (else verification is skipped, saying why)."""
    from modelconv.ir.info import infer_int_ranges
    from modelconv.verification.runners_tf import tf_available

    make_runner = None
    reason = None
    if tf_available():
        def make_runner() -> Any:
            from modelconv.verification.runners_tf import TFSavedModelRunner

            return TFSavedModelRunner(path, signature, specs, outputs)
    else:
        reason = ("running the SavedModel to verify the conversion needs TensorFlow "
                  "(pip install 'modelconv[tf]')")
    return SourceModel(model=model, format=fmt, path=str(path), make_runner=make_runner,
                       runner_unavailable=reason, int_ranges=infer_int_ranges(model.graph))


# --------------------------------------------------------------------------------------
# native route (tf.keras SavedModels, no TensorFlow)


def _import_native(path: Path,
                   options: ConvertOptions) -> SourceModel | tuple[str, ModelconvError | None]:
    """The model via the Keras handlers, or why that route does not apply (and the error
    to raise when tf2onnx is not available either)."""
    from modelconv.importers.keras.config import parse_model
    from modelconv.importers.keras.convert import check_layers
    from modelconv.importers.tf.files.object_graph import read_keras_metadata
    from modelconv.importers.tf.files.tfgraph import read_saved_model

    display = str(path)
    meta = read_keras_metadata(path, display)
    if meta is None:
        return "", None
    if options.signature != NATIVE_SIGNATURE:
        return (f"signature '{options.signature}' asked for (the Keras route converts "
                f"'{NATIVE_SIGNATURE}')", None)
    config = meta.model_config()
    if config is None:
        cls = meta.root.get("class_name")
        error = UnsupportedFormatError(
            f"the SavedModel holds a subclassed Keras model ('{cls}') with no layer graph; "
            "converting it needs TensorFlow and tf2onnx", path=display)
        return f"the Keras model is a subclassed '{cls}' (no layer graph)", error
    graph = parse_model(config)
    try:
        check_layers(graph, display)
    except (UnsafeModelError, UnsupportedOpsError) as exc:
        return f"the Keras route cannot convert it ({exc.message})", exc
    saved = read_saved_model(path, display)
    _refuse_unsafe_ops(saved, display)
    signature = saved.signatures.get(NATIVE_SIGNATURE)
    in_names = [ref.layer for ref in graph.inputs]
    out_names = keras_output_names([ref.layer for ref in graph.outputs])
    if signature is None or set(signature.inputs) != set(in_names) or \
            set(signature.outputs) != set(out_names):
        return (f"its '{NATIVE_SIGNATURE}' signature does not match the Keras model's "
                "inputs/outputs", None)
    return _convert_native(path, meta, signature, out_names)


def _convert_native(path: Path, meta: Any, signature: Any, out_names: list[str]) -> SourceModel:
    from modelconv.importers.keras.convert import convert_keras_file
    from modelconv.importers.tf.files.bundle import TF_DTYPES
    from modelconv.importers.tf.files.object_graph import open_keras_savedmodel
    from modelconv.ir.info import TensorSpec

    with open_keras_savedmodel(path, meta) as kf:
        model = convert_keras_file(kf)
    _name_outputs(model, out_names)
    specs = []
    for value in model.graph.inputs:
        info = signature.inputs[value.name]
        dtype = TF_DTYPES.get(info.dtype)
        specs.append(TensorSpec(str(value.name), dtype.name if dtype is not None else "float32",
                                tuple(info.shape) if info.shape is not None else ()))
    outputs = [str(v.name) for v in model.graph.outputs]
    return _native_source(model, NATIVE_FORMAT, path, NATIVE_SIGNATURE, specs, outputs)


def keras_output_names(layers: list[str]) -> list[str]:
    """Keras 2's ``model.output_names``: output layer names, repeats suffixed ``_1``, ``_2``
    (the keys of a tf.keras SavedModel's serving signature)."""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    out = []
    for name in layers:
        proposal = name
        while proposal in seen:
            counts[name] = counts.get(name, 0) + 1
            proposal = f"{name}_{counts[name]}"
        seen.add(proposal)
        out.append(proposal)
    return out


def _name_outputs(model: Any, keys: list[str]) -> None:
    """Name the graph outputs by their signature keys and sort them by key, as the
    TensorFlow runner returns a signature's outputs."""
    graph = model.graph
    outputs = list(graph.outputs)
    wanted = dict(zip((id(v) for v in outputs), keys, strict=True))
    for node in graph:
        for value in node.outputs:
            if value.name in keys and wanted.get(id(value)) != value.name:
                value.name = f"{value.name}__inner"  # an inner value holds an output's key
    for value, key in zip(outputs, keys, strict=True):
        value.name = key
    graph.outputs.clear()
    graph.outputs.extend(sorted(outputs, key=lambda v: str(v.name)))


def _refuse_unsafe_ops(saved: Any, display: str) -> None:
    """Refuse file/process ops anywhere the SavedModel can run (as the tf2onnx route does
    for its signature), read from saved_model.pb without TensorFlow."""
    from modelconv.importers.tf.files.tfgraph import reachable_ops

    ops, saver_ops = reachable_ops(saved)
    unsafe = {op: names for op, names in ops.items() if op in UNSAFE_TF_OPS}
    unsafe.update({op: names for op, names in saver_ops.items()
                   if op in UNSAFE_TF_OPS and op not in CHECKPOINT_OPS})
    if unsafe:
        raise UnsafeModelError(
            "SavedModel contains file/process ops: "
            + ", ".join(f"{op} ({', '.join(n[:3])})" for op, n in sorted(unsafe.items())),
            path=display, hint="modelconv refuses graphs that read/write files or run Python")


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
# worker side (imported by modelconv.verification.runners_tf inside the TensorFlow process)


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
