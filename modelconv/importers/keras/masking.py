"""Keras masks: which layers produce, keep, combine, consume or end them.

Keras attaches a boolean mask ``(N, T)`` to a tensor (``Embedding(mask_zero=True)``,
``Masking``) and every later layer either keeps it (``supports_masking`` with the default
``compute_mask``), computes a new one (``compute_mask`` overridden) or drops it. A layer
whose ``call`` takes a ``mask`` argument receives the masks of its inputs (Keras 3
``Layer.__call__``, step "populate mask argument(s)"); a mask recorded as a call keyword
argument in the file is used instead, as Keras does when it reloads the model.

Here a mask is a bool :class:`KTensor` in Keras (channels-last) order, computed from the
input by IR nodes, so it holds for any input at run time. The converter keeps one per
tensor; a handler whose class takes a mask finds them in ``cfg["_masks"]``
(:func:`call_masks`). A class whose ``call`` takes a mask but whose handler does not
honour it is refused when a mask reaches it (:data:`TAKES_MASK`), never ignored.
``tests/keras/test_keras_masking.py`` derives these tables again from Keras' own classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelconv.importers.keras.spec import LayerUnsupported
from modelconv.importers.keras.tensors import LAST, KTensor, last
from modelconv.ir.builder import GraphBuilder

Mask = KTensor | None

#: classes with ``supports_masking`` and the default ``compute_mask``: the output keeps the
#: mask of the first input (or the ``mask`` the call was given)
KEEP = frozenset({
    "Activation", "ELU", "LeakyReLU", "PReLU", "ReLU", "Softmax", "Dense", "Identity",
    "BatchNormalization", "GroupNormalization", "LayerNormalization", "UnitNormalization",
    "Normalization", "Rescaling", "ActivityRegularization", "AlphaDropout", "Dropout",
    "GaussianDropout", "GaussianNoise", "TimeDistributed", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D",
})
#: merge layers: the OR of their inputs' masks, None unless every input has one
MERGE_OR = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})

#: classes whose ``call`` takes a mask -> how their handler honours it
TAKES_MASK: dict[str, str] = {
    "LSTM": "masked steps keep the previous state and output",
    "GRU": "masked steps keep the previous state and output",
    "SimpleRNN": "masked steps keep the previous state and output",
    "Bidirectional": "both directions masked (the backward one over the reversed mask)",
    "Attention": "value mask on the scores, query mask on the output",
    "AdditiveAttention": "value mask on the scores, query mask on the output",
    "MultiHeadAttention": "query/value/key masks and attention_mask on the scores",
    "GlobalAveragePooling1D": "mean over the unmasked steps",
    "BatchNormalization": "the mask only selects the statistics' samples in training",
    "TimeDistributed": "passed on to an inner layer that takes no mask",
}

#: classes whose ``call`` takes a mask that their handler does not apply: refused when a
#: mask reaches them
REFUSES_MASK: dict[str, str] = {
    "Softmax": "a masked softmax (the mask broadcast against the input) is not converted",
    "GroupQueryAttention": "query/value/key masks are not applied yet",
    "GroupedQueryAttention": "query/value/key masks are not applied yet",
    "RNN": "masked steps of a generic RNN over cells are not converted yet",
    "ConvLSTM1D": "masked steps of a convolutional LSTM are not converted yet",
    "ConvLSTM2D": "masked steps of a convolutional LSTM are not converted yet",
    "ConvLSTM3D": "masked steps of a convolutional LSTM are not converted yet",
    "Pipeline": "a mask passed on to the pipeline's stages is not converted",
}

#: call keyword arguments that are masks
MASK_KEYS = frozenset({"mask", "query_mask", "value_mask", "key_mask", "attention_mask"})


def is_mask_key(key: str) -> bool:
    """True for a call keyword argument that carries a mask (``mask.1``: a list entry)."""
    return key in MASK_KEYS or key.startswith("mask.")


def call_masks(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The masks a handler's call receives: ``"mask"`` -> one entry per input (None where
    that input has none), and for MultiHeadAttention ``query_mask`` / ``value_mask`` /
    ``key_mask`` / ``attention_mask``. Empty when no mask reaches the layer."""
    masks = cfg.get("_masks") or {}
    return masks if isinstance(masks, dict) else {}


def input_masks(cfg: Mapping[str, Any], n: int) -> list[Mask]:
    """The ``mask`` argument of a call with ``n`` inputs, one entry per input."""
    given = list(call_masks(cfg).get("mask") or [])
    return (given + [None] * n)[:n]


def gather_call_masks(cls: str, in_masks: list[Mask],
                      explicit: Mapping[str, KTensor]) -> dict[str, Any]:
    """What Keras passes to ``cls.call`` as masks (see the module docstring).

    Args:
        cls: the layer class.
        in_masks: the masks of the call's input tensors, in input order.
        explicit: the masks recorded as call keyword arguments (``mask``, ``mask.0``...).

    Returns:
        ``{"mask": [...]}`` (and MultiHeadAttention's own keys), or ``{}`` when the
        class takes no mask or none reaches it.
    """
    if cls not in TAKES_MASK and cls not in REFUSES_MASK and not any(explicit):
        return {}
    out: dict[str, Any] = {}
    if cls == "MultiHeadAttention":
        query = in_masks[0] if in_masks else None
        value = explicit.get("value_mask", in_masks[1] if len(in_masks) > 1 else None)
        key = explicit.get("key_mask", in_masks[2] if len(in_masks) > 2 else None)
        out = {"query_mask": query, "value_mask": value, "key_mask": key,
               "attention_mask": explicit.get("attention_mask")}
    elif "mask" in explicit:
        out = {"mask": [explicit["mask"]]}
    elif any(k.startswith("mask.") for k in explicit):
        out = {"mask": [explicit.get(f"mask.{i}") for i in range(len(in_masks))]}
    else:
        out = {"mask": list(in_masks)}
    return out if any(_present(v) for v in out.values()) else {}


