"""Helpers for other projects' test suites.

Example (pytest)::

    from modelconv.testing import assert_equivalent

    def test_export_matches(tmp_path):
        modelconv.convert("model.h5", tmp_path / "model.onnx")
        assert_equivalent("model.h5", tmp_path / "model.onnx", rtol=1e-4)
"""

from __future__ import annotations

import os
from typing import Any

from modelconv.verification.report import VerificationReport


def assert_equivalent(
    src: Any,
    converted: str | os.PathLike[str],
    inputs: Any = None,
    rtol: float | None = None,
    atol: float | None = None,
    reference: Any = None,
    **options: Any,
) -> VerificationReport:
    """Assert ``converted`` computes the same outputs as ``src``; return the report.

    Args:
        src: the source model (path or in-memory torch module).
        converted: the converted file.
        inputs: samples (.npz / .npy / folder / arrays); default: generated ones.
        rtol: relative tolerance (default: by the converted file's precision).
        atol: absolute tolerance (default: by the converted file's precision).
        reference: expected outputs recorded elsewhere (needs ``inputs``), compared
            instead of running ``src``.
        **options: other :class:`~modelconv.ConvertOptions` fields.

    Returns:
        The report of a passed verification.

    Raises:
        AssertionError: naming the failing output, the metric that failed and the first
            diverging source layer; or, when the verification could not run (skipped),
            saying why: a skipped verification never passes.
    """
    from modelconv.api import verify

    report = verify(src, converted, inputs=inputs, rtol=rtol, atol=atol, reference=reference,
                    **options)
    if report.skipped or not report.outputs:
        raise AssertionError(f"could not verify {converted} (not verified): "
                             f"{report.skip_reason or 'no outputs compared'}")
    if report.passed:
        return report
    lines = [f"{converted} is not equivalent to its source ({report.source_runtime} vs "
             f"{report.target_runtime}):"]
    for out in report.failing():
        lines.append(f"  output '{out.name}': {out.reason} (max rel {out.max_rel:.3g}, "
                     f"cosine {out.cosine:.6f})")
    if report.first_divergence is not None:
        d = report.first_divergence
        fused = f", fused with {', '.join(d.fused_with)}" if d.fused_with else ""
        lines.append(f"  first diverging layer: '{d.source_name}' -> converted ops "
                     f"{', '.join(d.converted_ops)}{fused} (tensor '{d.tensor}', max rel "
                     f"{d.max_rel:.3g})")
    raise AssertionError("\n".join(lines))
