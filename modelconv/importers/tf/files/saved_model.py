"""Decode ``saved_model.pb`` without TensorFlow: the one reader of TensorFlow's graph messages.

- the signature map (input/output keys, dtypes and shapes of e.g. ``serving_default``);
- NodeDef, FunctionDef (signature, nodes, ``ret``), AttrValue, TensorProto (constants) and
  the SavedObjectGraph's concrete functions (which objects a function captures), for the
  graph converter;
- the ops the SavedModel can run (:func:`reachable_ops`): every graph node and every
  function reachable from them or from the function library, except what only the
  checkpoint saver reaches (its save/restore functions legitimately hold
  ``SaveV2``/``RestoreV2``). The caller refuses file/process ops before anything runs.

Field numbers (tensorflow/core/protobuf/{saved_model,meta_graph,saver,saved_object_graph}.proto,
tensorflow/core/framework/{graph,node_def,function,op_def,attr_value,tensor,tensor_shape}.proto):
SavedModel meta_graphs=2; MetaGraphDef meta_info_def=1 (tags=4) graph_def=2 saver_def=3
(save_tensor_name=2 restore_op_name=3) signature_def=5 (map key=1 value=2) object_graph_def=7;
SignatureDef inputs=1 outputs=2 (maps of TensorInfo name=1 dtype=2 tensor_shape=3);
GraphDef node=1 library=2 (FunctionDefLibrary function=1);
NodeDef name=1 op=2 input=3 attr=5 (map key=1 value=2); FunctionDef signature=1
(OpDef name=1 input_arg=2 output_arg=3; ArgDef name=1 type=3) node_def=3 ret=4 (map);
AttrValue list=1 s=2 i=3 f=4 b=5 type=6 shape=7 tensor=8 placeholder=9 func=10
(NameAttrList name=1 attr=2); ListValue s=2 i=3 f=4 b=5 type=6 shape=7 func=9;
TensorShapeProto dim=2 (size=1) unknown_rank=3;
TensorProto dtype=1 tensor_shape=2 tensor_content=4 float_val=5 double_val=6 int_val=7
int64_val=10 bool_val=11 half_val=13; SavedObjectGraph nodes=1
concrete_functions=2 (map; SavedConcreteFunction bound_inputs=2); SavedObject
variable=7 constant=9 (SavedConstant operation=1).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelconv import protowire as pw
from modelconv.errors import ModelLoadError
from modelconv.importers.tf.files.bundle import DT_BFLOAT16, TF_DTYPES, read_member

DT_STRING = 7
DT_RESOURCE = 20
#: a TensorProto constant may hold at most this many elements (the file is at most 2 GiB)
MAX_CONST_ELEMENTS = 1 << 28
#: ... and at most this many when written as (repeated) values instead of raw bytes
MAX_SPLAT_ELEMENTS = 1 << 24
MAX_RANK = 16
#: protobuf's own limit for one message
MAX_SAVED_MODEL_BYTES = 2 * 2**30
_MAX_ATTR_DEPTH = 8

Msg = dict[int, list[int | memoryview]]


@dataclass
class Shape:
    """A TensorShapeProto: dims (None = unknown size) or None for unknown rank."""

    dims: list[int | None] | None


@dataclass
class Attr:
    """One decoded AttrValue (exactly one field set)."""

    kind: str  # s, i, f, b, type, shape, tensor, func, list, placeholder, none
    value: Any
    #: every function the value names, those in a NameAttrList's own attributes included
    funcs: list[str] = field(default_factory=list)


@dataclass
class NodeDef:
    """One graph/function node."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Attr]

    def attr(self, key: str, default: Any = None) -> Any:
        """The attribute's value (lists as Python lists), or ``default``."""
        found = self.attrs.get(key)
        return default if found is None else found.value


@dataclass
class FunctionDef:
    """A library function: argument names and types, nodes, and what it returns."""

    name: str
    arg_names: list[str]
    arg_types: list[int]
    output_names: list[str]
    nodes: list[NodeDef]
    ret: dict[str, str]


