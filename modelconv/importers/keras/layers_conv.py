"""Convolution layers: Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1D/2D/3DTranspose.

Keras kernels ``(k..., in, out)`` are transposed once here to ONNX ``(out, in, k...)``;
activations run channels-first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import (
    WEIGHT_OPTIONS,
    KTensor,
    LayerUnsupported,
    apply_activation,
    as_tuple,
    keras_layer,
    major_of,
    padding_attrs,
)
from modelconv.importers.keras.tensors import FIRST, first, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_CHANNELS_LAST = {"data_format": "channels_last"}
_LORA = {"lora_rank": None, "lora_alpha": None}
_GEOMETRY = ("kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias")
_DEPTHWISE_OPTIONS = ("depthwise_initializer", "depthwise_regularizer",
                      "depthwise_constraint", "bias_initializer", "bias_regularizer",
                      "bias_constraint", "activity_regularizer")
#: what each family of convolution handlers consumes (``@keras_layer`` keywords)
_CONV: dict[str, Any] = {
    "reads": ("filters", "groups", *_GEOMETRY), "inert": WEIGHT_OPTIONS,
    "defaults": {**_CHANNELS_LAST, **_LORA}}
_DEPTHWISE: dict[str, Any] = {
    "reads": ("depth_multiplier", *_GEOMETRY), "inert": _DEPTHWISE_OPTIONS,
    "defaults": {**_CHANNELS_LAST, "groups": 1, **_LORA}}
#: Keras 2 also wrote the base class' kernel_* options (unused by separable convolutions)
_SEPARABLE: dict[str, Any] = {
    "reads": ("filters", "depth_multiplier", *_GEOMETRY),
    "inert": (*_DEPTHWISE_OPTIONS, "pointwise_initializer", "pointwise_regularizer",
              "pointwise_constraint", "kernel_initializer", "kernel_regularizer",
              "kernel_constraint"),
    "defaults": {**_CHANNELS_LAST, "groups": 1, **_LORA}}
_TRANSPOSE: dict[str, Any] = {
    "reads": ("filters", "output_padding", *_GEOMETRY), "inert": WEIGHT_OPTIONS,
    "defaults": {**_CHANNELS_LAST, "groups": 1, **_LORA}}


def _geometry(cfg: dict[str, Any], n: int) -> tuple[tuple[int, ...], ...]:
    return (as_tuple(cfg["kernel_size"], n), as_tuple(cfg.get("strides", 1), n),
            as_tuple(cfg.get("dilation_rate", 1), n))


def _to_onnx_kernel(kernel: np.ndarray) -> np.ndarray:
    n = kernel.ndim
    return kernel.transpose(n - 1, n - 2, *range(n - 2))


def _finish(b: GraphBuilder, cfg: dict[str, Any], x: KTensor, y: Any) -> KTensor:
    out = KTensor(y, x.rank, FIRST)
    return apply_activation(b, out, cfg.get("activation"), major_of(cfg))


def _conv(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor],
          n: int) -> KTensor:
    x = xs[0]
    ks, st, dil = _geometry(cfg, n)
    groups = int(cfg.get("groups", 1) or 1)
    kernel = w.get(0, [*ks, None, cfg["filters"]])
    bias = w.get(1, [cfg["filters"]]) if cfg.get("use_bias", True) else None
    y = b.Conv(first(b, x), weight(b, _to_onnx_kernel(kernel), "kernel"),
               None if bias is None else weight(b, bias, "bias"),
               kernel_shape=list(ks), strides=list(st), dilations=list(dil), group=groups,
               **padding_attrs(cfg.get("padding", "valid"), ks, st, dil))
    return _finish(b, cfg, x, y)


@keras_layer("Conv1D", "Convolution1D", **_CONV)
def conv1d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Conv1D -> Conv (channels-first)."""
    return _conv(b, cfg, w, xs, 1)


@keras_layer("Conv2D", "Convolution2D", **_CONV)
def conv2d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Conv2D (incl. groups) -> Conv."""
    return _conv(b, cfg, w, xs, 2)


@keras_layer("Conv3D", "Convolution3D", **_CONV)
def conv3d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Conv3D -> Conv."""
    return _conv(b, cfg, w, xs, 3)


def _depthwise_kernel(kernel: np.ndarray) -> np.ndarray:
    """(k..., cin, mult) -> ONNX (cin*mult, 1, k...), output channel c*mult+m as Keras."""
    *ks, cin, mult = kernel.shape
    flat = kernel.reshape(*ks, 1, cin * mult)
    return _to_onnx_kernel(flat)


