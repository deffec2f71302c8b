"""Integer-arithmetic quantized ONNX ops rewritten into the QDQ vocabulary the TFLite path reads.

onnxruntime's QOperator format and ``quantize_dynamic`` write ops with integer arithmetic
(QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, DynamicQuantizeLinear). TFLite has
no such ops; what it has is int8 kernels fed by tensors with quantization parameters, which
:mod:`modelconv.exporters.tflite.qdq` derives from DequantizeLinear -> op -> QuantizeLinear.
So each op becomes its definition in those terms:

- ``DynamicQuantizeLinear(x) -> MatMulInteger / ConvInteger(W_q) -> Cast -> Mul(x_s * w_s)``
  (``quantize_dynamic``) becomes ``MatMul / Conv(x, W)`` with ``W = (W_q - w_zp) * w_s``
  marked *dynamic*: the TFLite file gets LiteRT's hybrid kernel with those int8 weights,
  which quantizes the activations at run time as the source does::

      x ─► DynamicQuantizeLinear ─► MatMulInteger(W_q) ─► Cast ─► Mul(x_s·w_s) ─► y
      x ─────────────────────────► MatMul(W, hints[W] = w_s, w_zp, dynamic) ──────► y

- ``QLinearMatMul / QLinearConv`` -> ``DequantizeLinear`` of each operand, the float op, and
  ``QuantizeLinear`` of the result (the int32 bias of QLinearConv dequantized with
  ``x_s * w_s``);
- ``MatMulInteger / ConvInteger`` elsewhere -> the float op on ``Cast(x) - zp`` and a Cast
  back to int32, exact while every partial sum stays below 2**24 (checked from the static
  shapes: at most :data:`EXACT_TERMS` terms of 8-bit products);
- ``DynamicQuantizeLinear`` elsewhere -> its ONNX function body (ReduceMin/Max, Div, Round,
  QuantizeLinear with a run-time scale).

A node that cannot be rewritten exactly is left in place and :func:`unsupported_reason`
says why (the TFLite support check reports it by name).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import attr, const_array, make_node, new_const, static_shape
from modelconv.passes.tflite.fold_dequantize import HINTS_KEY, WeightQuant, dequantize

INTEGER_OPS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger",
               "DynamicQuantizeLinear")
#: 8-bit products (|a - za| * |b - zb| <= 255 * 255) summed exactly in float32
EXACT_TERMS = (2**24) // (255 * 255)
_EIGHT_BIT = (ir.DataType.INT8, ir.DataType.UINT8)


def _dtype(value: ir.Value | None) -> ir.DataType | None:
    return None if value is None else value.dtype


def _terms(node: ir.Node) -> int | None:
    """Products summed per output element of MatMulInteger / ConvInteger (None: unknown)."""
    dims = static_shape(node.inputs[1])
    if dims is None:
        return None
    if node.op_type in ("MatMulInteger", "QLinearMatMul"):
        return dims[-2] if len(dims) > 1 else dims[0]
    return int(np.prod(dims[1:]))


def unsupported_reason(node: ir.Node) -> str | None:
    """Why ``node`` (one of :data:`INTEGER_OPS`) has no exact TFLite form, else None.

    Args:
        node: the node.

    Returns:
        The reason, or None when :class:`IntegerOpsPass` rewrites it.
    """
    op = node.op_type
    if op == "DynamicQuantizeLinear":
        return None if _dtype(node.inputs[0]) in (None, ir.DataType.FLOAT) else \
            "a non-float32 input"
    data = (0, 1) if op in ("MatMulInteger", "ConvInteger") else (0, 3)
    if any(_dtype(node.inputs[i]) not in _EIGHT_BIT for i in data):
        return "operands other than int8/uint8"
    if op in ("ConvInteger", "QLinearConv") and const_array(node.inputs[data[1]]) is None:
        return "a run-time filter (TFLite convolutions take constant filters)"
    if op in ("QLinearConv", "QLinearMatMul"):
        scales = [node.inputs[i] for i in (1, 4, 6)]
        if any(_dtype(s) != ir.DataType.FLOAT for s in scales):
            return "scales other than float32"
        return None
    azp = node.inputs[2] if len(node.inputs) > 2 else None
    if azp is not None and azp.shape is not None and any(d != 1 for d in azp.shape):
        return "a per-row zero point of the first operand"
    terms = _terms(node)
    if terms is None:
        return "a weight of unknown shape (exactness of the float32 sum cannot be checked)"
    if terms > EXACT_TERMS:
        return (f"{terms} products per output: the float32 accumulation TFLite would use is "
                f"exact for at most {EXACT_TERMS}")
    return None


class IntegerOpsPass(ir.passes.InPlacePass):
    """Rewrite :data:`INTEGER_OPS` (see the module docstring)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrite every supported integer op of the main graph."""
        graph = model.graph
        modified = False
        done: set[ir.Node] = set()
        for node in list(graph):  # first the quantize_dynamic patterns, then the rest
            if node.op_type in ("MatMulInteger", "ConvInteger") and node.domain in (
                    "", "ai.onnx") and _dynamic(graph, node):
                done.add(node)
                modified = True
        for node in list(graph):
            if node in done or node.domain not in ("", "ai.onnx") or \
                    node.op_type not in INTEGER_OPS or unsupported_reason(node) is not None:
                continue
            if not any(o.uses() or o.is_graph_output() for o in node.outputs):
                continue  # left dead by a pattern above
            _REWRITES[node.op_type](graph, node)
            modified = True
        return ir.passes.PassResult(model, modified)


def _replace(graph: ir.Graph, node: ir.Node, new: list[ir.Node],
             outputs: list[ir.Value]) -> None:
    """Insert ``new`` before ``node`` and give ``outputs`` its outputs' names and uses."""
    graph.insert_before(node, new)
    for old, value in zip(node.outputs, outputs, strict=True):
        name = old.name
        old.replace_all_uses_with(value, replace_graph_outputs=True)
        old.name = f"{name}__rewritten"
        value.name = name
    graph.remove(node, safe=True)


