"""Walk a parsed Keras model graph and emit IR through the layer handlers.

Before anything is emitted the whole graph (nested models included) is checked: code
layers (Lambda, TFOpLambda) and custom objects are refused with one UnsafeModelError,
unsupported layers with one UnsupportedOpsError listing all of them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.errors import ModelLoadError, UnsafeModelError, UnsupportedOpsError
from modelconv.importers.keras.common import (
    ACTIVATIONS,
    LAYERS,
    activation_is_custom,
    activation_name,
    layer_spec,
)
from modelconv.importers.keras.config import ModelGraph, TensorRef, parse_model
from modelconv.importers.keras.masking import (
    Mask,
    check_consumed,
    gather_call_masks,
    is_mask_key,
    output_masks,
)
from modelconv.importers.keras.reader import KerasFile
from modelconv.importers.keras.spec import (
    INPUT_LAYER,
    NESTED_MODEL,
    LayerConfig,
    LayerUnsupported,
    call_refusals,
    config_refusals,
)
from modelconv.importers.keras.tensors import LAST, KTensor, const_tensor, last
from modelconv.importers.keras.weights import WeightSource
from modelconv.ir.builder import GraphBuilder

CODE_LAYERS = {"Lambda", "TFLambda"}
STRUCTURAL = {"InputLayer", "Functional", "Model", "Sequential"}


def dtype_name(spec: Any) -> str:
    """The numpy dtype name of a Keras ``dtype`` config (a name or a DTypePolicy dict)."""
    if isinstance(spec, dict):
        spec = (spec.get("config") or {}).get("name", "float32")
    name = str(spec or "float32")
    return "float32" if name.startswith("mixed") or name == "float64" else name


def _is_custom(module: str | None, registered: str | None) -> bool:
    if registered and ">" in registered:
        return True
    return bool(module) and not str(module).startswith(("keras", "tf_keras", "tensorflow"))


def layer_refusals(node: Any, major: int) -> list[str]:
    """What a layer's config and calls hold that its handler's spec does not consume, as
    ``Class(key=value)`` labels (none for a fully consumed layer); ``major`` is the Keras
    version that wrote the file."""
    spec = layer_spec(node.class_name)
    assert spec is not None  # every handler is registered with its spec
    found = config_refusals(spec, node.config)
    for call in node.calls:
        tensors = [k for k in call.kw_tensors if not is_mask_key(k)]  # masks: see masking.py
        found += call_refusals(spec, tensors, call.kwargs, call.consts, call.stray, major)
    return [f"{node.class_name}({item})" for item in dict.fromkeys(found)]


def check_layers(graph: ModelGraph, path: str) -> None:
    """Refuse code/custom layers, then report every unsupported layer, option and call
    argument at once.

    Raises:
        UnsafeModelError: a Lambda layer, custom layer or custom activation.
        UnsupportedOpsError: layers without a handler, or options/arguments that their
            handler neither reads nor finds at the Keras default.
    """
    nodes = graph.walk()
    keras3 = graph.keras3_calls or any(n.inner.keras3_calls for _, n in nodes if n.inner)
    unsafe: dict[str, list[str]] = defaultdict(list)
    missing: dict[str, list[str]] = defaultdict(list)
    for names, node in nodes:
        where = "/".join(names)
        cls, cfg = node.class_name, node.config
        if cls in CODE_LAYERS:
            unsafe[cls].append(where)
            continue
        if cls == "InputLayer":
            for label in config_refusals(INPUT_LAYER, cfg):
                missing[f"InputLayer({label})"].append(where)
            continue
        if cls in STRUCTURAL:  # a nested model reads its inputs, nothing else
            for call in node.calls:
                for label in call_refusals(NESTED_MODEL, call.kw_tensors, call.kwargs,
                                           call.consts, call.stray, 3 if keras3 else 2):
                    missing[f"{cls}({label})"].append(where)
            continue
        if cls not in LAYERS:
            (unsafe if _is_custom(node.module, node.registered_name) else missing)[cls].append(
                where)
            continue
        for label in layer_refusals(node, 3 if keras3 else 2):
            missing[label].append(where)
        for key in ("activation", "recurrent_activation"):
            spec = cfg.get(key)
            if activation_is_custom(spec):
                unsafe[f"custom activation {activation_name(spec)}"].append(where)
            elif activation_name(spec) not in (None, *ACTIVATIONS):
                missing[f"activation {activation_name(spec)}"].append(where)
    if unsafe:
        listed = "; ".join(f"{cls} ({', '.join(w)})" for cls, w in sorted(unsafe.items()))
        raise UnsafeModelError(
            f"model contains Python code or custom objects that modelconv will not run: "
            f"{listed}", path=path,
            hint="Replace Lambda/custom layers with built-in Keras layers and re-save",
        )
    if missing:
        raise UnsupportedOpsError("keras layer", missing, path=path)


class _Converter:
    def __init__(self, kf: KerasFile, graph: ModelGraph):
        self.kf = kf
        self.graph = graph
        self.b = GraphBuilder(name=graph.name)
        class_paths = {p: n.class_name for p, n in graph.walk()}
        self.weights = WeightSource(kf, class_paths)
        self.major = kf.major

    def input_tensors(self) -> list[KTensor]:
        out = []
        for ref in self.graph.inputs:
            node = self.graph.layer(ref.layer)
            cfg = node.config
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            if shape is None:
                raise ModelLoadError(f"input '{node.name}' has no shape", path=self.kf.path)
            dims: list[int | str | None] = [
                int(d) if d is not None else ("batch" if i == 0 else f"{node.name}_d{i}")
                for i, d in enumerate(shape)]
            dtype = dtype_name(cfg.get("dtype"))
            value = self.b.add_input(node.name, np.dtype(dtype), dims)
            out.append(KTensor(value, len(dims), LAST, dtype))
        return out

    def run_graph(self, graph: ModelGraph, inputs: list[KTensor], prefix: tuple[str, ...],
                  in_masks: list[Mask] | None = None) -> tuple[list[KTensor], list[Mask]]:
        """Convert ``graph`` called on ``inputs``; returns its outputs and their masks."""
        if len(inputs) != len(graph.inputs):
            raise ModelLoadError(f"model '{graph.name}' takes {len(graph.inputs)} input(s), "
                                 f"is called with {len(inputs)}", path=self.kf.path)
        env: dict[TensorRef, KTensor] = dict(zip(graph.inputs, inputs, strict=True))
        menv: dict[TensorRef, Mask] = dict(zip(graph.inputs, in_masks or [None] * len(inputs),
                                               strict=True))
        pending = [(n, i) for n in graph.layers for i in range(len(n.calls))]
        while pending:
            remaining = []
            for node, i in pending:
                call = node.calls[i]
                refs = [*call.inputs, *call.kw_tensors.values()]
                if not all(r in env for r in refs):
                    remaining.append((node, i))
                    continue
                xs = [env[r] for r in call.inputs]
                masks = [menv.get(r) for r in call.inputs]
                shapes = [graph.shapes.get(r) for r in call.inputs]
                if call.consts:  # check_layers let them through: the handler takes them
                    xs = self.with_consts(xs, call.consts)
                    given, sizes = iter(masks), iter(shapes)  # constants: no mask, no shape
                    masks = [None if p in call.consts else next(given) for p in range(len(xs))]
                    shapes = [None if p in call.consts else next(sizes) for p in range(len(xs))]
                spec = layer_spec(node.class_name)
                for key in spec.kw_inputs if spec is not None else ():
                    if key in call.kw_tensors:
                        xs.append(env[call.kw_tensors[key]])
                        masks.append(menv.get(call.kw_tensors[key]))
                        shapes.append(graph.shapes.get(call.kw_tensors[key]))
                explicit = {k: env[r] for k, r in call.kw_tensors.items() if is_mask_key(k)}
                outs, out_masks = self.apply(node, {**call.kwargs, "_shapes": shapes}, xs,
                                             prefix, masks, explicit)
                for j, (out, mask) in enumerate(zip(outs, out_masks, strict=True)):
                    env[TensorRef(node.name, i, j)] = out
                    menv[TensorRef(node.name, i, j)] = mask
            if len(remaining) == len(pending):
                names = sorted({n.name for n, _ in remaining})
                raise ModelLoadError(f"layers {names[:5]} wait for tensors no layer produces "
                                     "(broken model config)", path=self.kf.path)
            pending = remaining
        missing = [r for r in graph.outputs if r not in env]
        if missing:
            raise ModelLoadError(f"model outputs {missing[:3]} are never computed",
                                 path=self.kf.path)
        return [env[r] for r in graph.outputs], [menv.get(r) for r in graph.outputs]

    def with_consts(self, xs: list[KTensor], consts: dict[int, Any]) -> list[KTensor]:
        """Insert the constant operands of a functional op call at their positions."""
        dtype = xs[0].dtype if xs else "float32"
        out = list(xs)
        for pos in sorted(consts):
            out.insert(pos, const_tensor(self.b, consts[pos], dtype))
        return out

    def apply(self, node: Any, kwargs: dict[str, Any], xs: list[KTensor],
              prefix: tuple[str, ...], in_masks: list[Mask],
              explicit: dict[str, KTensor]) -> tuple[list[KTensor], list[Mask]]:
        """Convert one call of ``node``; returns its outputs and their masks."""
        path = (*prefix, node.name)
        if node.inner is not None:
            return self.run_graph(node.inner, xs, path, in_masks)
        handler = LAYERS.get(node.class_name)
        assert handler is not None  # check_layers ran first
        where = "/".join(path)
        masks = gather_call_masks(node.class_name, in_masks, explicit)
        kwargs = dict(kwargs)
        shapes = kwargs.pop("_shapes", [])
        cfg = LayerConfig({**node.config, "_keras_major": self.major, "_call_kwargs": kwargs,
                           "_masks": masks, "_shapes": shapes}, where, self.kf.path)
        with self.b.source(where):
            try:
                check_consumed(node.class_name, node.config, masks)
                result = handler(self.b, cfg, self.weights.layer(path), xs)
                outs = list(result) if isinstance(result, list | tuple) else [result]
                out_masks = output_masks(self.b, node.class_name, cfg, xs, in_masks, masks,
                                         len(outs))
            except LayerUnsupported as exc:  # the handlers' one signal; anything else is a bug
                raise UnsupportedOpsError(
                    "keras layer", {f"{node.class_name}({exc})": [where]},
                    path=self.kf.path) from exc
        return outs, out_masks

    def build(self) -> ir.Model:
        outs, _ = self.run_graph(self.graph, self.input_tensors(), ())
        values, names = [], []
        for ref, t in zip(self.graph.outputs, outs, strict=True):
            value = last(self.b, t)
            values.append(value)
            names.append(ref.layer)
        self.b.set_outputs(values, names)
        for value, t in zip(self.b.outputs, outs, strict=True):
            if value.dtype is None:
                value.dtype = ir.DataType.from_numpy(np.dtype(t.dtype))
        return self.b.build()


def convert_keras_file(kf: KerasFile) -> ir.Model:
    """Convert an opened Keras file to an IR model (channels-first inside)."""
    graph = parse_model(kf.config)
    check_layers(graph, kf.path)
    return _Converter(kf, graph).build()
