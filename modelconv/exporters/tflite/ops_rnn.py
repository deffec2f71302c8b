"""Recurrent layers: ONNX LSTM / GRU unrolled over the (static) time axis.

Per step: FULLY_CONNECTED for the input and recurrent projections, SPLIT into gates,
LOGISTIC/TANH, MUL/ADD for the state update; UNPACK the sequence, PACK the outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.lstm_fused import (
    fused_reason,
    lower_fused_lstm,
    trivial_sequence_lens,
)
from modelconv.exporters.tflite.operands import RuntimeWeight, weight_operand
from modelconv.exporters.tflite.ops_elementwise import binary
from modelconv.exporters.tflite.ops_fc import fully_connected
from modelconv.exporters.tflite.registry import attr, tflite_lowering

Weight = np.ndarray | RuntimeWeight
Step = Callable[[LoweringContext, int, list[int], int, str], list[int]]


def _attrs(node: ir.Node) -> dict[str, object]:
    return {k: a.value for k, a in node.attributes.items()}


_ACTS = {"Sigmoid": "LOGISTIC", "Tanh": "TANH", "Relu": "RELU"}


def _acts(node: ir.Node, n_acts: int) -> list[str]:
    """The activation names of ``node`` (ONNX defaults filled in), for all directions."""
    dirs = 2 if attr(node, "direction", "forward") == "bidirectional" else 1
    default = (["Tanh"] if node.op_type == "RNN" else ["Sigmoid", "Tanh", "Tanh"][:n_acts]) * dirs
    return list(attr(node, "activations", None) or default)  # type: ignore[call-overload]


def _unrolled_reason(node: ir.Node) -> str | None:
    """Why the unrolled lowering cannot express ``node`` (None if it can)."""
    n_acts = {"LSTM": 3, "GRU": 2}.get(node.op_type, 1)
    dirs = 2 if attr(node, "direction", "forward") == "bidirectional" else 1
    if attr(node, "clip") is not None or attr(node, "activation_alpha") or attr(
            node, "activation_beta"):
        return "clip / parameterised activations"
    if not trivial_sequence_lens(node):
        return "sequence_lens"
    acts = _acts(node, n_acts)
    if any(x not in _ACTS for x in acts) or len(acts) != n_acts * dirs:
        return f"activations {acts}"
    if any(v is None or v.shape is None for v in node.inputs[1:3]):
        return "weights of unknown shape"
    if node.op_type == "LSTM" and len(node.inputs) > 7 and node.inputs[7] is not None:
        return "peepholes with a non-default activation, clip or Y_c output"
    if attr(node, "input_forget", 0):
        return "input_forget=1"
    return None


def check_lstm(node: ir.Node) -> str | None:
    """LSTM is supported fused (see :mod:`.lstm_fused`) or else unrolled."""
    return None if fused_reason(node) is None else _unrolled_reason(node)


def _state(ctx: LoweringContext, node: ir.Node, i: int, d: int, batch: int, hidden: int,
           layout: int, name: str) -> int:
    """Initial state of direction ``d`` ([dirs, batch, H], or [batch, dirs, H] for layout 1)."""
    arr = ctx.array(node.inputs[i]) if len(node.inputs) > i else None
    if len(node.inputs) > i and node.inputs[i] is not None and arr is None:
        full = ctx.inp(node, i)
        part = ctx.tmp(f"{name}{d}", np.float32, [batch, hidden])
        begin, end = ([d, 0, 0], [d + 1, batch, hidden]) if layout == 0 else (
            [0, d, 0], [batch, d + 1, hidden])
        ctx.emit("STRIDED_SLICE", [full, ctx.i32(begin, "b"), ctx.i32(end, "e"),
                                   ctx.i32([1, 1, 1], "s")], [part], _shrink(1 << layout))
        return part
    if arr is None:
        init = np.zeros((batch, hidden), np.float32)
    else:
        init = arr[d] if layout == 0 else arr[:, d]
    return ctx.const(init.astype(np.float32), f"{name}{d}")


def _shrink(mask: int) -> s.StridedSliceOptionsT:
    opts = s.StridedSliceOptionsT()
    opts.shrinkAxisMask = mask
    return opts


def _gates(ctx: LoweringContext, x: int, h: int, w: Weight, r: Weight, b: Weight,
           n: int, tag: str) -> list[int]:
    """Split(x W^T + h R^T + b) into ``n`` gate tensors."""
    batch, size = ctx.t(h).shape[0], w.shape[0]
    xw, hr, tot = (ctx.tmp(f"{tag}_{k}", np.float32, [batch, size]) for k in ("xw", "hr", "sum"))
    fully_connected(ctx, x, w, b, xw)
    fully_connected(ctx, h, r, None, hr)
    binary(ctx, "ADD", xw, hr, tot)
    parts = [ctx.tmp(f"{tag}_g{k}", np.float32, [batch, size // n]) for k in range(n)]
    opts = s.SplitOptionsT()
    opts.numSplits = n
    ctx.emit("SPLIT", [ctx.i32(1, "axis"), tot], parts, opts)
    return parts


def _unary(ctx: LoweringContext, code: str, x: int, tag: str) -> int:
    y = ctx.like(x, tag)
    ctx.emit(code, [x], [y])
    return y


def _mul(ctx: LoweringContext, a: int, b: int, tag: str) -> int:
    y = ctx.like(a, tag)
    binary(ctx, "MUL", a, b, y)
    return y


def _add(ctx: LoweringContext, a: int, b: int, tag: str) -> int:
    y = ctx.like(a, tag)
    binary(ctx, "ADD", a, b, y)
    return y


def _run(ctx: LoweringContext, node: ir.Node, n_gates: int, n_states: int,
         cell: Callable[..., list[int]]) -> None:
    a = _attrs(node)
    layout = int(a.get("layout", 0))  # type: ignore[call-overload]
    x = ctx.inp(node, 0)
    seq, batch = ctx.t(x).shape[:2] if layout == 0 else ctx.t(x).shape[1::-1]
    # constant weights are numpy arrays, run-time ones RuntimeWeights sliced by ops
    w_all = weight_operand(ctx, node.inputs[1], "W")
    r_all = weight_operand(ctx, node.inputs[2], "R")
    dirs, hidden = w_all.shape[0], r_all.shape[2]
    acts = [_ACTS[x] for x in _acts(node, 1 if node.op_type == "RNN" else n_states + 1)]
    b_v = node.inputs[3] if len(node.inputs) > 3 else None
    b_all = np.zeros((dirs, 2 * n_gates * hidden), np.float32) if b_v is None else \
        weight_operand(ctx, b_v, "B")
    steps = [ctx.tmp(f"x_t{t}", np.float32, [batch, ctx.t(x).shape[2]]) for t in range(seq)]
    unpack = s.UnpackOptionsT()
    unpack.num, unpack.axis = seq, layout
    ctx.emit("UNPACK", [x], steps, unpack)
    ys, finals = [], []
    for d in range(dirs):
        reverse = a.get("direction", "forward") == "reverse" or d == 1
        states = [_state(ctx, node, 5 + k, d, batch, hidden, layout, f"init{k}_")
                  for k in range(n_states)]
        outs: list[int] = [0] * seq
        per = len(acts) // dirs
        d_acts = acts[d * per:(d + 1) * per]
        w_d, r_d, b_d = w_all[d], r_all[d], b_all[d]
        for t in (reversed(range(seq)) if reverse else range(seq)):
            states = cell(ctx, steps[t], states, w_d, r_d, b_d, a, d_acts, f"d{d}t{t}")
            outs[t] = states[0]
        ys.append(outs)
        finals.append(states)
    _outputs(ctx, node, ys, finals, layout)


def _outputs(ctx: LoweringContext, node: ir.Node, ys: list[list[int]],
             finals: list[list[int]], layout: int) -> None:
    """PACK per-step states into Y ([seq, dirs, batch, H] or [batch, seq, dirs, H]) and
    the final states into Y_h / Y_c."""
    dirs, seq = len(ys), len(ys[0])
    batch, hidden = ctx.t(ys[0][0]).shape
    for k, value in enumerate(node.outputs):
        if value is None or not value.name or (not value.uses() and not value.is_graph_output()):
            continue
        dst = ctx.out(node, k)
        items = [[ys[d][t] for d in range(dirs)] for t in range(seq)] if k == 0 else [
            [finals[d][k - 1] for d in range(dirs)]]
        flat = [i for group in items for i in group]
        pack = s.PackOptionsT()
        pack.valuesCount, pack.axis = len(flat), layout
        shape = [len(flat), batch, hidden] if layout == 0 else [batch, len(flat), hidden]
        stacked = ctx.tmp(f"out{k}_packed", np.float32, shape)
        ctx.emit("PACK", flat, [stacked], pack)
        ctx.reshape(stacked, ctx.t(dst).shape, dst=dst)


def _lstm_cell(ctx: LoweringContext, x: int, states: list[int], w: Weight, r: Weight,
               b: Weight, a: dict[str, object], acts: list[str], tag: str) -> list[int]:
    h, c = states
    hidden = r.shape[1]
    bias = b[: 4 * hidden] + b[4 * hidden:]
    i, o, f, g = _gates(ctx, x, h, w, r, bias, 4, tag)
    i, o, f = (_unary(ctx, acts[0], v, f"{tag}_{n}") for v, n in ((i, "i"), (o, "o"), (f, "f")))
    g = _unary(ctx, acts[1], g, f"{tag}_g")
    c_new = _add(ctx, _mul(ctx, f, c, f"{tag}_fc"), _mul(ctx, i, g, f"{tag}_ig"), f"{tag}_c")
    h_new = _mul(ctx, o, _unary(ctx, acts[2], c_new, f"{tag}_tc"), f"{tag}_h")
    return [h_new, c_new]


def _gru_cell(ctx: LoweringContext, x: int, states: list[int], w: Weight, r: Weight,
              b: Weight, a: dict[str, object], acts: list[str], tag: str) -> list[int]:
    (h,) = states
    hd = r.shape[1]
    wb, rb = b[: 3 * hd], b[3 * hd:]
    # z and r gates use the plain sum; the candidate needs x and h parts separately.
    z, rg = _gates(ctx, x, h, w[: 2 * hd], r[: 2 * hd], wb[: 2 * hd] + rb[: 2 * hd], 2, tag)
    z, rg = _unary(ctx, acts[0], z, f"{tag}_z"), _unary(ctx, acts[0], rg, f"{tag}_r")
    xh = ctx.like(h, f"{tag}_xh")
    fully_connected(ctx, x, w[2 * hd:], wb[2 * hd:], xh)
    hh = ctx.like(h, f"{tag}_hh")
    if a.get("linear_before_reset", 0):
        fully_connected(ctx, h, r[2 * hd:], rb[2 * hd:], hh)
        hh = _mul(ctx, rg, hh, f"{tag}_rhh")
    else:
        fully_connected(ctx, _mul(ctx, rg, h, f"{tag}_rh"), r[2 * hd:], rb[2 * hd:], hh)
    cand = _unary(ctx, acts[1], _add(ctx, xh, hh, f"{tag}_pre"), f"{tag}_cand")
    # h' = cand + z * (h - cand)
    diff = ctx.like(h, f"{tag}_diff")
    binary(ctx, "SUB", h, cand, diff)
    return [_add(ctx, cand, _mul(ctx, z, diff, f"{tag}_zd"), f"{tag}_h")]


@tflite_lowering("LSTM", check=check_lstm)
def lower_lstm(ctx: LoweringContext, node: ir.Node) -> None:
    """ONNX LSTM (gates i, o, f, c; forward/reverse/bidirectional): one fused
    UNIDIRECTIONAL_SEQUENCE_LSTM per direction where it can express the node, else
    unrolled over time."""
    if fused_reason(node) is None:
        lower_fused_lstm(ctx, node)
        return
    _run(ctx, node, 4, 2, _lstm_cell)


def _rnn_cell(ctx: LoweringContext, x: int, states: list[int], w: Weight, r: Weight,
              b: Weight, a: dict[str, object], acts: list[str], tag: str) -> list[int]:
    (h,) = states
    hd = r.shape[1]
    (pre,) = _gates(ctx, x, h, w, r, b[:hd] + b[hd:], 1, tag)
    return [_unary(ctx, acts[0], pre, f"{tag}_h")]


@tflite_lowering("RNN", check=_unrolled_reason)
def lower_rnn(ctx: LoweringContext, node: ir.Node) -> None:
    """ONNX RNN (h' = f(x W^T + h R^T + Wb + Rb)) unrolled over time."""
    _run(ctx, node, 1, 1, _rnn_cell)


@tflite_lowering("GRU", check=_unrolled_reason)
def lower_gru(ctx: LoweringContext, node: ir.Node) -> None:
    """ONNX GRU (gates z, r, h; linear_before_reset 0/1) unrolled over time."""
    _run(ctx, node, 3, 1, _gru_cell)
