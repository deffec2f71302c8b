"""Per-layer table: tiny Keras 3 models (torch backend) -> .keras/.h5 -> IR -> onnxruntime,
compared against Keras' own outputs."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import onnx_ir as ir  # noqa: E402

from modelconv.importers.keras import import_keras  # noqa: E402
from modelconv.options import ConvertOptions  # noqa: E402
from modelconv.verification.runners import OnnxRuntimeRunner  # noqa: E402

L = keras.layers


def _seq(shape: tuple[int, ...], *layers: Any, dtype: str = "float32") -> Any:
    inp = keras.Input(shape, dtype=dtype)
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x)


def _branches(shape: tuple[int, ...], *layers: Any) -> Any:
    """One input, one output per layer (several layers checked by one saved model)."""
    inp = keras.Input(shape)
    return keras.Model(inp, [layer(inp) for layer in layers])


def _branches_int(shape: tuple[int, ...], *layers: Any) -> Any:
    """``_branches`` with an int32 input (token ids)."""
    inp = keras.Input(shape, dtype="int32")
    return keras.Model(inp, [layer(inp) for layer in layers])


def _two(shape: tuple[int, ...], layer: Any, pre: Any = None) -> Any:
    a, c = keras.Input(shape), keras.Input(shape)
    a2 = pre(a) if pre is not None else a
    return keras.Model([a, c], layer([a2, c]))


IMG = (8, 8, 3)
SEQ = (6, 5)
VOL = (4, 5, 6, 2)


def _three(layer: Any) -> Any:
    q, v, k = keras.Input(SEQ), keras.Input((4, 5)), keras.Input((4, 5))
    return keras.Model([q, v, k], layer([q, v, k]))
CASES: dict[str, Callable[[], Any]] = {
    "conv2d_same_relu": lambda: _seq(IMG, L.Conv2D(4, 3, padding="same", activation="relu")),
    "conv2d_stride2_same": lambda: _seq(IMG, L.Conv2D(4, 3, strides=2, padding="same")),
    "conv2d_valid_dil": lambda: _seq(IMG, L.Conv2D(4, 3, dilation_rate=2, use_bias=False)),
    "conv2d_groups": lambda: _seq((8, 8, 4), L.Conv2D(6, 3, groups=2, padding="same")),
    "conv1d": lambda: _seq(SEQ, L.Conv1D(4, 3, padding="same")),
    "conv1d_causal": lambda: _seq(SEQ, L.Conv1D(4, 3, padding="causal", dilation_rate=2)),
    "depthwise": lambda: _seq(IMG, L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")),
    "depthwise_s2": lambda: _seq(IMG, L.DepthwiseConv2D(3, strides=2, padding="same")),
    "separable": lambda: _seq(IMG, L.SeparableConv2D(5, 3, padding="same", activation="elu")),
    "conv2d_transpose_same": lambda: _seq(IMG, L.Conv2DTranspose(4, 3, strides=2,
                                                                 padding="same")),
    "conv2d_transpose_valid": lambda: _seq(IMG, L.Conv2DTranspose(4, 3, strides=2)),
    "dense": lambda: _seq((7,), L.Dense(5, activation="tanh")),
    "dense_rank3": lambda: _seq(SEQ, L.Dense(4)),
    "dense_on_image": lambda: _seq(IMG, L.Conv2D(4, 1), L.Dense(3)),
    "batchnorm_img": lambda: _seq(IMG, L.Conv2D(4, 1), L.BatchNormalization()),
    "batchnorm_vec": lambda: _seq((7,), L.BatchNormalization(center=False)),
    "layernorm": lambda: _seq(SEQ, L.LayerNormalization()),
    "layernorm_img": lambda: _seq(IMG, L.Conv2D(4, 1), L.LayerNormalization(epsilon=1e-6)),
    "relu6_max": lambda: _seq((7,), L.ReLU(max_value=6.0)),
    "relu_params": lambda: _seq((7,), L.ReLU(max_value=2.0, negative_slope=0.1,
                                             threshold=0.3)),
    "leaky": lambda: _seq((7,), L.LeakyReLU(negative_slope=0.2)),
    "prelu_img": lambda: _seq(IMG, L.Conv2D(4, 1), L.PReLU(shared_axes=[1, 2])),
    "prelu_full": lambda: _seq(SEQ, L.PReLU()),
    "elu_layer": lambda: _seq((7,), L.ELU(alpha=0.5)),
    "softmax_layer": lambda: _seq(SEQ, L.Softmax(axis=1)),
    "pool_max2d": lambda: _seq(IMG, L.MaxPooling2D(2)),
    "pool_max2d_same": lambda: _seq((7, 7, 3), L.MaxPooling2D(3, strides=2, padding="same")),
    "pool_avg2d_same": lambda: _seq((7, 7, 3), L.AveragePooling2D(3, strides=2,
                                                                  padding="same")),
    "pool_max1d": lambda: _seq(SEQ, L.MaxPooling1D(2)),
    "pool_avg1d": lambda: _seq(SEQ, L.AveragePooling1D(2)),
    "gap2d": lambda: _seq(IMG, L.Conv2D(4, 1), L.GlobalAveragePooling2D()),
    "gap2d_keepdims": lambda: _seq(IMG, L.Conv2D(4, 1), L.GlobalAveragePooling2D(
        keepdims=True)),
    "gmp2d": lambda: _seq(IMG, L.GlobalMaxPooling2D()),
    "gap1d": lambda: _seq(SEQ, L.GlobalAveragePooling1D()),
    "gmp1d": lambda: _seq(SEQ, L.GlobalMaxPooling1D()),
    "zeropad2d": lambda: _seq(IMG, L.Conv2D(4, 1), L.ZeroPadding2D(((1, 2), (0, 1)))),
    "zeropad1d": lambda: _seq(SEQ, L.ZeroPadding1D(2)),
    "cropping2d": lambda: _seq(IMG, L.Conv2D(4, 1), L.Cropping2D(((1, 0), (2, 1)))),
    "cropping1d": lambda: _seq(SEQ, L.Cropping1D((1, 2))),
    "add": lambda: _two(IMG, L.Add(), L.Conv2D(3, 1)),
    "subtract": lambda: _two((7,), L.Subtract()),
    "multiply": lambda: _two(IMG, L.Multiply(), L.Conv2D(3, 1)),
    "average": lambda: _two((7,), L.Average()),
    "maximum": lambda: _two((7,), L.Maximum()),
    "minimum": lambda: _two((7,), L.Minimum()),
    "concat_channels": lambda: _two(IMG, L.Concatenate(), L.Conv2D(3, 1)),
    "concat_axis1": lambda: _two(IMG, L.Concatenate(axis=1), L.Conv2D(3, 1)),
    "reshape": lambda: _seq(IMG, L.Conv2D(4, 1), L.Reshape((16, 16))),
    "flatten_dense": lambda: _seq(IMG, L.Conv2D(4, 3), L.Flatten(), L.Dense(3)),
    "permute": lambda: _seq(SEQ, L.Permute((2, 1))),
    "repeat_vector": lambda: _seq((7,), L.RepeatVector(3)),
    "dropout_noise": lambda: _seq((7,), L.Dropout(0.5), L.GaussianNoise(1.0),
                                  L.ActivityRegularization(0.1), L.Dense(2)),
    "spatial_dropout": lambda: _seq(IMG, L.SpatialDropout2D(0.3), L.Conv2D(2, 1)),
    "rescaling": lambda: _seq(IMG, L.Rescaling(1 / 127.5, offset=-1.0), L.Conv2D(2, 1)),
    "normalization": lambda: _seq(IMG, L.Normalization(mean=[0.1, 0.2, 0.3],
                                                       variance=[1.0, 2.0, 4.0])),
    "upsampling_nearest": lambda: _seq(IMG, L.Conv2D(2, 1), L.UpSampling2D(2)),
    "upsampling_bilinear": lambda: _seq(IMG, L.UpSampling2D((2, 3),
                                                            interpolation="bilinear")),
    "resizing": lambda: _seq(IMG, L.Resizing(5, 11)),
    "embedding": lambda: _seq((5,), L.Embedding(20, 4), dtype="int32"),
    "lstm_seq": lambda: _seq(SEQ, L.LSTM(4, return_sequences=True)),
    "lstm_last": lambda: _seq(SEQ, L.LSTM(3)),
    "lstm_backwards": lambda: _seq(SEQ, L.LSTM(3, go_backwards=True, return_sequences=True)),
    "gru_reset_after": lambda: _seq(SEQ, L.GRU(4, return_sequences=True)),
    "gru_reset_before": lambda: _seq(SEQ, L.GRU(4, reset_after=False)),
    "simple_rnn": lambda: _seq(SEQ, L.SimpleRNN(4, return_sequences=True)),
    "bidir_lstm_concat": lambda: _seq(SEQ, L.Bidirectional(L.LSTM(3, return_sequences=True))),
    "bidir_gru_sum": lambda: _seq(SEQ, L.Bidirectional(L.GRU(3), merge_mode="sum")),
    "mha_self": lambda: _mha(),
    "mha_output_shape": lambda: _seq(SEQ, _SelfMHA(L.MultiHeadAttention(2, 3,
                                                                      output_shape=(7,)))),
    "dot": lambda: _two((7,), L.Dot(axes=1)),
    "unit_norm": lambda: _seq((7,), L.UnitNormalization()),
    "unit_norm_img": lambda: _seq(IMG, L.UnitNormalization(axis=[1, 2])),
    "identity": lambda: _seq((7,), L.Identity(), L.Dense(2)),
    "group_norm_img": lambda: _seq((8, 8, 6), L.GroupNormalization(groups=3)),
    "group_norm_seq": lambda: _seq((6, 4), L.GroupNormalization(groups=2, center=False,
                                                                epsilon=1e-5)),
    "group_norm_vec": lambda: _seq((6,), L.GroupNormalization(groups=2)),
    "rms_norm": lambda: _seq(SEQ, L.RMSNormalization()),
    "cropping3d": lambda: _seq(VOL, L.Cropping3D(((1, 0), (0, 1), (1, 1)))),
    "zeropad3d": lambda: _seq(VOL, L.ZeroPadding3D(((1, 0), (0, 2), (1, 1)))),
    "upsampling1d": lambda: _seq(SEQ, L.UpSampling1D(3)),
    "upsampling3d": lambda: _seq(VOL, L.UpSampling3D((1, 2, 3))),
    "conv3d": lambda: _seq(VOL, L.Conv3D(3, 3, padding="same")),
    "conv3d_transpose_same": lambda: _seq(VOL, L.Conv3DTranspose(3, 3, strides=2,
                                                                 padding="same")),
    "conv3d_transpose_valid": lambda: _seq(VOL, L.Conv3DTranspose(2, (2, 3, 1), strides=(1, 2, 1))),
    "pool_max3d": lambda: _seq(VOL, L.MaxPooling3D(2)),
    "pool_avg3d": lambda: _seq(VOL, L.AveragePooling3D(2, strides=1, padding="same")),
    "gap3d": lambda: _seq(VOL, L.GlobalAveragePooling3D()),
    "gmp3d": lambda: _seq(VOL, L.GlobalMaxPooling3D(keepdims=True)),
    "depthwise1d": lambda: _seq(SEQ, L.DepthwiseConv1D(3, depth_multiplier=2,
                                                       padding="same")),
    "separable1d": lambda: _seq(SEQ, L.SeparableConv1D(4, 3, padding="same")),
    "attention_dot": lambda: _two(SEQ, L.Attention()),
    "attention_scaled_key": lambda: _three(L.Attention(use_scale=True)),
    "attention_concat": lambda: _two(SEQ, L.Attention(score_mode="concat", use_scale=True)),
    "additive_attention": lambda: _two(SEQ, L.AdditiveAttention()),
    "additive_attention_noscale": lambda: _three(L.AdditiveAttention(use_scale=False)),
    "time_distributed_dense": lambda: _seq(SEQ, L.TimeDistributed(L.Dense(3, "relu"))),
    "time_distributed_conv": lambda: _seq((3, 6, 6, 2), L.TimeDistributed(
        L.Conv2D(4, 3, padding="same")), L.TimeDistributed(L.MaxPooling2D())),
    "time_distributed_flatten": lambda: _seq((3, 4, 4, 2), L.TimeDistributed(L.Flatten()),
                                             L.LSTM(3)),
    "discretization": lambda: _seq(SEQ, L.Discretization([-0.5, 0.0, 0.7])),
    "category_multi_hot": lambda: _seq((5,), L.CategoryEncoding(20), dtype="int32"),
    "category_count": lambda: _seq((5,), L.CategoryEncoding(20, "count"), dtype="int32"),
    "category_one_hot": lambda: _seq((), L.CategoryEncoding(20, "one_hot"), dtype="int32"),
    "adaptive_pool1d": lambda: _branches((7, 3), L.AdaptiveAveragePooling1D(3),
                                         L.AdaptiveMaxPooling1D(2)),
    "adaptive_pool2d": lambda: _branches((7, 9, 3), L.AdaptiveAveragePooling2D((3, 4)),
                                         L.AdaptiveMaxPooling2D((2, 9))),
    "adaptive_pool3d": lambda: _branches((4, 5, 6, 2), L.AdaptiveAveragePooling3D((2, 2, 3)),
                                         L.AdaptiveMaxPooling3D((3, 5, 2))),
    "center_crop": lambda: _seq((8, 10, 3), L.CenterCrop(5, 6)),
    "center_crop_int": lambda: _seq((8, 10, 3), L.CenterCrop(4, 4), dtype="int32"),
    "center_crop_resize": lambda: _branches((5, 9, 3), L.CenterCrop(8, 6), L.CenterCrop(4, 12),
                                            L.CenterCrop(7, 7)),
    "random_crop_identity": lambda: _seq(IMG, L.RandomCrop(4, 4)),
    "auto_contrast": lambda: _seq(IMG, L.AutoContrast(value_range=(0, 1))),
    "pipeline": lambda: _seq(IMG, L.Pipeline([L.Rescaling(0.5, offset=0.1),
                                              L.CenterCrop(4, 6)])),
    "integer_lookup": lambda: _seq((5,), L.IntegerLookup(vocabulary=[3, 7, 9, 12],
                                                         num_oov_indices=2, mask_token=0),
                                   dtype="int32"),
    "integer_lookup_invert": lambda: _seq((5,), L.IntegerLookup(vocabulary=[3, 7, 9],
                                                                invert=True), dtype="int32"),
    "integer_lookup_encoded": lambda: _branches_int(
        (6,), L.IntegerLookup(vocabulary=[3, 7, 9], output_mode="multi_hot"),
        L.IntegerLookup(vocabulary=[3, 7, 9, 11], output_mode="count", num_oov_indices=2,
                        max_tokens=9, pad_to_max_tokens=True)),
    "integer_lookup_one_hot": lambda: _seq((), L.IntegerLookup(vocabulary=[3, 7, 9],
                                                               output_mode="one_hot"),
                                           dtype="int32"),
    "einsum_dense": lambda: _branches(
        SEQ, L.EinsumDense("abc,cd->abd", (None, 3), bias_axes="d", activation="relu"),
        L.EinsumDense("...b,bc->...c", 4),
        L.EinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de"),
        L.EinsumDense("abc,bcd->ad", 3, bias_axes="d"),
        L.EinsumDense("abc,cd->adb", (3, 6))),
    "reversible_embedding": lambda: _reversible(),
    "spectral_norm": lambda: _branches(IMG, L.SpectralNormalization(L.Conv2D(3, 3)),
                                       L.SpectralNormalization(L.Dense(2, "tanh"))),
    "rnn_cells": lambda: _branches(
        SEQ, L.RNN(L.LSTMCell(3), return_sequences=True), L.RNN(L.GRUCell(2), go_backwards=True)),
    "rnn_simple_cell": lambda: _seq(SEQ, L.RNN(L.SimpleRNNCell(4, activation="relu"))),
    "rnn_stacked": lambda: _seq(SEQ, L.RNN(L.StackedRNNCells(
        [L.LSTMCell(3), L.GRUCell(2, reset_after=False), L.LSTMCell(4)]),
        return_sequences=True, go_backwards=True)),
    "rnn_stacked_states": lambda: _seq(SEQ, _Flat(L.RNN(L.StackedRNNCells(
        [L.GRUCell(3), L.LSTMCell(2), L.LSTMCell(3)]), return_state=True))),
    "group_query_attention": lambda: _gqa(),
    "stft_spectrogram": lambda: _branches(
        (96, 2), L.STFTSpectrogram(frame_length=16, frame_step=8),
        L.STFTSpectrogram("magnitude", 12, 5, 16, padding="same", expand_dims=True),
        L.STFTSpectrogram("psd", 16, 4, window="hamming"), L.STFTSpectrogram("stft", 8, 8)),
    "mel_spectrogram": lambda: _branches(
        (200,), L.MelSpectrogram(fft_length=64, sequence_stride=16, sequence_length=48,
                                 num_mel_bins=10, sampling_rate=8000, max_freq=3000),
        L.MelSpectrogram(fft_length=32, sequence_stride=8, num_mel_bins=6, power_to_db=False,
                         mag_exp=1.0, window="hamming", sampling_rate=4000)),
    "conv_lstm1d": lambda: _seq((3, 7, 2), L.ConvLSTM1D(3, 3, padding="same",
                                                    return_sequences=True)),
    "conv_lstm2d": lambda: _seq((3, 6, 6, 2), _Flat(L.ConvLSTM2D(
        3, 3, strides=2, go_backwards=True, return_state=True,
        recurrent_activation="hard_sigmoid"))),
    "conv_lstm3d": lambda: _seq((2, 4, 4, 3, 2), L.ConvLSTM3D(2, (2, 3, 1), dilation_rate=1,
                                                          use_bias=False)),
    "model_sequence": lambda: _sequence_model(),
    "model_unet": lambda: _unet(),
    "augment_identity": lambda: _seq(IMG, *(getattr(L, n)(*a) for n, a in AUGMENT
                                            if n not in AUGMENT_NO_H5), L.Conv2D(2, 1)),
    "augment_identity_no_h5": lambda: _seq(IMG, *(getattr(L, n)(*a) for n, a in AUGMENT
                                                  if n in AUGMENT_NO_H5),
                                           L.RandomBrightness(0.2), L.Conv2D(2, 1)),
    "random_geometric_identity": lambda: _seq(IMG, L.RandomFlip(), L.RandomRotation(0.2),
                                              L.RandomZoom(0.2), L.RandomTranslation(0.1, 0.1),
                                              L.RandomContrast(0.3)),
    "conv1d_transpose": lambda: _seq(SEQ, L.Conv1DTranspose(4, 3, strides=2, padding="same")),
    "spatial_dropout1d": lambda: _seq(SEQ, L.SpatialDropout1D(0.3), L.Dense(2)),
    # the mask's effect on padded inputs: tests/keras/test_keras_masking.py
    "masking": lambda: _seq(SEQ, L.Masking(0.0), L.LSTM(3, return_sequences=True)),
    "spatial_dropout3d": lambda: _seq(VOL, L.SpatialDropout3D(0.3), L.Dense(2)),
    "convnext_layers": lambda: _seq(SEQ, _convnext("StochasticDepth", 0.2),
                                    _convnext("LayerScale", 0.5, 5)),
    "noise_identity": lambda: _seq(IMG, L.GaussianDropout(0.3), L.AlphaDropout(0.2),
                                   L.SpatialDropout2D(0.2), L.Conv2D(2, 1)),
}
#: Keras 3 augmentation layers (identity at inference) and their required arguments
AUGMENT = [("AugMix", ()), ("CutMix", ()), ("MixUp", ()), ("RandAugment", ()),
           ("RandomColorDegeneration", (0.5,)), ("RandomColorJitter", ()),
           ("RandomElasticTransform", ()), ("RandomErasing", ()), ("RandomGaussianBlur", ()),
           ("RandomGrayscale", ()), ("RandomHue", (0.5,)), ("RandomInvert", ()),
           ("RandomPerspective", ()), ("RandomPosterization", (4,)),
           ("RandomSaturation", (0.5,)), ("RandomSharpness", (0.5,)), ("RandomShear", ()),
           ("Solarization", ())]
#: augmentation layers Keras 3 cannot write to .h5 (its h5 writer pickles their configs)
AUGMENT_NO_H5 = {"RandomColorDegeneration", "RandomPosterization", "RandomSaturation",
                 "RandomSharpness", "Solarization"}
ACTS = ["relu", "relu6", "gelu", "swish", "silu", "hard_swish", "hard_sigmoid", "sigmoid",
        "tanh", "softmax", "elu", "selu", "softplus", "softsign", "leaky_relu", "mish",
        "exponential", "log_softmax"]
for _act in ACTS:
    CASES[f"act_{_act}"] = (lambda a: lambda: _seq((7,), L.Activation(a)))(_act)
CASES["dense_gelu"] = lambda: _seq((7,), L.Dense(3, activation="gelu"))


def _convnext(name: str, *args: Any) -> Any:
    """A layer keras.applications' ConvNeXt defines (not exported by keras.layers)."""
    from keras.src.applications import convnext

    return getattr(convnext, name)(*args)


