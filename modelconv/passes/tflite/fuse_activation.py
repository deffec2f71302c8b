"""Fuse a following activation into conv / fully-connected / add / mul as an attribute.

Before::  x -> Conv -> Clip(0, 6) -> y
After::   x -> Conv[fused_activation="RELU6"] -> y

The attribute ``fused_activation`` (one of RELU, RELU6, RELU_N1_TO_1) is not ONNX: run
this pass only right before an exporter that understands it (TFLite). TANH is never fused:
the schema has the enum value, but TFLite's float kernels only clamp (RELU family) and
silently skip TANH, which made a fused Mul+Tanh return the un-activated product.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import const_array, replace_value, single_consumer

FUSED_ATTR = "fused_activation"
_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "Add", "Mul", "Sub"}


class FuseActivationPass(ir.passes.InPlacePass):
    """Record Relu/Relu6/Relu_n1_to_1 on the producing op and drop the activation node."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fuse every eligible producer -> activation pair."""
        graph = model.graph
        changed = False
        for act in list(graph):
            kind = activation_kind(act)
            x = act.inputs[0] if act.inputs else None
            if kind is None or x is None or x.dtype != ir.DataType.FLOAT:
                continue
            prod = x.producer()
            if prod is None or prod.op_type not in _PRODUCERS or FUSED_ATTR in prod.attributes:
                continue
            if single_consumer(x) is not act or len(prod.outputs) != 1:
                continue
            prod.attributes[FUSED_ATTR] = ir.AttrString(FUSED_ATTR, kind)
            replace_value(graph, act.outputs[0], x)
            graph.remove(act, safe=True)
            changed = True
        return ir.passes.PassResult(model, modified=changed)


def activation_kind(node: ir.Node) -> str | None:
    """The TFLite fused-activation name ``node`` computes, or None."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Relu":
        return "RELU"
    if node.op_type != "Clip":
        return None
    lo = const_array(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    hi = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    lo_v = float(lo) if lo is not None else -np.inf
    hi_v = float(hi) if hi is not None else np.inf
    if (len(node.inputs) > 1 and node.inputs[1] and lo is None) or (
        len(node.inputs) > 2 and node.inputs[2] and hi is None
    ):
        return None
    return {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, np.inf): "RELU"}.get(
        (lo_v, hi_v)
    )
