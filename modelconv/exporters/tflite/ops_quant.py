"""QuantizeLinear / DequantizeLinear -> QUANTIZE / DEQUANTIZE with the node's parameters.

Constant DequantizeLinear nodes (weights, biases) are folded before lowering
(:mod:`modelconv.passes.tflite.fold_dequantize`); what reaches these lowerings are run-time
tensors. The lowered graph is a float graph with explicit QUANTIZE / DEQUANTIZE ops that
computes exactly what the QDQ model computes; :mod:`.qdq` then moves the ops between them to
LiteRT's int8 kernels. LiteRT's quantize.cc / dequantize.cc take int8, uint8 and int16
(int16 symmetric: zero point 0) with per-tensor or per-axis parameters. Run-time scales /
zero points and uint16 are computed with float ops as ONNX defines them (DIV, ROUND half to
even, saturation, CAST); float8, int4/int2 and block-wise quantization are refused by the
checks below.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext, QuantParams
from modelconv.exporters.tflite.kernels import value_dtype
from modelconv.exporters.tflite.registry import attr, tflite_lowering
from modelconv.passes._edit import const_array
from modelconv.passes.tflite.integer_ops import INTEGER_OPS
from modelconv.passes.tflite.integer_ops import unsupported_reason as integer_reason

#: integer types LiteRT's QUANTIZE writes and DEQUANTIZE reads
QUANT_DTYPES = ("int8", "uint8", "int16")
#: further types Q / DQ are computed for with float ops (as for run-time parameters) and CAST
ARITHMETIC_DTYPES = ("uint16",)


def _const_input(node: ir.Node, i: int) -> np.ndarray | None:
    return const_array(node.inputs[i]) if len(node.inputs) > i and node.inputs[i] is not None \
        else None


def _param_reason(node: ir.Node, qtype: str | None) -> str | None:
    """Why the scale / zero point / layout of a Q or DQ node has no TFLite form."""
    block = int(attr(node, "block_size", 0) or 0)  # type: ignore[call-overload]
    if block:
        return (f"block-wise quantization (block_size={block}): TFLite has per-tensor and "
                "per-axis parameters only")
    if qtype not in QUANT_DTYPES and qtype not in ARITHMETIC_DTYPES:
        return (f"{qtype} quantized type: TFLite quantizes to int8, uint8, int16 (and uint16 "
                "with float ops)")
    scale_type = value_dtype(node.inputs[1]) if len(node.inputs) > 1 else None
    if scale_type not in (None, "float32"):
        return f"a {scale_type} scale (float32 only)"
    rank = _rank(node.inputs[1]) if len(node.inputs) > 1 else None
    if rank is None or rank > 1:
        return "a scale of unknown rank or rank > 1"
    scale = _const_input(node, 1)
    zero = _const_input(node, 2)
    if scale is None or (len(node.inputs) > 2 and node.inputs[2] is not None and zero is None):
        return None  # run-time parameters: computed with float ops (lower_* below)
    if zero is not None and zero.size != scale.size:
        return "scale / zero point shapes TFLite cannot express"
    if qtype == "int16" and zero is not None and np.any(zero != 0):
        return "int16 with a non-zero zero point (TFLite int16 quantization is symmetric)"
    return None


def _rank(value: ir.Value | None) -> int | None:
    return None if value is None or value.shape is None else len(value.shape)


def runtime_params(node: ir.Node) -> bool:
    """True when the scale or the zero point of a Q / DQ node is computed at run time."""
    return _const_input(node, 1) is None or (
        len(node.inputs) > 2 and node.inputs[2] is not None and _const_input(node, 2) is None)


def _broadcastable(ctx: LoweringContext, node: ir.Node, i: int, rank: int,
                   dtype: np.dtype) -> int:
    """Input ``i`` (a scale or zero point) as ``dtype``, shaped to broadcast along ``axis``."""
    from modelconv.exporters.tflite.kernels import cast

    t = ctx.inp(node, i)
    if ctx.t(t).dtype != dtype:
        t = cast(ctx, t, dtype)
    shape = ctx.t(t).shape
    if len(shape) == 1 and rank > 1:
        axis = int(attr(node, "axis", 1)) % rank  # type: ignore[call-overload]
        target = [1] * rank
        target[axis] = shape[0]
        t = ctx.reshape(t, target, "along_axis")
    return t


def quant_params(node: ir.Node, rank: int) -> QuantParams:
    """The TFLite quantization parameters of a Q / DQ node (constant scale / zero point).

    Args:
        node: a QuantizeLinear or DequantizeLinear node its check accepted.
        rank: rank of the quantized tensor (for the per-axis dimension).

    Returns:
        Scale, zero point and quantized dimension.
    """
    scale = _const_input(node, 1)
    assert scale is not None
    zero = _const_input(node, 2)
    z = np.zeros(scale.size, np.int64) if zero is None else zero.astype(np.int64).reshape(-1)
    axis = int(attr(node, "axis", 1)) % max(rank, 1) if scale.ndim == 1 else 0  # type: ignore[call-overload]
    return QuantParams([float(v) for v in scale.reshape(-1)], [int(v) for v in z], axis)


def quantized_type(node: ir.Node) -> str | None:
    """The integer type a QuantizeLinear writes (zero point's type, else ``output_dtype``,
    else uint8)."""
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        return value_dtype(node.inputs[2])
    out = value_dtype(node.outputs[0])
    return out or "uint8"


def check_quantize(node: ir.Node) -> str | None:
    """QuantizeLinear: float32 input, int8/uint8/int16 output, constant parameters."""
    src = value_dtype(node.inputs[0])
    if src not in (None, "float32"):
        return f"{src} input (TFLite QUANTIZE reads float32)"
    return _param_reason(node, quantized_type(node))


def check_dequantize(node: ir.Node) -> str | None:
    """DequantizeLinear of a run-time int8/uint8/int16 tensor to float32."""
    out = value_dtype(node.outputs[0])
    if out not in (None, "float32"):
        return f"{out} output (TFLite DEQUANTIZE writes float32)"
    return _param_reason(node, value_dtype(node.inputs[0]))


@tflite_lowering("QuantizeLinear", check=check_quantize)
def lower_quantize(ctx: LoweringContext, node: ir.Node) -> None:
    """QuantizeLinear -> QUANTIZE; the output tensor carries the node's parameters."""
    x, y = ctx.inp(node, 0), ctx.out(node)
    if runtime_params(node) or ctx.t(y).dtype.name in ARITHMETIC_DTYPES:
        _quantize_arithmetic(ctx, node, x, y)
        return
    ctx.t(y).quant = quant_params(node, len(ctx.t(y).shape))
    ctx.emit("QUANTIZE", [x], [y])


