"""Fold a LayerNormalization's scale and bias into the FULLY_CONNECTED layers it feeds.

Before::  x -> LayerNorm(gamma, beta) -> MatMul(W) [+ b] -> y
After::   x -> LayerNorm(1, -) -> nhwc.MatMul(gamma[:, None] * W, b + beta @ W) -> y

A pre-norm transformer normalises before every attention and MLP block, and the normalised
tensor is read only by the next Linear layer (qkv, fc1). Folding ``gamma`` / ``beta`` into
that layer's weight and bias leaves two fewer full-size element-wise ops per norm. Only a
norm over the last axis whose every reader is a MatMul with a constant 2-D float weight (the
FULLY_CONNECTED case) qualifies, and not when a weight carries quantization parameters from
the source (a QDQ model's scales are for the unscaled weight). TFLite-only (the
``modelconv.nhwc`` MatMul carries the bias): run it after
:class:`~.fuse_matmul_bias.FuseMatMulBiasPass`.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import attr, const_array, new_const
from modelconv.passes.tflite.fold_dequantize import weight_hints
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN


class FoldLayerNormAffinePass(ir.passes.InPlacePass):
    """Move LayerNormalization's scale / bias into the weights of the MatMuls reading it."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold every eligible norm."""
        graph = model.graph
        changed = False
        hinted = set(weight_hints(model))  # quantized weights keep the source's scales
        for norm in list(graph):
            readers = _fc_readers(norm)
            if readers is None or any((wv := mm.inputs[1]) is not None and wv.name in hinted
                                      for mm in readers):
                continue
            gamma = const_array(norm.inputs[1]).astype(np.float64)  # type: ignore[union-attr]
            beta_v = norm.inputs[2] if len(norm.inputs) > 2 else None
            beta = const_array(beta_v) if beta_v is not None else None
            for mm in readers:
                w = const_array(mm.inputs[1]).astype(np.float64)  # type: ignore[union-attr]
                old = const_array(mm.inputs[2]) if len(mm.inputs) > 2 else None
                bias = np.zeros(w.shape[1]) if old is None else old.astype(np.float64)
                if beta is not None:
                    bias = bias + np.broadcast_to(beta.reshape(-1), (w.shape[0],)) @ w
                scaled = np.broadcast_to(gamma.reshape(-1), (w.shape[0],))[:, None] * w
                mm.domain = NHWC_DOMAIN
                mm.resize_inputs(3)
                mm.replace_input_with(1, new_const(graph, scaled.astype(np.float32),
                                                   f"{mm.name}_ln_weight"))
                mm.replace_input_with(2, new_const(graph, bias.astype(np.float32),
                                                   f"{mm.name}_ln_bias"))
            ones = np.ones(const_array(norm.inputs[1]).shape, np.float32)  # type: ignore[union-attr]
            norm.replace_input_with(1, new_const(graph, ones, f"{norm.name}_unit_scale"))
            if beta_v is not None:
                norm.resize_inputs(2)
            changed = True
        return ir.passes.PassResult(model, modified=changed)


def _fc_readers(norm: ir.Node) -> list[ir.Node] | None:
    """The MatMuls reading a foldable LayerNormalization ``norm`` (None: not foldable)."""
    if norm.op_type != "LayerNormalization" or norm.domain not in ("", "ai.onnx"):
        return None
    out = norm.outputs[0]
    if out.is_graph_output() or any(o.uses() or o.is_graph_output() for o in norm.outputs[1:]):
        return None
    if out.shape is None or attr(norm, "axis", -1) not in (-1, len(out.shape) - 1):
        return None
    gamma = const_array(norm.inputs[1]) if len(norm.inputs) > 1 else None
    beta_v = norm.inputs[2] if len(norm.inputs) > 2 else None
    if gamma is None or (beta_v is not None and const_array(beta_v) is None):
        return None
    readers = []
    for use in out.uses():
        mm = use.node
        w = const_array(mm.inputs[1]) if len(mm.inputs) > 1 else None
        if mm.op_type != "MatMul" or use.idx != 0 or w is None or w.ndim != 2 \
                or w.dtype != np.float32 or "adj_x" in mm.attributes \
                or mm.domain not in ("", "ai.onnx", NHWC_DOMAIN) or mm.inputs[1] is out:
            return None
        if len(mm.inputs) > 2 and mm.inputs[2] is not None and const_array(mm.inputs[2]) is None:
            return None
        readers.append(mm)
    if not readers or len({id(r) for r in readers}) != len(readers):
        return None
    return readers
