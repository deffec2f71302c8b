"""Find the first source layer (or tensor) whose value drifts in the converted model.

Probes come from the source: for an ONNX source every node output tensor (as Polygraphy's
``--mark all`` does), for the other sources one probe per source layer (``source_name``:
the torch module path, the Keras layer), whose value is the layer's own output (torch
hooks, Keras sub-models). Each probe is matched to a tensor of the converted model, in this
order of evidence:

1. **tensor name**: the converted model has a tensor of the same name (ONNX -> ONNX,
   anything modelconv wrote: its TFLite and ONNX tensors are named after IR values);
2. **source_name**: the converted model's nodes record the source layer they came from
   (modelconv's ONNX metadata); the layer's value is the output of its last node;
3. **scope**: files written by other converters: a node name such as
   ``/layer1/layer1.0/conv1/Conv`` (torch.onnx) names the module ``layer1.0.conv1``, and
   ``model/conv2d_1/BiasAdd`` (tf2onnx) the Keras layer ``conv2d_1``;
4. **position**: a tensor of the same (or layout-transposed) shape between the neighbouring
   matched tensors, in graph order.

Matches 3 and 4 are weak evidence (a converter may fuse a layer into the next one, so the
matched tensor holds a later value): a weakly matched layer that differs counts as the
first divergence only when the next compared layer differs too. Values are fetched in
batches of at most :data:`BATCH_BYTES` / :data:`BATCH_TENSORS` (the runtime marks only one
batch of tensors as outputs at a time), so memory stays bounded on large graphs. Layout
differences (NHWC vs NCHW) are undone by trying the matching transpose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from modelconv.formats import SourceModel
from modelconv.ir.builder import FUSED_KEY, SOURCE_KEY
from modelconv.options import ConvertOptions
from modelconv.verification.compare import Tolerance, compare_arrays
from modelconv.verification.report import LayerError, VerificationReport
from modelconv.verification.runners import Runner
from modelconv.verification.verifier import sample_inputs

_PERMS = [(0, 2, 3, 1), (0, 3, 1, 2), (0, 2, 1), (0, 2, 3, 4, 1), (0, 4, 1, 2, 3)]
#: at most this many bytes (estimated from shapes) of intermediate tensors per run
BATCH_BYTES = 256 * 2**20
#: at most this many tensors marked as outputs per run
BATCH_TENSORS = 1024
_UNKNOWN_BYTES = 4 * 2**20
_WEAK = ("scope", "position")
Shape = tuple[int | None, ...]


@dataclass
class _Probe:
    layer: str  # the name reported: source layer, or node name for ONNX sources
    key: str  # what the source runner is asked for
    ir_tensor: str | None  # the source IR's tensor holding the value
    ops: list[str]
    shape: Shape | None = None
    tensor: str | None = None  # the converted model's tensor
    how: str = ""
    #: a QuantizeLinear output's (scale, zero point, axis): its integers mean these reals
    dequant: tuple[np.ndarray, np.ndarray, int] | None = None


@dataclass
class _Target:
    names: list[str] = field(default_factory=list)  # tensors in graph order
    shapes: dict[str, Shape] = field(default_factory=dict)
    layers: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # by source_name
    scopes: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # by node scope
    segments: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name parts
    fused: dict[str, list[str]] = field(default_factory=dict)


def fused_layers(nodes: Sequence[Any]) -> dict[str, list[str]]:
    """source_name -> the source layers fusion passes folded into its ops."""
    fused: dict[str, list[str]] = {}
    for node in nodes:
        meta = _metadata(node)
        name, absorbed = meta.get(SOURCE_KEY), meta.get(FUSED_KEY)
        if name and absorbed:
            fused.setdefault(name, []).extend(a for a in absorbed.split(",") if a)
    return fused


def layer_map_from_nodes(nodes: Sequence[Any], name_of: Callable[[Any], str | None] | None = None
                         ) -> dict[str, tuple[str, list[str]]]:
    """source_name -> (tensor holding that layer's output, the layer's own op types).

    Source names are hierarchical (``encoder.layer.0.attn``): a layer's output is the
    output of the last node in its whole subtree, since a submodule (``attn.out_proj``)
    often computes it. Works on onnx NodeProto and onnx_ir Node objects alike. Layers are
    ordered by where their output is produced; on a tie the deeper layer comes first.
    ``name_of`` gives a node's layer name (default: its ``source_name``, else its name).
    """
    layers: dict[str, tuple[str, list[str]]] = {}
    position: dict[str, int] = {}
    for index, node in enumerate(nodes):
        name = name_of(node) if name_of else (_metadata(node).get(SOURCE_KEY) or node.name)
        out = _first_output(node)
        if not name or out is None:
            continue
        ops = layers.get(name, ("", []))[1]
        layers[name] = (out, [*ops, node.op_type])
        position[name] = index
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            ancestor = ".".join(parts[:i])
            layers[ancestor] = (out, layers.get(ancestor, ("", []))[1])
            position[ancestor] = index
    order = sorted(layers, key=lambda n: (position[n], -n.count(".")))
    return {n: layers[n] for n in order}


def scope_path(node_name: str) -> str | None:
    """Module path from a torch.onnx node name: ``/layer1/layer1.0/conv1/Conv`` ->
    ``layer1.0.conv1`` (segments are attribute names or already-qualified paths)."""
    if not node_name.startswith("/"):
        return None
    path = ""
    for seg in node_name.strip("/").split("/")[:-1]:
        path = seg if not path or seg.startswith(path + ".") else f"{path}.{seg}"
    return path or None


def _metadata(node: Any) -> dict[str, str]:
    props = node.metadata_props
    if isinstance(props, dict):
        return props
    return {p.key: p.value for p in props}


def _first_output(node: Any) -> str | None:
    outs = _outputs(node)
    return outs[0] if outs and outs[0] else None


def _outputs(node: Any) -> list[str]:
    return list(node.output) if hasattr(node, "output") else [o.name for o in node.outputs]


def _quantize_params(node: Any) -> tuple[np.ndarray, np.ndarray, int] | None:
    """A QuantizeLinear node's constant (scale, zero point, axis), or None."""
    if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx"):
        return None
    inputs = list(node.inputs)
    scale = inputs[1].const_value if len(inputs) > 1 and inputs[1] is not None else None
    zero = inputs[2].const_value if len(inputs) > 2 and inputs[2] is not None else None
    if scale is None or "block_size" in node.attributes:
        return None
    axis = node.attributes["axis"].as_int() if "axis" in node.attributes else 1
    scale_np = np.asarray(scale.numpy(), dtype=np.float64)
    zero_np = (np.asarray(zero.numpy(), dtype=np.float64) if zero is not None
               else np.zeros_like(scale_np))
    return scale_np, zero_np, axis


