"""Adaptive pooling as plain ONNX ops, shared by the torch and Keras importers.

Adaptive pooling splits each spatial axis of length ``L`` into ``n`` windows, window ``i``
spanning ``[floor(i*L/n), ceil((i+1)*L/n))`` (torch's and Keras' rule). The windows may
differ in size and overlap, or repeat one element (``n > L`` upsamples), so no single
ONNX pooling op expresses them. Mean and max over a box are separable, so the pooling is
done one axis at a time, one reduction per window, concatenated; when every axis divides
evenly the whole pooling is one ``AveragePool``/``MaxPool``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from modelconv.ir.builder import GraphBuilder

#: the reduction applied over each window, per pooling kind
REDUCTIONS = {"avg": "ReduceMean", "max": "ReduceMax"}


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` window of each of ``out`` outputs over an axis of ``size``.

    Args:
        size: the input length of the axis.
        out: the number of outputs along the axis.

    Returns:
        One ``(start, end)`` pair per output.
    """
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_pool(b: GraphBuilder, x: ir.Value, sizes: Sequence[int], outs: Sequence[int],
                  kind: str) -> ir.Value:
    """Adaptive average or max pooling of an ``[N, C, *spatial]`` value.

    A 1x..x1 output is one global pooling op and evenly divided axes one strided pooling
    op; the other axes are pooled one window at a time.

    Args:
        b: the builder the nodes are emitted with.
        x: the input value, channels first.
        sizes: the static input length of each spatial axis.
        outs: the output length of each spatial axis.
        kind: ``"avg"`` or ``"max"``.

    Returns:
        The pooled value (``x`` itself when every axis keeps its length).
    """
    op = REDUCTIONS[kind]
    pool = "AveragePool" if kind == "avg" else "MaxPool"
    if all(o == 1 for o in outs):
        return b.op(f"Global{pool}", [x])
    if all(s % o == 0 for s, o in zip(sizes, outs, strict=True)):
        if list(sizes) == list(outs):
            return x
        kernel = [s // o for s, o in zip(sizes, outs, strict=True)]
        return b.op(pool, [x], kernel_shape=kernel, strides=kernel)
    v = x
    for k, (size, out) in enumerate(zip(sizes, outs, strict=True)):
        if out == size:
            continue
        axes = b.const(np.asarray([2 + k], np.int64))
        parts = [b.op(op, [b.Slice(v, b.const(np.asarray([start], np.int64)),
                                   b.const(np.asarray([end], np.int64)), axes), axes],
                      keepdims=1)
                 for start, end in adaptive_windows(size, out)]
        v = parts[0] if len(parts) == 1 else b.Concat(*parts, axis=2 + k)
    return v
