"""Trigonometric and hyperbolic ops composed from builtins (float32): Tan (SIN / COS), Atan,
Asin, Acos (ATAN2), Sinh, Cosh (EXP), Asinh, Acosh, Atanh (LOG, SQRT)."""

from __future__ import annotations

import onnx_ir as ir

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.ops_elementwise import binary, scalar
from modelconv.exporters.tflite.ops_math import check_float32
from modelconv.exporters.tflite.registry import tflite_lowering


def _op(ctx: LoweringContext, code: str, ins: list[int], name: str) -> int:
    """``code`` on ``ins`` into a new tensor shaped like the largest of them (the others are
    scalars)."""
    out = ctx.like(max(ins, key=lambda t: len(ctx.t(t).shape)), name)
    if len(ins) == 2 and code in ("ADD", "SUB", "MUL", "DIV"):
        binary(ctx, code, ins[0], ins[1], out)
    else:
        ctx.emit(code, ins, [out])
    return out


def _one_minus_sq_root(ctx: LoweringContext, x: int) -> int:
    """sqrt((1 - x) * (1 + x)): sqrt(1 - x^2) without cancellation near |x| = 1."""
    one = scalar(ctx, x, 1.0, "one")
    return _op(ctx, "SQRT", [_op(ctx, "MUL", [_op(ctx, "SUB", [one, x], "one_minus"),
                                              _op(ctx, "ADD", [one, x], "one_plus")],
                                 "one_minus_sq")], "cos_of_asin")


@tflite_lowering("Tan", check=check_float32)
def lower_tan(ctx: LoweringContext, node: ir.Node) -> None:
    """Tan -> SIN(x) / COS(x)."""
    x = ctx.inp(node, 0)
    binary(ctx, "DIV", _op(ctx, "SIN", [x], "sin"), _op(ctx, "COS", [x], "cos"), ctx.out(node))


@tflite_lowering("Atan", check=check_float32)
def lower_atan(ctx: LoweringContext, node: ir.Node) -> None:
    """Atan -> ATAN2(x, FILL(shape, 1))."""
    x = ctx.inp(node, 0)
    ones = ctx.like(x, "ones")  # atan2.cc takes no broadcast: FILL x's shape with 1
    ctx.emit("FILL", [ctx.i32(ctx.t(x).shape), scalar(ctx, x, 1.0, "one")], [ones])
    ctx.emit("ATAN2", [x, ones], [ctx.out(node)])


@tflite_lowering("Asin", check=check_float32)
def lower_asin(ctx: LoweringContext, node: ir.Node) -> None:
    """Asin -> ATAN2(x, sqrt(1 - x^2)) (NaN outside [-1, 1], from SQRT)."""
    x = ctx.inp(node, 0)
    ctx.emit("ATAN2", [x, _one_minus_sq_root(ctx, x)], [ctx.out(node)])


@tflite_lowering("Acos", check=check_float32)
def lower_acos(ctx: LoweringContext, node: ir.Node) -> None:
    """Acos -> ATAN2(sqrt(1 - x^2), x) (NaN outside [-1, 1], from SQRT)."""
    x = ctx.inp(node, 0)
    ctx.emit("ATAN2", [_one_minus_sq_root(ctx, x), x], [ctx.out(node)])


@tflite_lowering("Sinh", "Cosh", check=check_float32)
def lower_sinh_cosh(ctx: LoweringContext, node: ir.Node) -> None:
    """Sinh -> (EXP(x) - EXP(-x)) / 2, Cosh -> (EXP(x) + EXP(-x)) / 2."""
    x = ctx.inp(node, 0)
    up = _op(ctx, "EXP", [x], "exp")
    down = _op(ctx, "EXP", [_op(ctx, "NEG", [x], "neg")], "exp_neg")
    both = _op(ctx, "SUB" if node.op_type == "Sinh" else "ADD", [up, down], "exp_sum")
    binary(ctx, "MUL", both, scalar(ctx, x, 0.5, "half"), ctx.out(node))


@tflite_lowering("Asinh", check=check_float32)
def lower_asinh(ctx: LoweringContext, node: ir.Node) -> None:
    """Asinh -> sign(x) * LOG(|x| + sqrt(x^2 + 1)) (odd, so no cancellation for x < 0)."""
    x = ctx.inp(node, 0)
    a = _op(ctx, "ABS", [x], "abs")
    root = _op(ctx, "SQRT", [_op(ctx, "ADD", [_op(ctx, "MUL", [a, a], "sq"),
                                             scalar(ctx, x, 1.0, "one")], "sq_plus_1")], "root")
    log = _op(ctx, "LOG", [_op(ctx, "ADD", [a, root], "sum")], "log")
    binary(ctx, "MUL", log, _op(ctx, "SIGN", [x], "sign"), ctx.out(node))


@tflite_lowering("Acosh", check=check_float32)
def lower_acosh(ctx: LoweringContext, node: ir.Node) -> None:
    """Acosh -> LOG(x + sqrt((x - 1)(x + 1))) (NaN below 1, from SQRT)."""
    x = ctx.inp(node, 0)
    one = scalar(ctx, x, 1.0, "one")
    root = _op(ctx, "SQRT", [_op(ctx, "MUL", [_op(ctx, "SUB", [x, one], "minus_1"),
                                             _op(ctx, "ADD", [x, one], "plus_1")], "sq_minus_1")],
               "root")
    ctx.emit("LOG", [_op(ctx, "ADD", [x, root], "sum")], [ctx.out(node)])


@tflite_lowering("Atanh", check=check_float32)
def lower_atanh(ctx: LoweringContext, node: ir.Node) -> None:
    """Atanh -> 0.5 * LOG((1 + x) / (1 - x))."""
    x = ctx.inp(node, 0)
    one = scalar(ctx, x, 1.0, "one")
    ratio = _op(ctx, "DIV", [_op(ctx, "ADD", [one, x], "one_plus"),
                             _op(ctx, "SUB", [one, x], "one_minus")], "ratio")
    binary(ctx, "MUL", _op(ctx, "LOG", [ratio], "log"), scalar(ctx, x, 0.5, "half"),
           ctx.out(node))
