"""Unroll a Scan whose sequence length is static into one copy of its body per step.

Before::  s0, xs -> Scan(body, num_scan_inputs=1) -> s_T, ys
After::   x_0 = Gather(xs, 0, axis)   s_1, y_0 = body(s0, x_0)
          x_1 = Gather(xs, 1, axis)   s_2, y_1 = body(s_1, x_1)   ...
          s_T = Identity(s_T)          ys = Concat(Unsqueeze(y_0), Unsqueeze(y_1), ..., axis)

For exporters without control flow (TFLite): a recurrence of T steps becomes T copies of its
body (the LinearAttention function body is such a Scan). Reverse directions read / write
the steps from the end. A Scan is left alone when a scan input's length is not static, the
length is above ``max_steps`` or the body has subgraphs of its own.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.ir.builder import SOURCE_KEY
from modelconv.passes._edit import new_const, take_over_outputs, unique_name

#: the longest sequence unrolled by default (each step copies the whole body)
MAX_STEPS = 64


class UnrollScanPass(ir.passes.InPlacePass):
    """Replace every top-graph Scan with a static length up to ``max_steps`` by its steps."""

    def __init__(self, max_steps: int = MAX_STEPS) -> None:
        super().__init__()
        self.max_steps = max_steps

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Unroll each qualifying Scan."""
        changed = False
        # Scan-8 has a batch axis and sequence_lens: not unrolled here
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
        for node in list(model.graph):
            if node.op_type == "Scan" and node.domain in ("", "ai.onnx") and opset >= 9:
                changed = _unroll(model.graph, node, self.max_steps, opset) or changed
        return ir.passes.PassResult(model, modified=changed)


def _ints(node: ir.Node, name: str, n: int) -> list[int]:
    a = node.attributes.get(name)
    return [0] * n if a is None else [int(v) for v in a.value]


def _steps(node: ir.Node, n_states: int, axes: list[int]) -> int | None:
    lengths = set()
    for value, axis in zip(node.inputs[n_states:], axes, strict=True):
        if value is None or value.shape is None:
            return None
        dims = list(value.shape)
        d = dims[axis % len(dims)] if dims else None
        if not isinstance(d, int):
            return None
        lengths.add(d)
    return lengths.pop() if len(lengths) == 1 else None


def _unroll(graph: ir.Graph, node: ir.Node, max_steps: int, opset: int) -> bool:
    body = node.attributes["body"].value if "body" in node.attributes else None
    n_scan = int(node.attributes["num_scan_inputs"].value)
    if body is None or any(n.domain not in ("", "ai.onnx") or any(
            a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
            for a in n.attributes.values()) for n in body):
        return False
    n_states = len(node.inputs) - n_scan
    in_axes = _ints(node, "scan_input_axes", n_scan)
    in_dirs = _ints(node, "scan_input_directions", n_scan)
    n_out = len(body.outputs) - n_states
    out_axes = _ints(node, "scan_output_axes", n_out)
    out_dirs = _ints(node, "scan_output_directions", n_out)
    steps = _steps(node, n_states, in_axes)
    if steps is None or not 0 < steps <= max_steps:
        return False
    meta = {SOURCE_KEY: node.metadata_props[SOURCE_KEY]} \
        if SOURCE_KEY in node.metadata_props else None
    prefix = (node.outputs[0].name if node.outputs else None) or "scan"
    new_nodes: list[ir.Node] = []

    def add(op: str, inputs: list[ir.Value | None], attrs: list[ir.Attr] | None = None,
            n: int = 1, name: str = "v") -> ir.Node:
        made = ir.Node("", op, inputs, attrs or [], num_outputs=n,
                       name=unique_name(graph, f"{prefix}/{op}"),
                       metadata_props=dict(meta) if meta else None)
        for out in made.outputs:
            out.name = unique_name(graph, f"{prefix}/{name}")
        new_nodes.append(made)
        return made

    states: list[ir.Value | None] = list(node.inputs[:n_states])
    pieces: list[list[ir.Value]] = [[] for _ in range(n_out)]
    for t in range(steps):
        value_map: dict[ir.Value, ir.Value | None] = dict(zip(body.inputs, states, strict=False))
        for k, (xs, axis, rev) in enumerate(zip(node.inputs[n_states:], in_axes, in_dirs,
                                                strict=True)):
            index = new_const(graph, np.asarray(steps - 1 - t if rev else t, np.int64),
                              f"{prefix}/step")
            value_map[body.inputs[n_states + k]] = add(
                "Gather", [xs, index], [ir.AttrInt64("axis", axis)], name=f"x{k}_{t}").outputs[0]
        for inner in body:
            copy = add(inner.op_type, [value_map.get(v, v) if v is not None else None
                                       for v in inner.inputs],
                       [ir.Attr(a.name, a.type, a.value) for a in inner.attributes.values()],
                       n=len(inner.outputs), name=f"{inner.op_type}_{t}")
            value_map.update(zip(inner.outputs, copy.outputs, strict=True))
        outs = [value_map.get(v, v) for v in body.outputs]
        states = outs[:n_states]
        for k, y in enumerate(outs[n_states:]):
            if opset >= 13:
                axes = new_const(graph, np.asarray([out_axes[k]], np.int64), f"{prefix}/axes")
                up = add("Unsqueeze", [y, axes], name=f"y{k}_{t}")
            else:  # axes as an attribute before opset 13
                up = add("Unsqueeze", [y], [ir.AttrInt64s("axes", [out_axes[k]])],
                         name=f"y{k}_{t}")
            pieces[k].append(up.outputs[0])
    results = [add("Identity", [s], name="state").outputs[0] for s in states]
    for k, parts in enumerate(pieces):
        ordered = parts[::-1] if out_dirs[k] else parts
        results.append(add("Concat", list(ordered), [ir.AttrInt64("axis", out_axes[k])],
                           name="scan_out").outputs[0])
    graph.insert_before(node, new_nodes)
    take_over_outputs(graph, list(zip(node.outputs, results, strict=True)), "__unrolled")
    graph.remove(node, safe=True)
    return True

