"""Specialise a TorchScript graph to the example input shapes before TS2EPConverter.

Tracing records shape arithmetic as graph code (``aten::size`` -> ``prim::NumToTensor`` ->
``aten::mul`` -> ``aten::Int`` -> ``view``); TS2EPConverter turns every ``aten::Int`` into an
unbacked symbol and then cannot guard on it (``nn.MultiheadAttention`` inside
``nn.TransformerEncoder`` fails so). When no dynamic dims are wanted the shapes are the example's
anyway, so the scalars that depend on input *shapes* only - never on input data - are computed
once by running a copy of the graph, and put in as constants.

Soundness is kept by a conservative taint analysis: a value is left alone if it may depend on
the data of an input, including through a tensor whose shape depends on data (``nonzero``,
``unique``, a ``view`` sized by ``int(t.sum())``, ...). Graphs that mutate shape-only values
with tainted ones, or whose control flow could, are not specialised at all.
"""

from __future__ import annotations

from typing import Any

import torch

_SIZE_KINDS = frozenset({"aten::size", "prim::shape", "aten::dim", "aten::numel", "aten::len"})
# ops whose output shape may depend on the values of a tensor input
_DATA_SHAPED = frozenset({
    "aten::nonzero", "aten::nonzero_numpy", "aten::argwhere", "aten::unique",
    "aten::unique_dim", "aten::unique_consecutive", "aten::unique_dim_consecutive",
    "aten::_unique", "aten::_unique2", "aten::masked_select", "aten::index",
    "aten::repeat_interleave", "aten::bincount", "aten::one_hot",
})
# nodes whose effects the analysis cannot see
_OPAQUE = frozenset({"prim::CallMethod", "prim::CallFunction", "prim::PythonOp",
                     "prim::SetAttr", "prim::fork", "prim::Enter", "prim::Exit"})
_PLAIN = frozenset({"IntType", "FloatType", "BoolType", "NumberType"})
_ROUNDS = 4  # folding an `if` on a shape can expose more shape code


def specialise_shapes(ts: Any, args: tuple[torch.Tensor, ...]) -> Any | None:
    """A frozen copy of ScriptModule ``ts`` whose shape-only scalars are constants for ``args``.

    ``ts`` itself is left unchanged. Returns None when there is nothing to specialise.
    """
    jit: Any = torch._C
    frozen = jit._freeze_module(ts._c, preserveParameters=True)
    graph = frozen._get_method("forward").graph
    changed = False
    for _ in range(_ROUNDS):
        wanted = _shape_only_values(graph)
        values = _evaluate(graph, wanted, frozen, args) if wanted else []
        nodes = list(graph.nodes())
        replaced = False
        for (n, k), value in zip(wanted, values, strict=True):
            if not _constant_like(value):
                continue
            with graph.insert_point_guard(nodes[n]):
                const = graph.insertConstant(value)
            nodes[n].outputsAt(k).replaceAllUsesWith(const)
            replaced = True
        if not replaced:
            break
        jit._jit_pass_constant_propagation_immutable_types(graph)
        jit._jit_pass_dce(graph)
        changed = True
    return torch.jit._recursive.wrap_cpp_module(frozen) if changed else None


