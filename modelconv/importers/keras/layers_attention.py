"""Attention layers: MultiHeadAttention (self and cross attention, no masks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import WEIGHT_OPTIONS, KTensor, LayerUnsupported, keras_layer
from modelconv.importers.keras.tensors import LAST, last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_I64 = np.int64


def _project(b: GraphBuilder, x: Any, w: LayerWeights, i: int, bias: bool, heads: int,
             dim: int, suffix: str) -> tuple[Any, int]:
    """x (N, T, D) @ kernel (D, H, d) [+ bias] -> (N, H, T, d)."""
    kernel = w.get(i, [None, heads, dim])
    y = b.MatMul(x, weight(b, kernel.reshape(kernel.shape[0], heads * dim), f"{suffix}.kernel"))
    i += 1
    if bias:
        y = b.Add(y, weight(b, w.get(i, [heads, dim]).reshape(-1), f"{suffix}.bias"))
        i += 1
    y = b.Reshape(y, b.const(np.asarray([0, 0, heads, dim], _I64)))
    return b.Transpose(y, perm=[0, 2, 1, 3]), i


@keras_layer("MultiHeadAttention",
             reads=("num_heads", "key_dim", "value_dim", "use_bias", "attention_axes",
                    "output_shape"),
             inert=(*WEIGHT_OPTIONS, "dropout", "seed", "query_shape", "key_shape",
                    "value_shape"),  # Keras 2: the build shapes
             defaults={"use_gate": False, "sliding_window": None,
                       "softmax_robust_masking": False},
             kw_inputs=("query", "value", "key"),
             call_kwargs=("use_causal_mask", "return_attention_scores"))
def multi_head_attention(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                         xs: list[KTensor]) -> KTensor:
    """MultiHeadAttention over axis 1 of rank-3 inputs: inputs (query, value[, key])."""
    attention_axes = cfg.get("attention_axes")
    if attention_axes not in (None, [1], (1,), 1) or any(x.rank != 3 for x in xs):
        raise LayerUnsupported(f"attention_axes={attention_axes!r} with inputs of rank "
                               f"{[x.rank for x in xs]} (supported: axis 1 of rank-3 inputs)")
    out_shape = cfg.get("output_shape")
    if not (out_shape is None or isinstance(out_shape, int) or (
            isinstance(out_shape, list | tuple) and len(out_shape) == 1)):
        raise LayerUnsupported(f"output_shape={out_shape!r} (one output axis is supported)")
    kw = cfg.get("_call_kwargs", {})
    for key in ("use_causal_mask", "return_attention_scores"):
        if kw.get(key):
            raise LayerUnsupported(f"{key}={kw[key]!r}")
    heads, kd = int(cfg["num_heads"]), int(cfg["key_dim"])
    vd = int(cfg.get("value_dim") or kd)
    bias = bool(cfg.get("use_bias", True))
    q_in = last(b, xs[0])
    v_in = last(b, xs[1]) if len(xs) > 1 else q_in
    k_in = last(b, xs[2]) if len(xs) > 2 else v_in
    q, i = _project(b, q_in, w, 0, bias, heads, kd, "query")
    k, i = _project(b, k_in, w, i, bias, heads, kd, "key")
    v, i = _project(b, v_in, w, i, bias, heads, vd, "value")
    q = b.Mul(q, b.const(np.float32(1.0 / np.sqrt(kd))))
    scores = b.Softmax(b.MatMul(q, b.Transpose(k, perm=[0, 1, 3, 2])), axis=-1)
    ctx = b.Transpose(b.MatMul(scores, v), perm=[0, 2, 1, 3])  # (N, T, H, vd)
    out_kernel = w.get(i, [heads, vd, None])
    ctx = b.Reshape(ctx, b.const(np.asarray([0, 0, heads * vd], _I64)))
    y = b.MatMul(ctx, weight(b, out_kernel.reshape(heads * vd, -1), "output.kernel"))
    if bias:
        y = b.Add(y, weight(b, w.get(i + 1), "output.bias"))
    return KTensor(y, 3, LAST)
