"""How the torch importer covers torch's core ATen op set (ops tagged ``torch.Tag.core``).

Every core overload gets one status:

- ``handler``: a registered ATen handler lowers it (in-place/``out=`` overloads excepted,
  which are lowered through their functional form when safe, see :mod:`.inplace`);
- ``decomposed``: no handler, but torch.export's default decompositions rewrite it (the
  lowering then handles what they produce, or lists it as unsupported);
- ``refused``: deliberately not converted, with the reason (:data:`REFUSED`);
- ``missing``: none of the above (a gap to fill).

``python -m modelconv.support`` writes the table into docs/support.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelconv.importers.torch.aten import ATEN_OPS
from modelconv.importers.torch.inplace import mutates

_TRAINING = "a backward (training) op; inference graphs never contain it"
_RANDOM = "random sampling: the result cannot be verified against torch eager"

#: core ops not converted on purpose, and why
REFUSED: dict[str, str] = {
    "aten._adaptive_avg_pool2d_backward.default": _TRAINING,
    "aten.avg_pool2d_backward.default": _TRAINING,
    "aten.convolution_backward.default": _TRAINING,
    "aten.max_pool2d_with_indices_backward.default": _TRAINING,
    "aten.rand.default": _RANDOM,
    "aten.randn.default": _RANDOM,
    "aten.randperm.default": _RANDOM,
    "aten.nonzero.default": "data-dependent output size",
    "aten._local_scalar_dense.default": "Tensor.item(): a data-dependent Python scalar",
    "aten.as_strided.default": "arbitrary strides over storage (no dataflow equivalent)",
    "aten.sym_storage_offset.default": "storage offsets do not exist in a dataflow graph",
    "aten._fft_r2c.default": "complex-valued FFT (complex tensors are not carried)",
    "aten._fft_c2r.default": "complex-valued FFT (complex tensors are not carried)",
    "aten._embedding_bag.default": "bags of data-dependent sizes (nn.EmbeddingBag offsets)",
}


@dataclass(frozen=True)
class OpCoverage:
    """One core ATen overload and how the importer treats it."""

    op: str
    status: str  # handler | decomposed | refused | missing
    detail: str = ""


def core_aten_ops() -> list[torch._ops.OpOverload]:
    """Every overload in ``torch.ops.aten`` tagged ``torch.Tag.core``, sorted by name."""
    ops = []
    for name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, name, None)
        if not isinstance(packet, torch._ops.OpOverloadPacket):
            continue
        for overload in packet.overloads():
            op = getattr(packet, overload)
            if torch.Tag.core in op.tags:
                ops.append(op)
    return sorted(ops, key=str)


def core_aten_coverage() -> list[OpCoverage]:
    """The status of every core ATen overload (see the module doc).

    Returns:
        One OpCoverage per overload, sorted by op name.
    """
    decomposed = {str(op) for op in torch.export.default_decompositions()}
    rows = []
    for op in core_aten_ops():
        key = str(op)
        if key in ATEN_OPS:
            rows.append(OpCoverage(key, "handler"))
        elif key in REFUSED:
            rows.append(OpCoverage(key, "refused", REFUSED[key]))
        elif key in decomposed:
            rows.append(OpCoverage(key, "decomposed"))
        elif mutates(op):
            rows.append(OpCoverage(key, "refused", "an out=/in-place overload: programs are "
                                   "functionalised to the functional form first"))
        else:
            rows.append(OpCoverage(key, "missing"))
    return rows


def coverage_markdown() -> str:
    """The coverage table as a markdown section (for docs/support.md)."""
    rows = core_aten_coverage()
    counts = {s: sum(r.status == s for r in rows) for s in
              ("handler", "decomposed", "refused", "missing")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"## PyTorch importer: core ATen op set coverage ({len(rows)} overloads, torch "
             f"{torch.__version__.split('+')[0]})", "",
             f"Ops tagged `torch.Tag.core`: {summary}.", "",
             "| op | status | detail |", "| --- | --- | --- |"]
    lines += [f"| `{r.op}` | {r.status} | {r.detail} |" for r in rows]
    return "\n".join(lines)


__all__ = ["REFUSED", "OpCoverage", "core_aten_coverage", "core_aten_ops", "coverage_markdown"]
