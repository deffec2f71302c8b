"""Element-wise ops, comparisons and activations."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, dtype_reason, emit_typed, value_dtype
from modelconv.exporters.tflite.registry import attr, output_used, tflite_lowering
from modelconv.exporters.tflite.writer import tensor_type

_BINARY = {
    "Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV", "Pow": "POW", "Max": "MAXIMUM",
    "Min": "MINIMUM", "Sum": "ADD", "Equal": "EQUAL", "Greater": "GREATER",
    "GreaterOrEqual": "GREATER_EQUAL", "Less": "LESS", "LessOrEqual": "LESS_EQUAL",
    "And": "LOGICAL_AND", "Or": "LOGICAL_OR", "Mod": "FLOOR_MOD", "Xor": "NOT_EQUAL",
}
_FUSABLE = {"ADD": s.AddOptionsT, "SUB": s.SubOptionsT, "MUL": s.MulOptionsT, "DIV": s.DivOptionsT}
_UNARY = {
    "Relu": "RELU", "Sigmoid": "LOGISTIC", "Tanh": "TANH", "Sqrt": "SQRT", "Exp": "EXP",
    "Log": "LOG", "Abs": "ABS", "Neg": "NEG", "Sin": "SIN", "Cos": "COS", "Floor": "FLOOR",
    "Ceil": "CEIL", "Round": "ROUND", "Sign": "SIGN", "Not": "LOGICAL_NOT",
    "HardSwish": "HARD_SWISH",
}


def binary(ctx: LoweringContext, code: str, a: int, b: int, dst: int, act: int = 0) -> None:
    """Emit a two-input element-wise op (with fused activation when the op allows one)."""
    opts = None
    if code in _FUSABLE:
        opts = _FUSABLE[code]()
        opts.fusedActivationFunction = act
    ctx.emit(code, [a, b], [dst], opts)


def scalar(ctx: LoweringContext, like: int, value: float, name: str) -> int:
    """A scalar constant with the dtype of tensor ``like``."""
    return ctx.const(np.asarray(value, ctx.t(like).dtype), name)


def check_binary(node: ir.Node) -> str | None:
    """FLOOR_MOD is Python-style modulo (no fmod=1); the kernel must take the dtype; POW with
    a float exponent on an integer base needs the base to fit float32."""
    if node.op_type == "Mod" and attr(node, "fmod", 0):
        return "fmod=1"
    if node.op_type == "Pow":
        return _pow_reason(node)
    return dtype_reason(_BINARY[node.op_type], *node.inputs)


def _pow_reason(node: ir.Node) -> str | None:
    base, exp = (value_dtype(v) for v in node.inputs[:2])
    if base == exp or base == "float32":
        return dtype_reason("POW", node.inputs[0])
    if base == "int32" and exp == "float32":
        return None  # computed in float32 and truncated, as onnxruntime does
    if base == "int32" and exp is not None and exp.startswith(("int", "uint")):
        e = node.inputs[1].const_value if node.inputs[1] is not None else None
        if e is not None and np.abs(e.numpy()).max(initial=0) < 2**31:
            return None
    return f"{base} base with {exp} exponent: no LiteRT POW kernel"


@tflite_lowering(*_BINARY, check=check_binary)
def lower_binary(ctx: LoweringContext, node: ir.Node) -> None:
    """Add/Sub/Mul/Div/Pow/Max/Min/Sum/comparisons/logical -> the TFLite builtin (chained).

    Float uses the op directly (with its fused activation); other dtypes go through
    :func:`emit_typed` (computed in a dtype the kernel takes unquantized)."""
    code = _BINARY[node.op_type]
    if node.op_type == "Mod" and "fmod" in node.attributes and node.attributes["fmod"].value:
        raise ExportError("Mod with fmod=1 is not supported by TFLite")
    ins = [ctx.inp(node, i) for i in range(len(node.inputs))]
    dst = ctx.out(node)
    if node.op_type == "Pow":
        _pow(ctx, ins[0], ins[1], dst)
        return
    if ctx.t(ins[0]).dtype != np.float32:
        acc = ins[0]
        for k, other in enumerate(ins[1:]):
            out = dst if k == len(ins) - 2 else ctx.like(dst, f"partial{k}")
            emit_typed(ctx, code, [acc, other], out, _FUSABLE[code]() if code in _FUSABLE
                       else None)
            acc = out
        if len(ins) == 1:
            ctx.reshape(acc, ctx.t(dst).shape, dst=dst)
        return
    acc = ins[0]
    for k, other in enumerate(ins[1:]):
        last = k == len(ins) - 2
        out = dst if last else ctx.like(dst, f"partial{k}")
        binary(ctx, code, acc, other, out, ctx.activation(node) if last else 0)
        acc = out
    if len(ins) == 1:
        ctx.reshape(acc, ctx.t(dst).shape, dst=dst)


def _pow(ctx: LoweringContext, base: int, exp: int, dst: int) -> None:
    """POW with both operands in one dtype the kernel takes (mixed ONNX Pow is cast)."""
    b, e = ctx.t(base).dtype, ctx.t(exp).dtype
    if b == e:
        emit_typed(ctx, "POW", [base, exp], dst)
    elif b == np.float32:
        ctx.emit("POW", [base, cast(ctx, exp, np.dtype(np.float32))], [dst])
    elif e == np.float32:  # integer base, float exponent: pow in float, truncate
        y = ctx.like(exp, "pow_float", ctx.t(dst).shape)
        ctx.emit("POW", [cast(ctx, base, np.dtype(np.float32)), exp], [y])
        cast(ctx, y, b, dst)
    else:
        ctx.emit("POW", [base, cast(ctx, exp, b)], [dst])


def check_unary(node: ir.Node) -> str | None:
    """Integer Abs / Neg / Sign / Relu: a kernel (or exact rewrite) must take the dtype."""
    name = value_dtype(node.inputs[0])
    if name in (None, "float32") or node.op_type == "Not":
        return None
    if node.op_type == "Relu" or (node.op_type == "Abs" and name in ("int64", "uint8", "uint16",
                                                                      "uint32")):
        return dtype_reason("MAXIMUM", node.inputs[0])  # MAXIMUM(x, 0) / identity / |x|
    return dtype_reason(_UNARY[node.op_type], node.inputs[0])


@tflite_lowering(*_UNARY, check=check_unary)
def lower_unary(ctx: LoweringContext, node: ir.Node) -> None:
    """One-input builtins (RELU, LOGISTIC, TANH, SQRT, EXP, LOG, ABS, NEG, HARD_SWISH, ...).

    Integer Relu is MAXIMUM(x, 0); Abs of an unsigned type is the identity and of int64
    MAXIMUM(x, NEG(x)); other integer dtypes go through :func:`emit_typed`."""
    x, dst, code = ctx.inp(node, 0), ctx.out(node), _UNARY[node.op_type]
    dtype = ctx.t(x).dtype
    if dtype == np.float32 or code == "LOGICAL_NOT":
        ctx.emit(code, [x], [dst])
    elif code == "RELU":
        emit_typed(ctx, "MAXIMUM", [x, scalar(ctx, x, 0, "zero")], dst)
    elif code == "ABS" and dtype.kind == "u":
        ctx.reshape(x, ctx.t(dst).shape, dst=dst)
    elif code == "ABS" and dtype == np.int64:
        neg = ctx.like(x, "negated")
        ctx.emit("NEG", [x], [neg])
        ctx.emit("MAXIMUM", [x, neg], [dst])
    else:
        emit_typed(ctx, code, [x], dst)


def check_dropout(node: ir.Node) -> str | None:
    """Inference-mode Dropout only: training_mode absent or constant false (a training
    Dropout zeroes and rescales at random; the identity would be wrong). Its mask output is
    then all True."""
    if node.op_type != "Dropout":
        return None
    mode = node.inputs[2] if len(node.inputs) > 2 else None
    if mode is None:
        return None
    if mode.const_value is None:
        return "run-time training_mode"
    return "training_mode=True" if bool(np.asarray(mode.const_value.numpy()).any()) else None


@tflite_lowering("Identity", "Dropout", check=check_dropout)
def lower_identity(ctx: LoweringContext, node: ir.Node) -> None:
    """Identity (and inference-mode Dropout) emit nothing: the output is the input tensor
    (an inference Dropout's mask is the constant all-True tensor)."""
    x = ctx.inp(node, 0)
    ctx.alias(node.outputs[0], x)
    if node.op_type == "Dropout" and output_used(node, 1):
        ctx.alias(node.outputs[1], ctx.const(np.ones(ctx.t(x).shape, np.bool_), "mask"))


@tflite_lowering("Mean")
def lower_mean(ctx: LoweringContext, node: ir.Node) -> None:
    """Variadic Mean -> ADD chain + MUL(1/n)."""
    ins = [ctx.inp(node, i) for i in range(len(node.inputs))]
    dst = ctx.out(node)
    acc = ins[0]
    for k, other in enumerate(ins[1:]):
        out = ctx.like(dst, f"sum{k}")
        binary(ctx, "ADD", acc, other, out)
        acc = out
    binary(ctx, "MUL", acc, scalar(ctx, dst, 1.0 / len(ins), "inv_n"), dst)


@tflite_lowering("Softsign")
def lower_softsign(ctx: LoweringContext, node: ir.Node) -> None:
    """Softsign -> x / (1 + |x|)."""
    x = ctx.inp(node, 0)
    a, d = ctx.like(x, "abs"), ctx.like(x, "denominator")
    ctx.emit("ABS", [x], [a])
    binary(ctx, "ADD", a, scalar(ctx, x, 1.0, "one"), d)
    binary(ctx, "DIV", x, d, ctx.out(node))


@tflite_lowering("Mish")
def lower_mish(ctx: LoweringContext, node: ir.Node) -> None:
    """Mish -> x * tanh(log(1 + exp(x)))."""
    x = ctx.inp(node, 0)
    e, e1, sp, th = (ctx.like(x, n) for n in ("exp", "exp_plus_1", "softplus", "tanh"))
    ctx.emit("EXP", [x], [e])
    binary(ctx, "ADD", e, scalar(ctx, x, 1.0, "one"), e1)
    ctx.emit("LOG", [e1], [sp])
    ctx.emit("TANH", [sp], [th])
    binary(ctx, "MUL", x, th, ctx.out(node))


@tflite_lowering("Reciprocal")
def lower_reciprocal(ctx: LoweringContext, node: ir.Node) -> None:
    """Reciprocal -> DIV(1, x)."""
    x = ctx.inp(node, 0)
    binary(ctx, "DIV", scalar(ctx, x, 1.0, "one"), x, ctx.out(node))


def check_clip(node: ir.Node) -> str | None:
    """Clip is MAXIMUM / MINIMUM: the kernel must take the dtype."""
    return dtype_reason("MAXIMUM", node.inputs[0])


@tflite_lowering("Clip", check=check_clip)
def lower_clip(ctx: LoweringContext, node: ir.Node) -> None:
    """Clip -> RELU / RELU6 / RELU_N1_TO_1 when exact, else MAXIMUM + MINIMUM."""
    x = ctx.inp(node, 0)
    lo = ctx.array(node.inputs[1]) if len(node.inputs) > 1 else None
    hi = ctx.array(node.inputs[2]) if len(node.inputs) > 2 else None
    dst = ctx.out(node)
    bounds = (None if lo is None else float(lo), None if hi is None else float(hi))
    named = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, None): "RELU"}
    if bounds in named and ctx.t(x).dtype == np.float32:
        ctx.emit(named[bounds], [x], [dst])
        return
    cur = x
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        out = dst if not (len(node.inputs) > 2 and node.inputs[2] is not None) else ctx.like(
            x, "clip_lo")
        emit_typed(ctx, "MAXIMUM", [cur, ctx.inp(node, 1)], out)
        cur = out
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        emit_typed(ctx, "MINIMUM", [cur, ctx.inp(node, 2)], dst)
        cur = dst
    if cur != dst:
        ctx.reshape(cur, ctx.t(dst).shape, dst=dst)


