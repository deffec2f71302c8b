"""Masking: zero the time steps whose features all equal ``mask_value`` and mark them
masked for the layers downstream (the mask itself: :mod:`.masking`)."""

from __future__ import annotations

from typing import Any

from modelconv.importers.keras.common import KTensor, keras_layer
from modelconv.importers.keras.masking import any_last, not_equal
from modelconv.importers.keras.tensors import LAST, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder


@keras_layer("Masking", reads=("mask_value",))
def masking(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """``x * any(x != mask_value, axis=-1, keepdims=True)`` (channels-last)."""
    x = xs[0]
    keep = any_last(b, not_equal(b, x, float(cfg.get("mask_value", 0.0))), keepdims=True)
    y = b.Mul(last(b, x), b.Cast(keep, to=1))
    return KTensor(y, x.rank, LAST, x.dtype)
