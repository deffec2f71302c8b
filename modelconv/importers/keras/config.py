"""Parse a Keras model config (Sequential, Functional, nested) into a uniform layer graph.

Keras 2 (tf.keras) and Keras 3 write different ``inbound_nodes``:

- Keras 2: ``[[["layer", node_index, tensor_index, {kwargs}], ...], ...]`` (one list per call);
  tensor kwargs appear as ``["layer", node, tensor]`` lists inside the kwargs dict.
- Keras 3: ``[{"args": [...], "kwargs": {...}}, ...]`` where tensors are
  ``{"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, tensor]}}``.

Node indices of nested models are offset by one (a model owns a node of its own) in
Keras 2 everywhere and in Keras 3's ``input_layers``/``output_layers``. All references are
normalised here to *call positions*: ``TensorRef(layer, call, index)`` means output
``index`` of the ``call``-th call of ``layer`` in this graph.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from modelconv.errors import ModelLoadError
from modelconv.importers.keras.refused_ops import REFUSED_OPS

MODEL_CLASSES = {"Functional", "Model", "Sequential"}
#: ``module`` prefixes of Keras 3 operation nodes (``keras.ops.*`` applied to a KerasTensor);
#: their class names get the prefix ``ops.`` (``ops.Add`` is not the ``Add`` merge layer)
OPS_MODULES = ("keras.src.ops.", "keras.ops.")
#: call keyword arguments that carry masks (a list of masks becomes ``mask.0``, ``mask.1``)
MASK_KWARGS = ("mask", "query_mask", "value_mask", "key_mask")


@dataclass(frozen=True)
class TensorRef:
    """Output ``index`` of call number ``call`` of layer ``layer``."""

    layer: str
    call: int
    index: int


@dataclass
class Call:
    """One application of a layer to tensors."""

    inputs: list[TensorRef]
    kw_tensors: dict[str, TensorRef] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: non-tensor positional arguments (Keras 3 functional ops: ``x + 3.0``) by position
    consts: dict[int, Any] = field(default_factory=dict)
    #: non-tensor values found inside positional tensor lists (refused unless None)
    stray: list[Any] = field(default_factory=list)


@dataclass
class LayerNode:
    """A layer of a model graph, with every call made of it."""

    name: str
    class_name: str
    config: dict[str, Any]
    module: str | None = None
    registered_name: str | None = None
    calls: list[Call] = field(default_factory=list)
    inner: ModelGraph | None = None
    #: raw node indices this layer's calls had in the file (for reference normalisation)
    raw_indices: list[int] = field(default_factory=list)


@dataclass
class ModelGraph:
    """A (possibly nested) model: layers in config order, graph inputs and outputs."""

    name: str
    class_name: str
    layers: list[LayerNode]
    inputs: list[TensorRef]
    outputs: list[TensorRef]
    #: inbound nodes in Keras 3's format (``{"args", "kwargs"}``), Keras 2's otherwise
    keras3_calls: bool = False
    #: static shapes Keras 3 recorded for tensors (``None`` for an unknown dim)
    shapes: dict[TensorRef, tuple[int | None, ...]] = field(default_factory=dict)

    def layer(self, name: str) -> LayerNode:
        """The layer called ``name``."""
        for node in self.layers:
            if node.name == name:
                return node
        raise ModelLoadError(f"model config references unknown layer '{name}'")

    def walk(self, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], LayerNode]]:
        """Every layer of this graph and of nested graphs, with its path of names."""
        out: list[tuple[tuple[str, ...], LayerNode]] = []
        for node in self.layers:
            out.append(((*prefix, node.name), node))
            if node.inner is not None:
                out.extend(node.inner.walk((*prefix, node.name)))
        return out


def parse_model(spec: dict[str, Any]) -> ModelGraph:
    """Parse a top-level ``{"class_name": ..., "config": ...}`` model config."""
    class_name = spec.get("class_name")
    cfg = spec.get("config")
    if not isinstance(cfg, dict):
        raise ModelLoadError("model config has no 'config' dict")
    if class_name == "Sequential":
        return _parse_sequential(cfg)
    if class_name in MODEL_CLASSES or "layers" in cfg:
        return _parse_functional(cfg, str(class_name))
    raise ModelLoadError(f"top-level object is a '{class_name}', not a Keras model")


def snake_case(name: str) -> str:
    """Keras' class-name to attribute-name conversion (``PReLU`` -> ``p_re_lu``)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _layer_node(spec: dict[str, Any]) -> LayerNode:
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ModelLoadError("layer entry without 'class_name' in the model config")
    cfg = spec.get("config") or {}
    if not isinstance(cfg, dict):
        cfg = {"value": cfg}
    name = spec.get("name") or cfg.get("name")
    if not name:
        raise ModelLoadError(f"{spec['class_name']} layer without a name in the model config")
    class_name = str(spec["class_name"])
    if _is_operation(spec, cfg):
        class_name = f"ops.{class_name}"
    node = LayerNode(
        name=str(name),
        class_name=class_name,
        config=cfg,
        module=spec.get("module"),
        registered_name=spec.get("registered_name"),
    )
    if node.class_name in MODEL_CLASSES and isinstance(cfg.get("layers"), list):
        node.inner = parse_model({"class_name": node.class_name, "config": cfg})
    return node


