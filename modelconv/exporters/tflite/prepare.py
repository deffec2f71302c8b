"""IR preparation for TFLite: static shapes, constant folding, the support check, passes."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Collection

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, TopologicalSortPass

from modelconv.errors import ExportError, UnsupportedOpsError
from modelconv.exporters.tflite import writer
from modelconv.exporters.tflite.registry import LOWERINGS, unsupported_reason
from modelconv.ir.builder import source_name_of
from modelconv.ir.info import graph_input_specs, initializer_bytes
from modelconv.options import ConvertOptions
from modelconv.passes.backfill_shapes import BackfillShapesPass
from modelconv.passes.constant_folding import FoldConstantsPass
from modelconv.passes.expand_functions import EXPANDED_KEY, expand_functions
from modelconv.passes.fuse_batchnorm import FuseBatchNormPass
from modelconv.passes.fuse_bias import FuseBiasPass
from modelconv.passes.fuse_gelu import FuseGeluPass
from modelconv.passes.fuse_pad import FusePadPass
from modelconv.passes.pipeline import failed_pass
from modelconv.passes.shape_inference import ShapeInferencePass
from modelconv.passes.tflite.fold_layernorm_affine import FoldLayerNormAffinePass
from modelconv.passes.tflite.fuse_activation import FuseActivationPass
from modelconv.passes.tflite.fuse_matmul_bias import FuseMatMulBiasPass
from modelconv.passes.tflite.nhwc import NhwcLayoutPass
from modelconv.passes.unroll_scan import UnrollScanPass
from modelconv.verification.inputs import resolve_shape


def clone(model: ir.Model) -> ir.Model:
    """A structural copy of ``model`` (the exporter never edits the caller's IR).

    Nodes and values are new objects; constant tensors are shared, not copied (passes
    replace constants with new tensors and never write into existing ones)."""
    return model.clone(deep_copy=True)


def fix_input_shapes(model: ir.Model, options: ConvertOptions,
                     probe: Collection[str] = ()) -> dict[str, list[int]]:
    """Make every graph input static; returns shape signatures (-1 = was dynamic) by name.

    Dynamic dims get the values the verifier uses (``resolve_shape``): ``dim_values`` by
    name, else ``batch_size`` for axis 0 and 8 elsewhere (with a warning for the latter).
    Each dynamic dim whose key (:func:`dim_key`) is in ``probe`` gets that value plus an
    offset chosen per key (the same name, the same value): the probe specialisation that
    :mod:`.dynamic` compares against to find the shapes that follow the dynamic dims.

    Args:
        model: the working IR, edited in place.
        options: ``dim_values`` and ``batch_size``.
        probe: the keys of the dynamic dims to shift (see above).

    Returns:
        Input name -> shape signature (-1 for each dynamic dim).

    Raises:
        ExportError: an input has no shape.
    """
    signatures: dict[str, list[int]] = {}
    offsets: dict[str, int] = {}
    changed = False
    specs = {s.name: s for s in graph_input_specs(model.graph)}
    for value in model.graph.inputs:
        spec = specs.get(value.name or "")
        if value.shape is None or spec is None:
            raise ExportError(f"input '{value.name}' has no shape; TFLite needs one")
        dims = [int(d) for d in resolve_shape(spec, options.dim_values, options.batch_size or 1)]
        sig = [d if isinstance(d, int) and d >= 0 else -1 for d in spec.shape]
        guessed = [str(d) for a, d in enumerate(spec.shape) if a > 0 and not isinstance(d, int)
                   and d not in options.dim_values]
        if probe:
            for a, d in enumerate(spec.shape):
                key = dim_key(d, a)
                if sig[a] == -1 and key in probe:
                    dims[a] += offsets.setdefault(key, _PROBE_OFFSETS[len(offsets) % 8])
        elif guessed:
            warnings.warn(f"TFLite export: dynamic dims {guessed} of input '{value.name}' fixed "
                          "to 8; pass dim_values={name: N} to choose", UserWarning, stacklevel=3)
        changed = changed or list(value.shape) != dims
        value.shape = ir.Shape(dims)
        signatures[value.name or ""] = sig
    if changed:  # re-inferred from the fixed inputs (static models keep declared shapes)
        for node in model.graph:
            for out in node.outputs:
                out.shape = None
    return signatures


_PROBE_OFFSETS = (5, 7, 11, 13, 17, 19, 23, 29)


def dim_key(dim: object, axis: int) -> str:
    """The key of a dynamic input dim: its name, else ``?AXIS`` (unnamed dims on the same
    axis of several inputs are taken to be one dim, like the batch)."""
    return dim if isinstance(dim, str) else f"?{axis}"


def dynamic_dim_keys(model: ir.Model) -> list[str]:
    """The keys (:func:`dim_key`) of the graph inputs' dynamic dims, in order of appearance.

    Args:
        model: the IR model.

    Returns:
        One key per distinct dynamic dim.
    """
    keys: list[str] = []
    for spec in graph_input_specs(model.graph):
        for a, d in enumerate(spec.shape):
            if not (isinstance(d, int) and d >= 0) and dim_key(d, a) not in keys:
                keys.append(dim_key(d, a))
    return keys


def infer_and_fold(model: ir.Model) -> dict[str, list[str]]:
    """Shape inference and constant folding until nothing changes (at most 3 rounds).

    Returns:
        The graph outputs LiteRT cannot return (zero elements), keyed like
        UnsupportedOpsError entries by their producing op, found before folding hides it.

    Raises:
        UnsupportedOpsError: shape inference failed and some ops have no lowering.
        ExportError: shape inference or folding failed (the pass and its error named).
    """
    TopologicalSortPass()(model)
    rounds = ir.passes.PassManager([ShapeInferencePass(), FoldConstantsPass(allow_growth=True)],
                                   steps=3, early_stop=True)
    empty: dict[str, list[str]] = {}
    try:
        ShapeInferencePass()(model)
        expand_functions(model, _no_lowering, ShapeInferencePass(), widen=_whole_op)
        if UnrollScanPass()(model).modified:
            ShapeInferencePass()(model)
        empty = empty_outputs(model)
        ir.passes.Sequential(rounds, BackfillShapesPass(), ShapeInferencePass())(model)
    except ir.passes.PassError as exc:  # report unsupported ops first: they are the cause
        check_supported(model, empty)
        raise ExportError(f"shape inference failed: {failed_pass(exc)}",
                          hint="Check the model with onnx.checker") from exc
    RemoveUnusedNodesPass()(model)
    return empty


#: refused variants that stay refused: float16 Softmax's body (in float16 steps or in
#: float32) is 1-2 ulps off ONNX's results in the fp16 attention node tests
_NOT_EXPANDED_WHEN_REFUSED = frozenset({"Softmax", "LogSoftmax"})


def _no_lowering(node: ir.Node) -> bool:
    """Nodes the exporter expands into their ONNX function body: no lowering of their own,
    or one whose check refuses this node (the body's ops are checked in its place)."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in LOWERINGS:
        return True
    return node.op_type not in _NOT_EXPANDED_WHEN_REFUSED and \
        unsupported_reason(node) is not None


def _whole_op(node: ir.Node) -> bool:
    """float16 ops with no lowering run their body in float32 (rounded once at the end, as
    the op's reference does); a refused lowered op's body (Softmax) keeps its float16 steps,
    which is how the op is defined."""
    return node.domain not in ("", "ai.onnx") or node.op_type not in LOWERINGS


def empty_outputs(model: ir.Model) -> dict[str, list[str]]:
    """Graph outputs with a static zero-element shape (e.g. Shape with start > end): LiteRT's
    interpreter returns no zero-size tensor, so they are refused with the op that makes them."""
    found: dict[str, list[str]] = defaultdict(list)
    for value in model.graph.outputs:
        if value.shape is None or not all(isinstance(d, int) for d in value.shape):
            continue
        if 0 in list(value.shape):
            node = value.producer()
            op = node.op_type if node is not None else "constant"
            where = (source_name_of(node) or node.name) if node is not None else value.name
            found[f"{op} (zero-element graph output '{value.name}')"].append(where or "?")
    return dict(found)


def check_supported(model: ir.Model, extra: dict[str, list[str]] | None = None) -> None:
    """Raise one UnsupportedOpsError listing every op without a TFLite lowering and every
    node whose attributes / inputs its lowering cannot express (the registered checks),
    plus ``extra`` entries found earlier (:func:`infer_and_fold`)."""
    missing: dict[str, list[str]] = defaultdict(list)
    for key, places in (extra or {}).items():
        missing[key].extend(places)
    for role, values in (("input", model.graph.inputs), ("output", model.graph.outputs)):
        for value in values:  # TFLite tensors only: no optional / sequence / map values
            if value.type is not None and not isinstance(value.type, ir.TensorType):
                missing[f"graph {role} of type {value.type}"].append(value.name or "?")
    for node in model.graph:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        where = source_name_of(node) or node.name or "?"
        origin = node.metadata_props.get(EXPANDED_KEY)  # an op of a function body: name
        body = f"in the ONNX function body of {origin}" if origin else ""  # the model's op
        if node.domain not in ("", "ai.onnx") or node.op_type not in LOWERINGS:
            missing[f"{key} ({body})" if body else key].append(where)
            continue
        reason = unsupported_reason(node)
        if reason is not None:
            missing[f"{key} ({reason}{', ' + body if body else ''})"].append(where)
    if missing:
        raise UnsupportedOpsError("ONNX op for TFLite", missing)


def check_static(model: ir.Model) -> None:
    """Every value must have a static shape after inference."""
    for node in model.graph:
        for out in node.outputs:
            if not out.uses() and not out.is_graph_output():
                continue
            if out.shape is None or not all(isinstance(d, int) for d in out.shape):
                raise ExportError(
                    f"cannot infer a static shape for '{out.name}' ({node.op_type} node "
                    f"{source_name_of(node) or node.name})",
                    hint="Fix the input shapes (dim_values) or simplify the model",
                )


def optimize(model: ir.Model, options: ConvertOptions) -> None:
    """Fusion and layout passes, in order (a failing pass is named in the PassError).

    A model whose constants are streamed to the file (from ``OFFSET_BUFFERS_FROM``) keeps
    its weights as views of the source file: passes that would write a new weight-sized
    copy of them (LayerNorm affine folding) are left out.
    """
    streamed = initializer_bytes(model) >= writer.OFFSET_BUFFERS_FROM
    ir.passes.Sequential(
        FuseGeluPass(), FusePadPass(), FuseBatchNormPass(), FuseBiasPass(),
        NhwcLayoutPass(nhwc_io=options.nhwc_io), FuseMatMulBiasPass(),
        *([] if streamed else [FoldLayerNormAffinePass()]),
        FuseActivationPass(), RemoveUnusedNodesPass(),
    )(model)
