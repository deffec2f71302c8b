"""Activation functions and softmax."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ._base import AtenBuilder, aten_op


@aten_op("aten.relu.default")
def relu(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Relu."""
    return b.Relu(x)


@aten_op("aten.sigmoid.default")
def sigmoid(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Sigmoid."""
    return b.Sigmoid(x)


@aten_op("aten.tanh.default")
def tanh(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Tanh."""
    return b.Tanh(x)


@aten_op("aten.silu.default")
def silu(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """x * sigmoid(x)."""
    return b.Mul(x, b.Sigmoid(x))


@aten_op("aten.gelu.default")
def gelu(b: AtenBuilder, x: ir.Value, approximate: str = "none") -> ir.Value:
    """Gelu (opset 20) with the same approximate mode."""
    return b.Gelu(x, approximate=approximate)


@aten_op("aten.hardswish.default")
def hardswish(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """HardSwish."""
    return b.HardSwish(x)


@aten_op("aten.hardsigmoid.default")
def hardsigmoid(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """HardSigmoid with torch's slope 1/6."""
    return b.HardSigmoid(x, alpha=1.0 / 6, beta=0.5)


@aten_op("aten.hardtanh.default")
def hardtanh(b: AtenBuilder, x: ir.Value, min_val: float = -1.0,
             max_val: float = 1.0) -> ir.Value:
    """Clip (relu6 is hardtanh(0, 6))."""
    return b.Clip(x, b.scalar(min_val, x.dtype), b.scalar(max_val, x.dtype))


@aten_op("aten.leaky_relu.default")
def leaky_relu(b: AtenBuilder, x: ir.Value, negative_slope: float = 0.01) -> ir.Value:
    """LeakyRelu."""
    return b.LeakyRelu(x, alpha=float(negative_slope))


@aten_op("aten.elu.default")
def elu(b: AtenBuilder, x: ir.Value, alpha: float = 1.0, scale: float = 1.0,
        input_scale: float = 1.0) -> ir.Value:
    """Elu (selu/celu variants via scale and input_scale)."""
    if scale == 1 and input_scale == 1:
        return b.Elu(x, alpha=float(alpha))
    inner = x if input_scale == 1 else b.Mul(x, b.scalar(input_scale, x.dtype))
    neg = b.Mul(b.scalar(alpha, x.dtype), b.Sub(b.Exp(inner), b.scalar(1, x.dtype)))
    y = b.Where(b.Greater(x, b.scalar(0, x.dtype)), x, neg)
    return y if scale == 1 else b.Mul(y, b.scalar(scale, x.dtype))


@aten_op("aten.softplus.default")
def softplus(b: AtenBuilder, x: ir.Value, beta: float = 1.0, threshold: float = 20.0) -> ir.Value:
    """Softplus(beta * x) / beta, linear above ``threshold`` as torch."""
    bx = x if beta == 1 else b.Mul(x, b.scalar(beta, x.dtype))
    soft = b.Softplus(bx)
    soft = soft if beta == 1 else b.Div(soft, b.scalar(beta, x.dtype))
    return b.Where(b.Greater(bx, b.scalar(threshold, x.dtype)), x, soft)


@aten_op("aten.mish.default")
def mish(b: AtenBuilder, x: ir.Value) -> ir.Value:
    """Mish."""
    return b.Mish(x)


@aten_op("aten.prelu.default", "aten._prelu_kernel.default")
def prelu(b: AtenBuilder, x: ir.Value, weight: ir.Value) -> ir.Value:
    """PRelu with the per-channel slope broadcast on axis 1."""
    rank = b.rank(x)
    if rank >= 2 and b.rank(weight) == 1:
        weight = b.unsqueeze_to(weight, rank)
    return b.PRelu(x, weight)


@aten_op("aten.log_sigmoid_forward.default")
def log_sigmoid_forward(b: AtenBuilder, x: ir.Value) -> tuple[ir.Value, None]:
    """-softplus(-x)."""
    return b.Neg(b.Softplus(b.Neg(x))), None


@aten_op("aten._softmax.default", "aten.softmax.int")
def softmax(b: AtenBuilder, x: ir.Value, dim: int, half_to_float: bool | None = None,
            dtype: object = None) -> ir.Value:
    """Softmax on ``dim`` (cast first when a dtype is requested)."""
    x = b.cast(x, b.out_dtype())
    return b.Softmax(x, axis=dim)


@aten_op("aten._log_softmax.default", "aten.log_softmax.int")
def log_softmax(b: AtenBuilder, x: ir.Value, dim: int, half_to_float: bool | None = None,
                dtype: object = None) -> ir.Value:
    """LogSoftmax on ``dim``."""
    x = b.cast(x, b.out_dtype())
    return b.LogSoftmax(x, axis=dim)


@aten_op("aten.glu.default")
def glu(b: AtenBuilder, x: ir.Value, dim: int = -1) -> ir.Value:
    """First half times sigmoid of the second half along ``dim``."""
    first, second = b.split(x, dim, 2)
    return b.Mul(first, b.Sigmoid(second))


@aten_op("aten._safe_softmax.default")
def safe_softmax(b: AtenBuilder, x: ir.Value, dim: int, dtype: object = None) -> ir.Value:
    """Softmax on ``dim`` that gives 0 (not NaN) on a slice that is all -inf (a fully
    masked attention row), as SDPA's math path computes it."""
    return softmax_zero_when_empty(b, b.cast(x, b.out_dtype()), dim)


def softmax_zero_when_empty(b: AtenBuilder, x: ir.Value, dim: int) -> ir.Value:
    """Softmax of ``x`` on ``dim``, 0 where the whole slice is -inf (a fully masked row).

    Args:
        b: the builder.
        x: the scores.
        dim: the softmax axis.

    Returns:
        The probabilities.
    """
    probs = b.Softmax(x, axis=dim)
    empty = b.Equal(b.ReduceMax(x, b.const([dim]), keepdims=1), b.scalar(-np.inf, x.dtype))
    return b.Where(empty, b.scalar(0.0, x.dtype), probs)
