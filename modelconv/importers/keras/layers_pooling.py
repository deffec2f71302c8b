"""Pooling layers: Max/Average pooling 1D/2D/3D and their global variants."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, as_tuple, keras_layer
from modelconv.importers.keras.masking import input_masks
from modelconv.importers.keras.tensors import FIRST, LAST, first, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder
from modelconv.ir.layout import ir_axis
from modelconv.ir.pooling import REDUCTIONS, adaptive_pool


def _pool(b: GraphBuilder, cfg: dict[str, Any], xs: list[KTensor], op: str, n: int) -> KTensor:
    x = xs[0]
    size = as_tuple(cfg.get("pool_size", 2), n)
    strides = as_tuple(cfg.get("strides") or size, n)
    attrs: dict[str, Any] = {"kernel_shape": list(size), "strides": list(strides)}
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise LayerUnsupported(f"padding={padding!r}")
    if padding == "same":
        attrs["auto_pad"] = "SAME_UPPER"
    # Keras' average pooling never counts padding (ONNX count_include_pad=0, the default)
    return KTensor(b.op(op, [first(b, x)], attrs), x.rank, FIRST)


def _register_pool(op: str, n: int, *names: str) -> None:
    def handler(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
        return _pool(b, cfg, xs, op, n)

    handler.__doc__ = f"{names[0]} -> {op}."
    handler.__name__ = names[0].lower()
    keras_layer(*names, reads=("pool_size", "strides", "padding"),
                defaults={"data_format": "channels_last"})(handler)


_register_pool("MaxPool", 1, "MaxPooling1D", "MaxPool1D")
_register_pool("MaxPool", 2, "MaxPooling2D", "MaxPool2D")
_register_pool("MaxPool", 3, "MaxPooling3D", "MaxPool3D")
_register_pool("AveragePool", 1, "AveragePooling1D", "AvgPool1D")
_register_pool("AveragePool", 2, "AveragePooling2D", "AvgPool2D")
_register_pool("AveragePool", 3, "AveragePooling3D", "AvgPool3D")


def _global(b: GraphBuilder, cfg: dict[str, Any], xs: list[KTensor], op: str) -> KTensor:
    x = xs[0]
    mask = input_masks(cfg, 1)[0]
    if mask is not None:  # only GlobalAveragePooling1D takes a mask (masking.TAKES_MASK)
        return _masked_mean(b, x, mask, bool(cfg.get("keepdims", False)))
    axes = [ir_axis(a, x.rank, x.layout) for a in range(1, x.rank - 1)]
    keep = bool(cfg.get("keepdims", False))
    y = b.op(op, [x.value, b.const(np.asarray(axes, np.int64))], keepdims=int(keep))
    return KTensor(y, x.rank, x.layout) if keep else KTensor(y, 2, LAST)


def _masked_mean(b: GraphBuilder, x: KTensor, mask: KTensor, keep: bool) -> KTensor:
    """Keras: sum(where(mask, x, 0), 1) / sum(mask, 1) over the time axis of (N, T, C)."""
    m = b.Unsqueeze(mask.value, b.const(np.asarray([-1], np.int64)))
    v = last(b, x)
    axes = b.const(np.asarray([1], np.int64))
    total = b.ReduceSum(b.Where(m, v, b.const(np.float32(0.0))), axes, keepdims=int(keep))
    count = b.ReduceSum(b.Cast(m, to=1), axes, keepdims=int(keep))
    return KTensor(b.Div(total, count), 3 if keep else 2, LAST)


def _register_global(op: str, *names: str) -> None:
    def handler(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
        return _global(b, cfg, xs, op)

    handler.__doc__ = f"{names[0]} -> {op} over the spatial axes."
    handler.__name__ = names[0].lower()
    keras_layer(*names, reads=("keepdims",), defaults={"data_format": "channels_last"})(handler)


_register_global("ReduceMean", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                 "GlobalAveragePooling3D", "GlobalAvgPool1D", "GlobalAvgPool2D",
                 "GlobalAvgPool3D")
_register_global("ReduceMax", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
                 "GlobalMaxPooling3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D")


def _adaptive(b: GraphBuilder, cfg: dict[str, Any], xs: list[KTensor], kind: str,
              n: int) -> KTensor:
    from modelconv.importers.keras.shapes import static_dims

    x = xs[0]
    if x.rank != n + 2:
        raise LayerUnsupported(f"a rank-{x.rank} input (needs rank {n + 2})")
    sizes = static_dims(b, x, list(range(1, n + 1)), "adaptive pooling")
    outs = as_tuple(cfg["output_size"], n)
    return KTensor(adaptive_pool(b, first(b, x), sizes, outs, kind), x.rank, FIRST)


def _register_adaptive(kind: str, n: int, name: str) -> None:
    def handler(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
        return _adaptive(b, cfg, xs, kind, n)

    handler.__doc__ = (f"{name} -> {kind} pooling, one {REDUCTIONS[kind]} per uneven output "
                       "window (the spatial sizes must be static).")
    handler.__name__ = name.lower()
    keras_layer(name, reads=("output_size",),
                defaults={"data_format": "channels_last"})(handler)


for _n in (1, 2, 3):
    _register_adaptive("avg", _n, f"AdaptiveAveragePooling{_n}D")
    _register_adaptive("max", _n, f"AdaptiveMaxPooling{_n}D")
