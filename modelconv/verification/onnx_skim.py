"""Read an ONNX file's graph structure without its weights (protobuf wire format).

:func:`modelconv.verification.precision.onnx_precision` needs the nodes, the graph inputs
and each initializer's data type, not the weight bytes. Parsing the whole ``ModelProto``
copies every embedded weight into memory (seconds and the model's size again in RSS for a
large model). :func:`skim_graph` walks the encoding of a memory-mapped file with
:mod:`modelconv.protowire` instead: the ``raw_data`` of an initializer is skipped by its
length prefix, so its pages are never read; the small messages (nodes, inputs) are parsed
with onnx's own classes.

Field numbers are those of onnx.proto: ``ModelProto.graph`` = 7; ``GraphProto.node`` = 1,
``initializer`` = 5, ``input`` = 11; ``TensorProto.data_type`` = 2, ``name`` = 8.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelconv import protowire as pw

_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT = 1, 5, 11
_TENSOR_DATA_TYPE, _TENSOR_NAME = 2, 8


@dataclass
class SkimmedGraph:
    """What a graph holds apart from its weights' bytes.

    Attributes:
        nodes: the graph's ``NodeProto`` messages, in order.
        inputs: the graph's input ``ValueInfoProto`` messages.
        initializer_names: each initializer's name, in order.
        initializer_types: each initializer's ``TensorProto.data_type``, in order.
    """

    nodes: list[Any] = field(default_factory=list)
    inputs: list[Any] = field(default_factory=list)
    initializer_names: list[str] = field(default_factory=list)
    initializer_types: list[int] = field(default_factory=list)


def skim_graph(path: str | Path) -> SkimmedGraph:
    """The main graph of the ONNX file at ``path``, its weights skipped, not read.

    Args:
        path: a binary-protobuf ``.onnx`` file.

    Returns:
        The nodes, inputs and initializer data types of the model's graph (an empty
        :class:`SkimmedGraph` when the file has no graph).

    Raises:
        ValueError: the file is not a well-formed protobuf encoding
            (:class:`modelconv.protowire.ProtoError`).
        OSError: the file cannot be read.
    """
    import onnx

    skimmed = SkimmedGraph()
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return skimmed
        # not closed explicitly: views of it may outlive this call in a traceback; the
        # mapping goes with its last reference
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    for number, _, graph in pw.iter_fields(memoryview(mapped)):
        if number != _MODEL_GRAPH or not isinstance(graph, memoryview):
            continue
        for item, _, body in pw.iter_fields(graph):
            if not isinstance(body, memoryview):
                continue
            if item == _GRAPH_NODE:
                skimmed.nodes.append(onnx.NodeProto.FromString(bytes(body)))
            elif item == _GRAPH_INPUT:
                skimmed.inputs.append(onnx.ValueInfoProto.FromString(bytes(body)))
            elif item == _GRAPH_INITIALIZER:
                name, data_type = _name_and_type(body)
                skimmed.initializer_names.append(name)
                skimmed.initializer_types.append(data_type)
    return skimmed


def _name_and_type(tensor: memoryview) -> tuple[str, int]:
    """``name`` and ``data_type`` of an encoded TensorProto ("" and 0 when absent)."""
    name, data_type = "", 0
    for number, _, value in pw.iter_fields(tensor):
        if number == _TENSOR_DATA_TYPE and isinstance(value, int):
            data_type = value
        elif number == _TENSOR_NAME and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
    return name, data_type
