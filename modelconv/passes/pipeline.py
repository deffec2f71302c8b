"""The standard cleanup run on every imported model before export.

    imported IR ──► dead nodes out ──► fold cheap constants ──► BatchNorm into Conv
                ──► per-channel Mul/Add/Sub into Conv ──► dedupe initializers
                ──► topological order ──► unused opsets out ──► shape inference
"""

from __future__ import annotations

import logging

import onnx_ir as ir
from onnx_ir.passes import common

from modelconv.passes.constant_folding import FoldConstantsPass
from modelconv.passes.fuse_affine import FuseConvAffinePass
from modelconv.passes.fuse_batchnorm import FuseBatchNormPass
from modelconv.passes.shape_inference import ShapeInferencePass

log = logging.getLogger(__name__)


def cleanup(model: ir.Model, *, infer_shapes: bool = True) -> list[str]:
    """Clean ``model`` in place; returns warnings (e.g. shape inference gave up)."""
    warnings: list[str] = []
    steps: list[ir.passes.PassBase] = [
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1024),
        FoldConstantsPass(),
        FuseBatchNormPass(),
        FuseConvAffinePass(),
        common.RemoveUnusedNodesPass(),
        common.DeduplicateInitializersPass(size_limit=1 << 20),
        common.TopologicalSortPass(),
        common.RemoveUnusedOpsetsPass(),
    ]
    for step in steps:
        step(model)
    if infer_shapes:
        try:
            ShapeInferencePass(strict_mode=False)(model)
        except Exception as exc:  # shape inference is a nicety, not a requirement
            warnings.append(f"shape inference skipped: {str(exc).splitlines()[0][:200]}")
    return warnings
