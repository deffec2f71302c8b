"""Normalisation: BatchNormalization (MUL + ADD), LayerNormalization (with its Mean and
InvStdDev outputs), RMSNormalization, GroupNormalization and InstanceNormalization (decomposed
into MEAN / SUB / MUL / RSQRT / ADD)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import value_dtype
from modelconv.exporters.tflite.ops_elementwise import binary
from modelconv.exporters.tflite.registry import attr, output_used, tflite_lowering
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN


def _channel_shape(ctx: LoweringContext, node: ir.Node, x: int) -> list[int]:
    """Broadcast shape of a per-channel vector (channels last in NHWC, axis 1 otherwise)."""
    shape = ctx.t(x).shape
    if node.domain == NHWC_DOMAIN:
        return [shape[-1]]
    return [shape[1]] + [1] * (len(shape) - 2)


def _float32_reason(node: ir.Node) -> str | None:
    """The decomposed normalisations compute in float32 only (MEAN / RSQRT kernels)."""
    name = value_dtype(node.inputs[0])
    return None if name in (None, "float32") else f"{name} inputs (float32 only)"


def check_norm_training(node: ir.Node) -> str | None:
    """Inference normalisation only: BatchNormalization training_mode=1 (batch statistics)
    and its optional statistics outputs (running mean / var) are refused, naming the output;
    LayerNormalization / RMSNormalization / GroupNormalization compute in float32 only."""
    if node.op_type == "BatchNormalization" and attr(node, "training_mode", 0):
        return "training_mode=1"
    if node.op_type != "BatchNormalization":
        return _float32_reason(node)
    names = {"BatchNormalization": ("running_mean", "running_var")}.get(node.op_type, ())
    used = [n for i, n in enumerate(names, start=1) if output_used(node, i)]
    return f"{' and '.join(used)} output{'s' if len(used) > 1 else ''}" if used else None


@tflite_lowering("BatchNormalization", check=check_norm_training)
def lower_batchnorm(ctx: LoweringContext, node: ir.Node) -> None:
    """Inference BatchNormalization -> MUL(scale) + ADD(shift) with folded constants (run-time
    parameters: scale = gamma * RSQRT(var + eps), shift = beta - mean * scale by ops)."""
    x = ctx.inp(node, 0)
    if any(ctx.array(node.inputs[i]) is None for i in range(1, 5)):
        _runtime_batchnorm(ctx, node, x)
        return
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


def _channel_param(ctx: LoweringContext, node: ir.Node, i: int, cshape: list[int],
                   what: str) -> int:
    """Input ``i`` (one value per channel) shaped to broadcast over ``cshape``: a constant
    folded, a run-time value RESHAPEd."""
    arr = ctx.array(node.inputs[i])
    if arr is not None:
        return ctx.const(arr.astype(np.float32).reshape(cshape), what)
    return ctx.reshape(ctx.inp(node, i), cshape, what)


def _runtime_batchnorm(ctx: LoweringContext, node: ir.Node, x: int) -> None:
    cshape = _channel_shape(ctx, node, x)
    gamma, beta, mean, var = (_channel_param(ctx, node, i, cshape, w) for i, w in
                              enumerate(("gamma", "beta", "mean", "var"), start=1))
    eps = float(attr(node, "epsilon", 1e-5))  # type: ignore[arg-type]
    shifted, inv, scale, moved, shift = (ctx.like(gamma, w) for w in (
        "var_eps", "inv_std", "scale", "mean_scaled", "shift"))
    binary(ctx, "ADD", var, ctx.const(np.asarray(eps, np.float32), "epsilon"), shifted)
    ctx.emit("RSQRT", [shifted], [inv])
    binary(ctx, "MUL", gamma, inv, scale)
    binary(ctx, "MUL", mean, scale, moved)
    binary(ctx, "SUB", beta, moved, shift)
    scaled = ctx.like(x, "scaled")
    binary(ctx, "MUL", x, scale, scaled)
    binary(ctx, "ADD", scaled, shift, ctx.out(node))


def normalize(ctx: LoweringContext, x: int, axes: list[int], eps: float, name: str,
              stats: list[int] | None = None) -> int:
    """(x - mean) * rsqrt(var + eps) over ``axes`` as MEAN/SUB/MUL/RSQRT ops.

    Args:
        ctx: the lowering context.
        x: input tensor.
        axes: axes reduced (sorted, non-negative).
        eps: added to the variance.
        name: prefix of the intermediate tensors.
        stats: when given, receives the mean and 1/stddev tensors (kept dims).

    Returns:
        The normalised tensor."""
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
    if stats is not None:
        stats.extend([mean, inv])
    return y


def _affine(ctx: LoweringContext, y: int, scale: int, bias: int, dst: int) -> None:
    if bias < 0:
        binary(ctx, "MUL", y, scale, dst)
        return
    scaled = ctx.like(y, "scaled")
    binary(ctx, "MUL", y, scale, scaled)
    binary(ctx, "ADD", scaled, bias, dst)


@tflite_lowering("LayerNormalization", check=check_norm_training)
def lower_layernorm(ctx: LoweringContext, node: ir.Node) -> None:
    """LayerNormalization over axes [axis, rank) -> normalize + MUL(scale) + ADD(bias)."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    axis = (node.attributes["axis"].value if "axis" in node.attributes else -1) % rank
    eps = node.attributes["epsilon"].value if "epsilon" in node.attributes else 1e-5
    stats: list[int] = []
    y = normalize(ctx, x, list(range(axis, rank)), eps, "ln", stats)
    scale = ctx.array(node.inputs[1])
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is None and scale is not None and np.all(scale == 1) \
            and not node.outputs[0].is_graph_output():  # folded into the next FC layers
        ctx.alias(node.outputs[0], y)
    else:
        _affine(ctx, y, ctx.inp(node, 1), ctx.inp(node, 2), ctx.out(node))
    for i, src in ((1, stats[0]), (2, stats[1])):  # Mean and InvStdDev (kept dims)
        if output_used(node, i):
            dst = ctx.out(node, i)
            ctx.reshape(src, ctx.t(dst).shape, dst=dst)


