"""Turn benchmark records into results.md (tables), results.json and results.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks.routes import ROUTES

COLUMNS = ["model", "converter", "convert s", "process s", "peak RSS MiB", "size MiB",
           "nodes/ops", "latency ms (1 thr)", "max rel err", "time mc/a", "process mc/a",
           "RSS mc/a", "lat mc/a", "size mc/a", "nodes mc/a"]
#: (record field, ratio column) pairs: ratio = modelconv value / anchor value
#: "time" is the converter call (modelconv's own imports included, the anchor's framework
#: already imported); "process" is the whole subprocess (imports + model loading + call)
RATIO_FIELDS = [("convert_s", "time mc/a"), ("process_s", "process mc/a"),
                ("peak_rss_mb", "RSS mc/a"), ("latency_ms", "lat mc/a"),
                ("size_mb", "size mc/a"), ("nodes", "nodes mc/a")]


def finite(value: Any) -> bool:
    """True for a real, finite number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """modelconv / anchor for every anchor row whose route+model has a modelconv figure."""
    mc = {(r["route"], r["model"]): r for r in records if r["role"] == "modelconv"}
    out = []
    for r in records:
        base = mc.get((r["route"], r["model"]))
        if r["role"] != "anchor" or base is None:
            continue
        row: dict[str, Any] = {"route": r["route"], "model": r["model"], "anchor": r["converter"]}
        for key, col in RATIO_FIELDS:
            a, b = base.get(key), r.get(key)
            row[col] = a / b if finite(a) and finite(b) and b else None
        out.append(row)
    return out


def _cell(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: Any, fmt: str) -> str:
    if not finite(value):
        return "—"
    if fmt == "g":  # about 3 significant digits, never exponent notation
        mag = abs(value)
        fmt = ".0f" if mag >= 100 else ".1f" if mag >= 10 else ".2f" if mag >= 1 else (
            ".3f" if mag >= 0.01 else ".4f")
    return format(value, fmt)


