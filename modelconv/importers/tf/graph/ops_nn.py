"""Convolutions, pooling, normalization, bias and resizing (NHWC or NCHW ``data_format``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.importers.tf.files.saved_model import NodeDef, Shape
from modelconv.importers.tf.graph.core import FIRST, LAST, TT, ConvertError, Ctx, tf_op
from modelconv.ir.layout import same_pads


def _channels_last(node: NodeDef) -> bool:
    fmt = (node.attr("data_format") or b"NHWC").decode("ascii", "replace")
    if fmt not in ("NHWC", "NCHW", "NDHWC", "NCDHW", "NWC", "NCW"):
        raise ConvertError(f"data_format {fmt}")
    return fmt.startswith("N") and fmt.endswith("C")


def _spatial(values: list[int], channels_last: bool, n: int) -> list[int]:
    """The spatial entries of a TF per-dimension attribute (strides, dilations, ksize)."""
    if len(values) == n:
        return values
    if len(values) != n + 2:
        raise ConvertError(f"attribute of length {len(values)} for {n} spatial dims")
    return values[1:-1] if channels_last else values[2:]


def _data(cx: Ctx, x: TT, channels_last: bool) -> tuple[ir.Value, str]:
    """The data input channels-first, and the layout the result is in."""
    if channels_last:
        return cx.first(x), FIRST
    return cx.last(x), LAST


def _pads(cx: Ctx, node: NodeDef, kernel: list[int], strides: list[int],
          dilations: list[int], channels_last: bool, explicit: list[Any]) -> dict[str, Any]:
    """ONNX padding attributes for the node's ``padding`` (``explicit``: the node's
    explicit_paddings, for the ops that have them; others pass [])."""
    padding = (node.attr("padding") or b"VALID").decode("ascii", "replace")
    n = len(kernel)
    if padding == "VALID":
        return {"pads": [0] * (2 * n)}
    if padding == "SAME":
        if all(s == 1 for s in strides):
            return {"pads": same_pads(tuple(kernel), tuple(dilations))}
        return {"auto_pad": "SAME_UPPER"}
    if padding == "EXPLICIT":
        raw = [int(v) for v in explicit]
        if len(raw) != 2 * (n + 2):
            raise ConvertError("explicit_paddings")
        pairs = [raw[2 * i:2 * i + 2] for i in range(n + 2)]
        spatial = pairs[1:-1] if channels_last else pairs[2:]
        return {"pads": [p[0] for p in spatial] + [p[1] for p in spatial]}
    raise ConvertError(f"padding {padding}")


def _kernel(cx: Ctx, w: TT, perm: list[int]) -> ir.Value:
    if w.const is not None:
        return cx.const(np.transpose(w.const, perm)).value  # a view: copied when written
    return cx.b.Transpose(cx.last(w), perm=perm)


@tf_op("Conv2D", "Conv3D", attrs=("T", "strides", "padding", "explicit_paddings",
                                   "data_format", "dilations", "use_cudnn_on_gpu"))
def tf_conv(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Conv2D, Conv3D: ONNX Conv, NHWC/NCHW, strides, dilations, VALID/SAME/EXPLICIT
    padding, grouped when the input has a multiple of the kernel's input channels."""
    x, w = ins
    if w.rank < 3:
        raise ConvertError("kernel of unknown rank")
    n = w.rank - 2
    cl = _channels_last(node)
    strides = _spatial([int(v) for v in node.attr("strides", [1] * (n + 2))], cl, n)
    dilations = _spatial([int(v) for v in node.attr("dilations", [1] * (n + 2))], cl, n)
    kernel_w = _kernel(cx, w, [n + 1, n, *range(n)])  # [*k, I, O] -> [O, I, *k]
    groups = 1
    if w.const is not None and x.shape is not None and len(x.shape) == n + 2:
        in_channels = x.shape[-1] if cl else x.shape[1]
        if in_channels and in_channels != w.const.shape[n]:
            if in_channels % w.const.shape[n]:
                raise ConvertError(f"{in_channels} input channels, kernel takes "
                                   f"{w.const.shape[n]}")
            groups = in_channels // w.const.shape[n]
    data, layout = _data(cx, x, cl)
    pads = _pads(cx, node, list(w.const.shape[:n]) if w.const is not None else [1] * n,
                 strides, dilations, cl, node.attr("explicit_paddings", []))
    if w.const is None and "pads" in pads and any(pads["pads"]):
        raise ConvertError("SAME padding with a computed kernel")
    out = cx.b.Conv(data, kernel_w, strides=strides, dilations=dilations, group=groups, **pads)
    return cx.out(out, n + 2, x.dtype, layout)


@tf_op("DepthwiseConv2dNative", attrs=("T", "strides", "padding", "explicit_paddings",
                                          "data_format", "dilations"))
