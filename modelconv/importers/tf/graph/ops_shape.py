"""Shape, indexing and data-movement ops. Constants fold in numpy; computed tensors are
moved to TensorFlow's axis order first unless the op can remap its axes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.importers.tf.files.saved_model import NodeDef
from modelconv.importers.tf.graph.core import (
    FIRST,
    LAST,
    TT,
    ConvertError,
    Ctx,
    axis_in,
    kept_layout,
    known_values,
    np_dtype_of,
    tf_op,
    with_known,
)
from modelconv.ir.layout import perm_to_first, perm_to_last

INT_MAX = np.iinfo(np.int64).max
INT_MIN = np.iinfo(np.int64).min
#: largest tensor a constant-folded Fill/Tile/Range may create
MAX_FOLD_ELEMENTS = 1 << 24
SLICE_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


def _i64(cx: Ctx, t: TT) -> ir.Value:
    """An integer tensor as int64 (ONNX shape inputs)."""
    if t.const is not None:
        return cx.const(t.const.astype(np.int64)).value
    if t.dtype == np.int64:
        return cx.last(t)
    return cx.b.Cast(cx.last(t), to=ir.DataType.INT64)


def _ints(values: list[int]) -> np.ndarray:
    return np.asarray(values, np.int64)


def _small(shape: Any) -> None:
    if int(np.prod([max(int(d), 0) for d in shape], dtype=object)) > MAX_FOLD_ELEMENTS:
        raise ConvertError(f"would create a tensor of shape {list(shape)[:8]}")


@tf_op("Reshape", attrs=("T", "Tshape"))
def tf_reshape(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Reshape to a constant or computed shape (partly known shapes become constants
    with -1 for the one unknown dim)."""
    x, shape = ins
    if shape.const is not None and x.const is not None:
        return cx.const(x.const.reshape([int(v) for v in shape.const.reshape(-1)]))
    values = known_values(shape)
    if shape.const is None and values is not None and \
            values.count(None) + values.count(-1) <= 1:
        shape = cx.const(np.asarray([-1 if v is None else v for v in values], np.int64))
    rank = int(shape.const.size) if shape.const is not None else (shape.length or -1)
    zero = shape.const is not None and bool((shape.const == 0).any())
    out = cx.b.Reshape(cx.last(x), _i64(cx, shape), allowzero=1 if zero else None)
    return cx.out(out, rank, x.dtype)


