"""Element selection: GatherElements (GATHER_ND of full coordinates), TopK (TOPK_V2),
CastLike (CAST), LRN (LOCAL_RESPONSE_NORMALIZATION)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.ops_elementwise import lower_cast
from modelconv.exporters.tflite.registry import attr, output_used, tflite_lowering
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN

# gather_nd.cc and topk_v2.cc element types (no quantization involved: values are copied).
_GATHER_ND_DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "bool")
_TOPK_DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64")


def _name(ctx: LoweringContext) -> str:
    return (ctx.node.name or "?") if ctx.node is not None else "?"


def wrap_negative(ctx: LoweringContext, idx: int, dim: int) -> int:
    """Run-time indices with ``dim`` added where negative (LESS / ADD / SELECT_V2)."""
    dtype = ctx.t(idx).dtype
    neg = ctx.tmp("negative", np.bool_, ctx.t(idx).shape)
    wrapped, fixed = ctx.like(idx, "wrapped"), ctx.like(idx, "indices")
    ctx.emit("LESS", [idx, ctx.const(np.asarray(0, dtype), "zero")], [neg])
    ctx.emit("ADD", [idx, ctx.const(np.asarray([dim], dtype), "dim")], [wrapped],
             s.AddOptionsT())
    ctx.emit("SELECT_V2", [neg, wrapped, idx], [fixed])
    return fixed


def check_gather_elements(node: ir.Node) -> str | None:
    """GatherElements: a data type GATHER_ND copies."""
    name = value_dtype(node.inputs[0])
    if name is not None and name not in _GATHER_ND_DTYPES:
        return f"{name} inputs: no LiteRT GATHER_ND kernel"
    return None


@tflite_lowering("GatherElements", check=check_gather_elements)
def lower_gather_elements(ctx: LoweringContext, node: ir.Node) -> None:
    """GatherElements -> GATHER_ND with coordinates (i0, .., idx, .., ik) per output element:
    constant grids for the other axes, the (wrapped) indices on ``axis``, CONCATENATION."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    axis = int(attr(node, "axis", 0)) % rank  # type: ignore[call-overload]
    dim = ctx.t(x).shape[axis]
    arr = ctx.array(node.inputs[1])
    if arr is not None:
        shape = list(arr.shape)
        idx = ctx.const(np.where(arr < 0, arr + dim, arr).astype(np.int32), "indices")
    else:
        idx = ctx.inp(node, 1)
        shape = list(ctx.t(idx).shape)
        idx = wrap_negative(ctx, idx, dim)
        if ctx.t(idx).dtype != np.int32:
            idx = cast(ctx, idx, np.dtype(np.int32))
    grids = np.meshgrid(*[np.arange(d) for d in shape], indexing="ij")
    parts = []
    for a in range(rank):
        if a == axis:
            parts.append(ctx.reshape(idx, [*shape, 1], "axis_coord"))
        else:
            parts.append(ctx.const(grids[a].astype(np.int32)[..., None], f"coord{a}"))
    coords = ctx.tmp("coords", np.int32, [*shape, rank])
    opts = s.ConcatenationOptionsT()
    opts.axis = rank
    ctx.emit("CONCATENATION", parts, [coords], opts)
    ctx.emit("GATHER_ND", [x, coords], [ctx.out(node)])


@tflite_lowering("CastLike")
def lower_cast_like(ctx: LoweringContext, node: ir.Node) -> None:
    """CastLike -> CAST to the dtype of the second input (its values are not read)."""
    lower_cast(ctx, node)


def check_topk(node: ir.Node) -> str | None:
    """TOPK_V2 returns the k largest along the last axis, sorted, lower index first on ties:
    sorted=1; largest=0 only on float32 (NEG, exact); a dtype the kernel takes. A run-time
    K is fed to the kernel (the output shapes must still be static)."""
    if not attr(node, "sorted", 1):
        return "sorted=0"
    name = value_dtype(node.inputs[0])
    if not attr(node, "largest", 1) and name not in (None, "float32"):
        return f"largest=0 on {name} inputs"
    if name is not None and name not in _TOPK_DTYPES:
        return f"{name} inputs: no LiteRT TOPK_V2 kernel"
    return None