_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
           "uint16": (0, 65535)}


def _quantize_arithmetic(ctx: LoweringContext, node: ir.Node, x: int, y: int) -> None:
    """ONNX's definition with run-time parameters: saturate(round_half_even(x / s) + zp),
    in float32 ops (ROUND rounds half to even), then CAST to the integer type."""
    from modelconv.exporters.tflite.kernels import cast
    from modelconv.exporters.tflite.ops_elementwise import binary, scalar

    rank, f32 = len(ctx.t(x).shape), np.dtype(np.float32)
    r = ctx.like(x, "quotient")
    binary(ctx, "DIV", x, _broadcastable(ctx, node, 1, rank, f32), r)
    rounded = ctx.like(r, "rounded", list(ctx.t(r).shape))
    ctx.emit("ROUND", [r], [rounded])
    shape = ctx.t(y).shape
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        shifted = ctx.tmp("shifted", np.float32, shape)
        binary(ctx, "ADD", rounded, _broadcastable(ctx, node, 2, rank, f32), shifted)
        rounded = shifted
    lo, hi = _RANGES[ctx.t(y).dtype.name]
    low, clipped = ctx.tmp("clipped_low", np.float32, shape), ctx.tmp("clipped", np.float32,
                                                                      shape)
    ctx.emit("MAXIMUM", [rounded, scalar(ctx, rounded, lo, "qmin")], [low])
    ctx.emit("MINIMUM", [low, scalar(ctx, rounded, hi, "qmax")], [clipped])
    cast(ctx, clipped, ctx.t(y).dtype, y)


@tflite_lowering("DequantizeLinear", check=check_dequantize)
def lower_dequantize(ctx: LoweringContext, node: ir.Node) -> None:
    """DequantizeLinear -> DEQUANTIZE of a tensor carrying the node's parameters.

    The input's parameters are set on it (an input or a plain integer tensor has none); when
    it already carries others (two DQs of one tensor), a RESHAPE copies it under the new ones."""
    x = ctx.inp(node, 0)
    if runtime_params(node) or ctx.t(x).dtype.name in ARITHMETIC_DTYPES:
        _dequantize_arithmetic(ctx, node, x, ctx.out(node))
        return
    q = quant_params(node, len(ctx.t(x).shape))
    have = ctx.t(x).quant
    if have is None and ctx.t(x).data is None:
        ctx.t(x).quant = q
    elif have != q:
        x = ctx.reshape(x, ctx.t(x).shape, "requantized")
        ctx.t(x).quant = q
    ctx.emit("DEQUANTIZE", [x], [ctx.out(node)])


def _dequantize_arithmetic(ctx: LoweringContext, node: ir.Node, x: int, y: int) -> None:
    """ONNX's definition with run-time parameters: (float(x) - float(zp)) * s."""
    from modelconv.exporters.tflite.kernels import cast
    from modelconv.exporters.tflite.ops_elementwise import binary

    rank, f32 = len(ctx.t(x).shape), np.dtype(np.float32)
    xf = cast(ctx, x, f32)
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        centred = ctx.like(xf, "centred")
        binary(ctx, "SUB", xf, _broadcastable(ctx, node, 2, rank, f32), centred)
        xf = centred
    binary(ctx, "MUL", xf, _broadcastable(ctx, node, 1, rank, f32), y)


@tflite_lowering(*INTEGER_OPS, check=integer_reason)
def lower_integer_op(ctx: LoweringContext, node: ir.Node) -> None:
    """QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, DynamicQuantizeLinear are
    rewritten into QDQ form before lowering (:mod:`modelconv.passes.tflite.integer_ops`);
    one reaching here was refused by its check."""
    raise ExportError(f"internal error: {node.op_type} ({node.name}) was not rewritten "
                      "before lowering")
