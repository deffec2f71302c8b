"""Index-tensor data movement: GatherND -> GATHER_ND, ScatterND -> SCATTER_ND.

TFLite's SCATTER_ND writes ``updates`` into a zero tensor of a given shape, summing
duplicate indices; ONNX ScatterND writes into ``data``. ``reduction="add"`` is
``data + SCATTER_ND(...)``; no reduction is ``SELECT_V2(SCATTER_ND(ones) > 0,
SCATTER_ND(updates), data)``, exact only when no index repeats, which the check requires of
constant indices (run-time indices with repeats are undefined behaviour in ONNX too).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast
from modelconv.exporters.tflite.registry import attr, tflite_lowering


def _indices(ctx: LoweringContext, node: ir.Node, data_shape: list[int]) -> int:
    """The index tensor with negative entries wrapped (ONNX allows them; the kernels do not):
    constant indices here, run-time ones by LESS / ADD / SELECT_V2 per index column."""
    arr = ctx.array(node.inputs[1])
    if arr is not None:
        k = arr.shape[-1]
        dims = np.array(data_shape[:k], dtype=np.int64)
        return ctx.i32(np.where(arr < 0, arr + dims, arr), "indices")
    idx = ctx.inp(node, 1)
    k = ctx.t(idx).shape[-1]
    dtype = ctx.t(idx).dtype
    neg = ctx.tmp("negative", np.bool_, ctx.t(idx).shape)
    wrapped, fixed = ctx.like(idx, "wrapped"), ctx.like(idx, "indices")
    ctx.emit("LESS", [idx, ctx.const(np.asarray(0, dtype), "zero")], [neg])
    ctx.emit("ADD", [idx, ctx.const(np.asarray(data_shape[:k], dtype), "dims")], [wrapped],
             s.AddOptionsT())
    ctx.emit("SELECT_V2", [neg, wrapped, idx], [fixed])
    # SCATTER_ND takes int32 indices only (and a shape of the same type)
    return fixed if np.dtype(dtype) == np.int32 else cast(ctx, fixed, np.dtype(np.int32))


def _check_gather_nd(node: ir.Node) -> str | None:
    return "batch_dims != 0" if attr(node, "batch_dims", 0) else None


@tflite_lowering("GatherND", check=_check_gather_nd)
def lower_gather_nd(ctx: LoweringContext, node: ir.Node) -> None:
    """GatherND (batch_dims 0) -> GATHER_ND (constant negative indices wrapped)."""
    x = ctx.inp(node, 0)
    idx = _indices(ctx, node, list(ctx.t(x).shape))
    ctx.emit("GATHER_ND", [x, idx], [ctx.out(node)], s.GatherNdOptionsT())


def _check_scatter_nd(node: ir.Node) -> str | None:
    reduction = attr(node, "reduction", "none")
    if reduction not in ("none", "add"):
        return f"reduction={reduction}"
    idx = node.inputs[1]
    arr = None if idx is None or idx.const_value is None else idx.const_value.numpy()
    if reduction == "none" and arr is not None:
        rows = arr.reshape(-1, arr.shape[-1])
        if len(np.unique(rows, axis=0)) != len(rows):
            return "repeated constant indices without a reduction"
    return None


@tflite_lowering("ScatterND", check=_check_scatter_nd)
def lower_scatter_nd(ctx: LoweringContext, node: ir.Node) -> None:
    """ScatterND -> SCATTER_ND into zeros, then ADD (reduction add) or SELECT_V2 over a
    SCATTER_ND of ones (no reduction, unique indices)."""
    data = ctx.inp(node, 0)
    idx = _indices(ctx, node, list(ctx.t(data).shape))
    _scatter_into(ctx, data, idx, ctx.inp(node, 2), str(attr(node, "reduction", "none")),
                  ctx.out(node))


def _scatter_into(ctx: LoweringContext, data: int, idx: int, updates: int, reduction: str,
                  dst: int) -> None:
    """``data`` with ``updates`` written (or, reduction add, added) at int32 ``idx``."""
    shape = list(ctx.t(data).shape)
    dims = ctx.i32(shape, "shape")
    scattered = ctx.like(data, "scattered")
    ctx.emit("SCATTER_ND", [idx, updates, dims], [scattered], s.ScatterNdOptionsT())
    if reduction == "add":
        ctx.emit("ADD", [data, scattered], [dst], s.AddOptionsT())
        return
    ones = ctx.const(np.ones(ctx.t(updates).shape, dtype=np.float32), "ones")
    hits = ctx.tmp("hits", np.float32, shape)
    ctx.emit("SCATTER_ND", [idx, ones, dims], [hits], s.ScatterNdOptionsT())
    written = ctx.tmp("written", np.bool_, shape)
    ctx.emit("GREATER", [hits, ctx.const(np.zeros((), np.float32), "zero")], [written])
    ctx.emit("SELECT_V2", [written, scattered, data], [dst])


def _check_scatter_elements(node: ir.Node) -> str | None:
    reduction = attr(node, "reduction", "none")
    return None if reduction in ("none", "add") else f"reduction={reduction}"


@tflite_lowering("ScatterElements", "Scatter", check=_check_scatter_elements)
def lower_scatter_elements(ctx: LoweringContext, node: ir.Node) -> None:
    """ScatterElements / Scatter -> the ScatterND lowering on full coordinates: each update
    position's own coordinates (constants) with the axis one replaced by its (wrapped)
    index, CONCATENATEd into [N, rank] int32 rows."""
    data, idx_in, updates = ctx.inp(node, 0), ctx.inp(node, 1), ctx.inp(node, 2)
    shape, ushape = list(ctx.t(data).shape), list(ctx.t(updates).shape)
    rank, n = len(shape), int(np.prod(ushape))
    axis = int(attr(node, "axis", 0)) % rank  # type: ignore[call-overload]
    grid = np.indices(ushape).reshape(rank, n).T.astype(np.int32)
    arr = ctx.array(node.inputs[1])
    if arr is not None:
        col = ctx.i32(np.where(arr < 0, arr + shape[axis], arr).reshape(n, 1), "index")
    else:
        flat = ctx.reshape(idx_in, [n, 1], "index_flat")
        dtype = ctx.t(flat).dtype
        neg, wrapped, fixed = (ctx.tmp("negative", np.bool_, [n, 1]), ctx.like(flat, "wrapped"),
                               ctx.like(flat, "index"))
        ctx.emit("LESS", [flat, ctx.const(np.asarray(0, dtype), "zero")], [neg])
        ctx.emit("ADD", [flat, ctx.const(np.asarray(shape[axis], dtype), "dim")], [wrapped],
                 s.AddOptionsT())
        ctx.emit("SELECT_V2", [neg, wrapped, flat], [fixed])
        col = fixed if np.dtype(dtype) == np.int32 else cast(ctx, fixed, np.dtype(np.int32))
    parts = [p for p in (ctx.i32(grid[:, :axis], "before") if axis else -1, col,
                         ctx.i32(grid[:, axis + 1:], "after") if axis < rank - 1 else -1)
             if p >= 0]
    coords = ctx.tmp("coordinates", np.int32, [n, rank])
    opts = s.ConcatenationOptionsT()
    opts.axis = 1
    ctx.emit("CONCATENATION", parts, [coords], opts)
    _scatter_into(ctx, data, coords, ctx.reshape(updates, [n], "updates_flat"),
                  str(attr(node, "reduction", "none")), ctx.out(node))


def _check_reverse_sequence(node: ir.Node) -> str | None:
    from modelconv.exporters.tflite.kernels import dtype_reason

    return dtype_reason("GATHER", node.inputs[0])


@tflite_lowering("ReverseSequence", check=_check_reverse_sequence)
def lower_reverse_sequence(ctx: LoweringContext, node: ir.Node) -> None:
    """ReverseSequence -> GATHER_ND on the (time, batch) coordinates: time position ``t`` of
    batch item ``b`` reads ``len[b] - 1 - t`` when ``t < len[b]``, else ``t`` (LESS / SUB /
    SELECT_V2 on the int32 lengths, constant or run-time)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    shape = list(ctx.t(x).shape)
    t_ax = int(attr(node, "time_axis", 0))  # type: ignore[call-overload]
    b_ax = int(attr(node, "batch_axis", 1))  # type: ignore[call-overload]
    n_t, n_b = shape[t_ax], shape[b_ax]
    grid = [shape[0], shape[1]]
    lens_v = node.inputs[1]
    assert lens_v is not None
    lens = ctx.inp(node, 1)
    if ctx.t(lens).dtype != np.int32:
        lens = cast(ctx, lens, np.dtype(np.int32))
    bshape = [1, 1]
    bshape[b_ax] = n_b
    lens = ctx.reshape(lens, bshape, "lengths")
    tpos = np.arange(n_t, dtype=np.int32).reshape([n_t, 1] if t_ax == 0 else [1, n_t])
    times = ctx.i32(np.broadcast_to(tpos, grid), "times")
    inside, back, flipped, src = (ctx.tmp("inside", np.bool_, grid), *(
        ctx.tmp(w, np.int32, grid) for w in ("last", "flipped", "source_time")))
    ctx.emit("LESS", [times, lens], [inside])
    ctx.emit("SUB", [lens, ctx.i32(1, "one")], [back], s.SubOptionsT())
    ctx.emit("SUB", [back, times], [flipped], s.SubOptionsT())
    ctx.emit("SELECT_V2", [inside, flipped, times], [src])
    bpos = np.arange(n_b, dtype=np.int32).reshape([n_b, 1] if b_ax == 0 else [1, n_b])
    batch = ctx.i32(np.broadcast_to(bpos, grid).reshape([*grid, 1]), "batch_index")
    cols = [ctx.reshape(src, [*grid, 1], "time_index"), batch]
    coords = ctx.tmp("coordinates", np.int32, [*grid, 2])
    opts = s.ConcatenationOptionsT()
    opts.axis = 2
    ctx.emit("CONCATENATION", cols if t_ax == 0 else cols[::-1], [coords], opts)
    ctx.emit("GATHER_ND", [x, coords], [dst], s.GatherNdOptionsT())
