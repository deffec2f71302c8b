"""Pooling and reductions: MaxPool/AveragePool/Global*Pool, Reduce*, ArgMax/ArgMin."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite._geometry import Window, explicit_end_pads
from modelconv.exporters.tflite.graph import LoweringContext, Tensor
from modelconv.exporters.tflite.kernels import (
    cast,
    compute_dtype,
    dtype_reason,
    emit_typed,
    value_dtype,
)
from modelconv.exporters.tflite.operands import is_constant, runtime_int32, static_length
from modelconv.exporters.tflite.ops_conv import as_nhwc4, finish_rank, prepare_window
from modelconv.exporters.tflite.ops_pool_taps import lower_pool_taps, taps_reason
from modelconv.exporters.tflite.registry import attr, output_used, tflite_lowering


def _pool_options(w: Window, padding: int) -> s.Pool2DOptionsT:
    opts = s.Pool2DOptionsT()
    opts.padding, opts.strideW, opts.strideH = padding, w.strides[1], w.strides[0]
    opts.filterHeight, opts.filterWidth = w.kernel
    return opts


def _pool(ctx: LoweringContext, node: ir.Node, code: str) -> None:
    x_in, final = ctx.inp(node, 0), ctx.out(node)
    dtype = ctx.t(x_in).dtype
    work = compute_dtype(code, dtype) or dtype
    dst = final
    if work != dtype:  # e.g. float16: pool in float32 (exact), cast back
        x_in = cast(ctx, x_in, work)
        dst = ctx.tmp("pool_wide", work, ctx.t(final).shape)
    x = as_nhwc4(ctx, x_in)
    kernel = list(node.attributes["kernel_shape"].value)
    if any(d != 1 for d in (node.attributes["dilations"].value
                            if "dilations" in node.attributes else [])):
        raise ExportError("TFLite pooling has no dilation")
    include = "count_include_pad" in node.attributes and node.attributes["count_include_pad"].value
    lowest = np.finfo(work).min if work.kind == "f" else np.iinfo(work).min
    value = float(lowest) if code == "MAX_POOL_2D" else 0.0
    in_hw = ctx.t(x).shape[1:3]
    xp, w, padding = prepare_window(ctx, node, x, kernel, value)
    if code == "AVERAGE_POOL_2D" and include and padding == s.Padding.SAME and any(w.pads):
        xp = _explicit(ctx, x, w, in_hw)
        padding = s.Padding.VALID
    y = dst if len(ctx.t(dst).shape) == 4 else ctx.tmp("pool4d", work,
                                                        [ctx.t(x).shape[0], *w.out,
                                                         ctx.t(x).shape[3]])
    padded = xp != x
    if code == "AVERAGE_POOL_2D" and padded:
        raw = ctx.like(y, "sum_window")
        ctx.emit(code, [xp], [raw], _pool_options(w, padding))
        factor = _avg_correction(w, in_hw, bool(include))
        ctx.emit("MUL", [raw, ctx.const(factor, "count_correction")], [y], s.MulOptionsT())
    else:
        ctx.emit(code, [xp], [y], _pool_options(w, padding))
    if y != dst:
        finish_rank(ctx, y, dst)
    if dst != final:
        cast(ctx, dst, dtype, final)


def _explicit(ctx: LoweringContext, x: int, w: Window, in_hw: list[int]) -> int:
    from modelconv.exporters.tflite.ops_conv import pad_input

    return pad_input(ctx, x, w, in_hw)


def _avg_correction(w: Window, in_hw: list[int], include_pad: bool) -> np.ndarray:
    """kernel_area / elements counted by ONNX, per output position ([1, H, W, 1])."""
    ends = explicit_end_pads(w, in_hw)
    factors = []
    for i in range(2):
        lo, hi = (-w.pads[i], in_hw[i] + w.pads[i + 2]) if include_pad else (0, in_hw[i])
        starts = np.arange(w.out[i]) * w.strides[i] - w.pads[i]
        count = np.minimum(starts + w.kernel[i], hi) - np.maximum(starts, lo)
        factors.append(w.kernel[i] / np.maximum(count, 1))
    del ends
    return np.asarray(np.outer(factors[0], factors[1])[None, :, :, None], np.float32)


def check_pool(node: ir.Node) -> str | None:
    """The 2-D pooling kernels, or taps (:mod:`.ops_pool_taps`) for dilations and 3-D
    windows; the indices output of MaxPool is refused."""
    if _needs_taps(node) or output_used(node, 1):
        reason = taps_reason(node)
        if reason is not None:
            return reason
    return dtype_reason("MAX_POOL_2D" if node.op_type == "MaxPool" else "AVERAGE_POOL_2D",
                        node.inputs[0])


def _needs_taps(node: ir.Node) -> bool:
    """Dilated or 3-D pooling: no TFLite pooling kernel has them."""
    x = node.inputs[0]
    dilated = any(d != 1 for d in attr(node, "dilations", None) or [])  # type: ignore[attr-defined]
    return dilated or output_used(node, 1) or (
        x is not None and x.shape is not None and len(x.shape) > 4)


@tflite_lowering("MaxPool", check=check_pool)
def lower_maxpool(ctx: LoweringContext, node: ir.Node) -> None:
    """MaxPool (channels-last) -> MAX_POOL_2D (PADV2 with -inf for irregular pads)."""
    if _needs_taps(node):
        lower_pool_taps(ctx, node)
        return
    _pool(ctx, node, "MAX_POOL_2D")


@tflite_lowering("AveragePool", check=check_pool)
def lower_avgpool(ctx: LoweringContext, node: ir.Node) -> None:
    """AveragePool (channels-last) -> AVERAGE_POOL_2D (+ count correction for explicit pads)."""
    if _needs_taps(node):
        lower_pool_taps(ctx, node)
        return
    _pool(ctx, node, "AVERAGE_POOL_2D")


def _reduce(ctx: LoweringContext, x: int, axes: list[int] | int, keep: bool, code: str,
            dst: int) -> None:
    """Emit reducer ``code`` over constant ``axes`` (a list) or an int32 axes tensor."""
    opts = s.ReducerOptionsT()
    opts.keepDims = keep
    axes_t = ctx.i32(axes, "axes") if isinstance(axes, list) else axes
    emit_typed(ctx, code, [x, axes_t], dst, opts)


@tflite_lowering("GlobalAveragePool", "GlobalMaxPool")
def lower_global_pool(ctx: LoweringContext, node: ir.Node) -> None:
    """Global pooling (channels-last) -> MEAN / REDUCE_MAX over the spatial axes."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    code = "MEAN" if node.op_type == "GlobalAveragePool" else "REDUCE_MAX"
    _reduce(ctx, x, list(range(1, rank - 1)), True, code, ctx.out(node))


