"""Lower an ExportedProgram's FX graph to the IR, one registered handler per ATen op.

Steps: (1) lower the program as exported when every op has a handler, otherwise decompose
the ATen ops that have none (a full re-trace, so only when needed), (2) walk the graph and
collect every op still without one (one UnsupportedOpsError), (3) emit IR nodes, tagging
each with the module path it came from (``nn_module_stack``) or the FX node name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from modelconv.errors import ModelconvError, UnsupportedOpsError
from modelconv.importers.torch.aten import ATEN_OPS, AtenBuilder, check_call, ir_dtype
from modelconv.importers.torch.coverage import REFUSED
from modelconv.importers.torch.fused import fused_decompositions
from modelconv.importers.torch.inplace import functional_key, mutates, safe_inplace

#: FX targets the lowering handles itself (no registry entry)
_BUILTIN = {"operator.getitem"}

#: ops whose handler provides only the first output (the pooled values): {key: the output
#: it cannot provide}; a use of that output is refused by name (torch's argmax indices are
#: flat per-plane positions, which neither ONNX's MaxPool indices nor TFLite express)
VALUES_ONLY = {key: "indices" for key in (
    "aten.adaptive_max_pool1d.default", "aten.adaptive_max_pool2d.default",
    "aten.adaptive_max_pool3d.default", "aten.max_pool2d_with_indices.default",
    "aten.max_pool3d_with_indices.default")}


def target_key(target: Any) -> str:
    """Registry key of an FX call_function target: ``aten.add.Tensor``, ``operator.mul``."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", None) or str(target)
    if module in {"_operator", "operator"}:
        module = "operator"
    return f"{module}.{name}" if module else name


def source_name(node: torch.fx.Node) -> str:
    """The module path the node came from, or its FX name at the top level."""
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            return _clean_path(path)
    return node.name


def _clean_path(path: str) -> str:
    # strict-mode paths look like "L['self'].layer1._modules['0']"; normalise them
    for old, new in (("L['self'].", ""), ("L['self']", ""), ("._modules['", "."), ("']", "")):
        path = path.replace(old, new)
    return path


def decomposition_table() -> dict[Any, Any]:
    """torch.export's default decompositions minus every op we have a handler for, plus the
    fused fast-path kernels a TorchScript trace records (:mod:`.fused`)."""
    table = torch.export.default_decompositions()
    table.update(fused_decompositions())
    for op in list(table.keys()):
        if str(op) in ATEN_OPS:
            del table[op]
    return table


def prepare(ep: ExportedProgram) -> ExportedProgram:
    """The program itself when every op has a handler, else decomposed to ops we handle.

    ``run_decompositions`` re-traces the whole program (it costs more than the export), so
    it only runs when an op lacks a handler, an in-place op cannot be lowered functionally
    or the program mutates its inputs/buffers.
    """
    if not needs_decomposition(ep):
        return ep
    return ep.run_decompositions(decomposition_table())


def needs_decomposition(ep: ExportedProgram) -> bool:
    """True unless the program can be lowered as it is (see :mod:`.inplace`)."""
    if any(s.kind != OutputKind.USER_OUTPUT for s in ep.graph_signature.output_specs):
        return True  # buffer / input mutations, tokens
    _, missing = handler_keys(ep)
    return bool(missing)


