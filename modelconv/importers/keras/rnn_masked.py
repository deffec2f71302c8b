"""LSTM / GRU / SimpleRNN over a Keras mask, unrolled over the (static) time axis.

Keras (``backend.rnn``) runs every step and then selects per sample: at a masked step the
states keep their previous value and the output repeats the previous output (zeros
before the first step), or is zero with ``zero_output_for_mask`` (which Bidirectional
forces on when it returns sequences). ONNX's ``sequence_lens`` only expresses padding at
the tail and TFLite has no such input, so each step is emitted as MatMul/Add/activations
plus a ``Where`` on the step's mask; both exporters take these ops as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.importers.keras.common import (
    ACTIVATIONS,
    KTensor,
    LayerUnsupported,
    activation_name,
    major_of,
)
from modelconv.importers.keras.tensors import LAST, last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
_I64 = np.int64


def time_steps(cfg: dict[str, Any]) -> int:
    """The static number of time steps of the layer's input (Keras records the shape).

    Raises:
        LayerUnsupported: the time axis is dynamic or unknown.
    """
    shapes = cfg.get("_shapes") or [None]
    shape = shapes[0]
    if not shape or len(shape) != 3 or not isinstance(shape[1], int):
        raise LayerUnsupported("a mask on an input without a fixed number of time steps "
                               f"(shape {shape}; masked steps are unrolled)")
    return int(shape[1])


def _act(b: GraphBuilder, spec: Any, v: ir.Value, major: int) -> ir.Value:
    name = activation_name(spec)
    if name is None:
        return v
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise LayerUnsupported(f"activation {name!r}")
    return fn(b, v, 1, major)


def _split(b: GraphBuilder, v: ir.Value, n: int) -> list[ir.Value]:
    if n == 1:
        return [v]
    return list(b.op("Split", [v], {"axis": 1, "num_outputs": n}, num_outputs=n))


class _Cell:
    """One direction's weights and step function (Keras gate order)."""

    def __init__(self, b: GraphBuilder, kind: str, cfg: dict[str, Any], w: LayerWeights,
                 start: int, tag: str):
        self.b, self.kind, self.cfg = b, kind, cfg
        self.units = units = int(cfg["units"])
        gates = _GATES[kind]
        self.major = major_of(cfg)
        kernel = w.get(start, [None, gates * units])
        rec = np.asarray(w.get(start + 1, [units, gates * units]), np.float32)
        self.next = start + 2
        in_b = rec_b = None
        if cfg.get("use_bias", True):
            bias = np.asarray(w.get(start + 2), np.float32)
            self.next += 1
            in_b, rec_b = (bias[0], bias[1]) if bias.ndim == 2 else (bias, None)
        self.kernel = weight(b, np.asarray(kernel, np.float32), f"{tag}kernel")
        self.in_b = None if in_b is None else weight(b, in_b, f"{tag}bias")
        self.reset_after = kind == "GRU" and bool(cfg.get("reset_after", self.major == 3))
        if kind == "GRU" and not self.reset_after:
            self.rec = weight(b, rec[:, :2 * units], f"{tag}recurrent_zr")
            self.rec_h = weight(b, rec[:, 2 * units:], f"{tag}recurrent_h")
        else:
            self.rec = weight(b, rec, f"{tag}recurrent_kernel")
        self.rec_b = None if rec_b is None else weight(b, rec_b, f"{tag}recurrent_bias")

    def project(self, x: ir.Value) -> ir.Value:
        """x @ kernel + input bias for all steps: (N, T, G*U)."""
        y = self.b.MatMul(x, self.kernel)
        return y if self.in_b is None else self.b.Add(y, self.in_b)

    def step(self, xw: ir.Value, states: list[ir.Value]) -> list[ir.Value]:
        """New states (h first) from the step's projected input (N, G*U)."""
        b, cfg, major = self.b, self.cfg, self.major
        act, rec_act = cfg.get("activation", "tanh"), cfg.get("recurrent_activation",
                                                               "sigmoid")
        h = states[0]
        inner = b.MatMul(h, self.rec)
        if self.rec_b is not None:
            inner = b.Add(inner, self.rec_b)
        if self.kind == "SimpleRNN":
            return [_act(b, act, b.Add(xw, inner), major)]
        if self.kind == "LSTM":
            i, f, c, o = (_split(b, b.Add(xw, inner), 4))
            i, f, o = (_act(b, rec_act, g, major) for g in (i, f, o))
            c_new = b.Add(b.Mul(f, states[1]), b.Mul(i, _act(b, act, c, major)))
            return [b.Mul(o, _act(b, act, c_new, major)), c_new]
        x_z, x_r, x_h = _split(b, xw, 3)
        if self.reset_after:
            r_z, r_r, r_h = _split(b, inner, 3)
        else:
            r_z, r_r = _split(b, inner, 2)
        z = _act(b, rec_act, b.Add(x_z, r_z), major)
        r = _act(b, rec_act, b.Add(x_r, r_r), major)
        rh = b.Mul(r, r_h) if self.reset_after else b.MatMul(b.Mul(r, h), self.rec_h)
        hh = _act(b, act, b.Add(x_h, rh), major)
        one = b.const(np.float32(1.0))
        return [b.Add(b.Mul(z, h), b.Mul(b.Sub(one, z), hh))]


