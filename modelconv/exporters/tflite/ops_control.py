"""Optional values whose presence is known when exporting: OptionalHasElement and
OptionalGetElement. TFLite has no optional (or sequence) values, so only a plain tensor or an
omitted input can be lowered: a tensor is present (True / itself), an omitted input absent
(False). Optional-typed values are refused by name."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.registry import tflite_lowering


def _optional_reason(value: ir.Value | None) -> str | None:
    if value is None or value.type is None or isinstance(value.type, ir.TensorType):
        return None
    return f"input of type {value.type} (TFLite has no optional or sequence values)"


def check_has_element(node: ir.Node) -> str | None:
    """OptionalHasElement: an omitted input or a plain tensor."""
    return _optional_reason(node.inputs[0] if node.inputs else None)


@tflite_lowering("OptionalHasElement", check=check_has_element)
def lower_has_element(ctx: LoweringContext, node: ir.Node) -> None:
    """OptionalHasElement -> the constant False (input omitted) or True (a tensor)."""
    present = bool(node.inputs) and node.inputs[0] is not None
    ctx.alias(node.outputs[0], ctx.const(np.asarray(present), "has_element"))


def check_get_element(node: ir.Node) -> str | None:
    """OptionalGetElement: a plain tensor input (an identity)."""
    value = node.inputs[0] if node.inputs else None
    if value is None:
        return "omitted input (no element to get)"
    return _optional_reason(value)


@tflite_lowering("OptionalGetElement", check=check_get_element)
def lower_get_element(ctx: LoweringContext, node: ir.Node) -> None:
    """OptionalGetElement of a tensor -> that tensor (no op)."""
    ctx.alias(node.outputs[0], ctx.inp(node, 0))
