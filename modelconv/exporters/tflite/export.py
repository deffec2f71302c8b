"""The TFLite export pipeline."""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir

from modelconv.errors import ExportError, UnsupportedOpsError
from modelconv.exporters.tflite import prepare
from modelconv.exporters.tflite.graph import LoweringContext, TflGraph, np_dtype
from modelconv.exporters.tflite.registry import LOWERINGS
from modelconv.exporters.tflite.writer import serialize, write
from modelconv.fileio import atomic_output_dir
from modelconv.ir.builder import source_name_of
from modelconv.options import ConvertOptions


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


def build_graph(model: ir.Model, options: ConvertOptions) -> TflGraph:
    """Prepare, lower and (optionally) quantize ``model``; the TflGraph ready to write."""
    work = prepare.clone(model)
    signatures = prepare.fix_input_shapes(work, options)
    options.report_progress("tflite: shapes", 0.1)
    empty = prepare.infer_and_fold(work)
    prepare.check_supported(work, empty)
    prepare.check_static(work)
    source_inputs = {v.name or "": LoweringContext.shape(v) for v in work.graph.inputs}
    prepare.optimize(work, options)
    options.report_progress("tflite: lowering", 0.4)
    graph = lower(work, signatures, source_inputs)
    del work  # the working IR (folded / relayouted constants) is no longer needed
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
          logical: dict[str, list[int]] | None = None) -> TflGraph:
    """Lower every IR node to TFLite operators.

    ``signatures`` are the source inputs' shape signatures (-1 = dynamic) and ``logical``
    their static source-layout shapes, used to place -1s on channels-last inputs.
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
        fn(ctx, node)
        _check_outputs_lowered(ctx, node)
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