class _Flat:
    """Calls a layer returning a list and concatenates its outputs (one model output)."""

    def __init__(self, layer: Any):
        self.layer = layer

    def __call__(self, x: Any) -> Any:
        return L.Concatenate()(keras.tree.flatten(self.layer(x)))


class _SelfMHA:
    """Calls a MultiHeadAttention layer as self-attention inside ``_seq``."""

    def __init__(self, layer: Any):
        self.layer = layer

    def __call__(self, x: Any) -> Any:
        return self.layer(x, x)


def _mha() -> Any:
    q = keras.Input(SEQ)
    v = keras.Input((4, 5))
    return keras.Model([q, v], L.MultiHeadAttention(2, 3, value_dim=4)(q, v))


def _gqa() -> Any:
    """Grouped-query attention: self-attention (bias) and cross-attention with a key."""
    q, v, k = keras.Input(SEQ), keras.Input((4, 5)), keras.Input((4, 5))
    self_att = L.GroupQueryAttention(3, 4, 2)(q, q)
    cross = L.GroupQueryAttention(2, 4, 1, use_bias=False)(q, v, k)
    return keras.Model([q, v, k], [self_att, cross])


def _reversible() -> Any:
    """Embedding lookup and its reverse (tied and untied, soft-capped) in one model."""
    inp = keras.Input((5,), dtype="int32")
    tied = L.ReversibleEmbedding(20, 4, logit_soft_cap=3.0)
    untied = L.ReversibleEmbedding(20, 4, tie_weights=False)
    h = tied(inp)
    return keras.Model(inp, [h, tied(h, reverse=True), untied(untied(inp), reverse=True)])


