"""Keras 3 operation nodes: ``keras.ops.*`` applied to KerasTensors in a functional model.

A functional model saves such a call as a layer entry whose ``module`` is
``keras.src.ops.<numpy|nn|math|core>``; the config parser names its class ``ops.<Class>``
(``ops.Add`` is not the ``Add`` merge layer). The config holds the operation's constructor
arguments (``axis``, ``keepdims``, ``dtype``...), the inbound node its tensor and constant
operands. Mask plumbing (``NotEqual``, ``Any``, ``ExpandDims``, ``LogicalOr``,
``ConvertToTensor``...) arrives this way too. Every operation class of ``keras.ops`` has a
handler here or a reason in :data:`~modelconv.importers.keras.refused_ops.REFUSED_OPS`.
Results are channels-last (Keras order); a tensor's dtype follows Keras' rules for the
handled ops (comparisons give bool, ``Cast`` its ``dtype``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.importers.keras.common import LAYERS, Handler, KTensor, LayerUnsupported
from modelconv.importers.keras.config import OPERATION_CLASSES
from modelconv.importers.keras.layers_merge import fold
from modelconv.importers.keras.spec import LayerConfig, make_spec
from modelconv.importers.keras.tensors import LAST, const_i, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder

Cfg = dict[str, Any]


def keras_op(*names: str, reads: Iterable[str] = (), defaults: dict[str, Any] | None = None,
             call_kwargs: Iterable[str] = ()) -> Callable[[Handler], Handler]:
    """Register a handler for the operation classes ``names`` (keys ``ops.<name>``).

    Args:
        names: operation class names as Keras saves them (``NotEqual``).
        reads: the operation's config keys the handler interprets.
        defaults: config keys not read, with the only accepted value.
        call_kwargs: non-tensor call arguments the handler reads.

    Returns:
        A decorator registering the handler.
    """
    spec = dataclasses.replace(make_spec(reads, (), defaults, call_kwargs=call_kwargs,
                                         consts=True), policy=False)

    def deco(fn: Handler) -> Handler:
        for name in names:
            LAYERS.register(f"ops.{name}", check=spec)(_for_class(fn, name))
        return fn
    return deco


def _for_class(fn: Handler, name: str) -> Handler:
    """``fn`` called with ``cfg["_op"]`` set to the operation class ``name``."""
    def run(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> Any:
        layer = getattr(cfg, "layer", name)
        return fn(b, LayerConfig({**cfg, "_op": name}, layer, getattr(cfg, "path", None)),
                  w, xs)
    run.__doc__, run.__name__ = fn.__doc__, fn.__name__
    return run


def _onnx_dtype(name: str) -> int:
    return int(ir.DataType.from_numpy(np.dtype(name)).value)


def _dtype(name: Any) -> str:
    text = str(name)
    return "float32" if text in ("float64", "bfloat16") else text


def _t(x: KTensor, value: ir.Value, rank: int | None = None, dtype: str | None = None
       ) -> KTensor:
    return KTensor(value, x.rank if rank is None else rank, LAST, dtype or x.dtype)


def _axes(axis: Any, rank: int) -> list[int]:
    """A Keras ``axis`` (None, an int or a list) as sorted non-negative axes."""
    if axis is None:
        return list(range(rank))
    items = axis if isinstance(axis, list | tuple) else [axis]
    if not all(isinstance(a, int) and -rank <= a < rank for a in items):
        raise LayerUnsupported(f"axis={axis!r} for a rank-{rank} input")
    return sorted(a % rank for a in items)


def _match_float(b: GraphBuilder, xs: list[KTensor]) -> list[KTensor]:
    """Keras promotes an int/bool operand of a float op to the float dtype."""
    floats = [x.dtype for x in xs if x.dtype.startswith("float")]
    if not floats:
        return xs
    return [x if x.dtype.startswith("float") else
            _t(x, b.Cast(last(b, x), to=_onnx_dtype(floats[0])), dtype=floats[0]) for x in xs]


# ---------------------------------------------------------------- element-wise binary

_ARITH = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div",
          "TrueDivide": "Div", "Power": "Pow", "Maximum": "Max", "Minimum": "Min"}
_COMPARE = {"Equal": "Equal", "Greater": "Greater", "GreaterEqual": "GreaterOrEqual",
            "Less": "Less", "LessEqual": "LessOrEqual"}
_LOGICAL = {"LogicalAnd": "And", "LogicalOr": "Or", "LogicalXor": "Xor"}


def _two(xs: list[KTensor]) -> list[KTensor]:
    if len(xs) != 2:
        raise LayerUnsupported(f"{len(xs)} operands (needs 2)")
    return xs


@keras_op(*_ARITH)
def op_arith(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.add`` / ``x + y`` and the other arithmetic binaries (broadcasting)."""
    op = _ARITH[str(cfg["_op"])]
    xs = _match_float(b, _two(xs))
    if op == "Div" and not xs[0].dtype.startswith("float"):  # true division of ints
        xs = [_t(x, b.Cast(last(b, x), to=1), dtype="float32") for x in xs]
    return fold(b, xs, op)


