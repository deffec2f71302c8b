"""Activations and masks composed from builtins: Selu, Celu (through ELU), Trilu (a constant
mask and SELECT_V2)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import value_dtype
from modelconv.exporters.tflite.ops_elementwise import binary, scalar
from modelconv.exporters.tflite.registry import attr, tflite_lowering

# select.cc (SELECT_V2) copies these element types.
_SELECT_DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "uint32", "bool")


def check_float32(node: ir.Node) -> str | None:
    """ELU / EXP compose in float32 only: other input dtypes are refused."""
    name = value_dtype(node.inputs[0])
    return None if name in (None, "float32") else f"{name} inputs (float32 only)"


@tflite_lowering("Selu", check=check_float32)
def lower_selu(ctx: LoweringContext, node: ir.Node) -> None:
    """Selu -> gamma * SELECT_V2(x > 0, x, alpha * ELU(x))."""
    x = ctx.inp(node, 0)
    alpha = float(attr(node, "alpha", 1.67326319217681884765625))  # type: ignore[arg-type]
    gamma = float(attr(node, "gamma", 1.05070102214813232421875))  # type: ignore[arg-type]
    e, neg, sel = (ctx.like(x, n) for n in ("elu", "negative", "selected"))
    ctx.emit("ELU", [x], [e])
    binary(ctx, "MUL", e, scalar(ctx, x, alpha, "alpha"), neg)
    cond = ctx.tmp("positive", np.bool_, ctx.t(x).shape)
    ctx.emit("GREATER", [x, scalar(ctx, x, 0.0, "zero")], [cond])
    ctx.emit("SELECT_V2", [cond, x, neg], [sel])
    binary(ctx, "MUL", sel, scalar(ctx, x, gamma, "gamma"), ctx.out(node))


@tflite_lowering("Celu", check=check_float32)
def lower_celu(ctx: LoweringContext, node: ir.Node) -> None:
    """Celu -> alpha * ELU(x / alpha) (max(0, x) + min(0, alpha * (exp(x / alpha) - 1)))."""
    x = ctx.inp(node, 0)
    alpha = float(attr(node, "alpha", 1.0))  # type: ignore[arg-type]
    dst = ctx.out(node)
    if alpha == 1.0:
        ctx.emit("ELU", [x], [dst])
        return
    scaled, e = ctx.like(x, "scaled"), ctx.like(x, "elu")
    binary(ctx, "DIV", x, scalar(ctx, x, alpha, "alpha"), scaled)
    ctx.emit("ELU", [scaled], [e])
    binary(ctx, "MUL", e, scalar(ctx, x, alpha, "alpha"), dst)


def check_trilu(node: ir.Node) -> str | None:
    """Trilu: an element type SELECT_V2 copies."""
    name = value_dtype(node.inputs[0])
    if name is not None and name not in _SELECT_DTYPES:
        return f"{name} inputs: no LiteRT SELECT_V2 kernel"
    return None


@tflite_lowering("Trilu", check=check_trilu)
def lower_trilu(ctx: LoweringContext, node: ir.Node) -> None:
    """Trilu -> SELECT_V2(mask over the last two axes, x, 0). The mask is a constant for a
    constant k, else GREATER_EQUAL / LESS_EQUAL of the constant (col - row) grid and k."""
    x = ctx.inp(node, 0)
    rows, cols = ctx.t(x).shape[-2:]
    upper = bool(attr(node, "upper", 1))
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    k_value = node.inputs[1] if len(node.inputs) > 1 else None
    if k_value is None or k_value.const_value is not None:
        k = 0 if k_value is None else int(ctx.need_array(k_value, "k").reshape(-1)[0])
        mask = ctx.const((j - i >= k) if upper else (j - i <= k), "mask")
    else:
        k_t = ctx.reshape(ctx.get(k_value), [1], "k")
        mask = ctx.tmp("mask", np.bool_, [rows, cols])
        diag = ctx.const((j - i).astype(ctx.t(k_t).dtype), "diagonal")
        ctx.emit("GREATER_EQUAL" if upper else "LESS_EQUAL", [diag, k_t], [mask])
    ctx.emit("SELECT_V2", [mask, x, scalar(ctx, x, 0, "zero")], [ctx.out(node)])