@tf_op("Squeeze", attrs=("T", "squeeze_dims"))
def tf_squeeze(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Squeeze of the squeeze_dims axes (negative ones too), or of every size-1 dim."""
    x = ins[0]
    axes = [int(a) for a in node.attr("squeeze_dims", [])]
    if x.const is not None:
        return cx.const(np.squeeze(x.const, axis=tuple(axes) if axes else None))
    if not axes and x.shape is not None and None not in x.shape:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    if not axes:
        return cx.out(cx.b.Squeeze(cx.last(x)), -1, x.dtype)
    if x.rank < 0:
        return cx.out(cx.b.Squeeze(cx.last(x), cx.const(_ints(axes)).value), -1, x.dtype)
    logical = {a + x.rank if a < 0 else a for a in axes}
    layout = kept_layout(x.rank, x.layout, logical)
    if layout is None:
        x, layout = x.like(cx.last(x), layout=LAST), LAST
    ir_axes = sorted(axis_in(a, x.rank, x.layout) for a in logical)
    out = cx.b.Squeeze(x.value, cx.const(_ints(ir_axes)).value)
    return cx.out(out, x.rank - len(logical), x.dtype, layout)


@tf_op("ExpandDims", attrs=("T", "Tdim"))
def tf_expand_dims(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """ExpandDims at a constant axis (negative counts from the end of the result)."""
    x, axis_t = ins
    axis = cx.int_values(axis_t, "axis")[0]
    if x.const is not None:
        return cx.const(np.expand_dims(x.const, axis))
    if x.rank < 0:
        raise ConvertError("input of unknown rank")
    axis = axis + x.rank + 1 if axis < 0 else axis
    out = cx.b.Unsqueeze(cx.last(x), cx.const(_ints([axis])).value)
    return cx.out(out, x.rank + 1, x.dtype, length=1 if x.rank == 0 else None)


@tf_op("Transpose", attrs=("T", "Tperm"))
def tf_transpose(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Transpose by a constant permutation (composed with the held layout)."""
    x, perm_t = ins
    perm = cx.int_values(perm_t, "permutation")
    if x.const is not None:
        return cx.const(np.transpose(x.const, perm))
    if sorted(perm) != list(range(len(perm))) or (x.rank >= 0 and len(perm) != x.rank):
        raise ConvertError(f"permutation {perm}")
    if perm == sorted(perm):  # tensordot's identity transposes: nothing moves
        return x
    held = perm_to_first(x.rank) if x.layout == FIRST else list(range(x.rank))
    inverse = {a: j for j, a in enumerate(held)}
    q = [inverse[p] for p in perm]
    if q == list(range(len(q))):
        return cx.out(x.value, x.rank, x.dtype)
    return cx.out(cx.b.Transpose(x.value, perm=q), len(perm), x.dtype)


@tf_op("ConcatV2", "Concat", attrs=("N", "T", "Tidx"))
def tf_concat(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """ConcatV2 (axis last), Concat (axis first): ONNX Concat on a constant axis,
    negative too, in the operands' layout."""
    if node.op == "Concat":
        axis_t, parts = ins[0], ins[1:]
    else:
        parts, axis_t = ins[:-1], ins[-1]
    axis = cx.int_values(axis_t, "axis")[0]
    if all(p.const is not None for p in parts):
        return cx.const(np.concatenate([p.const for p in parts], axis=axis))
    ranks = {p.rank for p in parts}
    rank = ranks.pop() if len(ranks) == 1 else -1
    if rank < 0:
        raise ConvertError("operands of unknown or different ranks")
    layout = FIRST if rank >= 3 and any(p.layout == FIRST and p.const is None
                                        for p in parts) else LAST
    values = [cx.first(p) if layout == FIRST else cx.last(p) for p in parts]
    if any(p.dtype == np.int64 for p in parts) and any(p.dtype != np.int64 for p in parts):
        values = [_i64(cx, p) for p in parts]
    lengths = [p.length for p in parts]
    length = sum(n for n in lengths if n is not None) \
        if rank == 1 and None not in lengths else None
    out = cx.b.Concat(*values, axis=axis_in(axis, rank, layout))
    joined = cx.out(out, rank, parts[0].dtype, layout, length=length)
    pieces = [known_values(p) for p in parts]
    if rank == 1 and all(p is not None for p in pieces):
        flat = [v for p in pieces if p is not None for v in p]
        return with_known(cx, joined, flat, (len(flat),))
    return joined


@tf_op("Pack", attrs=("N", "T", "axis"))
def tf_pack(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Pack (tf.stack): Unsqueeze + Concat on axis (negative too)."""
    axis = int(node.attr("axis", 0))
    if all(t.const is not None for t in ins):
        return cx.const(np.stack([t.const for t in ins if t.const is not None], axis=axis))
    rank = ins[0].rank
    if rank < 0:
        raise ConvertError("operands of unknown rank")
    axis = axis + rank + 1 if axis < 0 else axis
    dtype = np.int64 if any(t.dtype == np.int64 for t in ins) else ins[0].dtype
    axes = cx.const(_ints([axis])).value
    values = [cx.b.Unsqueeze(_i64(cx, t) if dtype == np.int64 and t.dtype.kind in "iu"
                             else cx.last(t), axes) for t in ins]
    out = values[0] if len(values) == 1 else cx.b.Concat(*values, axis=axis)
    packed = cx.out(out, rank + 1, dtype, length=len(ins) if rank == 0 else None)
    if rank == 0:
        parts = [known_values(t) for t in ins]
        if all(p is not None for p in parts):
            return with_known(cx, packed, [p[0] for p in parts if p is not None], (len(ins),))
    return packed


@tf_op("Unpack", attrs=("num", "T", "axis"))
def tf_unpack(cx: Ctx, node: NodeDef, ins: list[TT]) -> list[TT]:
    """Unpack (tf.unstack): Split + Squeeze on axis (negative too)."""
    x = ins[0]
    num = int(node.attr("num", 0))
    axis = int(node.attr("axis", 0))
    if x.const is not None:
        return [cx.const(np.take(x.const, i, axis=axis)) for i in range(x.const.shape[axis])]
    if x.rank < 1 or num < 1:
        raise ConvertError("input of unknown rank")
    axis = axis + x.rank if axis < 0 else axis
    parts = cx.b.op("Split", [cx.last(x)], {"axis": axis, "num_outputs": num},
                    num_outputs=num)
    parts = parts if isinstance(parts, tuple) else (parts,)
    axes = cx.const(_ints([axis])).value
    return [cx.out(cx.b.Squeeze(p, axes), x.rank - 1, x.dtype) for p in parts]


@tf_op("Shape", attrs=("T", "out_type"))
def tf_shape(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Shape as out_type (a constant when the static shape is known)."""
    x = ins[0]
    dtype = np_dtype_of(int(node.attr("out_type", 3)))
    if x.const is not None:
        return cx.const(np.asarray(x.const.shape, dtype))
    if x.shape is not None and None not in x.shape:
        return cx.const(np.asarray(x.shape, dtype))
    value = cx.b.Shape(x.value)
    if x.layout == FIRST and x.rank >= 3:
        value = cx.b.Gather(value, cx.const(_ints(perm_to_last(x.rank))).value, axis=0)
    if dtype != np.int64:
        value = cx.b.Cast(value, to=ir.DataType.from_numpy(dtype))
    out = cx.out(value, 1, dtype, length=x.rank if x.rank >= 0 else None)
    out.known = list(x.shape) if x.shape is not None else None
    return out


@tf_op("GatherV2", "Gather", attrs=("Tparams", "Tindices", "Taxis", "validate_indices",
                                    "batch_dims"))
def tf_gather(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """GatherV2 on a constant axis and batch_dims (negative ones too), Gather (axis 0)."""
    params, indices = ins[0], ins[1]
    axis = cx.int_values(ins[2], "axis")[0] if len(ins) > 2 else 0
    if params.rank >= 0 and axis < 0:
        axis += params.rank
    b = int(node.attr("batch_dims", 0))
    b = b + indices.rank if b < 0 and indices.rank >= 0 else b
    out = cx.gather(params, indices, axis, b)
    if params.rank == 1 and indices.rank == 1 and indices.const is not None:
        out.length = int(indices.const.size)
    values = known_values(params)
    if values is not None and params.rank == 1 and indices.const is not None \
            and indices.const.ndim <= 1:
        try:
            picked = [values[int(i)] for i in indices.const.reshape(-1)]
        except IndexError as exc:
            raise ConvertError("index out of range") from exc
        return with_known(cx, out, picked, indices.const.shape)
    return out


def _slice_specs(node: NodeDef, begin: list[int], end: list[int], strides: list[int]
                 ) -> list[Any]:
    """The StridedSlice as a numpy index: slices, ints, None (new axis), Ellipsis."""
    masks = {k: int(node.attr(k, 0)) for k in SLICE_MASKS}
    specs: list[Any] = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides, strict=True)):
        bit = 1 << i
        if masks["ellipsis_mask"] & bit:
            specs.append(Ellipsis)
        elif masks["new_axis_mask"] & bit:
            specs.append(None)
        elif masks["shrink_axis_mask"] & bit:
            specs.append(b)
        else:
            if s == 0:
                raise ConvertError("stride 0")
            specs.append(slice(None if masks["begin_mask"] & bit else b,
                               None if masks["end_mask"] & bit else e, s))
    return specs


def _expand_ellipsis(specs: list[Any], rank: int) -> list[Any]:
    """The index with its ellipsis (or, without one, the axes it leaves out at the end)
    written as full slices, so that it has one entry per input axis plus new axes."""
    if specs.count(Ellipsis) > 1:
        raise ConvertError("two ellipses")
    used = sum(1 for s in specs if s is not None and s is not Ellipsis)
    if Ellipsis not in specs:
        return specs + [slice(None)] * (rank - used)
    at = specs.index(Ellipsis)
    return specs[:at] + [slice(None)] * (rank - used) + specs[at + 1:]


@dataclass
class _SliceParams:
    """An expanded StridedSlice index as ONNX Slice inputs (TF axis order), the input
    axes shrunk away, the output axes inserted, and the output rank."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    axes: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    squeeze: list[int] = field(default_factory=list)
    new_axes: list[int] = field(default_factory=list)
    rank: int = 0

    def add(self, start: int, end: int, axis: int, step: int) -> None:
        """One sliced axis."""
        self.starts.append(start)
        self.ends.append(end)
        self.axes.append(axis)
        self.steps.append(step)


def _slice_params(specs: list[Any]) -> _SliceParams:
    """Slice/Squeeze/Unsqueeze parameters of an index without ellipsis: an int shrinks its
    axis, None inserts one, a slice other than ``:`` becomes a Slice axis."""
    p = _SliceParams()
    in_axis = 0
    for spec in specs:
        if spec is None:
            p.new_axes.append(p.rank)
            p.rank += 1
            continue
        if isinstance(spec, int):
            p.add(spec, spec + 1 if spec != -1 else INT_MAX, in_axis, 1)
            p.squeeze.append(in_axis)
        else:
            step = spec.step or 1
            if spec != slice(None, None, step) or step != 1:
                p.add(spec.start if spec.start is not None else (0 if step > 0 else INT_MAX),
                      spec.stop if spec.stop is not None
                      else (INT_MAX if step > 0 else INT_MIN), in_axis, step)
            p.rank += 1
        in_axis += 1
    return p


def _emit_slice(cx: Ctx, value: ir.Value, p: _SliceParams, axes: list[int]) -> ir.Value:
    """Slice (on IR ``axes``), then Squeeze and Unsqueeze, as far as each is needed."""
    if axes:
        value = cx.b.Slice(value, cx.const(_ints(p.starts)).value,
                           cx.const(_ints(p.ends)).value, cx.const(_ints(axes)).value,
                           cx.const(_ints(p.steps)).value)
    if p.squeeze:
        value = cx.b.Squeeze(value, cx.const(_ints(p.squeeze)).value)
    if p.new_axes:
        value = cx.b.Unsqueeze(value, cx.const(_ints(p.new_axes)).value)
    return value


def _sliced_known(cx: Ctx, x: TT, specs: list[Any], p: _SliceParams, out: TT) -> TT:
    """``out`` with the length and known values of a sliced integer vector ``x``."""
    if p.rank == 1 and x.rank == 1 and x.length is not None and len(p.axes) == 1 \
            and not p.squeeze:
        out.length = len(range(*slice(p.starts[0], p.ends[0], p.steps[0]).indices(x.length)))
    values = known_values(x)
    if values is None or x.rank != 1:
        return out
    try:
        picked = np.asarray(np.array(values, dtype=object)[tuple(specs)])
    except IndexError as exc:
        raise ConvertError("slice out of range") from exc
    return with_known(cx, out, list(picked.reshape(-1)), picked.shape) if picked.ndim <= 1 \
        else out


@tf_op("StridedSlice", attrs=("T", "Index", *SLICE_MASKS))
def tf_strided_slice(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """StridedSlice with constant bounds: begin/end/ellipsis/new_axis/shrink_axis
    masks, negative strides."""
    x = ins[0]
    begin, end, strides = (cx.int_values(t, "slice bounds") for t in ins[1:4])
    specs = _slice_specs(node, begin, end, strides)
    if x.const is not None:
        return cx.const(np.asarray(x.const[tuple(specs)]))
    if x.rank < 0:
        raise ConvertError("input of unknown rank")
    specs = _expand_ellipsis(specs, x.rank)
    p = _slice_params(specs)
    # plain slices (Cropping) of a channels-first value are taken in place
    in_place = x.layout == FIRST and x.rank >= 3 and not p.squeeze and not p.new_axes
    axes = [axis_in(a, x.rank, FIRST) for a in p.axes] if in_place else p.axes
    value = _emit_slice(cx, x.value if in_place else cx.last(x), p, axes)
    out = cx.out(value, p.rank, x.dtype, FIRST if in_place else LAST)
    return _sliced_known(cx, x, specs, p, out)


@tf_op("Slice", attrs=("T", "Index"))
def tf_slice(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Slice with constant begin and size (-1: to the end), or run-time ones (ends computed
    in the graph: a position-embedding table cut to the sequence length)."""
    x = ins[0]
    if ins[1].const is None or ins[2].const is None:
        return _slice_runtime(cx, x, ins[1], ins[2])
    begin = cx.int_values(ins[1], "begin")
    size = cx.int_values(ins[2], "size")
    ends = [INT_MAX if s == -1 else b + s for b, s in zip(begin, size, strict=True)]
    if x.const is not None:
        return cx.const(x.const[tuple(slice(b, e) for b, e in zip(begin, ends, strict=True))])
    axes = list(range(len(begin)))
    value = cx.b.Slice(cx.last(x), cx.const(_ints(begin)).value, cx.const(_ints(ends)).value,
                       cx.const(_ints(axes)).value)
    return cx.out(value, x.rank, x.dtype)


def _slice_runtime(cx: Ctx, x: TT, begin: TT, size: TT) -> TT:
    """Slice(x, begin, where(size == -1, INT_MAX, begin + size)) on every axis."""
    n = int(begin.const.size) if begin.const is not None else begin.length
    if n is None:
        raise ConvertError("begin of unknown length")
    i64 = ir.DataType.INT64
    b = cx.b.Cast(begin.value, to=i64)
    sz = cx.b.Cast(size.value, to=i64)
    to_end = cx.b.Equal(sz, cx.const(np.asarray(-1, np.int64)).value)
    ends = cx.b.Where(to_end, cx.const(np.asarray(INT_MAX, np.int64)).value, cx.b.Add(b, sz))
    axes = cx.const(_ints(list(range(n)))).value
    return cx.out(cx.b.Slice(cx.last(x), b, ends, axes), x.rank, x.dtype)


@tf_op("Pad", "PadV2", "MirrorPad", attrs=("T", "Tpaddings", "mode"))
def tf_pad(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Pad, PadV2 (constant value), MirrorPad (REFLECT; SYMMETRIC refused) with constant
    paddings."""
    x = ins[0]
    pads = cx.int_values(ins[1], "paddings")
    rank = len(pads) // 2
    if x.rank >= 0 and rank != x.rank:
        raise ConvertError(f"{rank} padding rows for rank {x.rank}")
    mode = "constant"
    if node.op == "MirrorPad":
        raw = (node.attr("mode") or b"REFLECT").decode()
        if raw != "REFLECT":
            raise ConvertError(f"mode {raw}")
        mode = "reflect"
    value = ins[2] if node.op == "PadV2" else None
    if any(p < 0 for p in pads):
        raise ConvertError("negative padding")
    if x.const is not None and (value is None or value.const is not None):
        pairs = [(pads[2 * i], pads[2 * i + 1]) for i in range(rank)]
        _small([d + a + b for d, (a, b) in zip(x.const.shape, pairs, strict=True)])
        if mode == "reflect":
            return cx.const(np.pad(x.const, pairs, mode="reflect"))
        fill = value.const.item() if value is not None and value.const is not None else 0
        return cx.const(np.pad(x.const, pairs, constant_values=fill))
    order = perm_to_first(rank) if x.layout == FIRST and rank >= 3 else list(range(rank))
    onnx_pads = [pads[2 * a] for a in order] + [pads[2 * a + 1] for a in order]
    args = [x.value, cx.const(_ints(onnx_pads)).value]
    if value is not None:
        args.append(cx.last(value))
    return x.like(cx.b.Pad(*args, mode=mode))


@tf_op("Tile", attrs=("T", "Tmultiples"))
def tf_tile(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Tile by constant or computed multiples."""
    x, reps = ins
    if x.const is not None and reps.const is not None:
        _small(np.asarray(x.const.shape) * reps.const.reshape(-1))
        return cx.const(np.tile(x.const, reps.const.reshape(-1)))
    return cx.out(cx.b.Tile(cx.last(x), _i64(cx, reps)), x.rank, x.dtype)


@tf_op("Fill", attrs=("T", "index_type"))
def tf_fill(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Fill: ONNX Expand of the value to constant or computed dims."""
    dims, value = ins
    if dims.const is not None and value.const is not None:
        _small(dims.const.reshape(-1))
        return cx.const(np.full(dims.const.reshape(-1), value.const))
    rank = int(dims.const.size) if dims.const is not None else (dims.length or -1)
    return cx.out(cx.b.Expand(cx.last(value), _i64(cx, dims)), rank, value.dtype)


@tf_op("BroadcastTo", attrs=("T", "Tidx"))
def tf_broadcast_to(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """BroadcastTo: ONNX Expand to a constant or computed shape."""
    x, shape = ins
    if x.const is not None and shape.const is not None:
        _small(shape.const.reshape(-1))
        return cx.const(np.broadcast_to(x.const, shape.const.reshape(-1)).copy())
    rank = int(shape.const.size) if shape.const is not None else (shape.length or -1)
    return cx.out(cx.b.Expand(cx.last(x), _i64(cx, shape)), rank, x.dtype)


@tf_op("Range", attrs=("Tidx",))
def tf_range(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Range of constant or computed start, limit, delta."""
    if all(t.const is not None for t in ins):
        start, limit, delta = (t.const.item() for t in ins)  # type: ignore[union-attr]
        if delta == 0:
            raise ConvertError("delta 0")
        _small([max(0, int(np.ceil((limit - start) / delta)))])
        return cx.const(np.arange(start, limit, delta, dtype=ins[0].dtype))
    return cx.out(cx.b.Range(*[cx.last(t) for t in ins]), 1, ins[0].dtype)


def _split_axis(cx: Ctx, x: TT, axis: int) -> tuple[int, str]:
    if x.rank < 0:
        raise ConvertError("input of unknown rank")
    axis = axis + x.rank if axis < 0 else axis
    return axis_in(axis, x.rank, x.layout), x.layout


@tf_op("Split", attrs=("num_split", "T"))
def tf_split(cx: Ctx, node: NodeDef, ins: list[TT]) -> list[TT]:
    """Split into num_split equal parts on a constant axis."""
    axis_t, x = ins
    num = int(node.attr("num_split", 1))
    axis = cx.int_values(axis_t, "axis")[0]
    if x.const is not None:
        return [cx.const(p) for p in np.split(x.const, num, axis=axis)]
    ir_axis, layout = _split_axis(cx, x, axis)
    parts = cx.b.op("Split", [x.value], {"axis": ir_axis, "num_outputs": num},
                    num_outputs=num)
    parts = parts if isinstance(parts, tuple) else (parts,)
    return [x.like(p, layout=layout) for p in parts]


@tf_op("SplitV", attrs=("num_split", "T", "Tlen"))
def tf_split_v(cx: Ctx, node: NodeDef, ins: list[TT]) -> list[TT]:
    """SplitV: constant sizes (one may be -1) on a constant axis."""
    x, sizes_t, axis_t = ins
    sizes = cx.int_values(sizes_t, "split sizes")
    axis = cx.int_values(axis_t, "axis")[0]
    if -1 in sizes:
        dim = x.shape[axis] if x.shape is not None else None
        if dim is None:
            raise ConvertError("split size -1 on a dimension of unknown size")
        sizes[sizes.index(-1)] = dim - (sum(sizes) + 1)
    if x.const is not None:
        return [cx.const(p) for p in np.split(x.const, np.cumsum(sizes)[:-1], axis=axis)]
    ir_axis, layout = _split_axis(cx, x, axis)
    parts = cx.b.op("Split", [x.value, cx.const(_ints(sizes)).value], {"axis": ir_axis},
                    num_outputs=len(sizes))
    parts = parts if isinstance(parts, tuple) else (parts,)
    return [x.like(p, layout=layout) for p in parts]


@tf_op("ZerosLike", "OnesLike", attrs=("T",))
def tf_zeros_like(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """ZerosLike, OnesLike: a constant when the shape is known, else ConstantOfShape."""
    x = ins[0]
    fill = 0 if node.op == "ZerosLike" else 1
    if x.const is not None:
        return cx.const(np.full_like(x.const, fill))
    if x.shape is not None and None not in x.shape:
        _small(x.shape)
        return cx.const(np.full([int(d) for d in x.shape if d is not None], fill, x.dtype))
    value = cx.b.ConstantOfShape(cx.b.Shape(x.value),
                                 value=ir.tensor(np.asarray([fill], dtype=x.dtype)))
    return x.like(value)  # the shape is read in x's own layout: the result shares it
