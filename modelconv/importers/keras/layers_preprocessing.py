"""Preprocessing layers that are part of inference: Rescaling, Normalization, Resizing,
Discretization, CategoryEncoding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from modelconv.importers.keras.common import (
    LAYERS,
    KTensor,
    LayerUnsupported,
    keras_layer,
    major_of,
    per_channel,
)
from modelconv.importers.keras.spec import dtype_refusal, make_spec, show
from modelconv.importers.keras.tensors import FIRST, LAST, first, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_EPSILON = 1e-7  # keras.backend.epsilon()


def _scalar_or_channels(b: GraphBuilder, x: KTensor, value: Any, suffix: str) -> Any:
    arr = np.asarray(value, dtype=np.float32)
    if arr.size == 1:
        return b.const(arr.reshape(()))
    return per_channel(b, x, arr, suffix)


@keras_layer("Rescaling", reads=("scale", "offset"))
def rescaling(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
              xs: list[KTensor]) -> KTensor:
    """Rescaling: x * scale + offset (scalars or per channel)."""
    x = xs[0]
    v = x.value if x.dtype.startswith("float") else b.Cast(x.value, to=1)
    y = b.Mul(v, _scalar_or_channels(b, x, cfg.get("scale", 1.0), "scale"))
    offset = cfg.get("offset", 0.0)
    if np.any(np.asarray(offset) != 0):
        y = b.Add(y, _scalar_or_channels(b, x, offset, "offset"))
    return x.like(y, dtype="float32")


@keras_layer("Normalization", reads=("axis", "mean", "variance", "invert"))
def normalization(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                  xs: list[KTensor]) -> KTensor:
    """Normalization: (x - mean) / max(sqrt(var), eps), or its inverse."""
    x = xs[0]
    axis = cfg.get("axis", -1)
    axes = axis if isinstance(axis, list | tuple) else [axis]
    if [int(a) % x.rank for a in axes] != [x.rank - 1]:
        raise LayerUnsupported(f"axis={axis!r} (not the channel axis)")
    if cfg.get("mean") is not None and cfg.get("variance") is not None:
        mean = np.asarray(cfg["mean"], np.float32)
        var = np.asarray(cfg["variance"], np.float32)
    else:
        mean, var = w.get(0), w.get(1)
    std = np.maximum(np.sqrt(var), _EPSILON).astype(np.float32)
    m, s = _scalar_or_channels(b, x, mean, "mean"), _scalar_or_channels(b, x, std, "std")
    if cfg.get("invert"):
        return x.like(b.Add(b.Mul(x.value, s), m))
    return x.like(b.Div(b.Sub(x.value, m), s))


@keras_layer("Resizing", reads=("height", "width", "interpolation"),
             inert=("fill_mode", "fill_value"),  # used by pad_to_aspect_ratio only
             defaults={"crop_to_aspect_ratio": False, "pad_to_aspect_ratio": False,
                       "antialias": False, "data_format": "channels_last"})
def resizing(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
             xs: list[KTensor]) -> KTensor:
    """Resizing(height, width) -> Resize on the spatial axes (bilinear/nearest)."""
    x = xs[0]
    mode = cfg.get("interpolation", "bilinear")
    if mode == "bilinear":
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    elif mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel",
                 "nearest_mode": "round_prefer_ceil"}
    else:
        raise LayerUnsupported(f"interpolation={mode!r}")
    v = first(b, x)
    hw = b.const(np.asarray([cfg["height"], cfg["width"]], np.int64))
    sizes = b.Concat(b.Shape(v, end=2), hw, axis=0)
    y = b.Resize(v, None, None, sizes, **attrs)
    return KTensor(y, x.rank, FIRST)


def _discretization_dtype(cfg: Mapping[str, Any]) -> list[str]:
    """tf.keras stores Discretization's int64 output dtype as its ``dtype``; Keras 3 a
    float32 policy (its output is int either way)."""
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):
        return [r for r in [dtype_refusal(dtype)] if r is not None]
    return [] if dtype in (None, "float32", "int64") else [f"dtype={dtype!r}"]


@LAYERS.register("Discretization", check=replace(
    make_spec(reads=("bin_boundaries", "output_mode"), inert=("num_bins", "epsilon"),
              defaults={"sparse": False}, check=_discretization_dtype), policy=False))
def discretization(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                   xs: list[KTensor]) -> KTensor:
    """Discretization (``output_mode="int"``): the bin index, the count of boundaries <= x.

    Args:
        b: the graph builder.
        cfg: the layer config (``bin_boundaries`` given or adapted).
        w: no weights.
        xs: the float input.

    Returns:
        Bin indices, same shape as the input: int32 as Keras 3 returns them (int64 from
        a tf.keras file).

    Raises:
        LayerUnsupported: no boundaries in the config, or another output mode.
    """
    x = xs[0]
    bounds = cfg.get("bin_boundaries")
    mode = cfg.get("output_mode", "int")
    if mode != "int":
        raise LayerUnsupported(f"output_mode={mode!r}")
    if not bounds:
        raise LayerUnsupported("bin_boundaries=None (not adapted)")
    v = last(b, x)
    if not x.dtype.startswith("float"):
        v = b.Cast(v, to=1)
    edges = b.const(np.asarray(bounds, np.float32))
    ge = b.Not(b.Less(b.Unsqueeze(v, b.const(np.asarray([-1], np.int64))), edges))
    y = b.ReduceSum(b.Cast(ge, to=7), b.const(np.asarray([-1], np.int64)), keepdims=0)
    if major_of(cfg) == 2:  # tf.keras returns int64 bins, Keras 3 int32
        return KTensor(y, x.rank, LAST, "int64")
    return KTensor(b.Cast(y, to=6), x.rank, LAST, "int32")


@keras_layer("CategoryEncoding", reads=("num_tokens", "output_mode"), defaults={"sparse": False})
def category_encoding(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                      xs: list[KTensor]) -> KTensor:
    """CategoryEncoding: one_hot (rank-1 input), multi_hot and count over the last axis.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: no weights.
        xs: integer token ids (N,) or (N, T).

    Returns:
        float32 (N, num_tokens).

    Raises:
        LayerUnsupported: another mode, one_hot of a rank-2 input, or a rank > 2 input.
    """
    x = xs[0]
    mode = cfg.get("output_mode", "multi_hot")
    if mode not in ("one_hot", "multi_hot", "count"):
        raise LayerUnsupported(f"output_mode={mode!r}")
    if x.rank > 2 or (mode == "one_hot" and x.rank != 1):
        raise LayerUnsupported(f"output_mode={mode!r} with a rank-{x.rank} input")
    v = last(b, x)
    if x.rank == 1:
        v = b.Unsqueeze(v, b.const(np.asarray([-1], np.int64)))
    ids = b.Cast(v, to=7)
    tokens = b.const(np.arange(int(cfg["num_tokens"]), dtype=np.int64))
    hot = b.Cast(b.Equal(b.Unsqueeze(ids, b.const(np.asarray([-1], np.int64))), tokens), to=1)
    axis = b.const(np.asarray([1], np.int64))
    y = b.ReduceSum(hot, axis, keepdims=0) if mode == "count" else \
        b.ReduceMax(hot, axis, keepdims=0)
    return KTensor(y, 2, LAST)


def _check_lookup(cfg: Mapping[str, Any]) -> list[str]:
    """IntegerLookup variants converted: an int vocabulary in the config, ``int`` output."""
    out = _discretization_dtype(cfg)  # tf.keras stores the int64 output dtype too
    vocab = cfg.get("vocabulary")
    if not isinstance(vocab, list) or not all(isinstance(v, int) for v in vocab):
        out.append(f"vocabulary={show(vocab)} (an int list in the config is needed: an "
                   "adapted or file vocabulary is not read)")
    mode = cfg.get("output_mode", "int")
    if mode not in ("int", "one_hot", "multi_hot", "count"):
        out.append(f"output_mode={show(mode)}")
    elif mode != "int" and cfg.get("mask_token") is not None:
        out.append(f"mask_token={show(cfg.get('mask_token'))} with output_mode={mode!r}")
    if int(cfg.get("num_oov_indices", 1)) < 1 and not cfg.get("invert"):
        out.append("num_oov_indices=0 (Keras raises on an out-of-vocabulary input)")
    if int(cfg.get("num_oov_indices", 1)) > 1 and cfg.get("oov_method", "floormod") != \
            "floormod":
        out.append(f"oov_method={show(cfg.get('oov_method'))}")
    return out


def _int64(b: GraphBuilder, x: KTensor) -> Any:
    v = last(b, x)
    return v if x.dtype == "int64" else b.Cast(v, to=7)


@LAYERS.register("IntegerLookup", check=replace(make_spec(
    reads=("vocabulary", "num_oov_indices", "oov_token", "mask_token", "invert",
           "output_mode", "oov_method", "max_tokens", "pad_to_max_tokens"),
    inert=("vocabulary_size", "salt",
           "vocabulary_dtype",  # ids compared as int64 either way
           "idf_weights"),  # tf_idf output only, which is refused
    defaults={"sparse": False}, check=_check_lookup), policy=False))
def integer_lookup(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                   xs: list[KTensor]) -> KTensor:
    """IntegerLookup: token -> index, or index -> token (invert).

    Indices are ``[mask_token?] + [OOV] * num_oov_indices + vocabulary``: a token found
    in the vocabulary maps to its position there plus that offset, the mask token to 0,
    any other token to an OOV index (``token mod num_oov_indices`` past the mask).
    ``one_hot``/``multi_hot``/``count`` encode those indices over the vocabulary size
    (``max_tokens`` with ``pad_to_max_tokens``), as int64 like Keras.

    Args:
        b: the graph builder.
        cfg: the layer config.
        w: no weights.
        xs: integer ids.

    Returns:
        int64 indices (or tokens), same shape as the input.

    Raises:
        LayerUnsupported: a non-integer input.
    """
    x = xs[0]
    if not x.dtype.startswith(("int", "uint")):
        raise LayerUnsupported(f"a {x.dtype} input (integer ids expected)")
    vocab = np.asarray(cfg["vocabulary"], np.int64)
    mask, n_oov = cfg.get("mask_token"), int(cfg.get("num_oov_indices", 1))
    start = 0 if mask is None else 1
    v = _int64(b, x)
    if cfg.get("invert"):
        oov = int(cfg.get("oov_token", -1))
        table = np.asarray([oov if mask is None else int(mask)] * start + [oov] * n_oov +
                           list(vocab), np.int64)
        inside = b.And(b.Not(b.Less(v, b.const(np.asarray(0, np.int64)))),
                       b.Less(v, b.const(np.asarray(table.size, np.int64))))
        safe = b.Where(inside, v, b.const(np.asarray(0, np.int64)))
        y = b.Where(inside, b.Gather(b.const(table), safe), b.const(np.asarray(oov, np.int64)))
        return KTensor(y, x.rank, LAST, "int64")
    axis = b.const(np.asarray([-1], np.int64))
    hit = b.Equal(b.Unsqueeze(v, axis), b.const(vocab))
    index = b.const(np.arange(vocab.size, dtype=np.int64) + start + n_oov)
    found = b.ReduceSum(b.Where(hit, index, b.const(np.asarray(0, np.int64))), axis,
                        keepdims=0)
    oov_index = b.const(np.asarray(start, np.int64))
    if n_oov > 1:
        oov_index = b.Add(b.Mod(v, b.const(np.asarray(n_oov, np.int64))), oov_index)
    any_hit = b.Greater(found, b.const(np.asarray(0, np.int64)))
    y = b.Where(any_hit, found, oov_index)
    if mask is not None:
        y = b.Where(b.Equal(v, b.const(np.asarray(int(mask), np.int64))),
                    b.const(np.asarray(0, np.int64)), y)
    mode = cfg.get("output_mode", "int")
    if mode == "int":
        return KTensor(y, x.rank, LAST, "int64")
    depth = int(cfg["max_tokens"]) if cfg.get("pad_to_max_tokens") else vocab.size + n_oov
    encoded = category_encoding(b, {"num_tokens": depth, "output_mode": mode}, w,
                                [KTensor(y, x.rank, LAST, "int64")])
    assert isinstance(encoded, KTensor)  # category_encoding returns one tensor
    return encoded.like(b.Cast(encoded.value, to=7), dtype="int64")
