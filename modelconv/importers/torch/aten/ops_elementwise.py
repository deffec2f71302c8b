"""Elementwise arithmetic, comparisons, logic and math functions.

Operands follow torch's type promotion: arithmetic casts to the node's output dtype,
comparisons to the promoted input dtype. Python scalars become typed constants.
"""

from __future__ import annotations

from typing import Any

import onnx_ir as ir

from ._base import AtenBuilder, aten_op, is_float


def _binary(onnx_op: str) -> Any:
    def handler(b: AtenBuilder, x: Any, other: Any) -> ir.Value:
        dtype = b.out_dtype()
        return b.op(onnx_op, [b.operand(x, dtype), b.operand(other, dtype)])

    handler.__doc__ = f"{onnx_op} in the output dtype."
    return handler


for _keys, _onnx in [
    (("aten.mul.Tensor", "aten.mul.Scalar", "aten.mul.default"), "Mul"),
    (("aten.maximum.Tensor", "aten.maximum.Scalar", "aten.maximum.default"), "Max"),
    (("aten.minimum.Tensor", "aten.minimum.Scalar", "aten.minimum.default"), "Min"),
    (("aten.fmax.Tensor", "aten.fmax.Scalar", "aten.fmax.default"), "Max"),
    (("aten.fmin.Tensor", "aten.fmin.Scalar", "aten.fmin.default"), "Min"),
]:
    aten_op(*_keys)(_binary(_onnx))


def _logical(onnx_op: str) -> Any:
    def handler(b: AtenBuilder, x: Any, other: Any) -> ir.Value:
        if b.out_dtype() != ir.DataType.BOOL:  # bitwise op on integers
            bitwise = {"And": "BitwiseAnd", "Or": "BitwiseOr", "Xor": "BitwiseXor"}[onnx_op]
            dtype = b.out_dtype()
            return b.op(bitwise, [b.operand(x, dtype), b.operand(other, dtype)])
        dtype = ir.DataType.BOOL
        return b.op(onnx_op, [b.operand(x, dtype), b.operand(other, dtype)])

    handler.__doc__ = f"{onnx_op} on bool operands (bitwise on integers)."
    return handler


for _logical_keys, _onnx in [
    (("aten.logical_and.default",), "And"),
    (("aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar",
      "aten.__and__.Tensor", "aten.__and__.Scalar"), "And"),
    (("aten.logical_or.default",), "Or"),
    (("aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar",
      "aten.__or__.Tensor", "aten.__or__.Scalar"), "Or"),
    (("aten.logical_xor.default",), "Xor"),
    (("aten.bitwise_xor.Tensor", "aten.bitwise_xor.Scalar",
      "aten.__xor__.Tensor", "aten.__xor__.Scalar"), "Xor"),
]:
    aten_op(*_logical_keys)(_logical(_onnx))


def _with_alpha(onnx_op: str) -> Any:
    def handler(b: AtenBuilder, x: Any, other: Any, alpha: float = 1) -> ir.Value:
        dtype = b.out_dtype()
        y = b.operand(other, dtype)
        if alpha != 1:
            y = b.Mul(y, b.scalar(alpha, dtype))
        return b.op(onnx_op, [b.operand(x, dtype), y])

    handler.__doc__ = f"x {onnx_op} alpha * other."
    return handler


aten_op("aten.add.Tensor", "aten.add.Scalar")(_with_alpha("Add"))
aten_op("aten.sub.Tensor", "aten.sub.Scalar")(_with_alpha("Sub"))


@aten_op("aten.rsub.Scalar", "aten.rsub.Tensor")
def rsub(b: AtenBuilder, x: Any, other: Any, alpha: float = 1) -> ir.Value:
    """other - alpha * x."""
    dtype = b.out_dtype()
    y = b.operand(x, dtype)
    if alpha != 1:
        y = b.Mul(y, b.scalar(alpha, dtype))
    return b.Sub(b.operand(other, dtype), y)


@aten_op("aten.div.Tensor", "aten.div.Scalar")
def div(b: AtenBuilder, x: Any, other: Any) -> ir.Value:
    """True division in the (floating) output dtype."""
    dtype = b.out_dtype()
    return b.Div(b.operand(x, dtype), b.operand(other, dtype))


