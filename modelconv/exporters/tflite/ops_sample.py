"""GridSample and RoiAlign with static shapes, composed from float arithmetic and GATHER.

Follows the ONNX reference (onnx/reference/ops/op_grid_sample.py) step by step, for any
number of spatial dims: each grid coordinate is denormalised (``align_corners``), rounded
half to even for ``nearest`` (ROUND), moved inside the border when it lies outside
(``border``: clamped, ``reflection``: reflected); then, per spatial dim, the taps (1 for
nearest, 2 for linear, 4 for cubic with Keys' a = -0.75) get an integer index (``zeros``: out
of range taps get weight 0; ``border``: clamped; ``reflection``: reflected) and a weight.
Every combination of taps is one GATHER from X laid out as [N * prod(spatial), C], weighted
and summed; the result [N, *out, C] is transposed to [N, C, *out].
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.ops_elementwise import binary
from modelconv.exporters.tflite.registry import attr, tflite_lowering

_MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic",
          "bicubic": "cubic"}
_PADDING = ("zeros", "border", "reflection")
_CUBIC_A = -0.75


def check_grid_sample(node: ir.Node) -> str | None:
    """GridSample: float32 data, a known mode / padding_mode, grid rank matching X."""
    mode = attr(node, "mode", "linear")  # opset 16's "bilinear" / "bicubic" are aliases
    if mode not in _MODES:
        return f"mode={mode!r}"
    padding = attr(node, "padding_mode", "zeros")
    if padding not in _PADDING:
        return f"padding_mode={padding!r}"
    if int(attr(node, "align_corners", 0)) not in (0, 1):  # type: ignore[call-overload]
        return "align_corners other than 0/1"
    for value in node.inputs[:2]:
        name = value_dtype(value)
        if name is not None and name != "float32":
            return f"{name} inputs (float32 only)"
    x, grid = node.inputs[0], node.inputs[1]
    if (x is not None and grid is not None and x.shape is not None and grid.shape is not None
            and (len(x.shape) != len(grid.shape) or len(x.shape) < 3)):
        return "grid rank other than X's rank"
    return None


class _F:
    """Float32 element-wise helpers on tensors of one shape (scalars are constants)."""

    def __init__(self, ctx: LoweringContext, shape: list[int]):
        self.ctx, self.shape = ctx, shape

    def c(self, value: float) -> int:
        return self.ctx.const(np.asarray(value, np.float32), "c")

    def op(self, code: str, a: int, b: int, dtype: type = np.float32) -> int:
        out = self.ctx.tmp(code.lower(), dtype, self.shape)
        if code in ("ADD", "SUB", "MUL", "DIV"):
            binary(self.ctx, code, a, b, out)
        else:
            self.ctx.emit(code, [a, b], [out])
        return out

    def un(self, code: str, a: int) -> int:
        out = self.ctx.tmp(code.lower(), np.float32, self.shape)
        self.ctx.emit(code, [a], [out])
        return out

    def select(self, cond: int, a: int, b: int) -> int:
        out = self.ctx.tmp("select", self.ctx.t(a).dtype, self.shape)
        self.ctx.emit("SELECT_V2", [cond, a, b], [out])
        return out

    def clamp(self, a: int, lo: float, hi: float) -> int:
        return self.op("MINIMUM", self.op("MAXIMUM", a, self.c(lo)), self.c(hi))

    def reflect(self, p: int, lo: float, hi: float) -> int:
        """The reference's _gs_reflect: ``p`` folded into [lo, hi] (applied only outside)."""
        if hi <= lo:
            return self.clamp(p, lo, hi)
        below = self.op("LESS", p, self.c(lo), np.bool_)
        above = self.op("GREATER", p, self.c(hi), np.bool_)
        dx = self.select(below, self.op("SUB", self.c(lo), p), self.op("SUB", p, self.c(hi)))
        n = self.un("FLOOR", self.op("DIV", dx, self.c(hi - lo)))
        r = self.op("SUB", dx, self.op("MUL", n, self.c(hi - lo)))
        even = self.op("EQUAL", self.op("FLOOR_MOD", n, self.c(2.0)), self.c(0.0), np.bool_)
        near_lo = self.op("EQUAL", below, even, np.bool_)
        folded = self.select(near_lo, self.op("ADD", self.c(lo), r),
                             self.op("SUB", self.c(hi), r))
        return self.select(self.op("LOGICAL_OR", below, above, np.bool_), folded, p)