def _depthwise(b: GraphBuilder, cfg: dict[str, Any], x: KTensor, kernel: np.ndarray,
               n: int, suffix: str) -> Any:
    ks, st, dil = _geometry(cfg, n)
    cin = kernel.shape[-2]
    return b.Conv(first(b, x), weight(b, _depthwise_kernel(kernel), suffix), None,
                  kernel_shape=list(ks), strides=list(st), dilations=list(dil), group=cin,
                  **padding_attrs(cfg.get("padding", "valid"), ks, st, dil))


def _depthwise_layer(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor], n: int) -> KTensor:
    ks = as_tuple(cfg["kernel_size"], n)
    kernel = w.get(0, [*ks, None, cfg.get("depth_multiplier", 1)])
    y = _depthwise(b, cfg, xs[0], kernel, n, "depthwise_kernel")
    if cfg.get("use_bias", True):
        bias = w.get(1, [kernel.shape[-2] * kernel.shape[-1]])
        y = b.Add(y, weight(b, bias.reshape(-1, *([1] * n)), "bias"))
    return _finish(b, cfg, xs[0], y)


@keras_layer("DepthwiseConv2D", **_DEPTHWISE)
def depthwise_conv2d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """DepthwiseConv2D -> grouped Conv."""
    return _depthwise_layer(b, cfg, w, xs, 2)


@keras_layer("DepthwiseConv1D", **_DEPTHWISE)
def depthwise_conv1d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """DepthwiseConv1D -> grouped Conv."""
    return _depthwise_layer(b, cfg, w, xs, 1)


def _separable(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor],
               n: int) -> KTensor:
    ks = as_tuple(cfg["kernel_size"], n)
    dkernel = w.get(0, [*ks, None, cfg.get("depth_multiplier", 1)])
    pkernel = w.get(1, [*([1] * n), dkernel.shape[-2] * dkernel.shape[-1], cfg["filters"]])
    bias = w.get(2, [cfg["filters"]]) if cfg.get("use_bias", True) else None
    y = _depthwise(b, cfg, xs[0], dkernel, n, "depthwise_kernel")
    y = b.Conv(y, weight(b, _to_onnx_kernel(pkernel), "pointwise_kernel"),
               None if bias is None else weight(b, bias, "bias"), kernel_shape=[1] * n)
    return _finish(b, cfg, xs[0], y)


@keras_layer("SeparableConv2D", "SeparableConvolution2D", **_SEPARABLE)
def separable_conv2d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """SeparableConv2D -> depthwise Conv then 1x1 Conv."""
    return _separable(b, cfg, w, xs, 2)


@keras_layer("SeparableConv1D", "SeparableConvolution1D", **_SEPARABLE)
def separable_conv1d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """SeparableConv1D -> depthwise Conv then 1x1 Conv."""
    return _separable(b, cfg, w, xs, 1)


def _transpose_conv(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                    xs: list[KTensor], n: int) -> KTensor:
    ks, st, dil = _geometry(cfg, n)
    kernel = w.get(0, [*ks, cfg["filters"], None])  # (k..., out, in)
    bias = w.get(1, [cfg["filters"]]) if cfg.get("use_bias", True) else None
    pads = [0] * (2 * n)
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise LayerUnsupported(f"padding={padding!r}")
    if padding == "same":
        total = [max(k * d - d + 1 - s, 0) for k, d, s in zip(ks, dil, st, strict=True)]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]
    extra = cfg.get("output_padding")
    attrs: dict[str, Any] = {}
    if extra is not None:
        attrs["output_padding"] = list(as_tuple(extra, n))
    onnx_kernel = kernel.transpose(n + 1, n, *range(n))  # (in, out, k...)
    y = b.ConvTranspose(first(b, xs[0]), weight(b, onnx_kernel, "kernel"),
                        None if bias is None else weight(b, bias, "bias"),
                        kernel_shape=list(ks), strides=list(st), dilations=list(dil),
                        pads=pads, **attrs)
    return _finish(b, cfg, xs[0], y)


@keras_layer("Conv2DTranspose", "Convolution2DTranspose", **_TRANSPOSE)
def conv2d_transpose(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """Conv2DTranspose -> ConvTranspose."""
    return _transpose_conv(b, cfg, w, xs, 2)


@keras_layer("Conv1DTranspose", "Convolution1DTranspose", **_TRANSPOSE)
def conv1d_transpose(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """Conv1DTranspose -> ConvTranspose."""
    return _transpose_conv(b, cfg, w, xs, 1)


@keras_layer("Conv3DTranspose", "Convolution3DTranspose", **_TRANSPOSE)
def conv3d_transpose(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """Conv3DTranspose -> ConvTranspose (ONNX only: no 3-D TFLite lowering)."""
    return _transpose_conv(b, cfg, w, xs, 3)
