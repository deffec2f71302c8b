"""A fast capture of an ``nn.Module``: one forward on meta tensors, recorded op by op.

``torch.export.export`` is most of a torch conversion's time (ResNet-50: about 1 s of the
2 s), because it fakifies, functionalises, builds guards and a wrapper module around the
program. When no dim is dynamic, the same ATen-level graph can be had much more cheaply:
run ``forward`` once under a ``TorchDispatchMode`` that appends every ATen call it sees to
an FX graph and runs the call on *meta twins* of its tensors (shapes, no data, no
arithmetic: the weights and inputs are never computed with)::

    forward(x)                -->  placeholder p_conv_weight, ..., x
      conv(x) -> bn -> relu_       convolution(x, p_conv_weight, ...)
                                   batch_norm(...)            (F.batch_norm recorded whole)
                                   relu_(batch_norm)

The result is wrapped as :class:`FastProgram`, which offers what the lowering reads from an
``ExportedProgram`` (graph, signature, state_dict, constants, output structure), so the
same handlers and the same in-place analysis (:mod:`.inplace`) lower it. As under
torch.export, ``torch.compiler.is_exporting()`` is true while recording and a function mode
is active (torch's functions take their composite paths).

The capture is refused — and the caller falls back to torch.export — whenever it cannot be
sure the graph is the one eager runs (:class:`FastCaptureRefused` says why):

* anything reading a tensor's *values* in Python (``if x.sum() > 0``, ``.item()``,
  ``.tolist()``, ``.numpy()``, ``bool(x)``), and ops tagged as data-dependent (their result
  or output shape depends on the data: ``nonzero``, boolean-mask indexing);
* an op returning something other than tensors (a Python number decided by data);
* an op writing to an input, parameter, buffer or constant (refused before it runs);
* a tensor reaching an op that is not a recorded result, an input, a parameter, a buffer
  or a plain CPU constant (meta-device weights, tensor subclasses);
* outputs that are not tensors, or that the recording did not produce;
* any op without a handler, any call a handler's check refuses, any in-place op that
  cannot be lowered functionally without changing what is read (a view of the mutated
  tensor, a later reader: see :func:`.inplace.safe_inplace`);
* dynamic dims (only torch.export produces symbolic shapes), TorchScript modules,
  and any exception raised while recording (an op without a meta kernel).
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.export.graph_signature import (
    ExportGraphSignature,
    InputKind,
    InputSpec,
    OutputKind,
    OutputSpec,
    TensorArgument,
)
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from modelconv.errors import ModelconvError

#: environment switch: ``auto`` (default: fast where it applies), ``export`` (always
#: torch.export), ``fast`` (fast or an error saying why not; for tests)
CAPTURE_ENV = "MODELCONV_TORCH_CAPTURE"

#: ops that only say "this tensor is fresh": the output is the input
_PASS_THROUGH = {"aten.lift_fresh.default"}

#: ops that read metadata (device, sizes, strides, the SDPA backend choice), never data:
#: their results are shape facts, which the static-shape capture may bake in
_METADATA = ("prim.device.", "prim.layout.", "aten.sym_size.", "aten.sym_stride.",
             "aten.sym_numel.", "aten.sym_storage_offset.", "aten.is_contiguous.",
             "aten.is_strides_like_format.", "aten.is_non_overlapping_and_dense.",
             "aten.dim.", "aten.size.", "aten.stride.", "aten.numel.",
             "aten._fused_sdp_choice.", "aten.is_same_size.")


class FastCaptureRefused(ModelconvError):
    """The fast capture cannot vouch for this model; torch.export is used instead."""


def capture_mode() -> str:
    """The capture switch from :data:`CAPTURE_ENV` (``auto``, ``fast`` or ``export``).

    Returns:
        The mode.

    Raises:
        ModelconvError: an unknown value.
    """
    mode = os.environ.get(CAPTURE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "fast", "export"):
        raise ModelconvError(f"{CAPTURE_ENV}={mode!r} is not a capture mode",
                             hint="Use auto, fast or export")
    return mode


@dataclass
class _CallSpec:
    in_spec: Any
    out_spec: Any


@dataclass
class FastProgram:
    """The parts of an ``ExportedProgram`` the lowering and the verifier read."""

    graph: torch.fx.Graph
    graph_signature: ExportGraphSignature
    state_dict: dict[str, torch.Tensor]
    constants: dict[str, Any]
    call_spec: _CallSpec
    #: parameters, buffers and constants by placeholder name (for :meth:`module`)
    _lifted: dict[str, torch.Tensor] = field(default_factory=dict)

    def module(self) -> torch.nn.Module:
        """A module running the recorded graph on the user inputs (for localisation).

        Returns:
            A GraphModule whose parameters, buffers and constants are attributes.
        """
        root = torch.nn.Module()
        graph = torch.fx.Graph()
        env: dict[torch.fx.Node, torch.fx.Node] = {}
        for i, (name, tensor) in enumerate(self._lifted.items()):
            root.register_buffer(f"_lifted_{i}", tensor, persistent=False)
            env[self._placeholder(name)] = graph.get_attr(f"_lifted_{i}")
        for node in self.graph.nodes:
            if node not in env:
                env[node] = graph.node_copy(node, lambda n: env[n])
        return torch.fx.GraphModule(root, graph)

    def _placeholder(self, name: str) -> torch.fx.Node:
        for node in self.graph.nodes:
            if node.op == "placeholder" and node.name == name:
                return node
        raise KeyError(name)


class _Ref:
    """Where a recorded tensor lives: node ``index`` of the recording, output ``item``."""

    __slots__ = ("index", "item")

    def __init__(self, index: int, item: int | None = None):
        self.index, self.item = index, item


@dataclass
class _Call:
    func: Any
    args: Any
    kwargs: Any
    out: Any
    stack: str


_REFUSED_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)

#: Tensor methods that hand a tensor's values to Python without an ATen call
_VALUE_READS = frozenset({
    "numpy", "tolist", "item", "__bool__", "__int__", "__float__", "__index__",
    "__complex__", "__array__", "__dlpack__", "data_ptr", "storage", "untyped_storage",
    "_storage", "__repr__", "__str__", "__format__", "__reduce_ex__", "__iter__",
})


def _static_index(key: str, args: Any) -> bool:
    """``x[idx]`` with integer index tensors: its shape is the index's, not data-dependent
    (``aten.index.Tensor`` is tagged dynamic for boolean masks only)."""
    if key != "aten.index.Tensor" or len(args) < 2:
        return False
    return all(i is None or (isinstance(i, torch.Tensor) and i.dtype not in
                             (torch.bool, torch.uint8)) for i in args[1])


def _storage(t: torch.Tensor) -> int:
    """Identity of the storage ``t`` views (views share it; meta storages have no address)."""
    return int(t.untyped_storage()._cdata)


def _plain(t: torch.Tensor) -> bool:
    """A dense CPU tensor or parameter (no subclass, no meta/sparse/quantized storage)."""
    return type(t) in (torch.Tensor, torch.nn.Parameter) and t.device.type == "cpu" \
        and t.layout == torch.strided and not t.is_quantized


def _meta(x: Any) -> Any:
    """A data-free stand-in (shape, strides, dtype) of a result, for ``node.meta["val"]``."""
    if isinstance(x, torch.Tensor):
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
    if isinstance(x, (list, tuple)):
        return type(x)(_meta(o) for o in x)
    return x


class _Recorder(TorchDispatchMode):
    """Appends every ATen call to ``calls``, with tensor arguments replaced by refs."""

    def __init__(self, known: WeakIdKeyDictionary, lift: Any, stack: list[str],
                 protected: set[int]):
        super().__init__()
        self.known = known
        self.lift = lift  # real tensor -> _Ref of a parameter/buffer/constant placeholder
        self.stack = stack
        self.protected = protected  # storages of inputs, parameters, buffers, constants
        self.calls: list[_Call] = []
        #: the meta twin every real tensor is computed as (weights never compute)
        self.twins: WeakIdKeyDictionary = WeakIdKeyDictionary()
        #: inside a function recorded whole (:data:`_WHOLE`): ops run, none is recorded
        self.suspended = False

    def twin(self, x: Any) -> Any:
        """``x`` with every real tensor replaced by its meta twin (made once per tensor)."""
        if isinstance(x, torch.Tensor):
            if x.device.type == "meta":
                return x
            got = self.twins.get(x)
            if got is None:
                got = self.twins[x] = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype,
                                                          device="meta")
                if x in self.known:
                    self.known[got] = self.known[x]
            return got
        if isinstance(x, (list, tuple)):
            return type(x)(self.twin(a) for a in x)
        if isinstance(x, dict):
            return {k: self.twin(v) for k, v in x.items()}
        return x

    def _ref(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            ref = self.known.get(x)
            return ref if ref is not None else self.lift(x)
        if isinstance(x, (list, tuple)):
            return type(x)(self._ref(a) for a in x)
        return x

    def _check_writes(self, func: Any, args: Any, kwargs: Any) -> None:
        """Refuse, before it runs, an op writing to an input, parameter, buffer or constant."""
        schema = func._schema
        for i, a in enumerate(schema.arguments):
            if a.alias_info is None or not a.alias_info.is_write:
                continue
            value = args[i] if i < len(args) else kwargs.get(a.name)
            tensors = value if isinstance(value, (list, tuple)) else [value]
            for t in tensors:
                if isinstance(t, torch.Tensor) and _storage(self.twin(t)) in self.protected:
                    raise FastCaptureRefused(f"{func} writes to an input, parameter, buffer "
                                             "or constant")

    def _append(self, func: Any, ref_args: Any, ref_kwargs: Any, out: Any) -> None:
        index = len(self.calls)
        if isinstance(out, torch.Tensor):
            self.known[out] = _Ref(index)
        elif isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) or o is None
                                                    for o in out):
            for i, o in enumerate(out):
                if o is not None:
                    self.known[o] = _Ref(index, i)
        elif out is not None:
            raise FastCaptureRefused(f"{func} returned a {type(out).__name__}, not tensors "
                                     "(a value decided by the data)")
        self.calls.append(_Call(func, ref_args, ref_kwargs, _meta(out),
                                self.stack[-1] if self.stack else ""))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        key = str(func)
        if key.startswith(_METADATA):
            return func(*self.twin(args), **self.twin(kwargs))
        if any(tag in func.tags for tag in _REFUSED_TAGS) and not _static_index(key, args):
            raise FastCaptureRefused(f"{key} reads tensor values (its result or its shape "
                                     "depends on the data)")
        self._check_writes(func, args, kwargs)
        if self.suspended:
            return func(*self.twin(args), **self.twin(kwargs))
        ref_args = self._ref(args)
        ref_kwargs = {k: self._ref(v) for k, v in kwargs.items()}
        if kwargs.get("device") is not None:
            kwargs = {**kwargs, "device": torch.device("meta")}  # factories make no data
        out = func(*self.twin(args), **{k: self.twin(v) for k, v in kwargs.items()})
        if key in _PASS_THROUGH and isinstance(out, torch.Tensor):
            self.known[out] = ref_args[0]
            return out
        self._append(func, ref_args, ref_kwargs, out)
        return out


    def record_whole(self, op: Any, args: tuple[Any, ...], out: torch.Tensor,
                     kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """Record one call of ``op`` on ``args`` (and non-tensor ``kwargs``) whose result is
        ``out`` (a meta tensor)."""
        self._append(op, self._ref(args), dict(kwargs or {}), out)
        return out


def _batch_norm(recorder: _Recorder, input: Any, running_mean: Any, running_var: Any,
                weight: Any = None, bias: Any = None, training: bool = False,
                momentum: float = 0.1, eps: float = 1e-5) -> Any:
    """``F.batch_norm`` at inference as ``aten.batch_norm`` (torch.export's op), its result
    shaped like the input: the meta kernel CPU batch norm decomposes into is slow."""
    if training or not isinstance(input, torch.Tensor) or running_mean is None:
        return None
    out = torch.empty_like(recorder.twin(input))
    return recorder.record_whole(torch.ops.aten.batch_norm.default,
                                 (input, weight, bias, running_mean, running_var, False,
                                  momentum, eps, True), out)


def _linear(recorder: _Recorder, input: Any, weight: Any, bias: Any = None) -> Any:
    """``F.linear`` as ``aten.linear`` (torch.export's op), not its ``t`` + ``addmm`` /
    ``matmul`` decomposition: the TFLite exporter folds a whole linear into one
    FULLY_CONNECTED (bias included) and keeps token tensors in their layout."""
    if not isinstance(input, torch.Tensor) or not isinstance(weight, torch.Tensor) or \
            weight.dim() != 2 or input.dim() < 1 or \
            (bias is not None and not isinstance(bias, torch.Tensor)):
        return None
    out = torch.empty((*input.shape[:-1], weight.shape[0]), dtype=input.dtype, device="meta")
    args = (input, weight) if bias is None else (input, weight, bias)
    return recorder.record_whole(torch.ops.aten.linear.default, args, out)


def _matmul(recorder: _Recorder, input: Any, other: Any, *, out: Any = None) -> Any:
    """``torch.matmul`` / ``@`` as ``aten.matmul`` (torch.export's op), not its broadcasting
    ``expand`` + flattening ``view`` + ``bmm`` / ``mm`` + ``_unsafe_view`` decomposition:
    the graph is then torch.export's, three ops smaller per product, and the TFLite layout
    pass sees the batch dims of an attention's ``q @ k`` whole."""
    if out is not None or not isinstance(input, torch.Tensor) or \
            not isinstance(other, torch.Tensor) or input.dim() == 0 or other.dim() == 0:
        return None
    result = torch.matmul(recorder.twin(input), recorder.twin(other))
    return recorder.record_whole(torch.ops.aten.matmul.default, (input, other), result)


def _sdpa(recorder: _Recorder, query: Any, key: Any, value: Any, attn_mask: Any = None,
          dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
          enable_gqa: bool = False) -> Any:
    """``F.scaled_dot_product_attention`` without dropout as
    ``aten.scaled_dot_product_attention`` (torch.export's op), not its math decomposition:
    without a mask no row can be fully masked, so its ``_safe_softmax`` guard (four ops a
    head) is not needed, and with one the handler applies it."""
    tensors = (query, key, value) + (() if attn_mask is None else (attn_mask,))
    if dropout_p != 0.0 or not all(isinstance(t, torch.Tensor) for t in tensors) or \
            not isinstance(is_causal, bool) or not isinstance(enable_gqa, bool) or \
            not (scale is None or isinstance(scale, (int, float))):
        return None
    q, k, v = recorder.twin((query, key, value))
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=recorder.twin(attn_mask), is_causal=is_causal, scale=scale,
        enable_gqa=enable_gqa)
    return recorder.record_whole(torch.ops.aten.scaled_dot_product_attention.default,
                                 (query, key, value, attn_mask, 0.0, is_causal), out,
                                 {"scale": scale, "enable_gqa": enable_gqa})


#: functions recorded as one ATen op each (None from the adapter: record as usual)
_WHOLE: dict[Any, Any] = {torch.nn.functional.batch_norm: _batch_norm,
                          torch.nn.functional.linear: _linear, torch.matmul: _matmul,
                          torch.Tensor.matmul: _matmul, torch.Tensor.__matmul__: _matmul,
                          torch.nn.functional.scaled_dot_product_attention: _sdpa}


class _ValueGuard(TorchFunctionMode):
    """Refuses every Python read of tensor values (``.numpy()``, ``bool(x)``, ``.tolist()``:
    the ones that make no ATen call) and records the functions of :data:`_WHOLE` as one op.
    While it is active, torch's functions see a mode, as under torch.export, and take their
    composite paths (MultiheadAttention's fused kernel is skipped)."""

    def __init__(self, recorder: _Recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _VALUE_READS:
            raise FastCaptureRefused(f"forward reads tensor values in Python (Tensor.{name}): "
                                     "the graph could depend on the data")
        whole = _WHOLE.get(func)
        if whole is not None and not self.recorder.suspended:
            self.recorder.suspended = True
            try:
                out = whole(self.recorder, *args, **kwargs)
            finally:
                self.recorder.suspended = False
            if out is not None:
                return out
        return func(*args, **kwargs)


@contextlib.contextmanager
def _exporting() -> Iterator[None]:
    """Tell model code it is being exported (``torch.compiler.is_exporting()``), as
    torch.export does, so it takes the branches written for graph capture."""
    compiler = torch.compiler
    old = (getattr(compiler, "_is_compiling_flag", False),
           getattr(compiler, "_is_exporting_flag", False))
    compiler._is_compiling_flag = True
    compiler._is_exporting_flag = True
    try:
        yield
    finally:
        compiler._is_compiling_flag, compiler._is_exporting_flag = old


@contextlib.contextmanager
def _module_paths(module: torch.nn.Module, stack: list[str]) -> Iterator[None]:
    """Keep ``stack`` at the path of the submodule whose forward is running."""
    paths = {id(m): name for name, m in module.named_modules(remove_duplicate=False)}

    def pre(m: torch.nn.Module, _args: Any) -> None:
        stack.append(paths.get(id(m), stack[-1] if stack else ""))

    def post(_m: torch.nn.Module, _args: Any, _out: Any) -> None:
        if stack:
            stack.pop()

    from torch.nn.modules import module as nn_module

    h1 = nn_module.register_module_forward_pre_hook(pre)
    h2 = nn_module.register_module_forward_hook(post, always_call=True)
    try:
        yield
    finally:
        h1.remove()
        h2.remove()


def fast_capture(module: torch.nn.Module, args: Sequence[torch.Tensor], names: Sequence[str],
                 *, by_keyword: bool = False) -> FastProgram:
    """Record ``module(*args)`` on meta twins as an ATen graph (see the module doc).

    Args:
        module: the module, in the mode it should be captured in (eval).
        args: example inputs (static shapes).
        names: the forward parameters the inputs bind to (the placeholder names).
        by_keyword: call ``forward`` with keyword arguments.

    Returns:
        The recorded program, every op with a handler.

    Raises:
        FastCaptureRefused: the capture cannot vouch for the graph (the reason says why).
    """
    from .lower import handler_keys

    if isinstance(module, torch.jit.ScriptModule):
        raise FastCaptureRefused("TorchScript modules go through torch.export")
    lifted: dict[int, tuple[str, InputKind, torch.Tensor]] = {}
    for name, p in module.named_parameters(remove_duplicate=True):
        lifted.setdefault(id(p), (name, InputKind.PARAMETER, p))
    for name, b in module.named_buffers(remove_duplicate=True):
        lifted.setdefault(id(b), (name, InputKind.BUFFER, b))
    protected: set[int] = set()
    if not all(_plain(t) for _, _, t in lifted.values()) or not all(_plain(a) for a in args):
        raise FastCaptureRefused("parameters or inputs that are not plain CPU tensors "
                                 "(meta device, tensor subclasses)")
    constants: dict[int, tuple[str, torch.Tensor]] = {}
    known: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def lift(t: torch.Tensor) -> _Ref:
        if id(t) in lifted:
            return _Ref(-1, id(t))
        if not _plain(t):
            raise FastCaptureRefused(f"a {type(t).__name__} on {t.device} reached an op")
        if id(t) not in constants:
            constants[id(t)] = (f"c_lifted_tensor_{len(constants)}", t)
            protected.add(_storage(recorder.twin(t)))
        return _Ref(-2, id(t))

    stack: list[str] = []
    recorder = _Recorder(known, lift, stack, protected)
    protected.update(_storage(recorder.twin(t)) for _, _, t in lifted.values())
    fakes = []
    for i, a in enumerate(args):
        twin = recorder.twin(a)
        known[twin] = _Ref(-3, i)
        protected.add(_storage(twin))
        fakes.append(twin)
    try:
        with torch.no_grad(), _exporting(), _module_paths(module, stack), \
                _ValueGuard(recorder), recorder:
            out = module(**dict(zip(names, fakes, strict=True))) if by_keyword \
                else module(*fakes)
    except FastCaptureRefused:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        raise FastCaptureRefused(f"recording the forward failed: {type(exc).__name__}: "
                                 f"{lines[0] if lines else ''}") from exc
    leaves, out_spec = pytree.tree_flatten(out)
    out_refs = []
    for leaf in leaves:
        ref = known.get(leaf) if isinstance(leaf, torch.Tensor) else None
        if ref is None:
            raise FastCaptureRefused(f"forward returned a {type(leaf).__name__} the "
                                     "recording did not produce")
        out_refs.append(ref)
    program = _build(recorder.calls, out_refs, out_spec, lifted, constants, list(args), names)
    _, missing = handler_keys(program)  # type: ignore[arg-type]
    if missing:
        raise FastCaptureRefused("no handler (or no functional lowering) for "
                                 + ", ".join(sorted(missing)))
    return program


def _build(calls: list[_Call], out_refs: list[_Ref], out_spec: Any,
           lifted: dict[int, tuple[str, InputKind, torch.Tensor]],
           constants: dict[int, tuple[str, torch.Tensor]], inputs: list[torch.Tensor],
           names: Sequence[str]) -> FastProgram:
    """The FX graph and signature of a recording (placeholders as torch.export names them)."""
    graph = torch.fx.Graph()
    specs: list[InputSpec] = []
    by_id: dict[int, torch.fx.Node] = {}
    state: dict[str, torch.Tensor] = {}
    consts: dict[str, Any] = {}
    by_name: dict[str, torch.Tensor] = {}
    for key, (target, kind, tensor) in lifted.items():
        prefix = "p_" if kind == InputKind.PARAMETER else "b_"
        node = graph.placeholder(prefix + target.replace(".", "_"))
        node.meta["val"] = _meta(tensor)
        specs.append(InputSpec(kind, TensorArgument(node.name), target,
                               persistent=True if kind == InputKind.BUFFER else None))
        by_id[key] = node
        state[target] = tensor
        by_name[node.name] = tensor
    for key, (target, tensor) in constants.items():
        node = graph.placeholder(target)
        node.meta["val"] = _meta(tensor)
        specs.append(InputSpec(InputKind.CONSTANT_TENSOR, TensorArgument(node.name), target))
        by_id[key] = node
        consts[target] = tensor
        by_name[node.name] = tensor
    users: list[torch.fx.Node] = []
    for name, x in zip(names, inputs, strict=True):
        node = graph.placeholder(name)
        node.meta["val"] = _meta(x)
        specs.append(InputSpec(InputKind.USER_INPUT, TensorArgument(node.name), None))
        users.append(node)
    nodes: list[torch.fx.Node] = []
    items: dict[tuple[int, int], torch.fx.Node] = {}

    def resolve(a: Any) -> Any:
        if isinstance(a, _Ref):
            if a.index == -1 or a.index == -2:
                return by_id[a.item]  # type: ignore[index]
            if a.index == -3:
                return users[a.item]  # type: ignore[index]
            node = nodes[a.index]
            if a.item is None:
                return node
            got = items.get((a.index, a.item))
            if got is None:
                with graph.inserting_after(node):
                    got = graph.call_function(operator.getitem, (node, a.item))
                got.meta["val"] = node.meta["val"][a.item]
                got.meta["nn_module_stack"] = node.meta.get("nn_module_stack", {})
                items[(a.index, a.item)] = got
            return got
        if isinstance(a, (list, tuple)):
            return type(a)(resolve(x) for x in a)
        return a

    for call in calls:
        node = graph.call_function(call.func, resolve(call.args),
                                   {k: resolve(v) for k, v in call.kwargs.items()})
        node.meta["val"] = call.out
        if call.stack:
            node.meta["nn_module_stack"] = {call.stack: (call.stack, "")}
        nodes.append(node)
    results = [resolve(r) for r in out_refs]
    graph.output(tuple(results))
    # results nobody reads (the byte buffer CPU batch norm reserves); FX keeps mutating ops
    for node in reversed(graph.nodes):
        if node.op == "call_function" and not node.users and not node.is_impure():
            graph.erase_node(node)
    out_specs = [OutputSpec(OutputKind.USER_OUTPUT, TensorArgument(r.name), None)
                 for r in results]
    signature = ExportGraphSignature(input_specs=specs, output_specs=out_specs)
    return FastProgram(graph, signature, state, consts, _CallSpec(None, out_spec), by_name)


__all__ = ["CAPTURE_ENV", "FastCaptureRefused", "FastProgram", "capture_mode", "fast_capture"]
