"""ONNX exporter: opset conversion, precision, external data, atomic deterministic writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from modelconv.errors import ExportError
from modelconv.exporters import onnx_quantize
from modelconv.fileio import atomic_output_dir
from modelconv.ir.info import initializer_bytes
from modelconv.options import ConvertOptions

#: a protobuf cannot exceed 2 GiB; leave room for the graph itself
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 128 * 1024**2


def export_onnx(model: ir.Model, dst: Path, options: ConvertOptions) -> list[Path]:
    """Write ``model`` to ``dst`` (plus ``<dst>.data`` when weights go external).

    ``options.fp16`` stores the weights as float16 and ``options.quantize`` ("dynamic",
    "int8") quantizes with onnxruntime (see :mod:`.onnx_quantize`).
    """
    dst = Path(dst)
    current = model.opset_imports.get("", None)
    if options.opset is not None and options.opset != current:
        model = convert_opset(model, options.opset)
    if options.fp16:
        model = onnx_quantize.fp16_weights(model)
    use_external = options.external_data
    if use_external is None:
        use_external = initializer_bytes(model) >= EXTERNAL_DATA_THRESHOLD
    data_name = f"{dst.name}.data" if use_external else None
    embedded = not use_external and options.quantize is None and _is_protobuf(dst)
    if not use_external and not embedded:
        # weights read lazily from the source's data file get embedded, not referenced
        # (write_embedded reads each one when it is written)
        model = ir.external_data.load_to_model(model)
    with atomic_output_dir(dst) as tmp:
        try:
            if options.quantize is not None:
                onnx_quantize.write_quantized(model, tmp / dst.name, options,
                                              external=bool(use_external))
            elif embedded:
                write_embedded(model, tmp / dst.name)
            else:
                ir.save(model, tmp / dst.name, external_data=data_name,
                        size_threshold_bytes=1024)
        except OSError as exc:  # anything else is a bug, not a write failure
            raise ExportError(f"writing ONNX failed: {exc}", path=str(dst)) from exc
    written = [dst]
    if data_name:
        written.append(dst.parent / data_name)
    return written


#: initializers at least this large are written straight from their bytes (write_embedded)
_SPLICE_BYTES = 64 * 1024
_LEN = 2  # protobuf wire type of bytes / nested messages


class _Hollow:
    """Stands in for a large tensor while the model is serialised: the tensor's name,
    dtype, shape and metadata with one byte of data (the real bytes are written later)."""

    def __init__(self, tensor: ir.TensorProtocol) -> None:
        self.tensor = tensor
        self.name = tensor.name
        self.doc_string = tensor.doc_string
        self.dtype = tensor.dtype
        self.shape = tensor.shape
        self.metadata_props = tensor.metadata_props

    def tobytes(self) -> bytes:
        return b"\x00"


def write_embedded(model: ir.Model, path: Path) -> None:
    """Write ``model`` with its weights inside the .onnx file; the bytes ``ir.save`` writes.

    Serialising a proto that holds every weight copies the whole model once more (slow, and
    the model's size again in peak memory). Instead each large initializer is serialised
    *hollow* (one placeholder byte), and the file is written piece by piece with each
    tensor's bytes read only when its turn comes, so one tensor is in flight at a time and
    lazily loaded weights (memory-mapped files) are read straight into the file. A nested
    message is encoded as tag, length, its own encoding, so only the lengths of the
    enclosing tensor, initializer entry and graph change; field order and every other byte
    are protobuf's own.

    Args:
        model: the model to write.
        path: the output file.
    """
    hollow: list[tuple[ir.Value, ir.TensorProtocol]] = []
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if (tensor is not None and not isinstance(tensor, ir.StringTensor)
                and tensor.dtype.bitwidth >= 8
                and (tensor.nbytes >= _SPLICE_BYTES or isinstance(tensor, ir.ExternalTensor))):
            hollow.append((value, tensor))
            value.const_value = _Hollow(tensor)  # type: ignore[assignment]
    try:
        ir.external_data.load_to_model(model)  # what is left (subgraphs, 4-bit): small
        proto = ir.serde.serialize_model(model)
    finally:
        for value, tensor in hollow:
            value.const_value = tensor
    if not hollow:
        onnx.save_model(proto, str(path))
        return
    by_name = {value.name: tensor for value, tensor in hollow}
    graph: list[bytes | ir.TensorProtocol] = []
    for field, tag, body in _fields(proto.graph.SerializeToString()):
        real = by_name.get(_tensor_name(body)) if field == 5 else None
        if real is None:
            graph += _encode(tag, body)
            continue
        parts: list[bytes | ir.TensorProtocol] = []
        for f, t, b in _fields(body):
            parts += (t, _varint(real.nbytes), real) if f == 9 else _encode(t, b)
        graph += _encode(tag, *parts)
    with open(path, "wb") as out:
        for field, tag, body in _fields(proto.SerializeToString()):
            for piece in _encode(tag, *graph) if field == 7 else _encode(tag, body):
                if isinstance(piece, bytes):
                    out.write(piece)
                    continue
                data = piece.tobytes()
                if len(data) != piece.nbytes:
                    raise ExportError(f"tensor '{piece.name}' gave {len(data)} bytes for "
                                      f"{piece.nbytes} expected", path=str(path))
                out.write(data)
                del data


def _tensor_name(body: bytes) -> str | None:
    """The ``name`` (field 8) of an encoded TensorProto."""
    for f, _, b in _fields(body):
        if f == 8:
            return b.decode("utf-8")
    return None


def _is_protobuf(path: Path) -> bool:
    # onnx.save picks the format from the extension (.json, .textproto...), protobuf else
    fmt = onnx.serialization.registry.get_format_from_file_extension(path.suffix)
    return fmt in (None, "protobuf")


def _encode(tag: bytes, *parts: Any) -> tuple[Any, ...]:
    """One field: tag, then the length prefix when the wire type is length-delimited.

    A part is bytes, or a tensor whose ``nbytes`` raw bytes are written in its place.
    """
    if tag[0] & 7 != _LEN:
        return (tag, *parts)
    size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
    return (tag, _varint(size), *parts)


def _fields(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Top-level (field number, tag, payload) of an encoding; length prefixes dropped."""
    out = []
    i = 0
    while i < len(data):
        key, j = _read_varint(data, i)
        tag, wire = data[i:j], key & 7
        if wire == _LEN:
            size, j = _read_varint(data, j)
            end = j + size
        elif wire == 0:
            end = _read_varint(data, j)[1]
        else:
            end = j + {1: 8, 5: 4}[wire]
        out.append((key >> 3, tag, data[j:end]))
        i = end
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def convert_opset(model: ir.Model, target: int) -> ir.Model:
    """The same model re-expressed in ONNX opset ``target`` (onnx's version converter)."""
    if initializer_bytes(model) >= EXTERNAL_DATA_THRESHOLD:
        raise ExportError(
            "opset conversion of models above 2 GiB is not supported",
            hint="Keep the model's opset (omit --opset)",
        )
    if not 7 <= target <= onnx.defs.onnx_opset_version():
        raise ExportError(
            f"opset {target} is out of range",
            hint=f"Use an opset between 7 and {onnx.defs.onnx_opset_version()}",
        )
    proto = ir.to_proto(ir.external_data.load_to_model(model))
    try:
        converted = onnx.version_converter.convert_version(proto, target)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"cannot convert the model to opset {target}: {first}",
            hint="Try a nearer opset, or keep the source opset",
        ) from exc
    return ir.from_proto(converted)
