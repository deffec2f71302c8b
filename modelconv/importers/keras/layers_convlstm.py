"""ConvLSTM1D/2D/3D: the convolutional LSTM, unrolled over its (static) time steps.

Keras' cell, per step: ``z = conv(x_t, kernel) + bias + conv_same(h, recurrent_kernel)``
split into gates i, f, c, o along the channels; ``c = f * c + i * act(z_c)``,
``h = o * act(c)`` with ``i, f, o = recurrent_act(z_i, z_f, z_o)``; states start at zero.
The input convolution runs once for all steps (batch and time merged), the recurrent one
once per step; the time steps must be known when converting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelconv.importers.keras.common import (
    ACTIVATIONS,
    WEIGHT_OPTIONS,
    KTensor,
    LayerUnsupported,
    activation_name,
    as_tuple,
    keras_layer,
    major_of,
    padding_attrs,
)
from modelconv.importers.keras.tensors import FIRST, last, weight
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

_I64 = np.int64


def _check_convlstm(cfg: Mapping[str, Any]) -> list[str]:
    out = []
    for key in ("activation", "recurrent_activation"):
        if key in cfg and activation_name(cfg[key]) not in (None, *ACTIVATIONS):
            out.append(f"{key}={activation_name(cfg[key])!r}")
    if cfg.get("padding", "valid") not in ("valid", "same"):
        out.append(f"padding={cfg.get('padding')!r}")
    return out


def _act(b: GraphBuilder, v: Any, spec: Any, major: int) -> Any:
    name = activation_name(spec)
    return v if name is None else ACTIVATIONS[name](b, v, 1, major)


def _i64(values: list[int]) -> np.ndarray:
    return np.asarray(values, _I64)


def _convlstm(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor],
              n: int) -> list[KTensor]:
    from modelconv.importers.keras.shapes import static_dims

    x = xs[0]
    if x.rank != n + 3:
        raise LayerUnsupported(f"a rank-{x.rank} input (expected N, T, {n} spatial, C)")
    steps = static_dims(b, x, [1], "ConvLSTM")[0]
    filters, major = int(cfg["filters"]), major_of(cfg)
    ks = as_tuple(cfg["kernel_size"], n)
    strides = as_tuple(cfg.get("strides", 1), n)
    dilation = as_tuple(cfg.get("dilation_rate", 1), n)
    kernel = w.get(0, [*ks, None, 4 * filters])
    rec = w.get(1, [*ks, filters, 4 * filters])
    perm = [n + 1, n, *range(n)]
    kern = weight(b, np.ascontiguousarray(np.transpose(kernel, perm)), "kernel")
    rkern = weight(b, np.ascontiguousarray(np.transpose(rec, perm)), "recurrent_kernel")
    bias = weight(b, w.get(2, [4 * filters]), "bias") if cfg.get("use_bias", True) else None
    # (N, T, S..., C) -> (N*T, C, S...) -> one Conv for every step -> (N, T, 4F, S'...)
    v = b.Transpose(last(b, x), perm=[0, 1, n + 2, *range(2, n + 2)])
    merged = b.Reshape(v, b.Concat(b.const(_i64([-1])), b.Shape(v, start=2), axis=0))
    attrs = {"strides": list(strides), "dilations": list(dilation),
             **padding_attrs(cfg.get("padding", "valid"), ks, strides, dilation)}
    z_all = b.Conv(merged, kern, bias, **attrs)
    z_all = b.Reshape(z_all, b.Concat(b.Shape(v, end=2), b.Shape(z_all, start=1), axis=0))
    rec_attrs = padding_attrs("same", ks, (1,) * n, (1,) * n)
    act, ract = cfg.get("activation", "tanh"), cfg.get("recurrent_activation", "sigmoid")
    order = range(steps - 1, -1, -1) if cfg.get("go_backwards") else range(steps)
    h = c = None
    outs = []
    for t in order:
        z = b.Gather(z_all, b.const(np.asarray(t, _I64)), axis=1)  # (N, 4F, S'...)
        if h is not None:
            z = b.Add(z, b.Conv(h, rkern, None, strides=[1] * n, **rec_attrs))
        zi, zf, zc, zo = b.op("Split", [z, b.const(_i64([filters] * 4))], axis=1,
                              num_outputs=4)
        cand = b.Mul(_act(b, zi, ract, major), _act(b, zc, act, major))
        c = cand if c is None else b.Add(b.Mul(_act(b, zf, ract, major), c), cand)
        h = b.Mul(_act(b, zo, ract, major), _act(b, c, act, major))
        outs.append(h)
    assert h is not None and c is not None  # steps >= 1: static_dims found the time axis
    if cfg.get("return_sequences"):
        axis = b.const(_i64([2]))
        seq = [b.Unsqueeze(o, axis) for o in outs]
        main = KTensor(seq[0] if len(seq) == 1 else b.Concat(*seq, axis=2), x.rank, FIRST)
    else:
        main = KTensor(h, x.rank - 1, FIRST)
    if not cfg.get("return_state"):
        return [main]
    return [main, KTensor(h, x.rank - 1, FIRST), KTensor(c, x.rank - 1, FIRST)]


def _register(n: int) -> None:
    def handler(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> list[KTensor]:
        return _convlstm(b, cfg, w, xs, n)

    handler.__doc__ = (f"ConvLSTM{n}D -> one Conv over all steps, then per step a "
                       "recurrent Conv and the LSTM gates (static time steps).")
    handler.__name__ = f"conv_lstm{n}d"
    keras_layer(f"ConvLSTM{n}D",
                reads=("filters", "kernel_size", "strides", "padding", "dilation_rate",
                       "activation", "recurrent_activation", "use_bias", "return_sequences",
                       "return_state", "go_backwards"),
                inert=(*WEIGHT_OPTIONS, "recurrent_initializer", "recurrent_regularizer",
                       "recurrent_constraint", "unit_forget_bias", "dropout",
                       "recurrent_dropout", "seed", "unroll",
                       "zero_output_for_mask"),  # masks are refused
                defaults={"stateful": False, "time_major": False,
                          "data_format": "channels_last"},
                check=_check_convlstm)(handler)


for _n in (1, 2, 3):
    _register(_n)
