"""See a MatMul whose batch dims were flattened into one (``bmm`` / ``mm`` / ``addmm`` form)
whole again.

torch's ``matmul`` (and ``linear``) decompose into broadcasting Expands, Reshapes that
flatten the batch dims into one, a 3-D (or 2-D) MatMul or Gemm and a Reshape back: a ``.pt2``
program after ``run_decompositions()`` holds that, so does an ONNX file exported from one
(the fast capture did, before it recorded ``matmul`` whole)::

    q[B, H, N, K] -> Expand[B, H, N, K] -> Reshape[B*H, N, K] ─┐
    k[B, H, K, M] -> Expand[B, H, K, M] -> Reshape[B*H, K, M] ─┴> MatMul -> Reshape[B, H, N, M]

    x[B, N, K] -> Reshape[B*N, K] -> MatMul(W[K, M]) -> Reshape[B, N, M]
    x[B, N, K] -> Reshape[B*N, K] -> Gemm(W, b) -> Reshape[B, N, M]        (addmm: a Linear)

ONNX's MatMul broadcasts its batch dims itself, so both are one MatMul of the unflattened
operands::

    q, k -> MatMul -> [B, H, N, M]        x -> MatMul(W) [-> Add(b)] -> [B, N, M]

The layout pass needs that form: it lets a MatMul read operands whose batch dims are
permuted (an attention's heads split off by one shared Transpose, ``adj_y`` for
``k.transpose(-2, -1)``); a flattening Reshape of a permuted tensor would cost a TRANSPOSE
per operand. ONNX-valid; run before :class:`~.nhwc.NhwcLayoutPass` (which calls it).
"""

from __future__ import annotations

import math

import onnx_ir as ir

from modelconv.passes._edit import (
    attr,
    const_array,
    new_const,
    static_shape,
    take_over_outputs,
    unique_name,
)


class UnflattenBatchMatMulPass(ir.passes.InPlacePass):
    """Rewrite flattened-batch MatMuls (``bmm`` / ``mm`` / ``addmm`` form) as one broadcasting
    MatMul (and a Gemm's bias Add)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite every eligible MatMul / Gemm of ``model.graph``."""
        graph = model.graph
        changed = False
        for node in list(graph):
            if (_onnx(node, "MatMul") and len(node.inputs) == 2) or _plain_gemm(node):
                changed |= _unflatten(graph, node)
        return ir.passes.PassResult(model, modified=changed)


def _onnx(node: ir.Node | None, op: str) -> bool:
    return node is not None and node.op_type == op and node.domain in ("", "ai.onnx")


def _plain_gemm(node: ir.Node) -> bool:
    """A Gemm that is ``A @ B' + c`` (``addmm``): ``A`` not transposed, a constant ``B`` when
    transposed, unit alpha / beta and a bias broadcast along the rows."""
    if not _onnx(node, "Gemm") or attr(node, "transA", 0) or attr(node, "alpha", 1.0) != 1.0 \
            or attr(node, "beta", 1.0) != 1.0 or len(node.inputs) < 2:
        return False
    if attr(node, "transB", 0) and const_array(node.inputs[1]) is None:
        return False
    c = node.inputs[2] if len(node.inputs) > 2 else None
    return c is None or ((arr := const_array(c)) is not None and arr.ndim <= 2
                         and arr.shape[:-1] in ((), (1,)))


def _reshape_source(v: ir.Value | None) -> ir.Value | None:
    """The input of the Reshape producing ``v``, or None."""
    node = v.producer() if v is not None else None
    return node.inputs[0] if _onnx(node, "Reshape") and node is not None else None


