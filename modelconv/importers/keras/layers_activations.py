"""Activation layers: ReLU (max_value/negative_slope/threshold), LeakyReLU, PReLU, ELU,
Softmax, ThresholdedReLU."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, keras_axis, keras_layer
from modelconv.importers.keras.tensors import last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder


@keras_layer("ReLU", reads=("max_value", "negative_slope", "threshold"))
def relu(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """ReLU(max_value, negative_slope, threshold)."""
    x = xs[0]
    max_value = cfg.get("max_value")
    slope = float(cfg.get("negative_slope") or 0.0)
    threshold = float(cfg.get("threshold") or 0.0)
    v = x.value
    if threshold == 0.0 and slope == 0.0 and max_value is not None:
        # ReLU6 and friends: one Clip (onnxruntime fuses Conv + Clip, not Relu + Min)
        return x.like(b.Clip(v, b.const(np.float32(0.0)), b.const(np.float32(max_value))))
    if threshold == 0.0:
        y = b.Relu(v) if slope == 0.0 else b.LeakyRelu(v, alpha=slope)
    else:  # x >= threshold ? x : slope * (x - threshold)
        below = b.Mul(b.Sub(v, b.const(np.float32(threshold))), b.const(np.float32(slope)))
        y = b.Where(b.Less(v, b.const(np.float32(threshold))), below, v)
    if max_value is not None:
        y = b.Min(y, b.const(np.float32(max_value)))
    return x.like(y)


@keras_layer("LeakyReLU", reads=("negative_slope", "alpha"))
def leaky_relu(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
               xs: list[KTensor]) -> KTensor:
    """LeakyReLU (Keras 3 'negative_slope', Keras 2 'alpha')."""
    slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return xs[0].like(b.LeakyRelu(xs[0].value, alpha=float(slope)))


@keras_layer("PReLU", reads=("shared_axes",),
             inert=("alpha_initializer", "alpha_regularizer", "alpha_constraint"))
def prelu(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """PReLU with a learned alpha (per channel when shared over the other axes)."""
    x = xs[0]
    alpha = w.get(0)
    if alpha.ndim >= 1 and all(d == 1 for d in alpha.shape[:-1]) and x.rank >= 2:
        n = alpha.shape[-1]
        shape = [n] + [1] * (x.rank - 2) if x.layout == "first" and x.rank >= 3 else [n]
        return x.like(b.PRelu(x.value, weight(b, alpha.reshape(shape), "alpha")))
    return KTensor(b.PRelu(last(b, x), weight(b, alpha, "alpha")), x.rank, "last")


@keras_layer("ELU", reads=("alpha",))
def elu(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """ELU(alpha)."""
    return xs[0].like(b.Elu(xs[0].value, alpha=float(cfg.get("alpha", 1.0))))


@keras_layer("Softmax", reads=("axis",))
def softmax(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """Softmax over one axis (a list of axes is not supported)."""
    x = xs[0]
    axis = cfg.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise LayerUnsupported(f"axis={axis!r} (several axes)")
        axis = axis[0]
    return x.like(b.Softmax(x.value, axis=keras_axis(axis, x.rank, x.layout)))


@keras_layer("ThresholdedReLU", reads=("theta",))
def thresholded_relu(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """ThresholdedReLU(theta)."""
    return xs[0].like(b.ThresholdedRelu(xs[0].value, alpha=float(cfg.get("theta", 1.0))))