@tflite_lowering("TopK", check=check_topk)
def lower_topk(ctx: LoweringContext, node: ir.Node) -> None:
    """TopK -> (TRANSPOSE axis last) TOPK_V2 (constant or run-time K; NEG around it for
    largest=0), indices CAST to int64, TRANSPOSE back."""
    x = ctx.inp(node, 0)
    shape = list(ctx.t(x).shape)
    rank = len(shape)
    axis = int(attr(node, "axis", -1)) % rank  # type: ignore[call-overload]
    k_arr = ctx.array(node.inputs[1])
    k = ctx.t(ctx.out(node, 0)).shape[axis] if k_arr is None else int(k_arr.reshape(-1)[0])
    if not 0 <= k <= shape[axis]:
        raise ExportError(f"TopK {_name(ctx)}: K={k} for an axis of {shape[axis]}")
    if k_arr is None:
        k_t = ctx.reshape(ctx.inp(node, 1), [1], "k")
        k_t = k_t if ctx.t(k_t).dtype == np.int32 else cast(ctx, k_t, np.dtype(np.int32))
    else:
        k_t = ctx.i32([k], "k")
    perm = [a for a in range(rank) if a != axis] + [axis]
    src = x if axis == rank - 1 else ctx.transpose(x, perm, "topk_in")
    largest = bool(attr(node, "largest", 1))
    if not largest:
        neg = ctx.like(src, "negated")
        ctx.emit("NEG", [src], [neg])
        src = neg
    out_shape = [*ctx.t(src).shape[:-1], k]
    values = ctx.like(src, "topk_values", out_shape)
    indices = ctx.tmp("topk_indices", np.int32, out_shape)
    ctx.emit("TOPK_V2", [src, k_t], [values, indices], s.TopKV2OptionsT())
    if not largest:
        pos = ctx.like(values, "topk_values_pos")
        ctx.emit("NEG", [values], [pos])
        values = pos
    wide = ctx.tmp("topk_indices_i64", np.int64, out_shape)
    cast(ctx, indices, np.dtype(np.int64), wide)
    inverse = [perm.index(a) for a in range(rank)]
    for i, t in ((0, values), (1, wide)):
        if not output_used(node, i):
            continue
        dst = ctx.out(node, i)
        if axis == rank - 1:
            ctx.reshape(t, ctx.t(dst).shape, dst=dst)
        else:
            ctx.transpose(t, inverse, dst=dst)


def check_lrn(node: ir.Node) -> str | None:
    """LOCAL_RESPONSE_NORMALIZATION sums a symmetric channel window: odd size, rank 4,
    float32."""
    size = int(attr(node, "size", 1))  # type: ignore[call-overload]
    if size % 2 == 0:
        return f"size={size} (even: asymmetric window)"
    v = node.inputs[0]
    if v is not None and v.shape is not None and len(v.shape) != 4:
        return f"rank-{len(v.shape)} input"
    name = value_dtype(v)
    return None if name in (None, "float32") else f"{name} inputs (float32 only)"


@tflite_lowering("LRN", check=check_lrn)
def lower_lrn(ctx: LoweringContext, node: ir.Node) -> None:
    """LRN (channels last) -> LOCAL_RESPONSE_NORMALIZATION with radius (size - 1) / 2 and
    alpha / size (ONNX scales the square sum by alpha / size)."""
    size = int(attr(node, "size", 1))  # type: ignore[call-overload]
    x, dst = ctx.inp(node, 0), ctx.out(node)
    nchw = node.domain != NHWC_DOMAIN
    if nchw:
        x = ctx.transpose(x, [0, 2, 3, 1], "lrn_nhwc")
    opts = s.LocalResponseNormalizationOptionsT()
    opts.radius = (size - 1) // 2
    opts.bias = float(attr(node, "bias", 1.0))  # type: ignore[arg-type]
    opts.alpha = float(attr(node, "alpha", 1e-4)) / size  # type: ignore[arg-type]
    opts.beta = float(attr(node, "beta", 0.75))  # type: ignore[arg-type]
    y = ctx.like(x, "lrn") if nchw else dst
    ctx.emit("LOCAL_RESPONSE_NORMALIZATION", [x], [y], opts)
    if nchw:
        ctx.transpose(y, [0, 3, 1, 2], dst=dst)
