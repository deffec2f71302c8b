"""Integer operands (axes, bounds, pads, repeats, shapes) that may be constant or run-time.

Where a LiteRT kernel reads such an operand from a tensor at run time (reduce.cc's axis,
strided_slice.cc's begin/end/strides, pad.cc's paddings, tile.cc's multiples, cumsum.cc's
axis), a run-time ONNX value is fed to it; a constant one is folded into a constant tensor
here, as before. Kernels take int32 index tensors, so int64 values are clamped to the int32
range (ONNX writes INT64_MAX for "to the end") and CAST.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast

_I32 = np.iinfo(np.int32)


def is_constant(value: ir.Value | None) -> bool:
    """True when ``value`` is absent or has constant content."""
    return value is None or value.const_value is not None


def static_length(value: ir.Value | None) -> int | None:
    """The element count of ``value`` when its shape is static (None: unknown / absent)."""
    if value is None or value.shape is None:
        return None
    dims = [d for d in value.shape if isinstance(d, int)]
    return int(np.prod(dims, dtype=np.int64)) if len(dims) == len(value.shape) else None


def runtime_int32(ctx: LoweringContext, value: ir.Value, name: str,
                  shape: list[int] | None = None, limit: int = int(_I32.max)) -> int:
    """Run-time integer ``value`` as an int32 tensor (RESHAPEd to ``shape`` if given).

    int64 values are clamped to the int32 range first (MINIMUM / MAXIMUM) so that
    INT64_MAX-style bounds stay "past the end" instead of wrapping.

    Args:
        ctx: the lowering context.
        value: a non-constant int32 / int64 IR value.
        name: a base name for the new tensors.
        shape: the shape to give the result (None: as it is).
        limit: int64 values are clamped to ``[-limit - 1, limit]`` (a smaller limit leaves
            room for arithmetic on the result).

    Returns:
        The int32 tensor index.
    """
    t = ctx.get(value)
    if shape is not None and list(ctx.t(t).shape) != list(shape):
        t = ctx.reshape(t, list(shape), f"{name}_shaped")
    dtype = ctx.t(t).dtype
    if dtype == np.int32:
        return t
    if dtype == np.int64:
        capped, floored = ctx.like(t, f"{name}_capped"), ctx.like(t, f"{name}_floored")
        ctx.emit("MINIMUM", [t, ctx.const(np.asarray(limit, np.int64), "int_max")], [capped])
        ctx.emit("MAXIMUM", [capped, ctx.const(np.asarray(-limit - 1, np.int64), "int_min")],
                 [floored])
        t = floored
    return cast(ctx, t, np.dtype(np.int32))


def int32_operand(ctx: LoweringContext, value: ir.Value, name: str,
                  shape: list[int] | None = None, limit: int = int(_I32.max)) -> int:
    """``value`` as an int32 tensor: constants folded (clipped to int32), run-time values
    through :func:`runtime_int32`.

    Args:
        ctx: the lowering context.
        value: an integer IR value.
        name: a base name for the new tensors.
        shape: the shape to give the result (None: as it is).
        limit: values are clamped to ``[-limit - 1, limit]``.

    Returns:
        The int32 tensor index.
    """
    arr = ctx.array(value)
    if arr is not None:
        arr = np.clip(arr.astype(np.int64), -limit - 1, limit).astype(np.int32)
        return ctx.const(arr if shape is None else arr.reshape(shape), name)
    return runtime_int32(ctx, value, name, shape, limit)


def scatter_axes(ctx: LoweringContext, given: int, axes: list[int], fill: list[int],
                 name: str) -> int:
    """A rank-long int32 vector: entry ``axes[k]`` of run-time ``given`` (int32, one value per
    listed axis) at position ``axes[k]``, ``fill[ax]`` at the other positions.

    Built as GATHER(CONCATENATION(given, fill), constant positions).

    Args:
        ctx: the lowering context.
        given: int32 tensor of ``len(axes)`` values.
        axes: the (non-negative, distinct) axis each value belongs to.
        fill: the value of each of the rank positions not in ``axes``.
        name: a base name for the new tensors.

    Returns:
        The int32 tensor index of the rank-long vector.
    """
    n, rank = len(axes), len(fill)
    if list(axes) == list(range(rank)):
        return given
    both = ctx.tmp(f"{name}_all", np.int32, [n + rank])
    opts = s.ConcatenationOptionsT()
    opts.axis = 0
    ctx.emit("CONCATENATION", [ctx.reshape(given, [n], f"{name}_flat"),
                               ctx.i32(fill, f"{name}_fill")], [both], opts)
    pos = [axes.index(ax) if ax in axes else n + ax for ax in range(rank)]
    full = ctx.tmp(name, np.int32, [rank])
    g = s.GatherOptionsT()
    g.axis = 0
    ctx.emit("GATHER", [both, ctx.i32(pos, f"{name}_positions")], [full], g)
    return full


def scatter_runtime_axes(ctx: LoweringContext, given: int, axes: int, fill: list[int],
                         name: str) -> int:
    """Like :func:`scatter_axes` for run-time ``axes`` (an int32 [n] tensor, negative axes
    counted from the end): ``fill + SCATTER_ND(axes mod rank, given - fill[axes])``.

    ``given`` must leave room for the subtraction (values within +-2**30).

    Args:
        ctx: the lowering context.
        given: int32 tensor of n values.
        axes: int32 tensor of the n distinct axes they belong to.
        fill: the value of each of the rank positions not in ``axes``.
        name: a base name for the new tensors.

    Returns:
        The int32 tensor index of the rank-long vector.
    """
    n, rank = ctx.t(given).shape[0], len(fill)
    wrapped = ctx.tmp(f"{name}_axes", np.int32, [n])
    ctx.emit("FLOOR_MOD", [axes, ctx.const(np.asarray(rank, np.int32), "rank")], [wrapped])
    fill_t = ctx.i32(fill, f"{name}_fill")
    base = ctx.tmp(f"{name}_base", np.int32, [n])
    g = s.GatherOptionsT()
    g.axis = 0
    ctx.emit("GATHER", [fill_t, wrapped], [base], g)
    delta = ctx.tmp(f"{name}_delta", np.int32, [n])
    ctx.emit("SUB", [given, base], [delta], s.SubOptionsT())
    spread = ctx.tmp(f"{name}_spread", np.int32, [rank])
    ctx.emit("SCATTER_ND", [ctx.reshape(wrapped, [n, 1], f"{name}_index"), delta,
                            ctx.i32([rank], f"{name}_rank")], [spread])
    full = ctx.tmp(name, np.int32, [rank])
    ctx.emit("ADD", [spread, fill_t], [full], s.AddOptionsT())
    return full


class RuntimeWeight:
    """A run-time weight tensor standing in for a numpy array in lowerings written for
    constant weights: ``w[i]`` / ``w[a:b]`` (axis 0) emit STRIDED_SLICE, ``w + v`` emits ADD;
    each result is made once and reused (the unrolled recurrences index the same weights
    at every step)."""

    def __init__(self, ctx: LoweringContext, tensor: int) -> None:
        """Wrap tensor ``tensor`` of ``ctx``."""
        self.ctx, self.t = ctx, tensor
        self._made: dict[tuple[object, ...], RuntimeWeight] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        """The static shape."""
        return tuple(self.ctx.t(self.t).shape)

    def __getitem__(self, key: int | slice) -> RuntimeWeight:
        """Index or slice along axis 0."""
        n = self.shape[0]
        start, stop = (key % n, key % n + 1) if isinstance(key, int) else key.indices(n)[:2]
        cache = (isinstance(key, int), start, stop)
        if cache not in self._made:
            rank = len(self.shape)
            shape = list(self.shape)
            shape[0] = stop - start
            opts = s.StridedSliceOptionsT()
            if isinstance(key, int):
                opts.shrinkAxisMask = 1
                shape = shape[1:]
            out = self.ctx.like(self.t, "weight_part", shape)
            self.ctx.emit("STRIDED_SLICE", [
                self.t, self.ctx.i32([start] + [0] * (rank - 1), "begin"),
                self.ctx.i32([stop, *self.shape[1:]], "end"), self.ctx.i32([1] * rank,
                                                                          "strides")],
                [out], opts)
            self._made[cache] = RuntimeWeight(self.ctx, out)
        return self._made[cache]

    def __add__(self, other: RuntimeWeight | np.ndarray) -> RuntimeWeight:
        """Elementwise sum (ADD)."""
        cache = ("add", id(other))
        if cache not in self._made:
            rhs = other.t if isinstance(other, RuntimeWeight) else self.ctx.const(
                np.asarray(other, np.float32), "addend")
            out = self.ctx.like(self.t, "weight_sum")
            self.ctx.emit("ADD", [self.t, rhs], [out], s.AddOptionsT())
            self._made[cache] = RuntimeWeight(self.ctx, out)
        return self._made[cache]


def weight_operand(ctx: LoweringContext, value: ir.Value | None,
                   what: str) -> np.ndarray | RuntimeWeight:
    """A weight as its constant array, or a :class:`RuntimeWeight` for a run-time one."""
    arr = ctx.array(value)
    if arr is not None:
        return arr
    assert value is not None, what
    return RuntimeWeight(ctx, ctx.get(value))