def _dequantize(value: np.ndarray, params: tuple[np.ndarray, np.ndarray, int]) -> np.ndarray:
    """``value``'s integers as the reals they stand for (per tensor or along ``axis``)."""
    scale, zero, axis = params
    if scale.ndim == 1 and scale.size > 1 and value.ndim:
        shape = [1] * value.ndim
        shape[axis % value.ndim] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((value.astype(np.float64) - zero) * scale).astype(np.float32)


def _ir_shape(value: Any) -> Shape | None:
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in shape)


# --------------------------------------------------------------------------------------
# probes and the converted model's tensors


def source_probes(source: SourceModel) -> list[_Probe]:
    """What to compare, in source graph order (see the module docstring)."""
    nodes = list(source.model.graph)
    shapes = {o.name: _ir_shape(o) for n in nodes for o in n.outputs if o.name}
    if source.format == "onnx" and source.path and Path(source.path).is_file():
        inferred = onnx_shapes(onnx.load(source.path, load_external_data=False))
        shapes = {k: v if v is not None else inferred.get(k) for k, v in shapes.items()}
    if source.format == "onnx":
        return [_Probe(_metadata(n).get(SOURCE_KEY) or n.name or o.name, o.name, o.name,
                       [n.op_type], shapes.get(o.name), dequant=_quantize_params(n))
                for n in nodes for o in n.outputs if o.name]
    return [_Probe(layer, layer, tensor, ops, shapes.get(tensor))
            for layer, (tensor, ops) in layer_map_from_nodes(nodes).items()]