def _n(graph: ir.Graph, like: ir.Node, op: str, inputs: list[ir.Value | None],
       attrs: dict[str, object] | None = None, dtype: ir.DataType | None = None) -> ir.Node:
    return make_node(graph, op, inputs, attrs, like=like, out_name=f"{like.name or op}/{op}",
                     shape=None, dtype=dtype)


def _dynamic(graph: ir.Graph, node: ir.Node) -> bool:
    """``DynamicQuantizeLinear -> {MatMul,Conv}Integer -> Cast -> Mul(x_s * w_s)`` -> a float
    MatMul / Conv with dynamic weight hints; False (nothing changed) if it is not that."""
    x = node.inputs[0]
    dql = x.producer() if x is not None else None
    wq, wz = const_array(node.inputs[1]), const_array(node.inputs[3]) \
        if len(node.inputs) > 3 and node.inputs[3] is not None else None
    if dql is None or dql.op_type != "DynamicQuantizeLinear" or wq is None or \
            len(node.inputs) < 3 or node.inputs[2] is not dql.outputs[2]:
        return False
    users = list(node.outputs[0].uses())
    cast = users[0].node if len(users) == 1 else None
    if cast is None or cast.op_type != "Cast" or attr(cast, "to") != ir.DataType.FLOAT:
        return False
    users = list(cast.outputs[0].uses())
    mul = users[0].node if len(users) == 1 else None
    if mul is None or mul.op_type != "Mul" or node.outputs[0].is_graph_output():
        return False
    other = mul.inputs[1] if mul.inputs[0] is cast.outputs[0] else mul.inputs[0]
    scale_node = other.producer() if other is not None else None
    if scale_node is None or scale_node.op_type != "Mul":
        return False
    a, b = scale_node.inputs
    ws = const_array(b) if a is dql.outputs[1] else const_array(a) \
        if b is dql.outputs[1] else None
    axis = 1 if node.op_type == "MatMulInteger" else 0
    if ws is None or ws.ndim > 1 or (ws.size > 1 and ws.size != wq.shape[axis]):
        return False
    if node.op_type == "ConvInteger":
        ws = ws.reshape(-1)
        if ws.size > 1 and ws.size != wq.shape[0]:
            return False
    w = dequantize(wq, ws.astype(np.float32).reshape(-1) if ws.size > 1 else
                   ws.astype(np.float32), wz, axis if ws.size > 1 else None)
    weight = new_const(graph, w, f"{node.inputs[1].name}_dequantized")  # type: ignore[union-attr]
    zero = np.zeros(ws.size, np.int64) if wz is None else np.broadcast_to(
        wz.astype(np.int64).reshape(-1), (ws.size,))
    hints: dict[str, WeightQuant] = graph.meta.setdefault(HINTS_KEY, {})
    hints[weight.name or ""] = WeightQuant(ws.astype(np.float32).reshape(-1), zero,
                                           axis if ws.size > 1 else None,
                                           wq.dtype.name, dynamic=True)
    op = "MatMul" if node.op_type == "MatMulInteger" else "Conv"
    attrs = {k: v.value for k, v in node.attributes.items()}
    fl = _n(graph, node, op, [dql.inputs[0], weight], attrs, ir.DataType.FLOAT)
    _replace(graph, mul, [fl], [fl.outputs[0]])
    return True