@tflite_lowering("LeakyRelu")
def lower_leaky_relu(ctx: LoweringContext, node: ir.Node) -> None:
    """LeakyRelu -> LEAKY_RELU(alpha)."""
    opts = s.LeakyReluOptionsT()
    opts.alpha = node.attributes["alpha"].value if "alpha" in node.attributes else 0.01
    ctx.emit("LEAKY_RELU", [ctx.inp(node, 0)], [ctx.out(node)], opts)


@tflite_lowering("PRelu")
def lower_prelu(ctx: LoweringContext, node: ir.Node) -> None:
    """PRelu -> PRELU with the slope broadcast to the input's trailing dims."""
    x = ctx.inp(node, 0)
    slope = ctx.array(node.inputs[1])
    rank = len(ctx.t(x).shape)
    if slope is not None:
        slope = slope.reshape((1,) * (rank - slope.ndim) + slope.shape)
        while slope.ndim > 1 and slope.shape[0] == 1:
            slope = slope[0]
        alpha = ctx.const(slope.astype(np.float32), "slope")
    else:
        alpha = ctx.inp(node, 1)
    ctx.emit("PRELU", [x, alpha], [ctx.out(node)])


@tflite_lowering("HardSigmoid")
def lower_hard_sigmoid(ctx: LoweringContext, node: ir.Node) -> None:
    """HardSigmoid -> max(0, min(1, alpha * x + beta)) as MUL, ADD, MINIMUM, RELU."""
    x = ctx.inp(node, 0)
    a = {k: v.value for k, v in node.attributes.items()}
    dst = ctx.out(node)
    scaled, shifted, capped = (ctx.like(x, n) for n in ("scaled", "shifted", "capped"))
    binary(ctx, "MUL", x, scalar(ctx, x, a.get("alpha", 0.2), "alpha"), scaled)
    binary(ctx, "ADD", scaled, scalar(ctx, x, a.get("beta", 0.5), "beta"), shifted)
    ctx.emit("MINIMUM", [shifted, scalar(ctx, x, 1.0, "one")], [capped])
    ctx.emit("RELU", [capped], [dst])


