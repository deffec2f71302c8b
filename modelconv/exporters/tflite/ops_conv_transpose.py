"""ConvTranspose (1-D / 2-D, channels-last) -> TRANSPOSE_CONV per group, cropped or
zero-extended to the ONNX output window, bias added once.

TRANSPOSE_CONV computes the full transposed convolution (``(in - 1) * stride + k`` per
spatial dim, VALID) or its SAME-padded window; ONNX's output is the window starting at
``pads`` begin (or at the auto_pad / output_shape position) of the full result, extended
with zeros where ``output_padding`` / ``output_shape`` reach past it. Dilations dilate the
kernel (zeros between taps: folded for a constant weight, RESHAPE / PAD ops for a run-time
one), groups run one TRANSPOSE_CONV per group on SPLIT channels and CONCATENATE them.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.ops_conv import as_nhwc4, finish_rank, runtime_weight_reason
from modelconv.exporters.tflite.ops_conv3d import conv3d_reason, lower_conv_transpose3d
from modelconv.exporters.tflite.registry import attr, tflite_lowering
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN


def check_conv_transpose(node: ir.Node) -> str | None:
    """1-D / 2-D (rank-3 / rank-4 input) with a weight of known shape; float32; 3-D as
    :func:`~modelconv.exporters.tflite.ops_conv3d.conv3d_reason` says."""
    weight = node.inputs[1]
    if weight is None or weight.shape is None:
        return "weight of unknown shape"
    if len(weight.shape) == 5:
        return conv3d_reason(node)
    if len(weight.shape) not in (3, 4):
        return f"{len(weight.shape) - 2}-D (1-D and 2-D only)"
    return runtime_weight_reason(node)


def _attrs4(node: ir.Node, k: int) -> dict[str, list[int]]:
    """strides / dilations / pads / output_padding / output_shape as 2-D lists (1-D: H=1)."""
    def get(name: str, default: list[int]) -> list[int]:
        return [int(v) for v in attr(node, name, None) or default]  # type: ignore[attr-defined]

    out = {"strides": get("strides", [1] * k), "dilations": get("dilations", [1] * k),
           "pads": get("pads", [0] * 2 * k), "output_padding": get("output_padding", [0] * k)}
    if k == 1:
        out = {"strides": [1, *out["strides"]], "dilations": [1, *out["dilations"]],
               "pads": [0, out["pads"][0], 0, out["pads"][1]],
               "output_padding": [0, *out["output_padding"]]}
    return out


def _kernel(ctx: LoweringContext, weight: int, dil: list[int]) -> int:
    """The ONNX weight [I, O/g, kh, kw] as TRANSPOSE_CONV's [O/g, kh', kw', I], dilated."""
    arr = ctx.t(weight).data
    i, o, kh, kw = ctx.t(weight).shape
    if arr is not None:
        full = np.zeros((i, o, (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1), arr.dtype)
        full[:, :, ::dil[0], ::dil[1]] = arr
        return ctx.const(np.transpose(full, (1, 2, 3, 0)), "weight")
    k = ctx.transpose(weight, [1, 2, 3, 0], "weight_ohwi")
    if dil == [1, 1]:
        return k
    spread = ctx.reshape(k, [o, kh, 1, kw, 1, i], "weight_spread")
    padded = ctx.like(spread, "weight_dilated", [o, kh, dil[0], kw, dil[1], i])
    ctx.emit("PAD", [spread, ctx.i32([[0, 0], [0, 0], [0, dil[0] - 1], [0, 0],
                                      [0, dil[1] - 1], [0, 0]], "dilation_pads")], [padded])
    flat = ctx.reshape(padded, [o, kh * dil[0], kw * dil[1], i], "weight_dilated_flat")
    eff = [(kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1]
    cut = ctx.like(flat, "weight_dilated_cut", [o, *eff, i])
    ctx.emit("STRIDED_SLICE", [flat, ctx.i32([0, 0, 0, 0], "begin"),
                               ctx.i32([o, *eff, i], "end"), ctx.i32([1, 1, 1, 1], "strides")],
             [cut], s.StridedSliceOptionsT())
    return cut


def _split(ctx: LoweringContext, t: int, parts: int, axis: int, name: str) -> list[int]:
    if parts == 1:
        return [t]
    shape = list(ctx.t(t).shape)
    shape[axis] //= parts
    outs = [ctx.like(t, f"{name}{j}", shape) for j in range(parts)]
    opts = s.SplitOptionsT()
    opts.numSplits = parts
    ctx.emit("SPLIT", [ctx.i32(axis, "axis"), t], outs, opts)
    return outs


def _window_start(node: ir.Node, a: dict[str, list[int]], full: list[int],
                  out: list[int]) -> list[int]:
    """Where the ONNX output starts in the full result, per spatial dim."""
    auto = str(attr(node, "auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER") and attr(node, "pads", None) is None:
        total = [full[i] + a["output_padding"][i] - out[i] for i in range(2)]
        return [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    if auto == "VALID":
        return [0, 0]
    return [a["pads"][0], a["pads"][1]]


@tflite_lowering("ConvTranspose", check=check_conv_transpose)
def lower_conv_transpose(ctx: LoweringContext, node: ir.Node) -> None:
    """ConvTranspose -> TRANSPOSE_CONV (per group) + crop / zero-extend + bias (module doc)."""
    if node.domain != NHWC_DOMAIN and len(ctx.shape(node.outputs[0])) == 5:
        lower_conv_transpose3d(ctx, node)
        return
    if node.domain != NHWC_DOMAIN:
        raise ExportError(f"ConvTranspose '{node.name}' was not moved to NHWC")
    assert node.inputs[1] is not None
    x, final, weight = ctx.inp(node, 0), ctx.out(node), ctx.get(node.inputs[1])
    wshape = ctx.t(weight).shape
    a = _attrs4(node, len(wshape) - 2)
    if len(wshape) == 3:
        weight = ctx.reshape(weight, [wshape[0], wshape[1], 1, wshape[2]], "weight4d")
        x = as_nhwc4(ctx, x)
        n3, w3, c3 = ctx.t(final).shape
        dst = ctx.tmp("conv_transpose4d", np.float32, [n3, 1, w3, c3])
    else:
        dst = final
    group = int(attr(node, "group", 1))  # type: ignore[call-overload]
    n, in_h, in_w, _ = ctx.t(x).shape
    kernel = _kernel(ctx, weight, a["dilations"])
    o_per, kh, kw, _ = ctx.t(kernel).shape
    sh, sw = a["strides"]
    full = [(in_h - 1) * sh + kh, (in_w - 1) * sw + kw]
    out = ctx.t(dst).shape
    start = _window_start(node, a, full, out[1:3])
    inside = all(start[i] >= 0 and start[i] + out[1 + i] <= full[i] for i in range(2))
    bias_v = node.inputs[2] if len(node.inputs) > 2 else None
    in_op = group == 1 and inside  # the bias and activation go into the one TRANSPOSE_CONV
    zero = ctx.const(np.zeros(o_per, np.float32), "no_bias")
    bias = zero if bias_v is None or not in_op else ctx.get(bias_v)
    opts = s.TransposeConvOptionsT()
    opts.strideH, opts.strideW, opts.padding = sh, sw, s.Padding.VALID
    opts.fusedActivationFunction = ctx.activation(node) if in_op else 0
    same = in_op and out[1:3] == [in_h * sh, in_w * sw] and start == [
        (full[i] - out[1 + i]) // 2 for i in range(2)]
    if same:
        opts.padding = s.Padding.SAME
    direct = same or (in_op and out[1:3] == full and start == [0, 0])  # no window to cut
    parts = []
    for j, (xj, kj) in enumerate(zip(_split(ctx, x, group, 3, "group_in"),
                                     _split(ctx, kernel, group, 3, "group_weight"),
                                     strict=True)):
        yj = dst if direct else ctx.tmp(f"full{j}", np.float32, [n, *full, o_per])
        shape_t = ctx.i32(ctx.t(yj).shape, "output_shape")
        ctx.emit("TRANSPOSE_CONV", [shape_t, kj, xj, bias], [yj], opts)
        parts.append(yj)
    if direct:
        _finish(ctx, dst, final)
        return
    y = parts[0]
    if group > 1:
        y = ctx.tmp("full", np.float32, [n, *full, o_per * group])
        c = s.ConcatenationOptionsT()
        c.axis = 3
        ctx.emit("CONCATENATION", parts, [y], c)
    window = dst if in_op else ctx.like(dst, "window")
    _window(ctx, y, start, window)
    if not in_op:
        b = ctx.const(np.zeros(out[3], np.float32), "no_bias") if bias_v is None else \
            ctx.get(bias_v)
        add = s.AddOptionsT()
        add.fusedActivationFunction = ctx.activation(node)
        ctx.emit("ADD", [window, b], [dst], add)
    _finish(ctx, dst, final)


def _finish(ctx: LoweringContext, dst: int, final: int) -> None:
    if dst != final:
        finish_rank(ctx, dst, final)


def _window(ctx: LoweringContext, y: int, start: list[int], dst: int) -> None:
    """The H/W window of ``dst``'s size at ``start`` in ``y``: PAD zeros where it reaches
    past ``y``, then STRIDED_SLICE."""
    full, out = ctx.t(y).shape, ctx.t(dst).shape
    before = [max(0, -start[i]) for i in range(2)]
    after = [max(0, start[i] + out[1 + i] - full[1 + i]) for i in range(2)]
    if any(before) or any(after):
        grown = ctx.like(y, "extended", [full[0], full[1] + before[0] + after[0],
                                         full[2] + before[1] + after[1], full[3]])
        ctx.emit("PAD", [y, ctx.i32([[0, 0], [before[0], after[0]], [before[1], after[1]],
                                     [0, 0]], "extension")], [grown])
        y, start = grown, [start[i] + before[i] for i in range(2)]
    begin = [0, start[0], start[1], 0]
    end = [out[0], start[0] + out[1], start[1] + out[2], out[3]]
    ctx.emit("STRIDED_SLICE", [y, ctx.i32(begin, "begin"), ctx.i32(end, "end"),
                               ctx.i32([1, 1, 1, 1], "strides")], [dst], s.StridedSliceOptionsT())
