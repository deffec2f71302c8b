"""Views, reshapes, concatenation, splitting, slicing and indexing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx_ir as ir

from ._base import AtenBuilder, aten_op

_INT64_MIN = -(2**63)


@aten_op("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def view(b: AtenBuilder, x: ir.Value, size: Sequence[int | ir.Value]) -> ir.Value:
    """Reshape (-1 infers, as in torch)."""
    return b.Reshape(x, b.ints(size))


def _reshape_around(b: AtenBuilder, x: ir.Value, start: int, end: int,
                    middle: Sequence[int | ir.Value]) -> ir.Value:
    # dims [start, end) of x replaced by ``middle``; static when torch knows the output shape
    out = b.out_shape()
    if None not in out:
        return b.Reshape(x, b.ints([int(d) for d in out if d is not None]))
    parts = [b.Shape(x, start=0, end=start), b.ints(middle), b.Shape(x, start=end)]
    return b.Reshape(x, b.Concat(*parts, axis=0))


@aten_op("aten.flatten.using_ints")
def flatten(b: AtenBuilder, x: ir.Value, start_dim: int = 0, end_dim: int = -1) -> ir.Value:
    """Reshape merging dims start_dim..end_dim."""
    rank = max(b.rank(x), 1)
    return _reshape_around(b, x, b.axis(start_dim, rank), b.axis(end_dim, rank) + 1, [-1])


@aten_op("aten.unflatten.int")
def unflatten(b: AtenBuilder, x: ir.Value, dim: int, sizes: Sequence[int | ir.Value]) -> ir.Value:
    """Reshape splitting ``dim`` into ``sizes``."""
    axis = b.axis(dim, b.rank(x))
    return _reshape_around(b, x, axis, axis + 1, sizes)


@aten_op("aten.permute.default")
def permute(b: AtenBuilder, x: ir.Value, dims: Sequence[int]) -> ir.Value:
    """Transpose with a full permutation."""
    rank = b.rank(x)
    return b.Transpose(x, perm=[b.axis(d, rank) for d in dims])


@aten_op("aten.transpose.int")
def transpose(b: AtenBuilder, x: ir.Value, dim0: int, dim1: int) -> ir.Value:
    """Transpose swapping two axes."""
    rank = b.rank(x)
    perm = list(range(rank))
    a, c = b.axis(dim0, rank), b.axis(dim1, rank)
    perm[a], perm[c] = perm[c], perm[a]
    return b.Transpose(x, perm=perm)


@aten_op("aten.t.default", "aten.numpy_T.default")
def t(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Matrix transpose (identity for rank < 2)."""
    rank = b.rank(x)
    return x if rank < 2 else b.Transpose(x, perm=list(reversed(range(rank))))


@aten_op("aten.unsqueeze.default")
def unsqueeze(b: AtenBuilder, x: ir.Value, dim: int) -> ir.Value:
    """Unsqueeze."""
    return b.Unsqueeze(x, b.const([b.axis(dim, b.rank(x) + 1)]))


def _squeeze_axes(b: AtenBuilder, x: ir.Value, dims: Sequence[int]) -> ir.Value:
    rank, shape = b.rank(x), b.dims(x)
    axes = [a for a in (b.axis(d, rank) for d in dims) if shape[a] == 1]
    return b.Squeeze(x, b.const(axes)) if axes else b.Identity(x)


@aten_op("aten.squeeze.dim")
def squeeze_dim(b: AtenBuilder, x: ir.Value, dim: int) -> ir.Value:
    """Squeeze ``dim`` if it has size 1 (else a no-op, as torch)."""
    return _squeeze_axes(b, x, [dim]) if b.rank(x) else b.Identity(x)


@aten_op("aten.squeeze.dims")
def squeeze_dims(b: AtenBuilder, x: ir.Value, dim: Sequence[int]) -> ir.Value:
    """Squeeze those of ``dim`` that have size 1."""
    return _squeeze_axes(b, x, dim) if b.rank(x) else b.Identity(x)


