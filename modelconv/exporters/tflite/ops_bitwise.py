"""Bit operations: BitShift, BitwiseXor / Not / And / Or, BitCast.

LiteRT's RIGHT_SHIFT and BITWISE_XOR kernels (right_shift.cc, bitwise_xor.cc) take 8/16/32-bit
signed and unsigned integers only. RIGHT_SHIFT clamps the shift count to [0, width - 1], while
ONNX reads the count as unsigned and saturates (a count >= width, or a negative signed one,
shifts every bit out), so the count is clamped here first. A left shift is a multiplication
by a power of two taken from a constant table, computed in a type wide enough to hold the
exact product, then CAST back (CAST truncates, i.e. wraps modulo 2**width as ONNX does).
And / Or of 8/16-bit integers use ``a + b == (a ^ b) + 2 * (a & b)`` in int32 (exact).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.ops_elementwise import binary
from modelconv.exporters.tflite.registry import attr, tflite_lowering

# right_shift.cc / bitwise_xor.cc: "only supports 8-bit/16-bit/32-bit integer/unsigned integer".
_BIT_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32")
# A signed type holding every value of each bit dtype times 2**(width - 1).
_WIDE = {"int8": np.int32, "uint8": np.int32, "int16": np.int32, "uint16": np.int32,
         "int32": np.int64, "uint32": np.int64}


def _dtype_reason(node: ir.Node, allowed: tuple[str, ...], what: str) -> str | None:
    for value in node.inputs:
        name = value_dtype(value)
        if name is not None and name not in allowed:
            return f"{name} inputs: {what}"
    return None


def check_bitshift(node: ir.Node) -> str | None:
    """BitShift: direction LEFT / RIGHT, on a dtype RIGHT_SHIFT / the exact MUL path takes."""
    direction = attr(node, "direction")
    if direction not in ("LEFT", "RIGHT"):
        return f"direction={direction!r}"
    return _dtype_reason(node, _BIT_DTYPES,
                         "8/16/32-bit only (LiteRT RIGHT_SHIFT; no exact 64-bit left shift)")


def _saturated(ctx: LoweringContext, s_wide: int, width: int, signed: bool) -> int:
    """bool tensor: the shift count (``s_wide``, widened) read as unsigned is >= ``width``."""
    shape = ctx.t(s_wide).shape
    dtype = ctx.t(s_wide).dtype
    big = ctx.tmp("count_ge_width", np.bool_, shape)
    ctx.emit("GREATER_EQUAL", [s_wide, ctx.const(np.asarray(width, dtype), "width")], [big])
    if not signed:
        return big
    neg = ctx.tmp("count_negative", np.bool_, shape)
    ctx.emit("LESS", [s_wide, ctx.const(np.asarray(0, dtype), "zero")], [neg])
    sat = ctx.tmp("count_saturated", np.bool_, shape)
    ctx.emit("LOGICAL_OR", [big, neg], [sat])
    return sat


@tflite_lowering("BitShift", check=check_bitshift)
def lower_bitshift(ctx: LoweringContext, node: ir.Node) -> None:
    """BitShift -> RIGHT_SHIFT by the clamped count (twice for unsigned saturation), or
    MUL by GATHER(2**k table, clamped count) in a wider type and CAST back."""
    x, sh, dst = ctx.inp(node, 0), ctx.inp(node, 1), ctx.out(node)
    dtype = ctx.t(x).dtype
    width, signed = dtype.itemsize * 8, dtype.kind == "i"
    wide = np.dtype(_WIDE[dtype.name])
    s_wide = cast(ctx, sh, wide)
    sat = _saturated(ctx, s_wide, width, signed)
    shape = ctx.t(s_wide).shape
    if attr(node, "direction") == "LEFT":
        idx = ctx.tmp("table_index", wide, shape)
        ctx.emit("SELECT_V2", [sat, ctx.const(np.asarray(width, wide), "width"), s_wide], [idx])
        table = np.asarray([2 ** k for k in range(width)] + [0], wide)
        power = ctx.tmp("power_of_two", wide, shape)
        ctx.emit("GATHER", [ctx.const(table, "powers_of_two"), idx], [power])
        product = ctx.tmp("product", wide, ctx.t(dst).shape)
        binary(ctx, "MUL", cast(ctx, x, wide), power, product)
        cast(ctx, product, dtype, dst)
        return
    # RIGHT: a saturated count shifts by width - 1 (sign fill for signed types) ...
    count = ctx.tmp("count", wide, shape)
    ctx.emit("SELECT_V2", [sat, ctx.const(np.asarray(width - 1, wide), "last_bit"), s_wide],
             [count])
    if signed:
        ctx.emit("RIGHT_SHIFT", [x, cast(ctx, count, dtype)], [dst])
        return
    # ... and, unsigned, by one more bit, which leaves 0.
    first = ctx.like(dst, "shifted")
    ctx.emit("RIGHT_SHIFT", [x, cast(ctx, count, dtype)], [first])
    extra = ctx.tmp("extra", wide, shape)
    ctx.emit("SELECT_V2", [sat, ctx.const(np.asarray(1, wide), "one"),
                           ctx.const(np.asarray(0, wide), "zero")], [extra])
    ctx.emit("RIGHT_SHIFT", [first, cast(ctx, extra, dtype)], [dst])


def check_xor(node: ir.Node) -> str | None:
    """BitwiseXor / BitwiseNot: BITWISE_XOR's dtypes."""
    return _dtype_reason(node, _BIT_DTYPES, "no LiteRT BITWISE_XOR kernel (8/16/32-bit only)")