@tflite_lowering("Elu")
def lower_elu(ctx: LoweringContext, node: ir.Node) -> None:
    """Elu -> ELU (alpha 1) or SELECT_V2(x > 0, x, alpha * (exp(x) - 1))."""
    x = ctx.inp(node, 0)
    alpha = node.attributes["alpha"].value if "alpha" in node.attributes else 1.0
    dst = ctx.out(node)
    if alpha == 1.0:
        ctx.emit("ELU", [x], [dst])
        return
    e, em1, neg = (ctx.like(x, n) for n in ("exp", "expm1", "negative"))
    ctx.emit("EXP", [x], [e])
    binary(ctx, "SUB", e, scalar(ctx, x, 1.0, "one"), em1)
    binary(ctx, "MUL", em1, scalar(ctx, x, alpha, "alpha"), neg)
    cond = ctx.tmp("positive", np.bool_, ctx.t(x).shape)
    ctx.emit("GREATER", [x, scalar(ctx, x, 0.0, "zero")], [cond])
    ctx.emit("SELECT_V2", [cond, x, neg], [dst])


@tflite_lowering("Softplus")
def lower_softplus(ctx: LoweringContext, node: ir.Node) -> None:
    """Softplus -> LOG(EXP(x) + 1)."""
    x = ctx.inp(node, 0)
    e, e1 = ctx.like(x, "exp"), ctx.like(x, "exp_plus_1")
    ctx.emit("EXP", [x], [e])
    binary(ctx, "ADD", e, scalar(ctx, x, 1.0, "one"), e1)
    ctx.emit("LOG", [e1], [ctx.out(node)])


