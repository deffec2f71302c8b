"""Core-ATen ops found missing by :mod:`modelconv.importers.torch.coverage`: inverse
hyperbolics, atan2, log10, trunc, prod, diagonal, cdist/pdist, grid_sampler_2d,
masked_scatter and aliases of existing handlers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx_ir as ir

from ._base import AtenBuilder, aten_op
from .ops_conv import _check_adaptive_pool, adaptive_avg_pool, max_pool2d_with_indices
from .ops_misc import zeros
from .ops_reduce import var


def _unary(onnx_op: str) -> Any:
    def handler(b: AtenBuilder, x: ir.Value) -> ir.Value:
        return b.op(onnx_op, [b.cast(x, b.out_dtype())])

    handler.__doc__ = f"{onnx_op}."
    return handler


for _key, _onnx in {"aten.acosh.default": "Acosh", "aten.asinh.default": "Asinh",
                    "aten.atanh.default": "Atanh"}.items():
    aten_op(_key)(_unary(_onnx))

aten_op("aten._adaptive_avg_pool3d.default", check=_check_adaptive_pool)(adaptive_avg_pool)
aten_op("aten.max_pool3d_with_indices.default")(max_pool2d_with_indices)
aten_op("aten.empty_strided.default")(zeros)


@aten_op("aten.log10.default")
def log10(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """log(x) / ln(10)."""
    y = b.Log(b.cast(x, b.out_dtype()))
    return b.Mul(y, b.scalar(1.0 / math.log(10.0), b.out_dtype()))


@aten_op("aten.trunc.default")
def trunc(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Round toward zero: Ceil below zero, Floor above (integers unchanged)."""
    if x.dtype not in (ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16,
                       ir.DataType.BFLOAT16):
        return b.Identity(x)
    return b.Where(b.Less(x, b.scalar(0, x.dtype)), b.Ceil(x), b.Floor(x))


@aten_op("aten.atan2.default")
def atan2(b: AtenBuilder, y: ir.Value, x: ir.Value) -> ir.Value:
    """atan(y / x) moved to the quadrant of (x, y); 0 at the origin, as torch."""
    dtype = b.out_dtype()
    y, x = b.cast(y, dtype), b.cast(x, dtype)
    zero = b.scalar(0, dtype)
    base = b.Atan(b.Div(y, x))
    pi = b.scalar(math.pi, dtype)
    shifted = b.Where(b.Less(y, zero), b.Sub(base, pi), b.Add(base, pi))
    out = b.Where(b.Less(x, zero), shifted, base)
    origin = b.And(b.Equal(x, zero), b.Equal(y, zero))
    return b.Where(origin, zero, out)


@aten_op("aten.prod.default")
def prod(b: AtenBuilder, x: ir.Value, *, dtype: object = None) -> ir.Value:
    """ReduceProd over every element."""
    return b.ReduceProd(b.cast(x, b.out_dtype()), keepdims=0)


