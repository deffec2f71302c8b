"""Declared-content checks of an ONNX file, run before anything is built from it.

- every text field (names, op types, domains, producer, doc strings, metadata) must be valid
  UTF-8: protobuf hands back ``bytes`` for invalid UTF-8 in proto2 string fields, which would
  break every later step;
- declared dims (graph inputs/outputs/value_info, tensor dims) must not be negative
  (ONNX marks an unknown dim by leaving it unset or naming it, never by a negative value);
- complex tensors are refused by name: no exporter or runtime modelconv uses handles them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import onnx
from google.protobuf.message import Message

from modelconv.errors import ModelLoadError, UnsupportedOpsError

_COMPLEX: dict[int, str] = {onnx.TensorProto.COMPLEX64: "complex64",
                            onnx.TensorProto.COMPLEX128: "complex128"}


def check_declared_content(proto: onnx.ModelProto, graphs: Iterable[onnx.GraphProto],
                           path: Path) -> None:
    """Refuse undecodable text, negative dims and complex tensors.

    Args:
        proto: the parsed model.
        graphs: the main graph and every subgraph.
        path: the file (for messages).

    Raises:
        ModelLoadError: a text field is not valid UTF-8 or a declared dim is negative.
        UnsupportedOpsError: a value or tensor is complex.
    """
    _check_text(proto, path)
    complex_values: dict[str, list[str]] = {}
    for graph in graphs:
        for info in (*graph.input, *graph.output, *graph.value_info):
            where = f"value '{info.name}'"
            kind = info.type.WhichOneof("value")
            if kind != "tensor_type":
                continue
            tensor_type = info.type.tensor_type
            if tensor_type.elem_type in _COMPLEX:
                complex_values.setdefault(_COMPLEX[tensor_type.elem_type], []).append(info.name)
            for axis, dim in enumerate(tensor_type.shape.dim):
                if dim.HasField("dim_value") and dim.dim_value < 0:
                    raise ModelLoadError(
                        f"{where} declares dim {axis} = {dim.dim_value}; dims cannot be "
                        "negative", path=str(path),
                        hint="Leave unknown dims unset or give them a name (dim_param)")
        for tensor in graph_tensors(graph):
            if tensor.data_type in _COMPLEX:
                complex_values.setdefault(_COMPLEX[tensor.data_type], []).append(tensor.name)
            if any(d < 0 for d in tensor.dims):
                raise ModelLoadError(f"tensor '{tensor.name}' declares negative dims "
                                     f"{list(tensor.dims)}", path=str(path))
    if complex_values:
        raise UnsupportedOpsError(
            "tensor dtype", complex_values, path=str(path),
            hint="modelconv converts real-valued models only (ONNX Runtime and LiteRT run "
                 "few ops on complex tensors); split complex values into real and imaginary "
                 "parts before exporting")


def graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph in its nodes' attributes (If/Loop/Scan bodies), depth first.

    Args:
        graph: the main graph.

    Returns:
        An iterator over the graphs.
    """
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from graphs(g)


def graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """The tensors one graph holds: initializers, sparse initializers' parts, and tensor
    attributes of its nodes (not those of subgraphs: see :func:`graphs`).

    Args:
        graph: one graph.

    Returns:
        An iterator over the tensors.
    """
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.TENSORS:
                yield from attr.tensors


def _check_text(proto: onnx.ModelProto, path: Path) -> None:
    """Every string field of the model (names, op types, producer, doc strings, metadata)."""
    stack: list[tuple[str, Message]] = [("model", proto)]
    while stack:
        where, msg = stack.pop()
        for fd, value in msg.ListFields():
            repeated = getattr(fd, "is_repeated", None)  # protobuf >= 6; label before
            if repeated is None:
                repeated = fd.label == fd.LABEL_REPEATED
            items = value if repeated else [value]
            if fd.type == fd.TYPE_STRING:
                bad = next((v for v in items if not isinstance(v, str)), None)
                if bad is not None:
                    raise ModelLoadError(
                        f"{where}.{fd.name} is not valid UTF-8 text ({bad!r:.60})",
                        path=str(path), hint="The file is corrupt; re-export or re-download it")
            elif fd.type == fd.TYPE_MESSAGE:
                stack.extend((f"{where}.{fd.name}[{i}]" if repeated else f"{where}.{fd.name}",
                              v) for i, v in enumerate(items))
