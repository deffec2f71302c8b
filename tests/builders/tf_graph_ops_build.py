"""Build one small SavedModel per case of the TensorFlow graph-importer op matrix, with
TensorFlow's own outputs as the reference.

Run as a script, in a process of its own (it imports TensorFlow)::

    python tests/builders/tf_graph_ops_build.py OUT_DIR [CASE ...]

Each case is a ``tf.Module`` holding its weights as ``tf.Variable`` s (so they go through
the checkpoint) and one ``tf.function`` with an input signature (batch dimension None),
saved with ``tf.saved_model.save`` as ``serving_default`` in ``OUT_DIR/<case>/``.
``OUT_DIR/<case>.npz`` holds the inputs (``in:<key>``, batch 2, seeded per case) and the
function's outputs (``out:<key>``). A case TensorFlow itself cannot build or run is
recorded in ``OUT_DIR/errors.json`` (case -> message) instead of stopping the others.

The case table is importable without TensorFlow (the test module reads the names and
flags from it): the case bodies only touch the module-level ``tf``, set by :func:`main`.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

tf: Any = None  # TensorFlow, imported by main()

#: input spec: (shape, dtype, how to draw values); None dims: the batch is drawn as
#: BATCH, any other unknown dimension as 11
Spec = tuple[tuple[int | None, ...], str, str]
IMG: Spec = ((None, 9, 9, 3), "float32", "normal")
IMG4: Spec = ((None, 9, 9, 4), "float32", "normal")
VEC: Spec = ((None, 6), "float32", "normal")
POS: Spec = ((None, 6), "float32", "pos")
BATCH = 2


@dataclass
class Case:
    """One SavedModel: its inputs, how to build its function, what the test checks."""

    name: str
    inputs: dict[str, Spec]
    make: Callable[[Callable[..., Any]], Callable[..., Any]]
    #: conv -> element-wise -> pool style: the layout must change at the boundary only
    cnn: bool = False
    #: an op the graph route must refuse, naming it (no handler, or a form its handler
    #: cannot express)
    unsupported: str | None = None


CASES: dict[str, Case] = {}


def case(name: str, *, cnn: bool = False, unsupported: str | None = None,
         **inputs: Spec) -> Callable[[Any], Any]:
    """Register ``make(var) -> fn(*inputs)`` as case ``name`` (``var(*shape)`` makes a
    seeded tf.Variable; ``fn`` returns a tensor, a tuple of tensors or a dict)."""
    def deco(make: Any) -> Any:
        assert name not in CASES, name
        CASES[name] = Case(name, inputs or {"x": IMG}, make, cnn, unsupported)
        return make
    return deco


# ======================================================================================
# helpers used inside case bodies (TensorFlow only at call time)


def conv(v: Callable[..., Any], cin: int = 3, cout: int = 4, k: int = 3,
         padding: str = "SAME") -> Callable[[Any], Any]:
    """A Conv2D with a variable kernel (its output is channels-first in the importer)."""
    w = v(k, k, cin, cout)
    return lambda x: tf.nn.conv2d(x, w, 1, padding)


def const(shape: tuple[int, ...], seed: int = 0, low: float = -1.0,
          high: float = 1.0) -> Any:
    """A float32 constant of ``shape`` (baked into the graph)."""
    rng = np.random.default_rng(seed + 1000)
    return tf.constant(rng.uniform(low, high, shape).astype(np.float32))


# ======================================================================================
# convolutions


@case("conv2d_valid", cnn=True)
def _(v):
    w = v(3, 3, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, 1, "VALID")


@case("conv2d_same_bias_relu", cnn=True)
def _(v):
    w, b = v(3, 3, 3, 5), v(5)
    return lambda x: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b))


@case("conv2d_same_stride2", cnn=True)
def _(v):
    w = v(3, 3, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, 2, "SAME")


@case("conv2d_same_stride2_even_kernel", cnn=True)
def _(v):
    w = v(4, 2, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, [1, 2, 2, 1], "SAME")


@case("conv2d_valid_stride2", cnn=True)
def _(v):
    w = v(3, 3, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, 2, "VALID")


@case("conv2d_strides_1x2", cnn=True)
def _(v):
    w = v(3, 2, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, [1, 1, 2, 1], "SAME")


@case("conv2d_dilation2_same", cnn=True)
def _(v):
    w = v(3, 3, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, 1, "SAME", dilations=2)


@case("conv2d_dilation2_valid", cnn=True)
def _(v):
    w = v(3, 3, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, 1, "VALID", dilations=2)


@case("conv2d_explicit_padding", cnn=True)
def _(v):
    w = v(3, 3, 3, 4)
    return lambda x: tf.nn.conv2d(x, w, 1, [[0, 0], [1, 2], [2, 0], [0, 0]])


@case("conv2d_grouped", cnn=True, x=IMG4)
def _(v):
    w = v(3, 3, 2, 6)  # 4 input channels, kernel takes 2: two groups
    return lambda x: tf.nn.conv2d(x, w, 1, "SAME")


@case("conv2d_grouped_after_ops", cnn=True, x=IMG4)
def _(v):
    w0, w = v(1, 1, 4, 4), v(3, 3, 1, 8)  # depthwise-like: 4 groups of 1 channel
    return lambda x: tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(x, w0, 1, "SAME") + 0.1), w, 2,
                                  "SAME")


@case("conv1d", x=((None, 10, 3), "float32", "normal"))
def _(v):
    w, b = v(3, 3, 4), v(4)  # a channels-first rank-3 result, as Keras Conv1D makes
    return lambda x: tf.nn.relu(tf.nn.bias_add(tf.nn.conv1d(x, w, 1, "SAME"), b)) * 2.0


@case("conv3d", x=((None, 5, 6, 7, 2), "float32", "normal"))
def _(v):
    w = v(3, 3, 2, 2, 4)
    return lambda x: tf.nn.conv3d(x, w, [1, 1, 2, 1, 1], "SAME") + 0.5


@case("depthwise_multiplier2", cnn=True)
def _(v):
    w = v(3, 3, 3, 2)
    return lambda x: tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME")


@case("depthwise_stride2_same", cnn=True)
def _(v):
    w = v(3, 3, 3, 1)
    return lambda x: tf.nn.depthwise_conv2d(x, w, [1, 2, 2, 1], "SAME")


@case("depthwise_explicit_padding", cnn=True)
def _(v):
    w = v(3, 3, 3, 2)
    return lambda x: tf.nn.depthwise_conv2d(x, w, [1, 2, 2, 1],
                                            [[0, 0], [2, 0], [1, 1], [0, 0]])


@case("separable_conv", cnn=True)
def _(v):
    dw, pw = v(3, 3, 3, 2), v(1, 1, 6, 5)
    return lambda x: tf.nn.separable_conv2d(x, dw, pw, [1, 1, 1, 1], "SAME")


def _conv_t(v: Any, out_hw: tuple[int, int], padding: str, dynamic: bool = True) -> Any:
    w = v(3, 3, 5, 3)  # [kh, kw, out, in]

    def fn(x: Any) -> Any:
        batch = tf.shape(x)[0] if dynamic else BATCH
        size = tf.stack([batch, out_hw[0], out_hw[1], 5]) if dynamic else \
            [BATCH, out_hw[0], out_hw[1], 5]
        return tf.nn.conv2d_transpose(x, w, size, 2, padding)
    return fn


@case("conv2d_transpose_same_s2", x=((BATCH, 9, 9, 3), "float32", "normal"))
def _(v):
    return _conv_t(v, (18, 18), "SAME", dynamic=False)


@case("conv2d_transpose_same_s2_odd", x=((BATCH, 9, 9, 3), "float32", "normal"))
def _(v):
    return _conv_t(v, (17, 18), "SAME", dynamic=False)


@case("conv2d_transpose_valid_s2", x=((BATCH, 9, 9, 3), "float32", "normal"))
def _(v):
    return _conv_t(v, (19, 19), "VALID", dynamic=False)


@case("conv2d_transpose_valid_s2_extra", x=((BATCH, 9, 9, 3), "float32", "normal"))
def _(v):
    return _conv_t(v, (20, 19), "VALID", dynamic=False)


@case("conv2d_transpose_same_dynamic_batch")
def _(v):
    return _conv_t(v, (18, 18), "SAME", dynamic=True)


# ======================================================================================
# pooling, normalization, bias, resize


@case("maxpool_valid", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.max_pool2d(tf.nn.relu(c(x)), 2, 2, "VALID")


@case("maxpool_same_stride2", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.max_pool2d(c(x) - 0.3, 3, 2, "SAME")


@case("avgpool_same_stride2", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.avg_pool2d(c(x) + 1.0, 3, 2, "SAME")


@case("avgpool_same_k2_stride2", cnn=True)
def _(v):
    c = conv(v)  # 9 -> 5: the last window is half padding
    return lambda x: tf.nn.avg_pool2d(c(x) + 1.0, 2, 2, "SAME")


@case("avgpool_same_stride1", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.avg_pool2d(c(x) + 1.0, 3, 1, "SAME")


@case("avgpool_valid_input", cnn=True)
def _(v):
    return lambda x: tf.nn.avg_pool2d(x, [3, 2], [2, 1], "VALID")


@case("maxpool_explicit_padding", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.max_pool2d(c(x) - 2.0, 3, 2, [[0, 0], [1, 0], [2, 1], [0, 0]])


@case("dynamic_spatial", cnn=True, x=((None, None, None, 3), "float32", "normal"))
def _(v):
    c = conv(v, cout=6)
    w2, b = v(3, 3, 6, 6), v(6)

    def fn(x: Any) -> Any:  # height and width unknown until run time
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(c(x), w2, 2, "SAME"), b))
        y = y * tf.reduce_mean(y, [1, 2], keepdims=True)
        y = tf.nn.avg_pool2d(y, 3, 2, "SAME")
        return tf.image.resize(y, [7, 7])
    return fn


@case("maxpool_v2")
def _(v):
    return lambda x: tf.raw_ops.MaxPoolV2(input=x, ksize=tf.constant([1, 3, 3, 1]),
                                          strides=tf.constant([1, 2, 2, 1]), padding="SAME")


@case("pool3d", x=((None, 5, 6, 7, 2), "float32", "normal"))
def _(v):
    return lambda x: {"max": tf.nn.max_pool3d(x, 2, 2, "SAME"),
                      "avg": tf.nn.avg_pool3d(x, [2, 3, 2], 1, "VALID")}


def _bn_params(v: Any, c: int) -> tuple[Any, Any, Any, Any]:
    scale, offset = v(c), v(c)
    mean, var = v(c), v(c, kind="pos")
    return scale, offset, mean, var


@case("fused_batch_norm_v3", cnn=True)
def _(v):
    c = conv(v)
    scale, offset, mean, var = _bn_params(v, 4)
    return lambda x: tf.nn.relu(tf.compat.v1.nn.fused_batch_norm(
        c(x), scale, offset, mean, var, epsilon=1e-3, is_training=False)[0])


@case("fused_batch_norm_v1_v2")
def _(v):
    c = conv(v)
    scale, offset, mean, var = _bn_params(v, 4)

    def fn(x: Any) -> Any:
        y = c(x)
        v1 = tf.raw_ops.FusedBatchNorm(x=y, scale=scale, offset=offset, mean=mean,
                                       variance=var, epsilon=1e-3, is_training=False)[0]
        v2 = tf.raw_ops.FusedBatchNormV2(x=y, scale=scale, offset=offset, mean=mean,
                                         variance=var, epsilon=1e-4, is_training=False)[0]
        return {"v1": v1, "v2": v2}
    return fn


@case("fused_batch_norm_on_input")
def _(v):
    scale, offset, mean, var = _bn_params(v, 3)
    return lambda x: tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=mean, variance=var, epsilon=1e-4,
        is_training=False)[0]  # the default epsilon: not stored in the graph


@case("bias_add_variants")
def _(v):
    c = conv(v)
    b4, b3 = v(4), v(3)
    return lambda x: {"conv": tf.nn.bias_add(c(x), b4), "input": tf.nn.bias_add(x, b3),
                      "v1": tf.raw_ops.BiasAddV1(value=c(x), bias=b4)}


@case("bias_add_nchw", x=((None, 3, 5, 4), "float32", "normal"))
def _(v):
    b = v(3)
    return lambda x: tf.nn.bias_add(x, b, data_format="NCHW")


@case("bias_add_rank2", x=VEC)
def _(v):
    w, b = v(6, 5), v(5)
    return lambda x: tf.nn.bias_add(tf.matmul(x, w), b)


@case("lrn", cnn=True)
def _(v):
    c = conv(v, cout=6)
    return lambda x: tf.nn.local_response_normalization(c(x), depth_radius=2, bias=1.5,
                                                        alpha=0.3, beta=0.75)


def _resize_case(op: str, size: tuple[int, int], half_pixel: bool, align: bool) -> Any:
    def make(v: Any) -> Any:
        c = conv(v)
        return lambda x: getattr(tf.raw_ops, op)(images=c(x), size=tf.constant(size),
                                                 half_pixel_centers=half_pixel,
                                                 align_corners=align)
    return make


for _tag, _half, _align in (("half_pixel", True, False), ("asymmetric", False, False),
                            ("align_corners", False, True)):
    for _dir, _size in (("up", (14, 13)), ("down", (5, 4))):
        case(f"resize_bilinear_{_tag}_{_dir}", cnn=True)(
            _resize_case("ResizeBilinear", _size, _half, _align))
        case(f"resize_nearest_{_tag}_{_dir}", cnn=True)(
            _resize_case("ResizeNearestNeighbor", _size, _half, _align))


@case("resize_image_api")
def _(v):
    return lambda x: {"bilinear": tf.image.resize(x, [15, 12]),
                      "nearest": tf.image.resize(x, [4, 18], method="nearest")}


# ======================================================================================
# element-wise ops around a conv output (channels-first inside the importer)


@case("elementwise_conv_with_lower_rank_consts", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.max_pool2d(
        ((c(x) + const((4,), 1)) * const((9, 4), 2) - const((9, 9, 4), 3))
        / const((1, 1, 1, 4), 4, 1.0, 2.0) + const((9, 1, 1), 5), 2, 2, "VALID")


@case("elementwise_const_first_operand", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.avg_pool2d(
        tf.maximum(const((4,), 6) - c(x), const((9, 1, 4), 7)) * 2.0
        + tf.minimum(1.5, c(x)), 3, 2, "SAME")


@case("elementwise_two_convs", cnn=True)
def _(v):
    c1, c2 = conv(v), conv(v)
    return lambda x: tf.nn.max_pool2d(c1(x) * tf.nn.sigmoid(c2(x)) + c1(x), 2, 2, "SAME")


@case("elementwise_conv_and_input", cnn=True)
def _(v):
    c = conv(v, cout=3)
    return lambda x: tf.nn.relu(c(x) + x) * x


@case("elementwise_conv_and_keepdims_mean", cnn=True)
def _(v):
    c = conv(v)
    w1, w2 = v(1, 1, 4, 2), v(1, 1, 2, 4)

    def fn(x: Any) -> Any:  # squeeze-and-excitation
        y = tf.nn.relu(c(x))
        s = tf.reduce_mean(y, [1, 2], keepdims=True)
        s = tf.nn.sigmoid(tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(s, w1, 1, "VALID")), w2, 1,
                                       "VALID"))
        return tf.nn.max_pool2d(y * s, 3, 2, "VALID")
    return fn


@case("elementwise_conv_and_input_reductions", cnn=True)
def _(v):
    c = conv(v, cout=3)
    return lambda x: tf.nn.avg_pool2d(
        c(x) * tf.reduce_mean(x, [1, 2], keepdims=True) + tf.reduce_max(x, -1, keepdims=True),
        2, 2, "VALID")


@case("elementwise_conv_and_rank1_computed")
def _(v):
    c = conv(v)
    return lambda x: c(x) * tf.reduce_mean(c(x), [0, 1, 2]) - tf.reduce_max(c(x))


@case("elementwise_conv_and_rank2_computed")
def _(v):
    c = conv(v)
    return lambda x: c(x) + tf.reduce_sum(c(x), [0, 1])  # [W, C] right-aligned


@case("pow_after_conv", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.pow(tf.nn.relu(c(x)) + 0.5, const((4,), 8, 0.5, 2.0))


# ======================================================================================
# element-wise binary, unary, select, cast


@case("binary_arith", x=VEC, y=VEC)
def _(v):
    return lambda x, y: {
        "Add": tf.raw_ops.Add(x=x, y=y), "AddV2": x + y, "Sub": x - y, "Mul": x * y,
        "RealDiv": x / (tf.abs(y) + 0.5), "Maximum": tf.maximum(x, y),
        "Minimum": tf.minimum(x, 0.2), "SquaredDifference": tf.math.squared_difference(x, y),
        "Div": tf.raw_ops.Div(x=x, y=tf.abs(y) + 0.5),
        "broadcast": x[:, :1] * y - tf.constant(0.5),
    }


@case("pow", x=POS, y=VEC)
def _(v):
    return lambda x, y: {"Pow": tf.pow(x, y), "Pow_const": tf.pow(x, 1.5)}


@case("int_arith", x=((None, 6), "int32", "int"), y=((None, 6), "int32", "nonzero_int"))
def _(v):
    return lambda x, y: {
        "Div": tf.raw_ops.Div(x=x, y=y), "FloorMod": tf.math.floormod(x, y),
        "Add": x + y * 3, "Max": tf.maximum(x, y), "FloorDiv_const":
            x + tf.math.floordiv(tf.constant([7, -7, 5, -5, 9, 1]), tf.constant(2)),
    }


@case("floor_div_float", x=VEC, y=POS)
def _(v):
    return lambda x, y: {
        "FloorDiv": tf.math.floordiv(x * 3.0, y),
        "FloorDiv_neg": tf.math.floordiv(x, -y),
        "FloorMod_const": x + tf.math.floormod(tf.constant([5.5, -5.5, 2.0, -1.0, 0.5, 7.0]),
                                               tf.constant(2.0)),
    }


@case("compare", x=VEC, y=VEC)
def _(v):
    return lambda x, y: {
        "Greater": x > y, "GreaterEqual": x >= tf.round(y), "Less": x < 0.1,
        "LessEqual": x <= y, "Equal": tf.equal(tf.round(x), tf.round(y)),
        "NotEqual": tf.not_equal(tf.round(x), 0.0),
    }


@case("logical", a=((None, 6), "bool", "bool"), b=((None, 6), "bool", "bool"))
def _(v):
    return lambda a, b: {"And": tf.logical_and(a, b), "Or": tf.logical_or(a, b),
                         "Not": tf.logical_not(a), "Xor": tf.math.logical_xor(a, b)}


@case("compare_after_conv", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.cast(c(x) > const((4,), 9), tf.float32) * c(x)


@case("select", x=VEC, y=VEC)
def _(v):
    return lambda x, y: {
        "SelectV2": tf.where(x > y, x, y * 2.0),
        "SelectV2_scalar": tf.where(x > 0.0, x, 0.0),
        "Select": tf.compat.v1.where(x > y, x * 3.0, y),
    }


@case("select_after_conv", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.max_pool2d(tf.where(c(x) > 0.0, c(x), c(x) * const((4,), 10)),
                                      2, 2, "VALID")


@case("add_n_clip", x=VEC, y=VEC)
def _(v):
    return lambda x, y: {
        "AddN": tf.add_n([x, y, x * 2.0]),
        "ClipByValue": tf.raw_ops.ClipByValue(t=x, clip_value_min=tf.constant(-0.5),
                                              clip_value_max=tf.constant(0.7)),
        "clip_by_value": tf.clip_by_value(y, -0.3, 0.4),
    }


@case("add_n_after_conv", cnn=True)
def _(v):
    c1, c2 = conv(v), conv(v)
    return lambda x: tf.nn.relu6(tf.add_n([c1(x), c2(x), c1(x) * const((4,), 11)]) * 3.0)


@case("unary", x=((None, 6), "float32", "wide"))
def _(v):
    return lambda x: {
        "Relu": tf.nn.relu(x), "Relu6": tf.nn.relu6(x * 3.0), "Elu": tf.nn.elu(x),
        "Selu": tf.nn.selu(x), "Sigmoid": tf.sigmoid(x), "Tanh": tf.tanh(x),
        "Exp": tf.exp(x), "Square": tf.square(x), "Neg": -x, "Abs": tf.abs(x),
        "Erf": tf.math.erf(x), "Erfc": tf.math.erfc(x), "Softplus": tf.nn.softplus(x),
        "Softsign": tf.nn.softsign(x), "Floor": tf.floor(x), "Ceil": tf.math.ceil(x),
        "Round": tf.round(x), "Sign": tf.sign(x), "Sin": tf.sin(x), "Cos": tf.cos(x),
        "LeakyRelu": tf.nn.leaky_relu(x, 0.1), "LeakyRelu_default": tf.nn.leaky_relu(x),
        "IsNan": tf.math.is_nan(tf.math.log(x)),
    }


@case("unary_positive", x=POS)
def _(v):
    return lambda x: {
        "Log": tf.math.log(x), "Log1p": tf.math.log1p(x), "Sqrt": tf.sqrt(x),
        "Rsqrt": tf.math.rsqrt(x), "Reciprocal": tf.math.reciprocal(x),
        "Inv": tf.raw_ops.Inv(x=x),
    }


@case("unary_after_conv", cnn=True)
def _(v):
    c = conv(v)
    return lambda x: tf.nn.max_pool2d(
        tf.nn.leaky_relu(c(x), 0.2) + tf.math.erf(c(x)) + tf.math.rsqrt(tf.abs(c(x)) + 1.0)
        + tf.nn.relu6(c(x) * 4.0) + tf.math.erfc(c(x)), 3, 2, "SAME")


@case("unary_folded_consts", x=VEC)
def _(v):
    k = tf.constant([0.5, 1.0, 2.0, 3.0, 0.1, 4.0])
    return lambda x: x * tf.math.rsqrt(k) + tf.exp(k) * tf.sqrt(k) - tf.math.log(k) \
        + tf.tanh(k) + tf.nn.relu6(k * 2.0) + tf.math.reciprocal(k)


@case("cast", x=((None, 6), "float32", "wide"), i=((None, 6), "int32", "int"))
def _(v):
    return lambda x, i: {
        "to_int32": tf.cast(x * 3.0, tf.int32), "to_int64": tf.cast(x * 3.0, tf.int64),
        "to_bool": tf.cast(tf.round(x), tf.bool), "bool_to_float": tf.cast(x > 0.0, tf.float32),
        "int_to_float": tf.cast(i, tf.float32) * x, "same": tf.cast(x, tf.float32),
    }


@case("softmax", x=VEC)
def _(v):
    return lambda x: {"Softmax": tf.nn.softmax(x * 2.0), "LogSoftmax": tf.nn.log_softmax(x)}


@case("softmax_after_conv", cnn=True)
def _(v):
    c = conv(v, cout=6)
    return lambda x: {"Softmax": tf.nn.softmax(c(x)), "LogSoftmax": tf.nn.log_softmax(c(x))}


# ======================================================================================
# reductions


def _reductions(y: Any, axes: Any, keep: bool) -> dict[str, Any]:
    return {"Mean": tf.reduce_mean(y, axes, keepdims=keep),
            "Sum": tf.reduce_sum(y, axes, keepdims=keep),
            "Max": tf.reduce_max(y, axes, keepdims=keep),
            "Min": tf.reduce_min(y, axes, keepdims=keep),
            "Prod": tf.reduce_prod(1.0 + 0.1 * y, axes, keepdims=keep)}


def _reduce_case(axes: list[int], keep: bool) -> Any:
    def make(v: Any) -> Any:
        c = conv(v)
        return lambda x: _reductions(c(x), axes, keep)
    return make


for _tag, _axes in (("spatial", [1, 2]), ("channel", [-1]), ("height", [1]),
                    ("width_channel", [2, 3]), ("batch_channel", [0, 3]),
                    ("all", [0, 1, 2, 3])):
    for _keep in (True, False):
        case(f"reduce_{_tag}_keep{int(_keep)}")(_reduce_case(_axes, _keep))


@case("reduce_all_any", x=VEC)
def _(v):
    return lambda x: {
        "All": tf.reduce_all(x > -1.0, 1), "Any": tf.reduce_any(x > 1.0, 1, keepdims=True),
        "All_folded": x + tf.cast(tf.reduce_all(tf.constant([True, False])), tf.float32),
    }


@case("reduce_all_any_after_conv")
def _(v):
    c = conv(v)
    return lambda x: {"All": tf.reduce_all(c(x) > -1.5, [1, 2]),
                      "Any": tf.reduce_any(c(x) > 1.5, -1, keepdims=True)}


# ======================================================================================
# matrix products


@case("matmul", a=((None, 5), "float32", "normal"), b=((5, 4), "float32", "normal"))
def _(v):
    w = v(5, 3)
    wt = v(3, 5)
    return lambda a, b: {
        "plain": tf.matmul(a, w), "transpose_b": tf.matmul(a, wt, transpose_b=True),
        "transpose_a": tf.matmul(b, a, transpose_a=True, transpose_b=True),
        "two_inputs": tf.matmul(a, b),
    }


@case("batch_matmul", a=((None, 3, 4), "float32", "normal"),
      b=((None, 4, 5), "float32", "normal"))
def _(v):
    w = v(5, 4)
    return lambda a, b: {
        "V2": tf.matmul(a, b), "adj_x": tf.linalg.matmul(b, a, adjoint_a=True, adjoint_b=True),
        "adj_y": tf.raw_ops.BatchMatMulV2(x=a, y=tf.transpose(b, [0, 2, 1]), adj_y=True),
        "bcast_weight": tf.matmul(b, w), "V1": tf.raw_ops.BatchMatMul(x=a, y=b),
        "V3": tf.raw_ops.BatchMatMulV3(x=a, y=b, Tout=tf.float32, adj_x=False),
    }


@case("einsum", a=((None, 3, 4), "float32", "normal"),
      b=((None, 4, 5), "float32", "normal"))
def _(v):
    w = v(4, 6)
    return lambda a, b: {"bij_bjk": tf.einsum("bij,bjk->bik", a, b),
                         "weight": tf.einsum("bij,jk->bki", a, w),
                         "reduce": tf.einsum("bij->bj", a)}


@case("einsum_after_conv")
def _(v):
    c = conv(v)
    w = v(4, 6)
    return lambda x: tf.einsum("bhwc,cd->bwhd", c(x), w)


# ======================================================================================
# shape, indexing, data movement


@case("reshape_flatten_after_conv")
def _(v):
    c = conv(v)
    w = v(9 * 9 * 4, 3)
    return lambda x: tf.matmul(tf.reshape(c(x), [-1, 9 * 9 * 4]), w)


@case("reshape_dynamic_batch")
def _(v):
    c = conv(v)
    return lambda x: tf.reshape(c(x), tf.stack([tf.shape(x)[0], 27, -1]))


@case("tensordot_dynamic_batch", x=((None, 5, 6), "float32", "normal"))
def _(v):
    w = v(6, 4)  # Shape, GatherV2, Prod, ConcatV2 and Reshape on a computed shape
    return lambda x: tf.tensordot(x, w, axes=1)


@case("shape_dynamic_batch")
def _(v):
    c = conv(v, cout=5)
    return lambda x: {"shape": tf.shape(c(x)), "shape64": tf.shape(x, out_type=tf.int64),
                      "batch_f": tf.cast(tf.shape(c(x))[0], tf.float32) * c(x)[:, 0, 0, :]}


@case("squeeze_expand_dims")
def _(v):
    c, c1 = conv(v), conv(v, cout=1)
    return lambda x: {
        "squeeze_channel": tf.squeeze(c1(x), -1) * 2.0,
        "squeeze_axes": tf.squeeze(tf.reduce_mean(c(x), [1, 2], keepdims=True), [1, 2]),
        "squeeze_height": tf.squeeze(c(x)[:, :1], 1),
        "squeeze_all": tf.squeeze(tf.reduce_mean(c(x), [1, 2], keepdims=True)),
        "expand_1": tf.expand_dims(c(x), 1), "expand_last": tf.expand_dims(c(x), -1),
        "expand_rank2": tf.expand_dims(tf.reduce_mean(c(x), [1, 2]), 1),
    }


@case("transpose")
def _(v):
    c = conv(v)
    return lambda x: {"to_nchw": tf.transpose(c(x), [0, 3, 1, 2]),
                      "swap_hw": tf.transpose(c(x), [0, 2, 1, 3]),
                      "reverse": tf.transpose(c(x), [3, 2, 1, 0]),
                      "identity": tf.transpose(c(x), [0, 1, 2, 3]) * 2.0,
                      "input": tf.transpose(x, [0, 3, 1, 2])}


@case("strided_slice_masks")
def _(v):
    c = conv(v)
    return lambda x: {
        "crop": c(x)[:, 1:-1, ::2, :],
        "shrink_last": c(x)[..., 1],
        "shrink_neg": c(x)[:, -1],
        "new_axis": c(x)[:, tf.newaxis, 2:, ::-1],
        "ellipsis_mid": c(x)[1:, ..., 1:3],
        "neg_stride": c(x)[:, 7:1:-2, :, ::-2],
        "neg_stride_all": x[::-1, ::-2],
        "begin_end_masks": c(x)[:, :4, 3:, :],
        "ellipsis_new_axis": x[..., tf.newaxis, 0],
        "shrink_batch": c(x)[0],
    }


@case("slice")
def _(v):
    c = conv(v)
    return lambda x: {"conv": tf.slice(c(x), [0, 1, 2, 0], [-1, 5, 4, 2]),
                      "input": tf.slice(x, [1, 0, 3, 1], [1, -1, 3, 2])}


@case("pad", cnn=True)
def _(v):
    c = conv(v)
    p = [[0, 0], [1, 2], [0, 3], [1, 1]]
    return lambda x: {
        "Pad": tf.pad(c(x), p), "PadV2": tf.pad(c(x), p, constant_values=1.5),
        "MirrorPad": tf.pad(c(x), [[0, 0], [2, 1], [1, 0], [0, 0]], mode="REFLECT"),
    }


@case("pad_rank2", x=VEC)
def _(v):
    return lambda x: {"Pad": tf.pad(x, [[1, 0], [2, 3]]),
                      "MirrorPad": tf.pad(x, [[0, 1], [2, 2]], mode="REFLECT"),
                      "PadV2": tf.pad(x, [[0, 0], [1, 1]], constant_values=-2.0)}


@case("concat", cnn=True)
def _(v):
    c1, c2, c3 = conv(v), conv(v, cout=2), conv(v, cout=3)
    return lambda x: {
        "axis_last": tf.nn.max_pool2d(tf.concat([c1(x), c2(x)], -1), 2, 2, "VALID"),
        "axis_1": tf.concat([c1(x), c1(x) * 2.0], 1),
        "with_input": tf.concat([c3(x), x], 3),
        "v1": tf.raw_ops.Concat(concat_dim=tf.constant(2), values=[c1(x), c1(x) + 1.0]),
    }


@case("pack_unpack")
def _(v):
    c = conv(v)
    return lambda x: {
        "stack_1": tf.stack([c(x), c(x) * 2.0], 1),
        "stack_last": tf.stack([c(x), -c(x)], -1),
        **{f"unstack_last_{i}": t for i, t in enumerate(tf.unstack(c(x), axis=-1))},
        **{f"unstack_h_{i}": t for i, t in enumerate(tf.unstack(c(x)[:, :3], axis=1))},
    }


@case("pack_unpack_rank2", x=VEC)
def _(v):
    return lambda x: (tf.stack(tf.unstack(x, axis=1)[::-1], axis=0), tf.stack([x, x], -1))


@case("split", cnn=True)
def _(v):
    c = conv(v, cout=6)

    def fn(x: Any) -> Any:
        a, b = tf.split(c(x), 2, axis=-1)
        p, q, r = tf.split(c(x), [1, 3, -1], axis=-1)
        s, t = tf.split(c(x), [4, 5], axis=1)
        return {"split_a": tf.nn.max_pool2d(a * b, 2, 2, "VALID"),
                "splitv_p": p, "splitv_q": q, "splitv_r": r, "split_h_s": s, "split_h_t": t}
    return fn


@case("split_rank2", x=VEC)
def _(v):
    return lambda x: [*tf.split(x, 3, axis=1), *tf.split(x, [4, 2], axis=-1)]


@case("tile")
def _(v):
    c = conv(v)
    return lambda x: {"conv": tf.tile(c(x), [1, 2, 1, 3]),
                      "rank2": tf.tile(tf.reduce_mean(x, [1, 2]), [2, 3])}


@case("fill_broadcast_range")
def _(v):
    c = conv(v)
    return lambda x: {
        "Fill": tf.fill(tf.shape(c(x)), 2.5) * c(x),
        "Fill_stack": tf.fill(tf.stack([tf.shape(x)[0], 3]), 1.0),
        "Fill_const": x + tf.fill([9, 3], 0.5),
        "BroadcastTo": tf.broadcast_to(const((4,), 12), tf.shape(c(x))) + c(x),
        "BroadcastTo_const": x * tf.broadcast_to(const((3,), 13), [9, 9, 3]),
        "Range": tf.range(tf.shape(x)[0]),
        "Range_float": tf.range(tf.cast(tf.shape(x)[0], tf.float32), 7.5, 1.25),
        "Range_const": x + tf.range(0.0, 1.5, 0.5),
    }


@case("gather", x=IMG, i=((None, 4), "int32", "index9"))
def _(v):
    c = conv(v)
    table = v(9, 5)
    return lambda x, i: {
        "channels": tf.gather(c(x), [2, 0, 1, 1], axis=-1),
        "height": tf.gather(c(x), [8, 0], axis=1),
        "embedding": tf.gather(table, i),  # ResourceGather
        "const_params": tf.gather(const((9, 3), 14), i),
        "input_indices_axis1": tf.gather(x, i[0], axis=1),
        "v1": tf.raw_ops.Gather(params=tf.reshape(x, [-1, 3]), indices=i),
        "int64_indices": tf.gather(table, tf.cast(i, tf.int64), axis=0),
    }


PATCH_IMG: Spec = ((None, 16, 16, 3), "float32", "normal")


def _patches(w: Any, b: Any, x: Any) -> tuple[Any, Any]:
    """keras_hub ViTPatchingAndEmbedding's patching: a stride-4 Conv2D + BiasAdd (held
    channels-first by the importer; the bias read, reshaped to [1, 1, 1, dim] and squeezed,
    as Keras 3 writes it) reshaped to [batch, patches, dim] with a shape Packed from
    tf.shape; returns (patches, tf.shape of the conv output)."""
    bias = tf.squeeze(tf.reshape(b.read_value(), [1, 1, 1, -1]))
    y = tf.nn.bias_add(tf.nn.conv2d(x, w, 4, "VALID"), bias)
    s = tf.shape(y)
    return tf.reshape(y, tf.stack([s[0], -1, s[-1]])), s


@case("vit_patch_embedding", x=PATCH_IMG)
def _(v):
    """The ops of keras_hub's ViTPatchingAndEmbedding as ``model.export()`` writes them:
    position ids a captured constant, Keras Embedding's index wrap (Less, AddV2, SelectV2
    folded on constants), GatherV2 on the read table, the class token Tiled to the batch
    and concatenated on axis 1, then the position embedding added."""
    w, b, cls, table = v(4, 4, 3, 8), v(8), v(1, 1, 8), v(17, 8)
    ids = tf.constant(np.arange(17, dtype=np.int32)[None])  # eager: a captured constant

    def fn(x: Any) -> Any:
        y, s = _patches(w, b, x)
        params = table.read_value()
        idx = tf.where(ids < 0, ids + tf.shape(params)[0], ids)
        pos = tf.gather(params, idx, axis=0)
        token = tf.tile(cls, tf.stack([s[0], 1, 1]))
        return {"with_token": tf.concat([token, y], axis=1) + pos,
                "no_token": y + pos[:, 1:]}
    return fn


@case("vit_patch_embedding_variants", x=PATCH_IMG)
def _(v):
    """The same block written other ways: class token broadcast_to the batch, concat on
    a negative axis, position ids from Range + ExpandDims, the embedding gathered on a
    negative axis, token read-out and slices with shrink/new-axis/ellipsis masks."""
    w, b, cls, table = v(4, 4, 3, 8), v(8), v(1, 1, 8), v(8, 17)

    def fn(x: Any) -> Any:
        y, s = _patches(w, b, x)
        token = tf.broadcast_to(cls, tf.stack([s[0], 1, tf.shape(cls)[-1]]))
        joined = tf.concat([token, y], axis=-2)
        ids = tf.expand_dims(tf.range(tf.shape(joined)[1]), 0)  # computed: [1, 17]
        pos = tf.transpose(tf.gather(table, ids, axis=-1), [1, 2, 0])  # ReadVariableOp+GatherV2
        z = joined + pos
        return {"z": z, "token": z[:, 0], "last": z[:, -1, ::2],
                "new_axis": z[:, tf.newaxis, 1:, 3], "ellipsis": z[..., -1],
                "concat_neg1": tf.concat([z, y[:, :1]], axis=-2),
                "concat_last": tf.concat([z, -z], axis=-1)}
    return fn


@case("select_folded_constants", x=VEC)
def _(v):
    """SelectV2/Select whose operands are all constants fold in numpy: the result has the
    branches' dtype (int32, float32), not the condition's."""
    i = tf.constant([[-2, 0, 3, -1, 5, 1]])
    f = tf.constant([[-1.5, 0.25, 2.0, -0.5, 4.0, 1.0]])

    def fn(x: Any) -> Any:
        wrapped = tf.where(i < 0, i + 6, i)
        return {"int": tf.gather(x, wrapped[0], axis=1),
                "float": x * tf.where(f < 0.0, -f, f * 2.0),
                "v1": x + tf.compat.v1.where(f > 0.0, f, f * 3.0)}
    return fn


@case("gather_batch_dims", x=((None, 5, 3), "float32", "normal"),
      i=((None, 2), "int32", "index5"))
def _(v):
    """GatherV2/ResourceGather with batch_dims (the batch is BATCH = 2 for the table and
    the constants), on the axis after the batch dims, a later axis, negative axis and
    batch_dims, two batch dims, a conv output, and folded on constants."""
    c = conv(v)
    table = v(BATCH, 5, 3)
    k = const((BATCH, 5, 3), 15)
    ki = tf.constant([[0, 4], [3, 3]])

    def fn(x: Any, i: Any) -> Any:
        per_row = tf.tile(i[:, None, :], [1, 5, 1]) % 3  # [B, 5, 2]
        img = tf.image.resize(x[..., None], [9, 9])[..., 0]  # [B, 9, 9]
        return {
            "axis1": tf.gather(x, i, axis=1, batch_dims=1),
            "axis2": tf.gather(x, i % 3, axis=2, batch_dims=1),
            "negative": tf.gather(x, i, axis=-2, batch_dims=-1),
            "two_batch_dims": tf.gather(x, per_row, axis=2, batch_dims=2),
            "conv_channels": tf.gather(c(tf.stack([img] * 3, -1)), i % 4, axis=3,
                                       batch_dims=1),
            "resource": tf.raw_ops.ResourceGather(resource=table.handle, indices=i,
                                                  dtype=tf.float32, batch_dims=1),
            "folded": x[:, :2] + tf.gather(k, ki, axis=1, batch_dims=1),
        }
    return fn


@case("nested_function_captured_constant", x=VEC)
def _(v):
    w = v(6, 6)
    k = tf.constant(np.linspace(-1, 1, 6, dtype=np.float32))  # eager: captured, not a Const

    @tf.function
    def inner(y: Any) -> Any:
        return tf.nn.tanh(tf.matmul(y, w) + k)
    return lambda x: inner(inner(x) * 2.0) - k


@case("identity_like", x=VEC)
def _(v):
    def fn(x: Any) -> Any:
        a, b = tf.identity_n([x, x * 2.0])
        with tf.control_dependencies([tf.no_op()]):
            y = tf.identity(x)
        return {
            "Identity": y, "IdentityN": a + b, "StopGradient": tf.stop_gradient(x),
            "Snapshot": tf.raw_ops.Snapshot(input=x),
            "PreventGradient": tf.raw_ops.PreventGradient(input=x),
            "EnsureShape": tf.ensure_shape(x, [None, 6]),
            "CheckNumerics": tf.debugging.check_numerics(x, "bad"),
        }
    return fn


@case("cnn_block", cnn=True)
def _(v):
    c1, c2 = conv(v, cout=8), conv(v, cin=8, cout=8)
    scale, offset, mean, var = _bn_params(v, 8)

    def fn(x: Any) -> Any:
        y = tf.nn.relu6(c1(x))
        z = tf.compat.v1.nn.fused_batch_norm(c2(y), scale, offset, mean, var,
                                             is_training=False)[0]
        z = tf.nn.relu(z + y)
        z = tf.nn.max_pool2d(z, 3, 2, "SAME")
        return tf.reduce_mean(z, [1, 2])
    return fn


# ======================================================================================
# ops without a handler (the graph route refuses them; tf2onnx converts them)


@case("while_tensorarray_static", x=((None, 7, 5), "float32", "normal"))
def _(v):
    """A hand-written RNN: tf.while_loop over a static time axis, TensorArrays in and out
    (While + TensorList ops, unrolled by the importer)."""
    w, u = v(5, 4), v(4, 4)

    def fn(x):
        steps = tf.shape(x)[1]
        inputs = tf.TensorArray(tf.float32, size=7).unstack(tf.transpose(x, [1, 0, 2]))
        outputs = tf.TensorArray(tf.float32, size=7)
        h0 = tf.zeros(tf.stack([tf.shape(x)[0], 4]))

        def body(t, h, out):
            h = tf.tanh(tf.matmul(inputs.read(t), w) + tf.matmul(h, u))
            return t + 1, h, out.write(t, h)

        _, h, out = tf.while_loop(lambda t, h, out: t < steps, body, [0, h0, outputs])
        return {"last": h, "seq": tf.transpose(out.stack(), [1, 0, 2]),
                "rev": tf.reverse(x, axis=[1])}
    return fn


@case("stateless_while_length", x=((None, 4, 3), "float32", "normal"))
def _(v):
    """A loop without variable reads (StatelessWhile) bounded by a TensorArray's size
    (TensorListLength), starting from ZerosLike of a computed tensor; OnesLike after it."""
    def fn(x):
        items = tf.TensorArray(tf.float32, size=0, dynamic_size=True).unstack(
            tf.transpose(x, [1, 0, 2]))

        def body(t, acc):
            return t + 1, acc * 0.5 + tf.sigmoid(items.read(t))

        _, acc = tf.while_loop(lambda t, acc: t < items.size(), body,
                               [0, tf.zeros_like(x[:, 0])])
        return acc - tf.raw_ops.OnesLike(x=acc)
    return fn


@case("unsupported_dynamic_while", unsupported="While", x=((None, None, 5), "float32",
                                                             "normal"))
def _(v):
    """The same loop over a time axis of unknown length: not unrollable."""
    w = v(5, 4)

    def fn(x):
        steps = tf.shape(x)[1]
        acc = tf.zeros(tf.stack([tf.shape(x)[0], 4]))
        _, acc = tf.while_loop(lambda t, a: t < steps,
                               lambda t, a: (t + 1, a + tf.matmul(x[:, t], w)), [0, acc])
        return acc
    return fn


@case("unsupported_cumsum", unsupported="Cumsum", x=VEC)
def _(v):
    return lambda x: tf.math.cumsum(x * 2.0, axis=1)


@case("unsupported_float_floormod", unsupported="FloorMod", x=VEC, y=POS)
def _(v):
    return lambda x, y: tf.math.floormod(x, y)


@case("unsupported_batch_norm_training", unsupported="FusedBatchNormV3")
def _(v):
    scale, offset, mean, var = _bn_params(v, 3)  # is_training=True: the op's default
    return lambda x: tf.raw_ops.FusedBatchNormV3(x=x, scale=scale, offset=offset, mean=mean,
                                                 variance=var, is_training=True)[0]


# ======================================================================================
# building


def _draw(rng: np.random.Generator, spec: Spec) -> np.ndarray:
    """Values for one input: batch BATCH, other unknown dimensions 11."""
    shape = tuple(d if d is not None else (BATCH if i == 0 else 11)
                  for i, d in enumerate(spec[0]))
    kind, dtype = spec[2], spec[1]
    if kind == "normal":
        return rng.normal(0, 1, shape).astype(dtype)
    if kind == "wide":
        return rng.uniform(-3, 3, shape).astype(dtype)
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape).astype(dtype)
    if kind == "int":
        return rng.integers(-9, 10, shape).astype(dtype)
    if kind == "nonzero_int":
        return (rng.integers(1, 5, shape) * rng.choice([-1, 1], shape)).astype(dtype)
    if kind.startswith("index"):
        return rng.integers(0, int(kind[5:]), shape).astype(dtype)
    if kind == "bool":
        return rng.random(shape) < 0.5
    raise ValueError(kind)


def _outputs(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    if isinstance(result, list | tuple):
        return {f"y{i}": t for i, t in enumerate(result)}
    return {"y": result}


def build_case(c: Case, out: Path) -> None:
    """Save case ``c`` in ``out/<name>/`` and its reference in ``out/<name>.npz``."""
    seed = zlib.crc32(c.name.encode())
    rng = np.random.default_rng(seed)
    module = tf.Module()
    module.weights = []

    def var(*shape: int, kind: str = "normal") -> Any:
        value = rng.uniform(0.5, 1.5, shape) if kind == "pos" else rng.normal(0, 0.5, shape)
        variable = tf.Variable(value.astype(np.float32), name=f"w{len(module.weights)}")
        module.weights.append(variable)
        return variable

    body = c.make(var)
    specs = [tf.TensorSpec(shape, dtype, name=key)
             for key, (shape, dtype, _) in c.inputs.items()]
    fn = tf.function(lambda *args: _outputs(body(*args)), input_signature=specs)
    module.serve = fn
    feeds = {key: _draw(rng, spec) for key, spec in c.inputs.items()}
    outs = fn(*[tf.constant(feeds[k]) for k in c.inputs])
    tf.saved_model.save(module, str(out / c.name), signatures={"serving_default": fn})
    arrays = {f"in:{k}": a for k, a in feeds.items()}
    arrays.update({f"out:{k}": np.asarray(t) for k, t in outs.items()})
    np.savez(out / f"{c.name}.npz", **arrays)  # type: ignore[arg-type]


def main(out: Path, names: list[str]) -> None:
    """Build the cases ``names`` (all when empty) in ``out``; errors go to errors.json."""
    global tf
    import os

    # saving imports Keras: on the torch backend (the pytest process sets it) it loads torch
    # next to TensorFlow, which crashes
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow

    tf = tensorflow
    tf.get_logger().setLevel("ERROR")  # retracing warnings: every case is a new function
    out.mkdir(parents=True, exist_ok=True)
    errors: dict[str, str] = {}
    start = time.perf_counter()
    for name in names or list(CASES):
        try:
            build_case(CASES[name], out)
        except Exception:
            errors[name] = traceback.format_exc(limit=4)
    (out / "errors.json").write_text(json.dumps(errors, indent=1))
    print(f"built {len(names or CASES) - len(errors)} cases in "
          f"{time.perf_counter() - start:.1f}s, {len(errors)} failed", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
