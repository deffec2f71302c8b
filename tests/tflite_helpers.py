"""Helpers shared by the TFLite model tests."""

from __future__ import annotations

from pathlib import Path


def inner_transposes(path: Path) -> int:
    """TRANSPOSE ops that neither read a model input nor write a model output."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = model.subgraphs[0]
    boundary = set(graph.inputs) | set(graph.outputs)
    count = 0
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.TRANSPOSE:
            continue
        if op.inputs[0] not in boundary and op.outputs[0] not in boundary:
            count += 1
    return count