@dataclass
class GraphDef:
    """The graph-level nodes and the function library (functions decoded on demand)."""

    nodes: dict[str, NodeDef]
    _functions: dict[str, memoryview] = field(default_factory=dict)
    _decoded: dict[str, FunctionDef] = field(default_factory=dict)

    def function_names(self) -> list[str]:
        """Names of the library's functions, in file order."""
        return list(self._functions)

    def function(self, name: str) -> FunctionDef | None:
        """The library function ``name`` (None if there is none)."""
        if name not in self._decoded:
            raw = self._functions.get(name)
            if raw is None:
                return None
            self._decoded[name] = _function(raw)
        return self._decoded[name]


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
        shape = _shape(pw.get_bytes(info, 3)).dims
        out[pw.get_str(item, 1)] = TensorInfo(pw.get_str(info, 1), pw.get_int(info, 2), shape)
    return out


# --------------------------------------------------------------------------------------
# decoding


def _shape(raw: memoryview) -> Shape:
    msg = pw.parse(raw)
    if pw.get_int(msg, 3):
        return Shape(None)
    dims = [pw.to_int64(pw.get_int(pw.parse(d), 1)) for d in pw.get_messages(msg, 2)]
    if len(dims) > MAX_RANK:
        raise pw.ProtoError(f"rank {len(dims)} shape")
    return Shape([d if d >= 0 else None for d in dims])


def _floats(msg: Msg, number: int) -> list[float]:
    """A repeated float field, packed (one LEN blob) or not (fixed32 each)."""
    out: list[float] = []
    for value in msg.get(number, []):
        if isinstance(value, int):
            out.append(struct.unpack("<f", struct.pack("<I", value))[0])
        else:
            if len(value) % 4:
                raise pw.ProtoError("packed floats not a multiple of 4 bytes")
            out.extend(np.frombuffer(value, "<f4").tolist())
    return out


def _func(raw: memoryview, depth: int) -> tuple[str, list[str]]:
    """A NameAttrList: the function's name and every function it and its attributes name."""
    msg = pw.parse(raw)
    name = pw.get_str(msg, 1)
    funcs = [name]
    for entry in pw.get_messages(msg, 2):
        funcs.extend(_attr(pw.get_bytes(pw.parse(entry), 2), depth + 1).funcs)
    return name, funcs


def _attr(raw: memoryview, depth: int = 0) -> Attr:
    if depth > _MAX_ATTR_DEPTH:
        raise pw.ProtoError("attribute values nested too deeply")
    for number, _wire, value in pw.iter_fields(raw):
        if number == 2 and isinstance(value, memoryview):
            return Attr("s", bytes(value))
        if number == 3 and isinstance(value, int):
            return Attr("i", pw.to_int64(value))
        if number == 4 and isinstance(value, int):
            return Attr("f", struct.unpack("<f", struct.pack("<I", value))[0])
        if number == 5 and isinstance(value, int):
            return Attr("b", bool(value))
        if number == 6 and isinstance(value, int):
            return Attr("type", value)
        if number == 7 and isinstance(value, memoryview):
            return Attr("shape", _shape(value))
        if number == 8 and isinstance(value, memoryview):
            return Attr("tensor", value)  # decoded by the Const handler
        if number == 10 and isinstance(value, memoryview):
            name, funcs = _func(value, depth)
            return Attr("func", name, funcs)
        if number == 9 and isinstance(value, memoryview):
            return Attr("placeholder", bytes(value).decode("utf-8", "replace"))
        if number == 1 and isinstance(value, memoryview):
            lst = pw.parse(value)
            items: list[Any] = []
            if lst.get(2):
                items = [bytes(v) for v in pw.get_messages(lst, 2)]
            elif lst.get(3):
                items = [pw.to_int64(v) for v in pw.get_packed_ints(lst, 3)]
            elif lst.get(4):
                items = _floats(lst, 4)
            elif lst.get(5):
                items = [bool(v) for v in pw.get_packed_ints(lst, 5)]
            elif lst.get(6):
                items = pw.get_packed_ints(lst, 6)
            elif lst.get(7):
                items = [_shape(v) for v in pw.get_messages(lst, 7)]
            elif lst.get(9):
                refs = [_func(v, depth) for v in pw.get_messages(lst, 9)]
                return Attr("list", [name for name, _ in refs], [f for _, fs in refs for f in fs])
            return Attr("list", items)
    return Attr("none", None)


