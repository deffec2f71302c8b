"""Find the first source layer whose output drifts in the converted model.

Every IR node records the source layer it came from (``source_name``). For each source
layer, in graph order, the converted model's tensor that holds the layer's output is
the output of the *last* node carrying that layer's name. The source runner gives the
layer's own output (torch hooks, Keras sub-models, ORT extra outputs); the target runner
gives the converted tensor; both are compared with the report's tolerance. Layout
differences (NHWC vs NCHW) are undone by trying the matching transpose.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def fused_layers(nodes: Sequence[Any]) -> dict[str, list[str]]:
    """source_name -> the source layers fusion passes folded into its ops."""
    fused: dict[str, list[str]] = {}
    for node in nodes:
        meta = _metadata(node)
        name, absorbed = meta.get(SOURCE_KEY), meta.get(FUSED_KEY)
        if name and absorbed:
            fused.setdefault(name, []).extend(a for a in absorbed.split(",") if a)
    return fused


def layer_map_from_nodes(nodes: Sequence[Any]) -> dict[str, tuple[str, list[str]]]:
    """source_name -> (tensor holding that layer's output, the layer's own op types).

    Source names are hierarchical (``encoder.layer.0.attn``): a layer's output is the
    output of the last node in its whole subtree, since a submodule (``attn.out_proj``)
    often computes it. Works on onnx NodeProto and onnx_ir Node objects alike. Layers are
    ordered by where their output is produced; on a tie the deeper layer comes first.
    """
    layers: dict[str, tuple[str, list[str]]] = {}
    position: dict[str, int] = {}
    for index, node in enumerate(nodes):
        # files written by other tools carry no source_name: fall back to the node name
        name = _metadata(node).get(SOURCE_KEY) or node.name
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


def _metadata(node: Any) -> dict[str, str]:
    props = node.metadata_props
    if isinstance(props, dict):
        return props
    return {p.key: p.value for p in props}


def _first_output(node: Any) -> str | None:
    outs = list(node.output) if hasattr(node, "output") else [o.name for o in node.outputs]
    return outs[0] if outs and outs[0] else None


def converted_nodes(source: SourceModel, out: Path) -> list[Any]:
    """The converted model's nodes (ONNX: read the file; else the IR the exporter got)."""
    if out.suffix == ".onnx":
        return list(onnx.load(str(out), load_external_data=False).graph.node)
    return list(source.model.graph)


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
    nodes = converted_nodes(source, out)
    layers, fused = layer_map_from_nodes(nodes), fused_layers(nodes)
    if not layers:
        report.notes.append("layer localisation unavailable: no source names in the model")
        return
    feeds = sample_inputs(source_runner, options, source.int_ranges)[0]
    names = list(layers)
    try:
        src_vals = source_runner.intermediates(feeds, names)
        tgt_vals = target_runner.intermediates(feeds, [layers[n][0] for n in names])
    except Exception as exc:
        report.notes.append(f"layer localisation failed: {str(exc).splitlines()[0][:200]}")
        return
    tol = report.tolerance or Tolerance(1e-4, 1e-5)
    for index, name in enumerate(names):
        tensor, ops = layers[name]
        if name not in src_vals or tensor not in tgt_vals:
            continue
        ref, raw = _main_tensor(src_vals[name]), np.asarray(tgt_vals[tensor])
        act = _align(ref, raw)
        if act is None and raw.size == ref.size:
            continue  # same data in a layout we cannot map back: not evidence either way
        if act is None:  # a different number of elements: this layer certainly diverged
            entry = LayerError(index, name, ops, tensor, float("inf"), float("inf"), False,
                               fused.get(name, []))
        else:
            m = compare_arrays(name, ref, act, tol)
            entry = LayerError(index, name, ops, tensor, m.max_abs, m.max_rel, m.passed,
                               fused.get(name, []))
        report.layers.append(entry)
        if not entry.passed and report.first_divergence is None:
            report.first_divergence = entry
    if not report.layers:
        report.notes.append("layer localisation found no comparable intermediate tensors")


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