def _sequence_model() -> Any:
    """Issue 16's sequence model: Conv1D + GRU + TimeDistributed + Attention (no masks)."""
    inp = keras.Input((8, 5))
    x = L.Conv1D(6, 3, padding="same", activation="relu")(inp)
    x = L.GRU(6, return_sequences=True)(x)
    x = L.TimeDistributed(L.Dense(6))(x)
    return keras.Model(inp, L.Dense(2)(L.Attention(use_scale=True)([x, x])))


def _unet() -> Any:
    """A small U-Net: GroupNormalization + Conv2DTranspose + bilinear UpSampling2D."""
    inp = keras.Input((8, 8, 3))
    a = L.GroupNormalization(2)(L.Conv2D(4, 3, padding="same", activation="relu")(inp))
    c = L.GroupNormalization(4)(L.Conv2D(8, 3, padding="same")(L.MaxPooling2D()(a)))
    up = L.Conv2DTranspose(4, 3, strides=2, padding="same")(c)
    side = L.UpSampling2D(2, interpolation="bilinear")(L.Conv2D(4, 1)(c))
    return keras.Model(inp, L.Conv2D(2, 1)(L.Concatenate()([a, up, side])))


def randomize(model: Any, seed: int = 0) -> None:
    """Non-trivial weights (variances positive)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        value = rng.normal(0, 0.5, shape).astype("float32")
        if "variance" in w.path:
            value = np.abs(value) + 0.5
        w.assign(value)


def make_feeds(model: Any, seed: int = 1, batch: int = 2) -> list[np.ndarray]:
    """Random inputs for the model (token ids for int inputs)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for t in model.inputs:
        shape = [batch if d is None else d for d in t.shape]
        if "int" in str(t.dtype):
            feeds.append(rng.integers(0, 20, shape).astype("int32"))
        else:
            feeds.append(rng.normal(0, 1, shape).astype("float32"))
    return feeds


