"""Normalisation layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from ._base import AtenBuilder, aten_op, np_dtype


def _ones_or(b: AtenBuilder, value: ir.Value | None, n: int, fill: float,
             dtype: ir.DataType | None) -> ir.Value:
    return value if value is not None else b.const(np.full((n,), fill, dtype=np_dtype(dtype)))


def _batch_stats_norm(b: AtenBuilder, x: ir.Value, weight: ir.Value | None,
                      bias: ir.Value | None, axes: list[int], eps: float) -> ir.Value:
    """(x - mean) / sqrt(var + eps) over ``axes``, then per-channel affine."""
    mean = b.ReduceMean(x, b.const(axes), keepdims=1)
    diff = b.Sub(x, mean)
    var = b.ReduceMean(b.Mul(diff, diff), b.const(axes), keepdims=1)
    y = b.Div(diff, b.Sqrt(b.Add(var, b.scalar(eps, b.out_dtype()))))
    if weight is not None:
        y = b.Mul(y, b.unsqueeze_to(weight, b.rank(x)))
    if bias is not None:
        y = b.Add(y, b.unsqueeze_to(bias, b.rank(x)))
    return y


@aten_op("aten.batch_norm.default")
def batch_norm(b: AtenBuilder, x: ir.Value, weight: ir.Value | None, bias: ir.Value | None,
               running_mean: ir.Value | None, running_var: ir.Value | None, training: bool,
               momentum: float, eps: float, cudnn_enabled: bool = True) -> ir.Value:
    """BatchNormalization with running stats; batch statistics when there are none."""
    if running_mean is None or running_var is None or training:
        axes = [0, *range(2, b.rank(x))]
        return _batch_stats_norm(b, x, weight, bias, axes, eps)
    c = b.dims(running_mean)[0] or 1
    scale = _ones_or(b, weight, c, 1.0, x.dtype)
    shift = _ones_or(b, bias, c, 0.0, x.dtype)
    return b.BatchNormalization(x, scale, shift, running_mean, running_var, epsilon=eps)


@aten_op("aten._native_batch_norm_legit_no_training.default")
def native_batch_norm_no_training(b: AtenBuilder, x: ir.Value, weight: ir.Value | None,
                                  bias: ir.Value | None, running_mean: ir.Value,
                                  running_var: ir.Value, momentum: float,
                                  eps: float) -> tuple[ir.Value, None, None]:
    """BatchNormalization (inference); the saved mean/invstd outputs are not used."""
    y = batch_norm(b, x, weight, bias, running_mean, running_var, False, momentum, eps)
    return y, None, None


def _batch_stats(b: AtenBuilder, x: ir.Value, weight: ir.Value | None, bias: ir.Value | None,
                 eps: float) -> tuple[ir.Value, ir.Value, ir.Value, ir.Value]:
    """(normalised x, mean (C,), 1/sqrt(biased var + eps) (C,), biased var (C,)) over the
    batch and spatial dims, as torch's training-mode batch norm computes them."""
    axes = [0, *range(2, b.rank(x))]
    ax = b.const(axes)
    mean = b.ReduceMean(x, ax, keepdims=1)
    diff = b.Sub(x, mean)
    var = b.ReduceMean(b.Mul(diff, diff), ax, keepdims=1)
    rstd = b.Reciprocal(b.Sqrt(b.Add(var, b.scalar(eps, x.dtype))))
    y = b.Mul(diff, rstd)
    if weight is not None:
        y = b.Mul(y, b.unsqueeze_to(weight, b.rank(x)))
    if bias is not None:
        y = b.Add(y, b.unsqueeze_to(bias, b.rank(x)))
    flat = b.const([-1])
    return y, b.Reshape(mean, flat), b.Reshape(rstd, flat), b.Reshape(var, flat)


@aten_op("aten._native_batch_norm_legit.no_stats")
def native_batch_norm_no_stats(b: AtenBuilder, x: ir.Value, weight: ir.Value | None,
                               bias: ir.Value | None, training: bool, momentum: float,
                               eps: float) -> tuple[ir.Value, ir.Value, ir.Value]:
    """Batch norm over the batch statistics (``F.batch_norm(x, None, None, training=True)``,
    as in weight-standardised convs): (y, mean, rstd) with the biased variance, as torch."""
    y, mean, rstd, _ = _batch_stats(b, x, weight, bias, eps)
    return y, mean, rstd


def _running_update(b: AtenBuilder, x: ir.Value, running: ir.Value, batch: ir.Value,
                    momentum: float, unbias: bool) -> ir.Value:
    if unbias:  # torch updates running_var with the unbiased batch variance
        dims = b.dims(x)[:1] + b.dims(x)[2:]
        count = int(np.prod([d for d in dims if d is not None]))
        if None in dims or count <= 1:
            raise ValueError("running-variance update needs static batch and spatial dims")
        batch = b.Mul(batch, b.scalar(count / (count - 1), x.dtype))
    keep = b.Mul(running, b.scalar(1.0 - momentum, x.dtype))
    return b.Add(keep, b.Mul(b.cast(batch, running.dtype), b.scalar(momentum, running.dtype)))


