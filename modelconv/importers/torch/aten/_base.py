"""The ATen handler registry and the builder handlers emit through.

A handler is registered under the ATen overload name (``"aten.convolution.default"``)
and called as ``handler(b, *args, **kwargs)`` with the FX node's arguments, where every
tensor argument is an ``ir.Value`` (with dtype and shape) and every other argument is
kept as in the schema (ints, floats, lists, ``torch.dtype``...). Symbolic integers
(``SymInt``) arrive as 0-d int64 ``ir.Value``; :meth:`AtenBuilder.ints` turns a list mixing
them with plain ints into one 1-D int64 value.

A handler may come with a ``check``: ``check(args) -> str | None`` says, before anything is
lowered, why this call (its arguments or input shapes) cannot be converted. ``args`` maps the
handler's parameter names (``b`` left out, defaults filled in) to the call's arguments, with
every tensor argument as its ``FakeTensor`` (``.shape``, ``.dtype``). The lowering runs every
check first, so all such calls are listed in ONE UnsupportedOpsError (as the TFLite exporter
does with ``tflite_lowering(..., check=...)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import onnx_ir as ir
import torch

from modelconv.ir.builder import GraphBuilder
from modelconv.registry import Registry

Handler = Callable[..., Any]
Check = Callable[[dict[str, Any]], str | None]

ATEN_OPS: Registry[Handler] = Registry("aten op")


def aten_op(*keys: str, check: Check | None = None) -> Callable[[Handler], Handler]:
    """Decorator registering a handler for the ATen overloads ``keys`` (written in full:
    ``"aten.mul.Tensor"``) and its ``check`` (see the module doc)."""
    return ATEN_OPS.register(*keys, check=check)


def check_call(key: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """Why the call of ``key``'s handler with ``args``/``kwargs`` cannot be converted.

    Args:
        key: the handler's registry key.
        args: the call's positional arguments (tensors as FakeTensors), ``b`` excluded.
        kwargs: its keyword arguments.

    Returns:
        The registered check's reason, or None (no check, or the check accepts the call;
        a call that does not fit the handler's signature is left for the lowering to report).
    """
    check = ATEN_OPS.check(key)
    handler = ATEN_OPS.get(key)
    if check is None or handler is None:
        return None
    try:
        bound = inspect.signature(handler).bind(None, *args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    named = dict(bound.arguments)
    named.pop(next(iter(named)))  # the builder
    return check(named)

_TORCH_TO_IR = {
    torch.float32: ir.DataType.FLOAT,
    torch.float64: ir.DataType.DOUBLE,
    torch.float16: ir.DataType.FLOAT16,
    torch.bfloat16: ir.DataType.BFLOAT16,
    torch.int64: ir.DataType.INT64,
    torch.int32: ir.DataType.INT32,
    torch.int16: ir.DataType.INT16,
    torch.int8: ir.DataType.INT8,
    torch.uint8: ir.DataType.UINT8,
    torch.bool: ir.DataType.BOOL,
    torch.complex64: ir.DataType.COMPLEX64,
    torch.complex128: ir.DataType.COMPLEX128,
}

_FLOATS = {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16}


def ir_dtype(dtype: torch.dtype) -> ir.DataType:
    """The IR data type of a torch dtype."""
    try:
        return _TORCH_TO_IR[dtype]
    except KeyError:
        raise TypeError(f"torch dtype {dtype} has no ONNX equivalent") from None


def np_dtype(dtype: ir.DataType | None) -> np.dtype:
    """The numpy dtype of an IR data type (bfloat16 via ml_dtypes; float32 when unknown)."""
    return np.dtype((dtype or ir.DataType.FLOAT).numpy())


def is_float(dtype: ir.DataType | None) -> bool:
    """True for floating-point IR types."""
    return dtype in _FLOATS


def _category(dtype: ir.DataType | None) -> int:
    if dtype == ir.DataType.BOOL:
        return 0
    return 2 if is_float(dtype) else 1


class AtenBuilder(GraphBuilder):
    """A GraphBuilder with the helpers ATen handlers share (shapes, casts, constants)."""

    #: ``node.meta["val"]`` of the FX node being lowered (FakeTensor, tuple or SymInt)
    meta: Any = None

    # -- facts about values ------------------------------------------------------
    def out_dtype(self, index: int = 0) -> ir.DataType:
        """IR dtype of the current node's output ``index``."""
        val = self.meta[index] if isinstance(self.meta, (tuple, list)) else self.meta
        return ir_dtype(val.dtype)

    def out_shape(self, index: int = 0) -> list[int | None]:
        """Static dims of the current node's output (None where symbolic)."""
        val = self.meta[index] if isinstance(self.meta, (tuple, list)) else self.meta
        return [d if isinstance(d, int) else None for d in val.shape]

    @staticmethod
    def rank(value: ir.Value) -> int:
        """Rank of ``value`` (its shape must be known)."""
        assert value.shape is not None, f"shape of {value.name} unknown"
        return len(value.shape)

    @staticmethod
    def dims(value: ir.Value) -> list[int | None]:
        """Static dims of ``value``; None where symbolic."""
        assert value.shape is not None, f"shape of {value.name} unknown"
        return [d if isinstance(d, int) else None for d in value.shape]

    @staticmethod
    def axis(dim: int, rank: int) -> int:
        """``dim`` made non-negative."""
        return dim + rank if dim < 0 else dim

    # -- constants and casts ----------------------------------------------------------
    def ints(self, items: Sequence[int | ir.Value] | ir.Value) -> ir.Value:
        """A 1-D int64 value from a list of ints and 0-d SymInt values."""
        if isinstance(items, ir.Value):
            return items
        if all(isinstance(i, (int, np.integer)) for i in items):
            return self.const(np.array([int(cast(int, i)) for i in items], dtype=np.int64))
        parts = [
            self.Unsqueeze(self.cast(i, ir.DataType.INT64), self.const([0]))
            if isinstance(i, ir.Value)
            else self.const(np.array([int(i)], dtype=np.int64))
            for i in items
        ]
        return self.Concat(*parts, axis=0)

    def scalar(self, value: Any, dtype: ir.DataType | None) -> ir.Value:
        """A 0-d constant of IR type ``dtype`` (float32 when unknown)."""
        dtype = dtype or ir.DataType.FLOAT
        return self.const(np.array(value, dtype=np_dtype(dtype)), dtype=np_dtype(dtype))

    def split(self, value: ir.Value, axis: int, parts: int,
              sizes: ir.Value | None = None) -> list[ir.Value]:
        """ONNX Split into ``parts`` outputs (equal parts unless ``sizes`` is given)."""
        if parts == 1:
            return [self.Identity(value)]
        attrs = {"axis": axis} if sizes is not None else {"axis": axis, "num_outputs": parts}
        inputs = [value] if sizes is None else [value, sizes]
        return list(self.op("Split", inputs, attrs, num_outputs=parts))

    def cast(self, value: ir.Value, dtype: ir.DataType | None) -> ir.Value:
        """``value`` cast to ``dtype`` (no node when it already has it or it is unknown)."""
        if dtype is None or value.dtype == dtype:
            return value
        return self.Cast(value, to=dtype)

    def operand(self, value: ir.Value | Any, dtype: ir.DataType | None) -> ir.Value:
        """A tensor operand of ``dtype``: Values are cast, Python scalars become constants."""
        if isinstance(value, ir.Value):
            return self.cast(value, dtype)
        return self.scalar(value, dtype)

    def promoted(self, *operands: ir.Value | Any) -> ir.DataType:
        """The dtype torch's type promotion gives ``operands`` (tensors before scalars)."""
        values = [o for o in operands if isinstance(o, ir.Value)]
        best = max(values, key=lambda v: (_category(v.dtype), len(v.shape or ()) > 0,
                                          np_dtype(v.dtype).itemsize))
        dtype = best.dtype
        scalars = [o for o in operands if not isinstance(o, ir.Value)]
        if any(isinstance(s, float) for s in scalars) and _category(dtype) < 2:
            return ir.DataType.FLOAT
        if any(isinstance(s, int) and not isinstance(s, bool) for s in scalars) and (
            dtype == ir.DataType.BOOL
        ):
            return ir.DataType.INT64
        return dtype or ir.DataType.FLOAT

    def const_array(self, value: ir.Value | None) -> np.ndarray | None:
        """The numpy content of a constant value (initializer), else None."""
        if value is None or value.const_value is None:
            return None
        return value.const_value.numpy()

    def unsqueeze_to(self, value: ir.Value, rank: int, axis: int = 1) -> ir.Value:
        """A per-channel vector (C,) reshaped to broadcast at ``axis`` of a rank-``rank`` tensor."""
        trailing = rank - axis - 1
        if trailing <= 0:
            return value
        return self.Unsqueeze(value, self.const(list(range(1, trailing + 1))))

    def size_of(self, value: ir.Value, axis: int) -> ir.Value:
        """Runtime size of ``value``'s ``axis`` as a 1-D int64 of length 1."""
        axis = self.axis(axis, self.rank(value))
        return self.Shape(value, start=axis, end=axis + 1)
