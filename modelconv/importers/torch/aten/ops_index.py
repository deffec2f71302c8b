"""Advanced indexing and scatters: ``index.Tensor``, ``index_put``, ``slice_scatter``,
``select_scatter``, ``copy``, ``scatter*``.

Advanced indexing follows numpy: the index tensors broadcast to one shape ``B``; the result
has ``B`` where the indexed dims were when they are adjacent, else ``B`` first. Both cases are
lowered by moving the indexed dims to the front (Transpose), then GatherND / ScatterND with
the stacked indices, then moving ``B`` back. In-place slice assignment (``mask[:, a:b] = k``)
reaches the lowering as ``slice_scatter`` / ``copy`` after functionalisation; with static
shapes it becomes Concat of slices (step 1) or a Gather with constant indices, which constant
folding removes when the inputs are constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
import torch

from ._base import AtenBuilder, aten_op

_INT64_MAX = 2**63 - 1
_MASK_DTYPES = (torch.bool, torch.uint8)


# -- shared helpers -------------------------------------------------------------------------
def _positions(indices: Sequence[Any]) -> list[int]:
    return [i for i, v in enumerate(indices) if v is not None]


def _adjacent(positions: list[int]) -> bool:
    return positions == list(range(positions[0], positions[0] + len(positions)))


def _wrapped(b: AtenBuilder, v: ir.Value, x: ir.Value, axis: int) -> ir.Value:
    """Index ``v`` into ``x``'s ``axis`` as int64 with negative entries wrapped."""
    size = b.dims(x)[axis]
    arr = b.const_array(v)
    if arr is not None and size is not None:
        return b.const(np.where(arr < 0, arr + size, arr).astype(np.int64))
    v = b.cast(v, ir.DataType.INT64)
    dim = b.scalar(size, ir.DataType.INT64) if size is not None else b.size_of(x, axis)
    return b.Where(b.Less(v, b.scalar(0, ir.DataType.INT64)), b.Add(v, dim), v)


def _stacked(b: AtenBuilder, x: ir.Value, indices: Sequence[ir.Value | None],
             positions: list[int]) -> tuple[ir.Value, ir.Value, int]:
    """(indices broadcast and stacked on a last axis, the broadcast shape B, rank of B)."""
    idx = [_wrapped(b, indices[p], x, p) for p in positions]  # type: ignore[arg-type]
    shapes = [b.dims(indices[p]) for p in positions]  # type: ignore[arg-type]
    nb = max(len(s) for s in shapes)
    if all(None not in s for s in shapes):
        common = b.const(np.array(np.broadcast_shapes(*[tuple(s) for s in shapes]),  # type: ignore[arg-type]
                                  dtype=np.int64))
    else:
        total = idx[0]
        for v in idx[1:]:
            total = b.Add(total, v)
        common = b.Shape(total)
    last = b.const([-1])
    parts = [b.Unsqueeze(b.Expand(v, common), last) for v in idx]
    stacked = parts[0] if len(parts) == 1 else b.Concat(*parts, axis=-1)
    return stacked, common, nb


def _front_perm(rank: int, positions: list[int]) -> list[int]:
    return positions + [d for d in range(rank) if d not in positions]


def _b_back(nb: int, p: int, total: int) -> list[int]:
    """Perm taking a [B(nb), pre(p), post] layout to [pre, B, post]."""
    return [*range(nb, nb + p), *range(nb), *range(nb + p, total)]


def _b_front(nb: int, p: int, total: int) -> list[int]:
    """Perm taking a [pre(p), B(nb), post] layout to [B, pre, post]."""
    return [*range(p, p + nb), *range(p), *range(p + nb, total)]


def _transposed(b: AtenBuilder, x: ir.Value, perm: list[int]) -> ir.Value:
    return x if perm == sorted(perm) else b.Transpose(x, perm=perm)


