"""Bounded fuzzing: every mutated fixture converts or fails with a ModelconvError.

Size: MODELCONV_FUZZ_CASES per fixture (default 15), fixed seed MODELCONV_FUZZ_SEED (0).
Each fixture is fuzzed in its own subprocess so a crash or hang fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

FIXTURES = sorted(
    p for p in (ROOT / "fixtures").rglob("*")
    if p.is_file() and p.suffix in {".onnx", ".h5", ".keras", ".pt", ".pt2", ".safetensors"}
    and "hostile" not in p.parts
)
CASES = int(os.environ.get("MODELCONV_FUZZ_CASES", "15"))
SEED = int(os.environ.get("MODELCONV_FUZZ_SEED", "0"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_fuzz_fixture(fixture: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.hostile.fuzz", str(fixture), "--cases", str(CASES),
         "--seed", str(SEED), "--timeout", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=60 + CASES * 60,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert len(lines) == CASES, proc.stdout
    assert not [line for line in lines if " BAD " in line]
