"""Verification of large models: the source runs, then the converted model, never both loaded.

    source runner ─► outputs recorded ─► source runner released (gc, malloc_trim)
                  ─► converted model loaded (onnxruntime / LiteRT) ─► compared

:func:`verify_in_turn` is used by ``convert``/``verify`` when the model's weights are at
least ``IN_TURN_FROM_BYTES``. The torch source of a mapped weights file reads its weights
from the file's pages (page cache, reclaimable), so what stays between the two runs is the
recorded outputs. The dynamic-batch check (a second run with batch 2) and layer-by-layer
localisation need both models at once and are skipped; the report says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Callable, Mapping
from typing import Any

from modelconv.errors import ModelLoadError, VerificationError
from modelconv.options import ConvertOptions
from modelconv.verification.compare import tolerance_for
from modelconv.verification.report import VerificationReport
from modelconv.verification.runners import Runner
from modelconv.verification.verifier import (
    _run,
    _samples,
    align_inputs,
    cast_for,
    compare_outputs,
    describe_inputs,
)

#: weights at least this large are verified in turn (1 GiB)
IN_TURN_FROM_BYTES = 2**30


def verify_in_turn(make_source: Callable[[], Runner], make_target: Callable[[], Runner],
                   options: ConvertOptions, mode: str, *,
                   int_ranges: Mapping[str, tuple[int, int]] | None = None,
                   weights_bytes: int = 0) -> VerificationReport:
    """Run the source on the samples, release it, then run the converted model and compare.

    Args:
        make_source: builds the source runner.
        make_target: builds the converted model's runner (called after the source is gone).
        options: sample and tolerance options.
        mode: the tolerance mode.
        int_ranges: ``[lo, hi)`` of index inputs, by name.
        weights_bytes: the weights' size, for the report's note.

    Returns:
        The report, with a note saying what was compared and in which order.

    Raises:
        SignatureMismatchError: the models' inputs or outputs do not correspond.
        ModelLoadError: the source fails; VerificationError: the converted model fails.
    """
    tol = tolerance_for(mode, options.rtol, options.atol)
    source = make_source()
    source_specs, source_names = source.input_specs(), source.output_names()
    source_name = source.name
    samples, _ = _samples(source, options, int_ranges, None)
    refs = [_run(source, cast_for(f, source_specs), "source model", ModelLoadError)
            for f in samples]
    del source
    _release()
    target = make_target()
    target_specs = target.input_specs()
    mapping = align_inputs(source_specs, target_specs)
    acts = [_run(target, cast_for(mapping.feeds(f), target_specs), "converted model",
                 VerificationError) for f in samples]
    report = compare_outputs(refs, acts, source_names, target.output_names(), tol)
    report.source_runtime, report.target_runtime, report.mode = source_name, target.name, mode
    report.inputs = describe_inputs(options, samples)
    report.input_shapes = [list(f.shape) for f in samples[0]]
    report.notes.append(
        f"large model ({weights_bytes / 2**30:.1f} GiB of weights): {source_name} ran first "
        f"on {len(samples)} sample(s) and was released before {target.name} loaded the "
        "converted file, so the two were never loaded together; the batch-2 check and "
        "layer-by-layer localisation (both need the two at once) were not run")
    return report


def _release() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: pages stay allocated
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def weights_bytes(model: Any) -> int:
    """Bytes of the IR model's initializers (declared sizes, nothing read)."""
    return sum(v.const_value.nbytes for v in model.graph.initializers.values()
               if v.const_value is not None)