def masked_direction(b: GraphBuilder, kind: str, cfg: dict[str, Any], w: LayerWeights,
                     start: int, x: KTensor, mask: KTensor, backwards: bool,
                     zero_output: bool, tag: str = "") -> tuple[list[ir.Value],
                                                               list[ir.Value], int]:
    """Run one direction over the mask.

    Returns:
        The outputs (N, U) in processing order, the final states (h[, c]), and the index
        of the next weight.
    """
    steps = time_steps(cfg)
    if mask.rank != 2:
        raise LayerUnsupported(f"a rank-{mask.rank} mask (needs (batch, time))")
    cell = _Cell(b, kind, cfg, w, start, tag)
    xw = cell.project(last(b, x))
    mv = mask.value if mask.dtype == "bool" else b.Cast(mask.value, to=9)
    first = b.Gather(xw, b.const(np.asarray(0, _I64)), axis=1)
    zeros = b.Mul(b.Slice(first, b.const(np.asarray([0], _I64)),
                          b.const(np.asarray([cell.units], _I64)),
                          b.const(np.asarray([1], _I64))), b.const(np.float32(0.0)))
    states = [zeros] * (2 if kind == "LSTM" else 1)
    outs: list[ir.Value] = []
    order = range(steps - 1, -1, -1) if backwards else range(steps)
    for t in order:
        xt = b.Gather(xw, b.const(np.asarray(t, _I64)), axis=1)
        mt = b.Slice(mv, b.const(np.asarray([t], _I64)), b.const(np.asarray([t + 1], _I64)),
                     b.const(np.asarray([1], _I64)))  # (N, 1)
        new = cell.step(xt, states)
        states = [b.Where(mt, n, s) for n, s in zip(new, states, strict=True)]
        outs.append(b.Where(mt, states[0], zeros) if zero_output else states[0])
    return outs, states, cell.next


def stack(b: GraphBuilder, outs: list[ir.Value]) -> ir.Value:
    """Per-step outputs (N, U) -> (N, T, U)."""
    axis = b.const(np.asarray([1], _I64))
    return b.Concat(*[b.Unsqueeze(o, axis) for o in outs], axis=1)


def masked_recurrent(b: GraphBuilder, kind: str, cfg: dict[str, Any], w: LayerWeights,
                     x: KTensor, mask: KTensor) -> list[KTensor]:
    """LSTM/GRU/SimpleRNN over a mask: [output, *states] as Keras returns them."""
    outs, states, _ = masked_direction(b, kind, cfg, w, 0, x, mask,
                                       bool(cfg.get("go_backwards")),
                                       bool(cfg.get("zero_output_for_mask")))
    main = (KTensor(stack(b, outs), 3, LAST) if cfg.get("return_sequences")
            else KTensor(outs[-1], 2, LAST))
    if not cfg.get("return_state"):
        return [main]
    return [main, *(KTensor(s, 2, LAST) for s in states)]


def masked_bidirectional(b: GraphBuilder, kind: str, fwd: dict[str, Any],
                         bwd: dict[str, Any], w: LayerWeights, x: KTensor,
                         mask: KTensor) -> tuple[ir.Value, ir.Value, int]:
    """Both directions of a Bidirectional over a mask, in input time order when they
    return sequences; returns (forward, backward, rank)."""
    seq = bool(fwd.get("return_sequences"))
    f_outs, _, nxt = masked_direction(b, kind, {**fwd, "_shapes": fwd.get("_shapes")}, w, 0,
                                      x, mask, False, seq, "forward_")
    b_outs, _, _ = masked_direction(b, kind, bwd, w, nxt, x, mask, True, seq, "backward_")
    if seq:
        return stack(b, f_outs), stack(b, b_outs[::-1]), 3
    return f_outs[-1], b_outs[-1], 2
