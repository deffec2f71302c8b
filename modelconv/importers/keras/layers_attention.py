"""Attention layers: MultiHeadAttention, Attention, AdditiveAttention, with Keras' masks
(the inputs' masks and ``use_causal_mask``; see :mod:`.masking`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import WEIGHT_OPTIONS, KTensor, LayerUnsupported, keras_layer
from modelconv.importers.keras.masking import call_masks, input_masks
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
    if kw.get("return_attention_scores"):
        raise LayerUnsupported(f"return_attention_scores={kw['return_attention_scores']!r}")
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
    scores = b.MatMul(q, b.Transpose(k, perm=[0, 1, 3, 2]))
    mask = _mha_mask(b, cfg, bool(kw.get("use_causal_mask")))
    if mask is None:
        scores = b.Softmax(scores, axis=-1)
    else:
        mask = b.Unsqueeze(mask, b.const(np.asarray([1], _I64)))  # (N, 1, T, S)
        if float(cfg.get("dropout") or 0.0) > 0.0:  # Keras' masked Softmax layer
            zero, low = b.const(np.float32(0.0)), b.const(np.float32(-1e9))
            scores = b.Where(mask, b.Softmax(b.Where(mask, scores, low), axis=-1), zero)
        else:  # ops.dot_product_attention: masked logits at -0.7 * float32 max, so a
            # query with no visible value attends uniformly (it is not zeroed)
            low = b.const(np.float32(-0.7 * 3.38953e38))
            scores = b.Softmax(b.Where(mask, scores, low), axis=-1)
    ctx = b.Transpose(b.MatMul(scores, v), perm=[0, 2, 1, 3])  # (N, T, H, vd)
    out_kernel = w.get(i, [heads, vd, None])
    ctx = b.Reshape(ctx, b.const(np.asarray([0, 0, heads * vd], _I64)))
    y = b.MatMul(ctx, weight(b, out_kernel.reshape(heads * vd, -1), "output.kernel"))
    if bias:
        y = b.Add(y, weight(b, w.get(i + 1), "output.bias"))
    return KTensor(y, 3, LAST)


def _steps(cfg: dict[str, Any], i: int) -> int:
    """The static time length of input ``i`` (for a causal mask)."""
    shapes = cfg.get("_shapes") or []
    shape = shapes[i] if i < len(shapes) else None
    if not shape or len(shape) < 2 or not isinstance(shape[1], int):
        raise LayerUnsupported("use_causal_mask=True on inputs without a fixed length")
    return int(shape[1])


def _causal(b: GraphBuilder, cfg: dict[str, Any], qi: int, vi: int) -> Any:
    """The (1, Tq, Tv) lower-triangular bool mask (query i sees value j <= i)."""
    tq, tv = _steps(cfg, qi), _steps(cfg, vi)
    return b.const(np.tril(np.ones((1, tq, tv), bool)))


def _and(b: GraphBuilder, masks: list[Any]) -> Any:
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = b.And(out, m)
    return out


def _mha_mask(b: GraphBuilder, cfg: dict[str, Any], causal: bool) -> Any:
    """MultiHeadAttention's (N, T, S) attention mask: query, value, key masks, causal and
    ``attention_mask`` combined with AND (Keras ``_compute_attention_mask``)."""
    got = call_masks(cfg)
    parts = []
    axis = {"query_mask": -1, "value_mask": -2, "key_mask": -2}
    for key, at in axis.items():
        m = got.get(key)
        if m is not None:
            parts.append(b.Unsqueeze(last(b, m), b.const(np.asarray([at], _I64))))
    if causal:
        parts.append(_causal(b, cfg, 0, 1))
    given = got.get("attention_mask")
    if given is not None:
        v = last(b, given)
        parts.insert(0, v if given.dtype == "bool" else b.Cast(v, to=9))
    return _and(b, parts)


def _scores_mask(b: GraphBuilder, cfg: dict[str, Any], n: int) -> tuple[Any, Any]:
    """(scores mask (N|1, Tq|1, Tv), query mask (N, Tq, 1)) of Attention/AdditiveAttention."""
    masks = input_masks(cfg, n)
    q_mask = None if masks[0] is None else b.Unsqueeze(
        masks[0].value, b.const(np.asarray([-1], _I64)))
    v_mask = None if masks[1] is None else b.Unsqueeze(
        masks[1].value, b.const(np.asarray([-2], _I64)))
    causal = _causal(b, cfg, 0, 1) if cfg.get("_call_kwargs", {}).get("use_causal_mask") \
        else None
    return _and(b, [v_mask, causal]), q_mask


def _attention_inputs(b: GraphBuilder, cfg: dict[str, Any],
                      xs: list[KTensor]) -> tuple[Any, Any, Any]:
    """(query, value, key) of a dot-product/additive attention call, channels-last."""
    kw = cfg.get("_call_kwargs", {})
    if kw.get("return_attention_scores"):
        raise LayerUnsupported(f"return_attention_scores={kw['return_attention_scores']!r}")
    if len(xs) not in (2, 3) or any(x.rank != 3 for x in xs):
        raise LayerUnsupported(f"{len(xs)} input(s) of rank {[x.rank for x in xs]} "
                               "(supported: [query, value(, key)] of rank 3)")
    q, v = last(b, xs[0]), last(b, xs[1])
    return q, v, last(b, xs[2]) if len(xs) == 3 else v


def _attend(b: GraphBuilder, cfg: dict[str, Any], n: int, scores: Any, value: Any) -> KTensor:
    """softmax(scores) @ value, with Keras' masks: masked values get ``scores - 1e9``,
    masked queries a zero output."""
    s_mask, q_mask = _scores_mask(b, cfg, n)
    if s_mask is not None:
        scores = b.Where(s_mask, scores, b.Sub(scores, b.const(np.float32(1e9))))
    out = b.MatMul(b.Softmax(scores, axis=-1), value)
    if q_mask is not None:
        out = b.Where(q_mask, out, b.const(np.float32(0.0)))
    return KTensor(out, 3, LAST)


def _pairwise_tanh(b: GraphBuilder, q: Any, k: Any, scale: Any = None) -> Any:
    """tanh([scale *] (q[:, :, None] + k[:, None])): (N, Tq, Tv, D)."""
    s = b.Add(b.Unsqueeze(q, b.const(np.asarray([2], _I64))),
              b.Unsqueeze(k, b.const(np.asarray([1], _I64))))
    return b.Tanh(s if scale is None else b.Mul(s, scale))


@keras_layer("Attention", reads=("use_scale", "score_mode"), inert=("dropout", "seed"),
             call_kwargs=("use_causal_mask", "return_attention_scores"))
def attention(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
              xs: list[KTensor]) -> KTensor:
    """Luong attention ``Attention()([query, value(, key)])``, with its masks.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: ``scale`` (if ``use_scale``), then ``concat_score_weight`` (``score_mode="concat"``).
        xs: query (N, Tq, D), value (N, Tv, D) and optionally key (N, Tv, D).

    Returns:
        The attended values (N, Tq, D).

    Raises:
        LayerUnsupported: returned scores, another score mode or input form.
    """
    q, v, k = _attention_inputs(b, cfg, xs)
    mode = cfg.get("score_mode", "dot")
    i = 0
    scale = None
    if cfg.get("use_scale", False):
        scale, i = weight(b, np.asarray(w.get(0), np.float32).reshape(()), "scale"), 1
    if mode == "dot":
        scores = b.MatMul(q, b.Transpose(k, perm=[0, 2, 1]))
        if scale is not None:
            scores = b.Mul(scores, scale)
    elif mode == "concat":
        cw = weight(b, np.asarray(w.get(i), np.float32).reshape(()), "concat_score_weight")
        summed = b.ReduceSum(_pairwise_tanh(b, q, k, scale), b.const(np.asarray([-1], _I64)),
                             keepdims=0)
        scores = b.Mul(summed, cw)
    else:
        raise LayerUnsupported(f"score_mode={mode!r}")
    return _attend(b, cfg, len(xs), scores, v)


@keras_layer("AdditiveAttention", reads=("use_scale",), inert=("dropout", "seed"),
             call_kwargs=("use_causal_mask", "return_attention_scores"))
def additive_attention(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                       xs: list[KTensor]) -> KTensor:
    """Bahdanau attention ``AdditiveAttention()([query, value(, key)])``, with its masks.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: ``scale`` (D,) if ``use_scale``.
        xs: query (N, Tq, D), value (N, Tv, D) and optionally key (N, Tv, D).

    Returns:
        The attended values (N, Tq, D).

    Raises:
        LayerUnsupported: returned scores or another input form.
    """
    q, v, k = _attention_inputs(b, cfg, xs)
    t = _pairwise_tanh(b, q, k)
    if cfg.get("use_scale", True):
        t = b.Mul(t, weight(b, np.asarray(w.get(0), np.float32).reshape(-1), "scale"))
    scores = b.ReduceSum(t, b.const(np.asarray([-1], _I64)), keepdims=0)
    return _attend(b, cfg, len(xs), scores, v)