def describe_target(source: SourceModel, out: Path) -> _Target:
    """The converted file's tensors (graph order, shapes) and its layer maps."""
    if out.suffix == ".tflite":
        return _tflite_target(source, out)
    proto = onnx.load(str(out), load_external_data=False)
    target = _Target(shapes=onnx_shapes(proto))
    nodes = list(proto.graph.node)
    target.names = [o for n in nodes for o in n.output if o]
    if any(SOURCE_KEY in _metadata(n) for n in nodes):
        target.layers = layer_map_from_nodes(nodes, lambda n: _metadata(n).get(SOURCE_KEY))
        target.fused = fused_layers(nodes)
    target.scopes = layer_map_from_nodes(nodes, lambda n: scope_path(n.name or ""))
    for node in nodes:  # tf2onnx-style 'model/conv2d_1/BiasAdd': the layer is a part
        tensor = _first_output(node)
        if "/" in (node.name or "") and tensor:
            for seg in node.name.strip("/").split("/")[:-1]:
                target.segments[seg] = (tensor, [*target.segments.get(seg, ("", []))[1],
                                                 node.op_type])
    return target


def onnx_shapes(proto: onnx.ModelProto) -> dict[str, Shape]:
    """Tensor name -> shape from ONNX shape inference (empty where it cannot tell)."""
    try:
        graph = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # shapes only help the position match
        graph = proto.graph
    shapes: dict[str, Shape] = {}
    for info in [*graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                      for d in info.type.tensor_type.shape.dim)
    return shapes


def _tflite_target(source: SourceModel, out: Path) -> _Target:
    from ai_edge_litert import schema_py_generated as s

    model = s.Model.GetRootAs(out.read_bytes(), 0)
    graph = model.Subgraphs(0)
    target = _Target()
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        for j in range(op.OutputsLength()):
            index = op.Outputs(j)
            if index < 0:
                continue
            t = graph.Tensors(index)
            name = (t.Name() or b"").decode()
            target.names.append(name)
            sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
            dims = [] if isinstance(sig, int) else [int(d) for d in sig]
            target.shapes[name] = tuple(d if d >= 0 else None for d in dims)
    # modelconv's TFLite tensors are named after the IR the exporter got: its source_names
    nodes = list(source.model.graph)
    present = set(target.names)
    target.layers = {k: v for k, v in layer_map_from_nodes(nodes).items() if v[0] in present}
    target.fused = fused_layers(nodes)
    return target


def match(probes: list[_Probe], target: _Target) -> None:
    """Set each probe's ``tensor`` and ``how`` (in place)."""
    present = set(target.names)
    for p in probes:
        if p.ir_tensor in present:
            p.tensor, p.how = p.ir_tensor, "name"
        elif p.layer in target.layers:
            p.tensor, p.how = target.layers[p.layer][0], "source_name"
        elif p.layer in target.scopes:
            p.tensor, p.how = target.scopes[p.layer][0], "scope"
        elif p.layer in target.segments:
            p.tensor, p.how = target.segments[p.layer][0], "scope"
    _match_by_position(probes, target)


