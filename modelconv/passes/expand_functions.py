"""Expand ops that an exporter cannot lower into the function body ONNX defines for them.

Many ONNX ops are *functions*: their schema carries a body of simpler ONNX ops (Attention,
RotaryEmbedding, SoftmaxCrossEntropyLoss, Swish, MeanVarianceNormalization, ...), some built
from the node's attributes and input types ("context-dependent"). That body is the op's
definition, so an exporter without a direct lowering for the op can lower the body instead.

Before::  q, k, v -> Attention(is_causal=1) -> y
After::   q, k, v -> Shape -> ... -> MatMul -> Softmax -> MatMul -> ... -> y
          (the body for the model's opset version, attribute references resolved; the
          nodes keep the expanded node's source name and record the op in EXPANDED_KEY)

Nested functions (SoftmaxCrossEntropyLoss's body calls NegativeLogLikelihoodLoss) are expanded
in later rounds once shape inference has typed the new values: see :func:`expand_functions`.
Subgraphs in a body (LinearAttention's Scan) move into the graph with it; a body whose
subgraphs refer to the function's attributes is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx
import onnx_ir as ir

from modelconv.ir.builder import SOURCE_KEY
from modelconv.passes._edit import take_over_outputs, unique_name

#: metadata key of a body's nodes: the op(s) they were expanded from ("Outer/Inner")
EXPANDED_KEY = "modelconv.expanded_from"
#: the op domains whose schemas onnx.defs knows
_DOMAINS = ("", "ai.onnx", "ai.onnx.preview")


class ExpandFunctionsPass(ir.passes.InPlacePass):
    """Replace each top-graph node for which ``expand(node)`` is true by its ONNX function
    body (nodes without a usable body are left as they are); float16 nodes for which
    ``widen(node)`` is true run their body in float32 (see :func:`_in_float32`)."""

    def __init__(self, expand: Callable[[ir.Node], bool],
                 widen: Callable[[ir.Node], bool] | None = None) -> None:
        super().__init__()
        self.expand = expand
        self.widen = widen or (lambda node: False)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Expand every selected node once (bodies are not expanded further here)."""
        changed = False
        for node in list(model.graph):
            if node.domain not in _DOMAINS or not self.expand(node):
                continue
            try:
                body = function_body(node, model.opset_imports)
            except ir.serde.SerdeError:  # a body onnx_ir cannot read: the op stays refused
                continue
            if body is None or not _clonable(body.function):
                continue
            if self.widen(node) and any(v is not None and v.dtype == ir.DataType.FLOAT16
                                        for v in node.inputs):
                node = _in_float32(model.graph, node)
                body = function_body(node, model.opset_imports)
                changed = True
            if body is not None and _inline(model, node, body):
                changed = True
        return ir.passes.PassResult(model, modified=changed)


def _in_float32(graph: ir.Graph, node: ir.Node) -> ir.Node:
    """``node`` computing on float32: float16 inputs CAST up, float16 outputs CAST back.

    A body's float16 steps each round to float16 (a Swish body: Mul, Sigmoid, Mul), so it
    is several ulps off the op's own result, which the op's definition and reference round
    once; in float32 the only rounding left is the final CAST."""
    f16, f32 = ir.DataType.FLOAT16, ir.DataType.FLOAT
    inputs: list[ir.Value | None] = []
    before = []
    for v in node.inputs:
        if v is None or v.dtype != f16:
            inputs.append(v)
            continue
        up = ir.Node("", "Cast", [v], [ir.AttrInt64("to", int(f32))], num_outputs=1,
                     name=unique_name(graph, f"{v.name}/to_float32"))
        up.outputs[0].name = unique_name(graph, f"{v.name}/float32")
        up.outputs[0].type, up.outputs[0].shape = ir.TensorType(f32), v.shape
        before.append(up)
        inputs.append(up.outputs[0])
    wide = ir.Node(node.domain, node.op_type, inputs, list(node.attributes.values()),
                   overload=node.overload, num_outputs=len(node.outputs),
                   name=unique_name(graph, f"{node.name or node.op_type}_float32"),
                   metadata_props=dict(node.metadata_props))
    after: list[tuple[ir.Value, ir.Value, ir.Node | None]] = []
    for old, new in zip(node.outputs, wide.outputs, strict=True):
        new.name = unique_name(graph, f"{old.name or 'out'}/float32")
        new.type, new.shape = (ir.TensorType(f32) if old.dtype == f16 else old.type), old.shape
        if old.dtype == f16 and (old.uses() or old.is_graph_output()):
            down = ir.Node("", "Cast", [new], [ir.AttrInt64("to", int(f16))], num_outputs=1,
                           name=unique_name(graph, f"{old.name}/to_float16"))
            after.append((old, down.outputs[0], down))
        elif old.uses() or old.is_graph_output():
            after.append((old, new, None))
    graph.insert_before(node, [*before, wide, *[d for _, _, d in after if d is not None]])
    take_over_outputs(graph, [(old, result) for old, result, _ in after], "__float16")
    graph.remove(node, safe=True)
    return wide