def _rewrite_qlinear(graph: ir.Graph, node: ir.Node) -> None:
    """QLinearMatMul / QLinearConv -> DQ(x), DQ(w), the float op (+ bias), Q(y)."""
    x, xs, xz, w, ws, wz, ys, yz = (list(node.inputs) + [None] * 9)[:8]
    conv = node.op_type == "QLinearConv"
    w_rank = len(w.shape) if w is not None and w.shape is not None else 2
    w_axis = 0 if conv else w_rank - 1
    nodes = [_n(graph, node, "DequantizeLinear", [x, xs, xz], None, ir.DataType.FLOAT),
             _n(graph, node, "DequantizeLinear", [w, ws, wz], {"axis": w_axis},
                ir.DataType.FLOAT)]
    inputs: list[ir.Value | None] = [nodes[0].outputs[0], nodes[1].outputs[0]]
    if conv and len(node.inputs) > 8 and node.inputs[8] is not None:
        bs, bx = const_array(xs), const_array(ws)
        if bs is not None and bx is not None:
            prod = (bs * bx).astype(np.float32)
            scale: ir.Value = new_const(graph, prod.reshape(-1) if prod.size > 1 else
                                        prod.reshape(()), f"{node.name or 'qlinearconv'}_bscale")
        else:
            nodes.append(_n(graph, node, "Mul", [xs, ws], None, ir.DataType.FLOAT))
            scale = nodes[-1].outputs[0]
        nodes.append(_n(graph, node, "DequantizeLinear", [node.inputs[8], scale], {"axis": 0},
                        ir.DataType.FLOAT))
        inputs.append(nodes[-1].outputs[0])
    attrs = {k: v.value for k, v in node.attributes.items()} if conv else None
    nodes.append(_n(graph, node, "Conv" if conv else "MatMul", inputs, attrs,
                    ir.DataType.FLOAT))
    nodes.append(_n(graph, node, "QuantizeLinear", [nodes[-1].outputs[0], ys, yz], None,
                    _dtype(yz) or ir.DataType.UINT8))
    _replace(graph, node, nodes, [nodes[-1].outputs[0]])