def _match_by_position(probes: list[_Probe], target: _Target) -> None:
    """Unmatched probes with a known shape: the next unused target tensor of that shape
    (or a layout transpose of it) after the previous match and before the next one."""
    where = {n: i for i, n in enumerate(target.names)}
    used = {p.tensor for p in probes if p.tensor}
    last = -1
    for k, p in enumerate(probes):
        if p.tensor is not None:
            last = max(last, where.get(p.tensor, last))
            continue
        if p.shape is None or None in p.shape:
            continue
        stop = next((where[q.tensor] for q in probes[k + 1:]
                     if q.tensor is not None and where.get(q.tensor, -1) > last),
                    len(target.names))
        for i in range(last + 1, stop):
            name = target.names[i]
            if name not in used and _shape_fits(p.shape, target.shapes.get(name)):
                p.tensor, p.how = name, "position"
                used.add(name)
                last = i
                break


def _shape_fits(ref: Shape, got: Shape | None) -> bool:
    if got is None or None in got or len(got) != len(ref):
        return False
    return tuple(got) == ref or any(len(perm) == len(got) and
                                    tuple(got[i] for i in perm) == ref for perm in _PERMS)


# --------------------------------------------------------------------------------------
# comparison


def localize(
    report: VerificationReport,
    source: SourceModel,
    source_runner: Runner,
    target_runner: Runner,
    out: Path,
    options: ConvertOptions,
) -> None:
    """Fill ``report.layers`` and ``report.first_divergence`` (in place)."""
    if not hasattr(source_runner, "intermediates") or not hasattr(target_runner, "intermediates"):
        report.notes.append(
            f"layer localisation unavailable: {source_runner.name} or {target_runner.name} "
            "runner cannot expose intermediate tensors"
        )
        return
    probes = source_probes(source)
    if not probes:
        report.notes.append("layer localisation unavailable: no source names in the model")
        return
    target = describe_target(source, out)
    match(probes, target)
    feeds = sample_inputs(source_runner, options, source.int_ranges)[0]
    tol = report.tolerance or Tolerance(1e-4, 1e-5)
    hidden: list[str] = []  # layers since the last compared one that the file does not expose
    for batch in _batches(probes, target):
        try:
            src_vals = source_runner.intermediates(
                feeds, [p.key for p in batch if p.tensor])
            tgt_vals = target_runner.intermediates(
                feeds, list(dict.fromkeys(p.tensor for p in batch if p.tensor)))
        except Exception as exc:
            report.notes.append(f"layer localisation failed: {_first_line(exc)}")
            return
        for p in batch:
            entry = _compare(len(report.layers), p, src_vals, tgt_vals, tol, target.fused)
            if entry is None:
                hidden.append(p.layer)
                continue
            entry.fused_with = list(dict.fromkeys(
                [*entry.fused_with, *(h for h in hidden if h != p.layer)]))
            hidden = []
            report.layers.append(entry)
        del src_vals, tgt_vals
        if not options.localize and _first_divergence(report.layers, final=False) is not None:
            report.notes.append("layer localisation stopped at the first diverging layer "
                                "(--localize compares every layer)")
            break
    report.first_divergence = _first_divergence(report.layers)
    unconfirmed = [layer.source_name for layer in report.layers
                   if not layer.passed and layer is not report.first_divergence
                   and layer.matched_by in _WEAK and _next_passes(report.layers, layer)]
    if unconfirmed:
        report.notes.append(
            f"not counted as divergences (weakly matched, and the next layer agrees, so "
            f"probably fused into a later op): {', '.join(unconfirmed[:5])}"
            + (f" (+{len(unconfirmed) - 5})" if len(unconfirmed) > 5 else ""))
    if not report.layers:
        report.notes.append("layer localisation found no comparable intermediate tensors")
    weak = sum(1 for layer in report.layers if layer.matched_by in _WEAK)
    if weak:
        report.notes.append(f"{weak} of {len(report.layers)} layers were matched to the converted "
                            "model by node scope or position (the file records no source names)")


