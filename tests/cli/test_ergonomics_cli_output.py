"""CLI output: --quiet / --json for convert and verify, plain progress when piped."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelconv import cli
from tests.paths import ROOT

CNN = ROOT / "fixtures" / "onnx" / "small_cnn.onnx"


def _documented_keys() -> set[str]:
    """The keys of the ``--json`` table in docs/cli.md (rows ``| `a`, `b` | ...``)."""
    import re

    text = (ROOT / "docs" / "cli.md").read_text().split("(`--json`)", 1)[1]
    return {k for row in re.findall(r"^\| (`.*?`) \|", text, flags=re.M)
            for k in re.findall(r"`(\w+)`", row)}


JSON_KEYS = _documented_keys()


def test_documented_keys_are_read() -> None:
    keys = _documented_keys()
    assert keys == {"command", "exit_status", "outputs", "source_format", "target_format",
                    "timings", "warnings", "report", "error"}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "modelconv", *argv], capture_output=True,
                          text=True, env=env, timeout=300)


def test_piped_progress_is_plain_and_says_what_it_does(tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    proc = _run("convert", str(CNN), str(out), "--opset", "18")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert "\r" not in proc.stderr
    assert "importing small_cnn.onnx" in proc.stderr
    assert "verifying: running the source and o.onnx" in proc.stderr
    assert "verification PASSED" in proc.stdout


def test_convert_json_and_verify_json(tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    proc = _run("convert", str(CNN), str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and "\x1b" not in proc.stdout
    doc = json.loads(proc.stdout)
    assert set(doc) == JSON_KEYS
    assert doc["command"] == "convert" and doc["exit_status"] == 0
    assert doc["outputs"] == [{"path": str(out), "bytes": out.stat().st_size}]
    assert doc["source_format"] == "onnx" and doc["target_format"] == "onnx"
    assert {"import", "export", "verify", "total"} <= set(doc["timings"])
    assert doc["report"]["passed"] is True and doc["error"] is None

    proc = _run("verify", str(CNN), str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == JSON_KEYS and doc["command"] == "verify"
    assert doc["report"]["passed"] is True and doc["outputs"] == []

    proc = _run("verify", str(CNN), str(out), "--quiet")  # no progress, the verdict stays
    assert proc.returncode == 0 and proc.stderr == ""
    assert "verification PASSED" in proc.stdout


def test_json_error_document_and_plain_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"")
    proc = _run("convert", str(bad), str(tmp_path / "o.onnx"), "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["exit_status"] == 2 and doc["error"]["type"] == "ModelLoadError"
    assert doc["outputs"] == [] and doc["report"] is None
    assert "error (ModelLoadError)" in proc.stderr
    assert "\x1b" not in proc.stderr and "\x1b" not in proc.stdout


def test_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stderr", Tty())
    progress = cli._Progress("a.pt", "b.onnx")
    progress("import", 0.0)
    progress("import", 0.5)
    assert "\x1b[K" in sys.stderr.getvalue() and "#" in sys.stderr.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", Tty())
    progress = cli._Progress("a.pt", "b.onnx")
    progress("import", 0.0)
    progress("import", 0.5)
    assert sys.stderr.getvalue() == "  importing a.pt (reading the file; torch sources: " \
        "capturing the graph) ...\n"


def test_plain_strips_escape_sequences() -> None:
    assert cli.plain("\x1b[31mred\x1b[0m and \x1b[1;33mbold\x1b[m \x1b]") == "red and bold "
    assert cli.plain("no escapes: 100% [ok]") == "no escapes: 100% [ok]"


def test_import_steps_are_named_while_they_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # piped: plain lines
    progress = cli._Progress("w.safetensors", "m.onnx")
    progress("import", 0.0)
    progress("import:architecture", 0.0)
    progress("import:architecture", 1.0)
    progress("import:capture", 0.0)
    lines = sys.stderr.getvalue().splitlines()
    assert lines[1].startswith("    building the architecture (the --model factory")
    assert lines[2].startswith("    architecture done in ")
    assert lines[3] == "    capturing the graph (one recorded forward, or torch.export) ..."
    progress.close()  # a step that never finished is named as the one that failed
    tail = sys.stderr.getvalue().splitlines()[-2:]
    assert tail[0].startswith("    capture failed after ")
    assert tail[1].startswith("  import failed after ")