@aten_op("aten.squeeze.default")
def squeeze(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Squeeze every static size-1 dim."""
    return _squeeze_axes(b, x, range(b.rank(x)))


@aten_op("aten.expand.default")
def expand(b: AtenBuilder, x: ir.Value, size: Sequence[int | ir.Value],
           implicit: bool = False) -> ir.Value:
    """Expand (-1 keeps a dim: broadcasting with 1)."""
    return b.Expand(x, b.ints([1 if isinstance(s, int) and s == -1 else s for s in size]))


@aten_op("aten.cat.default")
def cat(b: AtenBuilder, tensors: Sequence[ir.Value], dim: int = 0) -> ir.Value:
    """Concat in the output dtype (torch skips legacy empty 1-D inputs)."""
    dtype = b.out_dtype()
    keep = [v for v in tensors if not (b.dims(v) == [0] and len(b.out_shape()) != 1)]
    return b.Concat(*[b.cast(v, dtype) for v in keep], axis=dim)


@aten_op("aten.stack.default")
def stack(b: AtenBuilder, tensors: Sequence[ir.Value], dim: int = 0) -> ir.Value:
    """Unsqueeze every input, then Concat."""
    axis = b.axis(dim, b.rank(tensors[0]) + 1)
    return b.Concat(*[b.Unsqueeze(v, b.const([axis])) for v in tensors], axis=axis)


def _split_static(b: AtenBuilder, x: ir.Value, dim: int) -> list[ir.Value]:
    sizes = [b.out_shape(i)[dim] for i in range(len(b.meta))]
    if any(s is None for s in sizes):
        return b.split(x, dim, len(sizes))
    return b.split(x, dim, len(sizes), b.ints([s for s in sizes if s is not None]))


@aten_op("aten.split.Tensor", "aten.split_with_sizes.default")
def split(b: AtenBuilder, x: ir.Value, split_size: Any, dim: int = 0) -> list[ir.Value]:
    """Split into the output sizes torch computed."""
    if len(b.meta) == 1:
        return [b.Identity(x)]
    return _split_static(b, x, b.axis(dim, b.rank(x)))


@aten_op("aten.unbind.int")
def unbind(b: AtenBuilder, x: ir.Value, dim: int = 0) -> list[ir.Value]:
    """Split into size-1 pieces and squeeze them."""
    axis = b.axis(dim, b.rank(x))
    n = len(b.meta)
    parts = [x] if n == 1 else b.split(x, axis, n)
    return [b.Squeeze(p, b.const([axis])) for p in parts]


@aten_op("aten.slice.Tensor")
def slice_(b: AtenBuilder, x: ir.Value, dim: int = 0, start: Any = None, end: Any = None,
           step: int = 1) -> ir.Value:
    """Slice one axis (None bounds mean the whole axis)."""
    start = 0 if start is None else start
    end = 2**63 - 1 if end is None else end
    if start == 0 and end == 2**63 - 1 and step == 1:
        return b.Identity(x)
    axis = b.axis(dim, b.rank(x))
    return b.Slice(x, b.ints([start]), b.ints([end]), b.const([axis]), b.const([step]))


@aten_op("aten.select.int")
def select(b: AtenBuilder, x: ir.Value, dim: int, index: Any) -> ir.Value:
    """Gather with a scalar index (removes the axis)."""
    idx = index if isinstance(index, ir.Value) else b.scalar(index, ir.DataType.INT64)
    return b.Gather(x, idx, axis=b.axis(dim, b.rank(x)))


@aten_op("aten.index_select.default")
def index_select(b: AtenBuilder, x: ir.Value, dim: int, index: ir.Value) -> ir.Value:
    """Gather along ``dim``."""
    return b.Gather(x, index, axis=b.axis(dim, b.rank(x)))


@aten_op("aten.gather.default")
def gather(b: AtenBuilder, x: ir.Value, dim: int, index: ir.Value,
           sparse_grad: bool = False) -> ir.Value:
    """GatherElements."""
    return b.GatherElements(x, index, axis=b.axis(dim, b.rank(x)))


@aten_op("aten.embedding.default")
def embedding(b: AtenBuilder, weight: ir.Value, indices: ir.Value, padding_idx: int = -1,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> ir.Value:
    """Gather rows of the table."""
    return b.Gather(weight, indices, axis=0)


@aten_op("aten.flip.default")
def flip(b: AtenBuilder, x: ir.Value, dims: Sequence[int]) -> ir.Value:
    """Slice with step -1 on every flipped axis."""
    axes = [b.axis(d, b.rank(x)) for d in dims]
    n = len(axes)
    return b.Slice(x, b.const([-1] * n), b.const([_INT64_MIN] * n), b.const(axes),
                   b.const([-1] * n))


@aten_op("aten.repeat.default")
def repeat(b: AtenBuilder, x: ir.Value, repeats: Sequence[int | ir.Value]) -> ir.Value:
    """Tile (leading dims added first when repeats is longer than the rank)."""
    extra = len(repeats) - b.rank(x)
    if extra > 0:
        x = b.Unsqueeze(x, b.const(list(range(extra))))
    return b.Tile(x, b.ints(repeats))


@aten_op("aten.roll.default")
def roll(b: AtenBuilder, x: ir.Value, shifts: Sequence[int], dims: Sequence[int] = ()) -> ir.Value:
    """Slice + Concat per rolled axis."""
    if not dims:
        flat = b.Reshape(x, b.const([-1]))
        return b.Reshape(roll(b, _shaped(flat, b.out_shape()), shifts, [0]), b.Shape(x))
    y = x
    for shift, dim in zip(shifts, dims, strict=True):
        axis = b.axis(dim, b.rank(x))
        n = b.dims(x)[axis]
        k = b.const([-(shift % n if n else shift)])
        ax = b.const([axis])
        tail = b.Slice(y, k, b.const([2**63 - 1]), ax)
        head = b.Slice(y, b.const([0]), k, ax)
        y = b.Concat(tail, head, axis=axis)
    return y


def _shaped(v: ir.Value, out_shape: list[int | None]) -> ir.Value:
    size: int | None = 1
    for d in out_shape:
        size = size * d if d is not None and size is not None else None
    v.shape = ir.Shape([size])
    return v


@aten_op("aten.tril.default")
def tril(b: AtenBuilder, x: ir.Value, diagonal: int = 0) -> ir.Value:
    """Trilu(upper=0)."""
    return b.Trilu(x, b.scalar(diagonal, ir.DataType.INT64), upper=0)


@aten_op("aten.triu.default")
def triu(b: AtenBuilder, x: ir.Value, diagonal: int = 0) -> ir.Value:
    """Trilu(upper=1)."""
    return b.Trilu(x, b.scalar(diagonal, ir.DataType.INT64), upper=1)
