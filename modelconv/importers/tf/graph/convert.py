"""Convert a SavedModel signature into the IR by reading its TensorFlow graph (no TensorFlow).

How a TF2 SavedModel runs a signature: the graph-level node named by the signature's
output (a ``StatefulPartitionedCall``) calls a library function with the signature's
Placeholders plus one resource handle per captured variable. Which variables those are is
recorded in the SavedObjectGraph (``concrete_functions[f].bound_inputs``: object ids); the
checkpoint's object graph gives each object's key in the tensor bundle. Functions call
functions (Keras: signature wrapper -> ``__call__``); calls are inlined.

Before anything is emitted every op reachable from the signature is checked against the
handler registry, and every node's attributes against those its handler declares
(``core.attr_problems``); all unsupported ones are reported at once (UnsupportedOpsError): the
SavedModel importer then falls back to tf2onnx when TensorFlow is installed. TF1-style
graphs (variables as graph nodes, keys = their names) work the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv import protowire as pw
from modelconv.errors import ModelLoadError, UnsupportedOpsError
from modelconv.importers.tf.files import saved_model as gd
from modelconv.importers.tf.files.bundle import OBJECT_GRAPH_KEY, TensorBundle
from modelconv.importers.tf.files.object_graph import ObjectGraph
from modelconv.importers.tf.files.saved_model import Signature, read_saved_model
from modelconv.importers.tf.graph.core import (
    COMPUTABLE_DTYPES,
    OPS,
    OUTPUT_ARGS,
    TT,
    ConvertError,
    Ctx,
    Resource,
    attr_problems,
    dtype_name,
    np_dtype_of,
)
from modelconv.ir.builder import GraphBuilder

#: function-call ops (inlined)
CALL_OPS = {"StatefulPartitionedCall", "PartitionedCall"}
#: graph-level ops that only hold values or handles
GRAPH_OPS = {"Placeholder", "VarHandleOp", "VariableV2", "Const", "NoOp", *CALL_OPS}
_VARIABLE_VALUE = "VARIABLE_VALUE"
#: deepest function nesting followed (Keras: 2-3)
MAX_CALL_DEPTH = 32


@dataclass
class GraphModel:
    """The converted signature: IR model, inputs ``(key, dtype, shape)``, output keys."""

    model: ir.Model
    inputs: list[tuple[str, str, tuple[int | None, ...]]]
    outputs: list[str]


class _Variables:
    """Variable values by SavedObjectGraph object id (TF2) or by graph name (TF1)."""

    def __init__(self, folder: Path, display: str):
        self.display = display
        self.bundle: TensorBundle | None = None
        self._objects: ObjectGraph | None = None
        self._cache: dict[str, np.ndarray] = {}
        variables = folder / "variables"
        if (variables / "variables.index").is_file() and not variables.is_symlink():
            self.bundle = TensorBundle(variables, "variables", display=f"{display}/variables")

    def close(self) -> None:
        if self.bundle is not None:
            self.bundle.close()

    def read_key(self, key: str) -> np.ndarray:
        if self.bundle is None:
            raise ModelLoadError("the graph reads variables but the SavedModel has no "
                                 "variables/ checkpoint", path=self.display)
        if key not in self._cache:
            self._cache[key] = self.bundle.read(key)
        return self._cache[key]

    def key_of_object(self, object_id: int) -> str:
        if self.bundle is None:
            raise ModelLoadError("the graph captures variables but the SavedModel has no "
                                 "variables/ checkpoint", path=self.display)
        if self._objects is None:
            self._objects = ObjectGraph(self.bundle.read_string(OBJECT_GRAPH_KEY),
                                        f"{self.display}/variables")
        key = self._objects.node(object_id)[1].get(_VARIABLE_VALUE)
        if key is None:
            raise ModelLoadError(f"captured object {object_id} has no saved value",
                                 path=self.display)
        return key


class GraphConverter:
    """Evaluates graph-level nodes and inlines functions, emitting IR through handlers."""

    def __init__(self, graph: gd.GraphDef, objects: list[gd.SavedObject],
                 bound: dict[str, list[int]], variables: _Variables, display: str):
        self.graph = graph
        self.objects = objects
        self.bound = bound
        self.vars = variables
        self.display = display
        self.b = GraphBuilder("savedmodel")
        self.cx = Ctx(self.b, self._call)
        self._graph_env: dict[str, list[Any]] = {}
        self._depth = 0
        self.feeds: dict[str, TT] = {}

    # -- checks ------------------------------------------------------------------------
    def check_ops(self, roots: list[str]) -> None:
        """Every op reachable from graph nodes ``roots`` has a handler, or one error."""
        missing: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        stack = [("", node) for node in self._graph_closure(roots)]
        while stack:
            where, node = stack.pop()
            funcs = _node_funcs(node)
            is_call = node.op in CALL_OPS or self.graph.function(node.op) is not None
            if is_call:
                funcs = funcs or [node.op]
            elif node.op not in OPS and (where or node.op not in GRAPH_OPS):
                # graph-level Placeholder/VarHandleOp/... are read by the walker itself
                missing[node.op].append(f"{where}/{node.name}" if where else node.name)
            else:
                for problem in attr_problems(node):
                    missing[f"{node.op} ({problem})"].append(
                        f"{where}/{node.name}" if where else node.name)
            for name in funcs:
                if name in seen:
                    continue
                seen.add(name)
                fn = self.graph.function(name)
                if fn is None:
                    raise ModelLoadError(f"'{where or 'graph'}/{node.name}' calls function "
                                         f"'{name}', which the library lacks",
                                         path=self.display)
                stack.extend((name, n) for n in fn.nodes)
        if missing:
            raise UnsupportedOpsError("TensorFlow op", missing, path=self.display)

    def _graph_closure(self, roots: list[str]) -> Iterator[gd.NodeDef]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            node = self.graph.nodes.get(name)
            if node is None:
                raise ModelLoadError(f"graph node '{name}' does not exist", path=self.display)
            yield node
            stack.extend(_ref_node(i) for i in node.inputs if not i.startswith("^"))

    # -- graph level -----------------------------------------------------------------
    def graph_tensor(self, ref: str) -> Any:
        """Value of graph tensor ``node:index`` (evaluating what it depends on)."""
        name, index = _graph_ref(ref)
        order = _topo(name, lambda n: [_graph_ref(i)[0] for i in self._graph_node(n).inputs
                                       if not i.startswith("^")], self._graph_env,
                     self.display)
        for node_name in order:
            node = self._graph_node(node_name)
            ins = [self._graph_value(i) for i in node.inputs if not i.startswith("^")]
            self._graph_env[node_name] = self._graph_eval(node, ins)
        outs = self._graph_env[name]
        if index >= len(outs):
            raise ModelLoadError(f"'{ref}': node has {len(outs)} outputs", path=self.display)
        return outs[index]

    def _graph_node(self, name: str) -> gd.NodeDef:
        node = self.graph.nodes.get(name)
        if node is None:
            raise ModelLoadError(f"graph node '{name}' does not exist", path=self.display)
        return node

    def _graph_value(self, ref: str) -> Any:
        name, index = _graph_ref(ref)
        outs = self._graph_env[name]
        if index >= len(outs):
            raise ModelLoadError(f"'{ref}': node has {len(outs)} outputs", path=self.display)
        return outs[index]

    def _graph_eval(self, node: gd.NodeDef, ins: list[Any]) -> list[Any]:
        if node.op == "Placeholder":
            feed = self.feeds.get(node.name)
            if feed is None:
                raise ModelLoadError(f"the signature needs Placeholder '{node.name}', which "
                                     "is not one of its inputs", path=self.display)
            return [feed]
        if node.op in ("VarHandleOp", "VariableV2"):
            key = (node.attr("shared_name") or b"").decode("utf-8", "replace") or node.name
            return [Resource(key, self._reader(key))]
        if node.op in CALL_OPS:
            fname = node.attr("f")
            captured = self.bound.get(fname, [])
            if captured:
                ins = ins[:len(ins) - len(captured)] + [self._capture(i) for i in captured]
            return self._call(fname, ins, node.name)
        if node.op == "NoOp":
            return []
        return self._convert_node(node, ins, "")

    def _reader(self, key: str) -> Callable[[], np.ndarray]:
        return lambda: self.vars.read_key(key)

    def _capture(self, object_id: int) -> Any:
        if not 0 <= object_id < len(self.objects):
            raise ModelLoadError(f"a function captures object {object_id}; the object graph "
                                 f"has {len(self.objects)}", path=self.display)
        obj = self.objects[object_id]
        if obj.kind == "variable":
            key = self.vars.key_of_object(object_id)
            return Resource(key, self._reader(key))
        if obj.kind == "constant":
            return self.graph_tensor(obj.operation)
        raise UnsupportedOpsError("TensorFlow op", {f"captured {obj.kind}": [str(object_id)]},
                                  path=self.display)

    # -- functions -------------------------------------------------------------------
    def _call(self, fname: str, args: list[Any], where: str) -> list[Any]:
        fn = self.graph.function(fname)
        if fn is None:
            raise ModelLoadError(f"'{where}' calls function '{fname}', which the library "
                                 "lacks", path=self.display)
        if len(args) != len(fn.arg_names):
            raise ModelLoadError(f"'{where}' passes {len(args)} arguments to '{fname}', it "
                                 f"takes {len(fn.arg_names)}", path=self.display)
        if self._depth >= MAX_CALL_DEPTH:
            raise ModelLoadError(f"functions nested deeper than {MAX_CALL_DEPTH} (at "
                                 f"'{fname}')", path=self.display)
        self._depth += 1
        try:
            return self._run(fn, args)
        finally:
            self._depth -= 1

    def _run(self, fn: gd.FunctionDef, args: list[Any]) -> list[Any]:
        argmap = dict(zip(fn.arg_names, args, strict=True))
        nodes = {n.name: n for n in fn.nodes}
        env: dict[str, list[Any]] = {}

        def deps(name: str) -> list[str]:
            return [r.split(":")[0] for r in nodes[name].inputs
                    if not r.startswith("^") and r.split(":")[0] in nodes]

        def resolve(ref: str) -> Any:
            parts = ref.split(":")
            if len(parts) == 1:
                if ref in argmap:
                    return argmap[ref]
                return env[ref][0]
            if parts[0] not in env:
                raise ModelLoadError(f"function '{fn.name}' refers to '{ref}', which it does "
                                     "not define", path=self.display)
            outs = env[parts[0]]
            node = nodes[parts[0]]
            names = OUTPUT_ARGS.get(node.op, [])
            try:
                index = (names.index(parts[1]) if parts[1] in names else 0) + int(parts[2])
                return outs[index]
            except (ValueError, IndexError) as exc:
                raise ModelLoadError(f"function '{fn.name}': bad reference '{ref}'",
                                     path=self.display) from exc

        roots = []
        for out in fn.output_names:
            ref = fn.ret.get(out)
            if ref is None:
                raise ModelLoadError(f"function '{fn.name}' does not return '{out}'",
                                     path=self.display)
            if ref.split(":")[0] in nodes:
                roots.append(ref.split(":")[0])
        for root in roots:
            for name in _topo(root, deps, env, self.display):
                node = nodes[name]
                ins = [resolve(r) for r in node.inputs if not r.startswith("^")]
                env[name] = self._convert_node(node, ins, fn.name)
        return [resolve(fn.ret[o]) for o in fn.output_names]

    def _convert_node(self, node: gd.NodeDef, ins: list[Any], where: str) -> list[Any]:
        if node.op in CALL_OPS:
            return self._call(node.attr("f"), ins, node.name)
        if self.graph.function(node.op) is not None:  # a function called as an op
            return self._call(node.op, ins, node.name)
        handler = OPS.get(node.op)
        if handler is None:
            raise UnsupportedOpsError("TensorFlow op", {node.op: [node.name]}, path=self.display)
        problems = attr_problems(node)
        if problems:  # check_ops reports these up front; never let a handler see them
            raise UnsupportedOpsError("TensorFlow op",
                                      {f"{node.op} ({p})": [f"{where}/{node.name}"]
                                       for p in problems}, path=self.display)
        with self.b.source(node.name):
            try:
                out = handler(self.cx, node, ins)
            except ConvertError as exc:
                raise UnsupportedOpsError(
                    "TensorFlow op", {f"{node.op} ({exc})": [f"{where}/{node.name}"]},
                    path=self.display) from exc
            except ModelLoadError as exc:
                if exc.path is not None:
                    raise
                raise ModelLoadError(exc.message, path=self.display) from exc
            except (ValueError, IndexError, TypeError, KeyError, AttributeError) as exc:
                # operands that do not fit the op (shapes, dtypes, missing attributes)
                raise ModelLoadError(f"{node.op} '{where}/{node.name}' cannot be converted: "
                                     f"{exc}", path=self.display,
                                     hint="the graph is inconsistent or uses a variant of "
                                     "the op modelconv does not read") from exc
        outs = out if isinstance(out, list) else [out]
        _record_shapes(node, outs)
        return outs


def _record_shapes(node: gd.NodeDef, outs: list[Any]) -> None:
    """Attach the ``_output_shapes`` TensorFlow recorded to the converted tensors."""
    shapes = node.attr("_output_shapes")
    if not isinstance(shapes, list):
        return
    for tensor, shape in zip(outs, shapes, strict=False):
        if not isinstance(tensor, TT) or not isinstance(shape, gd.Shape) or shape.dims is None:
            continue
        if tensor.rank < 0:
            tensor.rank = len(shape.dims)
        if tensor.rank == len(shape.dims) and tensor.shape is None:
            tensor.shape = list(shape.dims)


def _node_funcs(node: gd.NodeDef) -> list[str]:
    out = []
    for attr in node.attrs.values():
        if attr.kind == "func":
            out.append(attr.value)
        elif attr.kind == "list" and attr.value and all(isinstance(v, str) for v in attr.value) \
                and node.op in ("If", "StatelessIf", "While", "StatelessWhile", "Case"):
            out.extend(attr.value)
    return out


def _graph_ref(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    try:
        return name, int(index) if index else 0
    except ValueError as exc:
        raise ModelLoadError(f"bad tensor reference '{ref}'") from exc


def _ref_node(ref: str) -> str:
    return ref.split(":")[0]


def _topo(root: str, deps: Any, done: dict[str, Any], display: str) -> list[str]:
    """Nodes to evaluate for ``root``, dependencies first (iterative: graphs are deep)."""
    order: list[str] = []
    state: dict[str, int] = {}
    stack = [(root, False)]
    while stack:
        name, expanded = stack.pop()
        if name in done or state.get(name) == 2:
            continue
        if expanded:
            state[name] = 2
            order.append(name)
            continue
        if state.get(name) == 1:
            raise ModelLoadError(f"the graph has a cycle through '{name}'", path=display)
        state[name] = 1
        stack.append((name, True))
        for dep in deps(name):
            if dep not in done and state.get(dep) != 2:
                if state.get(dep) == 1:
                    raise ModelLoadError(f"the graph has a cycle through '{dep}'",
                                         path=display)
                stack.append((dep, False))
    return order


def convert_signature(folder: str | Path, signature: str, display: str | None = None
                      ) -> GraphModel:
    """Convert ``signature`` of the SavedModel in ``folder`` to an IR model."""
    base = Path(folder)
    shown = display or str(base)
    saved = read_saved_model(base, shown)
    sig = saved.signatures.get(signature)
    if sig is None:
        raise ModelLoadError(f"no signature '{signature}' (the SavedModel has: "
                             f"{', '.join(sorted(saved.signatures)) or 'none'})", path=shown,
                             hint="choose one with --signature")
    try:
        graph = gd.graph_def(saved.meta_graph)
        objects, bound = gd.object_graph(saved.meta_graph)
    except pw.ProtoError as exc:
        raise ModelLoadError(f"corrupt graph in saved_model.pb ({exc})", path=shown) from exc
    variables = _Variables(base, shown)
    try:
        conv = GraphConverter(graph, objects, bound, variables, shown)
        roots = [_graph_ref(info.name)[0] for info in sig.outputs.values()]
        conv.check_ops(roots)
        _check_signature_dtypes(sig, shown)
        inputs = _declare_inputs(conv, sig, roots)
        keys = sorted(sig.outputs)
        values = []
        try:
            for key in keys:
                out = conv.graph_tensor(sig.outputs[key].name)
                if not isinstance(out, TT):
                    raise ModelLoadError(f"signature output '{key}' is not a tensor",
                                         path=shown)
                values.append(conv.cx.last(out))
        except pw.ProtoError as exc:
            raise ModelLoadError(f"corrupt node in saved_model.pb ({exc})", path=shown) from exc
        conv.b.set_outputs(values, keys)
        for value, key in zip(conv.b.outputs, keys, strict=True):
            info = sig.outputs[key]
            value.type = ir.TensorType(ir.DataType.from_numpy(np_dtype_of(info.dtype)))
            if info.shape is not None:
                value.shape = ir.Shape(list(info.shape))
        _claim_output_names(conv.b, keys)
        model = conv.b.build(doc=f"SavedModel signature '{signature}'")
    finally:
        variables.close()
    return GraphModel(model, inputs, keys)


def _claim_output_names(b: GraphBuilder, keys: list[str]) -> None:
    """Give the graph outputs exactly their signature keys: an inner value or initializer
    already named like a key (values are named after their op: ``Softmax``, ``Add``...)
    is renamed, instead of the output becoming ``Softmax_2``."""
    outputs = {id(v) for v in b.outputs}
    taken = set(keys)
    for node in b.nodes:
        for value in node.outputs:
            if value.name in taken and id(value) not in outputs:
                value.name = b.unique_name(f"{value.name}__inner")
    for name in [n for n in b.initializers if n in taken]:
        value = b.initializers.pop(name)
        value.name = b.unique_name(f"{name}__inner")
        if value.const_value is not None:
            value.const_value.name = value.name
        b.initializers[value.name] = value
    for value, key in zip(b.outputs, keys, strict=True):
        value.name = key


def _check_signature_dtypes(sig: Signature, display: str) -> None:
    """Refuse signature inputs/outputs of a dtype the converter cannot compute in (string,
    complex, quantized), all at once."""
    bad: dict[str, list[str]] = defaultdict(list)
    for side, infos in (("input", sig.inputs), ("output", sig.outputs)):
        for key, info in infos.items():
            if info.dtype not in COMPUTABLE_DTYPES or info.dtype in (20, 21):
                bad[dtype_name(info.dtype)].append(f"signature {side} '{key}'")
    if bad:
        raise UnsupportedOpsError("TensorFlow dtype", bad, path=display)


def _declare_inputs(conv: GraphConverter, sig: Signature, roots: list[str]
                    ) -> list[tuple[str, str, tuple[int | None, ...]]]:
    """Graph inputs for the signature's Placeholders, in the order the call passes them."""
    position: dict[str, int] = {}
    for node in conv._graph_closure(roots):
        for i, ref in enumerate(node.inputs):
            position.setdefault(_graph_ref(ref)[0], i)
    keys = sorted(sig.inputs, key=lambda k: (position.get(_graph_ref(sig.inputs[k].name)[0],
                                                          1 << 30), k))
    specs = []
    for key in keys:
        info = sig.inputs[key]
        if info.shape is None:
            raise ModelLoadError(f"signature input '{key}' has unknown rank",
                                 path=conv.display)
        dtype = np_dtype_of(info.dtype)
        value = conv.b.add_input(key, dtype, list(info.shape))
        feed = conv.cx.out(value, len(info.shape), dtype)
        feed.shape = list(info.shape)
        conv.feeds[_graph_ref(info.name)[0]] = feed
        specs.append((key, dtype.name, tuple(info.shape)))
    return specs
