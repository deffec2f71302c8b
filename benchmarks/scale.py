"""``python -m benchmarks scale``: a > 2 GiB GPT-2 style model through modelconv.

The model is built on the meta device and materialised with ``to_empty`` plus a cheap seeded
init (no 2.4 GB of default initialisers), saved as .safetensors, then converted by modelconv to
ONNX (external data) and to TFLite, each in a fresh subprocess. The figure of merit is peak
RSS / weights size: how many copies of the weights the conversion holds at once.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import MiB, RunConfig, log, measure, spawn
from benchmarks.report import finite, json_safe
from benchmarks.routes import ROUTES
from benchmarks.zoo import SCALE_MODEL

GiB = 2**30


def run_scale(cfg: RunConfig, targets: list[str], with_anchors: bool) -> dict[str, Any]:
    """Build the scale model once, convert it to each target; returns records + markdown."""
    spec = SCALE_MODEL
    log(f"building {spec.name} ({spec.description})")
    res, wall = spawn({"task": "build", "models": [spec.to_dict()],
                       "cache_dir": str(cfg.cache_dir), "rebuild": cfg.rebuild, "scale": True},
                      cfg.python, "torch", cfg.timeout * 2,
                      cfg.out_dir / "logs" / "build_scale.log")
    built = res.get("models", {}).get(spec.name, {"status": "error",
                                                   "message": res.get("message")})
    log(f"  built in {wall:.1f} s: {built.get('status')} {built.get('message', '')}")
    weights = float(built.get("weights_bytes") or 0)
    records = []
    for target in targets:
        route = ROUTES[f"torch-{target}"]
        convs = route.converters if with_anchors else route.converters[:1]
        route = dataclasses.replace(route, converters=convs)
        for conv in convs:
            rec = measure(cfg, route, spec, conv, built)
            rss = rec.get("peak_rss_mb")
            rec["weights_mb"] = weights / MiB if weights else None
            rec["rss_over_weights"] = (float(rss) * MiB / weights
                                       if rss is not None and finite(rss) and weights else None)
            records.append(rec)
    return {"model": spec.to_dict(), "build": built, "records": records}


def scale_markdown(result: dict[str, Any]) -> str:
    """The scale-check table."""
    b = result["build"]
    lines = ["# modelconv scale check", "",
             f"{result['model']['description']}; params {b.get('params', '?')}, "
             f"weights {(b.get('weights_bytes') or 0) / GiB:.2f} GiB (safetensors).", "",
             "| target | converter | convert s | process s | peak RSS GiB | RSS / weights | "
             "output GiB | files | latency ms | max rel err |", "|---" * 10 + "|"]
    for r in result["records"]:
        if r.get("status") != "ok":
            msg = " ".join(str(r.get("message")).split())[:160]
            lines.append(f"| {r['route']} | {r['label']} | {r.get('status')}: {msg} |"
                         + " — |" * 7)
            continue

        def f(v: Any, fmt: str) -> str:
            return format(v, fmt) if finite(v) else "—"

        lines.append(
            f"| {r['route']} | {r['label']} | {f(r.get('convert_s'), '.1f')} | "
            f"{f(r.get('process_s'), '.1f')} | {f((r.get('peak_rss_mb') or 0) / 1024, '.2f')} | "
            f"{f(r.get('rss_over_weights'), '.2f')} | {f((r.get('size_mb') or 0) / 1024, '.2f')} | "
            f"{len(r.get('files') or [])} | {f(r.get('latency_ms'), '.1f')} | "
            f"{f(r.get('max_rel_err'), '.1e')} |")
    return "\n".join(lines) + "\n"


def main_scale(out_dir: Path, python: str, targets: list[str], with_anchors: bool,
               timeout: float, rebuild: bool, runs: int) -> int:
    """Entry point of the ``scale`` subcommand."""
    import json

    cfg = RunConfig(out_dir=out_dir, python=python, repeats=1, latency_runs=runs,
                    timeout=timeout, rebuild=rebuild, startup=False)
    result = run_scale(cfg, targets, with_anchors)
    text = scale_markdown(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scale.md").write_text(text)
    (out_dir / "scale.json").write_text(json.dumps(json_safe(result), indent=1, default=str))
    sys.stdout.write(text)
    return 0
