"""Image preprocessing layers with a deterministic inference: CenterCrop, RandomCrop,
AutoContrast, and Pipeline (a list of preprocessing layers applied in order).

Checked against Keras 3's ``transform_images(..., training=False)``:

- ``CenterCrop``: the window ``[(H-h)//2 : +h, (W-w)//2 : +w]``; an input smaller than the
  target is cropped to the target's aspect ratio and resized (Keras' ``smart_resize``).
- ``RandomCrop``: Keras 3 returns its input unchanged at inference; tf.keras center-crops
  and resizes instead, so a Keras 2 file with one is refused.
- ``AutoContrast``: per image and channel, ``(x - min) * 255 / (max - min)`` on the
  ``value_range`` mapped to [0, 255], clipped and mapped back; a flat channel (NaN) keeps
  its input values.
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
    major_of,
)
from modelconv.importers.keras.spec import LayerConfig, config_refusals, show
from modelconv.importers.keras.tensors import FIRST, LAST, const_f, first, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_I64 = np.int64


@keras_layer("CenterCrop", reads=("height", "width"), defaults={"data_format": "channels_last"})
def center_crop(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
    """CenterCrop(height, width): Slice of the centred window; an input smaller than the
    target is cropped to the target's aspect ratio and resized bilinearly (smart_resize).

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: no weights.
        xs: the images, channels-last.

    Returns:
        The cropped images (channels-last).

    Raises:
        LayerUnsupported: the input is not an image batch or its size is unknown.
    """
    from modelconv.importers.keras.shapes import static_dims

    x = xs[0]
    if x.rank != 4:
        raise LayerUnsupported(f"a rank-{x.rank} input (N, H, W, C expected; Keras takes a "
                               "rank-3 tensor for one unbatched image)")
    if not x.dtype.startswith("float"):  # Keras computes in its float32 policy
        x = KTensor(b.Cast(last(b, x), to=1), x.rank, LAST)
    axes = [1, 2]
    size = static_dims(b, x, axes, "CenterCrop")
    target = [int(cfg["height"]), int(cfg["width"])]
    smaller = any(s < t for s, t in zip(size, target, strict=True))
    if smaller:  # Keras' smart_resize: the largest centred box of the target's aspect
        (h, w_), (th, tw) = size, target
        box = [max(min(h, int(float(w_ * th) / tw)), 1), max(min(w_, int(float(h * tw) / th)), 1)]
    else:
        box = target
    starts = [int(float(s - t) / 2) for s, t in zip(size, box, strict=True)]
    ends = [a + t for a, t in zip(starts, box, strict=True)]
    y = b.Slice(last(b, x), b.const(np.asarray(starts, _I64)), b.const(np.asarray(ends, _I64)),
                b.const(np.asarray(axes, _I64)))
    if not smaller:
        return KTensor(y, x.rank, LAST, x.dtype)
    v = first(b, KTensor(y, 4, LAST, x.dtype))
    sizes = b.Concat(b.Shape(v, end=2), b.const(np.asarray(target, _I64)), axis=0)
    resized = b.Resize(v, None, None, sizes, mode="linear",
                       coordinate_transformation_mode="half_pixel")
    return KTensor(resized, 4, FIRST, x.dtype)


@keras_layer("RandomCrop", reads=("height", "width"), inert=("seed", "rng_type"),
             defaults={"data_format": "channels_last"})
def random_crop(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
    """RandomCrop at inference: Keras 3 returns the input unchanged.

    Raises:
        LayerUnsupported: a Keras 2 file (tf.keras center-crops and resizes at inference).
    """
    if major_of(cfg) != 3:
        raise LayerUnsupported("a Keras 2 RandomCrop (it crops and resizes at inference)")
    return xs[0]


def _range(b: GraphBuilder, v: Any, src: tuple[float, float], dst: tuple[float, float]) -> Any:
    """Keras' ``_transform_value_range``: (v - lo) / (hi - lo) * (dst span) + dst lo."""
    if src == dst:
        return v
    v = b.Div(b.Sub(v, const_f(b, src[0])), const_f(b, src[1] - src[0]))
    return b.Add(b.Mul(v, const_f(b, dst[1] - dst[0])), const_f(b, dst[0]))