def node_def(raw: memoryview) -> NodeDef:
    """Decode one NodeDef."""
    msg = pw.parse(raw)
    attrs = {}
    for entry in pw.get_messages(msg, 5):
        item = pw.parse(entry)
        attrs[pw.get_str(item, 1)] = _attr(pw.get_bytes(item, 2))
    try:
        inputs = [bytes(v).decode("utf-8") for v in pw.get_messages(msg, 3)]
    except UnicodeDecodeError as exc:
        raise pw.ProtoError("node input is not valid UTF-8") from exc
    return NodeDef(pw.get_str(msg, 1), pw.get_str(msg, 2), inputs, attrs)


def _function(raw: memoryview) -> FunctionDef:
    msg = pw.parse(raw)
    sig = pw.parse(pw.get_bytes(msg, 1))
    args = [pw.parse(a) for a in pw.get_messages(sig, 2)]
    outs = [pw.parse(a) for a in pw.get_messages(sig, 3)]
    ret = {}
    for entry in pw.get_messages(msg, 4):
        item = pw.parse(entry)
        ret[pw.get_str(item, 1)] = pw.get_str(item, 2)
    return FunctionDef(
        name=pw.get_str(sig, 1),
        arg_names=[pw.get_str(a, 1) for a in args],
        arg_types=[pw.get_int(a, 3) for a in args],
        output_names=[pw.get_str(a, 1) for a in outs],
        nodes=[node_def(n) for n in pw.get_messages(msg, 3)],
        ret=ret,
    )


def graph_def(meta_graph: memoryview) -> GraphDef:
    """The meta graph's GraphDef: nodes decoded, functions indexed by name."""
    graph = pw.parse(pw.get_bytes(pw.parse(meta_graph), 2))
    nodes = {}
    for raw in pw.get_messages(graph, 1):
        node = node_def(raw)
        nodes[node.name] = node
    functions = {}
    for fn_raw in pw.get_messages(pw.parse(pw.get_bytes(graph, 2)), 1):
        sig = pw.parse(pw.get_bytes(pw.parse(fn_raw), 1))
        functions[pw.get_str(sig, 1)] = fn_raw
    return GraphDef(nodes, functions)


# --------------------------------------------------------------------------------------
# ops the model can run