@dataclass
class Body:
    """An op's function body: ``outputs[i]`` is the body output standing for the node's
    output ``i`` (None: the body leaves it undefined), ``defaults`` the schema's attribute
    defaults (a body's attribute references fall back to them)."""

    function: ir.Function
    outputs: list[ir.Value | None]
    defaults: dict[str, ir.Attr]


def function_body(node: ir.Node, opsets: dict[str, int]) -> Body | None:
    """The ONNX function body of ``node`` at the model's opset version (None: no body, an
    untyped input of a context-dependent function, or no schema at that version).

    Args:
        node: the node to expand.
        opsets: the model's opset imports (domain -> version).

    Returns:
        The body, its outputs lined up with the node's.
    """
    domain = "" if node.domain == "ai.onnx" else node.domain
    version = opsets.get(domain, opsets.get("ai.onnx") if domain == "" else None)
    if version is None:
        return None
    try:
        schema = onnx.defs.get_schema(node.op_type, version, domain)
    except onnx.defs.SchemaError:
        return None
    proto = _body_proto(schema, node, version, domain)
    if proto is None or not proto.node:
        return None
    produced = set(proto.input) | {o for n in proto.node for o in n.output if o}
    names = list(proto.output)
    del proto.output[:]
    proto.output.extend(o for o in names if o in produced)
    function = ir.serde.deserialize_function(proto)
    by_name = {v.name: v for v in function.outputs}
    defaults = {name: ir.serde.deserialize_attribute(a.default_value)
                for name, a in schema.attributes.items() if a.default_value.name}
    return Body(function, [by_name.get(o) for o in names], defaults)


def _body_proto(schema: onnx.defs.OpSchema, node: ir.Node, version: int,
                domain: str) -> onnx.FunctionProto | None:
    # the versioned accessors exist at run time but not in onnx's type stubs
    plain = [v for v in schema.function_opset_versions  # type: ignore[attr-defined]
             if v <= version]
    dependent = [v for v in schema.context_dependent_function_opset_versions  # type: ignore[attr-defined]
                 if v <= version]
    if not plain and not dependent:
        return None
    proto = onnx.FunctionProto()
    if dependent and (not plain or max(dependent) >= max(plain)):
        types = [_type_proto(v) for v in node.inputs]
        if any(t is None for t in types):
            return None
        node_proto = ir.serde.serialize_node(node)
        node_proto.domain = domain
        try:
            data = schema.get_context_dependent_function_with_opset_version(  # type: ignore[attr-defined]
                max(dependent), node_proto.SerializeToString(),
                [t.SerializeToString() for t in types if t is not None])
        except Exception:  # onnx's builder refuses this node (attributes/types): no body
            return None
        proto.ParseFromString(data)
    else:
        proto.ParseFromString(
            schema.get_function_with_opset_version(max(plain)))  # type: ignore[attr-defined]
    return proto


def _type_proto(value: ir.Value | None) -> onnx.TypeProto | None:
    if value is None:
        return onnx.TypeProto()  # an omitted optional input
    if value.dtype is None:
        return None
    dims = None if value.shape is None else [d if isinstance(d, int) else None
                                             for d in value.shape]
    return onnx.helper.make_tensor_type_proto(int(value.dtype), dims)


def _subgraphs(node: ir.Node) -> list[ir.Graph]:
    graphs: list[ir.Graph] = []
    for a in node.attributes.values():
        if a.type == ir.AttributeType.GRAPH:
            graphs.append(a.value)
        elif a.type == ir.AttributeType.GRAPHS:
            graphs.extend(a.value)
    return graphs


def _clonable(body: ir.Function) -> bool:
    """False for a body whose subgraphs (Scan/Loop/If bodies) refer to the function's
    attributes: this pass resolves references on the body's own nodes only."""
    for node in body:
        for graph in _subgraphs(node):
            for inner in ir.traversal.RecursiveGraphIterator(graph):
                if any(a.is_ref() for a in inner.attributes.values()):
                    return False
    return True