def convert_and_compare(model: Any, path: str, feeds: list[np.ndarray]) -> ir.Model:
    """Save, convert, run in ORT and compare with keras."""
    model.save(path)
    ref = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    refs = [keras.ops.convert_to_numpy(r) for r in (ref if isinstance(ref, list | tuple)
                                                   else [ref])]
    sm = import_keras(path, ConvertOptions())
    runner = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    outs = runner.run(feeds)
    assert len(outs) == len(refs)
    for got, want in zip(outs, refs, strict=True):
        assert got.shape == want.shape
        tol = 1e-4 * max(float(np.abs(want).max()), 1.0)
        np.testing.assert_allclose(got, want, atol=tol, rtol=0)
    return sm.model


#: rows Keras 3 itself cannot write to a legacy .h5 file, and why
H5_UNSAVABLE = {"augment_identity_no_h5": "Keras 3's h5 writer fails on these layers' "
                                          "configs (TypeError: cannot pickle 'module' object)"}


@dataclass
class Built:
    """One table row saved once (.keras and Keras 3 .h5) with Keras' own outputs."""

    folder: Path
    feeds: list[np.ndarray]
    refs: list[np.ndarray]
    feeds1: list[np.ndarray]  # batch 1: the TFLite export fixes a free batch to 1
    refs1: list[np.ndarray]