_REDUCERS = {"ReduceMean": "MEAN", "ReduceSum": "SUM", "ReduceMax": "REDUCE_MAX",
             "ReduceMin": "REDUCE_MIN", "ReduceProd": "REDUCE_PROD"}


_BOOL_REDUCERS = {"ReduceMax": "REDUCE_ANY", "ReduceMin": "REDUCE_ALL"}


def reducer_code(node: ir.Node) -> str:
    """The TFLite reducer for ``node`` (bool max / min are REDUCE_ANY / REDUCE_ALL)."""
    if value_dtype(node.inputs[0]) == "bool" and node.op_type in _BOOL_REDUCERS:
        return _BOOL_REDUCERS[node.op_type]
    return _REDUCERS.get(node.op_type, "SUM")


def check_reduce(node: ir.Node) -> str | None:
    """The reducer kernel must take the input dtype (L2 / SumSquare: float only); run-time
    axes need a static length (an empty one means all axes or none, decided here)."""
    axes = node.inputs[1] if len(node.inputs) > 1 else None
    if axes is not None and not is_constant(axes) and static_length(axes) is None:
        return "run-time axes of unknown length"
    if node.op_type in _COMPOSED:
        name = value_dtype(node.inputs[0])
        return None if name in (None, "float32") else f"{name} inputs"
    return dtype_reason(reducer_code(node), node.inputs[0])


_COMPOSED = ("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")