@tflite_lowering("Gelu")
def lower_gelu(ctx: LoweringContext, node: ir.Node) -> None:
    """Gelu -> GELU (approximate for approximate='tanh')."""
    opts = s.GeluOptionsT()
    approx = node.attributes["approximate"].value if "approximate" in node.attributes else "none"
    opts.approximate = approx == "tanh"
    ctx.emit("GELU", [ctx.inp(node, 0)], [ctx.out(node)], opts)


@tflite_lowering("Erf")
def lower_erf(ctx: LoweringContext, node: ir.Node) -> None:
    """Erf has no builtin: Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7) from basic ops."""
    x = ctx.inp(node, 0)
    p, coeffs = 0.3275911, [1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592]
    t = [ctx.like(x, f"erf{i}") for i in range(16)]
    ctx.emit("ABS", [x], [t[0]])
    binary(ctx, "MUL", t[0], scalar(ctx, x, p, "p"), t[1])
    binary(ctx, "ADD", t[1], scalar(ctx, x, 1.0, "one"), t[2])
    binary(ctx, "DIV", scalar(ctx, x, 1.0, "one"), t[2], t[3])  # t = 1 / (1 + p|x|)
    acc, k = scalar(ctx, x, coeffs[0], "a5"), 4
    for i, c in enumerate(coeffs[1:]):
        binary(ctx, "MUL", acc, t[3], t[k])
        binary(ctx, "ADD", t[k], scalar(ctx, x, c, f"a{4 - i}"), t[k + 1])
        acc, k = t[k + 1], k + 2
    binary(ctx, "MUL", acc, t[3], t[k])  # poly(t) * t
    binary(ctx, "MUL", t[0], t[0], t[k + 1])
    ctx.emit("NEG", [t[k + 1]], [t[k + 2]])
    ctx.emit("EXP", [t[k + 2]], [t[k + 3]])  # exp(-x^2)
    y = ctx.like(x, "erf_abs")
    mul = ctx.like(x, "erf_tail")
    binary(ctx, "MUL", t[k], t[k + 3], mul)
    binary(ctx, "SUB", scalar(ctx, x, 1.0, "one"), mul, y)
    sign = ctx.like(x, "erf_sign")
    ctx.emit("SIGN", [x], [sign])
    binary(ctx, "MUL", y, sign, ctx.out(node))


