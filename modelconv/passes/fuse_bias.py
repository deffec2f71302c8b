"""Fold a following constant Add into Conv/ConvTranspose bias, and MatMul + Add into Gemm.

Before::  x -> Conv(W) -> Add(b[1,C,1,1]) -> y        x[N,K] -> MatMul(W) -> Add(b[M]) -> y
After::   x -> Conv(W, b[C]) -> y                     x[N,K] -> Gemm(W, b) -> y
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import (
    const_array,
    new_const,
    replace_value,
    single_consumer,
    static_shape,
)


class FuseBiasPass(ir.passes.InPlacePass):
    """Move per-channel constant additions into the producing op's bias."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fuse every eligible producer -> Add pair."""
        graph = model.graph
        changed = False
        for add in list(graph):
            if add.op_type != "Add" or add.domain != "":
                continue
            for i in (0, 1):
                x, c = add.inputs[i], add.inputs[1 - i]
                arr = const_array(c)
                prod = x.producer() if x is not None else None
                if x is None or arr is None or prod is None or single_consumer(x) is not add:
                    continue
                if _fuse(graph, prod, x, arr):
                    replace_value(graph, add.outputs[0], x)
                    graph.remove(add, safe=True)
                    changed = True
                    break
        return ir.passes.PassResult(model, modified=changed)


def _fuse(graph: ir.Graph, prod: ir.Node, x: ir.Value, arr: np.ndarray) -> bool:
    shape = static_shape(x)
    if shape is None or prod.domain != "" or arr.ndim > len(shape):
        return False
    if prod.op_type in ("Conv", "ConvTranspose"):
        channels = shape[1]
        padded = arr.reshape((1,) * (len(shape) - arr.ndim) + arr.shape)
        if any(d != 1 for i, d in enumerate(padded.shape) if i != 1):
            return False
        bias_idx = 2
    elif prod.op_type in ("MatMul", "Gemm") and len(shape) == 2:
        channels = shape[1]
        padded = arr.reshape((1,) * (2 - arr.ndim) + arr.shape)
        if padded.shape[0] != 1:
            return False
        if prod.op_type == "MatMul" and (const_array(prod.inputs[1]) is None):
            return False
        bias_idx = 2
    else:
        return False
    old = const_array(prod.inputs[bias_idx]) if len(prod.inputs) > bias_idx else None
    if len(prod.inputs) > bias_idx and prod.inputs[bias_idx] is not None and old is None:
        return False
    if prod.op_type == "Gemm" and old is not None and old.ndim != 1:
        return False
    bias = np.broadcast_to(padded.reshape(-1), (channels,)).astype(arr.dtype)
    if old is not None:
        beta = prod.attributes.get("beta")
        bias = bias + old * (beta.value if beta is not None else 1.0)
    if prod.op_type == "Gemm":
        prod.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
    if prod.op_type == "MatMul":
        prod.op_type = "Gemm"
    if len(prod.inputs) <= bias_idx:
        prod.resize_inputs(bias_idx + 1)
    prod.replace_input_with(bias_idx, new_const(graph, bias, f"{prod.name}_bias"))
    return True
