"""Serialise a :class:`TflGraph` as a TFLite flatbuffer with the schema's object API.

Layout: version 3, buffer 0 empty (the convention for "no data"), one buffer per constant,
one subgraph, SignatureDef ``serving_default`` mapping the source's input/output names to
tensors. Operator codes are numbered in first-use order, so the same graph always gives
the same bytes. Models whose constants exceed ``OFFSET_BUFFERS_FROM`` (1 GiB; a flatbuffer
cannot address more than 2 GiB) store the constant data after the flatbuffer, referenced by
``Buffer.offset/size`` and written one tensor at a time from its array (a view of the
source file's pages where the importer mapped it).
"""

from __future__ import annotations

import io
from typing import BinaryIO

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import TflGraph
from modelconv.ir.arrays import c_order_blocks

_TYPES = {
    np.dtype(np.float32): s.TensorType.FLOAT32, np.dtype(np.float16): s.TensorType.FLOAT16,
    np.dtype(np.int32): s.TensorType.INT32, np.dtype(np.int64): s.TensorType.INT64,
    np.dtype(np.int8): s.TensorType.INT8, np.dtype(np.uint8): s.TensorType.UINT8,
    np.dtype(np.int16): s.TensorType.INT16, np.dtype(np.bool_): s.TensorType.BOOL,
    np.dtype(np.uint16): s.TensorType.UINT16, np.dtype(np.uint32): s.TensorType.UINT32,
}
# Builtins whose kernels are registered from a version above 1 only.
_MIN_VERSION = {"BROADCAST_TO": 2}
_FLATBUFFER_LIMIT = 2**31 - 2**24  # leave room for the non-buffer tables
#: constants above this many bytes in total go after the flatbuffer (Buffer.offset/size),
#: streamed tensor by tensor; below it they are inside the flatbuffer, built in memory
OFFSET_BUFFERS_FROM = 2**30
_ALIGN = 16
_PRESIZE_FROM = 16 * 2**20  # bigger constants: size the builder up front


def tensor_type(dtype: np.dtype) -> int:
    """TFLite TensorType code for a numpy dtype."""
    if np.dtype(dtype) not in _TYPES:
        raise ExportError(f"TFLite has no tensor type for numpy dtype {dtype}")
    return int(_TYPES[np.dtype(dtype)])


def serialize(graph: TflGraph, description: str = "modelconv") -> bytes:
    """The .tflite bytes for ``graph`` (see :func:`write` for the layout)."""
    out = io.BytesIO()
    write(graph, out, description)
    return out.getbuffer().tobytes()


def write(graph: TflGraph, out: BinaryIO, description: str = "modelconv") -> None:
    """Write ``graph`` as a .tflite flatbuffer to the binary stream ``out``.

    Memory: constants are copied once, straight from their arrays into a flatbuffer builder
    sized up front (no growth, no intermediate ``bytes``), and the builder's bytes are
    written without another copy. When the constants do not fit a flatbuffer, only the
    (small) tables are built in memory and every constant is streamed from its array to
    ``out`` after them.
    """
    total = sum(t.data.nbytes for t in graph.tensors if t.data is not None)
    if total <= min(_FLATBUFFER_LIMIT, OFFSET_BUFFERS_FROM):
        reserve = 1024
        if total > _PRESIZE_FROM:  # size the builder once: tables + data + alignment
            skeleton = _builder(_model(graph, description, True, offsets=None), 1024)
            n_buffers = sum(t.data is not None for t in graph.tensors)
            reserve = _used(skeleton) + total + n_buffers * (_ALIGN + 8) + 4096
            del skeleton
        builder = _builder(_model(graph, description, False, offsets=None), reserve)
        out.write(memoryview(builder.Bytes)[builder.Head():])
        return
    # Offsets point past the flatbuffer; pack once with placeholders to learn its size
    # (uint64 fields keep the layout identical when the values change).
    head = _pack(_model(graph, description, True, offsets=[1] * len(graph.tensors)))
    start = _round_up(len(head), _ALIGN)
    offsets, pos = [], start
    for t in graph.tensors:
        offsets.append(pos if t.data is not None else 0)
        if t.data is not None:
            pos = _round_up(pos + t.data.nbytes, _ALIGN)
    head = _pack(_model(graph, description, True, offsets=offsets))
    if _round_up(len(head), _ALIGN) != start:
        raise ExportError("internal error: flatbuffer size changed while placing buffers")
    out.write(head)
    out.write(b"\0" * (start - len(head)))
    pos = start
    for t in graph.tensors:
        if t.data is None:
            continue
        for block in c_order_blocks(t.data):
            out.write(block)
        pos += t.data.nbytes
        pad = _round_up(pos, _ALIGN) - pos
        out.write(b"\0" * pad)
        pos += pad


