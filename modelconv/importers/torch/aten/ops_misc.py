"""Tensor creation, copies/casts, symbolic-size arithmetic and no-op bookkeeping nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from ._base import AtenBuilder, aten_op, np_dtype


def _fill(b: AtenBuilder, size: Sequence[int | ir.Value] | ir.Value, value: Any) -> ir.Value:
    dtype = b.out_dtype()
    if isinstance(value, ir.Value):
        return b.Expand(b.cast(value, dtype), b.ints(size))
    fill = ir.tensor(np.array([value], dtype=np_dtype(dtype)))
    return b.ConstantOfShape(b.ints(size), value=fill)


@aten_op("aten.full.default", "aten.new_full.default")
def full(b: AtenBuilder, *args: Any, **kwargs: Any) -> ir.Value:
    """ConstantOfShape (new_full takes the source tensor first)."""
    size, value = (args[1], args[2]) if isinstance(args[0], ir.Value) else (args[0], args[1])
    return _fill(b, size, value)


@aten_op("aten.zeros.default", "aten.empty.memory_format", "aten.new_zeros.default",
         "aten.new_empty.default")
def zeros(b: AtenBuilder, *args: Any, **kwargs: Any) -> ir.Value:
    """Zeros of ``size`` (empty is zero-filled)."""
    return _fill(b, args[1] if isinstance(args[0], ir.Value) else args[0], 0)


@aten_op("aten.ones.default", "aten.new_ones.default")
def ones(b: AtenBuilder, *args: Any, **kwargs: Any) -> ir.Value:
    """Ones of ``size``."""
    return _fill(b, args[1] if isinstance(args[0], ir.Value) else args[0], 1)


@aten_op("aten.full_like.default")
def full_like(b: AtenBuilder, x: ir.Value, fill_value: Any, **kwargs: Any) -> ir.Value:
    """A tensor like ``x`` filled with ``fill_value``."""
    return _fill(b, b.Shape(x), fill_value)


@aten_op("aten.zeros_like.default", "aten.empty_like.default")
def zeros_like(b: AtenBuilder, x: ir.Value, **kwargs: Any) -> ir.Value:
    """Zeros like ``x``."""
    return _fill(b, b.Shape(x), 0)


@aten_op("aten.ones_like.default")
def ones_like(b: AtenBuilder, x: ir.Value, **kwargs: Any) -> ir.Value:
    """Ones like ``x``."""
    return _fill(b, b.Shape(x), 1)


@aten_op("aten.scalar_tensor.default")
def scalar_tensor(b: AtenBuilder, s: Any, **kwargs: Any) -> ir.Value:
    """A 0-d constant."""
    return b.operand(s, b.out_dtype())


@aten_op("aten.arange.start_step", "aten.arange.default", "aten.arange.start")
def arange(b: AtenBuilder, *args: Any, **kwargs: Any) -> ir.Value:
    """Range (static arguments become a constant)."""
    nums = [a for a in args if isinstance(a, (int, float, ir.Value))]
    start, end, step = (0, nums[0], 1) if len(nums) == 1 else (*nums[:2], nums[2] if
                                                                  len(nums) > 2 else 1)
    dtype = b.out_dtype()
    static = [v for v in (start, end, step) if not isinstance(v, ir.Value)]
    if len(static) == 3:
        return b.const(np.arange(*static, dtype=np_dtype(dtype)))
    parts = [b.operand(v, dtype) for v in (start, end, step)]
    return b.Range(*parts)


@aten_op("aten.fill.Scalar")
def fill(b: AtenBuilder, x: ir.Value, value: Any) -> ir.Value:
    """A tensor like ``x`` filled with ``value``."""
    return _fill(b, b.Shape(x), value)


@aten_op("aten.clone.default", "aten.alias.default", "aten.lift_fresh_copy.default",
         "aten.detach.default", "aten.contiguous.default")
def clone(b: AtenBuilder, x: ir.Value, **kwargs: Any) -> ir.Value:
    """A copy is the same value in a dataflow graph."""
    return x


@aten_op("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout", "aten.to.device",
         "aten._assert_tensor_metadata.default")
def to_copy(b: AtenBuilder, x: ir.Value, *args: Any, **kwargs: Any) -> ir.Value | None:
    """Cast to the output dtype (device/layout changes are no-ops)."""
    if b.meta is None:  # _assert_tensor_metadata has no output
        return None
    return b.cast(x, b.out_dtype())


@aten_op("aten.type_as.default")
def type_as(b: AtenBuilder, x: ir.Value, other: ir.Value) -> ir.Value:
    """Cast to ``other``'s dtype."""
    return b.cast(x, other.dtype)


@aten_op("aten.dropout.default", "aten.feature_dropout.default", "aten.alpha_dropout.default")
def dropout(b: AtenBuilder, x: ir.Value, p: float, train: bool) -> ir.Value:
    """Identity at inference."""
    return x


@aten_op("aten.native_dropout.default")
def native_dropout(b: AtenBuilder, x: ir.Value, p: float,
                   train: bool | None) -> tuple[ir.Value, None]:
    """Identity at inference (no mask)."""
    return x, None


@aten_op("aten._assert_scalar.default", "aten.sym_constrain_range_for_size.default",
         "aten.sym_constrain_range.default", "aten._assert_async.msg")
def assertion(b: AtenBuilder, *args: Any, **kwargs: Any) -> None:
    """Export-time checks; nothing to run."""
    return None


@aten_op("aten.sym_size.int")
def sym_size(b: AtenBuilder, x: ir.Value, dim: int) -> ir.Value:
    """Runtime size of one axis as a 0-d int64."""
    return b.Squeeze(b.size_of(x, dim), b.const([0]))


def _sym_binary(onnx_op: str) -> Any:
    def handler(b: AtenBuilder, x: Any, y: Any) -> ir.Value:
        i64 = ir.DataType.INT64
        return b.op(onnx_op, [b.operand(x, i64), b.operand(y, i64)])

    handler.__doc__ = f"SymInt arithmetic as int64 {onnx_op}."
    return handler


for _key, _onnx in {"operator.mul": "Mul", "operator.add": "Add", "operator.sub": "Sub",
                    "operator.floordiv": "Div", "operator.mod": "Mod"}.items():
    aten_op(_key)(_sym_binary(_onnx))
