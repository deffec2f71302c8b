"""Merge layers (and Keras 3 functional ops of the same name): Add, Subtract, Multiply,
Average, Maximum, Minimum, Concatenate, Dot (Keras 3 operation nodes: layers_ops.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.importers.keras.common import KTensor, LayerUnsupported, keras_axis, keras_layer
from modelconv.importers.keras.tensors import LAST, common_layout, in_layout, last
from modelconv.importers.keras.weights import LayerWeights
from modelconv.ir.builder import GraphBuilder


def binary(xs: list[KTensor]) -> list[KTensor]:
    """The two operands of a binary layer/op.

    Raises:
        LayerUnsupported: it is called with another number of operands.
    """
    if len(xs) != 2:
        raise LayerUnsupported(f"{len(xs)} operands (needs 2)")
    return xs


def fold(b: GraphBuilder, xs: list[KTensor], op: str) -> KTensor:
    """Combine ``xs`` left to right with the binary ONNX ``op`` (broadcasting)."""
    layout = common_layout(xs)
    values = [in_layout(b, x, layout) for x in xs]
    y = values[0]
    for v in values[1:]:
        y = b.op(op, [y, v])
    rank = max(x.rank for x in xs)
    return KTensor(y, rank, layout if rank >= 3 else LAST, xs[0].dtype)


@keras_layer("Add", "add", consts=True)
def add(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Add -> chained Add."""
    return fold(b, xs, "Add")


@keras_layer("Subtract", "subtract", consts=True)
def subtract(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
             xs: list[KTensor]) -> KTensor:
    """Subtract (exactly two inputs)."""
    return fold(b, binary(xs), "Sub")


@keras_layer("Multiply", "multiply", consts=True)
def multiply(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
             xs: list[KTensor]) -> KTensor:
    """Multiply -> chained Mul (SE blocks broadcast (N,1,1,C))."""
    return fold(b, xs, "Mul")


@keras_layer("Maximum", consts=True)
def maximum(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """Maximum -> Max."""
    return fold(b, xs, "Max")


@keras_layer("Minimum", consts=True)
def minimum(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """Minimum -> Min."""
    return fold(b, xs, "Min")


@keras_layer("Average")
def average(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
            xs: list[KTensor]) -> KTensor:
    """Average -> Add chain times 1/n."""
    total = fold(b, xs, "Add")
    return total.like(b.Mul(total.value, b.const(np.float32(1.0 / len(xs)))))


@keras_layer("Concatenate", reads=("axis",))
def concatenate(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights,
                xs: list[KTensor]) -> KTensor:
    """Concatenate along a Keras axis (mapped into the shared layout)."""
    layout = common_layout(xs)
    rank = xs[0].rank
    axis = keras_axis(cfg.get("axis", -1), rank, layout)
    y = b.Concat(*[in_layout(b, x, layout) for x in xs], axis=axis)
    return KTensor(y, rank, layout if rank >= 3 else LAST, xs[0].dtype)


@keras_layer("Dot", reads=("axes", "normalize"))
def dot(b: GraphBuilder, cfg: dict[str, Any], w: LayerWeights, xs: list[KTensor]) -> KTensor:
    """Dot of two rank-2 tensors along axis 1 (optionally L2-normalised)."""
    axes = cfg.get("axes", -1)
    pair = axes if isinstance(axes, list | tuple) else [axes, axes]
    if [x.rank for x in binary(xs)] != [2, 2] or any(a not in (1, -1) for a in pair):
        raise LayerUnsupported(f"axes={axes!r} for rank-{xs[0].rank} inputs (supported: "
                               "rank-2 inputs along axis 1)")
    a, c = (last(b, x) for x in xs)
    if cfg.get("normalize"):
        axes = b.const(np.asarray([1], np.int64))
        a, c = (b.Div(v, b.Max(b.Sqrt(b.ReduceSumSquare(v, axes, keepdims=1)),
                               b.const(np.float32(1e-12)))) for v in (a, c))
    axes = b.const(np.asarray([1], np.int64))
    return KTensor(b.ReduceSum(b.Mul(a, c), axes, keepdims=1), 2, LAST)
