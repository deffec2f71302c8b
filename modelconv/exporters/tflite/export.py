"""The TFLite export pipeline."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Collection
from pathlib import Path

import onnx_ir as ir

from modelconv.errors import ExportError, ModelconvError, OptionsError, UnsupportedOpsError
from modelconv.exporters.tflite import dynamic, prepare, qdq
from modelconv.exporters.tflite.graph import LoweringContext, TflGraph, np_dtype
from modelconv.exporters.tflite.registry import LOWERINGS
from modelconv.exporters.tflite.writer import serialize, write
from modelconv.fileio import atomic_output_dir
from modelconv.ir.builder import source_name_of
from modelconv.options import ConvertOptions
from modelconv.passes.tflite.fold_dequantize import FoldDequantizePass, weight_hints
from modelconv.passes.tflite.integer_ops import IntegerOpsPass


def export_tflite(model: ir.Model, dst: Path, options: ConvertOptions) -> list[Path]:
    """Write ``model`` as a .tflite file at ``dst`` (atomically); returns the written paths.

    The flatbuffer is streamed to the file (no whole-file ``bytes`` in memory)."""
    graph = build_graph(model, options)
    with atomic_output_dir(dst) as tmp, open(tmp / Path(dst).name, "wb") as f:
        write(graph, f)
    return [Path(dst)]


def convert_to_tflite(model: ir.Model, options: ConvertOptions | None = None) -> bytes:
    """The .tflite bytes for ``model`` (float, fp16 or quantized per ``options``)."""
    return serialize(build_graph(model, options or ConvertOptions()))


def _lowered(model: ir.Model, options: ConvertOptions, probe: Collection[str] = (),
             ) -> tuple[TflGraph, dict[str, list[int]], dict[str, list[int]]]:
    """``model`` specialised to static input shapes and lowered (``probe``: the dynamic
    dims shifted, see fix_input_shapes)."""
    work = prepare.clone(model)
    ir.passes.Sequential(IntegerOpsPass(), FoldDequantizePass())(work)
    signatures = prepare.fix_input_shapes(work, options, probe=probe)
    if not probe:
        options.report_progress("tflite: shapes", 0.1)
    empty = prepare.infer_and_fold(work)
    prepare.check_supported(work, empty)
    prepare.check_static(work)
    source_inputs = {v.name or "": LoweringContext.shape(v) for v in work.graph.inputs}
    prepare.optimize(work, options)
    if not probe:
        options.report_progress("tflite: lowering", 0.4)
    origins: list[ir.Node | None] = []
    graph = lower(work, signatures, source_inputs, origins)
    if qdq.has_quantization(graph) or weight_hints(work):
        _keep_quantization(graph, origins, work, options, warn=not probe)
    return graph, signatures, source_inputs


def _keep_quantization(graph: TflGraph, origins: list[ir.Node | None], work: ir.Model,
                       options: ConvertOptions, warn: bool) -> None:
    """A quantized (QDQ) source: its int8 ops kept with its parameters (see :mod:`.qdq`)."""
    if options.quantize or options.fp16:
        flag = f"quantize={options.quantize!r}" if options.quantize else "fp16"
        raise OptionsError(
            f"the model is already quantized (QuantizeLinear/DequantizeLinear); {flag} would "
            "quantize it again", hint="Convert it without --quantize/--fp16: its own scales "
            "and zero points are kept")
    left = qdq.to_int8(graph, origins, weight_hints(work))
    if left and warn:
        shown = ", ".join(left[:8]) + (f" and {len(left) - 8} more" if len(left) > 8 else "")
        warnings.warn(f"TFLite export: {len(left)} op(s) next to quantized tensors run in float "
                      "between DEQUANTIZE/QUANTIZE, as the QDQ model computes them (a float "
                      "input or output in the model, or no LiteRT int8 kernel for their "
                      f"parameters): {shown}", UserWarning, stacklevel=4)


def _probe(graph: TflGraph, model: ir.Model, options: ConvertOptions,
           keys: list[str]) -> TflGraph | str:
    """``graph`` made dynamic in the dims ``keys`` (a copy: ``graph`` is not edited), by
    comparing it with the model lowered at those dims' probe sizes; or why it cannot be."""
    log = logging.getLogger("onnx_ir")  # a failing probe's shape inference logs a traceback
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe, _, _ = _lowered(model, options, probe=keys)
    except ModelconvError as exc:
        return f"the model does not convert at other sizes ({exc.message})"
    finally:
        log.setLevel(level)
    target = dynamic.copy_graph(graph)
    dynamic.make_static(target)  # the -1s are exactly the dims that differ
    reason = dynamic.generalize(target, probe)
    return target if reason is None else reason