@tflite_lowering("BitwiseXor", check=check_xor)
def lower_bitwise_xor(ctx: LoweringContext, node: ir.Node) -> None:
    """BitwiseXor -> BITWISE_XOR (broadcasting)."""
    ctx.emit("BITWISE_XOR", [ctx.inp(node, 0), ctx.inp(node, 1)], [ctx.out(node)])


@tflite_lowering("BitwiseNot", check=check_xor)
def lower_bitwise_not(ctx: LoweringContext, node: ir.Node) -> None:
    """BitwiseNot -> BITWISE_XOR with all bits set."""
    x = ctx.inp(node, 0)
    dtype = ctx.t(x).dtype
    ones = np.asarray(np.iinfo(dtype).max if dtype.kind == "u" else -1, dtype)
    ctx.emit("BITWISE_XOR", [x, ctx.const(ones, "all_ones")], [ctx.out(node)])


_AND_OR_DTYPES = ("int8", "uint8", "int16", "uint16")


def check_and_or(node: ir.Node) -> str | None:
    """BitwiseAnd / BitwiseOr: 8/16-bit integers (exact through int32 arithmetic)."""
    return _dtype_reason(node, _AND_OR_DTYPES,
                         "no LiteRT bitwise AND/OR kernel (8/16-bit computed exactly only)")


@tflite_lowering("BitwiseAnd", "BitwiseOr", check=check_and_or)
def lower_bitwise_and_or(ctx: LoweringContext, node: ir.Node) -> None:
    """a & b = (a + b - (a ^ b)) >> 1 and a | b = (a ^ b) + (a & b), in int32, CAST back."""
    a, b, dst = ctx.inp(node, 0), ctx.inp(node, 1), ctx.out(node)
    dtype = ctx.t(dst).dtype
    shape = ctx.t(dst).shape
    xor = ctx.like(dst, "xor")
    ctx.emit("BITWISE_XOR", [a, b], [xor])
    a32, b32, x32 = (cast(ctx, t, np.dtype(np.int32)) for t in (a, b, xor))
    total = ctx.tmp("sum", np.int32, shape)
    binary(ctx, "ADD", a32, b32, total)
    twice_and = ctx.tmp("twice_and", np.int32, shape)
    binary(ctx, "SUB", total, x32, twice_and)
    and32 = ctx.tmp("and", np.int32, shape)
    ctx.emit("RIGHT_SHIFT", [twice_and, ctx.const(np.asarray(1, np.int32), "one")], [and32])
    if node.op_type == "BitwiseAnd":
        cast(ctx, and32, dtype, dst)
        return
    or32 = ctx.tmp("or", np.int32, shape)
    binary(ctx, "ADD", x32, and32, or32)
    cast(ctx, or32, dtype, dst)


def check_bitcast(node: ir.Node) -> str | None:
    """BitCast: both element types stored as themselves in TFLite (float64 is narrowed to
    float32 there, so its bits are not the source's) and of one width."""
    names = [value_dtype(node.inputs[0]), value_dtype(node.outputs[0])]
    for value in (node.inputs[0], node.outputs[0]):
        if value is not None and value.dtype == ir.DataType.DOUBLE:
            return "float64 data (TFLite stores float64 as float32: its bits differ)"
    if None in names:
        return None
    try:
        sizes = [np.dtype(n).itemsize for n in names if n is not None]
    except TypeError:
        return f"{names[0]} -> {names[1]}: no TFLite tensor type"
    if sizes[0] != sizes[1]:
        return f"{names[0]} -> {names[1]}: element widths differ"
    return None


@tflite_lowering("BitCast", check=check_bitcast)
def lower_bitcast(ctx: LoweringContext, node: ir.Node) -> None:
    """BitCast -> BITCAST (bitcast.cc; same element width, so the shape is kept)."""
    ctx.emit("BITCAST", [ctx.inp(node, 0)], [ctx.out(node)])
