"""Attention: scaled_dot_product_attention as MatMul / Softmax / MatMul."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from ._base import AtenBuilder, aten_op
from .ops_activation import softmax_zero_when_empty


def _swap_last(rank: int) -> list[int]:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return perm


def _repeat_heads(b: AtenBuilder, x: ir.Value, n_rep: int, heads: int) -> ir.Value:
    """(..., Hk, S, E) -> (..., Hk * n_rep, S, E), each head repeated n_rep times."""
    rank = b.rank(x)
    y = b.Unsqueeze(x, b.const([rank - 2]))
    y = b.Expand(y, b.const([1] * (rank - 2) + [n_rep, 1, 1]))
    return b.Reshape(y, b.ints([0] * (rank - 3) + [heads * n_rep, -1, b.dims(x)[-1] or 0]))


def _causal_mask(b: AtenBuilder, q: ir.Value, k: ir.Value) -> ir.Value:
    shape = b.Concat(b.size_of(q, -2), b.size_of(k, -2), axis=0)
    ones = b.ConstantOfShape(shape, value=ir.tensor(np.array([True])))
    return b.Trilu(ones, upper=0)


@aten_op("aten.scaled_dot_product_attention.default")
def scaled_dot_product_attention(
    b: AtenBuilder, query: ir.Value, key: ir.Value, value: ir.Value,
    attn_mask: ir.Value | None = None, dropout_p: float = 0.0, is_causal: bool = False,
    *, scale: float | None = None, enable_gqa: bool = False,
) -> ir.Value:
    """softmax(q @ k^T * scale + mask) @ v (dropout is off at inference); with a mask, a
    fully masked row gives 0, as torch does, not NaN."""
    e = b.dims(query)[-1]
    scale = scale if scale is not None else 1.0 / math.sqrt(e or 1)
    hq = b.dims(query)[-3] if b.rank(query) > 2 else 1
    hk = b.dims(key)[-3] if b.rank(key) > 2 else 1
    if enable_gqa and hq and hk and hq != hk:
        key = _repeat_heads(b, key, hq // hk, hk)
        value = _repeat_heads(b, value, hq // hk, hk)
    k_t = b.Transpose(key, perm=_swap_last(b.rank(query)))
    scores = b.Mul(b.MatMul(query, k_t), b.scalar(scale, query.dtype))
    minus_inf = b.scalar(-np.inf, query.dtype)
    if is_causal:
        scores = b.Where(_causal_mask(b, query, key), scores, minus_inf)
    if attn_mask is not None:
        if attn_mask.dtype == ir.DataType.BOOL:
            scores = b.Where(attn_mask, scores, minus_inf)
        else:
            scores = b.Add(scores, b.cast(attn_mask, query.dtype))
    probs = b.Softmax(scores, axis=-1) if attn_mask is None else \
        softmax_zero_when_empty(b, scores, -1)
    return b.MatMul(probs, value)

