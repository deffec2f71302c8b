"""GroupQueryAttention (Keras 3): multi-head attention whose key/value heads are shared by
groups of query heads.

Keras repeats each key/value head ``num_query_heads // num_key_value_heads`` times
(``ops.repeat`` on the head axis) after projecting; the projections are linear, so the
stored key/value kernels and biases are repeated the same way here and the layer becomes
plain multi-head attention with ``num_query_heads`` heads: no repeat at run time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import WEIGHT_OPTIONS, KTensor, LayerUnsupported, keras_layer
from modelconv.importers.keras.tensors import LAST, last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_I64 = np.int64


def _heads(b: GraphBuilder, x: Any, kernel: np.ndarray, bias: np.ndarray | None,
           repeat: int, suffix: str) -> Any:
    """x (N, T, D) @ kernel (D, H, d), heads repeated ``repeat`` times -> (N, H*r, T, d)."""
    kernel = np.repeat(kernel, repeat, axis=1)
    heads, dim = kernel.shape[1], kernel.shape[2]
    y = b.MatMul(x, weight(b, np.ascontiguousarray(kernel.reshape(kernel.shape[0], -1)),
                           f"{suffix}.kernel"))
    if bias is not None:
        y = b.Add(y, weight(b, np.repeat(bias, repeat, axis=0).reshape(-1), f"{suffix}.bias"))
    y = b.Reshape(y, b.const(np.asarray([0, 0, heads, dim], _I64)))
    return b.Transpose(y, perm=[0, 2, 1, 3])


@keras_layer("GroupQueryAttention", "GroupedQueryAttention",  # .keras / legacy .h5 name
             reads=("head_dim", "num_query_heads", "num_key_value_heads", "use_bias"),
             inert=(*WEIGHT_OPTIONS, "dropout", "seed"),
             defaults={"use_gate": False, "sliding_window": None},
             kw_inputs=("query", "value", "key"),
             call_kwargs=("use_causal_mask", "return_attention_scores"))
def group_query_attention(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                          xs: list[KTensor]) -> KTensor:
    """GroupQueryAttention(query, value[, key]) over axis 1 of rank-3 inputs, no masks.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: query, key, value and output kernels (and biases with ``use_bias``).
        xs: query (N, T, D), value (N, S, D) and optionally key (N, S, D).

    Returns:
        The attention output (N, T, D).

    Raises:
        LayerUnsupported: a causal mask, returned scores, inputs not of rank 3, or query
            heads that are not a multiple of the key/value heads.
    """
    kw = cfg.get("_call_kwargs", {})
    for key in ("use_causal_mask", "return_attention_scores"):
        if kw.get(key):
            raise LayerUnsupported(f"{key}={kw[key]!r}")
    if len(xs) not in (2, 3) or any(x.rank != 3 for x in xs):
        raise LayerUnsupported(f"{len(xs)} input(s) of rank {[x.rank for x in xs]} "
                               "(supported: query, value(, key) of rank 3)")
    hq, hkv, dim = (int(cfg[k]) for k in ("num_query_heads", "num_key_value_heads",
                                          "head_dim"))
    if hkv <= 0 or hq % hkv:
        raise LayerUnsupported(f"num_query_heads={hq} with num_key_value_heads={hkv}")
    bias = bool(cfg.get("use_bias", True))
    q_in = last(b, xs[0])
    v_in = last(b, xs[1])
    k_in = last(b, xs[2]) if len(xs) > 2 else v_in
    step = 2 if bias else 1
    parts = [(w.get(i * step), w.get(i * step + 1) if bias else None) for i in range(4)]
    q = _heads(b, q_in, parts[0][0], parts[0][1], 1, "query")
    k = _heads(b, k_in, parts[1][0], parts[1][1], hq // hkv, "key")
    v = _heads(b, v_in, parts[2][0], parts[2][1], hq // hkv, "value")
    q = b.Mul(q, b.const(np.float32(1.0 / np.sqrt(dim))))
    scores = b.Softmax(b.MatMul(q, b.Transpose(k, perm=[0, 1, 3, 2])), axis=-1)
    ctx = b.Transpose(b.MatMul(scores, v), perm=[0, 2, 1, 3])  # (N, T, Hq, d)
    ctx = b.Reshape(ctx, b.const(np.asarray([0, 0, hq * dim], _I64)))
    out_kernel = parts[3][0]
    if out_kernel.shape[:2] != (hq, dim):
        raise LayerUnsupported(f"an output kernel of shape {out_kernel.shape}")
    y = b.MatMul(ctx, weight(b, np.ascontiguousarray(out_kernel.reshape(hq * dim, -1)),
                             "output.kernel"))
    if bias:
        y = b.Add(y, weight(b, parts[3][1], "output.bias"))  # type: ignore[arg-type]
    return KTensor(y, 3, LAST)
