"""Per-layer table: tiny Keras 3 models (torch backend) -> .keras/.h5 -> IR -> onnxruntime,
compared against Keras' own outputs."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from collections.abc import Callable
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
    "model_sequence": lambda: _sequence_model(),
    "model_unet": lambda: _unet(),
    "augment_identity": lambda: _seq(IMG, *(getattr(L, n)(*a) for n, a in AUGMENT),
                                     L.Conv2D(2, 1)),
    "random_geometric_identity": lambda: _seq(IMG, L.RandomFlip(), L.RandomRotation(0.2),
                                              L.RandomZoom(0.2), L.RandomTranslation(0.1, 0.1),
                                              L.RandomContrast(0.3), L.RandomBrightness(0.2)),
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
ACTS = ["relu", "relu6", "gelu", "swish", "silu", "hard_swish", "hard_sigmoid", "sigmoid",
        "tanh", "softmax", "elu", "selu", "softplus", "softsign", "leaky_relu", "mish",
        "exponential", "log_softmax"]
for _act in ACTS:
    CASES[f"act_{_act}"] = (lambda a: lambda: _seq((7,), L.Activation(a)))(_act)
CASES["dense_gelu"] = lambda: _seq((7,), L.Dense(3, activation="gelu"))


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


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_keras_format(name: str, tmp_path: Any) -> None:
    model = CASES[name]()
    randomize(model)
    convert_and_compare(model, str(tmp_path / "m.keras"), make_feeds(model))


H5_CASES = ["conv2d_same_relu", "depthwise", "separable", "batchnorm_img", "lstm_seq",
            "gru_reset_after", "bidir_lstm_concat", "mha_self", "prelu_img", "embedding",
            "conv2d_transpose_same", "normalization", "layernorm", "group_norm_img",
            "rms_norm", "attention_concat", "additive_attention", "conv3d", "upsampling3d",
            "depthwise1d", "separable1d", "identity",
            "time_distributed_dense", "time_distributed_conv", "model_sequence",
            "model_unet"]


@pytest.mark.parametrize("name", H5_CASES)
def test_layer_h5_format(name: str, tmp_path: Any) -> None:
    model = CASES[name]()
    randomize(model)
    convert_and_compare(model, str(tmp_path / "m.h5"), make_feeds(model))


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


#: table rows also converted to TFLite and run in LiteRT (isolated worker)
TFLITE_CASES = ["conv2d_same_relu", "dense", "identity", "repeat_vector", "unit_norm",
                "unit_norm_img", "group_norm_img", "group_norm_seq", "rms_norm",
                "cropping3d", "zeropad3d", "upsampling1d", "upsampling3d", "conv3d",
                "conv3d_transpose_same", "pool_max3d", "pool_avg3d", "gap3d", "gmp3d",
                "depthwise1d", "separable1d",
                "attention_dot", "attention_scaled_key", "attention_concat",
                "additive_attention", "additive_attention_noscale", "augment_identity",
                "random_geometric_identity", "noise_identity", "time_distributed_dense",
                "time_distributed_conv", "time_distributed_flatten", "discretization",
                "category_multi_hot", "category_count", "category_one_hot",
                "model_sequence", "model_unet"]
#: rows the TFLite exporter refuses (cleanly, with UnsupportedOpsError), and why
TFLITE_REFUSED: dict[str, str] = {
    "conv3d": "no CONV_3D lowering",
    "conv3d_transpose_same": "no CONV_3D_TRANSPOSE lowering",
}


@pytest.fixture(scope="module")
def litert() -> Any:
    pytest.importorskip("ai_edge_litert")
    from tests.litert_isolated import IsolatedLiteRT

    worker = IsolatedLiteRT()
    yield worker
    worker.close()


@pytest.mark.parametrize("name", TFLITE_CASES)
def test_layer_to_tflite(name: str, tmp_path: Any, litert: Any) -> None:
    from modelconv.api import convert
    from modelconv.errors import UnsupportedOpsError

    model = CASES[name]()
    randomize(model)
    feeds = make_feeds(model, batch=1)  # the TFLite export fixes a free batch to 1
    model.save(str(tmp_path / "m.keras"))
    ref = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    refs = [keras.ops.convert_to_numpy(r) for r in (ref if isinstance(ref, list | tuple)
                                                   else [ref])]
    dst = tmp_path / "m.tflite"
    if name in TFLITE_REFUSED:
        with pytest.raises(UnsupportedOpsError):
            convert(str(tmp_path / "m.keras"), str(dst), verify=False)
        return
    convert(str(tmp_path / "m.keras"), str(dst), verify=False)
    ir_names = [t.name for t in import_keras(str(tmp_path / "m.keras"),
                                             ConvertOptions()).model.graph.inputs]
    out = litert.run(dst.read_bytes(), dict(zip(ir_names, feeds, strict=True)))
    assert out.status == "ok", out.message
    for got, want in zip(out.outputs, refs, strict=True):
        assert got.shape == want.shape
        tol = 1e-4 * max(float(np.abs(want).max()), 1.0)
        np.testing.assert_allclose(got, want, atol=tol, rtol=0)