def _cubic_weights(f: _F, t: int) -> list[int]:
    """Keys' cubic coefficients for taps -1, 0, 1, 2 at fraction ``t`` (as the reference)."""
    a = _CUBIC_A

    def outer(d: int) -> int:  # ((a*d - 5a)*d + 8a)*d - 4a, d in [1, 2]
        v = f.op("ADD", f.op("MUL", f.op("SUB", f.op("MUL", d, f.c(a)), f.c(5 * a)), d),
                 f.c(8 * a))
        return f.op("SUB", f.op("MUL", v, d), f.c(4 * a))

    def inner(d: int) -> int:  # ((a+2)*d - (a+3))*d*d + 1, d in [0, 1]
        v = f.op("SUB", f.op("MUL", d, f.c(a + 2)), f.c(a + 3))
        return f.op("ADD", f.op("MUL", f.op("MUL", v, d), d), f.c(1.0))

    one_minus = f.op("SUB", f.c(1.0), t)
    return [outer(f.op("ADD", t, f.c(1.0))), inner(t), inner(one_minus),
            outer(f.op("SUB", f.c(2.0), t))]


def _taps(f: _F, p: int, size: int, mode: str, padding: str,
          bounds: tuple[float, float]) -> list[tuple[int, int | None]]:
    """(int32 index, float weight or None for 1) per tap of one spatial dim."""
    floats: list[int]
    weights: list[int | None]
    if mode == "nearest":
        floats, weights = [p], [None]
    else:
        x0 = f.un("FLOOR", p)
        t = f.op("SUB", p, x0)
        if mode == "linear":
            offsets, weights = [0.0, 1.0], [f.op("SUB", f.c(1.0), t), t]
        else:
            offsets, weights = [-1.0, 0.0, 1.0, 2.0], list(_cubic_weights(f, t))
        floats = [f.op("ADD", x0, f.c(o)) if o else x0 for o in offsets]
    out: list[tuple[int, int | None]] = []
    for fi, w in zip(floats, weights, strict=True):
        if padding == "zeros":
            inside = f.op("LOGICAL_AND", f.op("GREATER_EQUAL", fi, f.c(0.0), np.bool_),
                          f.op("LESS_EQUAL", fi, f.c(size - 1.0), np.bool_), np.bool_)
            mask = f.select(inside, f.c(1.0), f.c(0.0))
            w = mask if w is None else f.op("MUL", w, mask)
        elif padding == "reflection":
            fi = f.reflect(fi, *bounds)
        idx = cast(f.ctx, f.clamp(fi, 0.0, size - 1.0), np.dtype(np.int32))
        out.append((idx, w))
    return out


@tflite_lowering("GridSample", check=check_grid_sample)
def lower_grid_sample(ctx: LoweringContext, node: ir.Node) -> None:
    """GridSample -> denormalise / round / pad per coordinate, GATHER per tap combination,
    weighted sum, TRANSPOSE to channels-first."""
    x, grid, dst = ctx.inp(node, 0), ctx.inp(node, 1), ctx.out(node)
    mode = _MODES[str(attr(node, "mode", "linear"))]
    padding = str(attr(node, "padding_mode", "zeros"))
    align = bool(attr(node, "align_corners", 0))
    n, c, *spatial = ctx.t(x).shape
    gshape = ctx.t(grid).shape
    out_sp, k = gshape[1:-1], gshape[-1]
    shape = [n, *out_sp]
    f = _F(ctx, shape)
    per_dim = []
    for i, size in enumerate(spatial):
        opts = s.GatherOptionsT()
        opts.axis = len(gshape) - 1
        g = ctx.tmp(f"coord{i}", np.float32, shape)
        ctx.emit("GATHER", [grid, ctx.i32(k - 1 - i, "coord_index")], [g], opts)
        if align:
            p = f.op("MUL", f.op("ADD", g, f.c(1.0)), f.c((size - 1) / 2.0))
            bounds = (0.0, size - 1.0)
        else:
            p = f.op("DIV", f.op("SUB", f.op("MUL", f.op("ADD", g, f.c(1.0)), f.c(size)),
                                 f.c(1.0)), f.c(2.0))
            bounds = (-0.5, size - 0.5)
        if mode == "nearest":
            p = f.un("ROUND", p)
        if padding != "zeros":
            outside = f.op("LOGICAL_OR", f.op("LESS", p, f.c(bounds[0]), np.bool_),
                           f.op("GREATER", p, f.c(bounds[1]), np.bool_), np.bool_)
            moved = f.clamp(p, 0.0, size - 1.0) if padding == "border" else f.reflect(
                p, *bounds)
            p = f.select(outside, moved, p)
        per_dim.append(_taps(f, p, size, mode, padding, bounds))
    strides = [int(np.prod(spatial[i + 1:])) for i in range(len(spatial))]
    total = int(np.prod(spatial))
    batch = ctx.const((np.arange(n, dtype=np.int32) * total).reshape(
        [n] + [1] * len(out_sp)), "batch_offset")
    table = ctx.reshape(ctx.transpose(x, [0, *range(2, 2 + len(spatial)), 1], "channels_last"),
                        [n * total, c], "table")
    acc = -1
    for combo in itertools.product(*per_dim):
        flat = batch
        weight: int | None = None
        for (idx, w), stride in zip(combo, strides, strict=True):
            term = idx if stride == 1 else f.op("MUL", idx, ctx.i32(stride, "stride"), np.int32)
            flat = f.op("ADD", flat, term, np.int32)
            if w is not None:
                weight = w if weight is None else f.op("MUL", weight, w)
        picked = ctx.tmp("picked", np.float32, [*shape, c])
        ctx.emit("GATHER", [table, flat], [picked], s.GatherOptionsT())
        if weight is not None:
            w3 = ctx.reshape(weight, [*shape, 1], "weight")
            scaled = ctx.tmp("weighted", np.float32, [*shape, c])
            binary(ctx, "MUL", picked, w3, scaled)
            picked = scaled
        if acc < 0:
            acc = picked
        else:
            summed = ctx.tmp("sum", np.float32, [*shape, c])
            binary(ctx, "ADD", acc, picked, summed)
            acc = summed
    ctx.transpose(acc, [0, len(shape), *range(1, len(shape))], dst=dst)