def _value_range(cfg: Mapping[str, Any]) -> tuple[float, float]:
    vr = cfg.get("value_range", (0, 255))
    if not isinstance(vr, list | tuple) or len(vr) != 2 or \
            not all(isinstance(v, int | float) for v in vr):
        raise LayerUnsupported(f"value_range={show(vr)}")
    return (float(vr[0]), float(vr[1]))


@keras_layer("AutoContrast", reads=("value_range",), defaults={"data_format": "channels_last"})
def auto_contrast(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                  xs: list[KTensor]) -> KTensor:
    """AutoContrast: each channel of each image stretched to the full value range.

    Args:
        b: the graph builder.
        cfg: the layer config (``value_range``).
        w: no weights.
        xs: float images (N, H, W, C).

    Returns:
        The stretched images, channels-last.

    Raises:
        LayerUnsupported: not a float image batch, or a malformed ``value_range``.
    """
    x = xs[0]
    if x.rank != 4 or not x.dtype.startswith("float"):
        raise LayerUnsupported(f"a rank-{x.rank} {x.dtype} input (supported: float images "
                               "N, H, W, C)")
    vr = _value_range(cfg)
    orig = last(b, x)
    v = _range(b, orig, vr, (0.0, 255.0))
    axes = b.const(np.asarray([1, 2], _I64))
    low = b.ReduceMin(v, axes, keepdims=1)
    high = b.ReduceMax(v, axes, keepdims=1)
    scale = b.Div(const_f(b, 255.0), b.Sub(high, low))
    y = b.Sub(b.Mul(v, scale), b.Mul(low, scale))
    y = b.Clip(y, const_f(b, 0.0), const_f(b, 255.0))
    y = _range(b, y, (0.0, 255.0), vr)
    return KTensor(b.Where(b.Equal(y, y), y, orig), 4, LAST, x.dtype)


def _check_pipeline(cfg: Mapping[str, Any]) -> list[str]:
    """Each stage checked against its own handler's spec (labels ``layers[i].<key>``)."""
    stages = cfg.get("layers")
    if not isinstance(stages, list) or not stages:
        return [f"layers={show(stages)}"]
    out = []
    for i, sub in enumerate(stages):
        cls = sub.get("class_name") if isinstance(sub, dict) else None
        spec = layer_spec(cls) if isinstance(cls, str) else None
        if spec is None or not isinstance(sub.get("config"), dict):
            out.append(f"layers[{i}]={show(cls if cls is not None else sub)}")
            continue
        out.extend(f"layers[{i}].{label}"
                   for label in config_refusals(spec, sub["config"]))
    return out


@keras_layer("Pipeline", reads=("layers",), check=_check_pipeline)
def pipeline(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
             xs: list[KTensor]) -> KTensor:
    """Pipeline([...]): each stage's handler on the previous stage's output.

    Args:
        b: the graph builder.
        cfg: the layer config (``layers``: the stages' classes and configs).
        w: the pipeline's weights (stages with weights are refused).
        xs: the input.

    Returns:
        The last stage's output.

    Raises:
        LayerUnsupported: a stage with weights, or with several outputs.
    """
    if len(w):
        raise LayerUnsupported(f"stages with weights ({len(w)} weight(s))")
    x = xs[0]
    for sub in cfg["layers"]:
        handler = LAYERS.get(sub["class_name"])
        assert handler is not None  # _check_pipeline ran first
        inner = LayerConfig({**sub["config"], "_keras_major": major_of(cfg),
                             "_call_kwargs": {}}, str(sub["config"].get("name", "stage")))
        result = handler(b, inner, w, [x])
        if isinstance(result, list | tuple):
            if len(result) != 1:
                raise LayerUnsupported(f"stage {sub['class_name']} with {len(result)} outputs")
            result = result[0]
        x = result
    return x
