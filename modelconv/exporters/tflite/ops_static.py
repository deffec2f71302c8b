"""Ops whose result the static shapes decide: window functions become constants,
CenterCropPad a STRIDED_SLICE and a PAD, Compress a GATHER (of WHERE's positions).

A run-time ``size`` / ``shape`` operand of these ops has only one value a model with a
static output shape can feed (the output's own length), so it is read from the shape.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import dtype_reason, emit_typed
from modelconv.exporters.tflite.registry import attr, tflite_lowering


def _window(op: str, n: int, periodic: bool) -> np.ndarray:
    """The ONNX window ``op`` of length ``n`` (float64)."""
    denom = n if periodic else n - 1
    phase = 2 * np.pi * np.arange(n) / max(denom, 1)
    if op == "HannWindow":
        return 0.5 - 0.5 * np.cos(phase)
    if op == "HammingWindow":
        return 25 / 46 - 21 / 46 * np.cos(phase)
    return 0.42 - 0.5 * np.cos(phase) + 0.08 * np.cos(2 * phase)


def _emit_constant(ctx: LoweringContext, node: ir.Node, value: np.ndarray) -> None:
    dst = ctx.out(node)
    ctx.reshape(ctx.const(value.astype(ctx.t(dst).dtype), "value"), ctx.t(dst).shape, dst=dst)


@tflite_lowering("HannWindow", "HammingWindow", "BlackmanWindow")
def lower_window(ctx: LoweringContext, node: ir.Node) -> None:
    """Hann / Hamming / Blackman window (periodic or symmetric) as a constant of the static
    output length."""
    n = ctx.t(ctx.out(node)).shape[0]
    _emit_constant(ctx, node, _window(node.op_type, n, bool(attr(node, "periodic", 1))))


def check_center_crop_pad(node: ir.Node) -> str | None:
    """The STRIDED_SLICE / PAD kernels must take the dtype."""
    return dtype_reason("PAD", node.inputs[0])


@tflite_lowering("CenterCropPad", check=check_center_crop_pad)
def lower_center_crop_pad(ctx: LoweringContext, node: ir.Node) -> None:
    """CenterCropPad -> STRIDED_SLICE (the centred window of longer axes, the extra element
    at the end) then PAD (zeros around shorter ones, the extra one at the end)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    ins, outs = ctx.t(x).shape, ctx.t(dst).shape
    begin = [max(i - o, 0) // 2 for i, o in zip(ins, outs, strict=True)]
    kept = [min(i, o) for i, o in zip(ins, outs, strict=True)]
    cur = x
    if kept != ins:
        cur = ctx.like(x, "cropped", kept)
        ctx.emit("STRIDED_SLICE", [x, ctx.i32(begin, "begin"),
                                   ctx.i32([b + k for b, k in zip(begin, kept, strict=True)],
                                           "end"), ctx.i32([1] * len(ins), "strides")],
                 [cur], s.StridedSliceOptionsT())
    if kept != outs:
        pads = [[(o - k) // 2, o - k - (o - k) // 2] for k, o in zip(kept, outs, strict=True)]
        emit_typed(ctx, "PAD", [cur, ctx.i32(pads, "paddings")], dst)
    else:
        ctx.reshape(cur, outs, dst=dst)


def check_compress(node: ir.Node) -> str | None:
    """GATHER must take the dtype; the condition is bool."""
    return dtype_reason("GATHER", node.inputs[0])


@tflite_lowering("Compress", check=check_compress)
def lower_compress(ctx: LoweringContext, node: ir.Node) -> None:
    """Compress -> GATHER of the true positions: constant ones folded, run-time ones by
    WHERE (their count is the static output length); no axis: on the flattened input."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    axis_attr = attr(node, "axis", None)
    if axis_attr is None:
        x = ctx.reshape(x, [int(np.prod(ctx.t(x).shape))], "flat")
    axis = 0 if axis_attr is None else int(axis_attr) % len(ctx.t(x).shape)  # type: ignore
    count = ctx.t(dst).shape[axis]
    cond = ctx.array(node.inputs[1])
    if cond is not None:
        idx = ctx.i32(np.flatnonzero(cond.reshape(-1)), "positions")
    else:
        cond_t = ctx.inp(node, 1)
        c = ctx.reshape(cond_t, [int(np.prod(ctx.t(cond_t).shape))], "condition")
        found = ctx.tmp("true_positions", np.int64, [count, 1])
        ctx.emit("WHERE", [c], [found])
        idx = ctx.reshape(found, [count], "positions")
    opts = s.GatherOptionsT()
    opts.axis = axis
    emit_typed(ctx, "GATHER", [x, idx], dst, opts)
