"""Fold DequantizeLinear of constants into float constants, remembering their quantization.

A QDQ model (onnxruntime's ``quantize_static`` / ``quantize_dynamic`` in QDQ format, or a
quantization-aware-trained export) stores weights and biases as integers read through
``DequantizeLinear``. The TFLite lowerings want constant float weights (they transpose and
reshape them), so this pass computes each constant DQ exactly as ONNX defines it and
records, under the folded value's name, the integers' scale / zero point / axis. The int8
rewrite after lowering (:mod:`modelconv.exporters.tflite.qdq`) reads them back: it stores the
weight as those integers again (checked to lie exactly on that grid) instead of choosing
scales of its own.

Before::

    W_q[64,3,7,7] int8 ─► DequantizeLinear(scale[64], zp[64], axis=0) ─► W ─► Conv

After::

    W[64,3,7,7] float (== the DQ's result) ─────────────────────────────────► Conv
    hints["W"] = WeightQuant(scale[64], zero_point[64], axis=0, dtype=int8)

Run-time DequantizeLinear / QuantizeLinear nodes (activations) are left alone: they become
TFLite DEQUANTIZE / QUANTIZE ops. DQ nodes this pass cannot evaluate exactly (block-wise,
4-bit / 2-bit / float8 inputs, non-float32 scales) are left for the lowering's check to refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import attr, const_array

#: integer dtypes whose constant DequantizeLinear is folded (numpy names)
FOLDABLE = frozenset({"int8", "uint8", "int16", "uint16", "int32"})
#: graph metadata key under which the hints are kept for the exporter
HINTS_KEY = "modelconv.qdq_weights"


@dataclass(frozen=True)
class WeightQuant:
    """How a folded constant was stored in the source: ``(q - zero_point) * scale``.

    ``axis`` is None for per-tensor parameters (``scale`` and ``zero_point`` of size 1);
    ``dynamic`` marks weights whose activations the source quantizes at run time
    (``quantize_dynamic``: LiteRT's hybrid kernels)."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    dtype: str
    dynamic: bool = False


def weight_hints(model: ir.Model) -> dict[str, WeightQuant]:
    """The hints :class:`FoldDequantizePass` recorded on ``model`` (empty if none).

    Args:
        model: a model the pass ran on.

    Returns:
        Folded value name -> its source quantization.
    """
    hints: dict[str, WeightQuant] = model.graph.meta.get(HINTS_KEY, {})
    return hints


def dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None,
               axis: int | None) -> np.ndarray:
    """ONNX DequantizeLinear of a constant: ``(q - zero_point) * scale`` in float32.

    Args:
        q: the integer data.
        scale: float32 scale, a scalar or 1-D along ``axis``.
        zero: zero point like ``scale`` (None: 0).
        axis: the quantized axis (None: per tensor).

    Returns:
        The float32 values.
    """
    shape = [1] * q.ndim
    if axis is not None and scale.size > 1:
        shape[axis] = -1
    s = scale.astype(np.float32).reshape(shape if scale.size > 1 else [])
    z = np.zeros((), np.int64) if zero is None else zero.astype(np.int64).reshape(s.shape)
    diff = q.astype(np.int64) - z
    return (diff.astype(np.float32) * s).astype(np.float32)


def _params(node: ir.Node) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None] | None:
    """(q, scale, zero point, axis) of a foldable constant DQ node, else None."""
    if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
        return None
    if int(attr(node, "block_size", 0) or 0) != 0:
        return None
    q = const_array(node.inputs[0])
    scale = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
    zero = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None \
        else None
    if len(node.inputs) > 2 and node.inputs[2] is not None and zero is None:
        return None  # a run-time zero point
    if q is None or scale is None or q.dtype.name not in FOLDABLE or scale.dtype != np.float32:
        return None
    if zero is not None and zero.dtype != q.dtype:
        return None
    axis: int | None = None
    if scale.size > 1:  # a one-element 1-D scale is per tensor (onnxruntime writes them)
        axis = int(attr(node, "axis", 1)) % max(q.ndim, 1)
        if scale.ndim != 1 or q.ndim == 0 or scale.size != q.shape[axis]:
            return None
    return q, scale, zero, axis


class FoldDequantizePass(ir.passes.InPlacePass):
    """Fold constant DequantizeLinear nodes; the hints go to ``graph.meta[HINTS_KEY]``."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold every foldable DQ of the main graph (see the module docstring)."""
        graph = model.graph
        hints: dict[str, WeightQuant] = dict(graph.meta.get(HINTS_KEY, {}))
        modified = False
        for node in list(graph):
            found = _params(node)
            if found is None:
                continue
            q, scale, zero, axis = found
            out = node.outputs[0]
            name = out.name or "dequantized"
            array = dequantize(q, scale, zero, axis)
            const = ir.Value(name=name, shape=ir.Shape(list(array.shape)),
                             type=ir.TensorType(ir.DataType.FLOAT),
                             const_value=ir.tensor(array, name=name))
            out.replace_all_uses_with(const, replace_graph_outputs=True)
            out.name = f"{name}__dequantized"
            const.name = name
            graph.remove(node, safe=True)
            graph.register_initializer(const)
            z = np.zeros(scale.size, np.int64) if zero is None else \
                zero.astype(np.int64).reshape(-1)
            hints[name] = WeightQuant(scale.astype(np.float32).reshape(-1), z, axis, q.dtype.name)
            modified = True
        graph.meta[HINTS_KEY] = hints
        return ir.passes.PassResult(model, modified)