def _batches(probes: list[_Probe], target: _Target) -> list[list[_Probe]]:
    batches: list[list[_Probe]] = [[]]
    size = 0
    for p in probes:
        shape = target.shapes.get(p.tensor or "") or p.shape
        known = shape is not None and None not in shape
        nbytes = 4 * math.prod(d or 1 for d in shape) if known and shape else _UNKNOWN_BYTES
        if p.tensor is None:
            nbytes = 0
        if batches[-1] and (size + 2 * nbytes > BATCH_BYTES or
                            len(batches[-1]) >= BATCH_TENSORS):
            batches.append([])
            size = 0
        batches[-1].append(p)
        size += 2 * nbytes  # the source's value and the converted one
    return [b for b in batches if b]


def _compare(index: int, p: _Probe, src_vals: dict[str, Any], tgt_vals: dict[str, Any],
             tol: Tolerance, fused: dict[str, list[str]]) -> LayerError | None:
    if p.key not in src_vals or p.tensor not in tgt_vals:
        return None
    ref, raw = _main_tensor(src_vals[p.key]), np.asarray(tgt_vals[p.tensor])
    if ref.dtype.kind not in "fciub" or raw.dtype.kind not in "fciub":
        return None
    if p.dequant is not None and ref.dtype.kind in "iu" and raw.dtype.kind == "f":
        ref = _dequantize(ref, p.dequant)  # the converted runtime reports real values
    act = _align(ref, raw)
    if act is None and (raw.size == ref.size or p.how in _WEAK):
        return None  # a layout we cannot map back, or a weak match: no evidence either way
    tensor = p.tensor or ""
    if act is None:  # a different number of elements: this layer certainly diverged
        return LayerError(index, p.layer, p.ops, tensor, float("inf"), float("inf"), False,
                          fused.get(p.layer, []), matched_by=p.how, cosine=float("nan"))
    m = compare_arrays(p.layer, ref, act, tol)
    return LayerError(index, p.layer, p.ops, tensor, m.max_abs, m.max_rel, m.passed,
                      fused.get(p.layer, []), matched_by=p.how, cosine=m.cosine,
                      mean_abs=m.mean_abs)


def _first_divergence(layers: list[LayerError], final: bool = True) -> LayerError | None:
    """The first failing layer; a weakly matched one only when the next one fails too
    (``final``: no more layers follow, so a weak failure at the end counts)."""
    for k, layer in enumerate(layers):
        if layer.passed:
            continue
        if layer.matched_by not in _WEAK:
            return layer
        if k + 1 < len(layers):
            if not layers[k + 1].passed:
                return layer
        elif final:
            return layer
    return None


def _next_passes(layers: list[LayerError], layer: LayerError) -> bool:
    k = layers.index(layer)
    return k + 1 < len(layers) and layers[k + 1].passed


def _main_tensor(value: Any) -> np.ndarray:
    """A layer's main output: the first tensor when it returns several."""
    if isinstance(value, (list, tuple)):
        return np.asarray(value[0])
    return np.asarray(value)


def _align(ref: np.ndarray, act: np.ndarray) -> np.ndarray | None:
    """``act`` brought to ``ref``'s shape: as is, a layout transpose, or a reshape.

    Equal shapes do not prove equal layouts (NHWC and NCHW coincide when H = W = C), so
    every candidate that fits is tried and the closest one wins: a real divergence is
    far from the reference under every layout, a layout difference is not.
    """
    candidates = [act] if act.shape == ref.shape else []
    if act.size == ref.size:
        candidates += [np.transpose(act, perm) for perm in _PERMS
                       if len(perm) == act.ndim and
                       tuple(act.shape[p] for p in perm) == ref.shape]
        if not candidates and np.squeeze(act).shape == np.squeeze(ref).shape:
            candidates.append(act.reshape(ref.shape))
    if not candidates:
        return None
    if len(candidates) == 1 or ref.dtype.kind not in "fc":
        return candidates[0]
    return min(candidates, key=lambda c: float(np.nanmax(np.abs(c - ref))) if c.size else 0.0)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's text, whole (never cut mid-word)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:300].rsplit(" ", 1)[0] + " ..."
