"""Tensors flowing through the Keras converter, with their layout.

Keras tensors are channels-last ``(N, d1..dk, C)``. The IR prefers channels-first
``(N, C, d1..dk)``. A :class:`KTensor` remembers which of the two its IR value holds
(``layout`` "last" or "first") and caches the Transpose to the other layout, so a tensor
read in both layouts is transposed once. Tensors of rank <= 2 are the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.ir.builder import GraphBuilder, source_name_of
from modelconv.ir.layout import FIRST, LAST, perm_to_first, perm_to_last


@dataclass(eq=False)
class KTensor:
    """An IR value plus its Keras rank, layout and dtype."""

    value: ir.Value
    rank: int
    layout: str = LAST
    dtype: str = "float32"
    views: dict[str, ir.Value] = field(default_factory=dict)

    def like(self, value: ir.Value, rank: int | None = None, layout: str | None = None,
             dtype: str | None = None) -> KTensor:
        """A new tensor with this one's attributes unless overridden."""
        return KTensor(value, self.rank if rank is None else rank,
                       layout or self.layout, dtype or self.dtype)


def _view(b: GraphBuilder, x: KTensor, layout: str) -> ir.Value:
    if x.rank <= 2 or x.layout == layout:
        return x.value
    if layout not in x.views:
        perm = perm_to_first(x.rank) if layout == FIRST else perm_to_last(x.rank)
        # a cached view belongs to the layer that produced x (none for a graph input),
        # not to whichever consumer happened to ask first
        producer = x.value.producer()
        owner = source_name_of(producer) if producer is not None else None
        with b.source(owner):
            x.views[layout] = b.Transpose(x.value, perm=perm)
    return x.views[layout]


def first(b: GraphBuilder, x: KTensor) -> ir.Value:
    """``x`` as a channels-first IR value (transposed once, then cached)."""
    return _view(b, x, FIRST)


def last(b: GraphBuilder, x: KTensor) -> ir.Value:
    """``x`` in the Keras (channels-last) order."""
    return _view(b, x, LAST)


def common_layout(xs: list[KTensor]) -> str:
    """Layout to combine ``xs`` in: channels-first if any operand of rank >= 3 is.

    Scalars (rank 0) broadcast in either layout and do not take part.
    """
    ranks = {x.rank for x in xs if x.rank > 0}
    if len(ranks) > 1:
        return LAST
    return FIRST if any(x.layout == FIRST and x.rank >= 3 for x in xs) else LAST


def in_layout(b: GraphBuilder, x: KTensor, layout: str) -> ir.Value:
    """``x`` in ``layout``."""
    return first(b, x) if layout == FIRST else last(b, x)


def const_f(b: GraphBuilder, value: Any, name: str = "c") -> ir.Value:
    """A float32 constant."""
    return b.const(np.asarray(value, dtype=np.float32), name=name)


def const_tensor(b: GraphBuilder, value: Any, dtype: str) -> KTensor:
    """A constant operand (``3.0`` in ``x + 3.0``) as a tensor of ``dtype``."""
    arr = np.asarray(value, dtype=np.dtype(dtype))
    return KTensor(b.const(arr, name="k"), arr.ndim, LAST, dtype)


def const_i(b: GraphBuilder, value: Any, name: str = "c") -> ir.Value:
    """An int64 constant (shapes, axes, pads)."""
    return b.const(np.asarray(value, dtype=np.int64), name=name)


def weight(b: GraphBuilder, array: np.ndarray, suffix: str) -> ir.Value:
    """An initializer named after the current layer."""
    base = b.current_source or "w"
    # a shared layer is converted once per call: reuse its initializers
    cache: dict[str, tuple[np.ndarray, ir.Value]] | None = getattr(b, "_keras_weights", None)
    if cache is None:
        cache = {}
        b._keras_weights = cache  # type: ignore[attr-defined]
    key = f"{base}.{suffix}"
    hit = cache.get(key)
    if hit is not None and hit[0].shape == array.shape and np.array_equal(hit[0], array):
        return hit[1]
    value = b.initializer(np.asarray(array), key)  # a strided view stays a view
    cache[key] = (array, value)
    return value


def channel_shape(rank: int, layout: str, n: int) -> list[int]:
    """Broadcast shape of a per-channel vector of length ``n`` for a tensor in ``layout``."""
    if layout == FIRST and rank >= 3:
        return [1, n] + [1] * (rank - 2)
    return [1] * (rank - 1) + [n]

