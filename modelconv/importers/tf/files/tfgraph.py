"""Read what modelconv needs from ``saved_model.pb`` without TensorFlow.

- the signature map (input/output keys, dtypes and shapes of e.g. ``serving_default``);
- the ops the SavedModel can run: every graph node and every function reachable from
  them or from the function library, except what only the checkpoint saver reaches
  (its save/restore functions legitimately hold ``SaveV2``/``RestoreV2``). The caller
  refuses file/process ops before TensorFlow ever runs the model.

Field numbers (tensorflow/core/protobuf/saved_model.proto, meta_graph.proto, saver.proto,
tensorflow/core/framework/graph.proto, node_def.proto, function.proto, attr_value.proto):
SavedModel.meta_graphs=2; MetaGraphDef: meta_info_def=1 (tags=4), graph_def=2,
saver_def=3 (save_tensor_name=2, restore_op_name=3), signature_def=5 (map: key=1, value=2);
SignatureDef: inputs=1, outputs=2 (maps of TensorInfo: name=1, dtype=2, tensor_shape=3);
GraphDef: node=1, library=2 (function=1); FunctionDef: signature=1 (OpDef.name=1),
node_def=3; NodeDef: name=1, op=2, attr=5 (map of AttrValue); AttrValue: list=1 (func=9),
func=10 (NameAttrList: name=1, attr=2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelconv.errors import ModelLoadError
from modelconv.importers.tf.files import protowire as pw
from modelconv.importers.tf.files.bundle import read_member

#: protobuf's own limit for one message
MAX_SAVED_MODEL_BYTES = 2 * 2**30
_MAX_ATTR_DEPTH = 8


@dataclass
class TensorInfo:
    """One signature input/output: the graph tensor, its TF dtype enum and shape."""

    name: str
    dtype: int
    shape: list[int | None] | None  # None: unknown rank


@dataclass
class Signature:
    """A signature's inputs and outputs by key."""

    inputs: dict[str, TensorInfo] = field(default_factory=dict)
    outputs: dict[str, TensorInfo] = field(default_factory=dict)


@dataclass
class SavedModelProto:
    """The meta graph of a SavedModel, kept as undecoded bytes until asked."""

    path: str
    meta_graph: memoryview
    signatures: dict[str, Signature]


def read_saved_model(folder: str | Path, display: str | None = None) -> SavedModelProto:
    """Parse ``folder/saved_model.pb`` far enough to list its signatures."""
    base = Path(folder)
    shown = display or str(base)
    raw = read_member(base, "saved_model.pb", MAX_SAVED_MODEL_BYTES, shown)
    try:
        metas = pw.get_messages(pw.parse(raw), 2)
        if not metas:
            raise ModelLoadError("saved_model.pb holds no meta graph", path=shown)
        meta = _serving_meta_graph(metas)
        signatures = {}
        for entry in pw.get_messages(pw.parse(meta), 5):
            item = pw.parse(entry)
            sig = pw.parse(pw.get_bytes(item, 2))
            signatures[pw.get_str(item, 1)] = Signature(_tensor_map(sig, 1), _tensor_map(sig, 2))
    except pw.ProtoError as exc:
        raise ModelLoadError(f"corrupt saved_model.pb ({exc})", path=shown) from exc
    return SavedModelProto(shown, meta, signatures)


def _serving_meta_graph(metas: list[memoryview]) -> memoryview:
    """The meta graph tagged ``serve`` (TensorFlow's default), else the only one."""
    for meta in metas:
        info = pw.parse(pw.get_bytes(pw.parse(meta), 1))
        tags = {bytes(t).decode("utf-8", "replace") for t in pw.get_messages(info, 4)}
        if tags == {"serve"}:
            return meta
    return metas[0]


def _tensor_map(sig: dict[int, list[int | memoryview]], number: int) -> dict[str, TensorInfo]:
    out = {}
    for entry in pw.get_messages(sig, number):
        item = pw.parse(entry)
        info = pw.parse(pw.get_bytes(item, 2))
        shape_msg = pw.parse(pw.get_bytes(info, 3))
        shape: list[int | None] | None = None
        if not pw.get_int(shape_msg, 3):
            dims = [pw.to_int64(pw.get_int(pw.parse(d), 1)) for d in pw.get_messages(shape_msg, 2)]
            shape = [d if d >= 0 else None for d in dims]
        out[pw.get_str(item, 1)] = TensorInfo(pw.get_str(info, 1), pw.get_int(info, 2), shape)
    return out