def check_roi_align(node: ir.Node) -> str | None:
    """RoiAlign: float32, a fixed sampling_ratio (> 0: the sample grid is static), avg / max,
    half_pixel / output_half_pixel."""
    if int(attr(node, "sampling_ratio", 0)) <= 0:  # type: ignore[call-overload]
        return "sampling_ratio=0 (adaptive: the sample count depends on run-time rois)"
    if attr(node, "mode", "avg") not in ("avg", "max"):
        return f"mode={attr(node, 'mode')!r}"
    if attr(node, "coordinate_transformation_mode", "half_pixel") not in (
            "half_pixel", "output_half_pixel"):
        return f"coordinate_transformation_mode={attr(node, 'coordinate_transformation_mode')!r}"
    for value in node.inputs[:2]:
        name = value_dtype(value)
        if name is not None and name != "float32":
            return f"{name} inputs (float32 only)"
    return None


def _roi_axis(ctx: LoweringContext, start: int, end: int, size: int, pooled: int, grid: int,
              half_pixel: bool) -> list[tuple[int, int]]:
    """(int32 index [R, pooled * grid], float weight) for the low / high tap of one axis,
    as the reference's pre_calc_for_bilinear_interpolate (weight 0 outside [-1, size])."""
    r = ctx.t(start).shape[0]
    f = _F(ctx, [r, 1])
    extent = f.op("SUB", end, start)
    if not half_pixel:
        extent = f.op("MAXIMUM", extent, f.c(1.0))
    bin_size = f.op("DIV", extent, f.c(float(pooled)))
    frac = ctx.const(np.asarray([[p + (i + 0.5) / grid for p in range(pooled)
                                  for i in range(grid)]], np.float32), "sample_offsets")
    g = _F(ctx, [r, pooled * grid])
    pos = g.op("ADD", start, g.op("MUL", bin_size, frac))
    inside = g.op("LOGICAL_AND", g.op("GREATER_EQUAL", pos, g.c(-1.0), np.bool_),
                  g.op("LESS_EQUAL", pos, g.c(float(size)), np.bool_), np.bool_)
    pos = g.op("MAXIMUM", pos, g.c(0.0))
    low = g.un("FLOOR", pos)
    at_end = g.op("GREATER_EQUAL", low, g.c(size - 1.0), np.bool_)
    low = g.select(at_end, g.c(size - 1.0), low)
    high = g.select(at_end, low, g.op("ADD", low, g.c(1.0)))
    frac_hi = g.select(at_end, g.c(0.0), g.op("SUB", pos, low))
    mask = g.select(inside, g.c(1.0), g.c(0.0))
    w_low = g.op("MUL", g.op("SUB", g.c(1.0), frac_hi), mask)
    w_high = g.op("MUL", frac_hi, mask)
    to_i = np.dtype(np.int32)
    return [(cast(ctx, low, to_i), w_low), (cast(ctx, high, to_i), w_high)]


