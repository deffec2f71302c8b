"""Shape layers: Reshape, Flatten, Permute, RepeatVector, ZeroPadding, Cropping, UpSampling.

Reshape/Flatten/Permute act on Keras' channels-last element order, so they read the
channels-last view of their input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, keras_layer
from modelconv.importers.keras.tensors import FIRST, LAST, first, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_I64 = np.int64
_CHANNELS_LAST = {"data_format": "channels_last"}


@keras_layer("Reshape", reads=("target_shape",))
def reshape(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """Reshape to (batch, *target_shape) in Keras order."""
    x = xs[0]
    target = [int(d) if d is not None else -1 for d in cfg["target_shape"]]
    y = b.Reshape(last(b, x), b.const(np.asarray([0, *target], _I64)))
    return KTensor(y, len(target) + 1, LAST, x.dtype)


@keras_layer("Flatten", defaults=_CHANNELS_LAST)
def flatten(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """Flatten in Keras (channels-last) element order."""
    x = xs[0]
    return KTensor(b.Flatten(last(b, x), axis=1), 2, LAST, x.dtype)


@keras_layer("Permute", reads=("dims",))
def permute(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """Permute (1-based dims, batch fixed)."""
    x = xs[0]
    perm = [0, *(int(d) for d in cfg["dims"])]
    return KTensor(b.Transpose(last(b, x), perm=perm), x.rank, LAST, x.dtype)


@keras_layer("RepeatVector", reads=("n",))
def repeat_vector(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                  xs: list[KTensor]) -> KTensor:
    """RepeatVector(n): (N, C) -> (N, n, C)."""
    x = xs[0]
    y = b.Unsqueeze(x.value, b.const(np.asarray([1], _I64)))
    y = b.Tile(y, b.const(np.asarray([1, int(cfg["n"]), 1], _I64)))
    return KTensor(y, 3, LAST, x.dtype)


def _pairs(value: Any, n: int) -> list[tuple[int, int]]:
    if isinstance(value, int):
        return [(value, value)] * n
    if n == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [(int(value[0]), int(value[1]))]
    out = [(int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1])) for v in value]
    return out if len(out) == n else out * n


def _spatial(x: KTensor) -> int:
    return x.rank - 2


@keras_layer("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", reads=("padding",),
             defaults=_CHANNELS_LAST)
def zero_padding(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                 xs: list[KTensor]) -> KTensor:
    """ZeroPadding -> Pad on the spatial axes (channels-first)."""
    x = xs[0]
    pairs = _pairs(cfg.get("padding", 1), _spatial(x))
    pads = [0, 0] + [p[0] for p in pairs] + [0, 0] + [p[1] for p in pairs]
    return KTensor(b.Pad(first(b, x), b.const(np.asarray(pads, _I64))), x.rank, FIRST)


@keras_layer("Cropping1D", "Cropping2D", "Cropping3D", reads=("cropping",),
             defaults=_CHANNELS_LAST)
def cropping(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
             xs: list[KTensor]) -> KTensor:
    """Cropping -> Slice on the spatial axes (channels-first)."""
    x = xs[0]
    pairs = _pairs(cfg.get("cropping", 1), _spatial(x))
    starts = [p[0] for p in pairs]
    ends = [-p[1] if p[1] else np.iinfo(_I64).max for p in pairs]
    axes = list(range(2, 2 + len(pairs)))
    y = b.Slice(first(b, x), b.const(np.asarray(starts, _I64)), b.const(np.asarray(ends, _I64)),
                b.const(np.asarray(axes, _I64)))
    return KTensor(y, x.rank, FIRST)


def _upsample(b: GraphBuilder, cfg: dict[str, Any], xs: list[KTensor], n: int) -> KTensor:
    x = xs[0]
    size = cfg.get("size", 2)
    size = [int(size)] * n if isinstance(size, int) else [int(s) for s in size]
    scales = b.const(np.asarray([1.0, 1.0, *size], np.float32))
    mode = cfg.get("interpolation", "nearest")
    if mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}
    elif mode == "bilinear":
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    else:
        raise LayerUnsupported(f"interpolation={mode!r}")
    return KTensor(b.Resize(first(b, x), None, scales, **attrs), x.rank, FIRST)


@keras_layer("UpSampling1D", reads=("size",))
def upsampling1d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                 xs: list[KTensor]) -> KTensor:
    """UpSampling1D -> Resize (nearest)."""
    return _upsample(b, {"size": cfg.get("size", 2), "interpolation": "nearest"}, xs, 1)


@keras_layer("UpSampling2D", reads=("size", "interpolation"), defaults=_CHANNELS_LAST)
def upsampling2d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                 xs: list[KTensor]) -> KTensor:
    """UpSampling2D -> Resize (nearest or bilinear)."""
    return _upsample(b, cfg, xs, 2)


@keras_layer("UpSampling3D", reads=("size",), defaults=_CHANNELS_LAST)
def upsampling3d(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                 xs: list[KTensor]) -> KTensor:
    """UpSampling3D -> Resize (nearest: each voxel repeated ``size`` times)."""
    return _upsample(b, {"size": cfg.get("size", 2), "interpolation": "nearest"}, xs, 3)
