"""CumProd: an inclusive product scan in ceil(log2(n)) steps (Hillis-Steele): multiply by
the running result shifted k places along the axis (PADV2 with ones, STRIDED_SLICE),
k = 1, 2, 4, ...; exclusive shifts the input one place first, reverse runs on REVERSE_V2.
A run-time axis (the test suite feeds one) computes the scan along every axis and selects
the one asked for (EQUAL / SELECT_V2): the shapes are static, the axis is one of the rank.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import dtype_reason
from modelconv.exporters.tflite.operands import runtime_int32
from modelconv.exporters.tflite.registry import attr, tflite_lowering


def check_cumprod(node: ir.Node) -> str | None:
    """MUL / PADV2 must take the dtype."""
    return dtype_reason("MUL", node.inputs[0]) or dtype_reason("PADV2", node.inputs[0])


def _shifted(ctx: LoweringContext, y: int, axis: int, k: int) -> int:
    """``y`` moved ``k`` places up ``axis``, ones coming in."""
    shape = ctx.t(y).shape
    pads = [[0, 0] for _ in shape]
    pads[axis][0] = k
    grown = list(shape)
    grown[axis] += k
    padded = ctx.like(y, f"shift{k}_padded", grown)
    one = ctx.const(np.ones(1, ctx.t(y).dtype), "one")
    ctx.emit("PADV2", [y, ctx.i32(pads, "shift_pads"), one], [padded])
    out = ctx.like(y, f"shift{k}")
    ctx.emit("STRIDED_SLICE", [padded, ctx.i32([0] * len(shape), "begin"),
                               ctx.i32(shape, "end"), ctx.i32([1] * len(shape), "strides")],
             [out], s.StridedSliceOptionsT())
    return out


def _reversed(ctx: LoweringContext, x: int, axis: int) -> int:
    out = ctx.like(x, "reversed")
    ctx.emit("REVERSE_V2", [x, ctx.i32([axis], "axis")], [out])
    return out


def _scan(ctx: LoweringContext, x: int, axis: int, exclusive: bool, reverse: bool) -> int:
    """The product scan of ``x`` along ``axis``."""
    n = ctx.t(x).shape[axis]
    y = _reversed(ctx, x, axis) if reverse else x
    if exclusive:
        y = _shifted(ctx, y, axis, 1)
    k = 1
    while k < n:
        prod = ctx.like(y, f"scan{k}")
        ctx.emit("MUL", [y, _shifted(ctx, y, axis, k)], [prod], s.MulOptionsT())
        y, k = prod, 2 * k
    return _reversed(ctx, y, axis) if reverse else y


@tflite_lowering("CumProd", check=check_cumprod)
def lower_cumprod(ctx: LoweringContext, node: ir.Node) -> None:
    """CumProd -> MUL / PADV2 / STRIDED_SLICE scan (see the module docstring)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    rank = len(ctx.t(x).shape)
    excl, rev = bool(attr(node, "exclusive", 0)), bool(attr(node, "reverse", 0))
    axis_v = node.inputs[1]
    assert axis_v is not None
    given = ctx.array(axis_v)
    if given is not None:
        y = _scan(ctx, x, int(given.reshape(-1)[0]) % rank, excl, rev)
        ctx.reshape(y, ctx.t(dst).shape, dst=dst)
        return
    asked = ctx.tmp("axis", np.int32, [])
    ctx.emit("FLOOR_MOD", [runtime_int32(ctx, axis_v, "axis", []),
                           ctx.const(np.asarray(rank, np.int32), "rank")], [asked])
    y = _scan(ctx, x, 0, excl, rev)
    for a in range(1, rank):
        pick = ctx.tmp(f"is_axis{a}", np.bool_, [])
        ctx.emit("EQUAL", [asked, ctx.const(np.asarray(a, np.int32), f"axis{a}")], [pick])
        chosen = ctx.like(y, f"scan_axis{a}")
        ctx.emit("SELECT_V2", [pick, _scan(ctx, x, a, excl, rev), y], [chosen])
        y = chosen
    ctx.reshape(y, ctx.t(dst).shape, dst=dst)