def tf_depthwise_conv2d(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """DepthwiseConv2dNative: a grouped Conv (constant kernel, any channel multiplier)."""
    x, w = ins
    if w.const is None:
        raise ConvertError("computed depthwise kernel")
    kh, kw, cin, mult = w.const.shape
    cl = _channels_last(node)
    strides = _spatial([int(v) for v in node.attr("strides", [1, 1, 1, 1])], cl, 2)
    dilations = _spatial([int(v) for v in node.attr("dilations", [1, 1, 1, 1])], cl, 2)
    weight = np.transpose(w.const.reshape(kh, kw, cin * mult), (2, 0, 1))[:, None]
    data, layout = _data(cx, x, cl)
    out = cx.b.Conv(data, cx.const(np.ascontiguousarray(weight)).value, strides=strides,
                    dilations=dilations, group=cin,
                    **_pads(cx, node, [kh, kw], strides, dilations, cl,
                            node.attr("explicit_paddings", [])))
    return cx.out(out, 4, x.dtype, layout)


def _output_size(cx: Ctx, node: NodeDef, sizes: TT) -> list[int]:
    """Conv2DBackpropInput's output size: the constant input, else (a batch computed with
    ``tf.shape``, as Keras does) the static shape TensorFlow recorded for the output."""
    if sizes.const is not None:
        return cx.int_values(sizes, "output size")
    shapes = node.attr("_output_shapes")
    if isinstance(shapes, list) and shapes and isinstance(shapes[0], Shape) and \
            shapes[0].dims is not None and len(shapes[0].dims) == 4:
        dims = shapes[0].dims
        spatial = dims[1:3] if _channels_last(node) else dims[2:4]
        if None not in spatial:
            return [-1 if d is None else int(d) for d in dims]
    raise ConvertError("output size must be a constant or statically known")


@tf_op("Conv2DBackpropInput", attrs=("T", "strides", "padding", "data_format", "dilations",
                                        "use_cudnn_on_gpu"),
       fixed={"explicit_paddings": []})
def tf_conv2d_backprop_input(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Conv2DBackpropInput (Conv2DTranspose): ONNX ConvTranspose, VALID/SAME padding,
    constant kernel, output size constant or recorded by TensorFlow."""
    sizes, w, x = ins
    if w.const is None:
        raise ConvertError("computed kernel")
    cl = _channels_last(node)
    size = _output_size(cx, node, sizes)
    strides = _spatial([int(v) for v in node.attr("strides", [1, 1, 1, 1])], cl, 2)
    dilations = _spatial([int(v) for v in node.attr("dilations", [1, 1, 1, 1])], cl, 2)
    spatial = size[1:3] if cl else size[2:4]
    padding = (node.attr("padding") or b"VALID").decode()
    # kernel [kh, kw, out, in] -> ONNX ConvTranspose [in, out, kh, kw]
    weight = np.transpose(w.const, (3, 2, 0, 1))  # a view: copied when written
    data, layout = _data(cx, x, cl)
    attrs: dict[str, Any] = {"output_shape": spatial}
    if padding == "VALID":
        attrs = {"pads": [0, 0, 0, 0], "output_shape": spatial}
    elif padding == "SAME":
        attrs["auto_pad"] = "SAME_UPPER"
    else:
        raise ConvertError(f"padding {padding}")
    out = cx.b.ConvTranspose(data, cx.const(weight).value, strides=strides,
                             dilations=dilations, **attrs)
    return cx.out(out, 4, x.dtype, layout)


@tf_op("BiasAdd", "BiasAddV1", attrs=("T", "data_format"))
def tf_bias_add(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """BiasAdd (NHWC/NCHW), BiasAddV1: Add of the bias on the channel axis."""
    x, bias = ins
    if x.const is not None and bias.const is not None:
        if node.op == "BiasAdd" and not _channels_last(node):
            return cx.const(x.const + bias.const.reshape(-1, *([1] * (x.rank - 2))))
        return cx.const(x.const + bias.const)
    cl = node.op == "BiasAddV1" or _channels_last(node)
    if x.rank < 0:
        raise ConvertError("input of unknown rank")
    if cl and (x.layout == LAST or x.rank < 3):
        return x.like(cx.b.Add(x.value, cx.last(bias)), rank=x.rank)
    if cl:  # x held channels-first
        shape = [1, -1] + [1] * (x.rank - 2)
    else:
        shape = [-1] + [1] * (x.rank - 2)
        if x.layout == FIRST:
            x = x.like(cx.last(x), layout=LAST)
    if bias.const is not None:
        b_value = cx.const(bias.const.reshape(shape)).value
    else:
        b_value = cx.b.Reshape(bias.value, cx.const(np.asarray(shape, np.int64)).value)
    return x.like(cx.b.Add(x.value, b_value))


@tf_op("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
       attrs=("T", "U", "epsilon", "data_format", "is_training", "exponential_avg_factor"))
def tf_fused_batch_norm(cx: Ctx, node: NodeDef, ins: list[TT]) -> list[TT]:
    """FusedBatchNorm, V2, V3 in inference mode: ONNX BatchNormalization (is_training=True
    refused; exponential_avg_factor only updates training statistics)."""
    x, scale, offset, mean, var = ins[:5]
    # SavedModels drop attributes that hold the op's default: is_training=True, eps=1e-4
    if node.attr("is_training", True):
        raise ConvertError("is_training=True (a training-mode graph)")
    if mean.const is not None and mean.const.size == 0:
        raise ConvertError("no moving statistics")
    cl = _channels_last(node)
    data, layout = _data(cx, x, cl)
    eps = float(node.attr("epsilon", 1e-4))
    params = [cx.last(t) for t in (scale, offset, mean, var)]
    y = cx.b.BatchNormalization(data, *params, epsilon=eps)
    out = cx.out(y, x.rank, x.dtype, layout)
    return [out, mean, var, mean, var, mean]


#: attributes of the pooling ops (MaxPoolV2 has no ksize/strides, only MaxPool has
#: explicit_paddings)
POOL_ATTRS = ("T", "ksize", "strides", "padding", "data_format")


def _pool(cx: Ctx, node: NodeDef, ins: list[TT], onnx_op: str, explicit: list[Any]) -> TT:
    x = ins[0]
    n = x.rank - 2
    if n < 1:
        raise ConvertError("input of unknown rank")
    cl = _channels_last(node)
    ksize = [int(v) for v in (node.attr("ksize") or cx.int_values(ins[1], "ksize"))]
    strides = [int(v) for v in (node.attr("strides") or cx.int_values(ins[2], "strides"))]
    kernel = _spatial(ksize, cl, n)
    strides = _spatial(strides, cl, n)
    data, layout = _data(cx, x, cl)
    attrs = _pads(cx, node, kernel, strides, [1] * n, cl, explicit)
    if onnx_op == "AveragePool":
        attrs["count_include_pad"] = 0  # TensorFlow averages over valid positions only
    return cx.out(cx.b.op(onnx_op, [data], kernel_shape=kernel, strides=strides, **attrs),
                  x.rank, x.dtype, layout)


@tf_op("MaxPool", "MaxPoolV2", "MaxPool3D", attrs=(*POOL_ATTRS, "explicit_paddings"))
def tf_max_pool(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """MaxPool, MaxPoolV2 (ksize/strides as inputs), MaxPool3D: ONNX MaxPool."""
    return _pool(cx, node, ins, "MaxPool", node.attr("explicit_paddings", []))


@tf_op("AvgPool", "AvgPool3D", attrs=POOL_ATTRS)
def tf_avg_pool(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """AvgPool, AvgPool3D: ONNX AveragePool over valid positions only."""
    return _pool(cx, node, ins, "AveragePool", [])  # AvgPool has no EXPLICIT padding


@tf_op("ResizeBilinear", "ResizeNearestNeighbor", attrs=("T", "align_corners",
                                                           "half_pixel_centers"))
def tf_resize(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """ResizeBilinear, ResizeNearestNeighbor: ONNX Resize to a constant size, in the
    align_corners / half_pixel_centers / asymmetric coordinate modes."""
    x, size = ins
    if x.rank != 4:
        raise ConvertError("input is not rank 4")
    hw = cx.int_values(size, "size")
    align = bool(node.attr("align_corners", False))
    half = bool(node.attr("half_pixel_centers", False))
    nearest = node.op == "ResizeNearestNeighbor"
    attrs: dict[str, Any] = {"mode": "nearest" if nearest else "linear"}
    if align:
        attrs["coordinate_transformation_mode"] = "align_corners"
        attrs["nearest_mode"] = "round_prefer_ceil"
    elif half:
        attrs["coordinate_transformation_mode"] = "tf_half_pixel_for_nn" if nearest \
            else "half_pixel"
        attrs["nearest_mode"] = "floor"
    else:
        attrs["coordinate_transformation_mode"] = "asymmetric"
        attrs["nearest_mode"] = "floor"
    data = cx.first(x)
    batch_channels = cx.b.Slice(cx.b.Shape(data), cx.const(np.asarray([0], np.int64)).value,
                                cx.const(np.asarray([2], np.int64)).value)
    sizes = cx.b.Concat(batch_channels, cx.const(np.asarray(hw, np.int64)).value, axis=0)
    out = cx.b.Resize(data, None, None, sizes, **attrs)
    return cx.out(out, 4, x.dtype, FIRST)


@tf_op("LRN", attrs=("T", "depth_radius", "bias", "alpha", "beta"))
def tf_lrn(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """LRN: ONNX LRN over the channels (size 2 * depth_radius + 1)."""
    x = ins[0]
    radius = int(node.attr("depth_radius", 5))
    size = 2 * radius + 1
    out = cx.b.LRN(cx.first(x), size=size, bias=float(node.attr("bias", 1.0)),
                   alpha=float(node.attr("alpha", 1.0)) * size,
                   beta=float(node.attr("beta", 0.5)))
    return cx.out(out, 4, x.dtype, FIRST)


__all__ = ["ir"]
