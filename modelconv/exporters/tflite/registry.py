"""The ONNX-op -> TFLite lowering registry: ``@tflite_lowering("Conv")``.

A lowering may come with a ``check``: a predicate ``check(node) -> str | None`` that says,
before anything is lowered, why this particular node (its attributes, constant inputs or
output use) cannot be exported. The exporter runs every check up front so that all such
problems are listed in ONE UnsupportedOpsError (together with the ops that have no lowering).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.registry import Registry

Lowering = Callable[[LoweringContext, ir.Node], None]
Check = Callable[[ir.Node], str | None]

LOWERINGS: Registry[Lowering] = Registry("tflite lowering")


def tflite_lowering(*keys: str, check: Check | None = None) -> Callable[[Lowering], Lowering]:
    """Decorator registering a lowering for ONNX op types ``keys`` (and its ``check``)."""
    return LOWERINGS.register(*keys, check=check)


def attr(node: ir.Node, name: str, default: object = None) -> object:
    """Attribute ``name`` of ``node`` (``default`` when absent)."""
    a = node.attributes.get(name)
    return default if a is None else a.value


def output_used(node: ir.Node, i: int) -> bool:
    """True when output ``i`` of ``node`` exists and is read or is a graph output."""
    if i >= len(node.outputs):
        return False
    value = node.outputs[i]
    return value is not None and bool(value.name) and (
        bool(value.uses()) or value.is_graph_output())


def unsupported_reason(node: ir.Node) -> str | None:
    """Why ``node`` cannot be lowered (None when its registered check accepts it)."""
    check = LOWERINGS.check(node.op_type)
    return None if check is None else check(node)
