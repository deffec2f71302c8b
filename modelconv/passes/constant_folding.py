"""Fold nodes whose inputs are all constants into initializers.

    W[64,3,3,3] ─► Transpose ─► Conv          x ─► Shape ─► Gather(0) ─► Reshape(y, .)
    becomes
    W'[64,3,3,3] ─────────────► Conv          const [1] ──────────────► Reshape(y, .)

Nodes are evaluated with ONNX's reference implementation (no ML framework), so the
semantics are exactly the op's; Shape/Size of statically shaped values fold too. Folded
values keep the name of the value they replace.

Two policies:
- default (the cleanup pipeline): an output may not outgrow the node's constant inputs
  (beyond a small allowance), and ops that can blow a small input up into a huge tensor
  (ConstantOfShape, Expand, Tile, Range, OneHot, Resize, Pad) never fold — the file stays small;
- ``allow_growth=True`` (exporters without lowerings for those ops, e.g. TFLite): they fold
  too, up to ``MAX_GROWN_ELEMENTS`` per output; their results are model constants either way.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator
from onnx_ir.passes import InPlacePass, PassResult

from modelconv.passes._edit import static_shape

#: outputs up to this many elements always fold; larger ones only if no bigger than inputs
MAX_FOLD_ELEMENTS = 1 << 16
#: never evaluate nodes whose constant inputs exceed this many elements in total
MAX_INPUT_ELEMENTS = 1 << 26
#: with allow_growth, the largest output that may be materialised
MAX_GROWN_ELEMENTS = 1 << 26
_NONDETERMINISTIC = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "DequantizeLinear", "QuantizeLinear",
}
_GROWING = {"ConstantOfShape", "Expand", "Tile", "Range", "OneHot", "Resize", "Upsample", "Pad"}


class FoldConstantsPass(InPlacePass):
    """Replace constant-input nodes of the default domain by their computed outputs."""

    def __init__(self, allow_growth: bool = False):
        super().__init__()
        self.allow_growth = allow_growth

    def call(self, model: ir.Model) -> PassResult:
        """Fold every foldable node of the main graph, in order."""
        modified = False
        graph = model.graph
        opset = model.opset_imports.get("", 21)
        skip = _NONDETERMINISTIC if self.allow_growth else _NONDETERMINISTIC | _GROWING
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or node.op_type in skip:
                continue
            values = self._fold(node, opset)
            if values is None:
                continue
            for out, array in zip(node.outputs, values, strict=True):
                _install(graph, out, array)
            graph.remove(node, safe=True)  # detaches inputs, so dead weights can go
            modified = True
        return PassResult(model, modified)

    def _fold(self, node: ir.Node, opset: int) -> list[np.ndarray] | None:
        if node.op_type in ("Shape", "Size"):
            return _fold_shape(node)
        inputs = _constant_inputs(node)
        if inputs is None:
            return None
        total = sum(a.size for a in inputs if a is not None)
        if total > MAX_INPUT_ELEMENTS:
            return None
        out = _evaluate(node, inputs, opset)
        if out is None:
            return None
        limit = MAX_GROWN_ELEMENTS if self.allow_growth else max(MAX_FOLD_ELEMENTS, total)
        if any(r.size > limit or r.dtype == object for r in out):
            return None
        return out


def _constant_inputs(node: ir.Node) -> list[np.ndarray | None] | None:
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
           for a in node.attributes.values()):
        return None
    if any(v is not None and v.const_value is None for v in node.inputs):
        return None
    # sizes from the declared shapes, before anything is read (an external 9 GB weight)
    if sum(v.const_value.size for v in node.inputs
           if v is not None and v.const_value is not None) > MAX_INPUT_ELEMENTS:
        return None
    inputs: list[np.ndarray | None] = []
    for value in node.inputs:
        if value is None or value.const_value is None:
            inputs.append(None)
        else:
            inputs.append(np.asarray(value.const_value.numpy()))
    if not inputs and node.op_type != "Constant":
        return None
    return inputs


def _evaluate(node: ir.Node, inputs: list[np.ndarray | None], opset: int
              ) -> list[np.ndarray] | None:
    try:
        proto_node = ir.serde.serialize_node(node)
        names = list(proto_node.input)
        feeds = {n: a for n, a in zip(names, inputs, strict=True) if n and a is not None}
        graph = onnx.helper.make_graph(
            [proto_node], "fold",
            [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
             for n in feeds],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in proto_node.output],
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        with np.errstate(all="ignore"):  # log(0) = -inf is a value here, not a warning
            results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # an op the reference evaluator cannot run: leave it in the graph
        return None
    return [np.asarray(r) for r in results]


def _fold_shape(node: ir.Node) -> list[np.ndarray] | None:
    dims = static_shape(node.inputs[0])
    if dims is None:
        return None
    if node.op_type == "Size":
        return [np.asarray(math.prod(int(d) for d in dims), dtype=np.int64)]
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(dims))
    return [np.asarray(dims[start:end], dtype=np.int64)]


def _install(graph: ir.Graph, out: ir.Value, array: np.ndarray) -> None:
    """Make ``array`` an initializer that takes over ``out``'s name and uses."""
    name = out.name or "folded"
    array = np.array(array, order="C")  # not ascontiguousarray: it makes scalars 1-D
    const = ir.Value(name=name, shape=ir.Shape(list(array.shape)),
                     type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    out.replace_all_uses_with(const, replace_graph_outputs=True)
    out.name = f"{name}__folded"
    const.name = name
    graph.register_initializer(const)
