"""TFOpLambda: the layer tf.keras (Keras 2) records for a TensorFlow function applied to a
Keras tensor (``x + 3.0``, ``tf.nn.relu6(x)``, ``tf.reduce_mean(x, axis)``).

The layer stores only the public TF symbol's name (``config.function``), never code, so it is
safe to read: the name is looked up in a fixed table of the TF functions below and anything
else is reported as unsupported. Keras 2 writes a constant first operand as a
``["_CONSTANT_VALUE", -1, value, kwargs]`` entry and the other operands as call kwargs
(``y``, ``axis``, ``keepdims``, ``shape``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import onnx_ir as ir

from modelconv.importers.keras.common import (
    ACTIVATIONS,
    KTensor,
    LayerUnsupported,
    keras_axis,
    keras_layer,
)
from modelconv.importers.keras.layers_merge import fold
from modelconv.importers.keras.spec import is_number_tree, show
from modelconv.importers.keras.tensors import LAST, const_i, const_tensor, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder
from modelconv.ir.layout import ir_axis

#: TF binary functions (``x op y``) -> ONNX op
BINARY = {
    "__operators__.add": "Add", "math.add": "Add", "math.add_n": "Add",
    "math.subtract": "Sub", "__operators__.sub": "Sub",
    "math.multiply": "Mul", "math.truediv": "Div", "math.divide": "Div",
    "math.maximum": "Max", "math.minimum": "Min", "math.pow": "Pow",
}

#: TF unary functions -> the Keras activation of the same meaning
UNARY = {
    "nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid", "nn.sigmoid": "sigmoid",
    "math.tanh": "tanh", "nn.tanh": "tanh", "nn.silu": "silu", "nn.swish": "swish",
    "math.exp": "exponential", "nn.softplus": "softplus", "math.softplus": "softplus",
    "nn.elu": "elu", "nn.selu": "selu", "nn.softsign": "softsign",
}

#: TF unary math functions -> ONNX op
MATH = {"math.sqrt": "Sqrt", "math.abs": "Abs", "math.negative": "Neg", "math.square": None,
        "math.rsqrt": None, "math.log": "Log", "math.reciprocal": "Reciprocal"}

#: TF reductions -> ONNX op
REDUCE = {"math.reduce_mean": "ReduceMean", "math.reduce_sum": "ReduceSum",
          "math.reduce_max": "ReduceMax", "math.reduce_min": "ReduceMin",
          "math.reduce_prod": "ReduceProd"}

SUPPORTED = sorted([*BINARY, *UNARY, *MATH, *REDUCE, "reshape", "concat", "nn.gelu",
                    "nn.softmax", "math.softmax"])

#: the call keyword arguments each function's conversion reads ("name" only names the op)
KWARGS: dict[str, frozenset[str]] = {
    **{fn: frozenset({"y", "name"}) for fn in BINARY},
    **{fn: frozenset({"name"}) for fn in [*UNARY, *MATH]},
    **{fn: frozenset({"axis", "keepdims", "name"}) for fn in REDUCE},
    "reshape": frozenset({"shape", "name"}), "concat": frozenset({"axis", "name"}),
    "nn.softmax": frozenset({"axis", "name"}), "math.softmax": frozenset({"axis", "name"}),
    "nn.gelu": frozenset({"approximate", "name"}),
}


def _binary(b: GraphBuilder, op: str, xs: list[KTensor], kwargs: dict[str, Any]) -> KTensor:
    if "y" in kwargs and kwargs["y"] is not None:
        if not is_number_tree(kwargs["y"]):
            raise LayerUnsupported(f"y={show(kwargs['y'])}")
        xs = [*xs, const_tensor(b, kwargs["y"], xs[0].dtype)]
    if (op == "Add" and len(xs) > 2) or len(xs) == 2:
        return fold(b, xs, op)
    raise LayerUnsupported(f"{op} with {len(xs)} operands")


def _math(b: GraphBuilder, fn: str, x: KTensor) -> KTensor:
    if fn == "math.square":
        return x.like(b.Mul(x.value, x.value))
    if fn == "math.rsqrt":
        return x.like(b.Reciprocal(b.Sqrt(x.value)))
    op = MATH[fn]
    assert op is not None
    return x.like(b.op(op, [x.value]))


def _reduce(b: GraphBuilder, op: str, x: KTensor, kwargs: dict[str, Any]) -> KTensor:
    axis = kwargs.get("axis")
    keep = bool(kwargs.get("keepdims", False))
    axes = list(range(x.rank)) if axis is None else (
        axis if isinstance(axis, list) else [axis])
    ir_axes = sorted(keras_axis(a, x.rank, x.layout) for a in axes)
    if keep:
        return x.like(b.op(op, [x.value, const_i(b, ir_axes)], keepdims=1))
    # dropped axes change the rank: reduce in Keras order
    norm = sorted(a % x.rank for a in axes)
    y = b.op(op, [last(b, x), const_i(b, norm)], keepdims=0)
    return KTensor(y, x.rank - len(norm), LAST, x.dtype)


def _reshape(b: GraphBuilder, x: KTensor, kwargs: dict[str, Any]) -> KTensor:
    shape = kwargs.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        raise LayerUnsupported("reshape with a non-constant shape")
    y = b.Reshape(last(b, x), const_i(b, shape))
    return KTensor(y, len(shape), LAST, x.dtype)


def _concat(b: GraphBuilder, xs: list[KTensor], kwargs: dict[str, Any]) -> KTensor:
    rank = xs[0].rank
    axis = keras_axis(kwargs.get("axis", 0), rank, LAST)
    values = [last(b, x) for x in xs]
    return KTensor(b.Concat(*values, axis=axis), rank, LAST, xs[0].dtype)


def _softmax(b: GraphBuilder, x: KTensor, kwargs: dict[str, Any]) -> KTensor:
    axis = kwargs.get("axis", -1) if kwargs.get("axis") is not None else -1
    return x.like(b.Softmax(x.value, axis=keras_axis(axis, x.rank, x.layout)))


def _gelu(b: GraphBuilder, x: KTensor, kwargs: dict[str, Any]) -> KTensor:
    approx = "tanh" if kwargs.get("approximate") else "none"
    return x.like(b.Gelu(x.value, approximate=approx))


_SPECIAL: dict[str, Callable[[GraphBuilder, list[KTensor], dict[str, Any]], KTensor]] = {
    "reshape": lambda b, xs, kw: _reshape(b, xs[0], kw),
    "concat": _concat,
    "nn.softmax": lambda b, xs, kw: _softmax(b, xs[0], kw),
    "math.softmax": lambda b, xs, kw: _softmax(b, xs[0], kw),
    "nn.gelu": lambda b, xs, kw: _gelu(b, xs[0], kw),
}


def _check_function(cfg: Mapping[str, Any]) -> list[str]:
    fn = str(cfg.get("function"))
    return [] if fn in KWARGS else [f"tf.{fn}"]


@keras_layer("TFOpLambda", reads=("function",), kw_inputs=("y",),
             call_kwargs=frozenset().union(*KWARGS.values()), consts=True,
             check=_check_function)
def tf_op_lambda(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                 xs: list[KTensor]) -> KTensor:
    """A named TF function from the fixed table above (never code from the file)."""
    fn = str(cfg.get("function", ""))
    given = cfg.get("_call_kwargs") or {}
    unread = sorted(k for k, v in given.items() if v is not None and k not in KWARGS[fn])
    if unread:
        raise LayerUnsupported(f"tf.{fn} with {', '.join(unread)}")
    kwargs = {k: v for k, v in given.items() if k != "name"}
    if not xs:
        raise LayerUnsupported(f"tf.{fn} without a tensor operand")
    if fn in BINARY:
        return _binary(b, BINARY[fn], xs, kwargs)
    if fn in UNARY:
        x = xs[0]
        axis = ir_axis(-1, x.rank, x.layout) if x.rank > 0 else 0
        value: ir.Value = ACTIVATIONS[UNARY[fn]](b, x.value, axis, 2)
        return x.like(value)
    if fn in MATH:
        return _math(b, fn, xs[0])
    if fn in REDUCE:
        return _reduce(b, REDUCE[fn], xs[0], kwargs)
    if fn in _SPECIAL:
        return _SPECIAL[fn](b, xs, kwargs)
    raise LayerUnsupported(f"tf.{fn}")