@aten_op("aten._native_batch_norm_legit.default",
         "aten._native_batch_norm_legit_functional.default", "aten.native_batch_norm.default")
def native_batch_norm(b: AtenBuilder, x: ir.Value, weight: ir.Value | None,
                      bias: ir.Value | None, running_mean: ir.Value | None,
                      running_var: ir.Value | None, training: bool, momentum: float,
                      eps: float) -> tuple[ir.Value | None, ...]:
    """Batch norm: running stats when not training; batch statistics when training, with
    the momentum-updated running stats as the functional variant's extra outputs (a
    stateful model's buffer update, which the converted graph does not write back)."""
    if not training and running_mean is not None and running_var is not None:
        y = batch_norm(b, x, weight, bias, running_mean, running_var, False, momentum, eps)
        outs: tuple[ir.Value | None, ...] = (y, None, None)
        return (*outs, running_mean, running_var)
    y, mean, rstd, var = _batch_stats(b, x, weight, bias, eps)
    if running_mean is None or running_var is None:
        return y, mean, rstd, None, None
    new_mean = _running_update(b, x, running_mean, mean, momentum, False)
    new_var = _running_update(b, x, running_var, var, momentum, True)
    return y, mean, rstd, new_mean, new_var


@aten_op("aten.native_group_norm.default")
def native_group_norm(b: AtenBuilder, x: ir.Value, weight: ir.Value | None,
                      bias: ir.Value | None, n: Any, c: Any, hxw: Any, group: int,
                      eps: float) -> tuple[ir.Value, None, None]:
    """GroupNorm; the mean/rstd outputs are not used at inference."""
    return group_norm(b, x, group, weight, bias, eps), None, None


@aten_op("aten.layer_norm.default")
def layer_norm(b: AtenBuilder, x: ir.Value, normalized_shape: Sequence[int],
               weight: ir.Value | None = None, bias: ir.Value | None = None,
               eps: float = 1e-5, cudnn_enable: bool = True) -> ir.Value:
    """LayerNormalization over the trailing ``normalized_shape`` dims."""
    shape = list(normalized_shape)
    if weight is None:
        weight = b.const(np.ones(shape, dtype=np_dtype(x.dtype)))
    inputs = [x, weight] if bias is None else [x, weight, bias]
    return b.op("LayerNormalization", inputs, axis=-len(shape), epsilon=eps)


@aten_op("aten.native_layer_norm.default")
def native_layer_norm(b: AtenBuilder, x: ir.Value, normalized_shape: Sequence[int],
                      weight: ir.Value | None, bias: ir.Value | None,
                      eps: float) -> tuple[ir.Value, None, None]:
    """LayerNormalization; mean/rstd outputs are not used at inference."""
    return layer_norm(b, x, normalized_shape, weight, bias, eps), None, None


@aten_op("aten.group_norm.default")
def group_norm(b: AtenBuilder, x: ir.Value, num_groups: int, weight: ir.Value | None = None,
               bias: ir.Value | None = None, eps: float = 1e-5,
               cudnn_enabled: bool = True) -> ir.Value:
    """Normalise (N, G, -1) groups, then the per-channel affine."""
    rank = b.rank(x)
    grouped = b.Reshape(x, b.ints([0, num_groups, -1]))
    y = _batch_stats_norm(b, grouped, None, None, [2], eps)
    y = b.Reshape(y, b.Shape(x))
    if weight is not None:
        y = b.Mul(y, b.unsqueeze_to(weight, rank))
    if bias is not None:
        y = b.Add(y, b.unsqueeze_to(bias, rank))
    return y


@aten_op("aten.instance_norm.default")
def instance_norm(b: AtenBuilder, x: ir.Value, weight: ir.Value | None, bias: ir.Value | None,
                  running_mean: ir.Value | None, running_var: ir.Value | None,
                  use_input_stats: bool, momentum: float, eps: float,
                  cudnn_enabled: bool = True) -> ir.Value:
    """InstanceNormalization (input statistics) or BatchNormalization (running stats)."""
    if not use_input_stats and running_mean is not None and running_var is not None:
        return batch_norm(b, x, weight, bias, running_mean, running_var, False, momentum, eps)
    c = b.dims(x)[1]
    if c is None or weight is None or bias is None:
        return _batch_stats_norm(b, x, weight, bias, list(range(2, b.rank(x))), eps)
    return b.InstanceNormalization(x, weight, bias, epsilon=eps)


@aten_op("aten.rms_norm.default")
def rms_norm(b: AtenBuilder, x: ir.Value, normalized_shape: Sequence[int],
             weight: ir.Value | None = None, eps: float | None = None) -> ir.Value:
    """x / sqrt(mean(x^2) + eps) * weight (RMSNormalization needs opset 23)."""
    axes = list(range(-len(normalized_shape), 0))
    eps = float(np.finfo(np_dtype(x.dtype)).eps) if eps is None else eps
    ms = b.ReduceMean(b.Mul(x, x), b.const(axes), keepdims=1)
    y = b.Mul(x, b.Reciprocal(b.Sqrt(b.Add(ms, b.scalar(eps, x.dtype)))))
    return y if weight is None else b.Mul(y, weight)
