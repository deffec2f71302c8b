"""Pooling the 2-D kernels cannot express (dilations, 3-D windows) and LpPool, as one
STRIDED_SLICE per kernel tap combined by MAXIMUM / ADD.

The input is padded once (PADV2: the lowest value for max, zeros for average / Lp) so that
every output position's window lies inside it, including the extra positions ceil_mode
adds; tap ``k`` of every window is then the strided slice starting at ``k * dilation``.
Average pooling divides by the per-position count of taps inside the input (or inside the
attribute-padded input, count_include_pad=1), a constant; LpPool is
``(sum |x|^p)^(1/p)``. Works in either layout (channels-last spatial axes 1..r-2 after the
layout pass, else 2..r-1) and for 1-, 2- and 3-D windows.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, compute_dtype, value_dtype
from modelconv.exporters.tflite.registry import attr, output_used, tflite_lowering
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN

#: more taps than this would make a file of mostly slices: refused
MAX_TAPS = 512


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    return [int(v) for v in attr(node, name, None) or default]  # type: ignore[attr-defined]


def pool_geometry(node: ir.Node, in_sizes: list[int]) -> tuple[list[int], list[int], list[int],
                                                               list[int], list[int]]:
    """(kernel, strides, dilations, begin pads, end pads) per spatial dim (auto_pad applied)."""
    k = len(in_sizes)
    kernel = _ints(node, "kernel_shape", [1] * k)
    strides, dil = _ints(node, "strides", [1] * k), _ints(node, "dilations", [1] * k)
    pads = _ints(node, "pads", [0] * 2 * k)
    auto = str(attr(node, "auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * 2 * k
        for i in range(k):
            eff = (kernel[i] - 1) * dil[i] + 1
            total = max((math.ceil(in_sizes[i] / strides[i]) - 1) * strides[i] + eff
                        - in_sizes[i], 0)
            small = total // 2
            pads[i], pads[k + i] = (small, total - small) if auto == "SAME_UPPER" else (
                total - small, small)
    elif auto == "VALID":
        pads = [0] * 2 * k
    return kernel, strides, dil, pads[:k], pads[k:]


def taps_reason(node: ir.Node) -> str | None:
    """Why the tap lowering cannot take ``node`` (None: it can)."""
    x = node.inputs[0]
    if x is None or x.shape is None or len(x.shape) < 3:
        return "input of unknown rank"
    kernel = _ints(node, "kernel_shape", [])
    if int(np.prod(kernel or [1])) > MAX_TAPS:
        return f"kernel {kernel} (more than {MAX_TAPS} taps)"
    if attr(node, "storage_order", 0) and len(kernel) != 2:
        return "storage_order=1 with a 1-D / 3-D window"
    return None


def _spatial(node: ir.Node, rank: int) -> list[int]:
    return list(range(1, rank - 1)) if node.domain == NHWC_DOMAIN else list(range(2, rank))


def _count(in_sizes: list[int], out: list[int], kernel: list[int], strides: list[int],
           dil: list[int], begin: list[int], end: list[int], include_pad: bool) -> np.ndarray:
    """Taps of every output window inside the input (or the attribute-padded input)."""
    counts = []
    for i, n in enumerate(in_sizes):
        lo, hi = (-begin[i], n + end[i]) if include_pad else (0, n)
        starts = np.arange(out[i]) * strides[i] - begin[i]
        taps = starts[:, None] + np.arange(kernel[i])[None, :] * dil[i]
        counts.append(((taps >= lo) & (taps < hi)).sum(axis=1))
    grid = counts[0]
    for c in counts[1:]:
        grid = np.multiply.outer(grid, c)
    return np.asarray(grid, np.float64)


def lower_pool_taps(ctx: LoweringContext, node: ir.Node) -> None:
    """MaxPool / AveragePool / LpPool by taps (see the module docstring)."""
    x_in, final = ctx.inp(node, 0), ctx.out(node)
    dtype = ctx.t(x_in).dtype
    op = node.op_type
    code = "MAX_POOL_2D" if op == "MaxPool" else "AVERAGE_POOL_2D"
    work = np.dtype(np.float32) if op != "MaxPool" else (compute_dtype(code, dtype) or dtype)
    x = cast(ctx, x_in, work) if work != dtype else x_in
    shape = list(ctx.t(x).shape)
    axes = _spatial(node, len(shape))
    in_sizes = [shape[a] for a in axes]
    out_full = list(ctx.t(final).shape)
    out = [out_full[a] for a in axes]
    kernel, strides, dil, begin, end = pool_geometry(node, in_sizes)
    p = float(attr(node, "p", 2))  # type: ignore[arg-type]
    if op == "LpPool":
        x = _power(ctx, x, p)
    need = [(out[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 for i in range(len(axes))]
    after = [max(need[i] - in_sizes[i] - begin[i], 0) for i in range(len(axes))]
    if any(begin) or any(after):
        pads = [[0, 0] for _ in shape]
        for i, a in enumerate(axes):
            pads[a] = [begin[i], after[i]]
        lowest = np.finfo(work).min if work.kind == "f" else np.iinfo(work).min  # type: ignore[type-var]
        value = ctx.const(np.asarray([lowest if op == "MaxPool" else 0], work), "pad_value")
        grown = [d + sum(pads[a]) for a, d in enumerate(shape)]
        padded = ctx.like(x, "padded", grown)
        ctx.emit("PADV2", [x, ctx.i32(pads, "paddings"), value], [padded])
        x = padded
    window_shape = list(shape)
    for i, a in enumerate(axes):
        window_shape[a] = out[i]
    total, index = -1, -1
    with_index = op == "MaxPool" and output_used(node, 1)
    if with_index and node.domain == NHWC_DOMAIN:
        raise ExportError("MaxPool with an indices output must stay channels-first")
    for offs in itertools.product(*[range(k) for k in kernel]):
        b = [0] * len(shape)
        e = list(ctx.t(x).shape)
        st = [1] * len(shape)
        for i, a in enumerate(axes):
            b[a] = offs[i] * dil[i]
            e[a] = b[a] + (out[i] - 1) * strides[i] + 1
            st[a] = strides[i]
        tap = ctx.like(x, "tap", window_shape)
        ctx.emit("STRIDED_SLICE", [x, ctx.i32(b, "begin"), ctx.i32(e, "end"),
                                   ctx.i32(st, "strides")], [tap], s.StridedSliceOptionsT())
        where = _source_index(shape, axes, offs, dil, strides, begin, out,
                              bool(attr(node, "storage_order", 0))) if with_index else None
        if total < 0:
            total = tap
            if where is not None:
                index = ctx.const(where, "index")
            continue
        acc = ctx.like(tap, "window")
        if where is not None:  # the first maximum wins: a later tap only if strictly greater
            better = ctx.tmp("better", np.bool_, window_shape)
            ctx.emit("GREATER", [tap, total], [better])
            chosen = ctx.tmp("argmax", np.int64, window_shape)
            ctx.emit("SELECT_V2", [better, ctx.const(where, "index"), index], [chosen])
            index = chosen
        if op == "MaxPool":
            ctx.emit("MAXIMUM", [total, tap], [acc])
        else:
            ctx.emit("ADD", [total, tap], [acc], s.AddOptionsT())
        total = acc
    if op == "AveragePool":
        count = _count(in_sizes, out, kernel, strides, dil, begin, end,
                       bool(attr(node, "count_include_pad", 0)))
        bshape = [1] * len(shape)
        for i, a in enumerate(axes):
            bshape[a] = out[i]
        scaled = ctx.like(total, "average")
        ctx.emit("MUL", [total, ctx.const((1 / np.maximum(count, 1)).reshape(bshape)
                                          .astype(np.float32), "inverse_count")], [scaled],
                 s.MulOptionsT())
        total = scaled
    elif op == "LpPool":
        total = _power(ctx, total, 1 / p)
    if work != dtype:
        cast(ctx, total, dtype, final)
    else:
        ctx.reshape(total, out_full, dst=final)
    if with_index:
        ctx.reshape(index, out_full, dst=ctx.out(node, 1))


def _source_index(shape: list[int], axes: list[int], offs: tuple[int, ...], dil: list[int],
                  strides: list[int], begin: list[int], out: list[int],
                  column_major: bool) -> np.ndarray:
    """The flat input index each output position's tap ``offs`` reads: row-major over
    N, C and the spatial dims, or (storage_order=1) column-major over the spatial dims
    within each (n, c) plane. Padding positions are clipped: a padded tap is never the
    maximum (it holds the lowest value)."""
    coords = np.meshgrid(*[np.arange(d) for d in shape[:axes[0]]],
                         *[np.clip(np.arange(out[i]) * strides[i] + offs[i] * dil[i] - begin[i],
                                   0, shape[a] - 1) for i, a in enumerate(axes)],
                         indexing="ij")
    lead, spatial = shape[:axes[0]], [shape[a] for a in axes]
    plane = np.ravel_multi_index(coords[:len(lead)], lead)
    within = np.ravel_multi_index(coords[len(lead):], spatial, order="F" if column_major else "C")
    return (plane * int(np.prod(spatial)) + within).astype(np.int64)


def _power(ctx: LoweringContext, x: int, p: float) -> int:
    """|x| ** p (x * x for p = 2, SQRT for p = 1/2)."""
    if p == 2:
        y = ctx.like(x, "squared")
        ctx.emit("MUL", [x, x], [y], s.MulOptionsT())
        return y
    if p == 0.5:
        y = ctx.like(x, "root")
        ctx.emit("SQRT", [x], [y])
        return y
    a = ctx.like(x, "abs")
    ctx.emit("ABS", [x], [a])
    if p == 1:
        return a
    y = ctx.like(x, "power")
    ctx.emit("POW", [a, ctx.const(np.asarray(p, np.float32), "p")], [y])
    return y


def check_lppool(node: ir.Node) -> str | None:
    """LpPool computes in float32 (POW / SQRT)."""
    name = value_dtype(node.inputs[0])
    if name not in (None, "float32"):
        return f"{name} inputs (float32 only)"
    return taps_reason(node)


@tflite_lowering("LpPool", check=check_lppool)
def lower_lppool(ctx: LoweringContext, node: ir.Node) -> None:
    """LpPool -> (sum over taps of |x|^p)^(1/p)."""
    lower_pool_taps(ctx, node)
