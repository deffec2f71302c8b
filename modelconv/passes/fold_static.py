"""Fold everything static: nodes whose inputs are all constants, Shape/Size of static shapes.

Unlike the cleanup pipeline's ``constant_folding.FoldConstantsPass`` (which keeps ops
that could blow small inputs up into big tensors), this pass folds ConstantOfShape,
Range, Expand, Tile ... too: an exporter without a lowering for them (TFLite) needs them
gone, and their results are model constants either way.

Before::

    W[64,3,3,3] -> Transpose -> Conv        x -> Shape -> Gather(0) -> Unsqueeze -> Concat
After::

    W'[64,3,3,3] ------------> Conv        [1] (initializer) -----------------> Concat ...

Folded values become initializers that keep the name of the value they replace.
Nodes are evaluated with ``onnx.reference`` (no ML framework).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import static_shape

_NEVER = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
          "Bernoulli", "If", "Loop", "Scan"}
_MAX_ELEMENTS = 1 << 26


class FoldStaticPass(ir.passes.InPlacePass):
    """Replace statically computable nodes by initializers."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold every foldable node of the main graph, in topological order."""
        graph = model.graph
        changed = False
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER:
                continue
            values = _evaluate(node, model.opset_imports.get("", 21))
            if values is None:
                continue
            for out, arr in zip(node.outputs, values, strict=True):
                _install(graph, out, arr)
            graph.remove(node, safe=False)
            changed = True
        return ir.passes.PassResult(model, modified=changed)


def _evaluate(node: ir.Node, opset: int) -> list[np.ndarray] | None:
    if node.op_type in ("Shape", "Size") and node.inputs[0] is not None:
        shape = static_shape(node.inputs[0])
        if shape is None:
            return None
        if node.op_type == "Size":
            return [np.asarray(int(np.prod(shape)), np.int64)]
        start = node.attributes.get("start")
        end = node.attributes.get("end")
        s = start.value if start is not None else 0
        e = end.value if end is not None else len(shape)
        return [np.asarray(shape[s:e], np.int64)]
    feeds: dict[str, np.ndarray] = {}
    for v in node.inputs:
        if v is None:
            continue
        if v.const_value is None:
            return None
        feeds[v.name or ""] = np.asarray(v.const_value.numpy())
    if any(a.size > _MAX_ELEMENTS for a in feeds.values()):
        return None
    try:
        import onnx
        from onnx.reference import ReferenceEvaluator

        proto = ir.serde.serialize_node(node)
        graph = onnx.helper.make_graph(
            [proto], "fold",
            [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
             for n in feeds],
            [onnx.helper.make_tensor_value_info(o.name or "", onnx.TensorProto.UNDEFINED, None)
             for o in node.outputs],
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # an op the reference evaluator cannot run: leave it to the exporter
        return None
    return [np.asarray(r) for r in results]


def _install(graph: ir.Graph, out: ir.Value, arr: np.ndarray) -> None:
    name = out.name or "folded"
    value = ir.Value(
        name=name,
        shape=ir.Shape(list(arr.shape)),
        type=ir.TensorType(ir.DataType.from_numpy(arr.dtype)),
        const_value=ir.tensor(np.asarray(arr, order="C"), name=name),
    )
    out.replace_all_uses_with(value, replace_graph_outputs=True)
    out.name = f"{name}__folded"
    value.name = name
    if value.const_value is not None:
        value.const_value.name = name
    graph.register_initializer(value)
