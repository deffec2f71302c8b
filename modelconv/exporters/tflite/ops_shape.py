"""Data movement: Reshape family, Transpose, Concat, Split, Slice, Gather, Pad, Tile, Expand,
Cumsum, Resize, DepthToSpace/SpaceToDepth."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite._resize import ResizeAxis, resize_plan
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import dtype_reason, emit_typed
from modelconv.exporters.tflite.operands import (
    int32_operand,
    is_constant,
    runtime_int32,
    scatter_axes,
    scatter_runtime_axes,
    static_length,
)
from modelconv.exporters.tflite.ops_resize import emit_taps, taps_plan
from modelconv.exporters.tflite.ops_resize_runtime import (
    lower_runtime_scales,
    runtime_scales_reason,
)
from modelconv.exporters.tflite.registry import attr, tflite_lowering
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN


def _a(node: ir.Node, name: str, default: object = None) -> object:
    a = node.attributes.get(name)
    return default if a is None else a.value


@tflite_lowering("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def lower_reshape(ctx: LoweringContext, node: ir.Node) -> None:
    """Reshape-like ops -> RESHAPE to the (static) output shape."""
    dst = ctx.out(node)
    ctx.reshape(ctx.inp(node, 0), ctx.t(dst).shape, dst=dst)


@tflite_lowering("Transpose")
def lower_transpose(ctx: LoweringContext, node: ir.Node) -> None:
    """Transpose -> TRANSPOSE."""
    x = ctx.inp(node, 0)
    perm = _a(node, "perm") or list(reversed(range(len(ctx.t(x).shape))))
    ctx.transpose(x, list(perm), dst=ctx.out(node))  # type: ignore[call-overload]


def _data_check(code: str) -> object:
    def check(node: ir.Node) -> str | None:
        return dtype_reason(code, node.inputs[0])

    check.__doc__ = f"The {code} kernel (or a wider type it takes) must hold the dtype."
    return check


@tflite_lowering("Concat", check=_data_check("CONCATENATION"))  # type: ignore[arg-type]
def lower_concat(ctx: LoweringContext, node: ir.Node) -> None:
    """Concat -> CONCATENATION."""
    dst = ctx.out(node)
    opts = s.ConcatenationOptionsT()
    opts.axis = int(_a(node, "axis")) % len(ctx.t(dst).shape)  # type: ignore[call-overload]
    ins = [ctx.inp(node, i) for i in range(len(node.inputs))
           if 0 not in ctx.shape(node.inputs[i])]  # type: ignore[arg-type]
    emit_typed(ctx, "CONCATENATION", ins, dst, opts)


@tflite_lowering("Split", check=_data_check("SPLIT"))  # type: ignore[arg-type]
def lower_split(ctx: LoweringContext, node: ir.Node) -> None:
    """Split -> SPLIT (equal parts) or SPLIT_V."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    axis = int(_a(node, "axis", 0)) % rank  # type: ignore[call-overload]
    outs = [ctx.out(node, i) for i in range(len(node.outputs))]
    sizes = [ctx.t(o).shape[axis] for o in outs]
    if len(set(sizes)) == 1:
        opts = s.SplitOptionsT()
        opts.numSplits = len(outs)
        emit_typed(ctx, "SPLIT", [ctx.i32(axis, "axis"), x], outs, opts, data=1)
        return
    opts_v = s.SplitVOptionsT()
    opts_v.numSplits = len(outs)
    emit_typed(ctx, "SPLIT_V", [x, ctx.i32(sizes, "sizes"), ctx.i32(axis, "axis")], outs, opts_v)


def check_slice(node: ir.Node) -> str | None:
    """STRIDED_SLICE reads begin / end / strides tensors, so run-time starts, ends and steps
    are fed to it (their count must be static)."""
    starts = node.inputs[1]
    if not is_constant(starts) and static_length(starts) is None:
        return "run-time starts of unknown length"
    return None


