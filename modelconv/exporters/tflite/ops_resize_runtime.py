"""Resize with run-time ``scales`` or a run-time ``roi`` (linear / cubic): the taps of
:mod:`._resize_taps` computed by ops from those tensors, in float32.

Per resized axis (every axis longer than 1: a run-time scale of an axis whose length does not
change need not be 1): the source coordinate of each output position from the scale
(half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric), its left
neighbour (FLOOR), the kernel weights of the 2 (linear) or 4 (cubic) taps as polynomials of
the distance, exclude_outside by masking and renormalising, clamped positions CAST to int32
for GATHER, and the weighted sum. Linear and cubic weights are continuous in the coordinate,
so float32 rounding moves the result by rounding only. Nearest (whose index jumps at
half-way points) and antialias (whose tap count follows the scale) are refused with run-time
scales; tf_crop_and_resize takes a run-time roi with sizes (the extrapolated positions by
SELECT_V2).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.registry import attr

_COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
           "asymmetric")


def _static(v: ir.Value | None) -> list[int] | None:
    if v is None or v.shape is None or not all(isinstance(d, int) for d in v.shape):
        return None
    return [int(d) for d in v.shape]  # type: ignore[arg-type]


def runtime_scales_reason(node: ir.Node) -> str | None:
    """Why a Resize with run-time scales cannot be computed by ops (None: it can)."""
    mode = str(attr(node, "mode", "nearest"))
    ct = str(attr(node, "coordinate_transformation_mode", "half_pixel"))
    if mode not in ("linear", "cubic"):
        return f"run-time scales with mode={mode}"
    if ct == "tf_crop_and_resize":
        scales = node.inputs[2] if len(node.inputs) > 2 else None
        if scales is not None and scales.const_value is None and (
                scales.shape is None or 0 not in list(scales.shape)):
            return "run-time scales with coordinate_transformation_mode=tf_crop_and_resize"
    elif ct not in _COORDS:
        return f"run-time scales with coordinate_transformation_mode={ct}"
    if attr(node, "antialias", 0):
        return "run-time scales with antialias=1"
    if str(attr(node, "keep_aspect_ratio_policy", "stretch")) != "stretch":
        return "run-time scales or roi with keep_aspect_ratio_policy"
    if value_dtype(node.inputs[0]) not in (None, "float32"):
        return f"{value_dtype(node.inputs[0])} input (float32 only)"
    if _static(node.inputs[0]) is None or _static(node.outputs[0]) is None:
        return "non-static shapes"
    return None


class _Ops:
    """Float32 elementwise helpers on tensors of one shape (scalars broadcast)."""

    def __init__(self, ctx: LoweringContext, shape: list[int], tag: str) -> None:
        self.ctx, self.shape, self.tag = ctx, shape, tag

    def const(self, v: float | np.ndarray) -> int:
        return self.ctx.const(np.asarray(v, np.float32), f"{self.tag}_c")

    def op(self, code: str, *ins: int | float, dtype: type = np.float32) -> int:
        args = [i if isinstance(i, int) else self.const(i) for i in ins]
        out = self.ctx.tmp(f"{self.tag}_{code.lower()}", dtype, self.shape)
        opts = {"ADD": s.AddOptionsT, "SUB": s.SubOptionsT, "MUL": s.MulOptionsT,
                "DIV": s.DivOptionsT}.get(code)
        self.ctx.emit(code, args, [out], opts() if opts else None)
        return out

    def poly(self, x: int, coeffs: list[float]) -> int:
        """Horner: coeffs[0] * x^n + ... + coeffs[n]."""
        acc = self.const(coeffs[0])
        for c in coeffs[1:]:
            acc = self.op("ADD", self.op("MUL", acc, x), c)
        return acc


def _coordinate(o: _Ops, ct: str, y: int, scale: int, n: int, out_len: int,
                roi: tuple[int, int] | None = None) -> int:
    if ct == "tf_crop_and_resize":  # sizes given: the unrounded output length is out_len
        assert roi is not None
        lo, hi = roi
        span = o.op("MUL", o.op("SUB", hi, lo), float(n - 1))
        start = o.op("MUL", lo, float(n - 1))
        step = o.op("MUL", span, 0.5) if out_len == 1 else o.op(
            "MUL", y, o.op("DIV", span, float(out_len - 1)))
        return o.op("ADD", step, start)
    if ct == "asymmetric":
        return o.op("DIV", y, scale)
    if ct == "align_corners":  # one output position: 0; else scale * n >= 2
        if out_len == 1:
            return o.const(np.zeros(1, np.float32))
        width = o.op("SUB", o.op("MUL", scale, float(n)), 1.0)
        return o.op("DIV", o.op("MUL", y, float(n - 1)), width)
    x = o.op("SUB", o.op("DIV", o.op("ADD", y, 0.5), scale), 0.5)
    if ct == "pytorch_half_pixel" and out_len == 1:  # -0.5 when scale * n is exactly 1
        unit = o.op("EQUAL", o.op("MUL", scale, float(n)), 1.0, dtype=np.bool_)
        return o.op("SELECT_V2", unit, o.const(np.full(1, -0.5, np.float32)), x)
    if ct == "half_pixel_symmetric":
        keep = o.op("DIV", float(out_len), o.op("MUL", scale, float(n)))
        x = o.op("ADD", x, o.op("MUL", o.op("SUB", 1.0, keep), n / 2))
    return x


def _weights(o: _Ops, mode: str, r: int, a: float) -> list[int]:
    """Tap weights at ratio ``r`` in (0, 1] (see _resize_taps.kernel_coeffs)."""
    if mode == "linear":
        return [o.op("SUB", 1.0, r), r]
    near = [a + 2, -(a + 3), 0.0, 1.0]
    far = [a, -5 * a, 8 * a, -4 * a]
    return [o.poly(o.op("ADD", r, 1.0), far), o.poly(r, near),
            o.poly(o.op("SUB", 1.0, r), near), o.poly(o.op("SUB", 2.0, r), far)]


def lower_runtime_scales(ctx: LoweringContext, node: ir.Node) -> None:
    """Resize with run-time scales (see the module docstring)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    ins, outs = list(ctx.t(x).shape), list(ctx.t(dst).shape)
    rank = len(ins)
    listed = [int(a) % rank for a in attr(node, "axes", None) or range(rank)]  # type: ignore
    sv = node.inputs[2] if len(node.inputs) > 2 else None
    given = sv is not None and (sv.shape is None or 0 not in list(sv.shape))
    scales = ctx.inp(node, 2) if given else -1
    if given and ctx.t(scales).dtype != np.float32:
        scales = cast(ctx, scales, np.dtype(np.float32))
    mode = str(attr(node, "mode", "nearest"))
    ct = str(attr(node, "coordinate_transformation_mode", "half_pixel"))
    roi = ctx.inp(node, 1) if ct == "tf_crop_and_resize" else -1
    if roi >= 0 and ctx.t(roi).dtype != np.float32:
        roi = cast(ctx, roi, np.dtype(np.float32))
    a = float(attr(node, "cubic_coeff_a", -0.75))  # type: ignore[arg-type]
    cur = x
    for k, ax in enumerate(listed):
        n, m = ins[ax], outs[ax]
        if n == 1 and m == 1:
            continue
        o = _Ops(ctx, [m], f"resize{ax}")
        scale = _pick(ctx, scales, k, f"resize{ax}_scale") if scales >= 0 else o.const(m / n)
        span = None if roi < 0 else (_pick(ctx, roi, k, f"resize{ax}_roi_lo"),
                                     _pick(ctx, roi, k + len(listed), f"resize{ax}_roi_hi"))
        xo = _coordinate(o, ct, o.const(np.arange(m, dtype=np.float32)), scale, n, m, span)
        left = o.op("FLOOR", xo)
        exact = o.op("EQUAL", xo, left, dtype=np.bool_)
        one, zero = o.const(np.ones(m, np.float32)), o.const(np.zeros(m, np.float32))
        ratio = o.op("SELECT_V2", exact, one, o.op("SUB", xo, left))
        weights = _weights(o, mode, ratio, a)
        taps = len(weights)
        start = o.op("SUB", o.op("ADD", left, float(1 - taps // 2)),
                     o.op("SELECT_V2", exact, one, zero))
        pos = [o.op("ADD", start, float(j)) for j in range(taps)]
        if attr(node, "exclude_outside", 0):
            inside = [o.op("LOGICAL_AND", o.op("GREATER_EQUAL", p, 0.0, dtype=np.bool_),
                           o.op("LESS", p, float(n), dtype=np.bool_), dtype=np.bool_)
                      for p in pos]
            weights = [o.op("SELECT_V2", i, w, zero) for i, w in zip(inside, weights,
                                                                    strict=True)]
            total = weights[0]
            for w in weights[1:]:
                total = o.op("ADD", total, w)
            total = o.op("SELECT_V2", o.op("EQUAL", total, 0.0, dtype=np.bool_), one, total)
            weights = [o.op("DIV", w, total) for w in weights]
        shape = list(ctx.t(cur).shape)
        shape[ax] = m
        acc = -1
        for j in range(taps):
            idx = cast(ctx, o.op("MINIMUM", o.op("MAXIMUM", pos[j], 0.0), float(n - 1)),
                       np.dtype(np.int32))
            picked = ctx.tmp(f"resize{ax}_tap{j}", np.float32, shape)
            gopts = s.GatherOptionsT()
            gopts.axis = ax
            ctx.emit("GATHER", [cur, idx], [picked], gopts)
            w = ctx.reshape(weights[j], [m] + [1] * (rank - ax - 1), f"resize{ax}_w{j}")
            part = ctx.like(picked, f"resize{ax}_part{j}")
            ctx.emit("MUL", [picked, w], [part], s.MulOptionsT())
            if acc >= 0:
                summed = ctx.like(part, f"resize{ax}_sum{j}")
                ctx.emit("ADD", [acc, part], [summed], s.AddOptionsT())
                part = summed
            acc = part
        cur = acc
        if ct == "tf_crop_and_resize":  # outside the input: extrapolation_value
            out_of = o.op("LOGICAL_OR", o.op("LESS", xo, 0.0, dtype=np.bool_),
                          o.op("GREATER", xo, float(n - 1), dtype=np.bool_), dtype=np.bool_)
            mask = ctx.reshape(out_of, [m] + [1] * (rank - ax - 1), f"resize{ax}_outside")
            fill = float(attr(node, "extrapolation_value", 0.0))  # type: ignore[arg-type]
            value = ctx.const(np.asarray(fill, np.float32), "extrapolation_value")
            filled = ctx.like(cur, f"resize{ax}_extrapolated")
            ctx.emit("SELECT_V2", [mask, value, cur], [filled])
            cur = filled
    ctx.reshape(cur, outs, dst=dst)


def _pick(ctx: LoweringContext, t: int, k: int, name: str) -> int:
    """Element ``k`` of 1-D tensor ``t`` as a scalar (GATHER)."""
    out = ctx.tmp(name, np.float32, [])
    g = s.GatherOptionsT()
    g.axis = 0
    ctx.emit("GATHER", [t, ctx.i32(k, "axis_index")], [out], g)
    return out
