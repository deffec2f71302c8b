"""HTML pieces shared by the full report page (:mod:`.html`) and the notebook view
(``VerificationReport._repr_html_``): the facts table and the per-output rows.

They take the report duck-typed so that :mod:`.report` can use them without an import
cycle (``html`` imports ``report``).
"""

from __future__ import annotations

import html
from typing import Any

from modelconv.verification.compare import describe_tolerance


def facts(report: Any) -> str:
    """The what-was-compared table of a VerificationReport: both files, runtimes, inputs,
    tolerance, verdict."""
    esc = html.escape
    rows = [("verdict", report.verdict),
            ("source", f"{report.source_path or '(in memory)'} ({report.source_runtime or '-'})"),
            ("converted", f"{report.target_path or '-'} ({report.target_runtime or '-'})"),
            ("inputs", report.inputs or "-")]
    if report.tolerance is not None:
        rows.append(("tolerance", describe_tolerance(report.mode, report.tolerance)))
    if report.skipped:
        rows.append(("not verified because", report.skip_reason))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def output_rows(report: Any) -> str:
    """One table row per output of a VerificationReport."""
    esc = html.escape
    return "\n".join(
        f"<tr><td>{esc(o.name)}</td><td>{esc(str(o.shape))}</td><td>{o.max_abs:.3g}</td>"
        f"<td>{o.max_rel:.3g}</td><td>{o.mean_abs:.3g}</td><td>{o.cosine:.6f}</td>"
        f"<td>{'-' if o.top1_agreement is None else f'{o.top1_agreement:.2f}'}</td>"
        f"<td>{o.nan_mismatch}/{o.inf_mismatch}</td><td>{'yes' if o.passed else 'NO'}</td>"
        f"<td>{esc(o.reason)}</td></tr>"
        for o in report.outputs
    )


OUTPUT_HEADER = ("<tr><th>output</th><th>shape</th><th>max abs</th><th>max rel</th>"
                  "<th>mean abs</th><th>cosine</th><th>top-1</th><th>NaN/Inf diff</th>"
                  "<th>ok</th><th>reason</th></tr>")
COLORS = {"PASSED": "#16a34a", "FAILED": "#dc2626", "NOT VERIFIED": "#a16207"}


def report_fragment(report: Any) -> str:
    """A compact HTML block (verdict, facts, outputs) for notebooks (``_repr_html_``)."""
    color = COLORS[report.verdict]
    return (f'<div><b style="color:{color}">verification {html.escape(report.verdict)}</b>'
            f"{facts(report)}<table>{OUTPUT_HEADER}{output_rows(report)}</table></div>")
