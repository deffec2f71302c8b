"""Give a value of unknown shape the static shape of its shape-preserving consumer's output.

ONNX shape inference runs forwards only: a Reduce with run-time axes and keepdims=0 leaves
its output's shape unknown even when the elementwise op after it writes a graph output of
declared shape. An elementwise op of one data input has the shape of that input, so the
shape flows back::

    Before::  x[3,2,2] -> ReduceSum(axes: run-time) -> s[?] -> Log -> y[3,2]
    After::   x[3,2,2] -> ReduceSum(axes: run-time) -> s[3,2] -> Log -> y[3,2]
"""

from __future__ import annotations

import onnx_ir as ir

#: ops whose output has exactly the shape of their input 0 (one data input; CastLike's
#: second input gives only the type)
SHAPE_PRESERVING = frozenset({
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Cast", "CastLike", "Ceil",
    "Cos", "Cosh", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish",
    "Identity", "IsInf", "IsNaN", "LeakyRelu", "Log", "Mish", "Neg", "Not", "Reciprocal",
    "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt",
    "Tan", "Tanh", "ThresholdedRelu", "Celu",
})


def _static(value: ir.Value) -> bool:
    return value.shape is not None and all(isinstance(d, int) for d in value.shape)


class BackfillShapesPass(ir.passes.InPlacePass):
    """Copy static shapes backwards through shape-preserving elementwise ops."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Walk the graph from the end; returns whether any shape was set."""
        changed = False
        for node in reversed(list(model.graph)):
            if node.domain not in ("", "ai.onnx") or node.op_type not in SHAPE_PRESERVING:
                continue
            if not node.inputs or node.inputs[0] is None or not node.outputs:
                continue
            x, y = node.inputs[0], node.outputs[0]
            if _static(x) or not _static(y):
                continue
            if x.shape is not None and len(x.shape) != len(y.shape):  # type: ignore[arg-type]
                continue
            x.shape = ir.Shape(list(y.shape))  # type: ignore[arg-type]
            changed = True
        return ir.passes.PassResult(model, changed)
