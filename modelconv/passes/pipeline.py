"""The standard cleanup run on every imported model before export.

    imported IR ──► dead nodes out ──► fold cheap constants ──► BatchNorm into Conv
                ──► per-channel Mul/Add/Sub into Conv ──► dedupe initializers
                ──► topological order ──► unused opsets out ──► shape inference

Passes run through onnx_ir's pass manager (``ir.passes.Sequential``): it checks each pass's
pre/postconditions and, when a pass raises, raises ``ir.passes.PassError`` naming that pass and
the passes that ran before it (the original exception chained). :func:`failed_pass` turns such
a chain into one line for an error message.
"""

from __future__ import annotations

import logging
import re

import onnx_ir as ir
from onnx_ir.passes import common

from modelconv.passes.constant_folding import FoldConstantsPass
from modelconv.passes.dedupe import DedupeInitializersPass
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
        DedupeInitializersPass(size_limit=1 << 20),
        common.TopologicalSortPass(),
        common.RemoveUnusedOpsetsPass(),
    ]
    ir.passes.Sequential(*steps)(model)
    if infer_shapes:
        try:
            ShapeInferencePass(strict_mode=False)(model)
        except Exception as exc:  # shape inference is a nicety, not a requirement
            warnings.append(f"shape inference skipped: {str(exc).splitlines()[0][:200]}")
    return warnings


_PASS_NAME = re.compile(r"running the '<?([\w.]+)")


def failed_pass(exc: BaseException) -> str:
    """``"<PassClass> failed: <what it raised>"`` for a ``PassError`` chain, else ``str(exc)``.

    Args:
        exc: an exception raised by a pass manager (or anything else).

    Returns:
        One line naming the innermost pass the chain names and the exception it raised.
    """
    name = None
    root: BaseException = exc
    while isinstance(root, ir.passes.PassError) and root.__cause__ is not None:
        found = _PASS_NAME.search(str(root))
        name = found.group(1).rsplit(".", 1)[-1] if found else name
        root = root.__cause__
    line = (str(root).splitlines() or [type(root).__name__])[0][:300]
    return f"{name} failed: {line}" if name else line
