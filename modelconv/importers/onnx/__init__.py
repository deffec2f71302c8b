"""ONNX importer: validate an .onnx file (structure, ops, external data) and load it lazily.

Embedded weights are not parsed into memory either: they are mapped from the file in place
(:mod:`modelconv.importers.onnx.hollow`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from modelconv.errors import ModelLoadError, ShapeError, UnsafeModelError, UnsupportedOpsError
from modelconv.formats import SourceModel
from modelconv.importers.onnx.checks import check_declared_content, graph_tensors, graphs
from modelconv.importers.onnx.hollow import checker_view, hollow_model
from modelconv.ir.builder import SOURCE_KEY
from modelconv.ir.info import infer_int_ranges
from modelconv.options import ConvertOptions

#: domains onnxruntime implements besides the standard one
KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}
_MAX_IR_VERSION = onnx.IR_VERSION


def import_onnx(src: str | os.PathLike[str], options: ConvertOptions) -> SourceModel:
    """Load and check an ONNX file; external data stays on disk (lazy)."""
    path = Path(src)
    proto, mapped = _parse(path)
    check_declared_content(proto, graphs(proto.graph), path)
    _check_external_data(proto, path)
    _check_ops(proto, path)
    _check_allocation_bombs(proto, path)
    try:
        onnx.checker.check_model(checker_view(proto) if mapped else str(path),
                                 full_check=False)
    except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        msg = str(exc).strip().splitlines()[0]
        if "topologically sorted" in msg:
            msg = "its nodes are not in topological order or form a cycle: " + msg
        raise ModelLoadError(f"invalid ONNX model: {msg}", path=str(path)) from exc
    except Exception as exc:  # checker raises a variety of C++-mapped errors
        raise ModelLoadError(f"invalid ONNX model: {exc}", path=str(path)) from exc
    try:
        if mapped:  # the weights are views of this file's pages (hollow.py)
            model = ir.serde.deserialize_model(proto)
            ir.external_data.set_base_dir(model.graph, str(path.resolve().parent))
        else:
            model = ir.load(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot load ONNX model: {exc}", path=str(path)) from exc

    from modelconv.verification.runners import OnnxRuntimeRunner

    aliases = tag_source_names(model)
    return SourceModel(
        model=model,
        format="onnx",
        path=str(path),
        make_runner=lambda: OnnxRuntimeRunner(path, aliases=aliases),
        int_ranges=infer_int_ranges(model.graph),
    )


def _parse(path: Path) -> tuple[onnx.ModelProto, bool]:
    """The model proto, and whether its embedded weights were left in the file (mapped)."""
    proto: onnx.ModelProto | None = None
    try:
        if path.stat().st_nlink == 1 and not path.is_symlink():
            proto = hollow_model(path.resolve())
        mapped = proto is not None
        if proto is None:
            proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError, ProtoError and friends
        raise ModelLoadError(
            "not a valid ONNX file (protobuf parse failed: truncated or corrupt)",
            path=str(path),
            hint="Re-export or re-download the model",
        ) from exc
    if not proto.HasField("graph") or not proto.graph.output or not proto.opset_import:
        raise ModelLoadError(
            "not a valid ONNX model (no graph, outputs or opset imports)", path=str(path)
        )
    if not 1 <= proto.ir_version <= _MAX_IR_VERSION:
        raise ModelLoadError(f"unsupported ONNX ir_version {proto.ir_version}", path=str(path))
    return proto, mapped


def _tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in graphs(proto.graph):
        yield from graph_tensors(graph)


def _check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Every external location must be a plain file inside the model's folder."""
    base = path.resolve().parent
    for tensor in _tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"tensor '{tensor.name}' external data '{location}'"
        if not location or os.path.isabs(location) or ".." in Path(location).parts:
            raise UnsafeModelError(f"{where} points outside the model's folder", path=str(path),
                                   hint="Keep external data files next to the .onnx file")
        target = base / location
        if target.is_symlink() or not target.resolve().is_relative_to(base):
            raise UnsafeModelError(f"{where} is a link leading outside the model's folder",
                                   path=str(path))
        if not target.is_file():
            raise ModelLoadError(f"{where} is missing", path=str(path),
                                 hint="Copy the data file next to the .onnx file")
        stat = target.stat()
        if stat.st_nlink > 1:
            raise UnsafeModelError(f"{where} is a hard link (may alias a file elsewhere)",
                                   path=str(path), hint="Copy the data file instead of linking")
        offset = int(info.get("offset", 0) or 0)
        itemsize = _itemsize(tensor.data_type)
        expected = int(np.prod(tensor.dims, dtype=object)) * itemsize if itemsize else None
        length = int(info.get("length", expected if expected is not None else 0) or 0)
        if offset < 0 or length < 0 or offset + length > stat.st_size:
            raise ModelLoadError(
                f"{where} asks for bytes {offset}..{offset + length} but the file has "
                f"{stat.st_size}", path=str(path))
        if expected is not None and length != expected:
            raise ModelLoadError(
                f"{where} holds {length} bytes but shape {list(tensor.dims)} needs {expected}",
                path=str(path))


def _itemsize(data_type: int) -> int | None:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize)
    except Exception:
        return None


def _check_ops(proto: onnx.ModelProto, path: Path) -> None:
    """Every op must be known to ONNX (or onnxruntime) or defined as a model function."""
    local = {(f.domain, f.name) for f in proto.functions}
    unknown: dict[str, list[str]] = {}
    for graph in graphs(proto.graph):
        for i, node in enumerate(graph.node):
            key = (node.domain, node.op_type)
            if key in local:
                continue
            if node.domain in {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview"}:
                if onnx.defs.has(node.op_type, node.domain):
                    continue
            elif node.domain in KNOWN_DOMAINS:
                continue
            label = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
            unknown.setdefault(label, []).append(node.name or f"node#{i}")
    if unknown:
        raise UnsupportedOpsError(
            "ONNX op", unknown, path=str(path),
            hint="Custom-domain ops need their runtime library; export the model with "
                 "standard ONNX ops",
        )


def tag_source_names(model: ir.Model) -> dict[str, str]:
    """Give untagged nodes ``source_name`` = their ONNX node name; returns name -> tensor."""
    aliases: dict[str, str] = {}
    for node in model.graph:
        name = node.metadata_props.get(SOURCE_KEY)
        if name is None and node.name:
            name = node.name
            node.metadata_props[SOURCE_KEY] = name
        if name and node.outputs and node.outputs[0].name:
            aliases[name] = node.outputs[0].name
    return aliases


#: refuse graphs whose constant-shaped allocations exceed this many elements
MAX_ALLOC_ELEMENTS = 1 << 31
_SHAPE_INPUT = {"ConstantOfShape": 0, "Expand": 1, "Reshape": 1}


def _check_allocation_bombs(proto: onnx.ModelProto, path: Path) -> None:
    """Refuse nodes that would allocate absurd tensors from constant shapes."""
    consts = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and node.output:
                    consts[node.output[0]] = attr.t
        index = _SHAPE_INPUT.get(node.op_type)
        if index is None or len(node.input) <= index or node.input[index] not in consts:
            continue
        tensor = consts[node.input[index]]
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        dims = onnx.numpy_helper.to_array(tensor).astype(np.float64).ravel()
        count = float(np.prod(np.abs(dims))) if dims.size else 1.0
        if count > MAX_ALLOC_ELEMENTS:
            raise ShapeError(
                f"node '{node.name or node.op_type}' ({node.op_type}) would allocate "
                f"{count:.3g} elements", path=str(path),
                hint="The model declares an absurd tensor size; it is refused",
            )