@tflite_lowering("RMSNormalization", check=_float32_reason)
def lower_rmsnorm(ctx: LoweringContext, node: ir.Node) -> None:
    """RMSNormalization over axes [axis, rank) -> x * rsqrt(mean(x * x) + eps) * scale."""
    x = ctx.inp(node, 0)
    shape = ctx.t(x).shape
    rank = len(shape)
    axis = int(attr(node, "axis", -1)) % rank  # type: ignore[call-overload]
    eps = float(attr(node, "epsilon", 1e-5))  # type: ignore[arg-type]
    axes = list(range(axis, rank))
    kept = [1 if i in axes else d for i, d in enumerate(shape)]
    opts = s.ReducerOptionsT()
    opts.keepDims = True
    sq, ms = ctx.like(x, "rms_sq"), ctx.like(x, "rms_mean_sq", kept)
    binary(ctx, "MUL", x, x, sq)
    ctx.emit("MEAN", [sq, ctx.i32(axes, "rms_axes")], [ms], opts)
    ms_eps, inv = ctx.like(ms, "rms_mean_sq_eps"), ctx.like(ms, "rms_inv")
    binary(ctx, "ADD", ms, ctx.const(np.float32(eps), "rms_eps"), ms_eps)
    ctx.emit("RSQRT", [ms_eps], [inv])
    y = ctx.like(x, "rms_normalized")
    binary(ctx, "MUL", x, inv, y)
    binary(ctx, "MUL", y, ctx.inp(node, 1), ctx.out(node))


def check_groupnorm(node: ir.Node) -> str | None:
    """GroupNormalization: float32, channels-first (as ONNX writes it), constant scale and
    bias of C (opset 21) or num_groups (opset 18) elements."""
    reason = _float32_reason(node)
    if reason is not None:
        return reason
    return "channels-last layout" if node.domain == NHWC_DOMAIN else None


@tflite_lowering("GroupNormalization", check=check_groupnorm)
def lower_groupnorm(ctx: LoweringContext, node: ir.Node) -> None:
    """GroupNormalization -> RESHAPE to (N, G, -1), normalize over the last axis, RESHAPE back,
    per-channel MUL + ADD. A scale / bias of G elements (opset 18) is repeated per channel."""
    x = ctx.inp(node, 0)
    shape = ctx.t(x).shape
    n, c = shape[0], shape[1]
    groups = int(attr(node, "num_groups"))  # type: ignore[call-overload]
    eps = float(attr(node, "epsilon", 1e-5))  # type: ignore[arg-type]
    if groups <= 0 or c % groups:
        raise ExportError(f"GroupNormalization {node.name}: {c} channels, num_groups={groups}")
    grouped = ctx.reshape(x, [n, groups, int(np.prod(shape[1:])) // groups], "grouped")
    y = normalize(ctx, grouped, [2], eps, "gn")
    y = ctx.reshape(y, shape, "gn_ungrouped")
    cshape = [c] + [1] * (len(shape) - 2)
    params = []
    for i, what in ((1, "scale"), (2, "bias")):
        t = ctx.inp(node, i)
        size = int(np.prod(ctx.t(t).shape))
        if size == groups and groups != c:  # opset 18: one value per group
            per = ctx.like(t, f"{what}_per_channel", [c])
            opts = s.GatherOptionsT()
            opts.axis = 0
            ctx.emit("GATHER", [ctx.reshape(t, [groups], f"{what}_flat"),
                                ctx.i32(np.repeat(np.arange(groups), c // groups), "groups")],
                     [per], opts)
            t, size = per, c
        if size != c:
            raise ExportError(f"GroupNormalization {node.name}: {what} has {size} elements")
        params.append(ctx.reshape(t, cshape, what))
    _affine(ctx, y, params[0], params[1], ctx.out(node))


@tflite_lowering("InstanceNormalization")
def lower_instancenorm(ctx: LoweringContext, node: ir.Node) -> None:
    """InstanceNormalization (channels-last) -> normalize over H, W + per-channel affine."""
    x = ctx.inp(node, 0)
    rank = len(ctx.t(x).shape)
    eps = node.attributes["epsilon"].value if "epsilon" in node.attributes else 1e-5
    spatial = list(range(1, rank - 1)) if node.domain == NHWC_DOMAIN else list(range(2, rank))
    y = normalize(ctx, x, spatial, eps, "in")
    cshape = _channel_shape(ctx, node, x)
    scale, bias = (_channel_param(ctx, node, i, cshape, w) for i, w in ((1, "scale"),
                                                                          (2, "bias")))
    _affine(ctx, y, scale, bias, ctx.out(node))