def _present(value: Any) -> bool:
    if isinstance(value, list):
        return any(v is not None for v in value)
    return value is not None


def check_consumed(cls: str, cfg: Mapping[str, Any], masks: Mapping[str, Any]) -> None:
    """Refuse a mask reaching a layer whose call takes one that its handler does not honour.

    Raises:
        LayerUnsupported: ``cls`` is not in :data:`TAKES_MASK` (or wraps a layer that
            takes a mask) but a mask reaches its call.
    """
    if not masks:
        return
    inner = cfg.get("layer") if cls == "TimeDistributed" else None
    inner_cls = inner.get("class_name") if isinstance(inner, dict) else None
    if cls not in TAKES_MASK or inner_cls in TAKES_MASK or inner_cls in REFUSES_MASK:
        what = f"its inner {inner_cls}" if inner_cls and cls in TAKES_MASK else "it"
        raise LayerUnsupported(f"a mask (from Embedding(mask_zero=True), Masking or a mask "
                               f"argument) that {what} would apply: not converted")


def previous_mask(masks: Mapping[str, Any], in_masks: list[Mask]) -> Mask:
    """Keras' ``previous_mask``: the call's ``mask`` argument, else the first input's."""
    given = masks.get("mask")
    if given:
        return given[0]
    return in_masks[0] if in_masks else None


def const_like(b: GraphBuilder, value: Any, x: KTensor) -> Any:
    """A scalar constant of ``x``'s dtype."""
    return b.const(np.asarray(value, dtype=np.dtype(x.dtype)))


def any_last(b: GraphBuilder, v: Any, keepdims: bool = False) -> Any:
    """``any(v, axis=-1)`` of a bool value (via float max: the reducers take numbers)."""
    f = b.Cast(v, to=1)
    m = b.ReduceMax(f, b.const(np.asarray([-1], np.int64)), keepdims=int(keepdims))
    return b.Cast(m, to=9)


def not_equal(b: GraphBuilder, x: KTensor, value: Any) -> Any:
    """``x != value`` elementwise, channels-last."""
    return b.Not(b.Equal(last(b, x), const_like(b, value, x)))


def _or(b: GraphBuilder, masks: list[KTensor]) -> KTensor:
    out = masks[0].value
    for m in masks[1:]:
        out = b.Or(out, m.value)
    return KTensor(out, max(m.rank for m in masks), LAST, "bool")


def _concat_mask(b: GraphBuilder, cfg: Mapping[str, Any], xs: list[KTensor],
                 masks: list[Mask]) -> Mask:
    """Concatenate's ``compute_mask``: each mask broadcast to its input, joined, any(-1)."""
    if all(m is None for m in masks):
        return None
    parts = []
    for x, m in zip(xs, masks, strict=True):
        shape = b.Shape(last(b, x))
        if m is None:
            parts.append(b.Expand(b.const(np.asarray(True)), shape))
        elif m.rank < x.rank:
            parts.append(b.Expand(b.Unsqueeze(m.value, b.const(np.asarray([-1], np.int64))),
                                  shape))
        else:
            parts.append(m.value)
    axis = int(cfg.get("axis", -1))
    joined = b.Concat(*parts, axis=axis % xs[0].rank)
    return KTensor(any_last(b, joined), xs[0].rank - 1, LAST, "bool")


def output_masks(b: GraphBuilder, cls: str, cfg: Mapping[str, Any], xs: list[KTensor],
                 in_masks: list[Mask], masks: Mapping[str, Any], n_out: int) -> list[Mask]:
    """The masks Keras attaches to a layer's outputs (its ``compute_mask``).

    Args:
        b: the graph builder (a new mask is computed by IR nodes).
        cls: the layer class.
        cfg: the layer config.
        xs: the call's input tensors.
        in_masks: their masks.
        masks: what :func:`gather_call_masks` gave the call.
        n_out: how many outputs the layer has.

    Returns:
        One mask (or None) per output.
    """
    none: list[Mask] = [None] * n_out
    prev = previous_mask(masks, in_masks)
    if cls == "Embedding":
        if not cfg.get("mask_zero"):
            return none
        return [KTensor(not_equal(b, xs[0], 0), xs[0].rank, LAST, "bool")]
    if cls == "Masking":
        mask = any_last(b, not_equal(b, xs[0], float(cfg.get("mask_value", 0.0))))
        return [KTensor(mask, xs[0].rank - 1, LAST, "bool")]
    if cls in KEEP:
        return [prev, *none[1:]]
    if cls in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
        inner = cfg["layer"]["config"] if cls == "Bidirectional" else cfg
        return [prev if inner.get("return_sequences") else None, *none[1:]]
    if cls in ("Attention", "AdditiveAttention", "MultiHeadAttention"):
        query = masks.get("query_mask") if cls == "MultiHeadAttention" else (
            (masks.get("mask") or [None])[0])
        return [query, *none[1:]]
    if cls in MERGE_OR:
        got = [m for m in in_masks if m is not None]
        return [_or(b, got) if got and len(got) == len(in_masks) else None, *none[1:]]
    if cls == "Concatenate":
        return [_concat_mask(b, cfg, xs, in_masks)]
    return none
