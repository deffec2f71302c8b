"""Core layers: Dense, Embedding, Activation, inference no-ops, LayerScale."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import (
    WEIGHT_OPTIONS,
    KTensor,
    apply_activation,
    keras_layer,
    major_of,
    per_channel,
)
from modelconv.importers.keras.tensors import LAST, last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

#: LoRA and quantization change what the stored weights mean
_ADAPTED = {"lora_rank": None, "lora_alpha": None, "quantization_config": None}


@keras_layer("Dense", reads=("units", "activation", "use_bias"), inert=WEIGHT_OPTIONS,
             defaults=_ADAPTED)
def dense(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Dense -> MatMul (+ Add) on the last (channels) axis."""
    x = xs[0]
    kernel = w.get(0, [None, cfg["units"]])
    y = b.MatMul(last(b, x), weight(b, kernel, "kernel"))
    if cfg.get("use_bias", True):
        y = b.Add(y, weight(b, w.get(1, [cfg["units"]]), "bias"))
    return apply_activation(b, KTensor(y, x.rank, LAST), cfg.get("activation"), major_of(cfg))


@keras_layer("Embedding", reads=("input_dim", "output_dim", "mask_zero"),  # mask: masking.py
             inert=("embeddings_initializer", "embeddings_regularizer", "activity_regularizer",
                    "embeddings_constraint", "input_length"),
             defaults=_ADAPTED)
def embedding(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
              xs: list[KTensor]) -> KTensor:
    """Embedding -> Gather (float ids are cast to int64)."""
    x = xs[0]
    table = w.get(0, [cfg["input_dim"], cfg["output_dim"]])
    ids = x.value if x.dtype.startswith("int") else b.Cast(x.value, to=7)
    return KTensor(b.Gather(weight(b, table, "embeddings"), ids), x.rank + 1, LAST)


@keras_layer("Activation", reads=("activation",))
def activation(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
               xs: list[KTensor]) -> KTensor:
    """Activation layer."""
    return apply_activation(b, xs[0], cfg.get("activation"), major_of(cfg))


@keras_layer("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
             "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
             "StochasticDepth", "Identity", "RandomFlip", "RandomRotation", "RandomZoom",
             "RandomTranslation", "RandomContrast", "RandomBrightness",
             inert=("rate", "seed", "noise_shape", "stddev", "l1", "l2", "drop_path_rate",
                    "data_format", "mode", "factor", "value_range", "fill_mode", "fill_value",
                    "interpolation", "height_factor", "width_factor", "rng_type"))
def inference_noop(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                   xs: list[KTensor]) -> KTensor:
    """Training-only layers are the identity at inference."""
    return xs[0]


@keras_layer("LayerScale", reads=("projection_dim",), inert=("init_values",))
def layer_scale(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
    """ConvNeXt LayerScale: multiply by a learned per-channel gamma."""
    x = xs[0]
    gamma = w.get(0, [cfg.get("projection_dim")])
    return x.like(b.Mul(x.value, per_channel(b, x, np.asarray(gamma), "gamma")))