@aten_op("aten.sym_numel.default")
def sym_numel(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Size (a 0-d int64)."""
    return b.Size(x)


def _check_diagonal(args: dict[str, Any]) -> str | None:
    x = args["x"]
    rank = x.dim()
    d1, d2 = args["dim1"] % rank, args["dim2"] % rank
    if not all(isinstance(x.shape[d], int) for d in (d1, d2)):
        return "diagonal of dynamic dims"
    return None


@aten_op("aten.diagonal.default", check=_check_diagonal)
def diagonal(b: AtenBuilder, x: ir.Value, offset: int = 0, dim1: int = 0,
             dim2: int = 1) -> ir.Value:
    """The diagonal moved to the last dim: Transpose, flatten the two dims, Gather the
    constant positions."""
    rank = b.rank(x)
    d1, d2 = b.axis(dim1, rank), b.axis(dim2, rank)
    rows, cols = b.dims(x)[d1], b.dims(x)[d2]
    assert rows is not None and cols is not None
    others = [d for d in range(rank) if d not in (d1, d2)]
    t = b.Transpose(x, perm=[*others, d1, d2])
    start_r, start_c = max(-offset, 0), max(offset, 0)
    n = max(min(rows - start_r, cols - start_c), 0)
    picks = np.array([(start_r + i) * cols + start_c + i for i in range(n)], dtype=np.int64)
    lead = b.Shape(t, start=0, end=len(others)) if others else None
    flat_shape = b.Concat(lead, b.const([rows * cols]), axis=0) if lead is not None \
        else b.const([rows * cols])
    return b.Gather(b.Reshape(t, flat_shape), b.const(picks), axis=-1)


def _pnorm(b: AtenBuilder, diff: ir.Value, p: float, axis: int) -> ir.Value:
    ax = b.const([axis])
    if p == 2.0:
        return b.Sqrt(b.ReduceSum(b.Mul(diff, diff), ax, keepdims=0))
    a = b.Abs(diff)
    if p == 1.0:
        return b.ReduceSum(a, ax, keepdims=0)
    if math.isinf(p):
        return b.ReduceMax(a, ax, keepdims=0)
    if p == 0.0:
        nonzero = b.Cast(b.Not(b.Equal(a, b.scalar(0, diff.dtype))), to=diff.dtype)
        return b.ReduceSum(nonzero, ax, keepdims=0)
    total = b.ReduceSum(b.Pow(a, b.scalar(p, diff.dtype)), ax, keepdims=0)
    return b.Pow(total, b.scalar(1.0 / p, diff.dtype))


@aten_op("aten._cdist_forward.default")
def cdist(b: AtenBuilder, x1: ir.Value, x2: ir.Value, p: float,
          compute_mode: int | None = None) -> ir.Value:
    """p-norm distances between the rows of x1 (..., P, M) and x2 (..., R, M), computed
    directly from the differences (exact; torch's matmul route is a speed choice)."""
    diff = b.Sub(b.Unsqueeze(x1, b.const([-2])), b.Unsqueeze(x2, b.const([-3])))
    return _pnorm(b, diff, float(p), -1)


def _check_pdist(args: dict[str, Any]) -> str | None:
    return None if isinstance(args["x"].shape[0], int) else "pdist over a dynamic row count"


@aten_op("aten._pdist_forward.default", check=_check_pdist)
def pdist(b: AtenBuilder, x: ir.Value, p: float = 2.0) -> ir.Value:
    """Distances of the row pairs i < j of x (N, M), in torch's order."""
    n = b.dims(x)[0]
    assert n is not None
    full = b.Reshape(cdist(b, x, x, p), b.const([-1]))
    picks = np.array([i * n + j for i in range(n) for j in range(i + 1, n)], dtype=np.int64)
    return b.Gather(full, b.const(picks), axis=0)


_GRID_MODES = {0: "linear", 1: "nearest", 2: "cubic"}
_GRID_PADDING = {0: "zeros", 1: "border", 2: "reflection"}


@aten_op("aten.grid_sampler_2d.default")
def grid_sampler_2d(b: AtenBuilder, x: ir.Value, grid: ir.Value, interpolation_mode: int,
                    padding_mode: int, align_corners: bool) -> ir.Value:
    """GridSample (``F.grid_sample`` on 4-D input)."""
    return b.GridSample(x, b.cast(grid, x.dtype), mode=_GRID_MODES[interpolation_mode],
                        padding_mode=_GRID_PADDING[padding_mode],
                        align_corners=int(align_corners))


@aten_op("aten.masked_scatter.default")
def masked_scatter(b: AtenBuilder, x: ir.Value, mask: ir.Value, source: ir.Value) -> ir.Value:
    """``x`` with the True positions of ``mask`` filled by ``source``'s leading elements in
    row-major order: the k-th True takes element CumSum(mask)-1 of the flattened source."""
    flat = b.const([-1])
    m = b.Reshape(b.Expand(b.cast(mask, ir.DataType.BOOL), b.Shape(x)), flat)
    order = b.Sub(b.CumSum(b.Cast(m, to=ir.DataType.INT64), b.scalar(0, ir.DataType.INT64)),
                  b.scalar(1, ir.DataType.INT64))
    order = b.Max(order, b.scalar(0, ir.DataType.INT64))
    picked = b.Gather(b.Reshape(b.cast(source, x.dtype), flat), order, axis=0)
    return b.Reshape(b.Where(m, picked, b.Reshape(x, flat)), b.Shape(x))


@aten_op("aten.var.dim")
def var_dim(b: AtenBuilder, x: ir.Value, dim: Any = None, unbiased: bool = True,
            keepdim: bool = False) -> ir.Value:
    """Variance with the legacy ``unbiased`` flag (correction 1 or 0)."""
    return var(b, x, dim, correction=1 if unbiased else 0, keepdim=keepdim)