def _reference(model: Any, feeds: list[np.ndarray]) -> list[np.ndarray]:
    ref = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    return [keras.ops.convert_to_numpy(r) for r in (ref if isinstance(ref, list | tuple)
                                                   else [ref])]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """``built(name)``: the row's model built, saved and run by Keras once for every route."""
    root = tmp_path_factory.mktemp("layer_table")
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            model = CASES[name]()
            randomize(model)
            folder = root / name
            folder.mkdir(exist_ok=True)  # a failed build of this row may have made it
            model.save(str(folder / "m.keras"))
            if name not in H5_UNSAVABLE:
                model.save(str(folder / "m.h5"))
            feeds, feeds1 = make_feeds(model), make_feeds(model, batch=1)
            cache[name] = Built(folder, feeds, _reference(model, feeds), feeds1,
                                _reference(model, feeds1))
        return cache[name]

    return get


def _compare(outs: list[np.ndarray], refs: list[np.ndarray]) -> None:
    assert len(outs) == len(refs)
    for got, want in zip(outs, refs, strict=True):
        assert (got.shape, got.dtype) == (want.shape, want.dtype)
        tol = 1e-4 * max(float(np.abs(want).max()), 1.0)
        np.testing.assert_allclose(got, want, atol=tol, rtol=0)


