"""A minimal, strictly bounds-checked protobuf wire-format reader (no generated code).

Used for the few TensorFlow protos the TensorFlow-free SavedModel path reads
(``keras_metadata.pb``, tensor-bundle entries, the checkpoint object graph, the
signature map of ``saved_model.pb``). Every length is checked against the bytes that
remain before anything is sliced; groups (wire types 3/4) are refused; varints are
at most 10 bytes. Errors are :class:`ProtoError` (a ``ValueError``) for the caller to
turn into a :class:`~modelconv.errors.ModelLoadError` naming the file.

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


def iter_fields(buf: Buffer) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_number, wire_type, value)`` for every field of one message.

    ``value`` is an int for varint/fixed fields and a memoryview for length-delimited ones.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    pos, end = 0, len(view)
    while pos < end:
        key, pos = read_varint(view, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(view, pos, end)
            yield number, wire, value
        elif wire == LEN:
            size, pos = read_varint(view, pos, end)
            if size > end - pos:
                raise ProtoError(f"field {number} declares {size} bytes, {end - pos} remain")
            yield number, wire, view[pos:pos + size]
            pos += size
        elif wire == FIXED64:
            if end - pos < 8:
                raise ProtoError("truncated fixed64")
            yield number, wire, struct.unpack_from("<Q", view, pos)[0]
            pos += 8
        elif wire == FIXED32:
            if end - pos < 4:
                raise ProtoError("truncated fixed32")
            yield number, wire, struct.unpack_from("<I", view, pos)[0]
            pos += 4
        else:
            raise ProtoError(f"unsupported wire type {wire} (field {number})")


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
