"""Recognise the exact-erf GELU pattern exported by PyTorch and replace it with one Gelu.

Before::  x -> Div(sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5) -> y
          (also Mul(1/sqrt 2) instead of Div, and 0.5 applied to x first)
After::   x -> Gelu -> y
"""

from __future__ import annotations

import math

import onnx_ir as ir

from modelconv.passes._edit import (
    const_array,
    make_node,
    replace_value,
    single_consumer,
    static_shape,
)


class FuseGeluPass(ir.passes.InPlacePass):
    """Replace erf-based GELU subgraphs by the ONNX Gelu op (opset 20+)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fuse every matching pattern."""
        graph = model.graph
        changed = False
        for erf in list(graph):
            if erf.op_type != "Erf" or erf.domain != "" or erf.graph is None:
                continue
            match = _match(erf)
            if match is None:
                continue
            x, out, dead = match
            gelu = make_node(graph, "Gelu", [x], None, like=erf, out_name=f"{out.name}_gelu",
                             shape=static_shape(out), dtype=out.dtype)
            graph.insert_before(erf, gelu)
            replace_value(graph, out, gelu.outputs[0])
            graph.remove(dead, safe=False)
            changed = True
        return ir.passes.PassResult(model, modified=changed)


def _scalar(value: ir.Value | None) -> float | None:
    arr = const_array(value)
    return float(arr) if arr is not None and arr.size == 1 else None


def _other(node: ir.Node, value: ir.Value) -> ir.Value | None:
    ins = list(node.inputs)
    if len(ins) != 2 or value not in ins:
        return None
    return ins[1] if ins[0] is value else ins[0]


def _close(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-4 * max(1.0, abs(b))


def _match(erf: ir.Node) -> tuple[ir.Value, ir.Value, list[ir.Node]] | None:
    scaled = erf.inputs[0]
    pre = scaled.producer() if scaled is not None else None
    if pre is None or scaled is None or single_consumer(scaled) is not erf:
        return None
    divisor = {"Div": math.sqrt(2), "Mul": 1 / math.sqrt(2)}.get(pre.op_type)
    if divisor is None or not _close(_scalar(pre.inputs[1]), divisor):
        return None
    x = pre.inputs[0]
    add = single_consumer(erf.outputs[0])
    if x is None or add is None or add.op_type != "Add":
        return None
    if not _close(_scalar(_other(add, erf.outputs[0])), 1.0):
        return None
    mul = single_consumer(add.outputs[0])
    if mul is None or mul.op_type != "Mul":
        return None
    partner = _other(mul, add.outputs[0])
    if partner is x:  # (x * (1 + erf)) * 0.5
        last = single_consumer(mul.outputs[0])
        if last is None or last.op_type != "Mul":
            return None
        if not _close(_scalar(_other(last, mul.outputs[0])), 0.5):
            return None
        return x, last.outputs[0], [last, mul, add, erf, pre]
    half = partner.producer() if partner is not None else None  # (x * 0.5) * (1 + erf)
    if half is None or half.op_type != "Mul" or partner is None:
        return None
    if _other(half, x) is None or not _close(_scalar(_other(half, x)), 0.5):
        return None
    if single_consumer(partner) is not mul:
        return None
    return x, mul.outputs[0], [mul, half, add, erf, pre]