@tflite_lowering("Slice", check=check_slice)
def lower_slice(ctx: LoweringContext, node: ir.Node) -> None:
    """Slice -> STRIDED_SLICE with clamped, fully specified begin/end/strides (constants
    folded; run-time bounds scattered into rank-long vectors)."""
    x = ctx.inp(node, 0)
    shape = ctx.t(x).shape
    rank = len(shape)
    if not all(is_constant(v) for v in node.inputs[1:]):
        _runtime_slice(ctx, node, x)
        return
    starts, ends = (ctx.need_array(node.inputs[i], "slice bound") for i in (1, 2))
    axes, steps = (ctx.need_array(node.inputs[i], "slice parameter")
                   if len(node.inputs) > i and node.inputs[i] is not None else None
                   for i in (3, 4))
    axes = np.arange(len(starts)) if axes is None else axes
    steps = np.ones(len(starts), np.int64) if steps is None else steps
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    end_mask = 0
    for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
        ax, dim, sp = int(ax) % rank, shape[int(ax) % rank], int(sp)
        st, en = int(st), int(en)
        st, en = (st + dim if st < 0 else st), (en + dim if en < 0 else en)
        if sp > 0:
            begin[ax], end[ax] = min(max(st, 0), dim), min(max(en, 0), dim)
        else:
            begin[ax], end[ax] = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
            if end[ax] < 0:
                end_mask |= 1 << ax
        stride[ax] = sp
    opts = s.StridedSliceOptionsT()
    opts.endMask = end_mask
    ctx.emit("STRIDED_SLICE", [x, ctx.i32(begin, "begin"), ctx.i32(end, "end"),
                               ctx.i32(stride, "strides")], [ctx.out(node)], opts)


#: run-time slice bounds are clamped to +-2**30 (any such bound is "past the end")
_BOUND = 2**30


def _runtime_slice(ctx: LoweringContext, node: ir.Node, x: int) -> None:
    """Slice with run-time starts / ends / steps: STRIDED_SLICE on the bounds scattered to
    rank-long vectors (unlisted axes: 0, dim, 1). The kernel wraps negative bounds and clamps
    them as ONNX does, except a start below -dim with a negative step (ONNX: 0, the kernel:
    -1), so starts are first raised to at least -dim."""
    shape = ctx.t(x).shape
    rank = len(shape)
    n = static_length(node.inputs[1])
    assert n is not None
    axes_v = node.inputs[3] if len(node.inputs) > 3 else None
    axes_arr = ctx.array(axes_v)
    steps_v = node.inputs[4] if len(node.inputs) > 4 else None
    starts, ends = (int32_operand(ctx, node.inputs[i], w, [n], _BOUND)  # type: ignore[arg-type]
                    for i, w in ((1, "starts"), (2, "ends")))
    steps = ctx.i32([1] * n, "steps") if steps_v is None else int32_operand(
        ctx, steps_v, "steps", [n], _BOUND)
    if axes_v is not None and axes_arr is None:
        axes_t = runtime_int32(ctx, axes_v, "axes", [n])
        begin, end, stride = (scatter_runtime_axes(ctx, v, axes_t, fill, w) for v, fill, w in (
            (starts, [0] * rank, "begin"), (ends, list(shape), "end"),
            (steps, [1] * rank, "strides")))
    else:
        axes = list(range(n)) if axes_arr is None else [int(a) % rank for a in axes_arr]
        begin, end, stride = (scatter_axes(ctx, v, axes, fill, w) for v, fill, w in (
            (starts, [0] * rank, "begin"), (ends, list(shape), "end"),
            (steps, [1] * rank, "strides")))
    raised = ctx.like(begin, "begin_raised")
    ctx.emit("MAXIMUM", [begin, ctx.i32([-d for d in shape], "minus_dims")], [raised])
    ctx.emit("STRIDED_SLICE", [x, raised, end, stride], [ctx.out(node)],
             s.StridedSliceOptionsT())


