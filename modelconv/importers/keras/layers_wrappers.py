"""Wrapper layers: TimeDistributed (the inner layer applied to every time step).

The inner layer's config is checked against its own handler's spec before conversion
(every refusal is named ``layer.<key>``); it runs once on the batch and time axes merged
into one, ``(N, T, ...) -> (N*T, ...)``, and the result is split back into ``(N, T, ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelconv.importers.keras.common import (
    LAYERS,
    KTensor,
    LayerUnsupported,
    keras_layer,
    layer_spec,
)
from modelconv.importers.keras.spec import LayerConfig, config_refusals, show
from modelconv.importers.keras.tensors import LAST, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_I64 = np.int64
#: wrapping these would need their state or several inputs per step
_NOT_WRAPPABLE = frozenset({"TimeDistributed", "Bidirectional", "LSTM", "GRU", "SimpleRNN",
                            "MultiHeadAttention", "Attention", "AdditiveAttention"})


def _check_time_distributed(cfg: Mapping[str, Any]) -> list[str]:
    sub = cfg.get("layer")
    cls = sub.get("class_name") if isinstance(sub, dict) else None
    if not isinstance(cls, str) or cls in _NOT_WRAPPABLE or layer_spec(cls) is None or \
            not isinstance(sub.get("config"), dict):  # type: ignore[union-attr]
        return [f"layer={show(cls if cls is not None else sub)}"]
    spec = layer_spec(cls)
    assert spec is not None
    return [f"layer.{label}" for label in config_refusals(spec, sub["config"])]  # type: ignore[index]


@keras_layer("TimeDistributed", reads=("layer",), check=_check_time_distributed)
def time_distributed(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                     xs: list[KTensor]) -> KTensor:
    """TimeDistributed(layer): the inner layer on (N*T, ...), reshaped back to (N, T, ...).

    Args:
        b: the graph builder.
        cfg: the layer config (``layer``: the inner layer's class and config).
        w: the inner layer's weights.
        xs: one input of rank >= 3 (N, T, ...).

    Returns:
        The inner layer's output per time step (N, T, ...), channels-last.

    Raises:
        LayerUnsupported: the input has rank < 3, or the inner layer refuses a variant.
    """
    x = xs[0]
    if len(xs) != 1 or x.rank < 3:
        raise LayerUnsupported(f"{len(xs)} input(s) of rank {[t.rank for t in xs]} "
                               "(supported: one input of rank >= 3)")
    sub = cfg["layer"]
    handler = LAYERS.get(sub["class_name"])
    assert handler is not None  # _check_time_distributed ran first
    v = last(b, x)
    shape = b.Shape(v)
    step = b.Concat(b.const(np.asarray([-1], _I64)),
                    b.Slice(shape, b.const(np.asarray([2], _I64)),
                            b.const(np.asarray([x.rank], _I64))), axis=0)
    merged = KTensor(b.Reshape(v, step), x.rank - 1, LAST, x.dtype)
    inner_cfg = LayerConfig({**sub["config"], "_keras_major": cfg.get("_keras_major", 3),
                             "_call_kwargs": {}}, str(sub["config"].get("name", "layer")))
    result = handler(b, inner_cfg, w, [merged])
    if isinstance(result, list | tuple):
        if len(result) != 1:
            raise LayerUnsupported(f"layer={sub['class_name']} with {len(result)} outputs")
        result = result[0]
    y = last(b, result)
    y_shape = b.Shape(y)
    full = b.Concat(b.Slice(shape, b.const(np.asarray([0], _I64)), b.const(np.asarray([2], _I64))),
                    b.Slice(y_shape, b.const(np.asarray([1], _I64)),
                            b.const(np.asarray([result.rank], _I64))), axis=0)
    return KTensor(b.Reshape(y, full), result.rank + 1, LAST, result.dtype)


def _check_spectral(cfg: Mapping[str, Any]) -> list[str]:
    sub = cfg.get("layer")
    cls = sub.get("class_name") if isinstance(sub, dict) else None
    spec = layer_spec(cls) if isinstance(cls, str) else None
    if spec is None or cls in _NOT_WRAPPABLE or \
            not isinstance(sub.get("config"), dict):  # type: ignore[union-attr]
        return [f"layer={show(cls if cls is not None else sub)}"]
    return [f"layer.{label}" for label in config_refusals(spec, sub["config"])]  # type: ignore[index]


def inner_weights(w: LayerWeights) -> LayerWeights:
    """The wrapped layer's weights of a SpectralNormalization: in a .keras file those
    under ``layer/`` (the wrapper's own ``vars`` repeat the kernel and hold ``vector_u``),
    in an .h5 file all but ``vector_u``."""
    names = w.names
    if any(n.startswith("layer/") for n in names):
        return w.subset([i for i, n in enumerate(names) if n.startswith("layer/")])
    return w.subset([i for i, n in enumerate(names)
                     if not n.rsplit("/", 1)[-1].startswith("vector_u")])


@keras_layer("SpectralNormalization", reads=("layer",), inert=("power_iterations",),
             check=_check_spectral)
def spectral_normalization(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                           xs: list[KTensor]) -> KTensor | list[KTensor]:
    """SpectralNormalization at inference: the wrapped layer with its stored kernel.

    Keras normalises the kernel (power iteration, kernel / sigma) and writes it back
    into the wrapped layer only when called with ``training=True``; at inference the
    wrapped layer runs with the kernel as saved, so ``power_iterations`` has no effect.

    Args:
        b: the graph builder.
        cfg: the layer config (``layer``: the wrapped layer's class and config).
        w: the wrapper's weights (the inner layer's are picked by :func:`inner_weights`).
        xs: the input.

    Returns:
        The wrapped layer's output.
    """
    sub = cfg["layer"]
    handler = LAYERS.get(sub["class_name"])
    assert handler is not None  # _check_spectral ran first
    inner_cfg = LayerConfig({**sub["config"], "_keras_major": cfg.get("_keras_major", 3),
                             "_call_kwargs": {}}, str(sub["config"].get("name", "layer")))
    return handler(b, inner_cfg, inner_weights(w), xs)