def _softmax_like(ctx: LoweringContext, node: ir.Node, code: str) -> None:
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    axis = (node.attributes["axis"].value if "axis" in node.attributes else -1) % rank
    opts = s.SoftmaxOptionsT() if code == "SOFTMAX" else None
    if opts is not None:
        opts.beta = 1.0
    dst = ctx.out(node)
    if axis == rank - 1:
        ctx.emit(code, [x], [dst], opts)
        return
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = ctx.transpose(x, perm, "axis_last")
    y = ctx.like(moved, "softmax")
    ctx.emit(code, [moved], [y], opts)
    inv = [perm.index(i) for i in range(rank)]
    ctx.transpose(y, inv, dst=dst)


def check_softmax(node: ir.Node) -> str | None:
    """SOFTMAX / LOG_SOFTMAX on float32 only: on float16 LiteRT's result is not ONNX's (which
    rounds exp, sum and quotient to float16 each; measured 1 ulp off, outside the node tests'
    tolerance), and the float32 detour is exact only for single-rounding ops."""
    name = value_dtype(node.inputs[0])
    return None if name in (None, "float32") else f"{name} inputs (float32 only)"


@tflite_lowering("Softmax", check=check_softmax)
def lower_softmax(ctx: LoweringContext, node: ir.Node) -> None:
    """Softmax -> SOFTMAX on the last axis (TRANSPOSE around it for other axes)."""
    _softmax_like(ctx, node, "SOFTMAX")


@tflite_lowering("LogSoftmax", check=check_softmax)
def lower_log_softmax(ctx: LoweringContext, node: ir.Node) -> None:
    """LogSoftmax -> LOG_SOFTMAX on the last axis."""
    _softmax_like(ctx, node, "LOG_SOFTMAX")


@tflite_lowering("Where")
def lower_where(ctx: LoweringContext, node: ir.Node) -> None:
    """Where -> SELECT_V2 (broadcasting)."""
    ins = [ctx.inp(node, i) for i in range(3)]
    ctx.emit("SELECT_V2", ins, [ctx.out(node)])


@tflite_lowering("Cast")
def lower_cast(ctx: LoweringContext, node: ir.Node) -> None:
    """Cast -> CAST (or nothing when the TFLite dtypes already agree)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    src_t, dst_t = ctx.t(x), ctx.t(dst)
    if src_t.dtype == dst_t.dtype:
        ctx.reshape(x, dst_t.shape, dst=dst)
        return
    opts = s.CastOptionsT()
    opts.inDataType, opts.outDataType = tensor_type(src_t.dtype), tensor_type(dst_t.dtype)
    ctx.emit("CAST", [x], [dst], opts)