@keras_op(*_COMPARE, "NotEqual")
def op_compare(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Comparisons -> a bool tensor (``NotEqual`` is ``Not(Equal)``)."""
    cls = str(cfg["_op"])
    xs = _match_float(b, _two(xs))
    y = fold(b, xs, _COMPARE.get(cls, "Equal"))
    value = b.Not(y.value) if cls == "NotEqual" else y.value
    return KTensor(value, y.rank, y.layout, "bool")


@keras_op(*_LOGICAL)
def op_logical(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Logical and/or/xor of (bool-cast) operands."""
    bools = [x if x.dtype == "bool" else _t(x, b.Cast(last(b, x), to=9), dtype="bool")
             for x in _two(xs)]
    return fold(b, bools, _LOGICAL[str(cfg["_op"])])


@keras_op("LogicalNot")
def op_logical_not(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.logical_not``."""
    x = xs[0]
    v = x.value if x.dtype == "bool" else b.Cast(x.value, to=9)
    return x.like(b.Not(v), dtype="bool")


@keras_op("FloorDivide", "Mod")
def op_floor_div(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``x // y`` (Floor of Div) and ``x % y`` (sign of the divisor, as numpy)."""
    a, c = _match_float(b, _two(xs))
    if not a.dtype.startswith("float"):
        raise LayerUnsupported(f"integer operands ({a.dtype})")
    q = fold(b, [a, c], "Div")
    floor = q.like(b.Floor(q.value))
    if cfg["_op"] == "FloorDivide":
        return floor
    prod = fold(b, [floor, c], "Mul")
    return fold(b, [a, prod], "Sub")


# ---------------------------------------------------------------- element-wise unary

_UNARY = {"Abs": "Abs", "Absolute": "Abs", "Negative": "Neg", "Exp": "Exp", "Log": "Log",
          "Sqrt": "Sqrt", "Sin": "Sin", "Cos": "Cos", "Tanh": "Tanh",
          "Sigmoid": "Sigmoid", "Relu": "Relu", "Softplus": "Softplus",
          "Softsign": "Softsign", "Selu": "Selu", "Floor": "Floor", "Ceil": "Ceil",
          "Sign": "Sign", "Reciprocal": "Reciprocal", "Erf": "Erf", "HardSilu": "HardSwish",
          "StopGradient": "Identity", "Copy": "Identity"}


def _composed(b: GraphBuilder, cls: str, v: ir.Value, cfg: Cfg) -> ir.Value:
    one = b.const(np.float32(1.0))
    if cls == "Rsqrt":
        return b.Reciprocal(b.Sqrt(v))
    if cls == "Square":
        return b.Mul(v, v)
    if cls == "Tan":  # sin/cos: TFLite has no TAN kernel
        return b.Div(b.Sin(v), b.Cos(v))
    if cls == "Relu6":
        return b.Clip(v, b.const(np.float32(0.0)), b.const(np.float32(6.0)))
    if cls == "Silu":
        return b.Mul(v, b.Sigmoid(v))
    if cls == "Log1p":
        return b.Log(b.Add(v, one))
    if cls == "Expm1":
        return b.Sub(b.Exp(v), one)
    if cls == "LogSigmoid":
        return b.Neg(b.Softplus(b.Neg(v)))
    if cls == "HardSigmoid":  # Keras 3: relu6(x + 3) / 6
        return b.HardSigmoid(v, alpha=1.0 / 6.0, beta=0.5)
    if cls == "Gelu":
        return b.Gelu(v, approximate="tanh" if cfg.get("approximate", True) else "none")
    if cls == "Elu":
        return b.Elu(v, alpha=float(cfg.get("alpha", 1.0)))
    if cls == "Celu":
        return b.Celu(v, alpha=float(cfg.get("alpha", 1.0)))
    if cls == "LeakyRelu":
        return b.LeakyRelu(v, alpha=float(cfg.get("negative_slope", 0.2)))
    if cls == "Round":
        return b.Round(v)
    raise AssertionError(cls)


_COMPOSED = ("Rsqrt", "Square", "Tan", "Relu6", "Silu", "Log1p", "Expm1", "LogSigmoid",
             "HardSigmoid")


@keras_op(*_UNARY, *_COMPOSED)
def op_unary(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Element-wise unary operations (ints promote to float for the float functions)."""
    cls = str(cfg["_op"])
    x = xs[0]
    keeps_ints = cls in ("Abs", "Absolute", "Negative", "Sign", "StopGradient", "Copy",
                         "Square", "Relu")
    if not keeps_ints and not x.dtype.startswith("float"):
        x = _t(x, b.Cast(last(b, x), to=1), dtype="float32")
    op = _UNARY.get(cls)
    return x.like(b.op(op, [x.value]) if op else _composed(b, cls, x.value, cfg))


@keras_op("Gelu", reads=("approximate",))
def op_gelu(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.gelu(x, approximate=True)``."""
    return xs[0].like(_composed(b, "Gelu", xs[0].value, cfg))


@keras_op("Elu", "Celu", reads=("alpha",))
def op_elu(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.elu`` / ``ops.celu`` with their alpha."""
    return xs[0].like(_composed(b, str(cfg["_op"]), xs[0].value, cfg))


@keras_op("LeakyRelu", reads=("negative_slope",))
def op_leaky_relu(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.leaky_relu(x, negative_slope)``."""
    return xs[0].like(_composed(b, "LeakyRelu", xs[0].value, cfg))


@keras_op("Round", reads=("decimals",))
def op_round(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.round`` (half to even, as numpy) with 0 decimals."""
    if int(cfg.get("decimals", 0)) != 0:
        raise LayerUnsupported(f"decimals={cfg['decimals']!r}")
    return xs[0].like(b.Round(xs[0].value))


@keras_op("Clip", reads=("x_min", "x_max"))
def op_clip(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.clip(x, x_min, x_max)`` with constant bounds."""
    x = xs[0]
    lo, hi = (b.const(np.asarray(cfg[k], np.dtype(x.dtype))) for k in ("x_min", "x_max"))
    return x.like(b.Clip(x.value, lo, hi))


# ---------------------------------------------------------------- dtypes and "like"


@keras_op("Cast", reads=("dtype",))
def op_cast(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.cast(x, dtype)``."""
    return _cast(b, xs[0], _dtype(cfg["dtype"]))


def _cast(b: GraphBuilder, x: KTensor, dtype: str) -> KTensor:
    return x.like(b.Cast(x.value, to=_onnx_dtype(dtype)), dtype=dtype)


@keras_op("ConvertToTensor", reads=("dtype",), defaults={"sparse": None, "ragged": None})
def op_convert_to_tensor(b: GraphBuilder, cfg: Cfg, w: LayerWeights,
                         xs: list[KTensor]) -> KTensor:
    """``ops.convert_to_tensor(x[, dtype])``: the identity or a cast."""
    x = xs[0]
    if cfg.get("dtype") is None or _dtype(cfg["dtype"]) == x.dtype:
        return x
    return _cast(b, x, _dtype(cfg["dtype"]))


@keras_op("ZerosLike", "OnesLike", reads=("dtype",))
def op_fill_like(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.zeros_like`` / ``ops.ones_like``: a constant broadcast to ``x``'s shape."""
    x = xs[0]
    dtype = _dtype(cfg["dtype"]) if cfg.get("dtype") is not None else x.dtype
    fill = 0 if cfg["_op"] == "ZerosLike" else 1
    v = b.Expand(b.const(np.asarray(fill, np.dtype(dtype))), b.Shape(last(b, x)))
    return _t(x, v, dtype=dtype)


@keras_op("Where")
def op_where(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.where(condition, x1, x2)``."""
    if len(xs) != 3:
        raise LayerUnsupported(f"{len(xs)} operands (needs condition, x1, x2)")
    cond, a, c = xs
    a, c = _match_float(b, [a, c])
    cv = last(b, cond) if cond.dtype == "bool" else b.Cast(last(b, cond), to=9)
    rank = max(x.rank for x in xs)
    return KTensor(b.Where(cv, last(b, a), last(b, c)), rank, LAST, a.dtype)


# ---------------------------------------------------------------- shapes


@keras_op("ExpandDims", reads=("axis",))
def op_expand_dims(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.expand_dims(x, axis)``."""
    x = xs[0]
    axes = _axes(cfg["axis"], x.rank + (len(cfg["axis"]) if isinstance(cfg["axis"], list)
                                        else 1))
    return _t(x, b.Unsqueeze(last(b, x), const_i(b, axes)), x.rank + len(axes))


@keras_op("Squeeze", reads=("axis",))
def op_squeeze(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.squeeze(x, axis)`` (an explicit axis: the rank must be known)."""
    x = xs[0]
    if cfg.get("axis") is None:
        raise LayerUnsupported("axis=None (the squeezed axes depend on the shape)")
    axes = _axes(cfg["axis"], x.rank)
    return _t(x, b.Squeeze(last(b, x), const_i(b, axes)), x.rank - len(axes))


@keras_op("Reshape", reads=("newshape",))
def op_reshape(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.reshape(x, newshape)`` (the batch axis included; -1 allowed once)."""
    x, shape = xs[0], cfg["newshape"]
    if not isinstance(shape, list) or not all(isinstance(d, int | None) for d in shape):
        raise LayerUnsupported(f"newshape={shape!r}")
    dims = [-1 if d is None else d for d in shape]
    return _t(x, b.Reshape(last(b, x), const_i(b, dims), allowzero=0), len(dims))


@keras_op("Transpose", reads=("axes",))
def op_transpose(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.transpose(x, axes)`` (None reverses the axes)."""
    x = xs[0]
    axes = cfg.get("axes")
    perm = list(range(x.rank))[::-1] if axes is None else [a % x.rank for a in axes]
    return _t(x, b.Transpose(last(b, x), perm=perm))


@keras_op("Swapaxes", reads=("axis1", "axis2"))
def op_swapaxes(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.swapaxes(x, axis1, axis2)``."""
    x = xs[0]
    perm = list(range(x.rank))
    i, j = _axes(cfg["axis1"], x.rank)[0], _axes(cfg["axis2"], x.rank)[0]
    perm[i], perm[j] = perm[j], perm[i]
    return _t(x, b.Transpose(last(b, x), perm=perm))


@keras_op("Concatenate", reads=("axis",))
def op_concatenate(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.concatenate([x, y], axis)``."""
    axis = _axes(cfg.get("axis", 0), xs[0].rank)[0]
    xs = _match_float(b, xs)
    return _t(xs[0], b.Concat(*[last(b, x) for x in xs], axis=axis))


@keras_op("Stack", reads=("axis",))
def op_stack(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.stack([x, y], axis)``."""
    axis = _axes(cfg.get("axis", 0), xs[0].rank + 1)[0]
    parts = [b.Unsqueeze(last(b, x), const_i(b, [axis])) for x in _match_float(b, xs)]
    return _t(xs[0], b.Concat(*parts, axis=axis), xs[0].rank + 1)


@keras_op("BroadcastTo", reads=("shape",))
def op_broadcast_to(b: GraphBuilder, cfg: Cfg, w: LayerWeights,
                    xs: list[KTensor]) -> KTensor:
    """``ops.broadcast_to(x, shape)`` with a constant shape."""
    shape = cfg["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        raise LayerUnsupported(f"shape={shape!r}")
    return _t(xs[0], b.Expand(last(b, xs[0]), const_i(b, shape)), len(shape))


@keras_op("Tile", reads=("repeats",))
def op_tile(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.tile(x, repeats)`` with one repeat per axis."""
    x, reps = xs[0], cfg["repeats"]
    reps = reps if isinstance(reps, list) else [reps]
    if len(reps) != x.rank or not all(isinstance(r, int) for r in reps):
        raise LayerUnsupported(f"repeats={reps!r} for a rank-{x.rank} input")
    return _t(x, b.Tile(last(b, x), const_i(b, reps)))


# ---------------------------------------------------------------- reductions

_REDUCE = {"Sum": "ReduceSum", "Mean": "ReduceMean", "Max": "ReduceMax", "Min": "ReduceMin",
           "Amax": "ReduceMax", "Amin": "ReduceMin", "Prod": "ReduceProd",
           "Any": "ReduceMax", "All": "ReduceMin", "Logsumexp": "ReduceLogSumExp"}


@keras_op(*_REDUCE, reads=("axis", "keepdims"), defaults={"initial": None, "dtype": None})
def op_reduce(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Reductions over ``axis`` (``any``/``all`` reduce the bool tensor as numbers)."""
    cls, x = str(cfg["_op"]), xs[0]
    axes = _axes(cfg.get("axis"), x.rank)
    keep = bool(cfg.get("keepdims", False))
    v = last(b, x)
    logical = cls in ("Any", "All")
    if logical or (x.dtype == "bool") or (cls in ("Mean", "Logsumexp")
                                          and not x.dtype.startswith("float")):
        v = b.Cast(b.Cast(v, to=9), to=1) if logical else b.Cast(v, to=1)
    y = b.op(_REDUCE[cls], [v, const_i(b, axes)], keepdims=int(keep))
    rank = x.rank if keep else x.rank - len(axes)
    if logical:
        return KTensor(b.Cast(y, to=9), rank, LAST, "bool")
    dtype = "float32" if x.dtype == "bool" or (cls in ("Mean", "Logsumexp")
                                                and not x.dtype.startswith("float")) else x.dtype
    return KTensor(y, rank, LAST, dtype)


@keras_op("Argmax", "Argmin", reads=("axis", "keepdims"))
def op_argmax(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.argmax(x, axis)`` (int32 as Keras; an axis is required)."""
    x = xs[0]
    if cfg.get("axis") is None:
        raise LayerUnsupported("axis=None (argmax of the flattened tensor)")
    axis = _axes(cfg["axis"], x.rank)[0]
    keep = bool(cfg.get("keepdims", False))
    op = "ArgMax" if cfg["_op"] == "Argmax" else "ArgMin"
    y = b.Cast(b.op(op, [last(b, x)], axis=axis, keepdims=int(keep)), to=6)
    return KTensor(y, x.rank if keep else x.rank - 1, LAST, "int32")


# ---------------------------------------------------------------- linear algebra, nn


@keras_op("Matmul")
def op_matmul(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.matmul(x, y)`` (numpy broadcasting of the batch axes)."""
    a, c = _match_float(b, _two(xs))
    if a.rank < 2 or c.rank < 2:
        raise LayerUnsupported(f"operands of rank {a.rank} and {c.rank} (needs >= 2)")
    return KTensor(b.MatMul(last(b, a), last(b, c)), max(a.rank, c.rank), LAST, a.dtype)


@keras_op("Softmax", "LogSoftmax", reads=("axis",))
def op_softmax(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``ops.softmax(x, axis)`` / ``ops.log_softmax`` over one axis."""
    x = xs[0]
    axes = _axes(cfg.get("axis", -1), x.rank)
    if len(axes) != 1:
        raise LayerUnsupported(f"axis={cfg.get('axis')!r} (one axis is supported)")
    op = "Softmax" if cfg["_op"] == "Softmax" else "LogSoftmax"
    return _t(x, b.op(op, [last(b, x)], axis=axes[0]))


_WHOLE = {"slice": [None, None, None]}
_END = np.iinfo(np.int64).max


def _expand_key(key: list[Any], rank: int) -> list[Any]:
    """The index with its ellipsis (or the missing trailing axes) as whole-axis slices."""
    real = sum(1 for k in key if k is not None and k != "...")
    if key.count("...") > 1 or real > rank:
        raise LayerUnsupported(f"index {key!r} for a rank-{rank} input")
    fill = [_WHOLE] * (rank - real)
    if "..." in key:
        i = key.index("...")
        return [*key[:i], *fill, *key[i + 1:]]
    return [*key, *fill]


@keras_op("GetItem", call_kwargs=("key",))
def op_get_item(b: GraphBuilder, cfg: Cfg, w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """``x[...]`` with constant ints, slices, ``...`` and ``None`` (new axes)."""
    x = xs[0]
    key = (cfg.get("_call_kwargs") or {}).get("key")
    if key is None:
        const = xs[1].value.const_value if len(xs) == 2 else None
        if const is None:
            raise LayerUnsupported("an index that is a tensor")
        key = [int(k) for k in np.asarray(const.numpy()).reshape(-1)]  # x[0], x[0, 1]
    items = _expand_key(list(key) if isinstance(key, list) else [key], x.rank)
    starts, ends, axes, steps, drop, new = [], [], [], [], [], []
    axis = pos = 0
    for k in items:
        if k is None:
            new.append(pos)
            pos += 1
            continue
        if isinstance(k, int):
            starts.append(k)
            ends.append(k + 1 if k != -1 else _END)
            steps.append(1)
            axes.append(axis)
            drop.append(axis)
        elif k["slice"] != _WHOLE["slice"]:
            start, stop, step = k["slice"]
            if step is not None and step <= 0:
                raise LayerUnsupported(f"slice step {step}")
            starts.append(0 if start is None else start)
            ends.append(_END if stop is None else stop)
            steps.append(1 if step is None else step)
            axes.append(axis)
            pos += 1
        else:
            pos += 1
        axis += 1
    v = last(b, x)
    if axes:
        v = b.Slice(v, const_i(b, starts), const_i(b, ends), const_i(b, axes),
                    const_i(b, steps))
    if drop:
        v = b.Squeeze(v, const_i(b, drop))
    if new:
        v = b.Unsqueeze(v, const_i(b, new))
    return _t(x, v, x.rank - len(drop) + len(new))


# an .h5 file saves no module: the config parser tells operation nodes by their class name
OPERATION_CLASSES.update(k[len("ops."):] for k in LAYERS if k.startswith("ops."))
