"""ONNX shape inference over the IR, in time linear in the graph's size.

    IR ──► proto (large initializers stood in for by typed graph inputs)
       ──► onnx.shape_inference ──► shapes/dtypes merged back by value name

Same behaviour as ``onnx_ir.passes.common.ShapeInferencePass`` (whose signature it keeps):
a failed inference leaves the model unchanged. onnx_ir 1.1 turns each initializer into a
graph input after checking ``initializer not in graph.inputs``, a scan of a list that grows
by one each time, so a model with 60k initializers spent minutes there; here membership is
a set lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import shape_inference as _ir_shape_inference

log = logging.getLogger(__name__)

#: initializers above this many bytes are not serialised for onnx (as in onnx_ir)
BIG_TENSOR_BYTES = 1000


class ShapeInferencePass(_ir_shape_inference.ShapeInferencePass):
    """onnx shape inference with the initializers passed as typed inputs (linear)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Infer shapes and dtypes of every value; returns whether any changed."""
        try:
            inferred = _infer_without_big_initializers(model, self._infer)
        except Exception as exc:  # onnx raises several types; the pass contract is "unchanged"
            log.warning("Shape inference failed: %s. Model is left unchanged", exc)
            return ir.passes.PassResult(model, False)
        return ir.passes.PassResult(model, merge_inferred(model, inferred))

    def _infer(self, proto: onnx.ModelProto) -> onnx.ModelProto:
        return onnx.shape_inference.infer_shapes(
            proto, check_type=self.check_type, strict_mode=self.strict_mode,
            data_prop=self.data_prop)


def merge_inferred(model: ir.Model, inferred: onnx.ModelProto) -> bool:
    """Copy the shapes/dtypes of ``inferred`` onto ``model``'s values (matched by name).

    Reads the inferred value infos directly instead of deserialising the whole inferred
    model (4 s of 6 for a 10k-node graph); graphs with subgraphs take onnx_ir's merge,
    which walks every subgraph too.

    Args:
        model: The model shape inference ran on (edited in place).
        inferred: onnx's output for it.

    Returns:
        True when any value's shape or dtype changed.
    """
    graph = model.graph
    if any(isinstance(a, ir.Attr) and a.type in (ir.AttributeType.GRAPH,
                                                 ir.AttributeType.GRAPHS)
           for node in graph for a in node.attributes.values()):
        return bool(_ir_shape_inference._merge_func(model, inferred))
    infos = {vi.name: vi for part in (inferred.graph.input, inferred.graph.value_info,
                                      inferred.graph.output) for vi in part}
    modified = False
    values = ir.convenience.create_value_mapping(graph, include_subgraphs=False)
    for name, value in values.items():
        info = infos.get(name)
        if info is None or _unchanged(value, info):
            continue
        found = ir.serde.deserialize_value_info_proto(info, None)
        if found.shape is not None and value.shape != found.shape:
            value.shape = found.shape
            modified = True
        if found.dtype is not None and value.dtype != found.dtype:
            value.dtype = found.dtype
            modified = True
    return modified


def _unchanged(value: ir.Value, info: onnx.ValueInfoProto) -> bool:
    """True when ``info`` states the static shape and dtype ``value`` already has (the
    common case of a repeated inference); anything else takes the full comparison."""
    if value.shape is None or value.dtype is None or not info.type.HasField("tensor_type"):
        return False
    tensor = info.type.tensor_type
    dims = tensor.shape.dim
    if not tensor.HasField("shape") or not all(d.HasField("dim_value") for d in dims):
        return False
    return bool(value.dtype == tensor.elem_type and value.shape == [d.dim_value for d in dims])


def _infer_without_big_initializers(
    model: ir.Model, infer: Callable[[onnx.ModelProto], onnx.ModelProto]
) -> onnx.ModelProto:
    """``infer(proto)`` of ``model`` whose initializers are also graph inputs, large ones
    without their data; ``model`` is restored afterwards whatever happens."""
    graph = model.graph
    initializers = tuple(graph.initializers.values())
    tensors = [v.const_value for v in initializers]
    original_inputs = list(graph.inputs)
    listed = set(original_inputs)
    added: list[ir.Value] = []
    removed: list[ir.Value] = []
    for value, tensor in zip(initializers, tensors, strict=True):
        if tensor is not None:
            if value.shape is None:
                value.shape = tensor.shape  # type: ignore[assignment]
            if value.dtype is None:
                value.dtype = tensor.dtype
        if value not in listed:
            listed.add(value)
            added.append(value)
        if tensor is None or tensor.nbytes > BIG_TENSOR_BYTES:
            value.const_value = None
            removed.append(value)
    for value in removed:
        graph.initializers.pop(value.name or "")
    graph.inputs.extend(added)
    try:
        return infer(ir.serde.serialize_model(model))
    finally:
        graph.inputs.clear()
        graph.inputs.extend(original_inputs)
        for value, tensor in zip(initializers, tensors, strict=True):
            if tensor is not None:
                value.const_value = tensor
        if removed:  # back in their original order, so the written file is unchanged
            for value in initializers:
                graph.initializers.pop(value.name or "", None)
            for value in initializers:
                graph.initializers.add(value)