def _onnx_matches(path: Path, feeds: list[np.ndarray], refs: list[np.ndarray]) -> ir.Model:
    sm = import_keras(str(path), ConvertOptions())
    _compare(OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString()).run(feeds), refs)
    return sm.model


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_keras_format(name: str, built: Callable[[str], Built]) -> None:
    row = built(name)
    _onnx_matches(row.folder / "m.keras", row.feeds, row.refs)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_h5_format(name: str, built: Callable[[str], Built]) -> None:
    if name in H5_UNSAVABLE:
        pytest.skip(H5_UNSAVABLE[name])
    row = built(name)
    _onnx_matches(row.folder / "m.h5", row.feeds, row.refs)


def test_cnn_has_no_inner_transposes(tmp_path: Any) -> None:
    model = _seq(IMG, L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.ReLU(6.0),
                 L.DepthwiseConv2D(3, padding="same"), L.MaxPooling2D(),
                 L.Conv2D(4, 1), L.GlobalAveragePooling2D(), L.Dense(3))
    randomize(model)
    ir_model = convert_and_compare(model, str(tmp_path / "m.keras"), make_feeds(model))
    transposes = [n for n in ir_model.graph if n.op_type == "Transpose"]
    assert len(transposes) == 1  # only the NHWC input -> NCHW boundary
    # ReLU(6.0) is one Clip (onnxruntime fuses Conv + Clip; Relu + Min cost MobileNetV2
    # a third of its latency)
    ops = [n.op_type for n in ir_model.graph]
    assert ops.count("Clip") == 1 and "Min" not in ops


