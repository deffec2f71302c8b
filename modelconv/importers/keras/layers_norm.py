"""Normalization layers: Batch, Layer, Group, RMS and Unit normalization."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, keras_layer, per_channel
from modelconv.importers.keras.tensors import FIRST, LAST, first, last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_GAMMA_BETA = ("beta_initializer", "gamma_initializer", "beta_regularizer",
               "gamma_regularizer", "beta_constraint", "gamma_constraint")


def _axes(cfg: dict[str, Any], rank: int) -> list[int]:
    axis = cfg.get("axis", -1)
    axes = axis if isinstance(axis, list | tuple) else [axis]
    if not all(isinstance(a, int) and -rank <= a < rank for a in axes):
        raise LayerUnsupported(f"axis={axis!r} for a rank-{rank} input")
    return sorted(a % rank for a in axes)


@keras_layer("BatchNormalization", reads=("axis", "epsilon", "center", "scale"),
             inert=(*_GAMMA_BETA, "momentum", "moving_mean_initializer",
                    "moving_variance_initializer", "synchronized", "renorm_momentum"),
             defaults={"renorm": False, "renorm_clipping": None})
def batch_norm(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
               xs: list[KTensor]) -> KTensor:
    """BatchNormalization (inference) over the channel axis -> BatchNormalization."""
    x = xs[0]
    if _axes(cfg, x.rank) != [x.rank - 1]:
        raise LayerUnsupported(f"axis={cfg.get('axis')!r} (not the channel axis)")
    i = 0
    n = w.shape(0)[0]
    gamma = beta = None
    if cfg.get("scale", True):
        gamma, i = w.get(i, [n]), i + 1
    if cfg.get("center", True):
        beta, i = w.get(i, [n]), i + 1
    mean, var = w.get(i, [n]), w.get(i + 1, [n])
    gamma = np.ones(n, np.float32) if gamma is None else gamma
    beta = np.zeros(n, np.float32) if beta is None else beta
    y = b.BatchNormalization(first(b, x), weight(b, gamma, "gamma"), weight(b, beta, "beta"),
                             weight(b, mean, "moving_mean"), weight(b, var, "moving_variance"),
                             epsilon=float(cfg.get("epsilon", 1e-3)))
    return KTensor(y, x.rank, FIRST if x.rank >= 3 else LAST)


@keras_layer("LayerNormalization", reads=("axis", "epsilon", "center", "scale"),
             inert=_GAMMA_BETA, defaults={"rms_scaling": False})
def layer_norm(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
               xs: list[KTensor]) -> KTensor:
    """LayerNormalization over trailing axes -> LayerNormalization (channels-last)."""
    x = xs[0]
    axes = _axes(cfg, x.rank)
    if axes != list(range(axes[0], x.rank)):
        raise LayerUnsupported(f"axis={cfg.get('axis')!r} (not the trailing axes)")
    i = 0
    shape = w.shape(0) if len(w) else None
    gamma = beta = None
    if cfg.get("scale", True):
        gamma, i = w.get(i), i + 1
    if cfg.get("center", True):
        beta = w.get(i)
    if gamma is None:
        gamma = np.ones(shape or (1,), np.float32) if shape else None
    scale = weight(b, gamma, "gamma") if gamma is not None else None
    if scale is None:  # neither scale nor center: gamma 1 broadcast over the last axis
        scale = b.const(np.ones((1,), np.float32))
    y = b.LayerNormalization(last(b, x), scale, None if beta is None else weight(b, beta, "beta"),
                             axis=axes[0] - x.rank, epsilon=float(cfg.get("epsilon", 1e-3)))
    return KTensor(y, x.rank, LAST)


@keras_layer("UnitNormalization", reads=("axis",))
def unit_norm(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
              xs: list[KTensor]) -> KTensor:
    """UnitNormalization: x / max(||x||_2, eps) over the given axes."""
    x = xs[0]
    axes = _axes(cfg, x.rank)
    v = last(b, x)
    norm = b.Sqrt(b.Max(b.ReduceSumSquare(v, b.const(np.asarray(axes, np.int64)), keepdims=1),
                        b.const(np.float32(1e-12))))
    return KTensor(b.Div(v, norm), x.rank, LAST)


@keras_layer("GroupNormalization", reads=("groups", "axis", "epsilon", "center", "scale"),
             inert=_GAMMA_BETA)
def group_norm(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
               xs: list[KTensor]) -> KTensor:
    """GroupNormalization over the channel axis (channels-first).

    Each sample's channels are split into ``groups``; each group is normalized over its
    channels and spatial positions, then scaled by gamma and shifted by beta per channel.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: gamma (if ``scale``) then beta (if ``center``).
        xs: the input (rank >= 2, channels last in Keras).

    Returns:
        The normalized tensor (channels-first when rank >= 3).

    Raises:
        LayerUnsupported: ``axis`` is not the channel axis.
    """
    x = xs[0]
    if _axes(cfg, x.rank) != [x.rank - 1]:
        raise LayerUnsupported(f"axis={cfg.get('axis')!r} (not the channel axis)")
    groups = int(cfg.get("groups", 32))
    v = first(b, x) if x.rank >= 3 else x.value
    out = KTensor(v, x.rank, FIRST if x.rank >= 3 else LAST)
    g = b.Reshape(v, b.const(np.asarray([0, groups, -1], np.int64)))
    axis2 = b.const(np.asarray([2], np.int64))
    centred = b.Sub(g, b.ReduceMean(g, axis2, keepdims=1))
    var = b.ReduceMean(b.Mul(centred, centred), axis2, keepdims=1)
    eps = b.const(np.float32(cfg.get("epsilon", 1e-3)))
    y = b.Reshape(b.Div(centred, b.Sqrt(b.Add(var, eps))), b.Shape(v))
    i = 0
    if cfg.get("scale", True):
        y, i = b.Mul(y, per_channel(b, out, w.get(0), "gamma")), 1
    if cfg.get("center", True):
        y = b.Add(y, per_channel(b, out, w.get(i), "beta"))
    return out.like(y)


@keras_layer("RMSNormalization", reads=("axis", "epsilon"))
def rms_norm(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
             xs: list[KTensor]) -> KTensor:
    """RMSNormalization: x * rsqrt(mean(x^2) + eps) * scale over the trailing axes.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: the scale (shaped as the normalized axes).
        xs: the input.

    Returns:
        The normalized tensor (channels-last).

    Raises:
        LayerUnsupported: ``axis`` is not a run of trailing axes.
    """
    x = xs[0]
    axes = _axes(cfg, x.rank)
    if axes != list(range(axes[0], x.rank)):
        raise LayerUnsupported(f"axis={cfg.get('axis')!r} (not the trailing axes)")
    v = last(b, x)
    mean_sq = b.ReduceMean(b.Mul(v, v), b.const(np.asarray(axes, np.int64)), keepdims=1)
    eps = b.const(np.float32(cfg.get("epsilon", 1e-6)))
    y = b.Div(v, b.Sqrt(b.Add(mean_sq, eps)))
    return KTensor(b.Mul(y, weight(b, w.get(0), "scale")), x.rank, LAST)


__all__ = ["per_channel"]