def _constant_like(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(type(v) is type(value[0]) for v in value) \
            and isinstance(value[0], int | float | bool)
    return isinstance(value, int | float | bool)


def _evaluate(graph: Any, wanted: list[tuple[int, int]], module: Any,
              args: tuple[torch.Tensor, ...]) -> list[Any]:
    """Run a copy of ``graph`` on ``args`` returning the values of the ``wanted`` outputs."""
    jit: Any = torch._C
    probe = graph.copy()
    nodes = list(probe.nodes())
    while list(probe.outputs()):
        probe.eraseOutput(0)
    for n, k in wanted:
        probe.registerOutput(nodes[n].outputsAt(k))
    if len(wanted) > 1:
        probe.makeMultiOutputIntoTuple()
    jit._jit_pass_dce(probe)
    fn = jit._create_function_from_graph("modelconv_shape_probe", probe)
    with torch.no_grad():
        out = fn(module, *args)
    return list(out) if len(wanted) > 1 else [out]


def _shape_only_values(graph: Any) -> list[tuple[int, int]]:
    """(node index, output index) of the top-level scalars computed from input shapes only."""
    data: set[int] = set()  # values that may depend on the data of an input
    shaped: set[int] = set()  # tensors whose shape may depend on the data of an input
    sized: set[int] = set()  # values computed from some tensor's size
    for v in list(graph.inputs())[1:]:  # the first input is the module
        data.add(v.unique())
    found: list[tuple[int, int]] = []
    for n, node in enumerate(graph.nodes()):
        kind = node.kind()
        ins = list(node.inputs())
        outs = [o.unique() for o in node.outputs()]
        if kind == "prim::Constant":
            continue
        if kind in _OPAQUE or any(_opaque_or_mutating(b) for b in node.blocks()):
            return []
        if list(node.blocks()):  # control flow: its results are not analysed
            data.update(outs)
            shaped.update(outs)
            continue
        if kind in _SIZE_KINDS and ins and _holds_tensor(ins[0].type()):
            if ins[0].unique() in shaped or any(v.unique() in data for v in ins[1:]):
                data.update(outs)
            sized.update(outs)
        else:
            out_data, out_shaped = _propagate(node, kind, ins, data, shaped)
            for w in _written(node, ins):
                if (out_data and w not in data) or (out_shaped and w not in shaped):
                    return []  # a shape-only value is mutated with tainted ones
            if out_data:
                data.update(outs)
            if out_shaped:
                shaped.update(outs)
            if any(v.unique() in sized for v in ins):
                sized.update(outs)
        found.extend((n, k) for k, o in enumerate(node.outputs())
                     if o.unique() in sized and o.unique() not in data and _plain(o.type()))
    return found


def _propagate(node: Any, kind: str, ins: list[Any], data: set[int],
               shaped: set[int]) -> tuple[bool, bool]:
    """Whether the outputs of ``node`` may depend on input data: (values, shapes)."""
    schema = _schema(node)
    out_data = node.isNondeterministic()
    out_shaped = False
    for k, v in enumerate(ins):
        tainted = v.unique() in data
        out_data = out_data or tainted
        holds = None
        if schema is not None and k < len(schema.arguments):
            holds = _holds_tensor(schema.arguments[k].type)
        if holds is None:
            holds = bool(_holds_tensor(v.type()))
        # a tensor argument passes its shape on; any other argument (a size, a Scalar even
        # when traced as a 0-dim tensor) may set the output shape by its value
        out_shaped = out_shaped or (v.unique() in shaped if holds else tainted)
    if kind in _DATA_SHAPED and out_data:
        out_shaped = True
    return out_data, out_shaped


def _schema(node: Any) -> Any:
    text = node.schema()
    if not text or text == "(no schema)":
        return None
    try:
        return torch._C.parse_schema(text)
    except RuntimeError:
        return None


def _written(node: Any, ins: list[Any]) -> list[int]:
    schema = _schema(node)
    if schema is None:
        return []
    return [ins[k].unique() for k, a in enumerate(schema.arguments)
            if k < len(ins) and a.alias_info is not None and a.alias_info.is_write]


def _opaque_or_mutating(block: Any) -> bool:
    for node in block.nodes():
        if node.kind() in _OPAQUE or _written(node, list(node.inputs())):
            return True
        if any(_opaque_or_mutating(b) for b in node.blocks()):
            return True
    return False


def _holds_tensor(t: Any) -> bool | None:
    """Whether a type is or contains a Tensor; None for type variables and Any."""
    kind = t.kind()
    if kind == "TensorType":
        return True
    if kind in ("VarType", "AnyType"):
        return None
    inner = [_holds_tensor(c) for c in t.containedTypes()]
    return True if any(inner) else (None if None in inner else False)


def _plain(t: Any) -> bool:
    kind = t.kind()
    if kind == "ListType":
        return bool(t.getElementType().kind() in _PLAIN)
    return kind in _PLAIN