def _make_dynamic(graph: TflGraph, model: ir.Model, options: ConvertOptions) -> TflGraph:
    """``graph`` keeping the dynamic input dims whose derived shapes all follow at run time
    (see :mod:`.dynamic`); the others are fixed to their export sizes with a warning."""
    keys = prepare.dynamic_dim_keys(model)
    found = _probe(graph, model, options, keys)
    if isinstance(found, TflGraph):
        return found
    reason = found
    kept = [k for k in keys if len(keys) > 1 and  # the dims that work alone, then together
            isinstance(_probe(graph, model, options, [k]), TflGraph)]
    result = _probe(graph, model, options, kept) if kept else None
    if not isinstance(result, TflGraph):
        kept, result = [], graph
        dynamic.make_static(graph)
    shapes = {graph.input_names[i]: graph.tensors[t].shape for i, t in enumerate(graph.inputs)}
    warnings.warn(f"TFLite export: dynamic dims {[k for k in keys if k not in kept]} are fixed "
                  f"to their export sizes (inputs {shapes}) because {reason}; the file runs "
                  "at these sizes only", UserWarning, stacklevel=4)
    return result


def build_graph(model: ir.Model, options: ConvertOptions) -> TflGraph:
    """Prepare, lower and (optionally) quantize ``model``; the TflGraph ready to write.

    Args:
        model: the IR model (not edited).
        options: conversion options.

    Returns:
        The graph; dynamic input dims stay -1 in ``shape_signature`` where every shape
        derived from them follows at run time (else a warning and a static graph).

    Raises:
        ExportError: an op or a variant the TFLite exporter cannot write.
    """
    graph, signatures, source_inputs = _lowered(model, options)
    if any(-1 in sig for sig in signatures.values()):
        graph = _make_dynamic(graph, model, options)
    if options.quantize not in (None, "dynamic", "int8"):
        raise ExportError(f"unknown quantize mode {options.quantize!r}",
                          hint="Use None, 'dynamic' or 'int8'")
    if options.quantize or options.fp16:
        from modelconv.exporters.tflite import quantize

        graph = quantize.quantize_graph(graph, options, source_inputs)
    graph.prune()
    options.report_progress("tflite: writing", 0.9)
    return graph


def lower(model: ir.Model, signatures: dict[str, list[int]],
          logical: dict[str, list[int]] | None = None,
          origins: list[ir.Node | None] | None = None) -> TflGraph:
    """Lower every IR node to TFLite operators.

    ``signatures`` are the source inputs' shape signatures (-1 = dynamic) and ``logical``
    their static source-layout shapes, used to place -1s on channels-last inputs.
    ``origins``, when given, receives per emitted op the IR node it was lowered from.
    """
    g = TflGraph()
    ctx = LoweringContext(g)
    for value in model.graph.inputs:
        idx = g.add_tensor(value.name or "input", np_dtype(value.dtype), ctx.shape(value))
        sig = signatures.get(value.name or "")
        if sig is not None and -1 in sig:
            shape = ctx.shape(value)
            src = (logical or {}).get(value.name or "", shape)
            if len(sig) == 4 and shape != src and shape == [src[0], src[2], src[3], src[1]]:
                sig = [sig[0], sig[2], sig[3], sig[1]]  # moved to NHWC by nhwc_io
            g.tensors[idx].shape_signature = [-1 if s == -1 else d
                                              for s, d in zip(sig, shape, strict=True)]
        ctx.tensor_of[value] = idx
        g.inputs.append(idx)
        g.input_names.append(value.name or f"input_{idx}")
    for node in model.graph:
        fn = LOWERINGS.get(node.op_type)
        if fn is None:
            raise ExportError(f"no TFLite lowering for {node.op_type} ({node.name})")
        ctx.node = node
        before = len(g.ops)
        fn(ctx, node)
        _check_outputs_lowered(ctx, node)
        if origins is not None:
            origins.extend([node] * (len(g.ops) - before))
    ctx.node = None
    used: set[int] = set()
    for value in model.graph.outputs:
        idx = ctx.get(value)
        t = g.tensors[idx]
        if idx in g.inputs or idx in used or t.data is not None:
            if t.name == value.name and idx not in g.inputs:
                g.rename(idx, f"{value.name}/source")
            copy = g.add_tensor(f"{value.name}", t.dtype, list(t.shape))
            ctx.emit("RESHAPE", [idx, ctx.i32(t.shape)], [copy])
            idx = copy
        used.add(idx)
        g.outputs.append(idx)
        g.output_names.append(value.name or f"output_{idx}")
    return g


def _check_outputs_lowered(ctx: LoweringContext, node: ir.Node) -> None:
    """A lowering that leaves a used output unproduced (an optional output such as
    LayerNormalization's Mean) is refused by name, not as a later "used before produced"."""
    missing = [f"{node.op_type} output {i} '{out.name}'" for i, out in enumerate(node.outputs)
               if (out.uses() or out.is_graph_output()) and out not in ctx.tensor_of]
    if missing:
        where = source_name_of(node) or node.name or f"an unnamed {node.op_type} node"
        raise UnsupportedOpsError(
            "ONNX op output for TFLite", {m: [where] for m in missing},
            hint="The TFLite lowering produces only the main output(s); remove the uses of "
                 "the optional outputs (e.g. training-mode statistics) before converting")
