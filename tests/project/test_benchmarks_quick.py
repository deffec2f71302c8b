"""The benchmark harness end to end on a tiny ONNX -> ONNX case (no timing asserts)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

REPO = ROOT
NUMERIC = ("convert_s", "process_s", "peak_rss_mb", "size_mb", "nodes", "latency_ms",
           "max_rel_err")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--routes", "onnx-onnx", "--repeats", "2",
         "--latency-runs", "3", "--out", str(out)],
        cwd=str(REPO), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    return data, (out / "results.md").read_text(), out


def test_json_records_have_finite_figures(results: tuple[dict, str, Path]) -> None:
    data, _, _ = results
    recs = {r["converter"]: r for r in data["records"]}
    assert set(recs) == {"modelconv", "onnx-roundtrip"}
    for rec in recs.values():
        assert rec["status"] == "ok", rec
        assert rec["eval_status"] == "ok", rec
        assert rec["repeats"] == 2
        for key in NUMERIC:
            assert _finite(rec[key]), (rec["converter"], key, rec[key])
        assert rec["nodes"] > 0 and rec["size_mb"] > 0 and rec["peak_rss_mb"] > 0
        assert rec["max_rel_err"] < 1e-5
    assert isinstance(recs["modelconv"]["timings"], dict)
    assert "total" in recs["modelconv"]["timings"]
    (ratio,) = data["ratios"]
    for col in ("time mc/a", "RSS mc/a", "lat mc/a", "size mc/a", "nodes mc/a"):
        assert _finite(ratio[col]), col


def test_markdown_table_columns(results: tuple[dict, str, Path]) -> None:
    from benchmarks.report import COLUMNS

    _, md, out = results
    assert "## onnx-onnx" in md
    assert "| " + " | ".join(COLUMNS) + " |" in md
    section = md.split("## onnx-onnx", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| onnx_mlp |")]
    assert len(rows) == 2
    assert all(len(r.strip("|").split("|")) == len(COLUMNS) for r in rows)
    assert "## Startup" in md
    assert (out / "results.png").exists() or "No chart" in md


def test_startup_figures(results: tuple[dict, str, Path]) -> None:
    data, _, _ = results
    st = data["startup"]
    for key in ("python_baseline_s", "import_modelconv_s", "help_s"):
        assert _finite(st[key]) and st[key] > 0
    assert st["target_s"] == 0.2


def test_failed_route_is_a_cell_not_a_crash() -> None:
    from benchmarks.report import COLUMNS, markdown

    rec = {"route": "torch-onnx", "model": "resnet18", "converter": "modelconv",
           "label": "modelconv", "role": "modelconv", "status": "error",
           "message": "ExportError: boom | with a pipe"}
    anchor = {**rec, "converter": "torch-script", "label": "torch.onnx.export(dynamo=False)",
              "role": "anchor", "status": "unavailable", "message": "no torch here"}
    md = markdown({"meta": {"routes": ["torch-onnx"]}, "records": [rec, anchor],
                   "models": {}, "startup": {}})
    row = next(ln for ln in md.splitlines() if "**modelconv**" in ln)
    assert "error: ExportError: boom \\| with a pipe" in row
    assert len(row.replace("\\|", "").strip("|").split("|")) == len(COLUMNS)
    assert "unavailable: no torch here" in md


@pytest.mark.models
def test_quick_mode_covers_every_route(tmp_path: Path) -> None:
    """`python -m benchmarks run --quick` (what CI runs): every route gets a table with a
    modelconv row and its anchors; figures are reported, never asserted."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--out", str(tmp_path)],
        cwd=str(REPO), capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    data = json.loads((tmp_path / "results.json").read_text())
    routes = {r["route"] for r in data["records"]}
    assert {"torch-onnx", "keras-onnx", "keras-tflite", "torch-tflite"} <= routes
    for route in routes:
        assert f"## {route}" in table
        ours = [r for r in data["records"] if r["route"] == route and r["converter"] == "modelconv"]
        assert ours and all(r["status"] == "ok" for r in ours), ours
