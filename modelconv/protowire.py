"""A minimal, strictly bounds-checked protobuf wire-format reader (no generated code).

Used for the few TensorFlow protos the TensorFlow-free SavedModel path reads
(``keras_metadata.pb``, tensor-bundle entries, the checkpoint object graph, the
signature map of ``saved_model.pb``), and by the ONNX importer to find where an embedded
weight's bytes lie in the file (:mod:`modelconv.importers.onnx.hollow`). Every length is
checked against the bytes that remain before anything is sliced; groups (wire types 3/4)
are refused; varints are at most 10 bytes. Errors are :class:`ProtoError` (a
``ValueError``) for the caller to turn into a :class:`~modelconv.errors.ModelLoadError`
naming the file.

Length-delimited values are returned as ``memoryview`` slices of the input (no copies).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

Buffer = bytes | memoryview

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


class ProtoError(ValueError):
    """Malformed protobuf bytes."""


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``buf[pos:end]``; returns ``(value, next_pos)``."""
    result = 0
    shift = 0
    limit = min(end, pos + _MAX_VARINT_BYTES)
    while pos < limit:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise ProtoError("truncated or over-long varint")


def to_int64(value: int) -> int:
    """A varint decoded as unsigned 64-bit, reinterpreted as signed (int32/int64 fields)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_spans(buf: Buffer) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield ``(field_number, wire_type, start, value_start, end)`` for every field of one
    message: the field's record is ``buf[start:end]``, its value ``buf[value_start:end]``
    (a length-delimited value without its length prefix).

    Args:
        buf: the message's bytes.

    Yields:
        One tuple per field, in order.

    Raises:
        ProtoError: malformed bytes (a length past the end, a group, field number 0).
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    pos, end = 0, len(view)
    while pos < end:
        start = pos
        key, pos = read_varint(view, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == VARINT:
            _, stop = read_varint(view, pos, end)
        elif wire == LEN:
            size, pos = read_varint(view, pos, end)
            if size > end - pos:
                raise ProtoError(f"field {number} declares {size} bytes, {end - pos} remain")
            stop = pos + size
        elif wire in (FIXED64, FIXED32):
            stop = pos + (8 if wire == FIXED64 else 4)
            if stop > end:
                raise ProtoError(f"truncated fixed{64 if wire == FIXED64 else 32}")
        else:
            raise ProtoError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, start, pos, stop
        pos = stop


def iter_fields(buf: Buffer) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_number, wire_type, value)`` for every field of one message.

    ``value`` is an int for varint/fixed fields and a memoryview for length-delimited ones.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    for number, wire, _, pos, stop in iter_spans(view):
        if wire == VARINT:
            yield number, wire, read_varint(view, pos, stop)[0]
        elif wire == LEN:
            yield number, wire, view[pos:stop]
        else:
            yield number, wire, struct.unpack_from("<Q" if wire == FIXED64 else "<I", view, pos)[0]


def encode_varint(value: int) -> bytes:
    """``value`` (>= 0) as a varint.

    Args:
        value: a non-negative integer below 2**64.

    Returns:
        Its 1-10 byte encoding.
    """
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_field(number: int, wire: int, value: int | bytes) -> bytes:
    """One field's record: a varint (``wire`` VARINT) or a length-delimited value (LEN).

    Args:
        number: the field number.
        wire: VARINT or LEN.
        value: an int for VARINT, bytes for LEN.

    Returns:
        The record's bytes.
    """
    key = encode_varint(number << 3 | wire)
    if wire == VARINT:
        assert isinstance(value, int)
        return key + encode_varint(value)
    assert isinstance(value, bytes)
    return key + encode_varint(len(value)) + value


def parse(buf: Buffer) -> dict[int, list[int | memoryview]]:
    """Every field of one message, grouped by field number (in file order)."""
    out: dict[int, list[int | memoryview]] = {}
    for number, _wire, value in iter_fields(buf):
        out.setdefault(number, []).append(value)
    return out


def get_int(msg: dict[int, list[int | memoryview]], number: int, default: int = 0) -> int:
    """Last value of a scalar varint/fixed field (protobuf: last one wins)."""
    values = msg.get(number)
    if not values:
        return default
    value = values[-1]
    if isinstance(value, memoryview):
        raise ProtoError(f"field {number} should be a number")
    return value


def get_bytes(msg: dict[int, list[int | memoryview]], number: int) -> memoryview:
    """Last value of a length-delimited field (empty when absent)."""
    values = msg.get(number)
    if not values:
        return memoryview(b"")
    value = values[-1]
    if not isinstance(value, memoryview):
        raise ProtoError(f"field {number} should be length-delimited")
    return value


def get_str(msg: dict[int, list[int | memoryview]], number: int) -> str:
    """Last value of a string field."""
    try:
        return bytes(get_bytes(msg, number)).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtoError(f"field {number} is not valid UTF-8") from exc


def get_messages(msg: dict[int, list[int | memoryview]], number: int) -> list[memoryview]:
    """Every value of a repeated message/bytes field."""
    out = []
    for value in msg.get(number, []):
        if not isinstance(value, memoryview):
            raise ProtoError(f"field {number} should be length-delimited")
        out.append(value)
    return out


def get_packed_ints(msg: dict[int, list[int | memoryview]], number: int) -> list[int]:
    """A repeated varint field, packed or not."""
    out: list[int] = []
    for value in msg.get(number, []):
        if isinstance(value, int):
            out.append(value)
            continue
        pos, end = 0, len(value)
        while pos < end:
            item, pos = read_varint(value, pos, end)
            out.append(item)
    return out
