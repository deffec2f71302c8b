"""Every script in examples/ runs and succeeds (each asserts its own result)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("test_"))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))


def test_every_example_is_listed_in_the_readme() -> None:
    text = (ROOT / "examples" / "README.md").read_text()
    for name in [*SCRIPTS, "test_with_assert_equivalent.py"]:
        assert f"`{name}`" in text


@pytest.mark.models
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--out",
                           str(tmp_path)], capture_output=True, text=True, env=_env(),
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "PASSED" in proc.stdout or "passed" in proc.stdout.lower()


@pytest.mark.models
def test_example_pytest_file_passes() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "examples" / "test_with_assert_equivalent.py")],
                          capture_output=True, text=True, env=_env(), cwd=ROOT / "examples",
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "2 passed" in proc.stdout
