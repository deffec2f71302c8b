"""Convolutions: Conv -> CONV_2D (grouped too) / DEPTHWISE_CONV_2D (3-D: ops_conv3d)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite._geometry import (
    Window,
    choose_padding,
    explicit_end_pads,
    window,
)
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import value_dtype
from modelconv.exporters.tflite.ops_conv3d import conv3d_reason, lower_conv3d
from modelconv.exporters.tflite.registry import tflite_lowering
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN


def as_nhwc4(ctx: LoweringContext, x: int) -> int:
    """View a channels-last rank-3 tensor [N, W, C] as [N, 1, W, C]."""
    shape = ctx.t(x).shape
    if len(shape) == 4:
        return x
    return ctx.reshape(x, [shape[0], 1, shape[1], shape[2]], "as4d")


def finish_rank(ctx: LoweringContext, y4: int, dst: int) -> None:
    """Reshape a [N, 1, W, C] result into the rank-3 output ``dst``."""
    ctx.reshape(y4, ctx.t(dst).shape, dst=dst)


def pad_input(ctx: LoweringContext, x: int, w: Window, in_hw: list[int],
              value: float = 0.0) -> int:
    """Explicit PAD/PADV2 on H, W so a VALID window reproduces ONNX pads."""
    ends = explicit_end_pads(w, in_hw)
    pads = [[0, 0], [w.pads[0], ends[0]], [w.pads[1], ends[1]], [0, 0]]
    shape = ctx.t(x).shape
    out_shape = [shape[0], shape[1] + pads[1][0] + pads[1][1],
                 shape[2] + pads[2][0] + pads[2][1], shape[3]]
    y = ctx.like(x, "padded", out_shape)
    paddings = ctx.i32(pads, "paddings")
    if value == 0.0:
        ctx.emit("PAD", [x, paddings], [y])
    else:
        pad_value = ctx.const(np.asarray([value], ctx.t(x).dtype), "pad_value")
        ctx.emit("PADV2", [x, paddings, pad_value], [y])
    return y


def prepare_window(ctx: LoweringContext, node: ir.Node, x4: int, kernel: list[int],
                   value: float = 0.0) -> tuple[int, Window, int]:
    """Input (maybe padded), window and TFLite Padding code for a conv/pool node."""
    in_hw = ctx.t(x4).shape[1:3]
    out_shape = ctx.shape(node.outputs[0])
    out_hw = out_shape[1:3] if len(out_shape) == 4 else out_shape[1:2]
    w = window(node, in_hw if len(kernel) == 2 else in_hw[1:], kernel, out_hw)
    mode = choose_padding(w, in_hw)
    if mode == "EXPLICIT":
        x4 = pad_input(ctx, x4, w, in_hw, value)
        return x4, w, s.Padding.VALID
    return x4, w, s.Padding.SAME if mode == "SAME" else s.Padding.VALID


def check_conv(node: ir.Node) -> str | None:
    """Why a Conv cannot be written for LiteRT (rank-5: :func:`conv3d_reason`), or None.

    Args:
        node: the Conv node.

    Returns:
        Why it is refused, or None.
    """
    x = node.inputs[0]
    if x is not None and x.shape is not None and len(x.shape) == 5:
        return conv3d_reason(node)
    if x is not None and x.shape is not None and len(x.shape) > 5:
        return f"{len(x.shape) - 2} spatial dims"
    return runtime_weight_reason(node)


def runtime_weight_reason(node: ir.Node) -> str | None:
    """A run-time weight / bias is fed to the float32 kernel as it is: other dtypes refused."""
    if all(v is None or v.const_value is not None for v in node.inputs[1:3]):
        return None
    name = value_dtype(node.inputs[0])
    return None if name in (None, "float32") else f"{name} input with a run-time weight"


@tflite_lowering("Conv", check=check_conv)
def lower_conv(ctx: LoweringContext, node: ir.Node) -> None:
    """Conv (channels-last) -> CONV_2D (one op for any group count) or DEPTHWISE_CONV_2D.

    LiteRT's CONV_2D takes groups = input channels / filter input channels (conv.cc
    Prepare) on its float, int8/int16 per-channel and hybrid paths."""
    if node.domain != NHWC_DOMAIN and len(ctx.shape(node.outputs[0])) == 5:
        lower_conv3d(ctx, node)
        return
    if node.domain != NHWC_DOMAIN:
        raise ExportError(f"Conv '{node.name}' was not moved to NHWC (rank-3/4 only)")
    x = as_nhwc4(ctx, ctx.inp(node, 0))
    bias_v = node.inputs[2] if len(node.inputs) > 2 else None
    if ctx.array(node.inputs[1]) is None or (bias_v is not None and ctx.array(bias_v) is None):
        _runtime_conv(ctx, node, x)
        return
    weight = ctx.need_array(node.inputs[1], "convolution weight")
    if weight.ndim == 3:
        weight = weight[:, :, None, :]
    out_ch, in_per_group = weight.shape[:2]
    bias = ctx.array(node.inputs[2]) if len(node.inputs) > 2 else None
    bias = np.zeros(out_ch, np.float32) if bias is None else bias.astype(np.float32)
    group = int(node.attributes["group"].value) if "group" in node.attributes else 1
    kernel_size = [int(k) for k in weight.shape[2:]]
    if len(ctx.t(ctx.inp(node, 0)).shape) == 3:
        kernel_size = kernel_size[1:]
    x, w, padding = prepare_window(ctx, node, x, kernel_size)
    dst = ctx.out(node)
    y = dst if len(ctx.t(dst).shape) == 4 else ctx.tmp("conv4d", np.float32,
                                                        [*ctx.t(x).shape[:1], *w.out, out_ch])
    act, in_ch = ctx.activation(node), ctx.t(x).shape[3]
    if group > 1 and group == in_ch and in_per_group == 1:
        opts = s.DepthwiseConv2DOptionsT()
        opts.padding, opts.strideH, opts.strideW = padding, w.strides[0], w.strides[1]
        opts.dilationHFactor, opts.dilationWFactor = w.dilations[0], w.dilations[1]
        opts.depthMultiplier, opts.fusedActivationFunction = out_ch // in_ch, act
        kernel = ctx.const(np.transpose(weight, (1, 2, 3, 0)), "depthwise_weight")
        ctx.emit("DEPTHWISE_CONV_2D", [x, kernel, ctx.const(bias, "bias")], [y], opts)
    else:
        conv2d(ctx, x, weight, bias, w, padding, act, y)
    if y != dst:
        finish_rank(ctx, y, dst)


def _runtime_conv(ctx: LoweringContext, node: ir.Node, x: int) -> None:
    """Conv with a run-time weight (or bias): CONV_2D reads its filter tensor at run time,
    so the OIHW weight is TRANSPOSEd to OHWI by an op (grouped convolutions included)."""
    wv = node.inputs[1]
    assert wv is not None
    wshape = ctx.shape(wv)
    weight = ctx.get(wv)
    if len(wshape) == 3:
        wshape = [wshape[0], wshape[1], 1, wshape[2]]
        weight = ctx.reshape(weight, wshape, "weight4d")
    out_ch = wshape[0]
    kernel_size = wshape[2:] if len(ctx.t(ctx.inp(node, 0)).shape) == 4 else wshape[3:]
    xp, w, padding = prepare_window(ctx, node, x, kernel_size)
    bias_v = node.inputs[2] if len(node.inputs) > 2 else None
    bias = ctx.const(np.zeros(out_ch, np.float32), "bias") if bias_v is None else ctx.get(bias_v)
    dst = ctx.out(node)
    y = dst if len(ctx.t(dst).shape) == 4 else ctx.tmp("conv4d", np.float32,
                                                        [*ctx.t(xp).shape[:1], *w.out, out_ch])
    opts = s.Conv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW = padding, w.strides[0], w.strides[1]
    opts.dilationHFactor, opts.dilationWFactor = w.dilations[0], w.dilations[1]
    opts.fusedActivationFunction = ctx.activation(node)
    kernel = ctx.transpose(weight, [0, 2, 3, 1], "weight_ohwi")
    ctx.emit("CONV_2D", [xp, kernel, bias], [y], opts)
    if y != dst:
        finish_rank(ctx, y, dst)


def conv2d(ctx: LoweringContext, x: int, weight: np.ndarray, bias: np.ndarray, w: Window,
           padding: int, act: int, y: int) -> None:
    """Emit one CONV_2D (weights OIHW -> OHWI; I < input channels makes it grouped)."""
    opts = s.Conv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW = padding, w.strides[0], w.strides[1]
    opts.dilationHFactor, opts.dilationWFactor = w.dilations[0], w.dilations[1]
    opts.fusedActivationFunction = act
    kernel = ctx.const(np.transpose(weight, (0, 2, 3, 1)), "weight")
    ctx.emit("CONV_2D", [x, kernel, ctx.const(bias, "bias")], [y], opts)