def handler_keys(ep: ExportedProgram) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(handler key per call_function node name, {unsupported op: [source names]}).

    In-place ops map to their functional handler where :func:`.inplace.safe_inplace`
    allows it; other mutating ops and ops without a handler are unsupported, and so are
    calls the handler's registered check refuses (listed as ``"key (reason)"``).
    """
    keys: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    order: dict[torch.fx.Node, int] = {}
    for i, node in enumerate(ep.graph.nodes):
        order[node] = i
        if node.op == "get_attr":
            missing.setdefault("get_attr (submodule / higher-order op)", []).append(node.name)
        if node.op != "call_function":
            continue
        key = target_key(node.target)
        supported = key in ATEN_OPS or key in _BUILTIN
        if mutates(node.target):  # only ever lowered as the functional op, where safe
            functional = functional_key(node.target)
            supported = (functional is not None and functional in ATEN_OPS
                         and safe_inplace(node, order))
            key = functional if supported and functional is not None else key
        if not supported:
            label = f"{key} ({REFUSED[key]})" if key in REFUSED else key
            missing.setdefault(label, []).append(source_name(node))
        elif (reason := check_call(key, *_fake_args(node))) is not None:
            missing.setdefault(f"{key} ({reason})", []).append(source_name(node))
        elif key in VALUES_ONLY and _uses_output(node, 1):
            missing.setdefault(
                f"{key} (its {VALUES_ONLY[key]} output is not supported, only the pooled "
                "values: pool without return_indices, or compute the indices after the "
                "converted model)", []).append(source_name(node))
        keys[node.name] = key
    return keys, missing


def _uses_output(node: torch.fx.Node, index: int) -> bool:
    """Whether output ``index`` of a multi-output node is used (``getitem(node, index)``
    with users, the graph's output included)."""
    import operator

    return any(user.op == "call_function" and user.target is operator.getitem
               and len(user.args) > 1 and user.args[1] == index and user.users
               for user in node.users)


def _fake_args(node: torch.fx.Node) -> tuple[list[Any], dict[str, Any]]:
    """The node's arguments with every FX node replaced by its ``meta["val"]``."""
    def fake(a: Any) -> Any:
        if isinstance(a, torch.fx.Node):
            return a.meta.get("val")
        if isinstance(a, (list, tuple)):
            return type(a)(fake(x) for x in a)
        return a

    return [fake(a) for a in node.args], {k: fake(v) for k, v in node.kwargs.items()}


def check_supported(ep: ExportedProgram) -> None:
    """Raise ONE UnsupportedOpsError listing every op without a handler."""
    _, missing = handler_keys(ep)
    if missing:
        raise UnsupportedOpsError("aten op", missing)


class _Lowering:
    def __init__(self, ep: ExportedProgram, dim_names: Mapping[str, str],
                 keys: Mapping[str, str], input_names: Sequence[str] | None = None):
        self.ep = ep
        users = list(ep.graph_signature.user_inputs)
        self.input_names = dict(zip(users, input_names, strict=False)) if input_names else {}
        self.keys = keys
        self.b = AtenBuilder(name="main_graph")
        self.env: dict[str, Any] = {}
        self.dim_names = dict(dim_names)
        self.specs = {s.arg.name: s for s in ep.graph_signature.input_specs
                      if hasattr(s.arg, "name")}

    # -- shapes -------------------------------------------------------------------------
    def _dim(self, d: Any) -> int | str:
        if isinstance(d, int):
            return d
        as_int = d.node.maybe_as_int() if hasattr(d.node, "maybe_as_int") else None
        if as_int is not None:
            return int(as_int)
        expr = d.node.expr
        subs = {s: _sym(self.dim_names[str(s)]) for s in expr.free_symbols
                if str(s) in self.dim_names}
        return str(expr.subs(subs) if subs else expr)

    def _annotate(self, value: ir.Value, val: Any) -> None:
        if value.type is not None or val is None:
            return
        if isinstance(val, torch.Tensor):
            value.dtype = ir_dtype(val.dtype)
            value.shape = ir.Shape([self._dim(d) for d in val.shape])
        elif isinstance(val, (torch.SymInt, int)):
            value.dtype = ir.DataType.INT64
            value.shape = ir.Shape([])
        elif isinstance(val, (torch.SymFloat, float)):
            value.dtype = ir.DataType.FLOAT
            value.shape = ir.Shape([])
        elif isinstance(val, (torch.SymBool, bool)):
            value.dtype = ir.DataType.BOOL
            value.shape = ir.Shape([])

    # -- nodes --------------------------------------------------------------------------
    def _arg(self, a: Any) -> Any:
        if isinstance(a, torch.fx.Node):
            return self.env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self._arg(x) for x in a)
        return a

    def placeholder(self, node: torch.fx.Node) -> None:
        spec = self.specs[node.name]
        val = node.meta.get("val")
        if spec.kind == InputKind.USER_INPUT:
            if not isinstance(val, torch.Tensor):
                raise ModelconvError(f"input '{node.name}' is not a tensor ({type(val).__name__})",
                                     hint="Only tensor inputs are supported")
            shape = [self._dim(d) for d in val.shape]
            self.env[node.name] = self.b.add_input(self.input_names.get(node.name, node.name),
                                                   ir_dtype(val.dtype), shape)
            return
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            tensor = self.ep.state_dict.get(spec.target)
            if tensor is None:  # non-persistent buffers live in constants
                tensor = self.ep.constants[spec.target]
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            tensor = self.ep.constants[spec.target]
        else:
            raise UnsupportedOpsError("aten op", {f"input kind {spec.kind.name}": [node.name]})
        self.env[node.name] = self.b.initializer(_ir_tensor(tensor), spec.target or node.name)

    def call_function(self, node: torch.fx.Node) -> None:
        key = self.keys[node.name]
        if key == "operator.getitem":
            seq, index = node.args
            self.env[node.name] = self.env[seq.name][index]  # type: ignore[index,union-attr]
            return
        handler = ATEN_OPS.get(key)
        assert handler is not None, key
        args = self._arg(node.args)
        kwargs = {k: self._arg(v) for k, v in node.kwargs.items()}
        self.b.meta = node.meta.get("val")
        with self.b.source(source_name(node)):
            try:
                out = handler(self.b, *args, **kwargs)
            except ModelconvError:
                raise
            except Exception as exc:
                raise ModelconvError(
                    f"lowering {key} at '{source_name(node)}' failed: {exc}"
                ) from exc
        self.env[node.name] = out
        val = node.meta.get("val")
        if isinstance(out, ir.Value):
            self._annotate(out, val)
        elif isinstance(out, (tuple, list)) and isinstance(val, (tuple, list)):
            for o, v in zip(out, val, strict=False):
                if isinstance(o, ir.Value):
                    self._annotate(o, v)

    def output(self, node: torch.fx.Node) -> None:
        specs = self.ep.graph_signature.output_specs
        results = node.args[0]
        values: list[ir.Value] = []
        labels = output_names(self.ep)
        names: list[str] = []
        user = 0
        for spec, res in zip(specs, results, strict=True):  # type: ignore[arg-type]
            if spec.kind != OutputKind.USER_OUTPUT:
                continue
            user += 1
            if res is None:
                continue
            value = self.env[res.name] if isinstance(res, torch.fx.Node) else self.b.const(res)
            values.append(value)
            names.append(labels[user - 1] if labels else f"output_{len(names)}")
        self.b.set_outputs(values, _unique(names))

    def run(self) -> ir.Model:
        for node in self.ep.graph.nodes:
            getattr(self, node.op)(node)
        return self.b.build()


