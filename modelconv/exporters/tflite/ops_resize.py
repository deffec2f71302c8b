"""Resize / Upsample that no RESIZE_* kernel flag pair reproduces: per-axis taps
(:mod:`._resize_taps`) as GATHER (nearest: one, any dtype) or GATHER / MUL / ADD (linear,
cubic, antialias: float32), SELECT_V2 for tf_crop_and_resize's extrapolation value.

Sizes and scales must be known when converting: constant, or (``sizes``) implied by the
static output shape — with ``keep_aspect_ratio_policy`` the scale is the one output / input
ratio that reproduces every output length, refused when several do. Run-time ``scales``
(whose value the output length does not determine) and a run-time roi are refused.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.errors import ExportError
from modelconv.exporters.tflite._resize_taps import AxisResize, Taps, resize_taps
from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import dtype_reason, emit_typed, value_dtype
from modelconv.exporters.tflite.registry import attr, tflite_lowering
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN, channels_last

_MODES = ("nearest", "linear", "cubic")
_COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
           "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")

Plan = list[tuple[int, Taps]]


def _static(value: ir.Value | None) -> list[int] | None:
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return [int(d) for d in value.shape]  # type: ignore[arg-type]


def _present(node: ir.Node, i: int) -> ir.Value | None:
    """Input ``i`` unless absent or an empty tensor."""
    v = node.inputs[i] if len(node.inputs) > i else None
    if v is None or (v.shape is not None and 0 in list(v.shape)):
        return None
    return v


def _const(v: ir.Value | None) -> np.ndarray | None:
    return None if v is None or v.const_value is None else np.asarray(v.const_value.numpy())


def _kept_scale(policy: str, axes: list[int], ins: list[int], outs: list[int],
                sizes: np.ndarray | None) -> float | str:
    """keep_aspect_ratio_policy's one scale for the listed axes (see the module docstring)."""
    if sizes is not None:
        ratios = [float(sizes[k]) / ins[a] for k, a in enumerate(axes)]
        return min(ratios) if policy == "not_larger" else max(ratios)
    found = {outs[a] / ins[a] for a in axes
             if all(int(outs[a] / ins[a] * ins[b] + 0.5) == outs[b] for b in axes)}
    if len(found) != 1:
        return f"run-time sizes with keep_aspect_ratio_policy={policy}: scale not implied"
    return found.pop()


def _axes_plan(node: ir.Node) -> list[AxisResize | None] | str:
    """Per axis of the input: its AxisResize (None: not resized), or why it is refused."""
    x, y = node.inputs[0], node.outputs[0]
    scales_v, sizes_v, roi_v = _present(node, 2), _present(node, 3), _present(node, 1)
    scales = _const(scales_v)
    if scales_v is not None and scales is None:
        return "run-time scales"
    ins, outs = _static(x), _static(y)
    if ins is None or outs is None:
        return "non-static shapes"
    rank = len(ins)
    axes = [int(a) % rank for a in attr(node, "axes", None) or range(rank)]  # type: ignore
    policy = str(attr(node, "keep_aspect_ratio_policy", "stretch"))
    sizes = _const(sizes_v)
    if scales is not None:
        per = {a: float(scales[k]) for k, a in enumerate(axes)}
    elif policy != "stretch":
        kept = _kept_scale(policy, axes, ins, outs, sizes)
        if isinstance(kept, str):
            return kept
        per = dict.fromkeys(axes, kept)
    else:
        per = {a: outs[a] / ins[a] for a in axes if ins[a]}
    roi = [(0.0, 1.0)] * rank
    if str(attr(node, "coordinate_transformation_mode", "half_pixel")) == "tf_crop_and_resize":
        given = _const(roi_v)
        if given is None:
            return "run-time roi" if roi_v is not None else "missing roi"
        half = len(given) // 2
        spans = {a: (float(given[k]), float(given[k + half])) for k, a in enumerate(axes)}
        if node.domain == NHWC_DOMAIN:  # the layout pass permutes scales / sizes, not roi
            cl = channels_last(rank)
            spans = {i: spans[cl[i]] for i in range(rank) if cl[i] in spans}
        roi = [spans.get(a, (0.0, 1.0)) for a in range(rank)]
    plan: list[AxisResize | None] = []
    for a in range(rank):
        sc = per.get(a, 1.0)
        if 0 in (ins[a], outs[a]):
            return "empty tensors"
        if ins[a] == outs[a] and math.isclose(sc, 1.0) and roi[a] == (0.0, 1.0):
            plan.append(None)
            continue
        plan.append(AxisResize(ins[a], outs[a], sc, roi[a]))
    return plan