def _broadcast(a: list[int], b: list[int]) -> list[int] | None:
    """numpy broadcasting of two shapes (None when they do not broadcast)."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return out[::-1]


def _operands(a: ir.Value, b: ir.Value, out: list[int], target: list[int]
              ) -> tuple[ir.Value, ir.Value] | None:
    """The unflattened operands of ``MatMul(a, b) -> out`` reshaped to ``target``, or None."""
    batch = target[:-2]
    sa, sb = static_shape(a), static_shape(b)
    if sa is None or sb is None:
        return None
    if len(out) == 2:  # mm form: [prod(batch) * N, K] @ [K, M]
        x = _reshape_source(a)
        sx = static_shape(x)
        if x is None or sx is None or len(sb) != 2 or sx[:-1] != target[:-1] \
                or sx[-1] != sa[-1]:
            return None
        return x, b
    if len(out) != 3 or len(sa) != 3 or len(sb) != 3:
        return None
    xa, xb = _reshape_source(a), _reshape_source(b)
    shape_a, shape_b = static_shape(xa), static_shape(xb)
    if xa is None or xb is None or shape_a is None or shape_b is None or \
            shape_a[:-2] != batch or shape_b[:-2] != batch or \
            shape_a[-2:] != sa[-2:] or shape_b[-2:] != sb[-2:]:
        return None
    # the broadcasting Expands are MatMul's own broadcasting: skip them when it gives `batch`
    ya, yb = _expand_source(xa), _expand_source(xb)
    sya, syb = static_shape(ya), static_shape(yb)
    if ya is not None and yb is not None and sya is not None and syb is not None and \
            _broadcast(sya[:-2], syb[:-2]) == batch:
        return ya, yb
    return xa, xb


def _expand_source(x: ir.Value) -> ir.Value | None:
    """The input of the Expand producing ``x`` when it keeps the two matrix dims, or None."""
    node = x.producer()
    if not _onnx(node, "Expand") or node is None:
        return None
    y = node.inputs[0]
    sy, sx = static_shape(y), static_shape(x)
    if y is None or sy is None or sx is None or len(sy) < 2 or sy[-2:] != sx[-2:]:
        return None
    return y


def _unflatten(graph: ir.Graph, node: ir.Node) -> bool:
    """Rewrite one MatMul whose every reader is a Reshape restoring its batch dims."""
    a, b = node.inputs[:2]
    y = node.outputs[0]
    out = static_shape(y)
    if a is None or b is None or out is None or y.is_graph_output() or not y.uses():
        return False
    readers = [u.node for u in y.uses()]
    targets = [static_shape(r.outputs[0]) if _onnx(r, "Reshape") and u.idx == 0 else None
               for r, u in zip(readers, y.uses(), strict=True)]
    target = targets[0]
    if target is None or any(t != target for t in targets) or len(target) < len(out) or \
            target[-1] != out[-1] or math.prod(target) != math.prod(out) or len(target) < 3:
        return False
    got = _operands(a, b, out, target)
    if got is None:
        return False
    result = _emit(graph, node, *got, target)
    first, *rest = readers
    take_over_outputs(graph, [(first.outputs[0], result)], "_flat")
    for r in rest:
        r.outputs[0].replace_all_uses_with(result, replace_graph_outputs=True)
    for dead in (*readers, node):
        graph.remove(dead, safe=True)
    for v in (a, b):
        _remove_if_unused(graph, v.producer())
    return True


def _emit(graph: ir.Graph, node: ir.Node, a: ir.Value, b: ir.Value,
          shape: list[int]) -> ir.Value:
    """``MatMul(a, b)`` before ``node``, plus the bias Add of a Gemm; the result value."""
    meta = dict(node.metadata_props)
    bias = node.inputs[2] if node.op_type == "Gemm" and len(node.inputs) > 2 else None
    if node.op_type == "Gemm" and attr(node, "transB", 0):
        w = const_array(b)
        assert w is not None  # _plain_gemm
        b = new_const(graph, w.T, f"{b.name}_t")
    mm = ir.node("MatMul", [a, b], name=node.name, metadata_props=meta)
    graph.insert_before(node, mm)
    out = mm.outputs[0]
    out.type, out.shape = node.outputs[0].type, ir.Shape(shape)
    out.name = unique_name(graph, f"{node.name}_unflat")
    if bias is None:
        return out
    add = ir.node("Add", [out, bias], name=unique_name(graph, f"{node.name}_bias"),
                  metadata_props=meta)
    graph.insert_before(node, add)
    return add.outputs[0]


def _remove_if_unused(graph: ir.Graph, node: ir.Node | None) -> None:
    """Remove ``node`` (a flattening Reshape) and then its Expand when nothing reads them."""
    while node is not None and node.op_type in ("Reshape", "Expand") and node.graph is graph \
            and not any(o.uses() or o.is_graph_output() for o in node.outputs):
        src = node.inputs[0].producer() if node.inputs[0] is not None else None
        graph.remove(node, safe=True)
        node = src