#: rows the TFLite exporter refuses (cleanly, with UnsupportedOpsError), and why
TFLITE_REFUSED: dict[str, str] = {}


@pytest.fixture(scope="module")
def litert() -> Any:
    pytest.importorskip("ai_edge_litert")
    from tests.litert_isolated import IsolatedLiteRT

    worker = IsolatedLiteRT()
    yield worker
    worker.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_to_tflite(name: str, built: Callable[[str], Built], litert: Any) -> None:
    from modelconv.api import convert
    from modelconv.errors import UnsupportedOpsError

    row = built(name)
    src, dst = row.folder / "m.keras", row.folder / "m.tflite"
    if name in TFLITE_REFUSED:
        with pytest.raises(UnsupportedOpsError):
            convert(str(src), str(dst), verify=False, overwrite=True)
        return
    convert(str(src), str(dst), verify=False, overwrite=True)
    ir_names = [t.name for t in import_keras(str(src), ConvertOptions()).model.graph.inputs]
    out = litert.run(dst.read_bytes(), dict(zip(ir_names, row.feeds1, strict=True)))
    assert out.status == "ok", out.message
    _compare(out.outputs, row.refs1)


#: registered classes whose every table row is refused by the TFLite exporter
TFLITE_UNLOWERED: set[str] = set()
#: registered classes Keras 3 cannot write to a legacy .h5 file
H5_UNWRITABLE = {*AUGMENT_NO_H5, "RandomBrightness"}


