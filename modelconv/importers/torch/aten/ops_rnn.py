"""Recurrent layers: aten.lstm / aten.gru as ONNX LSTM / GRU, one node per layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from modelconv.errors import UnsupportedOpsError

from ._base import AtenBuilder, aten_op

_LSTM_ORDER = [0, 3, 1, 2]  # torch i,f,g,o -> ONNX i,o,f,c
_GRU_ORDER = [1, 0, 2]  # torch r,z,n -> ONNX z,r,h


def _gates(b: AtenBuilder, w: ir.Value, order: list[int]) -> ir.Value:
    """Reorder the gate blocks of a stacked weight/bias (axis 0)."""
    arr = b.const_array(w)
    if arr is not None:
        blocks = np.split(arr, len(order), axis=0)
        return b.initializer(np.concatenate([blocks[i] for i in order], axis=0), "rnn_w")
    parts = b.split(w, 0, len(order))
    return b.Concat(*[parts[i] for i in order], axis=0)


def _stack_dirs(b: AtenBuilder, values: list[ir.Value]) -> ir.Value:
    expanded = [b.Unsqueeze(v, b.const([0])) for v in values]
    return expanded[0] if len(expanded) == 1 else b.Concat(*expanded, axis=0)


def _layer_weights(
    b: AtenBuilder, params: Sequence[ir.Value], layer: int, dirs: int, has_biases: bool,
    order: list[int],
) -> tuple[ir.Value, ir.Value, ir.Value | None]:
    per = 4 if has_biases else 2
    if len(params) != per * dirs * (len(params) // (per * dirs)):
        raise UnsupportedOpsError("aten op", {"rnn with projections": [b.current_source or "?"]})
    ws, rs, bs = [], [], []
    for d in range(dirs):
        p = params[(layer * dirs + d) * per:(layer * dirs + d + 1) * per]
        ws.append(_gates(b, p[0], order))
        rs.append(_gates(b, p[1], order))
        if has_biases:
            bs.append(b.Concat(_gates(b, p[2], order), _gates(b, p[3], order), axis=0))
    bias = _stack_dirs(b, bs) if has_biases else None
    return _stack_dirs(b, ws), _stack_dirs(b, rs), bias


def _run_layers(b: AtenBuilder, kind: str, x: ir.Value, states: list[ir.Value],
                params: Sequence[ir.Value], has_biases: bool, num_layers: int,
                bidirectional: bool, batch_first: bool) -> tuple[ir.Value, list[list[ir.Value]]]:
    dirs = 2 if bidirectional else 1
    hidden = b.dims(params[1])[1]
    order = _LSTM_ORDER if kind == "LSTM" else _GRU_ORDER
    y = b.Transpose(x, perm=[1, 0, 2]) if batch_first else x
    finals: list[list[ir.Value]] = [[] for _ in states]
    for layer in range(num_layers):
        w, r, bias = _layer_weights(b, params, layer, dirs, has_biases, order)
        init = [b.Slice(s, b.const([layer * dirs]), b.const([(layer + 1) * dirs]), b.const([0]))
                for s in states]
        extra = {"linear_before_reset": 1} if kind == "GRU" else {}
        outs = b.op(kind, [y, w, r, bias, None, *init], extra, num_outputs=1 + len(states),
                    hidden_size=hidden, direction="bidirectional" if bidirectional else "forward")
        seq = b.Transpose(outs[0], perm=[0, 2, 1, 3])  # (T, N, dirs, H)
        y = b.Reshape(seq, b.const([0, 0, -1]))
        for i, final in enumerate(outs[1:]):
            finals[i].append(final)
    out = b.Transpose(y, perm=[1, 0, 2]) if batch_first else y
    return out, finals


def _concat0(b: AtenBuilder, values: list[ir.Value]) -> ir.Value:
    return values[0] if len(values) == 1 else b.Concat(*values, axis=0)


@aten_op("aten.lstm.input")
def lstm(b: AtenBuilder, x: ir.Value, hx: Sequence[ir.Value], params: Sequence[ir.Value],
         has_biases: bool, num_layers: int, dropout: float, train: bool, bidirectional: bool,
         batch_first: bool) -> tuple[ir.Value, ir.Value, ir.Value]:
    """ONNX LSTM per layer; returns (output, h_n, c_n)."""
    out, (hs, cs) = _run_layers(b, "LSTM", x, list(hx), params, has_biases, num_layers,
                                bidirectional, batch_first)
    return out, _concat0(b, hs), _concat0(b, cs)


@aten_op("aten.gru.input")
def gru(b: AtenBuilder, x: ir.Value, hx: ir.Value, params: Sequence[ir.Value], has_biases: bool,
        num_layers: int, dropout: float, train: bool, bidirectional: bool,
        batch_first: bool) -> tuple[ir.Value, ir.Value]:
    """ONNX GRU (linear_before_reset=1, as torch) per layer; returns (output, h_n)."""
    out, (hs,) = _run_layers(b, "GRU", x, [hx], params, has_biases, num_layers,
                             bidirectional, batch_first)
    return out, _concat0(b, hs)
