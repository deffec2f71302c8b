"""Embedded ONNX weights read in place: the file itself becomes their external data.

An ONNX file without external data holds every initializer's bytes in ``raw_data`` fields;
parsing it with protobuf copies all of them into memory (and every further parse copies
them again). Instead, the file is memory-mapped and walked with the wire-format reader:
each large top-level initializer's ``raw_data`` record is replaced by an external-data
reference to the same file (``location`` = the file's name, ``offset``/``length`` = where
the bytes already are). The rewritten model proto holds the graph only, is small, and is
what the importer checks and loads; onnx_ir then maps each weight from the file when it is
read (its ``ExternalTensor``), so the weights are file-backed pages, never copies.

Anything unusual keeps the ordinary path (the whole file parsed): a repeated ``graph`` or
``raw_data`` field (protobuf would merge or override them), a tensor that already has a
data location, a file not in protobuf's binary format.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import onnx

from modelconv import protowire as pw

#: initializers with at least this many bytes of raw_data are mapped rather than parsed
HOLLOW_FROM_BYTES = 4096
#: files below this size are parsed as they are (nothing to gain)
HOLLOW_FILES_FROM = 1 << 20

_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 9, 13, 14


def hollow_model(path: Path) -> onnx.ModelProto | None:
    """The model at ``path`` with its large embedded initializers turned into external data
    that points at ``path`` itself (None: keep the ordinary, whole-file parse).

    Args:
        path: an ``.onnx`` file.

    Returns:
        The model proto without the weights' bytes, or None when the file is small, has no
        large embedded initializer, or has a layout this reader leaves to protobuf.

    Raises:
        pw.ProtoError: the wire format is malformed (the caller reports the file as corrupt).
    """
    if path.stat().st_size < HOLLOW_FILES_FROM:
        return None
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm, \
            memoryview(mm) as view:
        rebuilt = _rebuild_model(view, path.name)
    if rebuilt is None:
        return None
    proto = onnx.ModelProto()
    proto.ParseFromString(rebuilt)
    return proto


def checker_view(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` for ``onnx.checker``: its external-data initializers become graph
    inputs of the same type and shape.

    The checker resolves external data against a folder only when it is given a path, and
    reading the path would parse the weights again; their locations, offsets and lengths
    are checked by the importer itself, so the checker is left the rest of the model.

    Args:
        proto: a model proto whose initializers may hold external data.

    Returns:
        The copy.
    """
    view = onnx.ModelProto()
    view.CopyFrom(proto)
    graph = view.graph
    kept = []
    for tensor in graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            kept.append(tensor)
            continue
        graph.input.append(onnx.helper.make_tensor_value_info(
            tensor.name, tensor.data_type, list(tensor.dims)))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return view


def _rebuild_model(view: memoryview, location: str) -> bytes | None:
    spans = list(pw.iter_spans(view))
    graphs = [s for s in spans if s[0] == _MODEL_GRAPH and s[1] == pw.LEN]
    if len(graphs) != 1:
        return None
    _, _, start, value_start, end = graphs[0]
    graph = _rebuild_graph(view, value_start, end, location)
    if graph is None:
        return None
    return b"".join([bytes(view[:start]), pw.encode_field(_MODEL_GRAPH, pw.LEN, graph),
                     bytes(view[end:])])


def _rebuild_graph(view: memoryview, base: int, end: int, location: str) -> bytes | None:
    pieces: list[bytes] = []
    hollowed = 0
    for number, wire, start, value_start, stop in pw.iter_spans(view[base:end]):
        record = view[base + start:base + stop]
        if number == _GRAPH_INITIALIZER and wire == pw.LEN:
            tensor = _hollow_tensor(view, base + value_start, base + stop, location)
            if tensor is not None:
                pieces.append(pw.encode_field(_GRAPH_INITIALIZER, pw.LEN, tensor))
                hollowed += 1
                continue
        pieces.append(bytes(record))
    return b"".join(pieces) if hollowed else None


def _hollow_tensor(view: memoryview, base: int, end: int, location: str) -> bytes | None:
    """A TensorProto's bytes with its raw_data replaced by a reference to the file."""
    spans = list(pw.iter_spans(view[base:end]))
    raw = [s for s in spans if s[0] == _TENSOR_RAW_DATA]
    if len(raw) != 1 or raw[0][1] != pw.LEN or \
            any(s[0] in (_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION) for s in spans):
        return None
    _, _, _, raw_value, raw_stop = raw[0]
    length = raw_stop - raw_value
    if length < HOLLOW_FROM_BYTES:
        return None
    kept = [bytes(view[base + s[2]:base + s[4]]) for s in spans if s[0] != _TENSOR_RAW_DATA]
    refs = [("location", location), ("offset", str(base + raw_value)),
            ("length", str(length))]
    for key, value in refs:
        entry = pw.encode_field(1, pw.LEN, key.encode()) + pw.encode_field(2, pw.LEN,
                                                                          value.encode())
        kept.append(pw.encode_field(_TENSOR_EXTERNAL_DATA, pw.LEN, entry))
    kept.append(pw.encode_field(_TENSOR_DATA_LOCATION, pw.VARINT, 1))  # EXTERNAL
    return b"".join(kept)