def _is_operation(spec: dict[str, Any], cfg: dict[str, Any]) -> bool:
    """A Keras 3 operation node: its module says so (.keras), or (Keras 3 .h5, which saves
    no module) its class is a Keras operation and its config lacks the ``trainable`` flag
    every layer config of that name would hold (``Add`` is both an operation and a layer)."""
    module = spec.get("module")
    if module is not None:
        return str(module).startswith(OPS_MODULES)
    return ("trainable" not in cfg and str(spec["class_name"]) in OPERATION_CLASSES
            and spec["class_name"] != "InputLayer" and "layers" not in cfg
            and isinstance(spec.get("inbound_nodes"), list)
            and any(isinstance(n, dict) for n in spec["inbound_nodes"]))


#: class names of the Keras 3 operations (handled ones are added by ``layers_ops`` when it
#: registers them, refused ones come from ``refused_ops``): only these can be an operation
#: node in an .h5 file, whatever their config holds (some layer configs, such as
#: SpatialDropout2D's, also lack ``trainable``)
OPERATION_CLASSES: set[str] = set(REFUSED_OPS)


def _is_tensor3(x: Any) -> bool:
    return isinstance(x, dict) and x.get("class_name") == "__keras_tensor__"


def _ref3(x: dict[str, Any]) -> tuple[str, int, int]:
    hist = x.get("config", {}).get("keras_history")
    if not isinstance(hist, list) or len(hist) < 3:
        raise ModelLoadError("keras tensor without keras_history in the model config")
    return str(hist[0]), int(hist[1]), int(hist[2])


def _flatten3(x: Any, out: list[tuple[str, int, int]], stray: list[Any] | None = None) -> None:
    if _is_tensor3(x):
        out.append(_ref3(x))
    elif isinstance(x, list | tuple):
        for item in x:
            _flatten3(item, out, stray)
    elif isinstance(x, dict) and x.get("class_name") == "__tuple__":
        _flatten3(x.get("config", {}).get("value", []), out, stray)
    elif stray is not None and x is not None:
        stray.append(x)


def _is_ref2(x: Any) -> bool:
    return (isinstance(x, list) and len(x) in (3, 4) and isinstance(x[0], str)
            and isinstance(x[1], int) and isinstance(x[2], int))


RawCall = tuple[list[tuple[str, int, int]], dict[str, tuple[str, int, int]], dict[str, Any],
                dict[int, Any], list[Any]]


def _is_number_tree(x: Any) -> bool:
    """A number or a (nested) list of numbers: a constant operand."""
    if isinstance(x, bool | int | float):
        return True
    return isinstance(x, list) and bool(x) and all(_is_number_tree(v) for v in x)


