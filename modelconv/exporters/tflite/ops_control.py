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


def _branch_reason(graph: ir.Graph, where: str) -> str | None:
    """Why a branch body cannot be lowered inline (None when every node can)."""
    from modelconv.exporters.tflite.registry import LOWERINGS, unsupported_reason

    for sub in graph:
        if sub.op_type == "Constant":
            if "value" not in sub.attributes:
                return f"{where}: Constant without a tensor 'value'"
            continue
        if sub.domain not in ("", "ai.onnx") or sub.op_type not in LOWERINGS:
            return f"{where}: {sub.op_type} has no TFLite lowering"
        reason = unsupported_reason(sub)
        if reason is not None:
            return f"{where}: {sub.op_type} ({reason})"
        for value in sub.inputs:
            reason = _capture_reason(value, graph)
            if reason is not None:
                return f"{where}: {reason}"
    for out in graph.outputs:
        if not isinstance(out.type, ir.TensorType) or out.shape is None or not all(
                isinstance(d, int) for d in out.shape):
            return f"{where}: output '{out.name}' is not a tensor of static shape"
    return None


def _capture_reason(value: ir.Value | None, graph: ir.Graph) -> str | None:
    """Branch bodies are not seen by the layout passes (NHWC), so a branch may read only its
    own values, constants and graph inputs of rank < 4 (which keep their layout)."""
    if value is None or value.const_value is not None:
        return None
    producer = value.producer()
    if producer is not None:
        if producer.graph is graph:
            return None
        return f"reads '{value.name}' computed outside the branch"
    if value.shape is not None and len(value.shape) < 4:
        return None
    return f"reads graph input '{value.name}' of rank >= 4"


def check_if(node: ir.Node) -> str | None:
    """If: both branches lowerable inline; with a run-time condition (both are evaluated,
    then SELECT_V2) their outputs must agree in shape and dtype."""
    branches = [node.attributes.get(k) for k in ("then_branch", "else_branch")]
    if any(b is None for b in branches):
        return "missing branch"
    then_g, else_g = (b.value for b in branches)  # type: ignore[union-attr]
    cond = node.inputs[0]
    if cond is not None and cond.const_value is not None:
        taken = then_g if bool(np.asarray(cond.const_value.numpy()).reshape(-1)[0]) else else_g
        return _branch_reason(taken, "taken branch")
    for g, where in ((then_g, "then_branch"), (else_g, "else_branch")):
        reason = _branch_reason(g, where)
        if reason is not None:
            return reason
    for a, b in zip(then_g.outputs, else_g.outputs, strict=False):
        if list(a.shape or []) != list(b.shape or []) or a.dtype != b.dtype:
            return (f"run-time condition with branch outputs of different shapes or types "
                    f"({a.shape} {a.dtype} vs {b.shape} {b.dtype})")
    return None


def _lower_branch(ctx: LoweringContext, graph: ir.Graph) -> list[int]:
    """Lower every node of ``graph`` (reading outer values directly); its output tensors."""
    from modelconv.exporters.tflite.registry import LOWERINGS

    outer = ctx.node
    try:
        for sub in graph:
            ctx.node = sub
            if sub.op_type == "Constant":
                arr = np.asarray(sub.attributes["value"].value.numpy())
                ctx.alias(sub.outputs[0], ctx.const(arr, sub.outputs[0].name or "constant"))
                continue
            fn = LOWERINGS.get(sub.op_type)
            assert fn is not None  # check_if refused it otherwise
            fn(ctx, sub)
    finally:
        ctx.node = outer
    return [ctx.get(out) for out in graph.outputs]


@tflite_lowering("If", check=check_if)
def lower_if(ctx: LoweringContext, node: ir.Node) -> None:
    """If -> the taken branch inline (constant condition), else both branches inline and
    SELECT_V2(condition, then, else) per output."""
    then_g = node.attributes["then_branch"].value
    else_g = node.attributes["else_branch"].value
    cond = node.inputs[0]
    assert cond is not None
    if cond.const_value is not None:
        taken = then_g if bool(np.asarray(cond.const_value.numpy()).reshape(-1)[0]) else else_g
        for out, t in zip(node.outputs, _lower_branch(ctx, taken), strict=True):
            ctx.alias(out, t)
        return
    c = ctx.reshape(ctx.get(cond), [], "condition")
    pairs = zip(_lower_branch(ctx, then_g), _lower_branch(ctx, else_g), strict=True)
    for i, (a, b) in enumerate(pairs):
        ctx.emit("SELECT_V2", [c, a, b], [ctx.out(node, i)])
