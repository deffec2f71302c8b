"""Reductions, arg-reductions, cumulative ops and top-k/sort."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx_ir as ir

from ._base import AtenBuilder, aten_op


def _axes(b: AtenBuilder, x: ir.Value, dim: Sequence[int] | int | None) -> list[int]:
    rank = b.rank(x)
    if dim is None or (not isinstance(dim, int) and len(dim) == 0):
        return list(range(rank))
    dims = [dim] if isinstance(dim, int) else list(dim)
    return [b.axis(d, rank) for d in dims]


def _reduce(b: AtenBuilder, op: str, x: ir.Value, dim: Any, keepdim: bool) -> ir.Value:
    if b.rank(x) == 0:
        return b.Identity(b.cast(x, b.out_dtype()))
    axes = b.const(_axes(b, x, dim))
    return b.op(op, [b.cast(x, b.out_dtype()), axes], keepdims=int(keepdim))


@aten_op("aten.sum.dim_IntList")
def sum_dim(b: AtenBuilder, x: ir.Value, dim: Sequence[int] | None, keepdim: bool = False,
            *, dtype: object = None) -> ir.Value:
    """ReduceSum over ``dim`` (all dims when empty)."""
    return _reduce(b, "ReduceSum", x, dim, keepdim)


@aten_op("aten.sum.default")
def sum_all(b: AtenBuilder, x: ir.Value, *, dtype: object = None) -> ir.Value:
    """ReduceSum over every dim."""
    return _reduce(b, "ReduceSum", x, None, False)


@aten_op("aten.mean.dim")
def mean_dim(b: AtenBuilder, x: ir.Value, dim: Sequence[int] | None, keepdim: bool = False,
             *, dtype: object = None) -> ir.Value:
    """ReduceMean over ``dim``."""
    return _reduce(b, "ReduceMean", x, dim, keepdim)


@aten_op("aten.mean.default")
def mean_all(b: AtenBuilder, x: ir.Value, *, dtype: object = None) -> ir.Value:
    """ReduceMean over every dim."""
    return _reduce(b, "ReduceMean", x, None, False)


@aten_op("aten.amax.default")
def amax(b: AtenBuilder, x: ir.Value, dim: Sequence[int] = (), keepdim: bool = False) -> ir.Value:
    """ReduceMax."""
    return _reduce(b, "ReduceMax", x, dim, keepdim)


@aten_op("aten.amin.default")
def amin(b: AtenBuilder, x: ir.Value, dim: Sequence[int] = (), keepdim: bool = False) -> ir.Value:
    """ReduceMin."""
    return _reduce(b, "ReduceMin", x, dim, keepdim)


@aten_op("aten.max.default")
def max_all(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """ReduceMax over every dim."""
    return _reduce(b, "ReduceMax", x, None, False)


@aten_op("aten.min.default")
def min_all(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """ReduceMin over every dim."""
    return _reduce(b, "ReduceMin", x, None, False)


@aten_op("aten.prod.dim_int")
def prod_dim(b: AtenBuilder, x: ir.Value, dim: int, keepdim: bool = False,
             *, dtype: object = None) -> ir.Value:
    """ReduceProd."""
    return _reduce(b, "ReduceProd", x, dim, keepdim)


@aten_op("aten.max.dim")
def max_dim(b: AtenBuilder, x: ir.Value, dim: int,
            keepdim: bool = False) -> tuple[ir.Value, ir.Value]:
    """(ReduceMax, ArgMax) along ``dim``."""
    axis = b.axis(dim, b.rank(x))
    values = b.ReduceMax(x, b.const([axis]), keepdims=int(keepdim))
    return values, b.ArgMax(x, axis=axis, keepdims=int(keepdim), select_last_index=0)


@aten_op("aten.min.dim")
def min_dim(b: AtenBuilder, x: ir.Value, dim: int,
            keepdim: bool = False) -> tuple[ir.Value, ir.Value]:
    """(ReduceMin, ArgMin) along ``dim``."""
    axis = b.axis(dim, b.rank(x))
    values = b.ReduceMin(x, b.const([axis]), keepdims=int(keepdim))
    return values, b.ArgMin(x, axis=axis, keepdims=int(keepdim), select_last_index=0)


def _arg(b: AtenBuilder, op: str, x: ir.Value, dim: int | None, keepdim: bool) -> ir.Value:
    if dim is None:
        return b.op(op, [b.Reshape(x, b.const([-1]))], axis=0, keepdims=0)
    return b.op(op, [x], axis=b.axis(dim, b.rank(x)), keepdims=int(keepdim))


@aten_op("aten.argmax.default")
def argmax(b: AtenBuilder, x: ir.Value, dim: int | None = None, keepdim: bool = False) -> ir.Value:
    """ArgMax (first occurrence, as torch on CPU)."""
    return _arg(b, "ArgMax", x, dim, keepdim)


@aten_op("aten.argmin.default")
def argmin(b: AtenBuilder, x: ir.Value, dim: int | None = None, keepdim: bool = False) -> ir.Value:
    """ArgMin."""
    return _arg(b, "ArgMin", x, dim, keepdim)


def _var(b: AtenBuilder, x: ir.Value, dim: Any, correction: float, keepdim: bool) -> ir.Value:
    axes = _axes(b, x, dim)
    dims = b.dims(x)
    mean = b.ReduceMean(x, b.const(axes), keepdims=1)
    diff = b.Sub(x, mean)
    var = b.ReduceMean(b.Mul(diff, diff), b.const(axes), keepdims=int(keepdim))
    n = 1
    for a in axes:
        n *= dims[a] or 0
    if correction and n:
        var = b.Mul(var, b.scalar(n / max(n - correction, 0), x.dtype))
    return var


@aten_op("aten.var.correction")
def var(b: AtenBuilder, x: ir.Value, dim: Sequence[int] | None = None, *,
        correction: float | None = None, keepdim: bool = False) -> ir.Value:
    """Variance with Bessel-style ``correction`` (default 1)."""
    return _var(b, x, dim, 1 if correction is None else correction, keepdim)


@aten_op("aten.std.correction")
def std(b: AtenBuilder, x: ir.Value, dim: Sequence[int] | None = None, *,
        correction: float | None = None, keepdim: bool = False) -> ir.Value:
    """Square root of the variance."""
    return b.Sqrt(_var(b, x, dim, 1 if correction is None else correction, keepdim))


@aten_op("aten.linalg_vector_norm.default")
def vector_norm(b: AtenBuilder, x: ir.Value, ord: float = 2, dim: Sequence[int] | None = None,
                keepdim: bool = False, *, dtype: object = None) -> ir.Value:
    """ReduceL2 / ReduceL1 / max-abs for ord 2 / 1 / inf."""
    axes = b.const(_axes(b, x, dim))
    if ord == 2:
        return b.ReduceL2(x, axes, keepdims=int(keepdim))
    if ord == 1:
        return b.ReduceL1(x, axes, keepdims=int(keepdim))
    if ord == float("inf"):
        return b.ReduceMax(b.Abs(x), axes, keepdims=int(keepdim))
    p = b.scalar(ord, x.dtype)
    total = b.ReduceSum(b.Pow(b.Abs(x), p), axes, keepdims=int(keepdim))
    return b.Pow(total, b.Reciprocal(p))


@aten_op("aten.any.dim", "aten.any.dims", "aten.any.default")
def any_(b: AtenBuilder, x: ir.Value, dim: Any = None, keepdim: bool = False) -> ir.Value:
    """ReduceMax over bools (as int)."""
    y = _reduce_bool(b, "ReduceMax", x, dim, keepdim)
    return b.Cast(y, to=ir.DataType.BOOL)


@aten_op("aten.all.dim", "aten.all.dims", "aten.all.default")
def all_(b: AtenBuilder, x: ir.Value, dim: Any = None, keepdim: bool = False) -> ir.Value:
    """ReduceMin over bools (as int)."""
    return b.Cast(_reduce_bool(b, "ReduceMin", x, dim, keepdim), to=ir.DataType.BOOL)


def _reduce_bool(b: AtenBuilder, op: str, x: ir.Value, dim: Any, keepdim: bool) -> ir.Value:
    as_int = b.Cast(b.cast(x, ir.DataType.BOOL), to=ir.DataType.INT32)
    return b.op(op, [as_int, b.const(_axes(b, x, dim))], keepdims=int(keepdim))


@aten_op("aten.cumsum.default")
def cumsum(b: AtenBuilder, x: ir.Value, dim: int, *, dtype: object = None) -> ir.Value:
    """CumSum along ``dim`` in the output dtype."""
    axis = b.scalar(b.axis(dim, b.rank(x)), ir.DataType.INT64)
    return b.CumSum(b.cast(x, b.out_dtype()), axis)


@aten_op("aten.topk.default")
def topk(b: AtenBuilder, x: ir.Value, k: int, dim: int = -1, largest: bool = True,
         sorted: bool = True) -> tuple[ir.Value, ir.Value]:
    """TopK."""
    return b.op("TopK", [x, b.ints([k])], axis=dim, largest=int(largest), sorted=1,
                num_outputs=2)


@aten_op("aten.sort.default")
def sort(b: AtenBuilder, x: ir.Value, dim: int = -1,
         descending: bool = False) -> tuple[ir.Value, ir.Value]:
    """TopK with k = the axis size."""
    k = b.size_of(x, dim)
    return b.op("TopK", [x, k], axis=dim, largest=int(descending), sorted=1, num_outputs=2)
