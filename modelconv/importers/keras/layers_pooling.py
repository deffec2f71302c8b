"""Pooling layers: Max/Average pooling 1D/2D/3D and their global variants."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, as_tuple, keras_layer
from modelconv.importers.keras.tensors import FIRST, LAST, first
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder
from modelconv.ir.layout import ir_axis


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
    axes = [ir_axis(a, x.rank, x.layout) for a in range(1, x.rank - 1)]
    keep = bool(cfg.get("keepdims", False))
    y = b.op(op, [x.value, b.const(np.asarray(axes, np.int64))], keepdims=int(keep))
    return KTensor(y, x.rank, x.layout) if keep else KTensor(y, 2, LAST)


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


def _adaptive_axis(b: GraphBuilder, v: Any, axis: int, size: int, out: int,
                   op: str) -> Any:
    """Adaptive pooling along one IR axis: window i spans [floor(i*L/n), ceil((i+1)*L/n))
    (torch's and Keras' rule); an even split is one regular pooling-sized reduction each."""
    axes = b.const(np.asarray([axis], np.int64))
    parts = []
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        piece = b.Slice(v, b.const(np.asarray([start], np.int64)),
                        b.const(np.asarray([end], np.int64)), axes)
        parts.append(b.op(op, [piece, axes], keepdims=1))
    return parts[0] if len(parts) == 1 else b.Concat(*parts, axis=axis)


def _adaptive(b: GraphBuilder, cfg: dict[str, Any], xs: list[KTensor], op: str,
              n: int) -> KTensor:
    from modelconv.importers.keras.shapes import static_dims

    x = xs[0]
    if x.rank != n + 2:
        raise LayerUnsupported(f"a rank-{x.rank} input (needs rank {n + 2})")
    sizes = static_dims(b, x, list(range(1, n + 1)), "adaptive pooling")
    outs = as_tuple(cfg["output_size"], n)
    v = first(b, x)
    for k, (size, out) in enumerate(zip(sizes, outs, strict=True)):
        if out != size:
            v = _adaptive_axis(b, v, 2 + k, size, out, op)
    return KTensor(v, x.rank, FIRST)


def _register_adaptive(op: str, n: int, name: str) -> None:
    def handler(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
        return _adaptive(b, cfg, xs, op, n)

    handler.__doc__ = (f"{name} -> per spatial axis, one {op} per output window "
                       "(the spatial sizes must be static).")
    handler.__name__ = name.lower()
    keras_layer(name, reads=("output_size",),
                defaults={"data_format": "channels_last"})(handler)


for _n in (1, 2, 3):
    _register_adaptive("ReduceMean", _n, f"AdaptiveAveragePooling{_n}D")
    _register_adaptive("ReduceMax", _n, f"AdaptiveMaxPooling{_n}D")
