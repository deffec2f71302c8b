"""Fold BatchNormalization into the preceding Conv / ConvTranspose weights.

Before::  x -> Conv(W, b) -> BatchNormalization(gamma, beta, mean, var) -> y
After::   x -> Conv(W * s, (b - mean) * s + beta) -> y        with s = gamma / sqrt(var + eps)
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import (
    attr,
    const_array,
    derived_const,
    new_const,
    replace_value,
    single_consumer,
)


class FuseBatchNormPass(ir.passes.InPlacePass):
    """Fold inference-mode BatchNormalization into conv weights and bias."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold every Conv/ConvTranspose -> BatchNormalization pair with constant params."""
        graph = model.graph
        changed = False
        for bn in list(graph):
            if bn.op_type != "BatchNormalization" or bn.domain != "" or len(bn.outputs) != 1:
                continue
            x = bn.inputs[0]
            conv = x.producer() if x is not None else None
            if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or conv.domain != "":
                continue
            if x is None or single_consumer(x) is not bn:
                continue
            if _fold(graph, conv, bn):
                replace_value(graph, bn.outputs[0], x)
                graph.remove(bn, safe=True)
                changed = True
        return ir.passes.PassResult(model, modified=changed)


def _fold(graph: ir.Graph, conv: ir.Node, bn: ir.Node) -> bool:
    params = [const_array(v) for v in bn.inputs[1:5]]
    weight = const_array(conv.inputs[1])
    if weight is None or any(p is None for p in params) or len(params) != 4:
        return False
    gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params if p is not None)
    scale = gamma / np.sqrt(var + attr(bn, "epsilon", 1e-5))
    bias_in = const_array(conv.inputs[2]) if len(conv.inputs) > 2 else None
    if len(conv.inputs) > 2 and conv.inputs[2] is not None and bias_in is None:
        return False
    out_ch = scale.shape[0]
    bias = np.zeros(out_ch) if bias_in is None else bias_in.astype(np.float64)
    group = attr(conv, "group", 1)
    transposed = conv.op_type != "Conv"

    def scaled(w: np.ndarray) -> np.ndarray:
        # the per-channel scale is computed in float64, the weights scaled in their own
        # precision (float16 in float32): within two roundings (the scale's, the
        # product's) of the float64 product, without a float64 copy of every weight
        work = np.promote_types(w.dtype, np.float32)
        ch_scale = scale.astype(work)
        if not transposed:
            out = np.multiply(w, ch_scale.reshape((-1,) + (1,) * (w.ndim - 1)), dtype=work)
        else:
            w_g = w.reshape((group, -1, w.shape[1], *w.shape[2:]))
            s_g = ch_scale.reshape((group, 1, w.shape[1]) + (1,) * (w.ndim - 2))
            out = np.multiply(w_g, s_g, dtype=work).reshape(w.shape)
        return out.astype(w.dtype, copy=False)

    b = (bias - mean) * scale + beta
    dtype = weight.dtype
    w_in = conv.inputs[1]
    assert w_in is not None
    w_v = derived_const(graph, w_in, scaled, f"{conv.name}_w_bn")
    b_v = new_const(graph, b.astype(dtype), f"{conv.name}_b_bn")
    conv.replace_input_with(1, w_v)
    if len(conv.inputs) < 3:
        conv.resize_inputs(3)
    conv.replace_input_with(2, b_v)
    return True
