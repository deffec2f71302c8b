"""Renaming a model's graph inputs and outputs (``--input-names`` / ``--output-names``)."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from modelconv.errors import ShapeError


def rename_io(model: ir.Model, input_names: Sequence[str] | None,
              output_names: Sequence[str] | None) -> None:
    """Give the graph's inputs and/or outputs the names given, in order.

    An internal value that already carries one of the new names is renamed out of the way,
    so names stay unique.

    Args:
        model: the IR model, edited in place.
        input_names: one name per graph input (None: keep them).
        output_names: one name per graph output (None: keep them).

    Raises:
        ShapeError: the count of names differs from the graph's inputs/outputs, or a
            name repeats.
    """
    graph = model.graph
    plan: list[tuple[ir.Value, str]] = []
    for what, values, names in (("input", list(graph.inputs), input_names),
                                ("output", list(graph.outputs), output_names)):
        if names is None:
            continue
        names = list(names)
        if len(names) != len(values) or len(set(names)) != len(names):
            raise ShapeError(
                f"{len(names)} {what} name(s) {names} for a model with {len(values)} "
                f"{what}(s) ({[v.name for v in values]})",
                hint=f"Give one distinct --{what}-names entry per {what}")
        plan.extend(zip(values, names, strict=True))
    if not plan:
        return
    wanted = {new for _, new in plan}
    moving = {id(v) for v, _ in plan}
    taken = _all_names(graph)
    for value in _all_values(graph):
        if value.name in wanted and id(value) not in moving:
            value.name = _fresh(value.name, taken | wanted)
            taken.add(value.name)
    for value, new in plan:
        value.name = new


def _all_values(graph: ir.Graph) -> list[ir.Value]:
    values = list(graph.inputs) + list(graph.initializers.values())
    for node in ir.traversal.RecursiveGraphIterator(graph):
        values.extend(node.outputs)
    return values


def _all_names(graph: ir.Graph) -> set[str]:
    return {v.name for v in _all_values(graph) if v.name}


def _fresh(base: str, taken: set[str]) -> str:
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"
