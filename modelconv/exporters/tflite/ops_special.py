"""Ops composed from comparisons, selects and reductions: IsInf, IsNaN (EQUAL / NOT_EQUAL),
Hardmax (ARG_MAX + ONE_HOT), LpNormalization (p = 1, 2), Shrink (SELECT_V2) and EyeLike
(a constant)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext, np_dtype
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.ops_elementwise import binary, scalar
from modelconv.exporters.tflite.ops_math import check_float32
from modelconv.exporters.tflite.registry import attr, tflite_lowering

_FLOATS = (None, "float32", "float16")


def check_float(node: ir.Node) -> str | None:
    """IsInf / IsNaN compare in float32 (float16 is widened exactly)."""
    name = value_dtype(node.inputs[0])
    return None if name in _FLOATS else f"{name} inputs (float only)"


def _as_f32(ctx: LoweringContext, x: int) -> int:
    return x if ctx.t(x).dtype == np.float32 else cast(ctx, x, np.dtype(np.float32))


@tflite_lowering("IsInf", check=check_float)
def lower_isinf(ctx: LoweringContext, node: ir.Node) -> None:
    """IsInf -> EQUAL(x, +inf) / EQUAL(x, -inf), OR-ed as detect_positive/negative ask."""
    x = _as_f32(ctx, ctx.inp(node, 0))
    dst = ctx.out(node)
    signs = [v for v, name in ((np.inf, "detect_positive"), (-np.inf, "detect_negative"))
             if attr(node, name, 1)]
    if not signs:  # neither: all false
        hit = ctx.tmp("is_inf", np.bool_, ctx.t(x).shape)
        ctx.emit("EQUAL", [x, ctx.const(np.asarray(np.inf, np.float32), "inf")], [hit])
        ctx.emit("LOGICAL_AND", [hit, ctx.const(np.asarray(False), "false")], [dst])
        return
    hits = []
    for v in signs:
        hit = dst if len(signs) == 1 else ctx.tmp("is_inf", np.bool_, ctx.t(x).shape)
        ctx.emit("EQUAL", [x, ctx.const(np.asarray(v, np.float32), "inf")], [hit])
        hits.append(hit)
    if len(hits) == 2:
        ctx.emit("LOGICAL_OR", hits, [dst])


@tflite_lowering("IsNaN", check=check_float)
def lower_isnan(ctx: LoweringContext, node: ir.Node) -> None:
    """IsNaN -> NOT_EQUAL(x, x) (NaN is the only value unequal to itself)."""
    x = _as_f32(ctx, ctx.inp(node, 0))
    ctx.emit("NOT_EQUAL", [x, x], [ctx.out(node)])


@tflite_lowering("Hardmax", check=check_float32)
def lower_hardmax(ctx: LoweringContext, node: ir.Node) -> None:
    """Hardmax -> ONE_HOT(ARG_MAX(x, axis), depth, 1, 0) on the same axis (ARG_MAX takes the
    first of equal maxima, as ONNX does)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    shape = ctx.t(x).shape
    axis = int(attr(node, "axis", -1)) % len(shape)  # type: ignore[call-overload]
    idx = ctx.tmp("argmax", np.int32, [d for i, d in enumerate(shape) if i != axis])
    opts = s.ArgMaxOptionsT()
    opts.outputType = s.TensorType.INT32
    ctx.emit("ARG_MAX", [x, ctx.i32([axis], "axis")], [idx], opts)
    one_hot = s.OneHotOptionsT()
    one_hot.axis = axis
    ctx.emit("ONE_HOT", [idx, ctx.const(np.asarray(shape[axis], np.int32), "depth"),
                         scalar(ctx, x, 1.0, "on"), scalar(ctx, x, 0.0, "off")], [dst], one_hot)


def check_lp(node: ir.Node) -> str | None:
    """LpNormalization: p 1 or 2, float32."""
    p = attr(node, "p", 2)
    return f"p={p} (1 or 2 only)" if p not in (1, 2) else check_float32(node)


@tflite_lowering("LpNormalization", check=check_lp)
def lower_lp_normalization(ctx: LoweringContext, node: ir.Node) -> None:
    """LpNormalization -> x / SUM(|x|) (p=1) or x / SQRT(SUM(x * x)) (p=2) over ``axis``;
    0 where the norm is 0 (ONNX defines that output as zero)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    shape = ctx.t(x).shape
    axis = int(attr(node, "axis", -1)) % len(shape)  # type: ignore[call-overload]
    mag = ctx.like(x, "magnitude")
    if attr(node, "p", 2) == 1:
        ctx.emit("ABS", [x], [mag])
    else:
        binary(ctx, "MUL", x, x, mag)
    kept = [1 if i == axis else d for i, d in enumerate(shape)]
    total = ctx.like(x, "sum", kept)
    opts = s.ReducerOptionsT()
    opts.keepDims = True
    ctx.emit("SUM", [mag, ctx.i32([axis], "axis")], [total], opts)
    if attr(node, "p", 2) == 2:
        root = ctx.like(total, "norm")
        ctx.emit("SQRT", [total], [root])
        total = root
    quotient = ctx.like(x, "quotient")
    binary(ctx, "DIV", x, total, quotient)
    zero = ctx.tmp("zero_norm", np.bool_, kept)
    ctx.emit("EQUAL", [total, scalar(ctx, x, 0.0, "zero")], [zero])
    ctx.emit("SELECT_V2", [zero, scalar(ctx, x, 0.0, "zero"), quotient], [dst])


def check_shrink(node: ir.Node) -> str | None:
    """Shrink: SELECT_V2 and the arithmetic in float32 or int32 here."""
    name = value_dtype(node.inputs[0])
    return None if name in (None, "float32") else f"{name} inputs (float32 only)"


@tflite_lowering("Shrink", check=check_shrink)
def lower_shrink(ctx: LoweringContext, node: ir.Node) -> None:
    """Shrink -> SELECT_V2(x < -lambd, x + bias, SELECT_V2(x > lambd, x - bias, 0))."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    lambd = float(attr(node, "lambd", 0.5))  # type: ignore[arg-type]
    bias = float(attr(node, "bias", 0.0))  # type: ignore[arg-type]
    shape = ctx.t(x).shape
    low, high = ctx.tmp("below", np.bool_, shape), ctx.tmp("above", np.bool_, shape)
    ctx.emit("LESS", [x, scalar(ctx, x, -lambd, "neg_lambd")], [low])
    ctx.emit("GREATER", [x, scalar(ctx, x, lambd, "lambd")], [high])
    plus, minus, upper = (ctx.like(x, n) for n in ("plus_bias", "minus_bias", "upper"))
    binary(ctx, "ADD", x, scalar(ctx, x, bias, "bias"), plus)
    binary(ctx, "SUB", x, scalar(ctx, x, bias, "bias"), minus)
    ctx.emit("SELECT_V2", [high, minus, scalar(ctx, x, 0.0, "zero")], [upper])
    ctx.emit("SELECT_V2", [low, plus, upper], [dst])


@tflite_lowering("EyeLike")
def lower_eye_like(ctx: LoweringContext, node: ir.Node) -> None:
    """EyeLike -> a constant (ones on diagonal k): it depends on the input's static shape only."""
    out = node.outputs[0]
    rows, cols = ctx.shape(out)
    k = int(attr(node, "k", 0))  # type: ignore[call-overload]
    ctx.alias(out, ctx.const(np.eye(rows, cols, k, dtype=np_dtype(out.dtype)), "eye"))
