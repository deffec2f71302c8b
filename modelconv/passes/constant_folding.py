"""Fold nodes whose inputs are all constants into initializers (cheap cases only).

    Shape(x:[2,3]) ──► Gather(., 1) ──► Reshape(y, .)
    becomes
    const [3] ─────────────────────────► Reshape(y, .)

Only deterministic ops are folded, evaluated with ONNX's reference implementation so the
semantics are exactly the op's. Outputs may not outgrow the inputs (a weight Transpose or
Cast folds; ops that can blow a small input up into a huge tensor never fold).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator
from onnx_ir.passes import InPlacePass, PassResult

#: outputs up to this many elements always fold; larger ones only if no bigger than inputs
MAX_FOLD_ELEMENTS = 1 << 16
#: never evaluate nodes whose constant inputs exceed this many elements in total
MAX_INPUT_ELEMENTS = 1 << 24
_NEVER_FOLD = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "ConstantOfShape", "Expand", "Tile",
    "Range", "OneHot", "Resize", "Upsample", "Pad", "DequantizeLinear", "QuantizeLinear",
}


class FoldConstantsPass(InPlacePass):
    """Replace constant-input nodes of the default domain by their computed outputs."""

    def call(self, model: ir.Model) -> PassResult:
        """Run over the main graph in order."""
        modified = False
        graph = model.graph
        opset = model.opset_imports.get("", 21)
        outputs = set(graph.outputs)
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_FOLD:
                continue
            if any(o in outputs for o in node.outputs):
                continue
            values = _fold(node, opset)
            if values is None:
                continue
            for out, array in zip(node.outputs, values, strict=True):
                name = out.name or "folded"
                const = ir.Value(name=name, shape=ir.Shape(array.shape),
                                 type=ir.TensorType(ir.DataType.from_numpy(array.dtype)))
                const.const_value = ir.tensor(array, name=name)
                out.replace_all_uses_with(const)
                out.name = None
                graph.register_initializer(const)
            graph.remove(node, safe=True)
            modified = True
        return PassResult(model, modified)


def _fold(node: ir.Node, opset: int) -> list[np.ndarray] | None:
    if node.op_type == "Shape":
        return _fold_shape(node)
    inputs: list[np.ndarray | None] = []
    for value in node.inputs:
        if value is None:
            inputs.append(None)
            continue
        tensor = value.const_value
        if tensor is None:
            return None
        inputs.append(tensor.numpy())
    total = sum(a.size for a in inputs if a is not None)
    if total > MAX_INPUT_ELEMENTS:
        return None
    if not inputs and node.op_type != "Constant":
        return None
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
           for a in node.attributes.values()):
        return None
    try:
        proto_node = ir.serde.serialize_node(node)
        names = [i.name for i in proto_node.input]
        graph = onnx.helper.make_graph(
            [proto_node], "fold",
            [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
             for n in dict.fromkeys(n for n in names if n)],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in proto_node.output],
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        feeds = {n: a for n, a in zip(names, inputs, strict=True) if n and a is not None}
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:
        return None
    out = [np.asarray(r) for r in results]
    limit = max(MAX_FOLD_ELEMENTS, total)
    if any(r.size > limit or r.dtype == object for r in out):
        return None
    return out


def _fold_shape(node: ir.Node) -> list[np.ndarray] | None:
    value = node.inputs[0]
    if value is None or value.shape is None:
        return None
    dims = list(value.shape)
    if not all(isinstance(d, int) for d in dims):
        return None
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(dims))
    return [np.asarray(dims[start:end] if end is not None else dims[start:], dtype=np.int64)]
