"""Bit operations on 8/16/32-bit integers: BitShift (RIGHT_SHIFT; left shifts as a product
with 2**y in int64), BitwiseXor and BitwiseNot (BITWISE_XOR). right_shift.cc and
bitwise_xor.cc take int8/16/32 and uint8/16/32 only; 64-bit types are refused."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.registry import attr, tflite_lowering

_NARROW = ("int8", "uint8", "int16", "uint16", "int32", "uint32")


def check_narrow(node: ir.Node) -> str | None:
    """8/16/32-bit integer inputs only."""
    for value in node.inputs:
        name = value_dtype(value)
        if name is not None and name not in _NARROW:
            return f"{name} inputs (8/16/32-bit integers only)"
    return None


def _as(ctx: LoweringContext, t: int, dtype: np.dtype) -> int:
    if ctx.t(t).dtype == dtype:
        return t
    data = ctx.t(t).data
    return ctx.const(data.astype(dtype), "as") if data is not None else cast(ctx, t, dtype)


def _valid_shift(ctx: LoweringContext, y: int, width: int) -> tuple[int, int]:
    """(0 <= y < width as bool, y there and 0 elsewhere as int32): shifts outside the
    width have no C++ meaning, and ONNX gives them a value of their own."""
    y32 = _as(ctx, y, np.dtype(np.int32))  # uint32 amounts >= 2**31 go negative: invalid too
    shape = ctx.t(y32).shape
    low, high, ok = (ctx.tmp(n, np.bool_, shape) for n in ("nonnegative", "below_width", "valid"))
    ctx.emit("GREATER_EQUAL", [y32, ctx.i32(0, "zero")], [low])
    ctx.emit("LESS", [y32, ctx.i32(width, "width")], [high])
    ctx.emit("LOGICAL_AND", [low, high], [ok])
    safe = ctx.tmp("shift", np.int32, shape)
    ctx.emit("SELECT_V2", [ok, y32, ctx.i32(0, "zero")], [safe])
    return ok, safe


@tflite_lowering("BitShift", check=check_narrow)
def lower_bitshift(ctx: LoweringContext, node: ir.Node) -> None:
    """BitShift -> RIGHT_SHIFT (out-of-range amounts: the sign fill, -1 or 0) or, LEFT,
    x * 2**y in int64 (no overflow for 32-bit x) CAST back, wrapping as C shifts do."""
    x, y, dst = ctx.inp(node, 0), ctx.inp(node, 1), ctx.out(node)
    dtype = ctx.t(x).dtype
    width = dtype.itemsize * 8
    ok, safe = _valid_shift(ctx, y, width)
    shape = ctx.t(dst).shape
    if attr(node, "direction") == "LEFT":
        i64 = np.dtype(np.int64)
        powers = ctx.const(np.left_shift(np.int64(1), np.arange(width, dtype=np.int64)), "pow2")
        factor = ctx.tmp("factor", i64, ctx.t(safe).shape)
        opts = s.GatherOptionsT()
        opts.axis = 0
        ctx.emit("GATHER", [powers, safe], [factor], opts)
        prod, kept = ctx.tmp("product", i64, shape), ctx.tmp("kept", i64, shape)
        ctx.emit("MUL", [_as(ctx, x, i64), factor], [prod], s.MulOptionsT())
        ctx.emit("SELECT_V2", [ok, prod, ctx.const(np.asarray(0, np.int64), "zero")], [kept])
        cast(ctx, kept, dtype, dst)
        return
    work = np.dtype(np.uint32) if dtype == np.uint16 else dtype  # SELECT_V2 has no uint16
    xw = _as(ctx, x, work)
    shifted = ctx.tmp("shifted", work, shape)
    ctx.emit("RIGHT_SHIFT", [xw, _as(ctx, safe, work)], [shifted])
    if work.kind == "i":  # all sign bits: -1 for negative x, else 0
        fill = ctx.tmp("sign_fill", work, ctx.t(xw).shape)
        ctx.emit("RIGHT_SHIFT", [xw, ctx.const(np.asarray(width - 1, work), "sign_bit")], [fill])
    else:
        fill = ctx.const(np.asarray(0, work), "zero")
    out = dst if work == dtype else ctx.tmp("result", work, shape)
    ctx.emit("SELECT_V2", [ok, shifted, fill], [out])
    if out != dst:
        cast(ctx, out, dtype, dst)


@tflite_lowering("BitwiseXor", "BitwiseNot", check=check_narrow)
def lower_bitwise_xor(ctx: LoweringContext, node: ir.Node) -> None:
    """BitwiseXor -> BITWISE_XOR; BitwiseNot -> BITWISE_XOR with all ones."""
    x = ctx.inp(node, 0)
    if node.op_type == "BitwiseNot":
        other = ctx.const(np.asarray(np.iinfo(ctx.t(x).dtype).max if ctx.t(x).dtype.kind == "u"
                                     else -1, ctx.t(x).dtype), "all_ones")
    else:
        other = ctx.inp(node, 1)
    ctx.emit("BITWISE_XOR", [x, other], [ctx.out(node)])
