"""ONNX exporter: opset conversion, precision, external data, atomic deterministic writes."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as ir

from modelconv.errors import ExportError
from modelconv.exporters import onnx_quantize
from modelconv.fileio import atomic_output_dir
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
    if not use_external:
        # weights read lazily from the source's data file get embedded, not referenced
        model = ir.external_data.load_to_model(model)
    with atomic_output_dir(dst) as tmp:
        try:
            if options.quantize is not None:
                onnx_quantize.write_quantized(model, tmp / dst.name, options,
                                              external=bool(use_external))
            elif data_name is None and _is_protobuf(dst):
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


def write_embedded(model: ir.Model, path: Path) -> None:
    """Write ``model`` with its weights inside the .onnx file; the bytes ``ir.save`` writes.

    ``SerializeToString`` of a proto holding every weight copies the whole model once more
    into a growing buffer (slow, and +model size of peak memory). Instead each large
    ``raw_data`` is taken out, the small remainder is serialised, and the file is written
    piece by piece with the weights put back. A nested message is encoded as tag, length,
    its own encoding, so only the lengths of the enclosing tensor, initializer entry and
    graph change; field order and every other byte are protobuf's own.
    """
    proto = ir.serde.serialize_model(model)
    raws: list[bytes | None] = []
    for tensor in proto.graph.initializer:
        raw = tensor.raw_data if tensor.HasField("raw_data") else b""
        taken = len(raw) >= _SPLICE_BYTES
        raws.append(raw if taken else None)
        if taken:
            tensor.ClearField("raw_data")
            tensor.raw_data = b"\x00"  # keeps field 9 where protobuf puts it
    if not any(r is not None for r in raws):
        onnx.save_model(proto, str(path))
        return
    graph: list[bytes] = []
    entries = iter(raws)
    for field, tag, body in _fields(proto.graph.SerializeToString()):
        raw = next(entries) if field == 5 else None
        parts = [body] if raw is None else [
            piece for f, t, b in _fields(body)
            for piece in ((t, _varint(len(raw)), raw) if f == 9 else _encode(t, b))]
        graph += _encode(tag, *parts)
    with open(path, "wb") as out:
        for field, tag, body in _fields(proto.SerializeToString()):
            for piece in _encode(tag, *graph) if field == 7 else _encode(tag, body):
                out.write(piece)


def _is_protobuf(path: Path) -> bool:
    # onnx.save picks the format from the extension (.json, .textproto...), protobuf else
    fmt = onnx.serialization.registry.get_format_from_file_extension(path.suffix)
    return fmt in (None, "protobuf")


def _encode(tag: bytes, *parts: bytes) -> tuple[bytes, ...]:
    """One field: tag, then the length prefix when the wire type is length-delimited."""
    if tag[0] & 7 != _LEN:
        return (tag, *parts)
    return (tag, _varint(sum(len(p) for p in parts)), *parts)


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


def initializer_bytes(model: ir.Model) -> int:
    """Total size of the main graph's initializers in bytes."""
    total = 0
    for value in model.graph.initializers.values():
        if value.const_value is not None:
            total += value.const_value.nbytes
    return total


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
