"""VerificationReport: the result of comparing a source model with its conversion."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from modelconv.verification.compare import OutputMetrics, Tolerance, describe_tolerance

#: layers listed in the table / JSON ``worst_layers`` / HTML, worst first
WORST_SHOWN = 10


@dataclass
class LayerError:
    """Error of one source layer's output, compared at the converted model's matching tensor."""

    index: int  # depth order in the source graph
    source_name: str
    converted_ops: list[str]
    tensor: str
    max_abs: float
    max_rel: float
    passed: bool
    fused_with: list[str] = field(default_factory=list)  # layers folded into these ops
    #: how the converted tensor was found: name, source_name, scope or position
    matched_by: str = ""
    cosine: float = float("nan")
    mean_abs: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class VerificationReport:
    """Per-output comparison of source vs converted model on the same inputs."""

    passed: bool
    source_runtime: str = ""
    target_runtime: str = ""
    tolerance: Tolerance | None = None
    mode: str = "float32"
    samples: int = 0
    outputs: list[OutputMetrics] = field(default_factory=list)
    skipped: bool = False
    skip_reason: str = ""
    input_shapes: list[list[int]] = field(default_factory=list)
    layers: list[LayerError] = field(default_factory=list)
    first_divergence: LayerError | None = None
    notes: list[str] = field(default_factory=list)
    #: the source model's and the converted model's files ("" for an in-memory model)
    source_path: str = ""
    target_path: str = ""
    #: where the samples came from: a file, calibration data, or generated with seeds
    inputs: str = ""

    @classmethod
    def skip(cls, reason: str) -> VerificationReport:
        """A report for a verification that could not run: ``skipped``, never ``passed``.

        Args:
            reason: why it could not run (shown to the user with how to verify anyway).

        Returns:
            The report.
        """
        return cls(passed=False, skipped=True, skip_reason=reason)

    @property
    def verdict(self) -> str:
        """``PASSED``, ``FAILED`` or ``NOT VERIFIED`` (skipped)."""
        if self.skipped:
            return "NOT VERIFIED"
        return "PASSED" if self.passed else "FAILED"

    def __repr__(self) -> str:
        files = f"{self.source_path or 'source'} -> {self.target_path or 'converted'}"
        return f"<VerificationReport {files}: {self.summary()}>"

    def _repr_html_(self) -> str:
        from modelconv.verification.html_summary import report_fragment

        return report_fragment(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "skipped": self.skipped,
            "skip_reason": self.skip_reason,
            "source_runtime": self.source_runtime,
            "target_runtime": self.target_runtime,
            "mode": self.mode,
            "tolerance": self.tolerance.to_dict() if self.tolerance else None,
            "samples": self.samples,
            "source_path": self.source_path,
            "target_path": self.target_path,
            "inputs": self.inputs,
            "input_shapes": self.input_shapes,
            "outputs": [o.to_dict() for o in self.outputs],
            "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
            "layers": [layer.to_dict() for layer in self.layers],
            "worst_layers": [layer.to_dict() for layer in self.worst_layers(WORST_SHOWN)],
            "notes": self.notes,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(_clean(self.to_dict()), indent=indent, allow_nan=False)

    def worst_layers(self, limit: int | None = None) -> list[LayerError]:
        """Compared layers by decreasing max relative error (graph order on ties).

        Args:
            limit: at most this many (all when None).

        Returns:
            The layers, worst first: for a quantized model, where the quantization error is.
        """
        def key(layer: LayerError) -> tuple[float, int]:
            rel = layer.max_rel if not math.isnan(layer.max_rel) else math.inf
            return (-rel, layer.index)

        ranked = sorted(self.layers, key=key)
        return ranked if limit is None else ranked[:limit]

    def layer_table(self, limit: int = WORST_SHOWN) -> list[str]:
        """Lines of the per-layer table (worst first), empty without localisation data."""
        if not self.layers:
            return []
        what = {"int8": "int8", "dynamic": "dynamic-range int8", "float16": "fp16"}.get(self.mode)
        title = (f"per-layer {what} quantization error" if what else "per-layer error")
        lines = [f"{title}, worst {min(limit, len(self.layers))} of {len(self.layers)} layers:",
                 f"  {'layer':<32} {'max abs':>10} {'max rel':>10} {'cosine':>10}  ok  matched by"]
        for layer in self.worst_layers(limit):
            lines.append(f"  {layer.source_name[-32:]:<32} {layer.max_abs:>10.3g} "
                         f"{layer.max_rel:>10.3g} {layer.cosine:>10.6f}  "
                         f"{'yes' if layer.passed else 'NO ':<3} {layer.matched_by}")
        return lines

    def failing(self) -> list[OutputMetrics]:
        """Outputs that did not pass."""
        return [o for o in self.outputs if not o.passed]

    def summary(self) -> str:
        """One line: verdict and the worst output."""
        if self.skipped:
            return f"verification skipped (not verified): {self.skip_reason}"
        worst = min(self.outputs, key=_badness, default=None)
        text = f"verification {self.verdict} ({self.source_runtime} vs {self.target_runtime}"
        text += f", {self.samples} sample(s))"
        if worst is not None:
            text += f"; worst output '{worst.name}': max abs {worst.max_abs:.3g}, "
            text += f"max rel {worst.max_rel:.3g}, cosine {worst.cosine:.6f}"
            if not worst.passed and worst.reason:
                text += f" ({worst.reason})"
        if self.first_divergence is not None:
            d = self.first_divergence
            more = f" (+{len(d.fused_with) - 6})" if len(d.fused_with) > 6 else ""
            fused = f", fused with {', '.join(d.fused_with[:6])}{more}" if d.fused_with else ""
            text += (f"; first diverging layer: '{d.source_name}' (max rel {d.max_rel:.3g}, "
                     f"converted ops: {', '.join(d.converted_ops[:6])}{fused})")
        return text

    def to_table(self) -> str:
        """A readable fixed-width table for the terminal."""
        if self.skipped:
            return "\n".join([self.summary(), *(f"note: {n}" for n in self.notes)])
        header = f"{'output':<24} {'shape':<18} {'max abs':>10} {'max rel':>10} " \
                 f"{'mean abs':>10} {'cosine':>10} {'top1':>6}  ok"
        lines = [self.summary(), header, "-" * len(header)]
        for o in self.outputs:
            top1 = "-" if o.top1_agreement is None else f"{o.top1_agreement:.2f}"
            lines.append(
                f"{o.name[:24]:<24} {str(o.shape)[:18]:<18} {o.max_abs:>10.3g} {o.max_rel:>10.3g} "
                f"{o.mean_abs:>10.3g} {o.cosine:>10.6f} {top1:>6}  {'yes' if o.passed else 'NO'}"
            )
            if o.reason:
                lines.append(f"    {o.reason}")
        lines.extend(self.layer_table())
        if self.inputs:
            lines.append(f"inputs: {self.inputs}")
        if self.tolerance is not None:
            lines.append(f"tolerance: {describe_tolerance(self.mode, self.tolerance)}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _badness(o: OutputMetrics) -> tuple[bool, bool, float]:
    """Sort key: failing outputs first, then outputs without evidence, then by max rel."""
    rel = o.max_rel
    return (o.passed, not math.isnan(rel), -rel if not math.isnan(rel) else 0.0)


def _clean(value: Any) -> Any:
    """Replace NaN/Inf by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
