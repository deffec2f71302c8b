"""Fold a constant bias Add into the MatMul before it (FULLY_CONNECTED takes a bias).

Before::  x[B, N, K] -> MatMul(W[K, M]) -> Add(b[M]) -> y
After::   x[B, N, K] -> nhwc.MatMul(W[K, M], b[M]) -> y

:class:`~modelconv.passes.fuse_bias.FuseBiasPass` turns a 2-D MatMul + Add into an ONNX
Gemm; a MatMul of a rank-3 token tensor (every Linear layer of a transformer) has no ONNX
op with a bias, so this TFLite-only pass gives the ``modelconv.nhwc`` MatMul a third input
that the lowering passes to FULLY_CONNECTED. Run it after the layout pass: the bias is then
stored along the last (physical) dim, as FULLY_CONNECTED adds it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import const_array, new_const, replace_value, single_consumer
from modelconv.passes.tflite.nhwc import NHWC_DOMAIN


class FuseMatMulBiasPass(ir.passes.InPlacePass):
    """Give a MatMul with a constant 2-D float weight the constant bias Add after it."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fuse every eligible MatMul -> Add pair."""
        graph = model.graph
        changed = False
        for add in list(graph):
            if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
                continue
            for i in (0, 1):
                x, c = add.inputs[i], add.inputs[1 - i]
                bias = _bias(x, const_array(c))
                if x is None or bias is None:
                    continue
                mm = x.producer()
                assert mm is not None
                mm.domain = NHWC_DOMAIN
                mm.resize_inputs(3)
                mm.replace_input_with(2, new_const(graph, bias, f"{mm.name}_bias"))
                replace_value(graph, add.outputs[0], x)
                graph.remove(add, safe=True)
                changed = True
                break
        return ir.passes.PassResult(model, modified=changed)


def _bias(x: ir.Value | None, arr: np.ndarray | None) -> np.ndarray | None:
    """The [M] float32 bias ``arr`` adds to ``x`` = MatMul(., W[K, M]), or None."""
    mm = x.producer() if x is not None else None
    if x is None or arr is None or mm is None or mm.op_type != "MatMul" or len(mm.inputs) != 2:
        return None
    if mm.domain not in ("", "ai.onnx") or single_consumer(x) is None or x.shape is None:
        return None
    w = const_array(mm.inputs[1])
    if w is None or w.ndim != 2 or w.dtype != np.float32 or arr.dtype != np.float32:
        return None
    if x.dtype != ir.DataType.FLOAT or arr.ndim > len(x.shape):
        return None
    m = int(w.shape[1])
    if arr.size != 1 and (arr.shape[-1] != m or arr.size != m):
        return None
    return np.broadcast_to(arr.reshape(-1), (m,)).astype(np.float32)