def reachable_ops(saved: SavedModelProto) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``(ops, saver_ops)``: op type -> where, for what the model can run and for what
    only the checkpoint saver's save/restore functions reach.

    Args:
        saved: the SavedModel read by :func:`read_saved_model`.

    Returns:
        Two maps from op type to the nodes (``function/node`` inside functions) holding it.

    Raises:
        ModelLoadError: the graph in ``saved_model.pb`` is corrupt.
    """
    try:
        return _reachable_ops(saved.meta_graph)
    except pw.ProtoError as exc:
        raise ModelLoadError(f"corrupt graph in saved_model.pb ({exc})",
                             path=saved.path) from exc


def _reachable_ops(meta_raw: memoryview) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    saver = pw.parse(pw.get_bytes(pw.parse(meta_raw), 3))
    saver_nodes = {pw.get_str(saver, i).split(":")[0].lstrip("^") for i in (2, 3)} - {""}
    graph = graph_def(meta_raw)
    functions: dict[str, list[NodeDef]] = {}
    for name in graph.function_names():
        fn = graph.function(name)
        functions[name] = fn.nodes if fn is not None else []
    nodes = list(graph.nodes.values())

    def refs(node: NodeDef) -> list[str]:
        called = [f for attr in node.attrs.values() for f in attr.funcs]
        return [*called, *([node.op] if node.op in functions else [])]

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


def _closure(roots: list[str], functions: dict[str, list[NodeDef]],
             refs: Callable[[NodeDef], list[str]]) -> set[str]:
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


# --------------------------------------------------------------------------------------
# the object graph (captures of concrete functions)


@dataclass
class SavedObject:
    """What a SavedObjectGraph node is, as far as function captures go."""

    kind: str  # "variable", "constant" or another SavedObject kind name
    operation: str = ""  # constant: the graph node holding the value


_OBJECT_KINDS = {4: "user_object", 5: "asset", 6: "function", 7: "variable",
                 8: "bare_concrete_function", 9: "constant", 10: "resource",
                 12: "captured_tensor"}


def object_graph(meta_graph: memoryview) -> tuple[list[SavedObject], dict[str, list[int]]]:
    """``(objects, bound_inputs by concrete function name)`` of the SavedObjectGraph."""
    raw = pw.get_bytes(pw.parse(meta_graph), 7)
    msg = pw.parse(raw)
    objects = []
    for node_raw in pw.get_messages(msg, 1):
        kind, operation = "unknown", ""
        for number, _wire, value in pw.iter_fields(node_raw):
            if number in _OBJECT_KINDS and isinstance(value, memoryview):
                kind = _OBJECT_KINDS[number]
                if number == 9:
                    operation = pw.get_str(pw.parse(value), 1)
        objects.append(SavedObject(kind, operation))
    bound: dict[str, list[int]] = {}
    for entry in pw.get_messages(msg, 2):
        item = pw.parse(entry)
        fn = pw.parse(pw.get_bytes(item, 2))
        bound[pw.get_str(item, 1)] = [pw.to_int64(v) for v in pw.get_packed_ints(fn, 2)]
    return objects, bound


# --------------------------------------------------------------------------------------
# constants


def tensor_value(raw: memoryview) -> np.ndarray:
    """A TensorProto as a numpy array (numeric dtypes; strings raise ProtoError)."""
    msg = pw.parse(raw)
    dtype_enum = pw.get_int(msg, 1)
    shape = _shape(pw.get_bytes(msg, 2)).dims
    if shape is None or any(d is None for d in shape):
        raise pw.ProtoError("constant of unknown shape")
    dims = [int(d) for d in shape if d is not None]
    count = int(np.prod(dims, dtype=object)) if dims else 1  # exact: int64 wraps
    if count > MAX_CONST_ELEMENTS:
        raise pw.ProtoError(f"constant of {count} elements")
    if dtype_enum == DT_STRING:
        raise pw.ProtoError("string constant")
    dtype = TF_DTYPES.get(dtype_enum)
    if dtype is None:
        raise pw.ProtoError(f"constant of TensorFlow dtype {dtype_enum}")
    content = pw.get_bytes(msg, 4)
    if len(content):
        if len(content) != count * dtype.itemsize:
            raise pw.ProtoError(f"constant holds {len(content)} bytes, its shape needs "
                                f"{count * dtype.itemsize}")
        arr = np.frombuffer(content, dtype).copy()
    else:
        if count > MAX_SPLAT_ELEMENTS:  # values, not bytes: a few could fill all memory
            raise pw.ProtoError(f"constant of {count} elements given by repeated values")
        arr = _typed_values(msg, dtype_enum, dtype)
        if arr.size == 0:
            arr = np.zeros(count, dtype)
        elif arr.size < count:  # the last value repeats (TensorFlow's compact splat)
            arr = np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype)])
        elif arr.size > count:
            raise pw.ProtoError(f"constant holds {arr.size} values, its shape has {count}")
    if dtype_enum == DT_BFLOAT16:
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.reshape(dims)


def _typed_values(msg: Msg, dtype_enum: int, dtype: np.dtype[Any]) -> np.ndarray:
    if dtype_enum == 1:
        return np.asarray(_floats(msg, 5), np.float32)
    if dtype_enum == 2:
        out: list[float] = []
        for value in msg.get(6, []):
            if isinstance(value, int):
                out.append(struct.unpack("<d", struct.pack("<Q", value))[0])
            else:
                out.extend(np.frombuffer(value, "<f8").tolist())
        return np.asarray(out, np.float64)
    if dtype_enum == 9:
        return np.asarray([pw.to_int64(v) for v in pw.get_packed_ints(msg, 10)], np.int64)
    if dtype_enum == 10:
        return np.asarray(pw.get_packed_ints(msg, 11), bool)
    if dtype_enum in (19, DT_BFLOAT16):  # 16-bit words in half_val
        words = np.asarray(pw.get_packed_ints(msg, 13), np.uint16)
        return words.view(np.float16) if dtype_enum == 19 else words
    # int32, uint8, int16, int8, uint16, uint32 in int_val; uint64 in uint64_val (17)
    number = 17 if dtype_enum == 23 else 16 if dtype_enum == 22 else 7
    return np.asarray([pw.to_int64(v) for v in pw.get_packed_ints(msg, number)]).astype(dtype)