def output_names(ep: ExportedProgram) -> list[str] | None:
    """Names of the user outputs from the structure ``forward`` returns.

    Dict keys and ``ModelOutput``/dataclass/namedtuple fields give their key
    (``last_hidden_state``, ``logits``; nested as ``hidden_states.1``); a tuple or list
    at the top gives ``output_0, output_1, ...``; a single tensor ``output_0``.
    None when the structure cannot be read (the caller numbers the outputs).
    """
    spec = getattr(ep.call_spec, "out_spec", None)
    if spec is None:
        return None
    names = list(_spec_paths(spec, ()))
    users = [s for s in ep.graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT]
    if len(names) != len(users):
        return None
    return [_label(path) for path in names]


def _spec_paths(spec: Any, prefix: tuple[str | int, ...]) -> Any:
    if spec.is_leaf():
        yield prefix
        return
    children = list(spec.children()) if hasattr(spec, "children") else list(spec.children_specs)
    keys: list[str | int] = list(range(len(children)))
    ctx = spec.context
    fields = getattr(ctx, "_fields", None) if isinstance(ctx, type) else None
    if isinstance(ctx, (list, tuple)) and len(ctx) == len(children) \
            and all(isinstance(k, (str, int)) for k in ctx):
        keys = list(ctx)
    elif fields is not None and len(fields) == len(children):
        keys = list(fields)
    for key, child in zip(keys, children, strict=True):
        yield from _spec_paths(child, (*prefix, key))


