"""Normalisation: BatchNormalization (MUL + ADD), LayerNormalization and InstanceNormalization
(decomposed into MEAN / SUB / MUL / RSQRT / ADD)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.ops_elementwise import binary
from modelconv.exporters.tflite.registry import tflite_lowering
from modelconv.passes.nhwc import NHWC_DOMAIN


def _channel_shape(ctx: LoweringContext, node: ir.Node, x: int) -> list[int]:
    """Broadcast shape of a per-channel vector (channels last in NHWC, axis 1 otherwise)."""
    shape = ctx.t(x).shape
    if node.domain == NHWC_DOMAIN:
        return [shape[-1]]
    return [shape[1]] + [1] * (len(shape) - 2)


def _used_optional_outputs(node: ir.Node) -> str | None:
    """Only output 0 is lowered: a used Mean / InvStdDev / running statistic is refused."""
    used = [f"output {i} '{out.name}'" for i, out in enumerate(node.outputs)
            if i > 0 and (out.uses() or out.is_graph_output())]
    return f"optional {', '.join(used)} is used" if used else None


def _check_batchnorm(node: ir.Node) -> str | None:
    if "training_mode" in node.attributes and node.attributes["training_mode"].value:
        return "training_mode=1 (batch statistics)"
    return _used_optional_outputs(node)


@tflite_lowering("BatchNormalization", check=_check_batchnorm)
def lower_batchnorm(ctx: LoweringContext, node: ir.Node) -> None:
    """Inference BatchNormalization -> MUL(scale) + ADD(shift) with folded constants."""
    x = ctx.inp(node, 0)
    gamma, beta, mean, var = (ctx.need_array(node.inputs[i], "batch-norm parameter")
                              .astype(np.float64) for i in range(1, 5))
    eps = node.attributes["epsilon"].value if "epsilon" in node.attributes else 1e-5
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    cshape = _channel_shape(ctx, node, x)
    scaled = ctx.like(x, "scaled")
    binary(ctx, "MUL", x, ctx.const(scale.reshape(cshape).astype(np.float32), "scale"), scaled)
    binary(ctx, "ADD", scaled, ctx.const(shift.reshape(cshape).astype(np.float32), "shift"),
           ctx.out(node))


def normalize(ctx: LoweringContext, x: int, axes: list[int], eps: float, name: str) -> int:
    """(x - mean) * rsqrt(var + eps) over ``axes`` as MEAN/SUB/MUL/RSQRT ops."""
    shape = ctx.t(x).shape
    kept = [1 if i in axes else d for i, d in enumerate(shape)]
    opts = s.ReducerOptionsT()
    opts.keepDims = True
    axes_t = ctx.i32(axes, f"{name}_axes")
    mean, var = ctx.like(x, f"{name}_mean", kept), ctx.like(x, f"{name}_var", kept)
    centered, sq = ctx.like(x, f"{name}_centered"), ctx.like(x, f"{name}_sq")
    ctx.emit("MEAN", [x, axes_t], [mean], opts)
    binary(ctx, "SUB", x, mean, centered)
    binary(ctx, "MUL", centered, centered, sq)
    ctx.emit("MEAN", [sq, axes_t], [var], opts)
    var_eps, inv = ctx.like(var, f"{name}_var_eps"), ctx.like(var, f"{name}_rstd")
    binary(ctx, "ADD", var, ctx.const(np.float32(eps), f"{name}_eps"), var_eps)
    ctx.emit("RSQRT", [var_eps], [inv])
    y = ctx.like(x, f"{name}_normalized")
    binary(ctx, "MUL", centered, inv, y)
    return y


def _affine(ctx: LoweringContext, y: int, scale: int, bias: int, dst: int) -> None:
    if bias < 0:
        binary(ctx, "MUL", y, scale, dst)
        return
    scaled = ctx.like(y, "scaled")
    binary(ctx, "MUL", y, scale, scaled)
    binary(ctx, "ADD", scaled, bias, dst)


@tflite_lowering("LayerNormalization", check=_used_optional_outputs)
def lower_layernorm(ctx: LoweringContext, node: ir.Node) -> None:
    """LayerNormalization over axes [axis, rank) -> normalize + MUL(scale) + ADD(bias)."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    axis = (node.attributes["axis"].value if "axis" in node.attributes else -1) % rank
    eps = node.attributes["epsilon"].value if "epsilon" in node.attributes else 1e-5
    y = normalize(ctx, x, list(range(axis, rank)), eps, "ln")
    _affine(ctx, y, ctx.inp(node, 1), ctx.inp(node, 2), ctx.out(node))


@tflite_lowering("InstanceNormalization")
def lower_instancenorm(ctx: LoweringContext, node: ir.Node) -> None:
    """InstanceNormalization (channels-last) -> normalize over H, W + per-channel affine."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    eps = node.attributes["epsilon"].value if "epsilon" in node.attributes else 1e-5
    spatial = list(range(1, rank - 1)) if node.domain == NHWC_DOMAIN else list(range(2, rank))
    y = normalize(ctx, x, spatial, eps, "in")
    cshape = _channel_shape(ctx, node, x)
    scale = ctx.const(ctx.need_array(node.inputs[1], "scale").reshape(cshape), "scale")
    bias = ctx.const(ctx.need_array(node.inputs[2], "bias").reshape(cshape), "bias")
    _affine(ctx, y, scale, bias, ctx.out(node))
