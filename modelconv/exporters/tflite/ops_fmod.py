"""Mod with fmod=1 (C's fmod: the remainder takes the dividend's sign), from FLOOR_MOD.

Kept apart from ops_elementwise (whose Mod lowering calls it) so that neither imports the other.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, dtype_reason, emit_typed


def fmod_reason(node: ir.Node) -> str | None:
    """Mod fmod=1: FLOOR_MOD (and, for signed types, the sign fix) must take the dtype."""
    return dtype_reason("FLOOR_MOD", *node.inputs)


def _wide(ctx: LoweringContext, t: int, dtype: np.dtype) -> int:
    if ctx.t(t).dtype == dtype:
        return t
    data = ctx.t(t).data
    return ctx.const(data.astype(dtype), "wide") if data is not None else cast(ctx, t, dtype)


def lower_fmod(ctx: LoweringContext, node: ir.Node) -> None:
    """Mod fmod=1 (the remainder takes the dividend's sign, C fmod) -> r = FLOOR_MOD(a, b);
    where r != 0 and r's sign differs from a's, r - b (the floor remainder is fmod + b there).
    Unsigned types need no fix; signed ones compute in int32 / int64, float16 in float32."""
    a, b, dst = ctx.inp(node, 0), ctx.inp(node, 1), ctx.out(node)
    src = ctx.t(a).dtype
    if src.kind == "u":
        emit_typed(ctx, "FLOOR_MOD", [a, b], dst)
        return
    work = np.dtype(np.float32 if src.kind == "f" else np.int64 if src == np.int64
                    else np.int32)
    a, b = _wide(ctx, a, work), _wide(ctx, b, work)
    shape = ctx.t(dst).shape
    r = ctx.tmp("floor_mod", work, shape)
    ctx.emit("FLOOR_MOD", [a, b], [r])
    flags = [ctx.tmp(n, np.bool_, shape) for n in ("r_neg", "a_neg", "sign_differs",
                                                    "nonzero", "fix")]
    zero = ctx.const(np.asarray(0, work), "zero")
    ctx.emit("LESS", [r, zero], [flags[0]])
    ctx.emit("LESS", [a, zero], [flags[1]])
    ctx.emit("NOT_EQUAL", [flags[0], flags[1]], [flags[2]])
    ctx.emit("NOT_EQUAL", [r, zero], [flags[3]])
    ctx.emit("LOGICAL_AND", [flags[2], flags[3]], [flags[4]])
    shifted = ctx.tmp("shifted", work, shape)
    ctx.emit("SUB", [r, b], [shifted], s.SubOptionsT())
    out = dst if work == src else ctx.tmp("fmod", work, shape)
    ctx.emit("SELECT_V2", [flags[4], shifted, r], [out])
    if out != dst:
        cast(ctx, out, src, dst)