def _classes(tree: Any, found: set[str]) -> set[str]:
    """Every ``class_name`` in a saved model config (wrapped and nested layers too)."""
    if isinstance(tree, dict):
        if isinstance(tree.get("class_name"), str):
            found.add(tree["class_name"])
        for value in tree.values():
            _classes(value, found)
    elif isinstance(tree, list):
        for value in tree:
            _classes(value, found)
    return found


def test_table_covers_every_registered_layer(built: Callable[[str], Built]) -> None:
    """Every class with a handler has a row on each route (the rows are built once for
    the whole module, so this runs last and reads the saved configs)."""
    import json
    import zipfile

    from modelconv.importers.keras.common import LAYERS
    from tests.keras_layer_defaults import ALIASES, KERAS2_ONLY, OPS_ONLY

    wanted = set()
    for name in LAYERS:
        cls = getattr(L, name, None)
        if name in ALIASES or name in KERAS2_ONLY or name in OPS_ONLY or (
                cls is not None and cls.__name__ != name and cls.__name__ in LAYERS):
            continue  # another spelling of a registered class, or not in Keras 3 files
        wanted.add(name)
    rows = {}
    for name in CASES:
        with zipfile.ZipFile(built(name).folder / "m.keras") as z:
            rows[name] = _classes(json.loads(z.read("config.json")), set()) & wanted
    every = set().union(*rows.values())
    h5 = set().union(*(c for n, c in rows.items() if n not in H5_UNSAVABLE))
    tflite = set().union(*(c for n, c in rows.items() if n not in TFLITE_REFUSED))
    assert sorted(wanted - every) == []
    assert sorted(wanted - h5) == sorted(H5_UNWRITABLE)
    assert sorted(wanted - tflite) == sorted(TFLITE_UNLOWERED)