@aten_op("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def div_mode(b: AtenBuilder, x: Any, other: Any, *, rounding_mode: str | None = None) -> ir.Value:
    """Division with floor/trunc rounding."""
    dtype = b.out_dtype()
    if is_float(dtype) or rounding_mode is None:
        q = b.Div(b.operand(x, dtype), b.operand(other, dtype))
        if rounding_mode == "floor":
            return b.Floor(q)
        return b.Cast(b.Cast(q, to=ir.DataType.INT64), to=dtype) if rounding_mode else q
    fx, fo = b.operand(x, ir.DataType.DOUBLE), b.operand(other, ir.DataType.DOUBLE)
    q = b.Div(fx, fo)
    q = b.Floor(q) if rounding_mode == "floor" else q
    return b.Cast(q, to=dtype)


@aten_op("aten.floor_divide.default", "aten.floor_divide.Scalar")
def floor_divide(b: AtenBuilder, x: Any, other: Any) -> ir.Value:
    """Floor division."""
    return div_mode(b, x, other, rounding_mode="floor")


@aten_op("aten.remainder.Tensor", "aten.remainder.Scalar")
def remainder(b: AtenBuilder, x: Any, other: Any) -> ir.Value:
    """Python-style modulo (sign of the divisor)."""
    dtype = b.out_dtype()
    return b.Mod(b.operand(x, dtype), b.operand(other, dtype), fmod=int(is_float(dtype)))


@aten_op("aten.fmod.Tensor", "aten.fmod.Scalar")
def fmod(b: AtenBuilder, x: Any, other: Any) -> ir.Value:
    """C-style modulo (sign of the dividend)."""
    dtype = b.out_dtype()
    return b.Mod(b.operand(x, dtype), b.operand(other, dtype), fmod=1)


@aten_op("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def pow_(b: AtenBuilder, x: Any, exponent: Any) -> ir.Value:
    """Pow (x*x for the common square)."""
    dtype = b.out_dtype()
    base = b.operand(x, dtype)
    if exponent == 2 and not isinstance(exponent, ir.Value):
        return b.Mul(base, base)
    exp = exponent if isinstance(exponent, ir.Value) else b.scalar(exponent, dtype)
    return b.Pow(base, b.cast(exp, dtype))


def _compare(onnx_op: str, negate: bool = False) -> Any:
    def handler(b: AtenBuilder, x: Any, other: Any) -> ir.Value:
        dtype = b.promoted(x, other)
        y = b.op(onnx_op, [b.operand(x, dtype), b.operand(other, dtype)])
        return b.Not(y) if negate else y

    handler.__doc__ = f"{onnx_op} in the promoted dtype."
    return handler


for _compare_keys, _onnx, _neg in [
    (("aten.eq.Tensor", "aten.eq.Scalar"), "Equal", False),
    (("aten.ne.Tensor", "aten.ne.Scalar"), "Equal", True),
    (("aten.lt.Tensor", "aten.lt.Scalar"), "Less", False),
    (("aten.le.Tensor", "aten.le.Scalar"), "LessOrEqual", False),
    (("aten.gt.Tensor", "aten.gt.Scalar"), "Greater", False),
    (("aten.ge.Tensor", "aten.ge.Scalar"), "GreaterOrEqual", False),
]:
    aten_op(*_compare_keys)(_compare(_onnx, _neg))


_UNARY = {
    "aten.neg.default": "Neg",
    "aten.abs.default": "Abs",
    "aten.exp.default": "Exp",
    "aten.log.default": "Log",
    "aten.sqrt.default": "Sqrt",
    "aten.reciprocal.default": "Reciprocal",
    "aten.sin.default": "Sin",
    "aten.cos.default": "Cos",
    "aten.tan.default": "Tan",
    "aten.asin.default": "Asin",
    "aten.acos.default": "Acos",
    "aten.atan.default": "Atan",
    "aten.sinh.default": "Sinh",
    "aten.cosh.default": "Cosh",
    "aten.erf.default": "Erf",
    "aten.floor.default": "Floor",
    "aten.ceil.default": "Ceil",
    "aten.round.default": "Round",
    "aten.sign.default": "Sign",
    "aten.isnan.default": "IsNaN",
}


def _unary(onnx_op: str) -> Any:
    def handler(b: AtenBuilder, x: ir.Value) -> ir.Value:
        return b.op(onnx_op, [b.cast(x, b.out_dtype()) if onnx_op != "IsNaN" else x])

    handler.__doc__ = f"{onnx_op}."
    return handler


for _key, _onnx in _UNARY.items():
    aten_op(_key)(_unary(_onnx))


@aten_op("aten.rsqrt.default")
def rsqrt(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """1 / sqrt(x)."""
    return b.Reciprocal(b.Sqrt(b.cast(x, b.out_dtype())))


@aten_op("aten.log1p.default")
def log1p(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """log(1 + x)."""
    return b.Log(b.Add(x, b.scalar(1, x.dtype)))


@aten_op("aten.expm1.default")
def expm1(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """exp(x) - 1."""
    return b.Sub(b.Exp(x), b.scalar(1, x.dtype))


@aten_op("aten.log2.default")
def log2(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """log(x) / log(2)."""
    return b.Div(b.Log(x), b.scalar(0.6931471805599453, x.dtype))


@aten_op("aten.logical_not.default", "aten.bitwise_not.default")
def logical_not(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Not (BitwiseNot for integers)."""
    if x.dtype == ir.DataType.BOOL or b.out_dtype() == ir.DataType.BOOL:
        return b.Not(b.cast(x, ir.DataType.BOOL))
    return b.BitwiseNot(x)


@aten_op("aten.isinf.default")
def isinf(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """IsInf."""
    return b.IsInf(x)


@aten_op("aten.clamp.default", "aten.clamp.Tensor")
def clamp(b: AtenBuilder, x: ir.Value, min: Any = None, max: Any = None) -> ir.Value:
    """Clip (Max/Min for tensor bounds)."""
    dtype = b.out_dtype()
    x = b.cast(x, dtype)
    if isinstance(min, ir.Value) or isinstance(max, ir.Value):
        y = x if min is None else b.Max(x, b.operand(min, dtype))
        return y if max is None else b.Min(y, b.operand(max, dtype))
    lo = None if min is None else b.scalar(min, dtype)
    hi = None if max is None else b.scalar(max, dtype)
    return b.Clip(x, lo, hi)


@aten_op("aten.clamp_min.default", "aten.clamp_min.Tensor")
def clamp_min(b: AtenBuilder, x: ir.Value, min: Any) -> ir.Value:
    """Max(x, min)."""
    return clamp(b, x, min, None)


@aten_op("aten.clamp_max.default", "aten.clamp_max.Tensor")
def clamp_max(b: AtenBuilder, x: ir.Value, max: Any) -> ir.Value:
    """Min(x, max)."""
    return clamp(b, x, None, max)


@aten_op("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf",
         "aten.where.Scalar")
def where(b: AtenBuilder, condition: ir.Value, x: Any, other: Any) -> ir.Value:
    """Where in the output dtype."""
    dtype = b.out_dtype()
    cond = b.cast(condition, ir.DataType.BOOL)
    return b.Where(cond, b.operand(x, dtype), b.operand(other, dtype))


@aten_op("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def masked_fill(b: AtenBuilder, x: ir.Value, mask: ir.Value, value: Any) -> ir.Value:
    """Where(mask, value, x)."""
    return b.Where(b.cast(mask, ir.DataType.BOOL), b.operand(value, x.dtype), x)


@aten_op("aten.lerp.Scalar", "aten.lerp.Tensor")
def lerp(b: AtenBuilder, x: ir.Value, end: ir.Value, weight: Any) -> ir.Value:
    """x + weight * (end - x)."""
    w = b.operand(weight, x.dtype)
    return b.Add(x, b.Mul(w, b.Sub(end, x)))


@aten_op("aten.diff.default")
def diff(b: AtenBuilder, x: ir.Value, n: int = 1, dim: int = -1,
         prepend: ir.Value | None = None, append: ir.Value | None = None) -> ir.Value:
    """x[1:] - x[:-1] along ``dim``, ``n`` times (Xor for bool, as torch)."""
    axis = b.axis(dim, b.rank(x))
    parts = [v for v in (prepend, x, append) if v is not None]
    y = b.Concat(*parts, axis=axis) if len(parts) > 1 else x
    axes = b.const([axis])
    for _ in range(n):
        hi = b.Slice(y, b.const([1]), b.const([2**63 - 1]), axes)
        lo = b.Slice(y, b.const([0]), b.const([-1]), axes)
        y = b.Xor(hi, lo) if y.dtype == ir.DataType.BOOL else b.Sub(hi, lo)
    return y
