"""Small graph-editing helpers shared by the passes in this folder (onnx_ir + numpy only)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.ir.builder import FUSED_KEY, SOURCE_KEY


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of ``value`` if it is a constant (initializer), else None."""
    if value is None or value.const_value is None:
        return None
    return np.asarray(value.const_value.numpy())


def new_const(graph: ir.Graph, array: np.ndarray, name: str) -> ir.Value:
    """Register ``array`` as a new initializer with a graph-unique name derived from ``name``."""
    name = unique_name(graph, name)
    arr = np.asarray(array, order="C")
    value = ir.Value(
        name=name,
        shape=ir.Shape(list(arr.shape)),
        type=ir.TensorType(ir.DataType.from_numpy(arr.dtype)),
        const_value=ir.tensor(arr, name=name),
    )
    graph.register_initializer(value)
    return value


#: derived constants with more elements than this are computed when read (written)
LAZY_DERIVED_FROM = 1 << 16


def derived_const(graph: ir.Graph, source: ir.Value,
                  compute: Callable[[np.ndarray], np.ndarray], name: str) -> ir.Value:
    """A new initializer ``compute(source)`` of the same shape and dtype as the constant
    ``source`` (a weight scaled by a folded BatchNorm).

    A large one is an ``ir.LazyTensor`` that reads ``source`` and computes each time it is
    read, so a folded copy of a big model's weights is never held: the writer computes and
    writes one tensor at a time (``source`` may be a view of the input file's pages).

    Args:
        graph: the graph to register the initializer in.
        source: a constant value (its ``const_value`` is read, never kept as an array).
        compute: source array -> derived array (same shape and dtype).
        name: base name of the new initializer.

    Returns:
        The new initializer's value.
    """
    tensor = source.const_value
    assert tensor is not None
    if tensor.size <= LAZY_DERIVED_FROM:
        return new_const(graph, compute(np.asarray(tensor.numpy())), name)
    dtype, shape = tensor.dtype, list(tensor.shape.numpy())

    def evaluate() -> ir.TensorProtocol:
        out = compute(np.asarray(tensor.numpy()))
        assert list(out.shape) == shape and ir.DataType.from_numpy(out.dtype) == dtype
        return ir.tensor(out)

    name = unique_name(graph, name)
    lazy = ir.LazyTensor(evaluate, dtype=dtype, shape=ir.Shape(shape), name=name)
    value = ir.Value(name=name, shape=ir.Shape(shape), type=ir.TensorType(dtype),
                     const_value=lazy)
    graph.register_initializer(value)
    return value


def unique_name(graph: ir.Graph, hint: str) -> str:
    """A name not yet used by any value of ``graph``."""
    used: set[str] | None = graph.meta.get("_modelconv_names")
    if used is None:
        used = {v.name for v in _all_values(graph) if v.name}
        graph.meta["_modelconv_names"] = used
        graph.meta["_modelconv_next"] = {}
    # per-hint next suffix: the n-th "perm" costs O(1), not n probes
    following: dict[str, int] = graph.meta["_modelconv_next"]
    name, i = hint, following.get(hint, 1)
    if name in used:
        name = f"{hint}_{i}"
    while name in used:
        i += 1
        name = f"{hint}_{i}"
    following[hint] = i
    used.add(name)
    return name


def _all_values(graph: ir.Graph) -> list[ir.Value]:
    values = list(graph.inputs) + list(graph.initializers.values())
    for node in graph:
        values.extend(node.outputs)
    return values


def make_node(
    graph: ir.Graph,
    op_type: str,
    inputs: Sequence[ir.Value | None],
    attrs: dict[str, Any] | None,
    *,
    like: ir.Node | None,
    out_name: str,
    shape: Sequence[int] | None,
    dtype: ir.DataType | None,
    domain: str = "",
) -> ir.Node:
    """A node (not yet inserted) whose one output has a fresh name, ``shape`` and ``dtype``."""
    meta = None
    if like is not None and SOURCE_KEY in like.metadata_props:
        meta = {SOURCE_KEY: like.metadata_props[SOURCE_KEY]}
    node = ir.node(op_type, list(inputs), attributes=attrs or {}, domain=domain,
                   name=unique_name(graph, out_name), metadata_props=meta)
    out = node.outputs[0]
    out.name = unique_name(graph, out_name)
    if shape is not None:
        out.shape = ir.Shape(list(shape))
    if dtype is not None:
        out.type = ir.TensorType(dtype)
    return node


def static_shape(value: ir.Value | None) -> list[int] | None:
    """The shape of ``value`` as ints, or None if unknown or symbolic."""
    if value is None or value.shape is None:
        return None
    dims: list[int] = []
    for d in value.shape:
        if not isinstance(d, int):
            return None
        dims.append(int(d))
    return dims


def replace_value(graph: ir.Graph, old: ir.Value, new: ir.Value) -> None:
    """Route every use of ``old`` (including graph outputs) to ``new``, which takes its name.

    Used when ``new`` now computes what ``old`` held (a fused op's output replacing the
    activation's), so the tensor keeps the name the verifier knows it by, and ``new``'s
    producer takes over the source layer of ``old``'s producer: the fused op's output is
    that layer's output, which is where localisation must compare it.
    """
    old_prod, new_prod = old.producer(), new.producer()
    source = old_prod.metadata_props.get(SOURCE_KEY) if old_prod is not None else None
    if source and new_prod is not None:
        absorbed = new_prod.metadata_props.get(SOURCE_KEY)
        if absorbed and absorbed != source:
            earlier = new_prod.metadata_props.get(FUSED_KEY)
            new_prod.metadata_props[FUSED_KEY] = f"{earlier},{absorbed}" if earlier else absorbed
        new_prod.metadata_props[SOURCE_KEY] = source
    old_name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    if old_name:
        old.name = unique_name(graph, f"{old_name}__replaced")
        new.name = old_name


def single_consumer(value: ir.Value) -> ir.Node | None:
    """The only node reading ``value`` (None if 0 or >1 readers, or if it is a graph output)."""
    if value.is_graph_output():
        return None
    users = list(value.uses())
    if len(users) != 1:
        return None
    node: ir.Node = users[0].node
    return node


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """Attribute ``name`` of ``node`` as a Python value, or ``default``."""
    a = node.attributes.get(name)
    return default if a is None else a.value


def take_over_outputs(graph: ir.Graph, pairs: Sequence[tuple[ir.Value, ir.Value]],
                      suffix: str) -> None:
    """Make each ``new`` value stand for its ``old`` one: every use (graph outputs too), the
    name, the type and the shape move to ``new``; ``old`` is renamed ``<name><suffix>``.

    Args:
        graph: the graph both values live in.
        pairs: ``(old, new)`` pairs.
        suffix: appended to an old value's name when its new value takes that name.
    """
    for old, new in pairs:
        name = old.name
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        if name:
            old.name = unique_name(graph, f"{name}{suffix}")
            new.name = name
        new.type, new.shape = old.type, old.shape