@tflite_lowering("Gather", check=_data_check("GATHER"))  # type: ignore[arg-type]
def lower_gather(ctx: LoweringContext, node: ir.Node) -> None:
    """Gather -> GATHER (negative indices are wrapped: constant ones here, run-time ones by
    LESS / ADD / SELECT_V2; embedding lookups)."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    axis = int(_a(node, "axis", 0)) % rank  # type: ignore[call-overload]
    idx_arr = ctx.array(node.inputs[1])
    if idx_arr is not None:
        dim = ctx.t(x).shape[axis]
        idx = ctx.const(np.where(idx_arr < 0, idx_arr + dim, idx_arr).astype(np.int32), "indices")
    else:  # GATHER refuses negative positions at run time: add the dim size to them
        idx = ctx.inp(node, 1)
        dim_t = ctx.const(np.asarray([ctx.t(x).shape[axis]], ctx.t(idx).dtype), "dim")
        neg = ctx.tmp("negative", np.bool_, ctx.t(idx).shape)
        wrapped, fixed = ctx.like(idx, "wrapped"), ctx.like(idx, "indices")
        ctx.emit("LESS", [idx, ctx.const(np.asarray(0, ctx.t(idx).dtype), "zero")], [neg])
        ctx.emit("ADD", [idx, dim_t], [wrapped], s.AddOptionsT())
        ctx.emit("SELECT_V2", [neg, wrapped, idx], [fixed])
        idx = fixed
    opts = s.GatherOptionsT()
    opts.axis = axis
    emit_typed(ctx, "GATHER", [x, idx], ctx.out(node), opts)


@tflite_lowering("Expand")
def lower_expand(ctx: LoweringContext, node: ir.Node) -> None:
    """Expand -> BROADCAST_TO the static output shape."""
    dst = ctx.out(node)
    ctx.emit("BROADCAST_TO", [ctx.inp(node, 0), ctx.i32(ctx.t(dst).shape)], [dst])


@tflite_lowering("Tile")
def lower_tile(ctx: LoweringContext, node: ir.Node) -> None:
    """Tile -> TILE (constant or run-time repeats)."""
    reps = int32_operand(ctx, node.inputs[1], "multiples")  # type: ignore[arg-type]
    ctx.emit("TILE", [ctx.inp(node, 0), reps], [ctx.out(node)])


def check_pad(node: ir.Node) -> str | None:
    """PAD / PADV2 / MIRROR_PAD: constant, non-negative pads; constant or reflect mode.
    Edge and wrap are GATHERs of constant positions (negative pads allowed)."""
    mode = _a(node, "mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        return f"mode={mode}"
    pads = node.inputs[1] if len(node.inputs) > 1 else None
    axes = node.inputs[3] if len(node.inputs) > 3 else None
    if pads is None:
        return "no pads input"
    if pads.const_value is None or not is_constant(axes):
        # PAD / PADV2 / MIRROR_PAD read the paddings tensor; edge / wrap GATHER positions
        # computed from it for the static output size
        if mode in ("edge", "wrap") and not is_constant(axes):
            return f"run-time axes with mode={mode}"
        return dtype_reason("GATHER" if mode in ("edge", "wrap") else "PAD", node.inputs[0])
    if (pads.const_value.numpy() < 0).any() and mode != "edge" and mode != "wrap":
        return "negative pads (cropping)"
    return dtype_reason("GATHER" if mode in ("edge", "wrap") else "PAD", node.inputs[0])


@tflite_lowering("Pad", check=check_pad)
def lower_pad(ctx: LoweringContext, node: ir.Node) -> None:
    """Pad -> PAD / PADV2 (constant value) / MIRROR_PAD (reflect) / GATHER (edge, wrap)."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    axes_v = node.inputs[3] if len(node.inputs) > 3 else None
    axes = ctx.array(axes_v)
    if axes_v is not None and axes is None:
        _emit_pad(ctx, node, x, _scattered_paddings(ctx, node.inputs[1], axes_v, rank),
                  ctx.out(node))
        return
    if ctx.array(node.inputs[1]) is None:
        listed = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
        if _a(node, "mode", "constant") in ("edge", "wrap"):
            _runtime_pad_gather(ctx, node, x, listed)
            return
        _emit_pad(ctx, node, x, _runtime_paddings(ctx, node.inputs[1], listed, rank),
                  ctx.out(node))
        return
    pads = ctx.need_array(node.inputs[1], "pads").astype(np.int64)
    full = np.zeros((rank, 2), np.int64)
    for k, ax in enumerate(range(rank) if axes is None else [int(a) % rank for a in axes]):
        full[ax] = pads[k], pads[k + len(pads) // 2]
    mode, dst = _a(node, "mode", "constant"), ctx.out(node)
    if mode in ("edge", "wrap"):
        _pad_gather(ctx, x, full, str(mode), dst)
        return
    if (full < 0).any():
        raise ExportError("negative Pad (cropping) is not supported for TFLite")
    _emit_pad(ctx, node, x, ctx.i32(full, "paddings"), dst)


def _runtime_paddings(ctx: LoweringContext, pads: ir.Value | None, axes: list[int],
                      rank: int) -> int:
    """ONNX run-time pads ``[begin..., end...]`` over ``axes`` as TFLite's int32 ``[rank, 2]``
    paddings: RESHAPE to [2, n], TRANSPOSE, GATHER rows (zero rows for unlisted axes)."""
    assert pads is not None
    n = len(axes)
    pairs = ctx.transpose(runtime_int32(ctx, pads, "pads", [2, n]), [1, 0], "pad_pairs")
    if axes == list(range(rank)):
        return pairs
    rows = ctx.tmp("pad_rows", np.int32, [n + 1, 2])
    opts = s.ConcatenationOptionsT()
    opts.axis = 0
    ctx.emit("CONCATENATION", [pairs, ctx.i32([[0, 0]], "no_pad")], [rows], opts)
    full = ctx.tmp("paddings", np.int32, [rank, 2])
    g = s.GatherOptionsT()
    g.axis = 0
    pos = [axes.index(ax) if ax in axes else n for ax in range(rank)]
    ctx.emit("GATHER", [rows, ctx.i32(pos, "pad_positions")], [full], g)
    return full


def _scattered_paddings(ctx: LoweringContext, pads: ir.Value | None, axes: ir.Value,
                        rank: int) -> int:
    """Run-time pads over run-time axes: [rank, 2] paddings by SCATTER_ND of the
    (begin, end) pairs at the axes taken modulo the rank (FLOOR_MOD)."""
    assert pads is not None
    n = static_length(axes)
    if n is None:
        raise ExportError(f"Pad {node_name(ctx)}: run-time axes of unknown length")
    pairs = ctx.transpose(runtime_int32(ctx, pads, "pads", [2, n]), [1, 0], "pad_pairs")
    ax = runtime_int32(ctx, axes, "pad_axes", [n, 1])
    wrapped = ctx.like(ax, "pad_axes_wrapped")
    ctx.emit("FLOOR_MOD", [ax, ctx.const(np.asarray(rank, np.int32), "rank")], [wrapped])
    full = ctx.tmp("paddings", np.int32, [rank, 2])
    ctx.emit("SCATTER_ND", [wrapped, pairs, ctx.i32([rank, 2], "paddings_shape")], [full])
    return full


def _runtime_pad_gather(ctx: LoweringContext, node: ir.Node, x: int, axes: list[int]) -> None:
    """Pad edge / wrap with run-time pads: per listed axis, GATHER the source positions of
    the (static) output size: ``i - begin`` clamped to the axis (edge), or, with
    ``b+ = max(begin, 0)``, ``max(-begin, 0) + (i - b+) mod (size - b+ - max(end, 0))``
    (wrap: the kept range after any cropping, repeated)."""
    pads = runtime_int32(ctx, node.inputs[1], "pads")  # type: ignore[arg-type]
    dst = ctx.out(node)
    shape, cur = list(ctx.t(x).shape), x
    zero = ctx.i32(0, "zero")

    def scalar(name: str, code: str, ins: list[int], options: object = None) -> int:
        out = ctx.tmp(name, np.int32, [])
        ctx.emit(code, ins, [out], options)
        return out

    for k, ax in enumerate(axes):
        n, size = shape[ax], ctx.t(dst).shape[ax]
        g = s.GatherOptionsT()
        g.axis = 0
        begin, end = (scalar(f"pad_{w}{ax}", "GATHER", [pads, ctx.i32(j, f"pad_index{ax}_{w}")],
                             g) for w, j in (("begin", k), ("end", k + len(axes))))
        rows = ctx.i32(np.arange(size), f"out_positions{ax}")
        if _a(node, "mode") == "edge":
            moved = ctx.tmp(f"pad_moved{ax}", np.int32, [size])
            ctx.emit("SUB", [rows, begin], [moved], s.SubOptionsT())
            low = ctx.like(moved, f"pad_low{ax}")
            ctx.emit("MAXIMUM", [moved, zero], [low])
            pos = ctx.like(moved, f"pad_positions{ax}")
            ctx.emit("MINIMUM", [low, ctx.i32(n - 1, f"last{ax}")], [pos])
        else:
            grown_b, grown_e = (scalar(f"pad_grown{w}{ax}", "MAXIMUM", [v, zero])
                                for w, v in (("b", begin), ("e", end)))
            lo = scalar(f"pad_lo{ax}", "SUB", [grown_b, begin], s.SubOptionsT())
            kept = scalar(f"pad_kept{ax}", "SUB", [scalar(
                f"pad_rest{ax}", "SUB", [ctx.i32(size, f"size{ax}"), grown_b], s.SubOptionsT()),
                grown_e], s.SubOptionsT())
            moved = ctx.tmp(f"pad_moved{ax}", np.int32, [size])
            ctx.emit("SUB", [rows, grown_b], [moved], s.SubOptionsT())
            wrapped = ctx.like(moved, f"pad_wrapped{ax}")
            ctx.emit("FLOOR_MOD", [moved, kept], [wrapped])
            pos = ctx.like(moved, f"pad_positions{ax}")
            ctx.emit("ADD", [wrapped, lo], [pos], s.AddOptionsT())
        shape[ax] = size
        out = dst if k == len(axes) - 1 else ctx.like(cur, f"padded{ax}", list(shape))
        opts = s.GatherOptionsT()
        opts.axis = ax
        emit_typed(ctx, "GATHER", [cur, pos], out, opts)
        cur = out


def _emit_pad(ctx: LoweringContext, node: ir.Node, x: int, paddings: int, dst: int) -> None:
    """PAD / PADV2 (a non-zero or run-time constant value) / MIRROR_PAD (reflect)."""
    mode = _a(node, "mode", "constant")
    if mode == "reflect":
        opts = s.MirrorPadOptionsT()
        opts.mode = s.MirrorPadMode.REFLECT
        emit_typed(ctx, "MIRROR_PAD", [x, paddings], dst, opts)
        return
    if mode != "constant":
        raise ExportError(f"Pad mode '{mode}' is not supported for TFLite")
    given = node.inputs[2] if len(node.inputs) > 2 else None
    value = ctx.array(given)
    if given is not None and value is None:  # a run-time value: PADV2 reads it
        emit_typed(ctx, "PADV2", [x, paddings, ctx.reshape(ctx.get(given), [1], "pad_value")],
                   dst)
    elif value is None or not np.any(value):
        emit_typed(ctx, "PAD", [x, paddings], dst)
    else:
        v = ctx.const(np.asarray(value, ctx.t(x).dtype).reshape(1), "pad_value")
        emit_typed(ctx, "PADV2", [x, paddings, v], dst)


@tflite_lowering("CumSum", check=_data_check("CUMSUM"))  # type: ignore[arg-type]
def lower_cumsum(ctx: LoweringContext, node: ir.Node) -> None:
    """CumSum -> CUMSUM (a constant axis folded, a run-time one fed to the kernel, which
    counts negative axes from the end as ONNX does)."""
    axis_v = node.inputs[1]
    assert axis_v is not None
    given = ctx.array(axis_v)
    if given is not None:
        axis = ctx.i32(int(given.reshape(-1)[0]) % len(ctx.t(ctx.inp(node, 0)).shape), "axis")
    else:
        axis = runtime_int32(ctx, axis_v, "axis", [])
    opts = s.CumsumOptionsT()
    opts.exclusive, opts.reverse = bool(_a(node, "exclusive", 0)), bool(_a(node, "reverse", 0))
    emit_typed(ctx, "CUMSUM", [ctx.inp(node, 0), axis], ctx.out(node), opts)


def _resize_plan(node: ir.Node) -> tuple[str, bool, bool] | str:
    """The TFLite op and flags for a Resize node (NCHW, or NHWC after the layout pass)."""
    x, y = node.inputs[0], node.outputs[0]
    if attr(node, "axes") is not None:
        return "axes attribute"
    if x is None or x.shape is None or y.shape is None or len(x.shape) != 4 or not all(
            isinstance(d, int) for d in (*x.shape, *y.shape)):
        return "resizes other than the H/W dims of a rank-4 tensor"
    hw = (1, 2) if node.domain == NHWC_DOMAIN else (2, 3)
    keep = [i for i in range(4) if i not in hw]
    in_shape = [d for d in x.shape if isinstance(d, int)]
    out_shape = [d for d in y.shape if isinstance(d, int)]
    if [in_shape[i] for i in keep] != [out_shape[i] for i in keep]:
        return "resizes other than the H/W dims of a rank-4 tensor"
    scales = node.inputs[2] if len(node.inputs) > 2 else None
    given = None if scales is None or scales.const_value is None else scales.const_value.numpy()
    axes = [ResizeAxis(in_shape[i], out_shape[i], float(given[i]) if given is not None and
                       given.size == 4 else out_shape[i] / in_shape[i]) for i in hw]
    if 0 in (*in_shape, *out_shape):
        return "empty tensors"
    return resize_plan({k: a.value for k, a in node.attributes.items()}, axes)


def check_resize(node: ir.Node) -> str | None:
    """Resize runs as RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR where their flags reproduce
    the ONNX coordinates exactly for these sizes (see :mod:`._resize`), else as per-axis taps
    (:mod:`.ops_resize`); refused when the sizes or scales are not known when converting."""
    plan = taps_plan(node)
    if plan in ("run-time scales", "run-time roi"):
        return runtime_scales_reason(node)
    return plan if isinstance(plan, str) else None


@tflite_lowering("Resize", check=check_resize)
def lower_resize(ctx: LoweringContext, node: ir.Node) -> None:
    """Resize -> RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR (channels-last, 2-D, when a flag
    pair matches) or GATHER / MUL / ADD taps along each resized axis."""
    plan = _resize_plan(node) if node.domain == NHWC_DOMAIN else "not channels-last"
    dst = ctx.out(node)
    if isinstance(plan, str):
        taps = taps_plan(node)
        if taps in ("run-time scales", "run-time roi") and runtime_scales_reason(node) is None:
            lower_runtime_scales(ctx, node)
            return
        if isinstance(taps, str):
            raise ExportError(f"Resize {node.name}: {taps} has no TFLite equivalent")
        emit_taps(ctx, ctx.inp(node, 0), taps, dst,
                  float(attr(node, "extrapolation_value", 0.0)))  # type: ignore[arg-type]
        return
    code, align, half = plan
    size = ctx.i32(ctx.t(dst).shape[1:3], "size")
    opts = s.ResizeBilinearOptionsT() if code == "RESIZE_BILINEAR" else \
        s.ResizeNearestNeighborOptionsT()
    opts.alignCorners, opts.halfPixelCenters = align, half
    ctx.emit(code, [ctx.inp(node, 0), size], [dst], opts)


def check_depth_space(node: ir.Node) -> str | None:
    """DEPTH_TO_SPACE is DCR (CRD is RESHAPE / TRANSPOSE / RESHAPE); the kernel (or a wider
    type it takes) holds the dtype."""
    if _a(node, "mode", "DCR") not in ("DCR", "CRD"):
        return f"mode={_a(node, 'mode')}"
    code = "DEPTH_TO_SPACE" if node.op_type == "DepthToSpace" else "SPACE_TO_DEPTH"
    return dtype_reason(code, node.inputs[0])


@tflite_lowering("DepthToSpace", "SpaceToDepth", check=check_depth_space)
def lower_depth_space(ctx: LoweringContext, node: ir.Node) -> None:
    """DepthToSpace (DCR) / SpaceToDepth (channels-last) -> DEPTH_TO_SPACE / SPACE_TO_DEPTH;
    DepthToSpace CRD -> RESHAPE (split channels as c, b, b) / TRANSPOSE / RESHAPE."""
    if node.op_type == "DepthToSpace" and _a(node, "mode", "DCR") == "CRD":
        _depth_to_space_crd(ctx, node)
        return
    if node.domain != NHWC_DOMAIN or _a(node, "mode", "DCR") != "DCR":
        raise ExportError(f"{node.op_type} needs a rank-4 input and DCR mode for TFLite")
    code = "DEPTH_TO_SPACE" if node.op_type == "DepthToSpace" else "SPACE_TO_DEPTH"
    opts = s.DepthToSpaceOptionsT() if code == "DEPTH_TO_SPACE" else s.SpaceToDepthOptionsT()
    opts.blockSize = int(_a(node, "blocksize"))  # type: ignore[call-overload]
    emit_typed(ctx, code, [ctx.inp(node, 0)], ctx.out(node), opts)


def _depth_to_space_crd(ctx: LoweringContext, node: ir.Node) -> None:
    """CRD: channel index c * b * b + i * b + j moves to row h * b + i, column w * b + j."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    b = int(_a(node, "blocksize"))  # type: ignore[call-overload]
    if node.domain == NHWC_DOMAIN:
        n, h, w, ch = ctx.t(x).shape
        split = ctx.reshape(x, [n, h, w, ch // (b * b), b, b], "crd_split")
        moved = ctx.transpose(split, [0, 1, 4, 2, 5, 3], "crd_moved")
    else:
        n, ch, h, w = ctx.t(x).shape
        split = ctx.reshape(x, [n, ch // (b * b), b, b, h, w], "crd_split")
        moved = ctx.transpose(split, [0, 1, 4, 2, 5, 3], "crd_moved")
    ctx.reshape(moved, ctx.t(dst).shape, dst=dst)


def node_name(ctx: LoweringContext) -> str:
    """The name of the node being lowered (for messages)."""
    return ctx.node.name or "?" if ctx.node is not None else "?"


def _pad_gather(ctx: LoweringContext, x: int, full: np.ndarray, mode: str, dst: int) -> None:
    """Pad edge / wrap (and any mode with negative pads) as one GATHER per padded axis with
    constant source positions: clamped (edge) or modulo the axis length (wrap)."""
    shape = list(ctx.t(x).shape)
    cur = x
    padded = [ax for ax in range(len(shape)) if full[ax].any()]
    for k, ax in enumerate(padded):
        before, after = int(full[ax][0]), int(full[ax][1])
        # negative pads crop first; the kept range [lo, lo + n) is then padded
        lo, n = max(0, -before), shape[ax] - max(0, -before) - max(0, -after)
        if n <= 0:
            raise ExportError(f"Pad {node_name(ctx)}: axis {ax} cropped to nothing")
        pos = np.arange(-max(before, 0), n + max(after, 0))
        pos = lo + (np.clip(pos, 0, n - 1) if mode == "edge" else np.mod(pos, n))
        shape[ax] = len(pos)
        out = dst if k == len(padded) - 1 else ctx.like(cur, f"padded{ax}", list(shape))
        opts = s.GatherOptionsT()
        opts.axis = ax
        emit_typed(ctx, "GATHER", [cur, ctx.i32(pos, "pad_positions")], out, opts)
        cur = out
    if not padded:
        ctx.reshape(x, ctx.t(dst).shape, dst=dst)
