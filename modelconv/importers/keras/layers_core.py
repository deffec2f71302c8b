"""Core layers: Dense, Embedding, Activation, inference no-ops, LayerScale."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.importers.keras.common import (
    WEIGHT_OPTIONS,
    KTensor,
    LayerUnsupported,
    apply_activation,
    keras_layer,
    major_of,
    per_channel,
)
from modelconv.importers.keras.spec import show
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


@keras_layer("Embedding", reads=("input_dim", "output_dim"),
             inert=("embeddings_initializer", "embeddings_regularizer", "activity_regularizer",
                    "embeddings_constraint", "input_length"),
             defaults={"mask_zero": False, **_ADAPTED})
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


def _einsum_specs(equation: Any, rank: int) -> tuple[list[str], str, list[str]]:
    """(input labels, kernel labels, output labels) of an EinsumDense equation, an
    ellipsis expanded into labels ``0``, ``1``, ... of the input's elided dims."""
    match = re.fullmatch(r"([a-zA-Z.]+),([a-zA-Z]+)->([a-zA-Z.]+)", str(equation))
    if match is None:
        raise LayerUnsupported(f"equation={equation!r}")
    src, kernel, dst = match.groups()
    elided = [str(i) for i in range(rank - len(src.replace("...", "")))]
    if ("..." not in src and elided) or rank < len(src.replace("...", "")):
        raise LayerUnsupported(f"equation={equation!r} for a rank-{rank} input")

    def expand(spec: str) -> list[str]:
        if spec.count("...") > 1 or spec.replace("...", "").count("."):
            raise LayerUnsupported(f"equation={equation!r}")
        head, _, tail = spec.partition("...")
        return [*head, *(elided if "..." in spec else []), *tail]

    ins, outs = expand(src), expand(dst)
    if len(set(ins)) != len(ins) or len(set(kernel)) != len(kernel) or \
            len(set(outs)) != len(outs):
        raise LayerUnsupported(f"equation={equation!r} (a repeated label)")
    return ins, kernel, outs


def _transposed(b: GraphBuilder, v: ir.Value, have: list[str], want: list[str]) -> ir.Value:
    perm = [have.index(label) for label in want]
    return v if perm == sorted(perm) else b.Transpose(v, perm=perm)


@keras_layer("EinsumDense", reads=("equation", "output_shape", "bias_axes", "activation"),
             inert=WEIGHT_OPTIONS, defaults=_ADAPTED)
def einsum_dense(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                 xs: list[KTensor]) -> KTensor:
    """EinsumDense -> Transpose/Reshape + one MatMul with the rearranged kernel.

    The input's labels shared with the kernel and absent from the output are contracted;
    the input's other labels and the kernel's own labels make the output, in the
    equation's output order. The bias (shaped by Keras to broadcast against the output)
    is added as stored.

    Args:
        b: the graph builder.
        cfg: the layer config (``equation``, ``bias_axes``, ``activation``).
        w: kernel [, bias].
        xs: the input, channels-last.

    Returns:
        The output, channels-last.

    Raises:
        LayerUnsupported: an equation with batch labels (in input, kernel and output),
            an input label summed away, or repeated labels.
    """
    x = xs[0]
    ins, klabels, outs = _einsum_specs(cfg["equation"], x.rank)
    kernel = w.get(0)
    if kernel.ndim != len(klabels):
        raise LayerUnsupported(f"equation={cfg['equation']!r} with a rank-{kernel.ndim} kernel")
    contract = [c for c in klabels if c in ins and c not in outs]
    free_x = [c for c in ins if c not in klabels]
    free_k = [c for c in klabels if c not in ins]
    if any(c in ins and c in outs for c in klabels) or any(c not in outs for c in free_x) \
            or sorted([*free_x, *free_k]) != sorted(outs):
        raise LayerUnsupported(f"equation={cfg['equation']!r} (only contractions of input "
                               "labels with the kernel are supported)")
    size = dict(zip(klabels, kernel.shape, strict=True))
    k = int(np.prod([size[c] for c in contract], dtype=np.int64))
    kmat = np.transpose(kernel, [klabels.index(c) for c in [*contract, *free_k]])
    kmat = np.ascontiguousarray(kmat.reshape(k, -1), dtype=np.float32)
    v = _transposed(b, last(b, x), ins, [*free_x, *contract])
    if len(contract) != 1:
        v = b.Reshape(v, b.const(np.asarray([0] * len(free_x) + [k], np.int64)))
    y = b.MatMul(v, weight(b, kmat, "kernel"))
    if len(free_k) != 1:
        y = b.Reshape(y, b.const(np.asarray([0] * len(free_x) + [size[c] for c in free_k],
                                            np.int64)))
    y = _transposed(b, y, [*free_x, *free_k], outs)
    if cfg.get("bias_axes"):
        y = b.Add(y, weight(b, w.get(1), "bias"))
    return apply_activation(b, KTensor(y, len(outs), LAST), cfg.get("activation"),
                            major_of(cfg))


def _check_reversible(cfg: Mapping[str, Any]) -> list[str]:
    dtype = cfg.get("reverse_dtype")
    return [] if dtype in (None, "float32") else [f"reverse_dtype={show(dtype)}"]


@keras_layer("ReversibleEmbedding",
             reads=("input_dim", "output_dim", "tie_weights", "logit_soft_cap",
                    "reverse_dtype"),
             inert=("embeddings_initializer", "embeddings_regularizer", "activity_regularizer",
                    "embeddings_constraint"),
             defaults={"mask_zero": False, **_ADAPTED}, call_kwargs=("reverse",),
             check=_check_reversible)
def reversible_embedding(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                         xs: list[KTensor]) -> KTensor | list[KTensor]:
    """ReversibleEmbedding: a Gather, or with ``reverse=True`` the logits
    ``x @ embeddings.T`` (or the untied ``reverse_embeddings``), soft-capped as Keras does.

    Args:
        b: the graph builder.
        cfg: the layer config and the call's ``reverse``.
        w: embeddings [, reverse_embeddings].
        xs: token ids, or hidden states for ``reverse=True``.

    Returns:
        The embeddings, or the logits.
    """
    if not cfg.get("_call_kwargs", {}).get("reverse"):
        return embedding(b, cfg, w, xs)
    x = xs[0]
    dims = [cfg["input_dim"], cfg["output_dim"]]
    kernel = w.get(0, dims).T if cfg.get("tie_weights", True) else w.get(1, dims[::-1])
    y = b.MatMul(last(b, x), weight(b, np.ascontiguousarray(kernel), "reverse"))
    cap = cfg.get("logit_soft_cap")
    if cap is not None:
        c = b.const(np.float32(cap))
        y = b.Mul(b.Tanh(b.Div(y, c)), c)
    return KTensor(y, x.rank, LAST)
