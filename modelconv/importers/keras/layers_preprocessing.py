"""Preprocessing layers that are part of inference: Rescaling, Normalization, Resizing."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, keras_layer, per_channel
from modelconv.importers.keras.tensors import FIRST, first
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_EPSILON = 1e-7  # keras.backend.epsilon()


def _scalar_or_channels(b: GraphBuilder, x: KTensor, value: Any, suffix: str) -> Any:
    arr = np.asarray(value, dtype=np.float32)
    if arr.size == 1:
        return b.const(arr.reshape(()))
    return per_channel(b, x, arr, suffix)


@keras_layer("Rescaling", reads=("scale", "offset"))
def rescaling(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
              xs: list[KTensor]) -> KTensor:
    """Rescaling: x * scale + offset (scalars or per channel)."""
    x = xs[0]
    v = x.value if x.dtype.startswith("float") else b.Cast(x.value, to=1)
    y = b.Mul(v, _scalar_or_channels(b, x, cfg.get("scale", 1.0), "scale"))
    offset = cfg.get("offset", 0.0)
    if np.any(np.asarray(offset) != 0):
        y = b.Add(y, _scalar_or_channels(b, x, offset, "offset"))
    return x.like(y, dtype="float32")


@keras_layer("Normalization", reads=("axis", "mean", "variance", "invert"))
def normalization(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                  xs: list[KTensor]) -> KTensor:
    """Normalization: (x - mean) / max(sqrt(var), eps), or its inverse."""
    x = xs[0]
    axis = cfg.get("axis", -1)
    axes = axis if isinstance(axis, list | tuple) else [axis]
    if [int(a) % x.rank for a in axes] != [x.rank - 1]:
        raise LayerUnsupported(f"axis={axis!r} (not the channel axis)")
    if cfg.get("mean") is not None and cfg.get("variance") is not None:
        mean = np.asarray(cfg["mean"], np.float32)
        var = np.asarray(cfg["variance"], np.float32)
    else:
        mean, var = w.get(0), w.get(1)
    std = np.maximum(np.sqrt(var), _EPSILON).astype(np.float32)
    m, s = _scalar_or_channels(b, x, mean, "mean"), _scalar_or_channels(b, x, std, "std")
    if cfg.get("invert"):
        return x.like(b.Add(b.Mul(x.value, s), m))
    return x.like(b.Div(b.Sub(x.value, m), s))


@keras_layer("Resizing", reads=("height", "width", "interpolation"),
             inert=("fill_mode", "fill_value"),  # used by pad_to_aspect_ratio only
             defaults={"crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False,
                       "antialias": False, "data_format": "channels_last"})
def resizing(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
             xs: list[KTensor]) -> KTensor:
    """Resizing(height, width) -> Resize on the spatial axes (bilinear/nearest)."""
    x = xs[0]
    mode = cfg.get("interpolation", "bilinear")
    if mode == "bilinear":
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    elif mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                 "nearest_mode": "round_prefer_ceil"}
    else:
        raise LayerUnsupported(f"interpolation={mode!r}")
    v = first(b, x)
    hw = b.const(np.asarray([cfg["height"], cfg["width"]], np.int64))
    sizes = b.Concat(b.Shape(v, end=2), hw, axis=0)
    y = b.Resize(v, None, None, sizes, **attrs)
    return KTensor(y, x.rank, FIRST)
