"""3-D convolutions: Conv -> CONV_3D, ConvTranspose -> CONV_3D_TRANSPOSE (rank-5 input).

The layout pass keeps rank-5 tensors channels-first (NCDHW), so the input is TRANSPOSEd to
NDHWC, the kernel computes there and the result is TRANSPOSEd back. LiteRT's kernels
(conv3d.cc, conv3d_transpose.cc) take float32 only, no groups, and SAME/VALID padding:
ONNX pads are an explicit PAD before a VALID CONV_3D, and a crop (SLICE) of the full VALID
CONV_3D_TRANSPOSE result.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import value_dtype

_TO_LAST, _TO_FIRST = [0, 2, 3, 4, 1], [0, 4, 1, 2, 3]


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    a = node.attributes.get(name)
    return default if a is None else [int(v) for v in a.value]


def conv3d_reason(node: ir.Node) -> str | None:
    """Why a rank-5 Conv / ConvTranspose cannot be written for LiteRT, or None.

    Args:
        node: the Conv or ConvTranspose node (rank-5 input).

    Returns:
        The reason, or None when CONV_3D / CONV_3D_TRANSPOSE can compute it.
    """
    x, weight = node.inputs[0], node.inputs[1]
    if weight is None or weight.const_value is None or weight.shape is None:
        return "3-D with a run-time weight (CONV_3D reads a constant filter here)"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and bias.const_value is None:
        return "3-D with a run-time bias"
    if value_dtype(x) not in (None, "float32"):
        return f"3-D with {value_dtype(x)} input (LiteRT's CONV_3D is float32 only)"
    if int(node.attributes["group"].value if "group" in node.attributes else 1) != 1:
        return "3-D with groups (LiteRT's CONV_3D has no groups)"
    if x is None or x.shape is None or not all(isinstance(d, int) for d in x.shape):
        return "3-D with a dynamic input shape"
    if node.op_type == "ConvTranspose" and (any(_ints(node, "output_padding", [0, 0, 0]))
                                            or "output_shape" in node.attributes):
        return "3-D with output_padding / output_shape"
    return None


def _pads(node: ir.Node, spatial: list[int], kernel: list[int], strides: list[int],
          dilations: list[int]) -> list[int]:
    """ONNX [d0, h0, w0, d1, h1, w1] pads of a Conv, auto_pad resolved."""
    auto = node.attributes["auto_pad"].value if "auto_pad" in node.attributes else "NOTSET"
    if auto == "VALID":
        return [0] * 6
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, st, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / st) - 1) * st + (k - 1) * d + 1 - size, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return [*begin, *end]
    return _ints(node, "pads", [0] * 6)


def _options(strides: list[int], dilations: list[int], act: int) -> s.Conv3DOptionsT:
    opts = s.Conv3DOptionsT()
    opts.padding = s.Padding.VALID
    opts.strideD, opts.strideH, opts.strideW = strides
    opts.dilationDFactor, opts.dilationHFactor, opts.dilationWFactor = dilations
    opts.fusedActivationFunction = act
    return opts


def _prologue(ctx: LoweringContext, node: ir.Node
              ) -> tuple[np.ndarray, list[int], list[int], list[int], int]:
    """The constant weight, kernel size, strides, dilations, and the input in NDHWC."""
    weight = ctx.need_array(node.inputs[1], "convolution weight")
    x = ctx.transpose(ctx.inp(node, 0), _TO_LAST, "ndhwc")
    return (weight, [int(k) for k in weight.shape[2:]], _ints(node, "strides", [1, 1, 1]),
            _ints(node, "dilations", [1, 1, 1]), x)


def _bias(ctx: LoweringContext, node: ir.Node, out_ch: int) -> np.ndarray:
    bias = ctx.array(node.inputs[2]) if len(node.inputs) > 2 else None
    return np.zeros(out_ch, np.float32) if bias is None else bias.astype(np.float32)


def lower_conv3d(ctx: LoweringContext, node: ir.Node) -> None:
    """Conv over NCDHW: TRANSPOSE to NDHWC, PAD, CONV_3D (VALID), TRANSPOSE back.

    Args:
        ctx: the lowering context.
        node: the rank-5 Conv (checked by :func:`conv3d_reason`).
    """
    weight, kernel, strides, dilations, x = _prologue(ctx, node)  # weight [O, I, kd, kh, kw]
    out_ch = int(weight.shape[0])
    shape = ctx.t(x).shape
    pads = _pads(node, list(shape[1:4]), kernel, strides, dilations)
    if any(pads):
        pairs = [[0, 0], *([pads[i], pads[i + 3]] for i in range(3)), [0, 0]]
        padded = ctx.like(x, "padded", [n + a + b for n, (a, b) in zip(shape, pairs,
                                                                        strict=True)])
        ctx.emit("PAD", [x, ctx.i32(pairs, "paddings")], [padded])
        x = padded
    bias = _bias(ctx, node, out_ch)
    dst = ctx.out(node)
    n, c, d, h, w = ctx.t(dst).shape
    y = ctx.tmp("conv3d", np.float32, [n, d, h, w, c])
    filt = ctx.const(np.transpose(weight, (2, 3, 4, 1, 0)).astype(np.float32), "weight_dhwio")
    ctx.emit("CONV_3D", [x, filt, ctx.const(bias, "bias")], [y],
             _options(strides, dilations, ctx.activation(node)))
    ctx.transpose(y, _TO_FIRST, dst=dst)


def lower_conv_transpose3d(ctx: LoweringContext, node: ir.Node) -> None:
    """ConvTranspose over NCDHW: CONV_3D_TRANSPOSE (VALID, the full result) in NDHWC, the
    ONNX pads cropped with SLICE, TRANSPOSE back.

    Args:
        ctx: the lowering context.
        node: the rank-5 ConvTranspose (checked by :func:`conv3d_reason`).
    """
    weight, kernel, strides, dilations, x = _prologue(ctx, node)  # weight [I, O, kd, kh, kw]
    out_ch = int(weight.shape[1])
    n, d, h, w, _ = ctx.t(x).shape
    full = [(size - 1) * st + (k - 1) * dl + 1
            for size, k, st, dl in zip((d, h, w), kernel, strides, dilations, strict=True)]
    dst = ctx.out(node)
    out = list(ctx.t(dst).shape[2:])
    auto = node.attributes["auto_pad"].value if "auto_pad" in node.attributes else "NOTSET"
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [f - o for f, o in zip(full, out, strict=True)]
        begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        begin = _ints(node, "pads", [0] * 6)[:3] if auto == "NOTSET" else [0, 0, 0]
    bias = _bias(ctx, node, out_ch)
    y = ctx.tmp("conv3d_t", np.float32, [n, *full, out_ch])
    filt = ctx.const(np.transpose(weight, (2, 3, 4, 1, 0)).astype(np.float32), "weight_dhwoi")
    ctx.emit("CONV_3D_TRANSPOSE",
             [ctx.i32([n, *full, out_ch], "output_shape"), filt, x, ctx.const(bias, "bias")],
             [y], _options(strides, dilations, ctx.activation(node)))
    if begin != [0, 0, 0] or out != full:
        cropped = ctx.like(y, "cropped", [n, *out, out_ch])
        ctx.emit("SLICE", [y, ctx.i32([0, *begin, 0], "begin"),
                           ctx.i32([n, *out, out_ch], "size")], [cropped])
        y = cropped
    ctx.transpose(y, _TO_FIRST, dst=dst)
