"""A self-contained HTML verification report: metrics table and per-layer error chart."""

from __future__ import annotations

import html
import math

from modelconv.verification.html_summary import COLORS as _COLORS
from modelconv.verification.html_summary import OUTPUT_HEADER as _OUTPUT_HEADER
from modelconv.verification.html_summary import facts as _facts
from modelconv.verification.html_summary import output_rows as _output_rows
from modelconv.verification.report import WORST_SHOWN, VerificationReport

_W, _H, _PAD = 760, 260, 48


def _chart(report: VerificationReport) -> str:
    """Inline SVG: max relative error (log10) per source layer in graph order."""
    layers = report.layers
    if not layers:
        return "<p>No per-layer data (run verify with --localize).</p>"
    vals = [max(layer.max_rel, 1e-12) if math.isfinite(layer.max_rel) else 1e3
            for layer in layers]
    logs = [math.log10(v) for v in vals]
    lo, hi = min(min(logs), -8.0), max(max(logs), 0.0)
    n = len(layers)

    def x(i: int) -> float:
        return _PAD + (i * (_W - 2 * _PAD) / max(n - 1, 1))

    def y(v: float) -> float:
        return _H - _PAD + (v - lo) * (2 * _PAD - _H) / (hi - lo)

    pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(logs))
    parts = [f'<svg id="layer-chart" width="{_W}" height="{_H}" role="img" '
             'xmlns="http://www.w3.org/2000/svg" aria-label="per-layer error">',
             f'<rect width="{_W}" height="{_H}" fill="#fff"/>',
             f'<polyline points="{pts}" fill="none" stroke="#2563eb" stroke-width="2"/>']
    if report.tolerance:
        tol = math.log10(max(report.tolerance.rtol, 1e-12))
        parts.append(f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{y(tol):.1f}" y2="{y(tol):.1f}" '
                     'stroke="#999" stroke-dasharray="4"/>')
        parts.append(f'<text x="{_W - _PAD}" y="{y(tol) - 4:.1f}" font-size="11" '
                     'text-anchor="end" fill="#666">tolerance</text>')
    for i, (layer, v) in enumerate(zip(layers, logs, strict=True)):
        color = "#16a34a" if layer.passed else "#dc2626"
        title = html.escape(f"{layer.source_name}: max rel {layer.max_rel:.3g}")
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{color}">'
                     f"<title>{title}</title></circle>")
    first = report.first_divergence
    if first is not None and first in layers:
        i = layers.index(first)
        parts.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{_PAD / 2}" y2="{_H - _PAD}" '
                     'stroke="#dc2626" stroke-width="1.5"/>')
        parts.append(f'<text x="{x(i) + 4:.1f}" y="{_PAD / 2 + 10}" font-size="12" '
                     f'fill="#dc2626">first divergence: {html.escape(first.source_name)}</text>')
    for v in range(math.floor(lo), math.ceil(hi) + 1, 2):
        parts.append(f'<text x="{_PAD - 6}" y="{y(v) + 4:.1f}" font-size="11" '
                     f'text-anchor="end">1e{v}</text>')
    parts.append(f'<text x="{_W / 2}" y="{_H - 10}" font-size="12" text-anchor="middle">'
                 "layer (graph order)</text>")
    parts.append(f'<text x="14" y="{_H / 2}" font-size="12" transform="rotate(-90 14 {_H / 2})"'
                 ' text-anchor="middle">max rel error</text></svg>')
    return "\n".join(parts)


def _worst_table(report: VerificationReport) -> str:
    """The layers with the largest error first (for int8: the quantization error by layer)."""
    esc = html.escape
    worst = report.worst_layers(WORST_SHOWN)
    if not worst:
        return ""
    rows = "\n".join(
        f"<tr{' class=bad' if not layer.passed else ''}><td>{esc(layer.source_name)}</td>"
        f"<td>{esc(layer.tensor)}</td><td>{layer.max_abs:.3g}</td><td>{layer.max_rel:.3g}</td>"
        f"<td>{layer.cosine:.6f}</td><td>{esc(layer.matched_by)}</td></tr>" for layer in worst)
    title = esc(report.layer_table(WORST_SHOWN)[0].rstrip(":"))
    return (f'<h2 id="worst-layers">{title}</h2>\n<table><tr><th>source layer</th>'
            "<th>converted tensor</th><th>max abs</th><th>max rel</th><th>cosine</th>"
            f"<th>matched by</th></tr>{rows}</table>")


def render_html(report: VerificationReport) -> str:
    """The whole page as a string (no external resources)."""
    esc = html.escape
    verdict = report.verdict
    color = _COLORS[verdict]
    rows = _output_rows(report)
    layer_rows = "\n".join(
        f"<tr{' class=bad' if not layer.passed else ''}><td>{layer.index}</td>"
        f"<td>{esc(layer.source_name)}"
        f"{esc(' (+ ' + ', '.join(layer.fused_with) + ')') if layer.fused_with else ''}</td>"
        f"<td>{esc(', '.join(layer.converted_ops))}</td>"
        f"<td>{layer.max_abs:.3g}</td><td>{layer.max_rel:.3g}</td></tr>"
        for layer in report.layers
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in report.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>modelconv verification report</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#111}}
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ddd;padding:4px 8px;
text-align:right}}td:first-child,th:first-child{{text-align:left}}tr.bad td{{background:#fee2e2}}
table.facts td{{text-align:left}}.verdict{{color:{color};font-weight:bold}}</style></head><body>
<h1>modelconv verification: <span class="verdict">{esc(verdict)}</span></h1>
{_facts(report)}
<p>{esc(report.summary())}</p>
<h2>Outputs</h2>
<table>{_OUTPUT_HEADER}
{rows}</table>
{_worst_table(report)}
<h2>Error by layer</h2>
{_chart(report)}
<table><tr><th>#</th><th>source layer</th><th>converted ops</th><th>max abs</th><th>max rel</th>
</tr>{layer_rows}</table>
<ul>{notes}</ul>
</body></html>
"""