def _positional(args: Any) -> tuple[list[tuple[str, int, int]], dict[int, Any], list[Any]]:
    """Tensor refs of a call's positional args, the constant ones by position, and any
    other non-tensor values found among them."""
    refs: list[tuple[str, int, int]] = []
    consts: dict[int, Any] = {}
    stray: list[Any] = []
    for item in args if isinstance(args, list) else [args]:
        if isinstance(item, dict) and item.get("class_name") == "__tuple__":
            value = item.get("config", {}).get("value")
            if _is_number_tree(value):
                item = value
        if _is_number_tree(item) or isinstance(item, str):
            consts[len(refs) + len(consts)] = item
        else:
            _flatten3(item, refs, stray)
    return refs, consts, stray


def _index_key(args: Any) -> list[Any] | None:
    """The index of ``x[...]`` (a GetItem node's second argument) when it holds slices,
    ellipses or new axes: a list of ints, None (new axis), ``"..."`` and
    ``{"slice": [start, stop, step]}``; None for any other argument list."""
    if not (isinstance(args, list) and len(args) == 2):
        return None
    items = args[1] if isinstance(args[1], list) else [args[1]]
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and item.get("class_name") == "__slice__":
            c = item.get("config") or {}
            out.append({"slice": [c.get("start"), c.get("stop"), c.get("step")]})
        elif isinstance(item, dict) and item.get("class_name") == "__ellipsis__":
            out.append("...")
        elif item is None or (isinstance(item, int) and not isinstance(item, bool)):
            out.append(item)
        else:
            return None
    return out if any(not isinstance(k, int) for k in out) else None


def _parse_inbound(node_spec: Any) -> tuple[RawCall, bool]:
    """One inbound node -> (positional refs, kw refs, other kwargs, constant positional
    args), new-format flag."""
    if isinstance(node_spec, dict):
        raw_args = node_spec.get("args", [])
        key = _index_key(raw_args)
        args, consts, stray = _positional(raw_args if key is None else raw_args[:1])
        kw_t: dict[str, tuple[str, int, int]] = {}
        kw: dict[str, Any] = {} if key is None else {"key": key}
        for key, val in (node_spec.get("kwargs") or {}).items():
            if key in MASK_KWARGS and isinstance(val, list):  # one mask per input
                for i, item in enumerate(val):
                    if _is_tensor3(item):
                        kw_t[f"{key}.{i}"] = _ref3(item)
                continue
            refs: list[tuple[str, int, int]] = []
            _flatten3(val, refs)
            if len(refs) == 1:
                kw_t[key] = refs[0]
            elif not refs:
                kw[key] = val
            else:
                raise ModelLoadError(f"keyword argument '{key}' holds several tensors")
        return (args, kw_t, kw, consts, stray), True
    if isinstance(node_spec, list):
        if node_spec and isinstance(node_spec[0], str):  # tf.keras op layers: one bare entry
            node_spec = [node_spec]
        pos: list[tuple[str, int, int]] = []
        kw_t, kw = {}, {}
        given: dict[int, Any] = {}
        for entry in node_spec:
            if (isinstance(entry, list) and len(entry) in (3, 4)
                    and entry[0] == "_CONSTANT_VALUE" and _is_number_tree(entry[2])):
                given[len(pos) + len(given)] = entry[2]  # tf.keras: 3.0 - x
            elif not _is_ref2(entry):
                raise ModelLoadError(f"unreadable inbound node entry {str(entry)[:80]}")
            else:
                pos.append((entry[0], entry[1], entry[2]))
            extra = entry[3] if len(entry) == 4 and isinstance(entry[3], dict) else {}
            for key, val in extra.items():
                if _is_ref2(val):
                    kw_t[key] = (val[0], val[1], val[2])
                else:
                    kw[key] = val
        return (pos, kw_t, kw, given, []), False
    raise ModelLoadError(f"unreadable inbound node {str(node_spec)[:80]}")


def _io_refs(value: Any) -> list[tuple[str, int, int]]:
    if isinstance(value, dict):  # Keras 3 may name inputs/outputs with a dict
        value = list(value.values())
    if _is_ref2(value):
        return [(value[0], value[1], value[2])]
    if isinstance(value, list):
        out: list[tuple[str, int, int]] = []
        for item in value:
            out.extend(_io_refs(item))
        return out
    raise ModelLoadError(f"unreadable input/output layer list {str(value)[:80]}")


