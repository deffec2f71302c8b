"""Static shapes of tensors inside the Keras converter, for layers whose lowering depends on
them (adaptive pooling windows, the time steps of a convolutional recurrence, STFT frames).

The graph built so far is handed to onnx shape inference (weights as typed inputs without
their data, small int64 constants kept so shapes computed from them propagate); the
builder's nodes are serialised, not moved, so the build continues unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from modelconv.importers.keras.spec import LayerUnsupported
from modelconv.importers.keras.tensors import KTensor, last
from modelconv.ir.builder import GraphBuilder

#: int64 constants up to this many elements are passed with their data (shapes, axes)
_SMALL = 64


def _value_info(value: ir.Value) -> onnx.ValueInfoProto:
    return ir.serde.serialize_value(value)


def inferred_shape(b: GraphBuilder, value: ir.Value) -> list[int | None] | None:
    """The dims onnx shape inference finds for ``value`` (None: unknown dim), or None.

    Args:
        b: the builder holding the graph that computes ``value``.
        value: a value produced by the builder's nodes (or one of its inputs).

    Returns:
        One entry per dim (an int, or None where the dim is symbolic), or None when the
        rank is unknown.
    """
    if value.shape is not None and all(isinstance(d, int) for d in value.shape):
        return [int(d) for d in value.shape]  # type: ignore[arg-type]
    graph = onnx.GraphProto(name="shape_probe")
    graph.input.extend(_value_info(v) for v in b.inputs)
    for init in b.initializers.values():
        tensor = init.const_value
        if tensor is not None and tensor.dtype == ir.DataType.INT64 and tensor.size <= _SMALL:
            graph.initializer.append(ir.serde.serialize_tensor(tensor))
        else:
            graph.input.append(_value_info(init))
    graph.node.extend(ir.serde.serialize_node(n) for n in b.nodes)
    graph.output.append(onnx.helper.make_value_info(value.name or "", onnx.TypeProto()))
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in b.opset_imports.items()])
    model.ir_version = 10
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # onnx raises several types; an unknown shape is the answer then
        return None
    infos = {vi.name: vi for vi in (*inferred.graph.value_info, *inferred.graph.output,
                                    *inferred.graph.input)}
    info = infos.get(value.name or "")
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") else None
            for d in info.type.tensor_type.shape.dim]


def keras_shape(b: GraphBuilder, x: KTensor, what: str) -> list[int | None]:
    """``x``'s shape in Keras (channels-last) order, batch included.

    Args:
        b: the graph builder.
        x: the tensor.
        what: what needs the shape (named in the refusal).

    Returns:
        One entry per Keras dim (None where unknown).

    Raises:
        LayerUnsupported: the rank cannot be inferred.
    """
    dims = inferred_shape(b, last(b, x))
    if dims is None or len(dims) != x.rank:
        raise LayerUnsupported(f"{what} needs the input's static shape, which is unknown")
    return dims


def static_dims(b: GraphBuilder, x: KTensor, axes: list[int], what: str) -> list[int]:
    """The sizes of Keras axes ``axes`` of ``x``, which must be static.

    Raises:
        LayerUnsupported: one of them is not known before run time.
    """
    dims = keras_shape(b, x, what)
    out = [dims[a] for a in axes]
    if any(d is None for d in out):
        raise LayerUnsupported(f"{what} needs static sizes of axes {axes}, got "
                               f"{[dims[a] for a in axes]}")
    return [int(np.int64(d)) for d in out]  # type: ignore[arg-type]