_INF = float("inf")
#: the reduction of no elements (ONNX Reduce* "empty set" results)
_EMPTY_SET = {"ReduceSum": 0.0, "ReduceMean": float("nan"), "ReduceMax": -_INF,
              "ReduceMin": _INF, "ReduceProd": 1.0, "ReduceL1": 0.0, "ReduceL2": 0.0,
              "ReduceSumSquare": 0.0, "ReduceLogSum": -_INF, "ReduceLogSumExp": -_INF}


def _empty_set(op: str, t: Tensor) -> np.ndarray:
    """The value ONNX gives a reduction of no elements, filled to ``t``'s shape (integer
    max / min: the type's lowest / highest value)."""
    value = _EMPTY_SET[op]
    if t.dtype.kind in "iub" and not np.isfinite(value):
        if np.isnan(value):
            raise ExportError(f"{op} of an empty {t.dtype.name} tensor has no value")
        if t.dtype.kind == "b":  # any() of nothing is False, all() of nothing True
            return np.full(t.shape, value > 0, t.dtype)
        value = np.iinfo(t.dtype).min if value < 0 else np.iinfo(t.dtype).max
    return np.full(t.shape, value, t.dtype)


def _reduce_axes(ctx: LoweringContext, node: ir.Node, rank: int) -> list[int] | int:
    """The axes to reduce: a sorted constant list, or an int32 tensor of run-time axes
    (the reducer kernels read negative and repeated axes as ONNX does)."""
    value = node.inputs[1] if len(node.inputs) > 1 else None
    given = ctx.array(value) if value is not None else None
    if value is not None and given is None and static_length(value) != 0:
        return runtime_int32(ctx, value, "axes")
    if value is not None:
        axes = [int(a) for a in (given if given is not None else [])]
    else:
        axes = list(node.attributes["axes"].value) if "axes" in node.attributes else []
    if not axes:
        axes = [] if attr(node, "noop_with_empty_axes", 0) else list(range(rank))
    return sorted(a % rank for a in axes)


@tflite_lowering(*_REDUCERS, *_COMPOSED, check=check_reduce)
def lower_reduce(ctx: LoweringContext, node: ir.Node) -> None:
    """Reduce* -> MEAN/SUM/REDUCE_MAX/REDUCE_MIN/REDUCE_PROD; L1, L2, SumSquare, LogSum and
    LogSumExp composed from ABS / MUL / SUM / SQRT / LOG / EXP (float32). Constant axes are
    folded, run-time axes fed to the reducers as a tensor."""
    x = ctx.inp(node, 0)
    axes = _reduce_axes(ctx, node, len(ctx.t(x).shape))
    keep = bool(attr(node, "keepdims", 1))
    dst = ctx.out(node)
    if axes == []:
        ctx.reshape(x, ctx.t(dst).shape, dst=dst)
        return
    if 0 in ctx.t(x).shape and 0 not in ctx.t(dst).shape:  # ONNX's value of the empty set
        ctx.reshape(ctx.const(_empty_set(node.op_type, ctx.t(dst)), "empty_set"),
                    ctx.t(dst).shape, dst=dst)
        return
    if node.op_type in ("ReduceL1", "ReduceLogSum", "ReduceLogSumExp"):
        _reduce_log_l1(ctx, node, x, axes, keep, dst)
        return
    if node.op_type in ("ReduceL2", "ReduceSumSquare"):
        sq = ctx.like(x, "squared")
        ctx.emit("MUL", [x, x], [sq], s.MulOptionsT())
        total = dst if node.op_type == "ReduceSumSquare" else ctx.like(dst, "sum_sq")
        _reduce(ctx, sq, axes, keep, "SUM", total)
        if total != dst:
            ctx.emit("SQRT", [total], [dst])
        return
    _reduce(ctx, x, axes, keep, reducer_code(node), dst)


def _kept_shape(shape: list[int], axes: list[int] | int, out: list[int], keep: bool) -> list[int]:
    """``shape`` with the reduced axes set to 1 (run-time axes: derived from the output
    shape; the reducer resizes its output at run time anyway)."""
    if isinstance(axes, list):
        return [1 if i in axes else d for i, d in enumerate(shape)]
    if keep:
        return list(out)
    kept, rest = [], list(out)
    for d in shape:  # a placeholder: the first dims matching the output are the kept ones
        kept.append(rest.pop(0) if rest and rest[0] == d else 1)
    return kept


