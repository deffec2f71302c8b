"""Fold per-channel constant Mul / Add / Sub that follow a Conv into its weights and bias.

Graph-level importers see batch normalization as plain arithmetic (TensorFlow graphs of
Keras 3 models: ``conv * (gamma / sqrt(var + eps)) + (beta - mean * ...)``, folded to two
constants while importing). This pass puts them back into the convolution:

Before::  x -> Conv(W, b) -> Mul(s[1,C,1,1]) -> Add(t[1,C,1,1]) -> y
After::   x -> Conv(W * s, b * s + t) -> y

Only constants that broadcast along the output channels (every other dim 1) and a Conv
whose output has no other reader qualify; weights are replaced, never edited in place
(another Conv may share them).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import (
    const_array,
    derived_const,
    new_const,
    replace_value,
    single_consumer,
)


class FuseConvAffinePass(ir.passes.InPlacePass):
    """Fold Conv -> Mul/Add/Sub(per-channel constant) chains into the Conv."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold every eligible pair, in graph order (chains fold one step at a time)."""
        graph = model.graph
        changed = False
        for node in list(graph):
            if node.op_type not in ("Mul", "Add", "Sub") or node.domain != "" \
                    or len(node.inputs) != 2:
                continue
            for i in ((0, 1) if node.op_type != "Sub" else (0,)):
                x, c = node.inputs[i], node.inputs[1 - i]
                conv = x.producer() if x is not None else None
                if x is None or conv is None or conv.op_type != "Conv" or conv.domain != "" \
                        or single_consumer(x) is not node:
                    continue
                vec = _channel_vector(const_array(c), const_array(conv.inputs[1]))
                if vec is None or not _fold(graph, conv, node.op_type, vec):
                    continue
                replace_value(graph, node.outputs[0], x)
                graph.remove(node, safe=True)
                changed = True
                break
        return ir.passes.PassResult(model, modified=changed)


def _channel_vector(arr: np.ndarray | None, weight: np.ndarray | None) -> np.ndarray | None:
    """``arr`` as one value per output channel, if it broadcasts that way."""
    if arr is None or weight is None or arr.dtype != weight.dtype or arr.dtype.kind != "f":
        return None
    rank, channels = weight.ndim, weight.shape[0]
    if arr.ndim > rank:
        return None
    padded = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    if any(d != 1 for i, d in enumerate(padded.shape) if i != 1) or \
            padded.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(padded.reshape(-1), (channels,)).astype(arr.dtype)


def _fold(graph: ir.Graph, conv: ir.Node, op: str, vec: np.ndarray) -> bool:
    weight = const_array(conv.inputs[1])
    bias_value = conv.inputs[2] if len(conv.inputs) > 2 else None
    bias = const_array(bias_value)
    if weight is None or (bias_value is not None and bias is None):
        return False
    if bias is None:
        bias = np.zeros(weight.shape[0], weight.dtype)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    if op == "Mul":
        w_in = conv.inputs[1]
        assert w_in is not None
        conv.replace_input_with(1, derived_const(graph, w_in, lambda w: w * vec.reshape(shape),
                                                 f"{conv.name}_w"))
        bias = bias * vec
    elif op == "Add":
        bias = bias + vec
    else:
        bias = bias - vec
    if len(conv.inputs) < 3:
        conv.resize_inputs(3)
    conv.replace_input_with(2, new_const(graph, bias.astype(weight.dtype), f"{conv.name}_b"))
    return True