def _rewrite_integer(graph: ir.Graph, node: ir.Node) -> None:
    """MatMulInteger / ConvInteger -> float op on Cast(x) - zp, then Cast to int32."""
    nodes: list[ir.Node] = []
    operands: list[ir.Value | None] = []
    for k in (0, 1):
        v = _n(graph, node, "Cast", [node.inputs[k]], {"to": ir.DataType.FLOAT},
               ir.DataType.FLOAT)
        nodes.append(v)
        zp = node.inputs[k + 2] if len(node.inputs) > k + 2 else None
        if zp is not None:
            z = _n(graph, node, "Cast", [zp], {"to": ir.DataType.FLOAT}, ir.DataType.FLOAT)
            nodes.append(z)
            zv = z.outputs[0]
            if node.op_type == "ConvInteger" and k == 1:  # per output channel: [M, 1, 1, ...]
                rank = len(node.inputs[1].shape or [0, 0, 0, 0])  # type: ignore[union-attr]
                shape = new_const(graph, np.array([-1] + [1] * (rank - 1), np.int64),
                                  "w_zero_shape")
                nodes.append(_n(graph, node, "Reshape", [zv, shape], None, ir.DataType.FLOAT))
                zv = nodes[-1].outputs[0]
            nodes.append(_n(graph, node, "Sub", [v.outputs[0], zv], None, ir.DataType.FLOAT))
        operands.append(nodes[-1].outputs[0])
    attrs = {k: v.value for k, v in node.attributes.items()}
    op = "MatMul" if node.op_type == "MatMulInteger" else "Conv"
    nodes.append(_n(graph, node, op, operands, attrs, ir.DataType.FLOAT))
    nodes.append(_n(graph, node, "Cast", [nodes[-1].outputs[0]], {"to": ir.DataType.INT32},
                    ir.DataType.INT32))
    _replace(graph, node, nodes, [nodes[-1].outputs[0]])


def _rewrite_dql(graph: ir.Graph, node: ir.Node) -> None:
    """DynamicQuantizeLinear -> its ONNX function body (uint8, range including 0)."""
    x = node.inputs[0]
    f = ir.DataType.FLOAT

    def c(value: float, name: str) -> ir.Value:
        return new_const(graph, np.array(value, np.float32), name)

    lo = _n(graph, node, "ReduceMin", [x], {"keepdims": 0}, f)
    hi = _n(graph, node, "ReduceMax", [x], {"keepdims": 0}, f)
    lo0 = _n(graph, node, "Min", [lo.outputs[0], c(0.0, "zero")], None, f)
    hi0 = _n(graph, node, "Max", [hi.outputs[0], c(0.0, "zero")], None, f)
    rng = _n(graph, node, "Sub", [hi0.outputs[0], lo0.outputs[0]], None, f)
    scale = _n(graph, node, "Div", [rng.outputs[0], c(255.0, "qmax")], None, f)
    lo_s = _n(graph, node, "Div", [lo0.outputs[0], scale.outputs[0]], None, f)
    zp_f = _n(graph, node, "Sub", [c(0.0, "zero"), lo_s.outputs[0]], None, f)
    clip = _n(graph, node, "Clip", [zp_f.outputs[0], c(0.0, "qmin"), c(255.0, "qmax")],
              None, f)
    rnd = _n(graph, node, "Round", [clip.outputs[0]], None, f)
    zp = _n(graph, node, "Cast", [rnd.outputs[0]], {"to": ir.DataType.UINT8}, ir.DataType.UINT8)
    y = _n(graph, node, "QuantizeLinear", [x, scale.outputs[0], zp.outputs[0]], None,
           ir.DataType.UINT8)
    nodes = [lo, hi, lo0, hi0, rng, scale, lo_s, zp_f, clip, rnd, zp, y]
    _replace(graph, node, nodes, [y.outputs[0], scale.outputs[0], zp.outputs[0]])


_REWRITES = {"QLinearConv": _rewrite_qlinear, "QLinearMatMul": _rewrite_qlinear,
             "MatMulInteger": _rewrite_integer, "ConvInteger": _rewrite_integer,
             "DynamicQuantizeLinear": _rewrite_dql}
