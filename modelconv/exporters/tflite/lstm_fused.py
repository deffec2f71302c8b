"""ONNX LSTM -> TFLite UNIDIRECTIONAL_SEQUENCE_LSTM (one fused op per direction).

ONNX packs the gates of ``W``/``R``/``B`` as i, o, f, c; the TFLite op takes one tensor per
gate, in its own input order (24 inputs, ``-1`` = omitted)::

    0 input | 1-4 input_to_{i,f,c,o} | 5-8 recurrent_to_{i,f,c,o} | 9-11 cell_to_{i,f,o}
    12-15 bias_{i,f,c,o} | 16-17 projection w/b | 18 output (h) state | 19 cell state
    20-23 layer-norm coefficients

The two state inputs are variable tensors: the kernel starts from them and leaves the final
state in them. A FILL / BROADCAST_TO op writes the initial state into each one before the
LSTM runs, so every invocation starts afresh (the model stays stateless, like ONNX).
Reverse directions run on REVERSE_V2(x) and reverse the result back; a bidirectional LSTM is
two ops whose outputs are packed. Y_h is the last step of the (processing-order) output.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.registry import attr as _attr
from modelconv.exporters.tflite.registry import output_used

_FUSED_ACTS = {"Tanh": "TANH", "Relu": "RELU"}
_ONNX_GATE = {"i": 0, "o": 1, "f": 2, "c": 3}  # block index of each gate in W / R / B


def _const(value: ir.Value | None) -> bool:
    return value is None or value.const_value is not None


def trivial_sequence_lens(node: ir.Node) -> bool:
    """True when an RNN node has no ``sequence_lens`` or a constant one equal to the full
    (static) sequence length for every batch item, so it changes nothing."""
    lens = node.inputs[4] if len(node.inputs) > 4 else None
    if lens is None:
        return True
    x = node.inputs[0]
    if lens.const_value is None or x is None or x.shape is None:
        return False
    seq = x.shape[1 if _attr(node, "layout", 0) else 0]
    return isinstance(seq, int) and bool(np.all(lens.const_value.numpy() == seq))


def fused_reason(node: ir.Node) -> str | None:
    """Why ``node`` (an ONNX LSTM) cannot become UNIDIRECTIONAL_SEQUENCE_LSTM, or None."""
    dirs = 2 if _attr(node, "direction", "forward") == "bidirectional" else 1
    acts = list(_attr(node, "activations", None) or ["Sigmoid", "Tanh", "Tanh"] * dirs)  # type: ignore[call-overload]
    for d in range(dirs):
        f, g, h = acts[3 * d:3 * d + 3]
        if f != "Sigmoid" or g != h or g not in _FUSED_ACTS:
            return f"activations {acts} (fused LSTM: Sigmoid gates, one Tanh/Relu)"
    if _attr(node, "clip") is not None or _attr(node, "input_forget", 0):
        return "clip / input_forget"
    if not trivial_sequence_lens(node):
        return "sequence_lens"
    if any(not _const(v) for v in node.inputs[1:4]) or (
            len(node.inputs) > 7 and not _const(node.inputs[7])):
        return "run-time weights"
    if output_used(node, 2):
        return "Y_c output (the fused op keeps the cell state internal)"
    return None


def _gate(arr: np.ndarray, gate: str, hidden: int) -> np.ndarray:
    k = _ONNX_GATE[gate]
    return np.ascontiguousarray(arr[k * hidden:(k + 1) * hidden], np.float32)


def _state(ctx: LoweringContext, node: ir.Node, slot: int, d: int, layout: int,
           shape: list[int], name: str) -> int:
    """A variable tensor holding direction ``d``'s initial state (written by FILL or
    BROADCAST_TO at the start of every invocation)."""
    var = ctx.tmp(name, np.float32, shape)
    ctx.t(var).variable = True
    value = node.inputs[slot] if len(node.inputs) > slot else None
    if value is None:
        ctx.emit("FILL", [ctx.i32(shape, "state_shape"), ctx.const(np.float32(0), "zero")],
                 [var])
        return var
    full = ctx.get(value)
    dims = ctx.t(full).shape
    begin = [d, 0, 0] if layout == 0 else [0, d, 0]
    end = [d + 1, dims[1], dims[2]] if layout == 0 else [dims[0], d + 1, dims[2]]
    part = ctx.tmp(f"{name}_init", np.float32, shape)
    opts = s.StridedSliceOptionsT()
    opts.shrinkAxisMask = 1 << layout
    ctx.emit("STRIDED_SLICE", [full, ctx.i32(begin, "b"), ctx.i32(end, "e"),
                               ctx.i32([1, 1, 1], "s")], [part], opts)
    ctx.emit("BROADCAST_TO", [part, ctx.i32(shape, "state_shape")], [var])
    return var


def _reverse(ctx: LoweringContext, x: int, axis: int, name: str) -> int:
    y = ctx.like(x, name)
    ctx.emit("REVERSE_V2", [x, ctx.i32([axis], "time_axis")], [y])
    return y


def _direction(ctx: LoweringContext, node: ir.Node, x: int, d: int, reverse: bool) -> int:
    """One UNIDIRECTIONAL_SEQUENCE_LSTM for direction ``d``; returns its output tensor
    (in processing order, i.e. still reversed for a reverse direction)."""
    layout = int(_attr(node, "layout", 0))  # type: ignore[call-overload]
    w = ctx.need_array(node.inputs[1], "LSTM W")[d]
    r = ctx.need_array(node.inputs[2], "LSTM R")[d]
    hidden = r.shape[1]
    b_arr = ctx.array(node.inputs[3]) if len(node.inputs) > 3 else None
    b = np.zeros(8 * hidden, np.float32) if b_arr is None else b_arr[d]
    bias = b[:4 * hidden] + b[4 * hidden:]
    p_arr = ctx.array(node.inputs[7]) if len(node.inputs) > 7 else None
    xs = ctx.t(x).shape
    batch = xs[1] if layout == 0 else xs[0]
    if reverse:
        x = _reverse(ctx, x, layout, f"x_rev{d}")
    gates = "ifco"
    peep = [-1, -1, -1] if p_arr is None else [
        ctx.const(np.ascontiguousarray(p_arr[d][k * hidden:(k + 1) * hidden], np.float32),
                  f"d{d}_peephole_{g}") for g, k in (("i", 0), ("f", 2), ("o", 1))]
    inputs = [x,
              *(ctx.const(_gate(w, g, hidden), f"d{d}_input_to_{g}") for g in gates),
              *(ctx.const(_gate(r, g, hidden), f"d{d}_recurrent_to_{g}") for g in gates),
              *peep,
              *(ctx.const(_gate(bias, g, hidden), f"d{d}_bias_{g}") for g in gates),
              -1, -1,
              _state(ctx, node, 5, d, layout, [batch, hidden], f"d{d}_h_state"),
              _state(ctx, node, 6, d, layout, [batch, hidden], f"d{d}_c_state"),
              -1, -1, -1, -1]
    opts = s.UnidirectionalSequenceLSTMOptionsT()
    acts = list(_attr(node, "activations", None) or ["Sigmoid", "Tanh", "Tanh"] * 2)  # type: ignore[call-overload]
    opts.fusedActivationFunction = int(getattr(s.ActivationFunctionType,
                                               _FUSED_ACTS[acts[3 * d + 1]]))
    opts.timeMajor = layout == 0
    y_shape = [xs[0], xs[1], hidden]
    y = ctx.tmp(f"d{d}_y", np.float32, y_shape)
    ctx.emit("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [y], opts)
    return y


def _last_step(ctx: LoweringContext, y: int, layout: int, name: str) -> int:
    shape = ctx.t(y).shape
    time = layout
    begin = [0, 0, 0]
    begin[time] = shape[time] - 1
    out_shape = [d for k, d in enumerate(shape) if k != time]
    h = ctx.tmp(name, np.float32, out_shape)
    opts = s.StridedSliceOptionsT()
    opts.shrinkAxisMask = 1 << time
    ctx.emit("STRIDED_SLICE", [y, ctx.i32(begin, "b"), ctx.i32(shape, "e"),
                               ctx.i32([1, 1, 1], "s")], [h], opts)
    return h


def _stack(ctx: LoweringContext, parts: list[int], axis: int, dst: int) -> None:
    if len(parts) == 1:
        ctx.reshape(parts[0], ctx.t(dst).shape, dst=dst)
        return
    opts = s.PackOptionsT()
    opts.valuesCount, opts.axis = len(parts), axis
    ctx.emit("PACK", parts, [dst], opts)


def lower_fused_lstm(ctx: LoweringContext, node: ir.Node) -> None:
    """Emit the fused LSTM (see the module docstring); ``fused_reason(node)`` must be None."""
    layout = int(_attr(node, "layout", 0))  # type: ignore[call-overload]
    direction = _attr(node, "direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    x = ctx.inp(node, 0)
    ys, hs = [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        y = _direction(ctx, node, x, d, reverse)
        if output_used(node, 1):
            hs.append(_last_step(ctx, y, layout, f"d{d}_h_last"))
        ys.append(_reverse(ctx, y, layout, f"d{d}_y_fwd") if reverse and output_used(node, 0)
                  else y)
    if output_used(node, 0):
        _stack(ctx, ys, 1 if layout == 0 else 2, ctx.out(node, 0))
    if hs:
        _stack(ctx, hs, 0 if layout == 0 else 1, ctx.out(node, 1))
