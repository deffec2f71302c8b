"""Tensors made from sizes and scalars: OneHot (ONE_HOT), ConstantOfShape (FILL), Range
(RANGE). Run-time depth / shape / limits are fed to the kernels; the output shapes must be
static (declared or inferred) like every TFLite tensor here."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.registry import attr, tflite_lowering

_ONE_HOT_DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "bool")  # one_hot.cc
_FILL_DTYPES = ("float32", "int32", "int64", "bool")  # fill.cc (plain element types)
_RANGE_DTYPES = ("float32", "int32", "int64")  # range.cc


def _scalar_int32(ctx: LoweringContext, value: ir.Value, name: str) -> int:
    """``value`` as a 0-D int32 tensor (constants folded, run-time values CAST / RESHAPEd)."""
    arr = ctx.array(value)
    if arr is not None:
        return ctx.const(np.asarray(int(arr.reshape(-1)[0]), np.int32), name)
    t = ctx.reshape(ctx.get(value), [], name)
    return t if ctx.t(t).dtype == np.int32 else cast(ctx, t, np.dtype(np.int32))


def check_onehot(node: ir.Node) -> str | None:
    """OneHot: values of a type ONE_HOT writes; integer or float indices and depth."""
    name = value_dtype(node.inputs[2])
    if name is not None and name not in _ONE_HOT_DTYPES:
        return f"{name} values: no LiteRT ONE_HOT kernel"
    for v, what in ((node.inputs[0], "indices"), (node.inputs[1], "depth")):
        kind = value_dtype(v)
        if kind is not None and kind not in ("float32", "int32", "int64"):
            return f"{kind} {what}"
    return None


@tflite_lowering("OneHot", check=check_onehot)
def lower_onehot(ctx: LoweringContext, node: ir.Node) -> None:
    """OneHot -> ONE_HOT(indices, depth, on, off). Indices are made int64 (float ones
    truncated, as ONNX casts them) and negative ones get depth added (ONNX counts from the
    end); ONE_HOT writes off for indices still outside [0, depth)."""
    idx = ctx.inp(node, 0)
    if ctx.t(idx).dtype != np.int64:
        idx = cast(ctx, idx, np.dtype(np.int64))
    depth = _scalar_int32(ctx, node.inputs[1], "depth")  # type: ignore[arg-type]
    depth64 = cast(ctx, depth, np.dtype(np.int64))
    neg = ctx.tmp("negative", np.bool_, ctx.t(idx).shape)
    wrapped, fixed = ctx.like(idx, "wrapped"), ctx.like(idx, "indices")
    ctx.emit("LESS", [idx, ctx.const(np.asarray(0, np.int64), "zero")], [neg])
    ctx.emit("ADD", [idx, depth64], [wrapped], s.AddOptionsT())
    ctx.emit("SELECT_V2", [neg, wrapped, idx], [fixed])
    values = ctx.inp(node, 2)
    flat = ctx.reshape(values, [2], "values")
    on_off = []
    for k in (1, 0):
        t = ctx.like(flat, "on" if k else "off", [])
        opts = s.GatherOptionsT()
        opts.axis = 0
        ctx.emit("GATHER", [flat, ctx.const(np.asarray(k, np.int32), f"pick{k}")], [t], opts)
        on_off.append(t)
    dst = ctx.out(node)
    opts = s.OneHotOptionsT()
    opts.axis = int(attr(node, "axis", -1)) % len(ctx.t(dst).shape)  # type: ignore[call-overload]
    ctx.emit("ONE_HOT", [fixed, depth, *on_off], [dst], opts)


def check_constant_of_shape(node: ir.Node) -> str | None:
    """ConstantOfShape: a value type FILL writes."""
    name = value_dtype(node.outputs[0])
    if name is not None and name not in _FILL_DTYPES:
        return f"{name} value: no LiteRT FILL kernel"
    return None


@tflite_lowering("ConstantOfShape", check=check_constant_of_shape)
def lower_constant_of_shape(ctx: LoweringContext, node: ir.Node) -> None:
    """ConstantOfShape -> FILL(shape, value): the shape input as given (int64 dims; a constant
    one is folded before lowering)."""
    dst = ctx.out(node)
    a = node.attributes.get("value")
    value = np.zeros(1, ctx.t(dst).dtype) if a is None else np.asarray(a.value.numpy())
    scalar = ctx.const(np.asarray(value.reshape(-1)[0], ctx.t(dst).dtype), "value")
    ctx.emit("FILL", [ctx.inp(node, 0), scalar], [dst])


def check_range(node: ir.Node) -> str | None:
    """Range: a type RANGE computes in, all three inputs of it."""
    names = {value_dtype(v) for v in node.inputs}
    bad = sorted(n for n in names if n is not None and n not in _RANGE_DTYPES)
    return f"{bad[0]} inputs: no LiteRT RANGE kernel" if bad else None


@tflite_lowering("Range", check=check_range)
def lower_range(ctx: LoweringContext, node: ir.Node) -> None:
    """Range -> RANGE(start, limit, delta) (scalars; start + i * delta)."""
    ins = [ctx.reshape(ctx.inp(node, i), [], name)
           for i, name in enumerate(("start", "limit", "delta"))]
    ctx.emit("RANGE", ins, [ctx.out(node)])
