"""Convolution, pooling, padding and resizing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx_ir as ir

from modelconv.ir.pooling import adaptive_pool

from ._base import AtenBuilder, aten_op


def _n(values: Sequence[int], n: int) -> list[int]:
    values = list(values)
    return values * n if len(values) == 1 else values


@aten_op("aten.convolution.default")
def convolution(b: AtenBuilder, x: ir.Value, weight: ir.Value, bias: ir.Value | None,
                stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                transposed: bool, output_padding: Sequence[int], groups: int) -> ir.Value:
    """Conv / ConvTranspose (torch and ONNX weight layouts agree)."""
    n = b.rank(weight) - 2
    pads = _n(padding, n)
    attrs: dict[str, Any] = dict(strides=_n(stride, n), pads=pads + pads,
                                 dilations=_n(dilation, n), group=groups)
    kernel = b.dims(weight)[2:]
    if all(isinstance(k, int) for k in kernel):
        attrs["kernel_shape"] = kernel
    inputs = [x, weight] if bias is None else [x, weight, bias]
    if transposed:
        if any(output_padding):
            attrs["output_padding"] = _n(output_padding, n)
        return b.op("ConvTranspose", inputs, attrs)
    return b.op("Conv", inputs, attrs)


@aten_op("aten.conv1d.default", "aten.conv2d.default", "aten.conv3d.default")
def conv_nd(b: AtenBuilder, x: ir.Value, weight: ir.Value, bias: ir.Value | None = None,
            stride: Sequence[int] = (1,), padding: Sequence[int] = (0,),
            dilation: Sequence[int] = (1,), groups: int = 1) -> ir.Value:
    """conv1d/2d/3d with numeric padding (undecomposed programs)."""
    return convolution(b, x, weight, bias, stride, padding, dilation, False, (0,), groups)


@aten_op("aten.conv_transpose1d.default", "aten.conv_transpose2d.input",
         "aten.conv_transpose3d.input")
def conv_transpose_nd(b: AtenBuilder, x: ir.Value, weight: ir.Value,
                      bias: ir.Value | None = None, stride: Sequence[int] = (1,),
                      padding: Sequence[int] = (0,), output_padding: Sequence[int] = (0,),
                      groups: int = 1, dilation: Sequence[int] = (1,)) -> ir.Value:
    """conv_transpose1d/2d/3d (undecomposed programs)."""
    return convolution(b, x, weight, bias, stride, padding, dilation, True, output_padding,
                       groups)


def _pool_pads(padding: Sequence[int], n: int) -> list[int]:
    pads = _n(padding, n)
    return pads + pads


@aten_op("aten.max_pool1d.default", "aten.max_pool2d.default", "aten.max_pool3d.default")
def max_pool(b: AtenBuilder, x: ir.Value, kernel_size: Sequence[int],
             stride: Sequence[int] = (), padding: Sequence[int] = (0,),
             dilation: Sequence[int] = (1,), ceil_mode: bool = False) -> ir.Value:
    """MaxPool (stride defaults to the kernel size)."""
    n = b.rank(x) - 2
    kernel = _n(kernel_size, n)
    return b.MaxPool(x, kernel_shape=kernel, strides=_n(stride or kernel, n),
                     pads=_pool_pads(padding, n), dilations=_n(dilation, n),
                     ceil_mode=int(ceil_mode))


@aten_op("aten.max_pool2d_with_indices.default")
def max_pool2d_with_indices(b: AtenBuilder, x: ir.Value, kernel_size: Sequence[int],
                            stride: Sequence[int] = (), padding: Sequence[int] = (0,),
                            dilation: Sequence[int] = (1,),
                            ceil_mode: bool = False) -> tuple[ir.Value, None]:
    """MaxPool; torch's indices differ from ONNX's, so only the values are provided."""
    return max_pool(b, x, kernel_size, stride, padding, dilation, ceil_mode), None


def _check_avg_pool(args: dict[str, Any]) -> str | None:
    return "divisor_override" if args["divisor_override"] is not None else None


@aten_op("aten.avg_pool1d.default", "aten.avg_pool2d.default", "aten.avg_pool3d.default",
         check=_check_avg_pool)
def avg_pool(b: AtenBuilder, x: ir.Value, kernel_size: Sequence[int],
             stride: Sequence[int] = (), padding: Sequence[int] = (0,), ceil_mode: bool = False,
             count_include_pad: bool = True, divisor_override: int | None = None) -> ir.Value:
    """AveragePool (divisor_override is not expressible: refused by the check)."""
    n = b.rank(x) - 2
    kernel = _n(kernel_size, n)
    return b.AveragePool(x, kernel_shape=kernel, strides=_n(stride or kernel, n),
                         pads=_pool_pads(padding, n), ceil_mode=int(ceil_mode),
                         count_include_pad=int(count_include_pad))


def _check_adaptive_pool(args: dict[str, Any]) -> str | None:
    spatial = list(args["x"].shape[2:])
    out = _n(args["output_size"], len(spatial))
    if all(o == 1 for o in out) or all(isinstance(s, int) for s in spatial):
        return None
    return "a dynamic spatial size (adaptive windows need static sizes)"


def _adaptive(b: AtenBuilder, x: ir.Value, output_size: Sequence[int], kind: str) -> ir.Value:
    n = b.rank(x) - 2
    out = _n(output_size, n)
    # global pooling needs no static size; the check refuses other dynamic sizes
    sizes = out if all(o == 1 for o in out) else [int(s or 0) for s in b.dims(x)[2:]]
    return adaptive_pool(b, x, sizes, out, kind)


@aten_op("aten.adaptive_avg_pool1d.default", "aten.adaptive_avg_pool2d.default",
         "aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool3d.default",
         check=_check_adaptive_pool)
def adaptive_avg_pool(b: AtenBuilder, x: ir.Value, output_size: Sequence[int]) -> ir.Value:
    """Adaptive average pooling: GlobalAveragePool, one AveragePool when the input divides
    evenly, else one ReduceMean per window (:func:`modelconv.ir.pooling.adaptive_pool`)."""
    return _adaptive(b, x, output_size, "avg")


@aten_op("aten.adaptive_max_pool1d.default", "aten.adaptive_max_pool2d.default",
         "aten.adaptive_max_pool3d.default", check=_check_adaptive_pool)
def adaptive_max_pool(b: AtenBuilder, x: ir.Value,
                      output_size: Sequence[int]) -> tuple[ir.Value, None]:
    """Adaptive max pooling (values only: a use of the indices output is refused), as
    :func:`adaptive_avg_pool` with max."""
    return _adaptive(b, x, output_size, "max"), None


@aten_op("aten.constant_pad_nd.default")
def constant_pad_nd(b: AtenBuilder, x: ir.Value, pad: Sequence[int],
                    value: float = 0.0) -> ir.Value:
    """Pad (torch lists pads last dim first, as (begin, end) pairs)."""
    return _pad(b, x, pad, "constant", value)


def _pad(b: AtenBuilder, x: ir.Value, pad: Sequence[int], mode: str,
         value: float = 0.0) -> ir.Value:
    rank = b.rank(x)
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    inputs = [x, b.ints(begins + ends)]
    if mode == "constant":
        inputs.append(b.scalar(value, x.dtype))
    return b.op("Pad", inputs, mode=mode)


@aten_op("aten.reflection_pad1d.default", "aten.reflection_pad2d.default",
         "aten.reflection_pad3d.default")
def reflection_pad(b: AtenBuilder, x: ir.Value, padding: Sequence[int]) -> ir.Value:
    """Pad mode=reflect."""
    return _pad(b, x, padding, "reflect")


@aten_op("aten.replication_pad1d.default", "aten.replication_pad2d.default",
         "aten.replication_pad3d.default")
def replication_pad(b: AtenBuilder, x: ir.Value, padding: Sequence[int]) -> ir.Value:
    """Pad mode=edge."""
    return _pad(b, x, padding, "edge")


def _resize(b: AtenBuilder, x: ir.Value, output_size: Sequence[int] | None,
            scales: Sequence[float] | None, mode: str, transform: str) -> ir.Value:
    rank = b.rank(x)
    if output_size:
        out = b.out_shape()
        sizes = b.ints([d for d in out if d is not None]) if None not in out else b.ints(
            [*_lead_dims(b, x), *output_size])
        return b.Resize(x, None, None, sizes, mode=mode, coordinate_transformation_mode=transform,
                        nearest_mode="floor")
    scale = b.const([1.0, 1.0, *[float(s) for s in (scales or [])]][:rank])
    return b.Resize(x, None, scale, mode=mode, coordinate_transformation_mode=transform,
                    nearest_mode="floor")


def _lead_dims(b: AtenBuilder, x: ir.Value) -> list[Any]:
    shape = b.Shape(x, start=0, end=2)
    return [b.Squeeze(b.Slice(shape, b.const([i]), b.const([i + 1])), b.const([0]))
            for i in range(2)]


@aten_op("aten.upsample_nearest1d.vec", "aten.upsample_nearest2d.vec",
         "aten.upsample_nearest3d.vec")
def upsample_nearest(b: AtenBuilder, x: ir.Value, output_size: Sequence[int] | None,
                     scale_factors: Sequence[float] | None) -> ir.Value:
    """Resize mode=nearest, asymmetric coordinates, floor rounding (torch 'nearest')."""
    return _resize(b, x, output_size, scale_factors, "nearest", "asymmetric")


@aten_op("aten.upsample_bilinear2d.vec", "aten.upsample_linear1d.vec",
         "aten.upsample_trilinear3d.vec")
def upsample_linear(b: AtenBuilder, x: ir.Value, output_size: Sequence[int] | None,
                    align_corners: bool, scale_factors: Sequence[float] | None) -> ir.Value:
    """Resize mode=linear (align_corners or half_pixel)."""
    transform = "align_corners" if align_corners else "half_pixel"
    return _resize(b, x, output_size, scale_factors, "linear", transform)


@aten_op("aten.pixel_shuffle.default")
def pixel_shuffle(b: AtenBuilder, x: ir.Value, upscale_factor: int) -> ir.Value:
    """DepthToSpace in CRD mode."""
    return b.DepthToSpace(x, blocksize=upscale_factor, mode="CRD")


@aten_op("aten.pixel_unshuffle.default")
def pixel_unshuffle(b: AtenBuilder, x: ir.Value, downscale_factor: int) -> ir.Value:
    """SpaceToDepth matches torch's channel order only for 1 channel; use reshapes."""
    _, c, h, w = b.dims(x)
    r = downscale_factor
    y = b.Reshape(x, b.ints([-1, c, h // r, r, w // r, r]))  # type: ignore[operator,list-item]
    y = b.Transpose(y, perm=[0, 1, 3, 5, 2, 4])
    return b.Reshape(y, b.ints([-1, c * r * r, h // r, w // r]))  # type: ignore[operator]