@tflite_lowering("RoiAlign", check=check_roi_align)
def lower_roi_align(ctx: LoweringContext, node: ir.Node) -> None:
    """RoiAlign -> per-ROI sample coordinates (a static grid of sampling_ratio**2 points per
    bin), bilinear taps GATHERed from X as [N * H * W, C], weighted; avg sums the four taps
    and averages the samples (SUM), max takes MAXIMUM over taps and REDUCE_MAX over samples."""
    x, rois, bidx, dst = ctx.inp(node, 0), ctx.inp(node, 1), ctx.inp(node, 2), ctx.out(node)
    n, c, h, w = ctx.t(x).shape
    r = ctx.t(rois).shape[0]
    oh, ow = int(attr(node, "output_height", 1)), int(attr(node, "output_width", 1))  # type: ignore[call-overload]
    grid = int(attr(node, "sampling_ratio", 0))  # type: ignore[call-overload]
    scale = float(attr(node, "spatial_scale", 1.0))  # type: ignore[arg-type]
    half = attr(node, "coordinate_transformation_mode", "half_pixel") == "half_pixel"
    is_max = attr(node, "mode", "avg") == "max"
    f = _F(ctx, [r, 1])
    cols = []
    for k in range(4):
        opts = s.GatherOptionsT()
        opts.axis = 1
        col = ctx.tmp(f"roi{k}", np.float32, [r, 1])
        ctx.emit("GATHER", [rois, ctx.i32([k], "roi_column")], [col], opts)
        col = f.op("MUL", col, f.c(scale))
        cols.append(f.op("SUB", col, f.c(0.5)) if half else col)
    ys = _roi_axis(ctx, cols[1], cols[3], h, oh, grid, half)
    xs = _roi_axis(ctx, cols[0], cols[2], w, ow, grid, half)
    gy, gx = oh * grid, ow * grid
    b32 = bidx if ctx.t(bidx).dtype == np.int32 else cast(ctx, bidx, np.dtype(np.int32))
    base = ctx.tmp("batch_offset", np.int32, [r, 1, 1])
    binary(ctx, "MUL", ctx.reshape(b32, [r, 1, 1], "batch"),
           ctx.i32(h * w, "image_size"), base)
    table = ctx.reshape(ctx.transpose(x, [0, 2, 3, 1], "channels_last"), [n * h * w, c],
                        "table")
    full = _F(ctx, [r, gy, gx])
    acc = -1
    for (yi, wy), (xi, wx) in itertools.product(ys, xs):
        row = full.op("MUL", ctx.reshape(yi, [r, gy, 1], "rows"), ctx.i32(w, "width"), np.int32)
        flat = full.op("ADD", full.op("ADD", base, row, np.int32),
                       ctx.reshape(xi, [r, 1, gx], "cols"), np.int32)
        weight = full.op("MUL", ctx.reshape(wy, [r, gy, 1], "wy"),
                         ctx.reshape(wx, [r, 1, gx], "wx"))
        picked = ctx.tmp("picked", np.float32, [r, gy, gx, c])
        ctx.emit("GATHER", [table, flat], [picked], s.GatherOptionsT())
        term = ctx.tmp("weighted", np.float32, [r, gy, gx, c])
        binary(ctx, "MUL", picked, ctx.reshape(weight, [r, gy, gx, 1], "weight"), term)
        if acc < 0:
            acc = term
            continue
        nxt = ctx.tmp("taps", np.float32, [r, gy, gx, c])
        if is_max:
            ctx.emit("MAXIMUM", [acc, term], [nxt])
        else:
            binary(ctx, "ADD", acc, term, nxt)
        acc = nxt
    bins = ctx.reshape(acc, [r, oh, grid, ow, grid, c], "bins")
    pooled = ctx.tmp("pooled", np.float32, [r, oh, ow, c])
    ropts = s.ReducerOptionsT()
    ropts.keepDims = False
    ctx.emit("REDUCE_MAX" if is_max else "SUM", [bins, ctx.i32([2, 4], "sample_axes")],
             [pooled], ropts)
    if not is_max:
        averaged = ctx.like(pooled, "averaged")
        binary(ctx, "MUL", pooled, ctx.const(np.asarray(1.0 / (grid * grid), np.float32),
                                             "inv_count"), averaged)
        pooled = averaged
    ctx.transpose(pooled, [0, 3, 1, 2], dst=dst)