# --------------------------------------------------------------------------------------
# ops the model can run


@dataclass
class _Node:
    name: str
    op: str
    funcs: list[str]


def _attr_funcs(value: memoryview, out: list[str], depth: int = 0) -> None:
    """Names of the functions an AttrValue refers to (``func`` and ``list.func``)."""
    if depth > _MAX_ATTR_DEPTH:
        raise pw.ProtoError("attribute values nested too deeply")
    for number, _wire, item in pw.iter_fields(value):
        if not isinstance(item, memoryview):
            continue
        if number == 10:
            _name_attr_list(item, out, depth)
        elif number == 1:
            for n2, _w2, fn in pw.iter_fields(item):
                if n2 == 9 and isinstance(fn, memoryview):
                    _name_attr_list(fn, out, depth)


def _name_attr_list(value: memoryview, out: list[str], depth: int) -> None:
    msg = pw.parse(value)
    out.append(pw.get_str(msg, 1))
    for entry in pw.get_messages(msg, 2):
        _attr_funcs(pw.get_bytes(pw.parse(entry), 2), out, depth + 1)


def _node(raw: memoryview) -> _Node:
    name, op = "", ""
    funcs: list[str] = []
    for number, _wire, value in pw.iter_fields(raw):
        if not isinstance(value, memoryview):
            continue
        if number == 1:
            name = bytes(value).decode("utf-8", "replace")
        elif number == 2:
            op = bytes(value).decode("utf-8", "replace")
        elif number == 5:
            for n2, _w2, v2 in pw.iter_fields(value):
                if n2 == 2 and isinstance(v2, memoryview):
                    _attr_funcs(v2, funcs)
    return _Node(name, op, funcs)


def reachable_ops(saved: SavedModelProto) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(ops, saver_ops)``: op type -> where, for what the model can run and for what
    only the checkpoint saver's save/restore functions reach."""
    try:
        return _reachable_ops(saved.meta_graph)
    except pw.ProtoError as exc:
        raise ModelLoadError(f"corrupt graph in saved_model.pb ({exc})",
                             path=saved.path) from exc


def _reachable_ops(meta_raw: memoryview) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    meta = pw.parse(meta_raw)
    graph = pw.parse(pw.get_bytes(meta, 2))
    saver = pw.parse(pw.get_bytes(meta, 3))
    saver_nodes = {pw.get_str(saver, i).split(":")[0].lstrip("^") for i in (2, 3)} - {""}
    functions: dict[str, list[_Node]] = {}
    for fn_raw in pw.get_messages(pw.parse(pw.get_bytes(graph, 2)), 1):
        fn = pw.parse(fn_raw)
        name = pw.get_str(pw.parse(pw.get_bytes(fn, 1)), 1)
        functions[name] = [_node(n) for n in pw.get_messages(fn, 3)]
    nodes = [_node(n) for n in pw.get_messages(graph, 1)]

    def refs(node: _Node) -> list[str]:
        return [*node.funcs, *([node.op] if node.op in functions else [])]

    saver_roots = {f for n in nodes if n.name in saver_nodes for f in refs(n)}
    roots = [f for n in nodes if n.name not in saver_nodes for f in refs(n)]
    roots += [f for f in functions if f not in saver_roots]
    main = _closure(roots, functions, refs)
    saver_only = _closure(sorted(saver_roots), functions, refs) - main
    ops: dict[str, list[str]] = defaultdict(list)
    saver_ops: dict[str, list[str]] = defaultdict(list)
    for node in nodes:
        (saver_ops if node.name in saver_nodes else ops)[node.op].append(node.name)
    for fname in sorted(main | saver_only):
        target = ops if fname in main else saver_ops
        for node in functions.get(fname, []):
            target[node.op].append(f"{fname}/{node.name}")
    return dict(ops), dict(saver_ops)


def _closure(roots: list[str], functions: dict[str, list[_Node]],
             refs: Callable[[_Node], list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name]:
            stack.extend(refs(node))
    return seen