def _label(path: tuple[str | int, ...]) -> str:
    if not path:
        return "output_0"
    head, *rest = path
    first = f"output_{head}" if isinstance(head, int) else str(head)
    return ".".join([first, *(str(p) for p in rest)])


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        count = seen.get(n, 0)
        seen[n] = count + 1
        out.append(n if count == 0 else f"{n}_{count}")
    return out


def _sym(name: str) -> Any:
    import sympy

    return sympy.Symbol(name)


def _ir_tensor(tensor: torch.Tensor) -> Any:
    """An IR tensor sharing memory with ``tensor`` where possible."""
    from onnx_ir.tensor_adapters import TorchTensor

    t = tensor.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype in (torch.float32, torch.int64, torch.int32, torch.uint8, torch.int8, torch.bool,
                   torch.float64, torch.int16):
        return np.asarray(t.numpy())
    return TorchTensor(t)


def lower_program(ep: ExportedProgram, dim_names: Mapping[str, str] | None = None, *,
                  input_names: Sequence[str] | None = None) -> ir.Model:
    """The IR model of a prepared (decomposed) ExportedProgram.

    Args:
        ep: the prepared program.
        dim_names: program shape symbols (``s0``) to dim names.
        input_names: IR names of the user inputs in order (default: placeholder names).

    Returns:
        The IR model; outputs named by :func:`output_names`.

    Raises:
        UnsupportedOpsError: every op without a handler, in one error.
        ModelconvError: a handler failed.
    """
    keys, missing = handler_keys(ep)
    if missing:
        raise UnsupportedOpsError("aten op", missing)
    return _Lowering(ep, dim_names or {}, keys, input_names).run()


def placeholder_symbols(
    ep: ExportedProgram, wanted: Mapping[str, Mapping[int, str]]
) -> dict[str, str]:
    """Map the program's shape symbols (``s0``) to the dim names the user asked for."""
    names: dict[str, str] = {}
    for node in ep.graph.nodes:
        if node.op != "placeholder" or node.name not in wanted:
            continue
        val = node.meta.get("val")
        for axis, dim_name in wanted[node.name].items():
            d = val.shape[axis]
            if isinstance(d, torch.SymInt):
                names[str(d.node.expr)] = dim_name
    return names


#: ops that pass integer ids through unchanged
_ID_PRESERVING = {"aten._to_copy.default", "aten.clone.default", "aten.alias.default",
                  "aten.view.default", "aten.reshape.default"}


def _index_source(ids: Any) -> Any:
    """The node ids come from, through casts/views and Keras' negative-id wrap
    ``where(ids < 0, ids + rows, ids)`` (which is the identity on valid ids)."""
    seen = 0
    while isinstance(ids, torch.fx.Node) and ids.op == "call_function" and seen < 16:
        seen += 1
        key = target_key(ids.target)
        if key in _ID_PRESERVING:
            ids = ids.args[0]
        elif key == "aten.where.self" and len(ids.args) == 3:
            cond = ids.args[0]
            if not (isinstance(cond, torch.fx.Node) and target_key(cond.target)
                    == "aten.lt.Scalar" and cond.args[1] == 0
                    and _index_source(cond.args[0]) is _index_source(ids.args[2])):
                return None
            ids = ids.args[2]
        else:
            return None
    return ids


def embedding_ranges(ep: ExportedProgram) -> dict[str, tuple[int, int]]:
    """Valid id ranges of integer inputs that index an embedding table directly."""
    ranges: dict[str, tuple[int, int]] = {}
    for node in ep.graph.nodes:
        if node.op == "call_function" and target_key(node.target) == "aten.embedding.default":
            weight, ids = node.args[0], _index_source(node.args[1])
            if isinstance(ids, torch.fx.Node) and ids.op == "placeholder":
                rows = int(weight.meta["val"].shape[0])
                lo, hi = ranges.get(ids.name, (0, rows))
                ranges[ids.name] = (lo, min(hi, rows))
    return ranges


__all__ = ["check_supported", "handler_keys", "lower_program", "needs_decomposition", "prepare",
           "source_name", "target_key"]