def _parse_functional(cfg: dict[str, Any], class_name: str) -> ModelGraph:
    specs = cfg.get("layers")
    if not isinstance(specs, list):
        raise ModelLoadError("functional model config has no 'layers' list")
    layers = [_layer_node(s) for s in specs]
    by_name = {n.name: n for n in layers}
    if len(by_name) != len(layers):
        raise ModelLoadError("model config has duplicate layer names")
    new_format = False
    raw_calls: dict[str, list[RawCall]] = {}
    for spec, node in zip(specs, layers, strict=True):
        calls = []
        for inbound in spec.get("inbound_nodes") or []:
            call, is_new = _parse_inbound(inbound)
            new_format |= is_new
            calls.append(call)
        raw_calls[node.name] = calls

    def ref(r: tuple[str, int, int], io: bool) -> TensorRef:
        name, index, tensor = r
        if name not in by_name:
            raise ModelLoadError(f"model config references unknown layer '{name}'")
        target = by_name[name]
        offset = 0
        if target.inner is not None and (not new_format or io):
            offset = 1 if (not new_format or target.class_name != "Sequential") else 0
        ncalls = max(1, len(raw_calls[name]))
        pos = index - offset
        if not 0 <= pos < ncalls:  # be lenient with off-by-one conventions
            pos = index if 0 <= index < ncalls else min(max(pos, 0), ncalls - 1)
        return TensorRef(name, pos, tensor)

    for node in layers:
        for args, kw_t, kw, consts, stray in raw_calls[node.name]:
            node.calls.append(Call(
                inputs=[ref(a, False) for a in args],
                kw_tensors={k: ref(v, False) for k, v in kw_t.items()},
                kwargs=kw,
                consts=consts,
                stray=stray,
            ))
    inputs = [ref(r, True) for r in _io_refs(cfg.get("input_layers", []))]
    outputs = [ref(r, True) for r in _io_refs(cfg.get("output_layers", []))]
    if not outputs:
        raise ModelLoadError("functional model config has no outputs")
    shapes: dict[TensorRef, tuple[int | None, ...]] = {}
    for spec in specs:
        for raw, shape in _recorded_shapes(spec.get("inbound_nodes")):
            if raw[0] in by_name:
                shapes[ref(raw, False)] = shape
    return ModelGraph(str(cfg.get("name", "model")), class_name, layers, inputs, outputs,
                      new_format, shapes)


def _recorded_shapes(x: Any) -> list[tuple[tuple[str, int, int], tuple[int | None, ...]]]:
    """(reference, shape) of every Keras 3 tensor inside an inbound-node structure."""
    if _is_tensor3(x):
        shape = x.get("config", {}).get("shape")
        if isinstance(shape, list) and all(d is None or isinstance(d, int) for d in shape):
            return [(_ref3(x), tuple(shape))]
        return []
    items = x.values() if isinstance(x, dict) else x if isinstance(x, list) else []
    return [pair for item in items for pair in _recorded_shapes(item)]


def _parse_sequential(cfg: dict[str, Any]) -> ModelGraph:
    specs = cfg.get("layers")
    if not isinstance(specs, list) or not specs:
        raise ModelLoadError("Sequential model config has no layers")
    layers = [_layer_node(s) for s in specs]
    name = str(cfg.get("name", "sequential"))
    if layers[0].class_name != "InputLayer":
        first = layers[0].config
        shape = (first.get("batch_input_shape") or first.get("batch_shape")
                 or cfg.get("build_input_shape"))
        if shape is None:
            raise ModelLoadError(
                "Sequential model without an input shape (was it never built?)",
                hint="Build the model (call it once or give an Input) before saving",
            )
        dtype = first.get("dtype") if isinstance(first.get("dtype"), str) else "float32"
        layers.insert(0, LayerNode(f"{name}_input", "InputLayer",
                                   {"batch_shape": list(shape), "dtype": dtype}))
    for prev, node in itertools.pairwise(layers):
        node.calls.append(Call(inputs=[TensorRef(prev.name, 0, 0)]))
    return ModelGraph(name, "Sequential", layers, [TensorRef(layers[0].name, 0, 0)],
                      [TensorRef(layers[-1].name, 0, 0)])