def _err(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return "inf" if math.isinf(value) else ("nan" if math.isnan(value) else f"{value:.1e}")


def _row(rec: dict[str, Any], ratio: dict[str, Any] | None) -> list[str]:
    name = rec["label"] if rec["role"] == "anchor" else "**modelconv**"
    if rec.get("status") != "ok":
        word = "unavailable" if rec.get("status") == "unavailable" else "error"
        return [rec["model"], name, _cell(f"{word}: {rec.get('message')}")] + \
            ["—"] * (len(COLUMNS) - 3)
    latency = _num(rec.get("latency_ms"), "g")
    if rec.get("eval_status") != "ok":
        latency = _cell(f"error: {rec.get('eval_message')}", 80)
    cells = [rec["model"], name, _num(rec.get("convert_s"), "g"),
             _num(rec.get("process_s"), "g"), _num(rec.get("peak_rss_mb"), ".0f"),
             _num(rec.get("size_mb"), "g"), _num(rec.get("nodes"), "d"), latency,
             _err(rec.get("max_rel_err"))]
    for _, col in RATIO_FIELDS:
        cells.append(_num((ratio or {}).get(col), "g") if ratio else "—")
    return cells


def route_table(route: str, records: list[dict[str, Any]],
                ratio_rows: list[dict[str, Any]]) -> str:
    """The markdown table of one route."""
    by_key = {(r["model"], r["anchor"]): r for r in ratio_rows if r["route"] == route}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for rec in records:
        if rec["route"] != route:
            continue
        ratio = by_key.get((rec["model"], rec["converter"])) if rec["role"] == "anchor" else None
        lines.append("| " + " | ".join(_row(rec, ratio)) + " |")
    return "\n".join(lines)


def startup_table(startup: dict[str, Any]) -> str:
    """The startup-time table (vs the 0.2 s target)."""
    if not startup:
        return ""
    target = startup.get("target_s", 0.2)
    lines = ["| command | median wall s | target s | verdict |", "|---|---|---|---|"]
    for key, label in (("python_baseline_s", "python -c pass (interpreter alone)"),
                       ("import_modelconv_s", "python -c 'import modelconv'"),
                       ("help_s", startup.get("help_command", "modelconv --help"))):
        value = startup.get(key)
        is_target = key != "python_baseline_s"
        verdict = ("—" if not is_target or not finite(value)
                   else ("meets" if value <= target else "MISSES"))
        err = startup.get(key.removesuffix("_s") + "_error")
        if err:
            verdict = _cell(f"error: {err}", 80)
        lines.append(f"| `{label}` | {_num(value, '.3f')} | "
                     f"{target if is_target else '—'} | {verdict} |")
    imported = startup.get("imported_by_import_modelconv")
    lines.append("")
    lines.append("Heavy modules loaded by `import modelconv`: "
                 f"{', '.join(imported) if imported else 'none'}")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The whole results.md."""
    meta, records = results["meta"], results["records"]
    ratio_rows = ratios(records)
    versions: dict[str, str] = next(
        (r["versions"] for r in records if r.get("versions")), {})
    out = ["# modelconv benchmarks", "",
           f"Run {meta.get('started')} on {meta.get('cpus')} CPUs in {meta.get('wall_s')} s; "
           f"python `{meta.get('python')}`"
           + (f" ({', '.join(f'{k} {v}' for k, v in versions.items() if k != 'executable')})"
              if versions else "") + ".",
           f"Repeats per conversion: {meta.get('repeats')} (medians; quick={meta.get('quick')}); "
           f"latency = median of {meta.get('latency_runs')} runs with 1 thread; modelconv "
           f"{'with' if meta.get('modelconv_verify') else 'without'} its built-in verification.",
           "", "Columns `… mc/a` are modelconv / that anchor (the row's converter): below 1 means "
           "modelconv is faster, smaller or leaner.", ""]
    models = results.get("models", {})
    for route in meta.get("routes", []):
        r = ROUTES.get(route)
        out += [f"## {route}" + (f" ({r.source} → {r.target})" if r else ""), "",
                route_table(route, records, ratio_rows), ""]
    out += ["## Models", "", "| model | implementation | parameters | description |",
            "|---|---|---|---|"]
    for name, m in models.items():
        b = m.get("build") or {}
        impl = b.get("impl") if b.get("status") == "ok" else f"build error: {b.get('message')}"
        out.append(f"| {name} | {_cell(str(impl), 80)} | {b.get('params', '—')} | "
                   f"{_cell(m['description'])} |")
    st = startup_table(results.get("startup", {}))
    if st:
        out += ["", "## Startup", "", st]
    return "\n".join(out) + "\n"


def chart(results: dict[str, Any], path: Path) -> str | None:
    """results.png: convert time, peak RSS, latency per route/model and converter."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    records = [r for r in results["records"] if r.get("status") == "ok"]
    if not records:
        return "no successful conversion to plot"
    groups = list(dict.fromkeys((r["route"], r["model"]) for r in records))
    convs = list(dict.fromkeys(r["converter"] for r in records))
    panels = [("convert_s", "converter call (s)"), ("peak_rss_mb", "peak RSS (MiB)"),
              ("latency_ms", "latency, 1 thread (ms)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(8, 1.4 * len(groups) + 3), 11))
    cmap = plt.get_cmap("tab10")
    color = {c: cmap(i % 10) for i, c in enumerate(convs)}
    for ax, (key, title) in zip(axes, panels, strict=True):
        seen: set[str] = set()
        for gi, (route, model) in enumerate(groups):
            here = [r for r in records if (r["route"], r["model"]) == (route, model)
                    and finite(r.get(key)) and r[key] > 0]
            width = 0.8 / max(1, len(here))
            for ci, rec in enumerate(here):
                conv = rec["converter"]
                ax.bar(gi + (ci - (len(here) - 1) / 2) * width, rec[key], width,
                       color=color[conv], label=None if conv in seen else conv)
                seen.add(conv)
        ax.set_yscale("log")
        ax.set_ylabel(title)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{r}\n{m}" for r, m in groups], fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=min(4, len(convs)))
    axes[0].set_title("modelconv vs established converters (log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as the strings "inf"/"-inf"/"nan" (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_all(results: dict[str, Any], out_dir: Path) -> str:
    """Write results.md/.json/.png into ``out_dir``; returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {**results, "ratios": ratios(results["records"])}
    problem = chart(results, out_dir / "results.png")
    results["meta"] = {**results["meta"], "chart": None if problem else "results.png",
                       "chart_error": problem}
    text = markdown(results)
    if problem:
        text += f"\n(No chart: {problem}.)\n"
    (out_dir / "results.md").write_text(text)
    (out_dir / "results.json").write_text(json.dumps(json_safe(results), indent=1,
                                                     default=str))
    return text