def _resolved_attrs(fnode: ir.Node, given: dict[str, ir.Attr]) -> list[ir.Attr]:
    """``fnode``'s attributes with references to the caller's replaced (a reference to an
    attribute the caller leaves out and that has no default is dropped)."""
    out = []
    for a in fnode.attributes.values():
        if a.is_ref():
            src = given.get(a.ref_attr_name or "")
            if src is not None:
                out.append(ir.Attr(a.name, src.type, src.value))
            continue
        # subgraphs move with the node: each body is deserialized for one node only
        out.append(ir.Attr(a.name, a.type, a.value))
    return out


def _inline(model: ir.Model, node: ir.Node, found: Body) -> bool:
    """Put ``found``'s nodes in place of ``node``; False (nothing edited) when it cannot."""
    graph = model.graph
    body = found.function
    given = dict(found.defaults)
    given.update({a.name: a for a in body.attributes.values() if a.value is not None})
    given.update(node.attributes)
    attrs = [_resolved_attrs(f, given) for f in body]
    if len(node.inputs) > len(body.inputs):
        return False
    value_map: dict[ir.Value, ir.Value | None] = dict.fromkeys(body.inputs)
    value_map.update(zip(body.inputs, node.inputs, strict=False))
    meta = {SOURCE_KEY: node.metadata_props[SOURCE_KEY]} \
        if SOURCE_KEY in node.metadata_props else {}
    outer = node.metadata_props.get(EXPANDED_KEY)
    meta[EXPANDED_KEY] = f"{outer}/{node.op_type}" if outer else node.op_type
    prefix = (node.outputs[0].name if node.outputs else None) or node.op_type
    new_nodes = []
    for fnode, fattrs in zip(body, attrs, strict=True):
        new = ir.Node(fnode.domain, fnode.op_type, [value_map.get(v) if v is not None else None
                                                    for v in fnode.inputs],
                      fattrs, overload=fnode.overload, num_outputs=len(fnode.outputs),
                      name=unique_name(graph, f"{prefix}/{fnode.op_type}"),
                      metadata_props=dict(meta))
        for old_out, new_out in zip(fnode.outputs, new.outputs, strict=True):
            new_out.name = unique_name(graph, f"{prefix}/{old_out.name or 'v'}")
            value_map[old_out] = new_out
        new_nodes.append(new)
    results = []
    for i, fout in enumerate(found.outputs):
        result = None if fout is None else value_map.get(fout)
        used = i < len(node.outputs) and (bool(node.outputs[i].uses())
                                          or node.outputs[i].is_graph_output())
        if result is None:
            if used:
                return False  # the body leaves a used output undefined
        elif used and result.producer() not in new_nodes:
            # an output that is an input (or omitted): an Identity gives it its own value
            ident = ir.Node("", "Identity", [result], num_outputs=1,
                            name=unique_name(graph, f"{prefix}/Identity"))
            new_nodes.append(ident)
            result = ident.outputs[0]
        results.append(result)
    for new in new_nodes:  # subgraphs read function values by scope: point them at ours
        for sub in _subgraphs(new):
            for inner in ir.traversal.RecursiveGraphIterator(sub):
                for k, v in enumerate(inner.inputs):
                    if v is not None and v in value_map:
                        inner.replace_input_with(k, value_map[v])
    for domain, version in body.opset_imports.items():
        model.opset_imports.setdefault(domain, version)
    graph.insert_before(node, new_nodes)
    take_over_outputs(graph, [(old, result) for old, result
                              in zip(node.outputs, results, strict=False)
                              if result is not None], "__expanded")
    graph.remove(node, safe=True)
    return True


def expand_functions(model: ir.Model, expand: Callable[[ir.Node], bool],
                     infer: Callable[[ir.Model], object], rounds: int = 4,
                     widen: Callable[[ir.Node], bool] | None = None) -> bool:
    """Expand selected nodes until none is left (bodies calling further functions, typed by
    ``infer`` in between), at most ``rounds`` times.

    Args:
        model: the IR model, edited in place.
        expand: which nodes to expand (e.g. those an exporter has no lowering for).
        infer: shape inference to run after each round that changed something.
        rounds: the nesting depth expanded at most.
        widen: which float16 nodes run their body in float32.

    Returns:
        True when any node was expanded.
    """
    changed = False
    for _ in range(rounds):
        if not ExpandFunctionsPass(expand, widen)(model).modified:
            break
        changed = True
        infer(model)
    return changed
