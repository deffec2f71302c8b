"""Every hostile input gives its ModelconvError subclass, a clear one-paragraph message, a
non-zero exit code, no output file and no side effect."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from modelconv.cli import main
from tests.hostile.corpus import CASES, MARKER, Case


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for module in case.needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}")
    args = case.build(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0, f"{case.name}: expected failure, got exit 0"
    assert f"error ({case.error})" in err, err
    assert "Traceback" not in err and len(err.strip()) > 20
    assert not (tmp_path / MARKER).exists(), "the payload ran"
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before, f"files changed: {set(after) ^ set(before)}"