def taps_plan(node: ir.Node) -> Plan | str:
    """The taps of every resized axis of a Resize node, or why it cannot be lowered so."""
    mode = str(attr(node, "mode", "nearest"))
    ct = str(attr(node, "coordinate_transformation_mode", "half_pixel"))
    nearest = str(attr(node, "nearest_mode", "round_prefer_floor"))
    if mode not in _MODES or ct not in _COORDS or nearest not in _NEAREST:
        return f"mode={mode} coordinate_transformation_mode={ct} nearest_mode={nearest}"
    if mode != "nearest":
        name = value_dtype(node.inputs[0])
        if name not in (None, "float32"):
            return f"{name} input (mode={mode}: float32 only)"
    elif (reason := dtype_reason("GATHER", node.inputs[0])) is not None:
        return reason
    axes = _axes_plan(node)
    if isinstance(axes, str):
        return axes
    antialias = bool(attr(node, "antialias", 0)) and mode != "nearest"
    return [(a, resize_taps(ax, mode, ct, cubic_a=float(attr(node, "cubic_coeff_a", -0.75)),  # type: ignore[arg-type]
                            exclude_outside=bool(attr(node, "exclude_outside", 0)),
                            antialias=antialias, nearest_mode=nearest))
            for a, ax in enumerate(axes) if ax is not None]


def _gather(ctx: LoweringContext, x: int, index: np.ndarray, axis: int, name: str) -> int:
    shape = list(ctx.t(x).shape)
    shape[axis] = len(index)
    out = ctx.like(x, name, shape)
    opts = s.GatherOptionsT()
    opts.axis = axis
    emit_typed(ctx, "GATHER", [x, ctx.i32(index, f"{name}_index")], out, opts)
    return out


def emit_taps(ctx: LoweringContext, x: int, plan: Plan, dst: int,
              extrapolation: float = 0.0) -> None:
    """Apply ``plan`` to ``x`` axis by axis, writing ``dst``."""
    cur = x
    for a, taps in plan:
        rank = len(ctx.t(cur).shape)
        if np.all((taps.coeff == 0) | (taps.coeff == 1)) and np.all(taps.coeff.sum(1) == 1):
            cur = _gather(ctx, cur, taps.index[np.arange(len(taps.index)),
                                               taps.coeff.argmax(1)], a, f"resize{a}")
        else:
            total = -1
            for k in range(taps.coeff.shape[1]):
                if not taps.coeff[:, k].any():
                    continue
                g = _gather(ctx, cur, taps.index[:, k], a, f"resize{a}_tap{k}")
                w = ctx.const(taps.coeff[:, k].reshape([-1] + [1] * (rank - a - 1))
                              .astype(np.float32), f"resize{a}_weight{k}")
                part = ctx.like(g, f"resize{a}_part{k}")
                ctx.emit("MUL", [g, w], [part], s.MulOptionsT())
                if total >= 0:
                    acc = ctx.like(g, f"resize{a}_sum{k}")
                    ctx.emit("ADD", [total, part], [acc], s.AddOptionsT())
                    part = acc
                total = part
            cur = total
        if taps.outside is not None and taps.outside.any():
            mask = ctx.const(taps.outside.reshape([-1] + [1] * (rank - a - 1)),
                             f"resize{a}_outside")
            filled = ctx.like(cur, f"resize{a}_extrapolated")
            ctx.emit("SELECT_V2", [mask, ctx.const(np.asarray(extrapolation, ctx.t(cur).dtype),
                                                   "extrapolation_value"), cur], [filled])
            cur = filled
    ctx.reshape(cur, ctx.t(dst).shape, dst=dst)


def upsample_plan(node: ir.Node) -> Plan | str:
    """Upsample (deprecated): constant scales (input 1, or the opset-7 attribute), asymmetric
    coordinates, nearest = floor(i / scale) or linear; run-time scales are refused (the
    output length does not determine them)."""
    mode = str(attr(node, "mode", "nearest"))
    if mode not in ("nearest", "linear"):
        return f"mode={mode}"
    given = attr(node, "scales", None)
    scales = _const(node.inputs[1]) if len(node.inputs) > 1 else None
    if scales is None and given is None:
        return "run-time scales"
    per = [float(v) for v in (scales if scales is not None else given)]  # type: ignore[attr-defined]
    ins, outs = _static(node.inputs[0]), _static(node.outputs[0])
    if ins is None or outs is None or len(per) != len(ins):
        return "non-static shapes"
    if mode == "linear" and value_dtype(node.inputs[0]) not in (None, "float32"):
        return f"{value_dtype(node.inputs[0])} input (mode=linear: float32 only)"
    return [(a, resize_taps(AxisResize(ins[a], outs[a], sc), mode, "asymmetric",
                            nearest_mode="floor"))
            for a, sc in enumerate(per) if not (sc == 1 and ins[a] == outs[a])]


def check_upsample(node: ir.Node) -> str | None:
    """See :func:`upsample_plan`."""
    plan = upsample_plan(node)
    return plan if isinstance(plan, str) else None


@tflite_lowering("Upsample", check=check_upsample)
def lower_upsample(ctx: LoweringContext, node: ir.Node) -> None:
    """Upsample -> GATHER (nearest) or GATHER / MUL / ADD (linear) taps per axis."""
    plan = upsample_plan(node)
    if isinstance(plan, str):
        raise ExportError(f"Upsample {node.name}: {plan}")
    emit_taps(ctx, ctx.inp(node, 0), plan, ctx.out(node))