def _inverse(perm: list[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


# -- index.Tensor ---------------------------------------------------------------------------
def _check_index(args: dict[str, Any]) -> str | None:
    if any(v is not None and v.dtype in _MASK_DTYPES for v in args["indices"]):
        return ("a bool mask index (the output size depends on the mask's data; use "
                "torch.where or masked_fill to keep static shapes)")
    return None


@aten_op("aten.index.Tensor", "aten._unsafe_index.Tensor", check=_check_index)
def index(b: AtenBuilder, x: ir.Value, indices: Sequence[ir.Value | None]) -> ir.Value:
    """Advanced indexing with integer index tensors at any positions (numpy semantics):
    one tensor is a Gather; several are a GatherND on ``x`` with the indexed dims moved to
    the front, the broadcast dims moved back where numpy puts them. The check refuses bool
    masks (data-dependent output size)."""
    positions = _positions(indices)
    if len(positions) == 1:
        return b.Gather(x, indices[positions[0]], axis=positions[0])
    rank = b.rank(x)
    data = _transposed(b, x, _front_perm(rank, positions))
    stacked, _, nb = _stacked(b, x, indices, positions)
    y = b.GatherND(data, stacked)
    p = positions[0]
    if _adjacent(positions) and p > 0:
        y = b.Transpose(y, perm=_b_back(nb, p, nb + rank - len(positions)))
    return y


# -- index_put ------------------------------------------------------------------------------
def _mask_values_fit(x: Any, mask_pos: int, mask: Any, values: Any) -> bool:
    # values broadcast over the selected elements without a selected-count dim of their own
    trailing = x.dim() - mask_pos - mask.dim()
    extra = list(values.shape)[: max(values.dim() - trailing, 0)]
    return all(d == 1 for d in extra)


def _check_index_put(args: dict[str, Any]) -> str | None:
    indices, values, x = args["indices"], args["values"], args["x"]
    masks = [i for i, v in enumerate(indices) if v is not None and v.dtype in _MASK_DTYPES]
    if not masks:
        return None
    if len(_positions(indices)) > 1:
        return "a bool mask index combined with other index tensors"
    if not _mask_values_fit(x, masks[0], indices[masks[0]], values):
        return ("a bool mask index with a values tensor per selected element (its size "
                "depends on the mask's data; use torch.where)")
    return None


@aten_op("aten.index_put.default", "aten._unsafe_index_put.default", check=_check_index_put)
def index_put(b: AtenBuilder, x: ir.Value, indices: Sequence[ir.Value | None], values: ir.Value,
              accumulate: bool = False) -> ir.Value:
    """``x[indices] = values`` (``+=`` when ``accumulate``): a bool mask is a Where, integer
    indices a ScatterND (reduction add when accumulating) on ``x`` with the indexed dims in
    front, ``values`` broadcast to the indexing result first."""
    positions = _positions(indices)
    values = b.cast(values, x.dtype)
    rank = b.rank(x)
    first = indices[positions[0]]
    assert first is not None
    if first.dtype in (ir.DataType.BOOL, ir.DataType.UINT8):
        mask = b.cast(first, ir.DataType.BOOL)
        trailing = rank - positions[0] - b.rank(mask)
        if trailing:
            mask = b.Unsqueeze(mask, b.const(list(range(b.rank(mask), b.rank(mask) + trailing))))
        vrank = b.rank(values)
        if vrank > trailing:  # leading size-1 dims (checked) would misalign the broadcast
            values = b.Reshape(values, b.Shape(values, start=vrank - trailing)) if trailing \
                else b.Reshape(values, b.const(np.zeros((0,), dtype=np.int64)))
        new = b.Add(x, values) if accumulate else values
        return b.Where(mask, new, x)
    perm = _front_perm(rank, positions)
    data = _transposed(b, x, perm)
    stacked, common, nb = _stacked(b, x, indices, positions)
    k = len(positions)
    p = positions[0]
    adjacent_inner = _adjacent(positions) and p > 0
    parts = []
    if adjacent_inner:
        parts.append(b.Shape(x, start=0, end=p))
    parts.append(common)
    if k < rank:
        parts.append(b.Shape(data, start=k) if not adjacent_inner else b.Shape(x, start=p + k))
    target = parts[0] if len(parts) == 1 else b.Concat(*parts, axis=0)
    updates = b.Expand(values, target)
    if adjacent_inner:
        updates = b.Transpose(updates, perm=_b_front(nb, p, nb + rank - k))
    y = b.op("ScatterND", [data, stacked, updates],
             {"reduction": "add"} if accumulate else {})
    return _transposed(b, y, _inverse(perm))


# -- slice_scatter / select_scatter / copy ----------------------------------------------------
def _static_bounds(n: int, start: Any, end: Any) -> tuple[int, int]:
    s = 0 if start is None else int(start)
    e = n if end is None else int(end)
    s = min(max(s + n if s < 0 else s, 0), n)
    e = min(max(e + n if e < 0 else e, 0), n)
    return s, max(s, e)


def _check_slice_scatter(args: dict[str, Any]) -> str | None:
    x, dim, step = args["x"], args["dim"], args["step"]
    if step == 1:
        return None
    size = x.shape[dim]
    if not isinstance(size, int) or not all(
            v is None or isinstance(v, int) for v in (args["start"], args["end"])):
        return "a strided slice_scatter on a dynamic dim"
    return None


@aten_op("aten.slice_scatter.default", check=_check_slice_scatter)
def slice_scatter(b: AtenBuilder, x: ir.Value, src: ir.Value, dim: int = 0, start: Any = None,
                  end: Any = None, step: int = 1) -> ir.Value:
    """``x`` with ``x[start:end:step]`` along ``dim`` replaced by ``src``: Concat of the
    slices around it (step 1), else a Gather from ``concat(x, src)`` with constant indices."""
    axis = b.axis(dim, b.rank(x))
    src = b.cast(src, x.dtype)
    n = b.dims(x)[axis]
    ax = b.const([axis])
    static = n is not None and all(v is None or isinstance(v, int) for v in (start, end))
    if static and n is not None:
        s, e = _static_bounds(n, start, end)
        if step != 1:
            picks = np.arange(n, dtype=np.int64)
            chosen = np.arange(s, e, step)
            picks[chosen] = n + np.arange(len(chosen))
            return b.Gather(b.Concat(x, src, axis=axis), b.const(picks), axis=axis)
        if s == e:
            return b.Identity(x)
        pieces = []
        if s > 0:
            pieces.append(b.Slice(x, b.const([0]), b.const([s]), ax))
        pieces.append(src)
        if e < n:
            pieces.append(b.Slice(x, b.const([e]), b.const([n]), ax))
        return pieces[0] if len(pieces) == 1 else b.Concat(*pieces, axis=axis)
    lo = b.ints([0 if start is None else start])
    hi = b.ints([_INT64_MAX if end is None else end])
    head = b.Slice(x, b.const([0]), lo, ax)
    tail = b.Slice(x, hi, b.const([_INT64_MAX]), ax)
    return b.Concat(head, src, tail, axis=axis)


@aten_op("aten.select_scatter.default")
def select_scatter(b: AtenBuilder, x: ir.Value, src: ir.Value, dim: int,
                   index: Any) -> ir.Value:
    """``x`` with ``x.select(dim, index)`` replaced by ``src`` (a one-wide slice_scatter)."""
    axis = b.axis(dim, b.rank(x))
    n = b.dims(x)[axis]
    if isinstance(index, int) and n is not None:
        index = index % n
    wide = b.Unsqueeze(src, b.const([axis]))
    if isinstance(index, int):
        end = None if index == -1 else index + 1
        return slice_scatter(b, x, wide, axis, index, end, 1)
    return slice_scatter(b, x, wide, axis, index, b.Add(index, b.scalar(1, ir.DataType.INT64)))


@aten_op("aten.copy.default")
def copy(b: AtenBuilder, x: ir.Value, src: ir.Value, non_blocking: bool = False) -> ir.Value:
    """``src`` broadcast to ``x``'s shape in ``x``'s dtype (``x.copy_(src)``)."""
    value = b.cast(src, x.dtype)
    if b.dims(value) == b.dims(x) and None not in b.dims(x):
        return b.Identity(value)
    return b.Expand(value, b.Shape(x))


@aten_op("aten.fill.Tensor")
def fill_tensor(b: AtenBuilder, x: ir.Value, value: ir.Value) -> ir.Value:
    """A tensor like ``x`` filled with the 0-d ``value``."""
    return b.Expand(b.cast(value, x.dtype), b.Shape(x))


# -- scatter / scatter_add / scatter_reduce ---------------------------------------------------
_REDUCTIONS = {"sum": "add", "add": "add", "prod": "mul", "multiply": "mul", "amax": "max",
               "amin": "min"}


def _scatter(b: AtenBuilder, x: ir.Value, dim: int, index: ir.Value, src: ir.Value,
             reduction: str | None) -> ir.Value:
    axis = b.axis(dim, b.rank(x))
    attrs: dict[str, Any] = {"axis": axis}
    if reduction:
        attrs["reduction"] = reduction
    idx = _wrapped(b, index, x, axis)
    wanted = b.dims(index)
    have = b.dims(src) if src.shape is not None else wanted
    if have != wanted:  # torch reads only the index-shaped corner of a larger src
        n = len(wanted)
        src = b.Slice(src, b.const([0] * n), b.const(wanted), b.const(list(range(n))))
    return b.op("ScatterElements", [x, idx, b.cast(src, x.dtype)], attrs)


def _src_for(b: AtenBuilder, index: ir.Value, value: Any, dtype: ir.DataType | None) -> ir.Value:
    return b.Expand(b.operand(value, dtype), b.Shape(index))


def _check_scatter_shapes(args: dict[str, Any]) -> str | None:
    src = args.get("src")
    index = args["index"]
    if isinstance(src, torch.Tensor) and list(src.shape) != list(index.shape) and not all(
            isinstance(d, int) for d in [*src.shape, *index.shape]):
        return "a src larger than index with dynamic shapes"
    reduce = args.get("reduce")
    if reduce is not None and reduce not in _REDUCTIONS:
        return f"reduce='{reduce}'"
    if args.get("include_self") is False:
        return "include_self=False"
    return None


@aten_op("aten.scatter.src", "aten.scatter.reduce", check=_check_scatter_shapes)
def scatter_src(b: AtenBuilder, x: ir.Value, dim: int, index: ir.Value, src: ir.Value,
                reduce: str | None = None) -> ir.Value:
    """ScatterElements (``reduce`` add/multiply as its reduction)."""
    return _scatter(b, x, dim, index, src, _REDUCTIONS[reduce] if reduce else None)


@aten_op("aten.scatter.value", "aten.scatter.value_reduce", check=_check_scatter_shapes)
def scatter_value(b: AtenBuilder, x: ir.Value, dim: int, index: ir.Value, value: Any,
                  reduce: str | None = None) -> ir.Value:
    """ScatterElements of a scalar broadcast to ``index``'s shape."""
    src = _src_for(b, index, value, x.dtype)
    return _scatter(b, x, dim, index, src, _REDUCTIONS[reduce] if reduce else None)


@aten_op("aten.scatter_add.default", check=_check_scatter_shapes)
def scatter_add(b: AtenBuilder, x: ir.Value, dim: int, index: ir.Value,
                src: ir.Value) -> ir.Value:
    """ScatterElements(reduction=add)."""
    return _scatter(b, x, dim, index, src, "add")


@aten_op("aten.scatter_reduce.two", check=_check_scatter_shapes)
def scatter_reduce(b: AtenBuilder, x: ir.Value, dim: int, index: ir.Value, src: ir.Value,
                   reduce: str, include_self: bool = True) -> ir.Value:
    """ScatterElements with the sum/prod/amax/amin reduction (the check refuses mean and
    include_self=False)."""
    return _scatter(b, x, dim, index, src, _REDUCTIONS[reduce])