def _reduce_log_l1(ctx: LoweringContext, node: ir.Node, x: int, axes: list[int] | int,
                   keep: bool, dst: int) -> None:
    """ReduceL1 = SUM(ABS x); ReduceLogSum = LOG(SUM x); ReduceLogSumExp =
    LOG(SUM(EXP(x - max))) + max (the max over the same axes, kept, for range)."""
    if node.op_type == "ReduceL1":
        a = ctx.like(x, "abs")
        ctx.emit("ABS", [x], [a])
        _reduce(ctx, a, axes, keep, "SUM", dst)
        return
    if node.op_type == "ReduceLogSum":
        total = ctx.like(dst, "sum")
        _reduce(ctx, x, axes, keep, "SUM", total)
        ctx.emit("LOG", [total], [dst])
        return
    kept = _kept_shape(ctx.t(x).shape, axes, ctx.t(dst).shape, keep)
    peak = ctx.like(x, "max", kept)
    _reduce(ctx, x, axes, True, "REDUCE_MAX", peak)
    shifted, e = ctx.like(x, "shifted"), ctx.like(x, "exp")
    ctx.emit("SUB", [x, peak], [shifted], s.SubOptionsT())
    ctx.emit("EXP", [shifted], [e])
    total, logs = ctx.like(peak, "sum"), ctx.like(peak, "log_sum")
    _reduce(ctx, e, axes, True, "SUM", total)
    ctx.emit("LOG", [total], [logs])
    if keep:
        ctx.emit("ADD", [logs, peak], [dst], s.AddOptionsT())
        return
    full = ctx.like(peak, "log_sum_exp")
    ctx.emit("ADD", [logs, peak], [full], s.AddOptionsT())
    ctx.reshape(full, ctx.t(dst).shape, dst=dst)


def emit_reversed(ctx: LoweringContext, x: int, axis: int) -> int:
    """REVERSE_V2 of ``x`` along ``axis``; returns the new tensor."""
    rev = ctx.like(x, "reversed")
    ctx.emit("REVERSE_V2", [x, ctx.i32([axis], "reverse_axis")], [rev])
    return rev


def check_arg(node: ir.Node) -> str | None:
    """ARG_MAX / ARG_MIN return the first index (select_last_index=1 runs them on the input
    reversed by REVERSE_V2); the kernels must take the dtype."""
    if attr(node, "select_last_index", 0):
        reason = dtype_reason("REVERSE_V2", node.inputs[0])
        if reason is not None:
            return reason
    return dtype_reason("ARG_MAX", node.inputs[0])


@tflite_lowering("ArgMax", "ArgMin", check=check_arg)
def lower_argmax(ctx: LoweringContext, node: ir.Node) -> None:
    """ArgMax/ArgMin -> ARG_MAX/ARG_MIN (int64) + RESHAPE for keepdims."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    a = {k: v.value for k, v in node.attributes.items()}
    axis = a.get("axis", 0) % rank
    dst = ctx.out(node)
    shape = [d for i, d in enumerate(ctx.t(x).shape) if i != axis]
    last = bool(a.get("select_last_index", 0))
    y = dst if not a.get("keepdims", 1) and not last else ctx.tmp("arg", np.int64, shape)
    if last:  # first index in the reversed input = dim - 1 - last index
        x = emit_reversed(ctx, x, axis)
    code = "ARG_MAX" if node.op_type == "ArgMax" else "ARG_MIN"
    opts = s.ArgMaxOptionsT() if code == "ARG_MAX" else s.ArgMinOptionsT()
    opts.outputType = s.TensorType.INT64
    emit_typed(ctx, code, [x, ctx.i32([axis], "axis")], y, opts)
    if last:
        flipped = dst if not a.get("keepdims", 1) else ctx.tmp("arg_last", np.int64, shape)
        ctx.emit("SUB", [ctx.const(np.asarray(ctx.t(x).shape[axis] - 1, np.int64), "last"), y],
                 [flipped], s.SubOptionsT())
        y = flipped
    if y != dst:
        ctx.reshape(y, ctx.t(dst).shape, dst=dst)