class _AlignedBufferT(s.BufferT):
    """A Buffer whose data vector starts on a 16-byte boundary (as the TFLite converter
    writes them), so runtimes and delegates can use weights in place."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        """Serialise with aligned data."""
        data_off = None
        if self.data is not None:
            size = self.data.nbytes
            builder.StartVector(1, size, _ALIGN)
            builder.head = builder.head - size
            pos = builder.head
            with memoryview(builder.Bytes) as view:  # bytearray[a:b] = x would copy x
                for block in c_order_blocks(self.data):
                    view[pos:pos + len(block)] = block
                    pos += len(block)
            builder.vectorNumElems = size
            data_off = builder.EndVector()
        s.BufferStart(builder)
        if data_off is not None:
            s.BufferAddData(builder, data_off)
        s.BufferAddOffset(builder, self.offset)
        s.BufferAddSize(builder, self.size)
        return int(s.BufferEnd(builder))


def _round_up(n: int, k: int) -> int:
    return (n + k - 1) // k * k


def _builder(model: s.ModelT, reserve: int) -> flatbuffers.Builder:
    """A finished builder holding ``model`` (``reserve`` bytes allocated up front)."""
    builder = flatbuffers.Builder(min(reserve, flatbuffers.Builder.MAX_BUFFER_SIZE))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return builder


def _used(builder: flatbuffers.Builder) -> int:
    return len(builder.Bytes) - builder.Head()


def _pack(model: s.ModelT) -> bytes:
    builder = _builder(model, 1024)
    return bytes(memoryview(builder.Bytes)[builder.Head():])


def _model(graph: TflGraph, description: str, external: bool,
           offsets: list[int] | None) -> s.ModelT:
    model = s.ModelT()
    model.version = 3
    model.description = description
    empty = s.BufferT()
    model.buffers = [empty]
    codes: dict[str, int] = {}
    model.operatorCodes = []
    sub = s.SubGraphT()
    sub.name = "main"
    sub.tensors = []
    for k, t in enumerate(graph.tensors):
        tt = s.TensorT()
        tt.name = t.name
        tt.type = tensor_type(t.dtype)
        tt.shape = np.asarray(t.shape, np.int32)
        tt.hasRank = True
        tt.isVariable = t.variable
        if t.shape_signature is not None:
            tt.shapeSignature = np.asarray(t.shape_signature, np.int32)
        tt.buffer = 0
        if t.data is not None:
            buf = _AlignedBufferT()
            if external:
                buf.offset = offsets[k] if offsets else 1  # placeholder
                buf.size = int(t.data.nbytes)
            else:
                buf.data = t.data
            model.buffers.append(buf)
            tt.buffer = len(model.buffers) - 1
        if t.quant is not None:
            q = s.QuantizationParametersT()
            q.scale = np.asarray(t.quant.scale, np.float32)
            q.zeroPoint = np.asarray(t.quant.zero_point, np.int64)
            q.quantizedDimension = t.quant.axis
            tt.quantization = q
        sub.tensors.append(tt)
    sub.operators = []
    for op in graph.ops:
        if op.code not in codes:
            oc = s.OperatorCodeT()
            code = int(getattr(s.BuiltinOperator, op.code))
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, s.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = _op_version(graph, op)
            codes[op.code] = len(model.operatorCodes)
            model.operatorCodes.append(oc)
        ot = s.OperatorT()
        ot.opcodeIndex = codes[op.code]
        ot.inputs = np.asarray(op.inputs, np.int32)
        ot.outputs = np.asarray(op.outputs, np.int32)
        if op.options is not None:
            ot.builtinOptionsType = int(getattr(s.BuiltinOptions, type(op.options).__name__[:-1]))
            ot.builtinOptions = op.options
        sub.operators.append(ot)
    sub.inputs = np.asarray(graph.inputs, np.int32)
    sub.outputs = np.asarray(graph.outputs, np.int32)
    model.subgraphs = [sub]
    sig = s.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    sig.inputs = [_tensor_map(n, i) for n, i in zip(graph.input_names, graph.inputs, strict=True)]
    sig.outputs = [
        _tensor_map(n, i) for n, i in zip(graph.output_names, graph.outputs, strict=True)
    ]
    model.signatureDefs = [sig]
    return model


def _op_version(graph: TflGraph, op: object) -> int:
    """Kernel version: the minimum registered one (int8 kernels need a higher version).

    A grouped CONV_2D (filter input channels < input channels) is version 6, the first
    whose kernel reads groups."""
    code = getattr(op, "code", "")
    if code == "CONV_2D":
        ins = getattr(op, "inputs", [])
        x, f = graph.tensors[ins[0]].shape, graph.tensors[ins[1]].shape
        if len(x) == 4 and len(f) == 4 and f[3] != x[3]:
            return 6
    return _MIN_VERSION.get(code, 1)


def _tensor_map(name: str, index: int) -> s.TensorMapT:
    tm = s.TensorMapT()
    tm.name = name
    tm.tensorIndex = index
    return tm
